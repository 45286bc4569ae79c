//! What makes the same tree pack to the same bytes: owner root:root
//! (uid/gid 0), entries in sorted order, compressors without timestamps,
//! names or a thread-count dependent layout, and fixed timestamps.
//!
//! Entries keep their own mtimes, clamped to `SOURCE_DATE_EPOCH` when it is
//! set (the reproducible-builds convention, as `tar --clamp-mtime`). They
//! are not all set to one time: CPython checks a `.pyc` against its
//! source's mtime, so flattening mtimes would make every byte-compiled
//! module of the tree stale after install — recompiled on every import in
//! a read-only install, rewritten (and then reported by `bbrun verify`) in
//! a writable one. Container headers (ar members, the rpm build time) and
//! entries the packer adds use `SOURCE_DATE_EPOCH`, else the newest mtime
//! in the tree: an unchanged tree packs to the same bytes.

use anyhow::{bail, Result};

use crate::walk::{self, TreeItem};

/// The environment variable that fixes the archive timestamp.
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// The mtime every entry of an archive of `items` gets.
pub fn archive_mtime(items: &[TreeItem]) -> Result<i64> {
    Ok(archive_mtime_of(
        source_date_epoch()?,
        walk::newest_mtime(items),
    ))
}

/// The archive's mtime: `SOURCE_DATE_EPOCH` (`epoch`) when set, else the
/// newest mtime among the tree's entries (`newest`; never before 1970).
pub fn archive_mtime_of(epoch: Option<i64>, newest: i64) -> i64 {
    epoch.unwrap_or(newest.max(0))
}

/// `SOURCE_DATE_EPOCH`, if set.
pub fn source_date_epoch() -> Result<Option<i64>> {
    match std::env::var(SOURCE_DATE_EPOCH) {
        Ok(v) if !v.trim().is_empty() => parse_epoch(&v).map(Some),
        _ => Ok(None),
    }
}

/// An entry's archive mtime: its own, no later than the epoch when set,
/// and never before 1970 (tar and rpm store unsigned times).
pub fn entry_mtime(mtime: i64, clamp: Option<i64>) -> i64 {
    let t = mtime.max(0);
    match clamp {
        Some(c) => t.min(c),
        None => t,
    }
}

fn parse_epoch(v: &str) -> Result<i64> {
    match v.trim().parse::<i64>() {
        // rpm stores 32-bit times; refusing more keeps all formats agreeing.
        Ok(t) if (0..=i64::from(u32::MAX)).contains(&t) => Ok(t),
        _ => bail!(
            "{SOURCE_DATE_EPOCH}={v:?} is not a number of seconds since 1970 (0 to {})",
            u32::MAX
        ),
    }
}

/// zstd workers: always at least one, so the output is the same however
/// many threads run. zstd's multi-threaded mode cuts the input into jobs
/// by size alone; only `nbWorkers = 0` (single-threaded) lays it out
/// differently, and we never use it.
pub fn zstd_workers() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
        .clamp(1, 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_mtimes_are_clamped_not_flattened() {
        assert_eq!(entry_mtime(100, None), 100);
        assert_eq!(entry_mtime(100, Some(50)), 50);
        assert_eq!(entry_mtime(10, Some(50)), 10);
        assert_eq!(entry_mtime(-5, None), 0);
    }

    #[test]
    fn epoch_must_be_a_plain_number() {
        assert_eq!(parse_epoch(" 1700000000 ").unwrap(), 1_700_000_000);
        for bad in ["-1", "x", "1e9", "99999999999"] {
            let e = parse_epoch(bad).unwrap_err().to_string();
            assert!(e.starts_with("SOURCE_DATE_EPOCH="), "{e}");
        }
    }
}
