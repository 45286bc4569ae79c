//! Small filesystem helpers shared by every command: atomic writes, hashing
//! and lexical path arithmetic.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// Write `bytes` to `path` so that readers see either the old file or the
/// whole new one: write a temp file beside it, fsync, rename, fsync the dir.
/// An existing file keeps its mode and owner; `mode` applies to new files.
pub fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let existing = fs::symlink_metadata(path).ok();
    let mode = existing
        .as_ref()
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(mode);
    let owner = existing.as_ref().map(|m| (m.uid(), m.gid()));
    let tmp = write_temp_sibling(path, bytes, mode, owner, true)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("{}: cannot replace", path.display()));
    }
    sync_dir(parent_dir(path));
    Ok(())
}

/// A new temp file beside `path` (see [`temp_sibling`]) holding `bytes`,
/// with exactly `mode` and, where it differs from ours and we may, the
/// `owner` (uid, gid). With `sync` its content is on disk when this
/// returns; without, the caller syncs (a batch syncs once for many). On
/// error nothing is left behind.
pub fn write_temp_sibling(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
    sync: bool,
) -> Result<PathBuf> {
    let tmp = temp_sibling(path);
    let result = (|| -> Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("{}: cannot create temporary file", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("{}: cannot write", tmp.display()))?;
        // The umask may have narrowed the mode; set it exactly (on the open
        // file: no second path lookup).
        f.set_permissions(fs::Permissions::from_mode(mode))
            .with_context(|| format!("{}: cannot set mode", tmp.display()))?;
        if let Some((uid, gid)) = owner {
            let ours = (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            );
            if (uid, gid) != ours {
                // Keep ownership when we can (root rewriting a user's
                // tree); a non-root user cannot chown and owns it already.
                let _ = std::os::unix::fs::fchown(&f, Some(uid), Some(gid));
            }
        }
        if sync {
            f.sync_all()
                .with_context(|| format!("{}: cannot write", tmp.display()))?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// `dir/.name.bbrun-tmp.PID`: beside the target so rename stays on one
/// filesystem, hidden, and unique per process.
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent_dir(path).join(format!(".{name}.bbrun-tmp.{}", std::process::id()))
}

/// What a killed bbrun run may leave behind: temp files
/// (`NAME.bbrun-tmp.PID`), relocate's pending files (`.NAME.bbrun-relocate`),
/// install's staging and backup directories (`.NAME.bbrun-staging.PID`,
/// `.NAME.bbrun-old.PID`). Never part of a tree: no archive or manifest
/// lists them, and the next run of the command removes them.
pub fn is_debris(name: &str) -> bool {
    let pid_suffix = |marker: &str| {
        name.rsplit_once(marker)
            .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
    };
    pid_suffix(".bbrun-tmp.")
        || (name.starts_with('.')
            && (name.ends_with(".bbrun-relocate")
                || pid_suffix(".bbrun-staging.")
                || pid_suffix(".bbrun-old.")))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Give `path` (not following a symlink) the access and modification times
/// in `meta`: copies keep mtimes so byte-code caches and buildout's
/// signatures stay valid.
pub fn copy_times(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let atime = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .with_context(|| format!("{}: cannot set times", path.display()))
}

/// sha256 of a file's content, read in chunks; the manifest's hash
/// (bbrun_archive re-exports this one), so a hash bbrun prints always
/// matches one it checks.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut h = Sha256::new();
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    read_chunks(&mut f, path, size, |chunk| {
        h.update(chunk);
        Ok(true)
    })?;
    Ok(hex(&h.finalize()))
}

/// Read `f` (opened from `path`, about `size` bytes) to its end in chunks
/// handed to `each`, which returns whether to go on. The buffer is sized
/// to the file: a fresh 256 KiB buffer per small file costs an mmap/munmap
/// pair each, which shows on 30k files.
pub fn read_chunks(
    f: &mut File,
    path: &Path,
    size: u64,
    mut each: impl FnMut(&[u8]) -> Result<bool>,
) -> Result<()> {
    let mut buf = vec![0u8; (size as usize + 1).min(256 * 1024)];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        if n == 0 || !each(&buf[..n])? {
            return Ok(());
        }
    }
}

/// fsync a directory so a rename in it survives a crash. Best effort: some
/// filesystems refuse fsync on directories.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex; by table, not `format!`: pack hexes a digest for every
/// file of the tree.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Make `path` absolute against the current directory and drop `.` and `..`
/// lexically, without resolving symlinks: the launcher must keep the path
/// the user typed (a symlinked deploy dir stays symlinked in `sys.path`).
pub fn absolute_lexical(path: &Path) -> Result<PathBuf> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .context("cannot read the current directory")?
            .join(path)
    };
    Ok(normalize(&joined))
}

