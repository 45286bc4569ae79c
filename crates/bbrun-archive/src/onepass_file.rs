//! The one-pass archive written straight into a regular file: the tail
//! streams to its final place while it is compressed, instead of waiting in
//! memory to be copied out after the head.
//!
//! [`crate::onepass`] must hold the compressed tail until the head (which
//! ends with the manifest, known only once every file is hashed) is
//! written. Copying tens of megabytes out at the end is work no core
//! overlaps with anything: on a 2-core machine it was the gap between
//! `bbrun pack` and `tar | zstd`. A file can be written out of order, so
//! here the tail starts at an offset reserved for the head, and the head
//! goes in front of it at the end. The head's compressed size is known in
//! advance closely: a trial compression with a stand-in manifest of the
//! same length (sha256 hex of each path instead of its content's) is
//! within a few bytes of the real one. The bytes left between head and
//! tail become a zstd skippable frame, which every zstd decoder passes
//! over, so the file is still one valid zstd stream of the same tar. Should
//! the real head not fit, the tail is moved up to make room (rare, and
//! still correct).
//!
//! The output depends only on the input (a trial compression is as
//! deterministic as the real one), so archives stay reproducible.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::manifest::{hex, EntryKind, Manifest};
use crate::onepass::{write_with_manifest, Plan};
use crate::packset::{PackSet, Progress};
use crate::tarball::Compression;

/// Magic of the zstd skippable frame that fills the reserve (any of
/// 0x184D2A50..=0x184D2A5F; the first is the usual choice).
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
/// Header of a skippable frame: magic and content length, little-endian.
const SKIPPABLE_HEADER: u64 = 8;

/// Write `set` with its manifest as a compressed tar into `file` (empty,
/// at offset 0); returns the manifest. zstd writes the tail in place;
/// gzip, which has no skippable frame, goes through [`write_with_manifest`].
pub fn write_with_manifest_to_file(
    set: &PackSet,
    compression: Compression,
    file: &mut File,
    progress: Progress,
) -> Result<Manifest> {
    write_in_place(set, compression, file, progress, 0)
}

/// [`write_with_manifest_to_file`], with the reserve made `short_by` bytes
/// smaller than the estimate (tests force the tail to move).
fn write_in_place(
    set: &PackSet,
    compression: Compression,
    file: &mut File,
    progress: Progress,
    short_by: u64,
) -> Result<Manifest> {
    if !matches!(compression, Compression::Zstd(_)) {
        let mut out = BufWriter::with_capacity(1 << 20, &mut *file);
        let (_, manifest) = write_with_manifest(set, compression, &mut out, progress)?;
        finish(out)?;
        return Ok(manifest);
    }
    let plan = Plan::new(set)?;
    let pos = |file: &mut File| file.stream_position().context("cannot seek in the archive");

    // The entries before the manifest (.bbrun/: index, shim, collected
    // prefixes), streamed and hashed first: their content needs no hash.
    // The manifest's reserve is estimated meanwhile, on another thread (a
    // trial compression: ~15 ms on 30k entries, else spent waiting).
    let (head_hashes, reserve) = std::thread::scope(|s| -> Result<_> {
        let reserve = s.spawn(|| reserve_for_manifest(&plan, compression));
        let out = BufWriter::with_capacity(1 << 20, &mut *file);
        let (out, head_hashes) = plan.before_manifest(compression, out, progress)?;
        finish(out)?;
        let reserve = reserve
            .join()
            .map_err(|_| anyhow::anyhow!("estimating the manifest's size failed"))??;
        Ok((head_hashes, reserve.saturating_sub(short_by)))
    })?;
    let slot = pos(file)?;

    // The tail, streamed to its final place behind the manifest's slot.
    let (end, tail_hashes) = with_syncer(file, |sync| {
        let out =
            BufWriter::with_capacity(1 << 20, EarlyWriteback::new(&*file, slot + reserve, sync));
        let (out, tail_hashes) = plan.tail(compression, out, progress)?;
        let end = out
            .into_inner()
            .map_err(|e| e.into_error())
            .context("cannot write the archive")?
            .at;
        Ok((end, tail_hashes))
    })?;

    // The manifest, now that every hash is known, into its slot.
    let mut hashes = head_hashes;
    hashes.push(None);
    hashes.extend(tail_hashes);
    let manifest = plan.manifest(hashes);
    let frame = plan.compress_manifest_entry(compression, &manifest)?;
    let need = frame.len() as u64 + SKIPPABLE_HEADER;
    let moved = if need <= reserve {
        0
    } else {
        // The stand-in guessed short: move the tail up to make room.
        move_up(file, slot + reserve, end, slot + need)?;
        need - reserve
    };
    let gap = reserve + moved - need;
    let mut bytes = frame;
    bytes.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
    bytes.extend_from_slice(
        &u32::try_from(gap)
            .context("manifest reserve too large")?
            .to_le_bytes(),
    );
    file.write_all_at(&bytes, slot)
        .context("cannot write the archive")?;
    // The gap itself was never written: a hole, read as zeros, the
    // skippable frame's content. Leave the file offset at the end.
    file.seek(SeekFrom::Start(end + moved))
        .context("cannot seek in the archive")?;
    Ok(manifest)
}

