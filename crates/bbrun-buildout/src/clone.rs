//! Copying a directory tree for the snapshot, as cheaply as the filesystem
//! allows, keeping modes, owners, times and symlinks.
//!
//! Per regular file, in order:
//! 1. a reflink (`FICLONE`: btrfs, XFS, bcachefs...): shares the blocks,
//!    copy-on-write, so later writes to either side leave the other intact;
//! 2. a hard link, only for ELF files of 1 MiB or more: buildout, recipes
//!    and pip replace compiled libraries by unlink/rename (an rmtree of the
//!    part, a new egg moved into place), never by rewriting them in place.
//!    A recipe that did rewrite one in place would change the snapshot too;
//!    that is the documented limit of this fallback;
//! 3. a copy (`copy_file_range` under `std::io::copy`) for everything else:
//!    scripts and configs are rewritten in place by buildout
//!    (`open(path, 'w')` on the same inode), so they must not share one.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// `_IOW(0x94, 9, int)`.
const FICLONE: libc::c_ulong = 0x4004_9409;
const HARD_LINK_MIN: u64 = 1024 * 1024;

/// What a snapshot cost.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CloneStats {
    pub files: u64,
    pub bytes: u64,
    pub reflinked: u64,
    pub hard_linked: u64,
    pub copied: u64,
    pub copied_bytes: u64,
}

/// Copy `src` (file, symlink or directory) to `dst`, which must not exist.
pub fn clone_entry(src: &Path, dst: &Path, stats: &mut CloneStats) -> Result<()> {
    let meta =
        fs::symlink_metadata(src).with_context(|| format!("{}: cannot stat", src.display()))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target =
            fs::read_link(src).with_context(|| format!("{}: cannot read link", src.display()))?;
        std::os::unix::fs::symlink(&target, dst)
            .with_context(|| format!("{}: cannot create", dst.display()))?;
    } else if ft.is_dir() {
        fs::create_dir(dst).with_context(|| format!("{}: cannot create", dst.display()))?;
        let mut names: Vec<_> = fs::read_dir(src)
            .with_context(|| format!("{}: cannot list", src.display()))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        for name in names {
            clone_entry(&src.join(&name), &dst.join(&name), stats)?;
        }
        finish(dst, &meta)?;
    } else if ft.is_file() {
        clone_file(src, dst, &meta, stats)?;
    }
    // Sockets and fifos in bin/ or parts/ are run-time state, not output.
    Ok(())
}

fn clone_file(src: &Path, dst: &Path, meta: &fs::Metadata, stats: &mut CloneStats) -> Result<()> {
    stats.files += 1;
    stats.bytes += meta.len();
    let mut from = File::open(src).with_context(|| format!("{}: cannot read", src.display()))?;
    if meta.len() >= HARD_LINK_MIN && is_elf(&mut from) {
        fs::hard_link(src, dst).with_context(|| format!("{}: cannot link", dst.display()))?;
        stats.hard_linked += 1;
        return Ok(());
    }
    let to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)
        .with_context(|| format!("{}: cannot create", dst.display()))?;
    // SAFETY: both descriptors are open; FICLONE only reads the source fd.
    let cloned = unsafe { libc::ioctl(to.as_raw_fd(), FICLONE as _, from.as_raw_fd()) } == 0;
    if cloned {
        stats.reflinked += 1;
    } else {
        let mut from =
            File::open(src).with_context(|| format!("{}: cannot read", src.display()))?;
        let mut to_w = &to;
        std::io::copy(&mut from, &mut to_w)
            .with_context(|| format!("{}: cannot copy to {}", src.display(), dst.display()))?;
        stats.copied += 1;
        stats.copied_bytes += meta.len();
    }
    drop(to);
    finish(dst, meta)
}

fn is_elf(f: &mut File) -> bool {
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic).is_ok() && &magic == b"\x7fELF"
}

/// Mode, owner and times of `meta` onto `dst`.
fn finish(dst: &Path, meta: &fs::Metadata) -> Result<()> {
    let _ = std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()));
    fs::set_permissions(
        dst,
        fs::Permissions::from_mode(meta.permissions().mode() & 0o7777),
    )
    .with_context(|| format!("{}: cannot set mode", dst.display()))?;
    let times = fs::FileTimes::new()
        .set_accessed(meta.accessed().unwrap_or(std::time::SystemTime::now()))
        .set_modified(meta.modified().unwrap_or(std::time::SystemTime::now()));
    // Directories open read-only; setting times needs no write access.
    if let Ok(f) = File::open(dst) {
        let _ = f.set_times(times);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_files_links_and_modes_and_links_big_elf_files() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/script"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("sub/script"), fs::Permissions::from_mode(0o751)).unwrap();
        std::os::unix::fs::symlink("sub/script", src.join("link")).unwrap();
        let mut elf = b"\x7fELF".to_vec();
        elf.resize(HARD_LINK_MIN as usize, 7);
        fs::write(src.join("big.so"), &elf).unwrap();
        let mut stats = CloneStats::default();
        clone_entry(&src, &d.path().join("dst"), &mut stats).unwrap();
        let dst = d.path().join("dst");
        assert_eq!(fs::read(dst.join("sub/script")).unwrap(), b"#!/bin/sh\n");
        let mode = fs::metadata(dst.join("sub/script"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o751);
        assert_eq!(
            fs::read_link(dst.join("link")).unwrap(),
            Path::new("sub/script")
        );
        assert_eq!(
            fs::metadata(dst.join("big.so")).unwrap().ino(),
            fs::metadata(src.join("big.so")).unwrap().ino()
        );
        assert_eq!(stats.files, 2);
        assert_eq!(stats.hard_linked, 1);
        // A small file is never shared: writing the copy leaves the source.
        fs::write(dst.join("sub/script"), "changed").unwrap();
        assert_eq!(fs::read(src.join("sub/script")).unwrap(), b"#!/bin/sh\n");
    }
}
