//! One buildout run per tree at a time: an exclusive `flock` on
//! `ROOT/.bbrun/lock`.
//!
//! The lock's file descriptor is inherited by the buildout child (and the
//! processes it starts), so the lock stays held until every process of the
//! run is gone: a bbrun killed with `kill -9` while buildout or pip still
//! write into the tree does not let the next command restore the snapshot
//! under their feet.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use bbrun_map::map::STATE_DIR;

pub fn lock_path(root: &Path) -> PathBuf {
    root.join(STATE_DIR)
        .join(bbrun_ship::autorelocate::LOCK_FILE)
}

/// Take the lock, or fail with a line saying a run is in progress.
pub fn acquire(root: &Path) -> Result<File> {
    match try_acquire(root)? {
        Some(f) => Ok(f),
        None => bail!(
            "{}: another buildout run is in progress in this tree (it holds this lock); wait for it to finish",
            lock_path(root).display()
        ),
    }
}

/// Take the lock if nobody holds it; `None` when a run holds it.
pub fn try_acquire(root: &Path) -> Result<Option<File>> {
    let path = lock_path(root);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Ok(None);
        }
        return Err(err).with_context(|| format!("{}: cannot lock", path.display()));
    }
    Ok(Some(file))
}

/// Let child processes inherit the lock (see the module comment).
pub fn inherit(file: &File) {
    // SAFETY: clearing FD_CLOEXEC on a descriptor we own.
    unsafe {
        libc::fcntl(file.as_raw_fd(), libc::F_SETFD, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_the_first_lets_go() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join(STATE_DIR)).unwrap();
        let first = acquire(d.path()).unwrap();
        assert!(try_acquire(d.path()).unwrap().is_none());
        let msg = format!("{:#}", acquire(d.path()).unwrap_err());
        assert!(msg.contains("another buildout run is in progress"), "{msg}");
        drop(first);
        assert!(try_acquire(d.path()).unwrap().is_some());
    }
}