/// A writer that has the file's data made durable as it goes: every
/// [`WRITEBACK_CHUNK`] bytes it asks a syncing thread for an `fdatasync`
/// (skipped while one is still running), so the archive's final fsync
/// finds little left to do. tar does not fsync at all; on an ext4 VM disk
/// the fsync of a fresh 74 MB archive took ~100 ms when it all waited for
/// the end, even with the data already written back
/// (`sync_file_range` only writes data: the cost is committing the new
/// file's block allocations). Synced as it grows, the last fsync takes
/// ~6 ms. The writing thread never waits for a sync.
struct EarlyWriteback<'a> {
    file: &'a File,
    /// Offset the next write lands at.
    at: u64,
    /// Offset at the last sync request.
    asked: u64,
    /// To the syncing thread; full while a sync runs.
    sync: std::sync::mpsc::SyncSender<()>,
}

/// Bytes between sync requests.
const WRITEBACK_CHUNK: u64 = 8 << 20;

impl<'a> EarlyWriteback<'a> {
    fn new(file: &'a File, at: u64, sync: std::sync::mpsc::SyncSender<()>) -> Self {
        EarlyWriteback {
            file,
            at,
            asked: at,
            sync,
        }
    }
}

/// Run `body` with a channel whose messages each ask for an `fdatasync`
/// of `file` on a thread of its own; returns once the last one is done.
/// A failed sync here is not an error: the final fsync reports it.
fn with_syncer<T>(
    file: &File,
    body: impl FnOnce(std::sync::mpsc::SyncSender<()>) -> Result<T>,
) -> Result<T> {
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(0);
        s.spawn(move || {
            for () in rx {
                let _ = file.sync_data();
            }
        });
        body(tx)
    })
}

