//! What makes the same tree pack to the same bytes: one timestamp for every
//! entry and every container header, owner root:root (uid/gid 0), entries
//! in sorted order, compressors without timestamps, names or a thread-count
//! dependent layout.
//!
//! The timestamp is `SOURCE_DATE_EPOCH` when set (the reproducible-builds
//! convention), else the newest mtime in the tree: an unchanged tree packs
//! to the same bytes, and touching any file changes them.

use anyhow::{bail, Result};

use crate::walk::{self, TreeItem};

/// The environment variable that fixes the archive timestamp.
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// The mtime every entry of an archive of `items` gets.
pub fn archive_mtime(items: &[TreeItem]) -> Result<i64> {
    match std::env::var(SOURCE_DATE_EPOCH) {
        Ok(v) if !v.trim().is_empty() => parse_epoch(&v),
        _ => Ok(walk::newest_mtime(items)),
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
    fn epoch_must_be_a_plain_number() {
        assert_eq!(parse_epoch(" 1700000000 ").unwrap(), 1_700_000_000);
        for bad in ["-1", "x", "1e9", "99999999999"] {
            let e = parse_epoch(bad).unwrap_err().to_string();
            assert!(e.starts_with("SOURCE_DATE_EPOCH="), "{e}");
        }
    }
}
