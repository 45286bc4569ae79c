//! `/etc/ld.so.cache`: the table ldconfig writes so the loader finds a
//! library by name without scanning directories.
//!
//! Two formats exist and a file may hold both: the old libc5/glibc 2.0
//! table (`ld.so-1.7.0`, 12-byte entries) and the glibc 2.2+ table
//! (`glibc-ld.so.cache1.1`, 24-byte entries). A combined file puts the new
//! table, aligned to 8, right after the old entries; the loader then reads
//! only the new one, and so do we. Every offset and count comes from the
//! file, so every access is bounds-checked: a corrupt cache is an error
//! naming the file, never a panic.

use std::path::Path;

const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
const OLD_HEADER: usize = 16; // magic[11], pad, nlibs
const OLD_ENTRY: usize = 12; // flags, key, value
const NEW_HEADER: usize = 48;
const NEW_ENTRY: usize = 24; // flags, key, value, osversion, hwcap

/// `hwcap` bit marking an entry that lives in a `glibc-hwcaps/` subdirectory,
/// used only on CPUs that support it.
const HWCAP_EXTENSION: u64 = 1 << 62;

/// Low byte of the flags: the kind of library.
pub const FLAG_TYPE_MASK: i32 = 0x00ff;
pub const FLAG_ELF: i32 = 1;
pub const FLAG_ELF_LIBC6: i32 = 3;
/// High byte of the flags: the ABI variant (`FLAG_X8664_LIB64`...).
pub const FLAG_REQUIRED_MASK: i32 = 0xff00;

/// One library the cache knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// The name looked up: a DT_NEEDED value such as `libz.so.1`.
    pub name: String,
    /// The file to open.
    pub path: String,
    pub flags: i32,
    /// Non-zero for hardware-capability specific variants.
    pub hwcap: u64,
}

impl CacheEntry {
    /// ABI tag ldconfig recorded (`0x0300` for x86-64 libraries).
    pub fn abi(&self) -> i32 {
        self.flags & FLAG_REQUIRED_MASK
    }

    /// A `glibc-hwcaps/` variant the loader picks only on capable CPUs.
    pub fn is_hwcaps_variant(&self) -> bool {
        self.hwcap & HWCAP_EXTENSION != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheError(pub String);

impl std::fmt::Display for CacheError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CacheError {}

/// Read and parse a cache file; errors name the file.
pub fn load(path: &Path) -> Result<Vec<CacheEntry>, CacheError> {
    let data = std::fs::read(path)
        .map_err(|e| CacheError(format!("{}: cannot read: {e}", path.display())))?;
    parse(&data).map_err(|e| CacheError(format!("{}: {e}", path.display())))
}

/// Parse a cache image, in file order (the loader's order of preference).
pub fn parse(data: &[u8]) -> Result<Vec<CacheEntry>, CacheError> {
    if data.starts_with(NEW_MAGIC) {
        return parse_new(data);
    }
    if !data.starts_with(OLD_MAGIC) {
        return Err(err("not an ld.so.cache (unknown magic)"));
    }
    // Old format has no endianness marker: it is always native.
    let nlibs = read_u32(data, 12, Endian::Native)? as usize;
    let entries_end = nlibs
        .checked_mul(OLD_ENTRY)
        .and_then(|n| n.checked_add(OLD_HEADER))
        .filter(|&end| end <= data.len())
        .ok_or_else(|| err("old-format entry table runs past the end of the file"))?;
    let new_start = entries_end.next_multiple_of(8);
    if data.len() > new_start && data[new_start..].starts_with(NEW_MAGIC) {
        return parse_new(&data[new_start..]);
    }
    // Old-format strings are relative to the end of the entry table.
    let strings = &data[entries_end..];
    let mut out = Vec::with_capacity(nlibs);
    for i in 0..nlibs {
        let at = OLD_HEADER + i * OLD_ENTRY;
        let flags = read_u32(data, at, Endian::Native)? as i32;
        let name = read_str(strings, read_u32(data, at + 4, Endian::Native)?)?;
        let path = read_str(strings, read_u32(data, at + 8, Endian::Native)?)?;
        out.push(CacheEntry {
            name,
            path,
            flags,
            hwcap: 0,
        });
    }
    Ok(out)
}

fn parse_new(data: &[u8]) -> Result<Vec<CacheEntry>, CacheError> {
    if data.len() < NEW_HEADER {
        return Err(err("truncated header"));
    }
    // Byte 28: 0 = written before the marker existed (native), 2 = little,
    // 3 = big endian.
    let endian = match data[28] & 3 {
        0 => Endian::Native,
        2 => Endian::Little,
        3 => Endian::Big,
        _ => return Err(err("header marks the cache's byte order as invalid")),
    };
    if !endian.is_native() {
        return Err(err(
            "written for the other byte order; this machine's loader ignores it",
        ));
    }
    let nlibs = read_u32(data, 20, endian)? as usize;
    let len_strings = read_u32(data, 24, endian)? as usize;
    let entries_end = nlibs
        .checked_mul(NEW_ENTRY)
        .and_then(|n| n.checked_add(NEW_HEADER))
        .filter(|&end| end <= data.len())
        .ok_or_else(|| err("entry table runs past the end of the file"))?;
    if entries_end
        .checked_add(len_strings)
        .is_none_or(|end| end > data.len())
    {
        return Err(err("string table runs past the end of the file"));
    }
    let mut out = Vec::with_capacity(nlibs);
    for i in 0..nlibs {
        let at = NEW_HEADER + i * NEW_ENTRY;
        let flags = read_u32(data, at, endian)? as i32;
        // New-format strings are relative to the start of the new header.
        let name = read_str(data, read_u32(data, at + 4, endian)?)?;
        let path = read_str(data, read_u32(data, at + 8, endian)?)?;
        let hwcap = read_u64(data, at + 16, endian)?;
        out.push(CacheEntry {
            name,
            path,
            flags,
            hwcap,
        });
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy)]
enum Endian {
    Native,
    Little,
    Big,
}

impl Endian {
    fn is_native(self) -> bool {
        match self {
            Endian::Native => true,
            Endian::Little => cfg!(target_endian = "little"),
            Endian::Big => cfg!(target_endian = "big"),
        }
    }
}

fn err(msg: &str) -> CacheError {
    CacheError(format!("malformed ld.so.cache: {msg}"))
}

fn read_u32(data: &[u8], at: usize, endian: Endian) -> Result<u32, CacheError> {
    let b: [u8; 4] = data
        .get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| err("truncated entry"))?;
    Ok(match endian {
        Endian::Native => u32::from_ne_bytes(b),
        Endian::Little => u32::from_le_bytes(b),
        Endian::Big => u32::from_be_bytes(b),
    })
}

fn read_u64(data: &[u8], at: usize, endian: Endian) -> Result<u64, CacheError> {
    let b: [u8; 8] = data
        .get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| err("truncated entry"))?;
    Ok(match endian {
        Endian::Native => u64::from_ne_bytes(b),
        Endian::Little => u64::from_le_bytes(b),
        Endian::Big => u64::from_be_bytes(b),
    })
}

