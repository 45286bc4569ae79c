//! Debian packages, written directly: an `ar` archive holding
//! `debian-binary` (`2.0`), `control.tar.gz` (the `control` file) and
//! `data.tar.gz` or `data.tar.zst` (the files under the install prefix).
//! dpkg on Debian 12 reads both data compressions; gzip is the default
//! because every dpkg reads it.
//!
//! `ar` needs each member's size in its header, before the data. The data
//! member is streamed straight into the output with a placeholder size that
//! is filled in afterwards, so a large tree is never held in memory or
//! copied through a temporary file.

use std::io::{Seek, SeekFrom, Write};

use anyhow::{bail, Context, Result};

use crate::manifest::EntryKind;
use crate::packset::{PackSet, Progress};
use crate::pkgscripts::{self, PackageState};
use crate::tarball::{self, Compression};

#[derive(Debug, Clone)]
pub struct DebMeta {
    pub name: String,
    pub version: String,
    /// Debian spelling: `amd64`, `arm64`, ...
    pub arch: String,
    pub maintainer: String,
    /// First line: the synopsis; further lines: the long description.
    pub description: String,
    /// Each an entry of `Depends:` (`python3.11`, `libfoo (>= 1.2)`).
    pub depends: Vec<String>,
    /// State directories (made by `postinst`, deleted by a purge) and
    /// conffiles.
    pub state: PackageState,
}

/// Write the package of `set` installed under `prefix` (absolute, e.g.
/// `/opt/app`) to `out`.
pub fn write_deb<W: Write + Seek>(
    set: &PackSet,
    meta: &DebMeta,
    prefix: &str,
    data_compression: Compression,
    out: &mut W,
    progress: Progress,
) -> Result<()> {
    validate(meta)?;
    let mtime = set.mtime.max(0) as u64;
    let control = control_file(set, meta);
    let control_tar = control_tar_gz(&control_members(&control, meta, prefix), mtime)?;

    out.write_all(b"!<arch>\n")?;
    ar_member(out, "debian-binary", mtime, b"2.0\n")?;
    ar_member(out, "control.tar.gz", mtime, &control_tar)?;

    let name = format!("data.tar.{}", data_compression.suffix());
    let header_at = out.stream_position()?;
    out.write_all(&ar_header(&name, mtime, 0))?;
    let start = out.stream_position()?;
    // The tar crate writes names without a leading `./`; dpkg accepts both,
    // and hardlink targets must be spelled like the names they point at.
    let root = prefix.trim_matches('/').to_string();
    tarball::write_compressed(set, &root, data_compression, &mut *out, progress)?;
    let end = out.stream_position()?;
    let size = end - start;
    if size % 2 == 1 {
        out.write_all(b"\n")?;
    }
    out.seek(SeekFrom::Start(header_at))?;
    out.write_all(&ar_header(&name, mtime, size))?;
    out.seek(SeekFrom::End(0))?;
    Ok(())
}

/// The `control` file: the fields `dpkg-deb --info` shows.
pub fn control_file(set: &PackSet, meta: &DebMeta) -> String {
    // Installed-Size as dpkg-gencontrol counts it: KiB per file, rounded
    // up, and one per directory or link.
    let kib: u64 = set
        .entries
        .iter()
        .map(|e| match e.kind {
            EntryKind::File => e.size.div_ceil(1024),
            _ => 1,
        })
        .sum();
    let mut lines = meta.description.lines();
    let synopsis = lines.next().unwrap_or("").trim();
    let mut s = format!(
        "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: {}\nInstalled-Size: {kib}\n",
        meta.name, meta.version, meta.arch, meta.maintainer
    );
    if !meta.depends.is_empty() {
        s.push_str(&format!("Depends: {}\n", meta.depends.join(", ")));
    }
    s.push_str("Section: misc\nPriority: optional\n");
    s.push_str(&format!("Description: {synopsis}\n"));
    for l in lines {
        let l = l.trim_end();
        // An empty line would end the stanza; " ." is Debian's blank line.
        s.push_str(if l.trim().is_empty() { " .\n" } else { " " });
        if !l.trim().is_empty() {
            s.push_str(l.trim_start());
            s.push('\n');
        }
    }
    s
}

