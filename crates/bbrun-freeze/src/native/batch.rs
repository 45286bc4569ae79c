//! Replacing many files atomically with two syncs instead of two per file.
//!
//! `fsutil::atomic_write` fsyncs each temp file and its directory: right
//! for one file, but on a tree of hundreds of extension modules the
//! fsyncs are nearly all of freeze's native pass. A batch keeps the same
//! guarantees (a reader sees the old file or the whole new one, never a
//! part; mode and owner kept; nothing half-written left behind on error)
//! and orders the work as: write every temp file, `syncfs` each
//! filesystem once (the new contents are durable before any rename), rename
//! them all, `syncfs` again (the renames are durable).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use bbrun_util::fsutil;

/// Threads renaming a large batch.
const RENAME_THREADS: usize = 4;

#[derive(Default)]
pub struct Batch {
    /// (temp file, target), in the order staged.
    pending: Vec<(PathBuf, PathBuf)>,
    /// One directory per filesystem touched, to syncfs through.
    filesystems: BTreeMap<u64, PathBuf>,
}

impl Batch {
    /// Write `bytes` beside `path`; it replaces `path` at `commit`.
    pub fn stage(&mut self, path: &Path, bytes: &[u8]) -> Result<()> {
        let meta = fs::symlink_metadata(path)
            .with_context(|| format!("{}: cannot stat", path.display()))?;
        let mode = meta.permissions().mode() & 0o7777;
        // Unsynced: `commit` syncs each filesystem once for the batch.
        let tmp =
            fsutil::write_temp_sibling(path, bytes, mode, Some((meta.uid(), meta.gid())), false)?;
        let dir = tmp.parent().unwrap_or(Path::new(".")).to_path_buf();
        self.filesystems.entry(meta.dev()).or_insert(dir);
        self.pending.push((tmp, path.to_path_buf()));
        Ok(())
    }

    /// Make every staged file durable, then replace the targets.
    pub fn commit(mut self) -> Result<()> {
        self.sync()?;
        let pending = std::mem::take(&mut self.pending);
        // Renames over existing files are journal work the filesystem can
        // overlap (ext4 measured 4-6x faster with 4 threads), so a large
        // batch is split over a few threads, each file still renamed once.
        let threads = pending.len().div_ceil(64).clamp(1, RENAME_THREADS);
        let chunk = pending.len().div_ceil(threads).max(1);
        let failed: Vec<anyhow::Error> = std::thread::scope(|scope| {
            let workers: Vec<_> = pending
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || -> Result<()> {
                        for (tmp, path) in part {
                            fs::rename(tmp, path)
                                .with_context(|| format!("{}: cannot replace", path.display()))?;
                        }
                        Ok(())
                    })
                })
                .collect();
            workers
                .into_iter()
                .filter_map(|w| match w.join() {
                    Ok(r) => r.err(),
                    Err(_) => Some(anyhow::anyhow!("rename thread failed")),
                })
                .collect()
        });
        if let Some(e) = failed.into_iter().next() {
            // Temp files not renamed are removed; the renamed ones are whole
            // new files.
            for (tmp, _) in &pending {
                let _ = fs::remove_file(tmp);
            }
            return Err(e);
        }
        self.sync()
    }

    fn sync(&self) -> Result<()> {
        for dir in self.filesystems.values() {
            let d = File::open(dir).with_context(|| format!("{}: cannot open", dir.display()))?;
            nix::unistd::syncfs(&d)
                .with_context(|| format!("{}: cannot sync the filesystem", dir.display()))?;
        }
        Ok(())
    }
}

impl Drop for Batch {
    /// A batch dropped before `commit` (an error elsewhere) leaves no temp
    /// files behind.
    fn drop(&mut self) {
        for (tmp, _) in &self.pending {
            let _ = fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_replaces_all_and_keeps_modes() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.so");
        let b = d.path().join("b.so");
        fs::write(&a, b"old a").unwrap();
        fs::write(&b, b"old b").unwrap();
        fs::set_permissions(&a, fs::Permissions::from_mode(0o755)).unwrap();
        let mut batch = Batch::default();
        batch.stage(&a, b"new a").unwrap();
        batch.stage(&b, b"new b").unwrap();
        // Staged, not yet visible.
        assert_eq!(fs::read(&a).unwrap(), b"old a");
        batch.commit().unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"new a");
        assert_eq!(fs::read(&b).unwrap(), b"new b");
        assert_eq!(
            fs::metadata(&a).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 2);
    }

    #[test]
    fn dropped_batch_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.so");
        fs::write(&a, b"old").unwrap();
        let mut batch = Batch::default();
        batch.stage(&a, b"new").unwrap();
        drop(batch);
        assert_eq!(fs::read(&a).unwrap(), b"old");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