/// A NUL-terminated string at `offset` in `table`.
fn read_str(table: &[u8], offset: u32) -> Result<String, CacheError> {
    let rest = table
        .get(offset as usize..)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| err("string offset outside the file"))?;
    let end = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| err("unterminated string"))?;
    String::from_utf8(rest[..end].to_vec()).map_err(|_| err("string is not UTF-8"))
}

/// Build cache images for tests (ours and the crate users'): the same
/// layout ldconfig writes.
pub mod build {
    use super::*;

    /// A new-format (glibc 2.2+) cache holding `entries` as
    /// `(flags, name, path, hwcap)`.
    pub fn new_format(entries: &[(i32, &str, &str, u64)]) -> Vec<u8> {
        new_table(entries, NEW_HEADER + entries.len() * NEW_ENTRY)
    }

    fn new_table(entries: &[(i32, &str, &str, u64)], strings_at: usize) -> Vec<u8> {
        let mut strings = Vec::new();
        let mut offsets = Vec::new();
        for (_, name, path, _) in entries {
            let k = strings_at + strings.len();
            strings.extend_from_slice(name.as_bytes());
            strings.push(0);
            let v = strings_at + strings.len();
            strings.extend_from_slice(path.as_bytes());
            strings.push(0);
            offsets.push((k as u32, v as u32));
        }
        let mut out = Vec::new();
        out.extend_from_slice(NEW_MAGIC);
        out.extend_from_slice(&(entries.len() as u32).to_ne_bytes());
        out.extend_from_slice(&(strings.len() as u32).to_ne_bytes());
        out.push(if cfg!(target_endian = "little") { 2 } else { 3 });
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(&[0; 16]); // extension offset + unused
        for ((flags, _, _, hwcap), (k, v)) in entries.iter().zip(&offsets) {
            out.extend_from_slice(&flags.to_ne_bytes());
            out.extend_from_slice(&k.to_ne_bytes());
            out.extend_from_slice(&v.to_ne_bytes());
            out.extend_from_slice(&0u32.to_ne_bytes());
            out.extend_from_slice(&hwcap.to_ne_bytes());
        }
        out.extend_from_slice(&strings);
        out
    }