fn validate(meta: &DebMeta) -> Result<()> {
    let n = &meta.name;
    if n.len() < 2
        || !n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        || !n
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
    {
        bail!("package name {n:?} is not valid for Debian (lowercase letters, digits, + - . ; at least 2 characters, starting with a letter or digit)");
    }
    let v = &meta.version;
    if !v.starts_with(|c: char| c.is_ascii_digit())
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~-:".contains(c))
    {
        bail!("version {v:?} is not valid for Debian (must start with a digit; letters, digits and . + ~ - : only)");
    }
    if meta.arch.is_empty()
        || !meta
            .arch
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        bail!("architecture {:?} is not valid for Debian", meta.arch);
    }
    for (what, value) in [("maintainer", &meta.maintainer)]
        .into_iter()
        .chain(meta.depends.iter().map(|d| ("dependency", d)))
    {
        if value.trim().is_empty() || value.contains(['\n', '\r']) {
            bail!("{what} {value:?} must be one non-empty line");
        }
    }
    Ok(())
}

/// The members of control.tar.gz: `control`, the maintainer scripts that
/// make and purge the state directories, and `conffiles`.
fn control_members(control: &str, meta: &DebMeta, prefix: &str) -> Vec<(String, u32, Vec<u8>)> {
    let prefix = prefix.trim_end_matches('/');
    let mut out = vec![("./control".to_string(), 0o644, control.as_bytes().to_vec())];
    let st = &meta.state;
    if !st.config_files.is_empty() {
        let list: String = st
            .config_files
            .iter()
            .map(|f| format!("{prefix}/{f}\n"))
            .collect();
        out.push(("./conffiles".into(), 0o644, list.into_bytes()));
    }
    if !st.dirs.is_empty() {
        out.push((
            "./postinst".into(),
            0o755,
            pkgscripts::post_install(prefix, st).into_bytes(),
        ));
        out.push((
            "./postrm".into(),
            0o755,
            pkgscripts::deb_postrm(prefix, st).into_bytes(),
        ));
    }
    out
}

fn control_tar_gz(members: &[(String, u32, Vec<u8>)], mtime: u64) -> Result<Vec<u8>> {
    let enc = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::best());
    let mut b = tar::Builder::new(enc);
    let root = ("./".to_string(), 0o755, Vec::new());
    for (i, (path, mode, data)) in std::iter::once(&root).chain(members).enumerate() {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(if i == 0 {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_mode(*mode);
        h.set_size(data.len() as u64);
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        let _ = h.set_username("root");
        let _ = h.set_groupname("root");
        b.append_data(&mut h, path, &data[..])
            .context("cannot write control.tar.gz")?;
    }
    let enc = b.into_inner().context("cannot write control.tar.gz")?;
    enc.finish().context("cannot write control.tar.gz")
}

fn ar_member<W: Write>(out: &mut W, name: &str, mtime: u64, data: &[u8]) -> Result<()> {
    out.write_all(&ar_header(name, mtime, data.len() as u64))?;
    out.write_all(data)?;
    if data.len() % 2 == 1 {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// The 60-byte header of an `ar` member: name, mtime, uid, gid, mode
/// (octal) and size (decimal), space-padded, then the magic "`\n".
fn ar_header(name: &str, mtime: u64, size: u64) -> Vec<u8> {
    let h = format!(
        "{name:<16}{mtime:<12}{:<6}{:<6}{:<8}{size:<10}`\n",
        0, 0, "100644"
    );
    debug_assert_eq!(h.len(), 60);
    h.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> DebMeta {
        DebMeta {
            name: "myapp".into(),
            version: "1.2".into(),
            arch: "amd64".into(),
            maintainer: "me <me@example.com>".into(),
            description: "My app\nLonger text.\n\nMore.".into(),
            depends: vec!["python3.11".into()],
            state: PackageState::default(),
        }
    }

    #[test]
    fn control_has_fields_and_continuation_lines() {
        let c = control_file(&PackSet::default(), &meta());
        assert!(
            c.contains("Package: myapp\nVersion: 1.2\nArchitecture: amd64\n"),
            "{c}"
        );
        assert!(c.contains("Depends: python3.11\n"), "{c}");
        assert!(
            c.ends_with("Description: My app\n Longer text.\n .\n More.\n"),
            "{c}"
        );
    }

    #[test]
    fn bad_metadata_is_refused() {
        for (f, v) in [("name", "My_App"), ("version", "v1"), ("arch", "amd 64")] {
            let mut m = meta();
            match f {
                "name" => m.name = v.into(),
                "version" => m.version = v.into(),
                _ => m.arch = v.into(),
            }
            let e = validate(&m).unwrap_err().to_string();
            assert!(e.contains(v), "{e}");
        }
    }

    #[test]
    fn ar_header_is_60_bytes() {
        let h = ar_header("data.tar.zst", 1_700_000_000, 12345);
        assert_eq!(h.len(), 60);
        assert!(h.ends_with(b"`\n"));
    }
}