impl Write for EarlyWriteback<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write_at(buf, self.at)?;
        self.at += n as u64;
        // A full channel means a sync is running: ask again later.
        if self.at - self.asked >= WRITEBACK_CHUNK && self.sync.try_send(()).is_ok() {
            self.asked = self.at;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn finish(mut out: BufWriter<&mut File>) -> Result<()> {
    out.flush().context("cannot write the archive")
}

/// Bytes to reserve for the manifest's compressed frame and the skippable
/// frame's header: a trial compression with a stand-in manifest of the
/// same length (sha256 hex of each path), plus a margin for the hex
/// digits' different statistics.
fn reserve_for_manifest(plan: &Plan, compression: Compression) -> Result<u64> {
    let stand_in: Vec<Option<String>> = plan
        .entries()
        .map(|e| match e.kind {
            EntryKind::File => Some(hex(&Sha256::digest(e.path.as_bytes()))),
            _ => None,
        })
        .collect();
    let manifest = plan.manifest(stand_in);
    let trial = plan.compress_manifest_entry(compression, &manifest)?.len() as u64;
    Ok(trial + trial / 64 + 4096 + SKIPPABLE_HEADER)
}

/// Move the bytes `from..end` of `file` to start at `to` (> `from`), from
/// the last chunk back so nothing is overwritten before it is read.
fn move_up(file: &File, from: u64, end: u64, to: u64) -> Result<()> {
    const CHUNK: u64 = 1 << 20;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut hi = end;
    while hi > from {
        let lo = hi.saturating_sub(CHUNK).max(from);
        let chunk = &mut buf[..(hi - lo) as usize];
        file.read_exact_at(chunk, lo)
            .context("cannot read back the archive")?;
        file.write_all_at(chunk, lo + (to - from))
            .context("cannot write the archive")?;
        hi = lo;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    use crate::onepass::tests::{decompress, tree};

    fn unzstd(bytes: &[u8]) -> Vec<u8> {
        decompress(Compression::Zstd(3), bytes)
    }

    fn to_file(set: &PackSet, c: Compression) -> (Vec<u8>, Manifest) {
        to_file_short(set, c, 0)
    }

    fn to_file_short(set: &PackSet, c: Compression, short_by: u64) -> (Vec<u8>, Manifest) {
        let mut f = tempfile::tempfile().unwrap();
        let m = write_in_place(set, c, &mut f, &|_| {}, short_by).unwrap();
        let len = f.stream_position().unwrap();
        let mut bytes = Vec::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, len, "offset left at the end");
        (bytes, m)
    }

    #[test]
    fn same_tar_stream_and_manifest_as_held_in_memory() {
        let d = tempfile::tempdir().unwrap();
        tree(d.path());
        let set = PackSet::from_tree(d.path()).unwrap();
        for c in [Compression::Zstd(3), Compression::Gzip(6)] {
            let (want, want_manifest) = write_with_manifest(&set, c, Vec::new(), &|_| {}).unwrap();
            let (got, manifest) = to_file(&set, c);
            assert_eq!(manifest, want_manifest);
            match c {
                Compression::Zstd(_) => {
                    assert_eq!(unzstd(&got), unzstd(&want));
                    // A skippable frame follows the head.
                    let magic = SKIPPABLE_MAGIC.to_le_bytes();
                    assert!(got.windows(4).any(|w| w == magic));
                }
                Compression::Gzip(_) => assert_eq!(got, want),
            }
            // Reproducible.
            assert_eq!(to_file(&set, c).0, got);
        }
    }

    #[test]
    fn synced_as_it_grows_the_tail_lands_where_it_was_written() {
        let f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..(3 * WRITEBACK_CHUNK + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let (end, syncs) = with_syncer(&f, |sync| {
            let mut w = EarlyWriteback::new(&f, 4096, sync);
            let mut asked = 0;
            for piece in data.chunks(1 << 20) {
                let before = w.asked;
                w.write_all(piece).unwrap();
                asked += usize::from(w.asked != before);
            }
            Ok((w.at, asked))
        })
        .unwrap();
        assert_eq!(end, 4096 + data.len() as u64);
        // Asked for a sync at least once (the syncing thread may have
        // been busy for some of the chunks).
        assert!(syncs >= 1, "no sync was asked for");
        let mut back = vec![0u8; data.len()];
        f.read_exact_at(&mut back, 4096).unwrap();
        assert!(back == data, "the tail's bytes moved");
    }

    #[test]
    fn a_head_larger_than_reserved_moves_the_tail_up() {
        let d = tempfile::tempdir().unwrap();
        tree(d.path());
        let set = PackSet::from_tree(d.path()).unwrap();
        let f = tempfile::tempfile().unwrap();
        let tail = vec![9u8; 3 << 20];
        f.write_all_at(&tail, 100).unwrap();
        move_up(&f, 100, 100 + tail.len() as u64, 5000).unwrap();
        let mut back = vec![0u8; tail.len()];
        f.read_exact_at(&mut back, 5000).unwrap();
        assert_eq!(back, tail);
        // A reserve far too small: the archive still decodes to the same
        // tar, with the tail moved up behind the head.
        let c = Compression::Zstd(3);
        let (want, want_manifest) = write_with_manifest(&set, c, Vec::new(), &|_| {}).unwrap();
        let (got, manifest) = to_file_short(&set, c, 1 << 20);
        assert_eq!(manifest, want_manifest);
        assert_eq!(unzstd(&got), unzstd(&want));
    }
}