/// Drop `.` and resolve `..` lexically.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `path` relative to `base` when it lies inside it.
pub fn relative_inside(path: &str, base: &str) -> Option<String> {
    // The rest of a str after an ASCII `/` is itself valid UTF-8.
    let rest = relative_inside_bytes(path.as_bytes(), base.as_bytes())?;
    std::str::from_utf8(rest).ok().map(str::to_string)
}

/// A file name as text for the names bbrun derives from it (`.DEST.bbrun-prev`,
/// staging dirs, journals), one-to-one so two destinations never share
/// them: a UTF-8 name without `%` is itself; any other has `%` and each
/// byte that is not UTF-8 written `%XX` (so it holds a `%` and cannot equal
/// a name of the first kind).
pub fn name_key(name: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    if let Some(s) = name.to_str().filter(|s| !s.contains('%')) {
        return s.to_string();
    }
    percent_escape(name.as_bytes())
}

/// `bytes` as text: valid UTF-8 kept, `%` and every other byte as `%XX`.
/// Undone by [`percent_unescape`].
pub fn percent_escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '%' => out.push_str("%25"),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The bytes [`percent_escape`] wrote; `None` for a bad `%XX`.
pub fn percent_unescape(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = [bytes.next()?, bytes.next()?];
        out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
    }
    Some(out)
}

/// [`relative_inside`] on bytes: the part of `path` below `base`.
pub fn relative_inside_bytes<'a>(path: &'a [u8], base: &[u8]) -> Option<&'a [u8]> {
    let mut base = base;
    while let Some(b) = base.strip_suffix(b"/") {
        base = b;
    }
    if path == base {
        return Some(b"");
    }
    path.strip_prefix(base)?.strip_prefix(b"/")
}

/// First index of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    let first = needle[0];
    let last_start = haystack.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match haystack[i..=last_start].iter().position(|&b| b == first) {
            Some(p) => {
                i += p;
                if &haystack[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
            None => return None,
        }
    }
    None
}

/// `remove_dir_all` that also copes with read-only directories (an
/// archive may hold some; unprivileged users cannot empty them as they
/// are). Symlinks are removed, never followed.
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    for e in walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        if e.file_type().is_dir() {
            let _ = fs::set_permissions(e.path(), fs::Permissions::from_mode(0o700));
        }
    }
    fs::remove_dir_all(path)
}

/// A directory with [`remove_tree`], anything else (a file, a symlink)
/// with `remove_file`.
pub fn remove_tree_or_file(path: &Path) -> std::io::Result<()> {
    if fs::symlink_metadata(path)?.is_dir() {
        remove_tree(path)
    } else {
        fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff, 0x10]), "000fa5ff10");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn atomic_write_replaces_and_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        atomic_write(&p, b"new", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }

    #[test]
    fn atomic_write_into_missing_dir_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let err = atomic_write(&dir.path().join("no/such/f"), b"x", 0o644).unwrap_err();
        assert!(format!("{err:#}").contains("cannot create temporary file"));
    }

    #[test]
    fn relative_inside_only_for_descendants() {
        assert_eq!(relative_inside("/a/b/c", "/a/b").as_deref(), Some("c"));
        assert_eq!(relative_inside("/a/bc", "/a/b"), None);
        assert_eq!(relative_inside("/a/b", "/a/b/").as_deref(), Some(""));
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    }
}
