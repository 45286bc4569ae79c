//! Directories the launcher loads code or cached answers from, made safe.
//!
//! The launcher often runs as root, and what it puts on PYTHONPATH runs
//! with its privileges. A cache directory another user can write (a
//! pre-created `/tmp/bbrun-0`, mode 0777) would let that user run code as
//! root; a symlinked one would redirect our writes. So a cache directory is
//! used only when it is owned by the caller (or root) and not writable by
//! group or others, and every directory above it is owned by the caller or
//! root and not writable by others unless sticky (`/tmp`), so it cannot be
//! swapped. It is created race-free: `mkdir(0700)`, then opened with
//! `O_NOFOLLOW|O_DIRECTORY` and checked with `fstat` on the open
//! descriptor, so a symlink or a directory planted in between is seen.
//!
//! Where: `$BBRUN_CACHE_DIR` (an explicit choice: used or refused, never
//! silently replaced), else the first safe of `$XDG_CACHE_HOME/bbrun`,
//! `$HOME/.cache/bbrun`, `${TMPDIR:-/tmp}/bbrun-UID`.

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

const ADVICE: &str = "set BBRUN_CACHE_DIR to a directory owned by you and writable only by you";

/// The candidates in order; `explicit` is whether it came from
/// `$BBRUN_CACHE_DIR`.
pub fn candidates() -> (Vec<PathBuf>, bool) {
    if let Some(d) = std::env::var_os("BBRUN_CACHE_DIR").filter(|d| !d.is_empty()) {
        return (vec![PathBuf::from(d)], true);
    }
    let mut out = Vec::new();
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        out.push(PathBuf::from(d).join("bbrun"));
    }
    if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        out.push(PathBuf::from(h).join(".cache/bbrun"));
    }
    let tmp = std::env::var_os("TMPDIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    out.push(tmp.join(format!("bbrun-{}", nix::unistd::geteuid())));
    (out, false)
}

/// The first safe cache directory, created if missing; or one line saying
/// why none is.
pub fn cache_dir() -> Result<PathBuf> {
    let (cands, explicit) = candidates();
    let mut why = Vec::new();
    for c in &cands {
        match ensure(c) {
            Ok(()) => return Ok(c.clone()),
            Err(e) => why.push(format!("{e:#}")),
        }
    }
    if explicit {
        bail!("{} (BBRUN_CACHE_DIR); {ADVICE}", why.join("; "));
    }
    bail!("no safe cache directory: {}; {ADVICE}", why.join("; "))
}

/// The first candidate that exists and is safe, without creating any:
/// for readers, which need nothing when there is no cache yet.
pub fn existing_cache_dir() -> Option<PathBuf> {
    candidates()
        .0
        .into_iter()
        .find(|c| c.is_dir() && ensure(c).is_ok())
}

/// Create `dir` (and missing parents) with mode 0700, or check the one
/// there. Safe means: a real directory (not a symlink), owned by us or
/// root, not writable by group or others; every ancestor owned by us or
/// root and not writable by others unless sticky.
pub fn ensure(dir: &Path) -> Result<()> {
    if !dir.is_absolute() {
        bail!("{}: not an absolute path", dir.display());
    }
    // Every launch comes here: the common case, a directory made before,
    // costs one `stat` per ancestor and one `open`. Missing ones are made
    // and then checked like the rest.
    if let Some(parent) = dir.parent() {
        if check_ancestors(parent).is_err() {
            create_missing(parent)?;
            check_ancestors(parent)?;
        }
    }
    let f = match open_nofollow(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => bail!("{}: cannot create ({e})", dir.display()),
            }
            open_dir_nofollow(dir)?
        }
        opened => opened.map_err(|e| open_error(dir, e))?,
    };
    let m = f
        .metadata()
        .map_err(|e| anyhow::anyhow!("{}: cannot stat ({e})", dir.display()))?;
    check_owner(dir, m.uid())?;
    if m.mode() & 0o022 != 0 {
        bail!(
            "{}: writable by group or others (mode {:04o}); not used",
            dir.display(),
            m.mode() & 0o7777
        );
    }
    Ok(())
}

/// Open a directory without following a final symlink.
pub fn open_dir_nofollow(dir: &Path) -> Result<File> {
    open_nofollow(dir).map_err(|e| open_error(dir, e))
}

fn open_nofollow(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
}

fn open_error(dir: &Path, e: std::io::Error) -> anyhow::Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
            anyhow::anyhow!("{}: a symlink or not a directory; not used", dir.display())
        }
        _ => anyhow::anyhow!("{}: cannot open ({e})", dir.display()),
    }
}

fn create_missing(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| anyhow::anyhow!("{}: cannot create ({e})", dir.display()))
}

fn check_owner(path: &Path, uid: u32) -> Result<()> {
    let me = nix::unistd::geteuid().as_raw();
    if uid != me && uid != 0 {
        bail!(
            "{}: owned by uid {uid}, not by you (uid {me}) or root; not used",
            path.display()
        );
    }
    Ok(())
}

/// Every directory from `dir` up to `/`: owned by us or root, and not
/// writable by others unless sticky (then nobody else can rename what we
/// own in it).
fn check_ancestors(dir: &Path) -> Result<()> {
    for a in dir.ancestors() {
        let m = std::fs::metadata(a)
            .map_err(|e| anyhow::anyhow!("{}: cannot stat ({e})", a.display()))?;
        check_owner(a, m.uid())?;
        let sticky = m.mode() & 0o1000 != 0;
        if m.mode() & 0o002 != 0 && !sticky {
            bail!(
                "{}: writable by others and not sticky (mode {:04o}); directories under it are not used",
                a.display(),
                m.mode() & 0o7777
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_0700_and_accepts_again() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b/cache");
        ensure(&d).unwrap();
        let m = std::fs::metadata(&d).unwrap();
        assert_eq!(m.mode() & 0o777, 0o700);
        ensure(&d).unwrap();
    }

    #[test]
    fn refuses_loose_modes_and_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("loose");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let msg = format!("{:#}", ensure(&d).unwrap_err());
        assert!(msg.contains("writable by group or others"), "{msg}");
        let l = t.path().join("link");
        std::os::unix::fs::symlink(t.path(), &l).unwrap();
        let msg = format!("{:#}", ensure(&l).unwrap_err());
        assert!(msg.contains("symlink"), "{msg}");
    }

    #[test]
    fn world_writable_ancestor_without_sticky_refused() {
        let t = tempfile::tempdir().unwrap();
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(ensure(&open.join("c")).is_err());
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        ensure(&open.join("c")).unwrap();
    }
}