    /// An old-format (libc5 / glibc 2.0) cache; with `with_new`, followed by
    /// a new-format table as glibc 2.2-2.31's ldconfig wrote by default.
    pub fn old_format(entries: &[(i32, &str, &str)], with_new: bool) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(OLD_MAGIC);
        out.push(0);
        out.extend_from_slice(&(entries.len() as u32).to_ne_bytes());
        let table_end = OLD_HEADER + entries.len() * OLD_ENTRY;
        let mut strings = Vec::new();
        let mut rows = Vec::new();
        for (flags, name, path) in entries {
            let k = strings.len() as u32;
            strings.extend_from_slice(name.as_bytes());
            strings.push(0);
            let v = strings.len() as u32;
            strings.extend_from_slice(path.as_bytes());
            strings.push(0);
            rows.push((*flags, k, v));
        }
        if with_new {
            // The new table sits in the old string area's head; old offsets
            // then point past it.
            let new: Vec<(i32, &str, &str, u64)> =
                entries.iter().map(|(f, n, p)| (*f, *n, *p, 0)).collect();
            let pad = table_end.next_multiple_of(8) - table_end;
            let mut head = vec![0u8; pad];
            head.extend_from_slice(&new_table(&new, NEW_HEADER + new.len() * NEW_ENTRY));
            let shift = head.len() as u32;
            for r in &mut rows {
                r.1 += shift;
                r.2 += shift;
            }
            head.extend_from_slice(&strings);
            strings = head;
        }
        for (flags, k, v) in rows {
            out.extend_from_slice(&flags.to_ne_bytes());
            out.extend_from_slice(&k.to_ne_bytes());
            out.extend_from_slice(&v.to_ne_bytes());
        }
        out.extend_from_slice(&strings);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::build;
    use super::*;

    const X86_64: i32 = 0x0303;

    #[test]
    fn new_format_round_trip() {
        let img = build::new_format(&[
            (X86_64, "libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1", 0),
            (0x0003, "libfoo.so", "/usr/lib32/libfoo.so", 0),
        ]);
        let got = parse(&img).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "libz.so.1");
        assert_eq!(got[0].path, "/lib/x86_64-linux-gnu/libz.so.1");
        assert_eq!(got[0].abi(), 0x0300);
        assert_eq!(got[1].flags & FLAG_TYPE_MASK, FLAG_ELF_LIBC6);
    }

    #[test]
    fn old_format_alone_and_combined() {
        let entries = [(FLAG_ELF, "liba.so.1", "/lib/liba.so.1")];
        let old = parse(&build::old_format(&entries, false)).unwrap();
        assert_eq!(old[0].path, "/lib/liba.so.1");
        let combined = parse(&build::old_format(&entries, true)).unwrap();
        assert_eq!(combined, old);
    }

    #[test]
    fn malformed_caches_are_errors_not_panics() {
        let good = build::new_format(&[(X86_64, "libz.so.1", "/lib/libz.so.1", 0)]);
        for cut in 0..good.len() {
            let _ = parse(&good[..cut]);
        }
        assert!(parse(b"hello").unwrap_err().0.contains("unknown magic"));
        let mut huge = good.clone();
        huge[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(parse(&huge).unwrap_err().0.contains("past the end"));
        let mut bad_off = good.clone();
        bad_off[NEW_HEADER + 4..NEW_HEADER + 8].copy_from_slice(&0xffff_fff0u32.to_ne_bytes());
        assert!(parse(&bad_off).unwrap_err().0.contains("outside"));
        // Every single-byte corruption parses or fails cleanly.
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0xff;
            let _ = parse(&b);
        }
        let mut old = build::old_format(&[(1, "a", "/a")], false);
        old[12..16].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(parse(&old).is_err());
    }

    #[test]
    fn error_names_the_file() {
        let dir = std::env::temp_dir().join(format!("ldcache-{}", std::process::id()));
        std::fs::write(&dir, b"garbage!").unwrap();
        let e = load(&dir).unwrap_err().0;
        std::fs::remove_file(&dir).unwrap();
        assert!(e.starts_with(&dir.display().to_string()), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn this_machines_cache_parses_and_knows_libc() {
        let path = Path::new("/etc/ld.so.cache");
        if !path.exists() {
            return;
        }
        let entries = load(path).unwrap();
        assert!(!entries.is_empty());
        let libc = entries
            .iter()
            .find(|e| e.name == "libc.so.6")
            .expect("libc.so.6 in the cache");
        assert!(Path::new(&libc.path).exists(), "{}", libc.path);
    }
}
