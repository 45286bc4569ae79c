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

use std::borrow::Borrow;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{Receiver, TryRecvError};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::manifest::{hex, EntryKind, Manifest, ManifestEntry, MANIFEST_PATH};
use crate::onepass::{self, write_with_manifest};
use crate::packset::{manifest_entry, PackEntry, PackSet, Progress};
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
    // The whole list is known: the manifest's reserve is estimated on
    // another thread (a trial compression, ~15 ms on 30k entries) while
    // the first entries are written.
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        s.spawn(move || {
            let listed = Listed::of(set.entries.iter(), set.mtime, compression);
            let _ = tx.send(listed.map_err(|e| format!("{e:#}")));
        });
        let fed = write_fed(
            set.entries.iter(),
            rx,
            compression,
            file,
            progress,
            short_by,
        )?;
        Ok(fed.manifest)
    })
}

/// What only the whole entry list tells, sent to [`write_fed`] once the
/// list is complete: the bytes to reserve for the manifest's frame, and
/// the timestamp of the entries the packer adds.
pub(crate) struct Listed {
    reserve: u64,
    mtime: i64,
}

impl Listed {
    /// For `entries` (the whole list, in order), `mtime` being the
    /// archive's timestamp.
    fn of<'e>(
        entries: impl Iterator<Item = &'e PackEntry>,
        mtime: i64,
        compression: Compression,
    ) -> Result<Listed> {
        let mut stand_in = StandIn::default();
        for e in entries {
            stand_in.add(e);
        }
        stand_in.listed(mtime, compression)
    }
}

/// The manifest's stand-in, gathered entry by entry as they are listed:
/// the same lines, with the sha256 hex of each file's path in place of
/// its content's (same length, similar statistics).
#[derive(Default)]
pub(crate) struct StandIn {
    entries: Vec<ManifestEntry>,
    parent: Option<PackEntry>,
}

impl StandIn {
    pub(crate) fn add(&mut self, e: &PackEntry) {
        if e.path == manifest_dir() {
            self.parent = Some(e.clone());
        }
        let sha = (e.kind == EntryKind::File).then(|| hex(&Sha256::digest(e.path.as_bytes())));
        self.entries.push(manifest_entry(e, sha));
    }

    /// Bytes to reserve for the manifest's compressed frame and the
    /// skippable frame's header: a trial compression of the stand-in, plus
    /// a margin for the hex digits' different statistics.
    pub(crate) fn listed(self, mtime: i64, compression: Compression) -> Result<Listed> {
        let manifest = Manifest::from_entries(self.entries);
        let trial =
            manifest_frame(self.parent.as_ref(), &manifest, mtime, compression)?.len() as u64;
        Ok(Listed {
            reserve: trial + trial / 64 + 4096 + SKIPPABLE_HEADER,
            mtime,
        })
    }
}

/// The directory holding the manifest (`.bbrun`).
fn manifest_dir() -> &'static str {
    MANIFEST_PATH.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// What [`write_fed`] wrote: every entry as it came, and the manifest.
pub(crate) struct Fed<E> {
    pub(crate) entries: Vec<E>,
    pub(crate) manifest: Manifest,
}

/// Write `entries` (sorted, no manifest among them) with their manifest as
/// a zstd-compressed tar into `file` (empty, at offset 0), taking each
/// entry as it comes: the list may still be growing (a tree being listed).
/// `listed` says what the whole list decides; until it comes, the tail's
/// compressed bytes wait in memory.
///
/// Three frames go to their places as soon as they can: the entries
/// before the manifest; after a slot reserved for the manifest, the tail,
/// streamed to the file while it is compressed; the manifest last, into
/// its slot, the rest of which becomes a skippable frame.
pub(crate) fn write_fed<E: Borrow<PackEntry> + Send>(
    entries: impl Iterator<Item = E> + Send,
    listed: Receiver<Result<Listed, String>>,
    compression: Compression,
    file: &mut File,
    progress: Progress,
    short_by: u64,
) -> Result<Fed<E>> {
    let mut entries = entries.peekable();
    let mut before = Vec::new();
    while let Some(e) = entries.next_if(|e| e.borrow().path.as_str() < MANIFEST_PATH) {
        before.push(e);
    }
    // The entries before the manifest (.bbrun/: index, shim, collected
    // prefixes), streamed and hashed first: their content needs no hash.
    let out = BufWriter::with_capacity(1 << 20, &mut *file);
    let (out, before, before_hashes) =
        onepass::part(before.into_iter(), false, compression, out, progress)?;
    finish(out)?;
    let slot = file
        .stream_position()
        .context("cannot seek in the archive")?;

    // The tail, streamed to its final place behind the manifest's slot.
    let (end, reserve, listed, tail, tail_hashes) = with_syncer(file, |sync| {
        let writer = TailWriter::new(&*file, slot, short_by, listed, sync);
        let out = BufWriter::with_capacity(1 << 20, writer);
        let (out, tail, hashes) = onepass::part(entries, true, compression, out, progress)?;
        let writer = out
            .into_inner()
            .map_err(|e| e.into_error())
            .context("cannot write the archive")?;
        let (end, reserve, listed) = writer.finish()?;
        Ok((end, reserve, listed, tail, hashes))
    })?;

    // The manifest, now that every hash is known, into its slot.
    let manifest = Manifest::from_entries(
        before
            .iter()
            .zip(before_hashes)
            .chain(tail.iter().zip(tail_hashes))
            .map(|(e, sha)| manifest_entry(e.borrow(), sha))
            .collect(),
    );
    let parent = before
        .iter()
        .map(Borrow::borrow)
        .find(|e: &&PackEntry| e.path == manifest_dir());
    let frame = manifest_frame(parent, &manifest, listed.mtime, compression)?;
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
    let mut entries = before;
    entries.extend(tail);
    Ok(Fed { entries, manifest })
}

/// The frame holding the manifest's tar entry with `manifest` as its
/// content, preceded by the manifest's directory when the list has none
/// (`parent`: that directory's entry, if listed). A frozen tree always
/// has `.bbrun/`; a bare set gets it here, where nothing but names like
/// `.bbrun.x` could sort between it and the manifest.
fn manifest_frame(
    parent: Option<&PackEntry>,
    manifest: &Manifest,
    mtime: i64,
    compression: Compression,
) -> Result<Vec<u8>> {
    let mut set = PackSet {
        entries: parent.cloned().into_iter().collect(),
        mtime,
        skipped_sockets: vec![],
    };
    let listed = set.entries.len();
    // Refuses a `.bbrun` that is a file or a symlink.
    set.put_file(MANIFEST_PATH, manifest.to_bytes(), Some(0o644))?;
    onepass::compress_tar_part(&set.entries[listed..], compression)
}

/// Where the tail goes: behind the manifest's slot, whose size is known
/// only once the list is complete (`listed`); until then the compressed
/// bytes are held in memory (a few MB: listing is far quicker than
/// compressing).
///
/// It also has the file's data made durable as it goes: every
/// [`WRITEBACK_CHUNK`] bytes it asks a syncing thread for an `fdatasync`
/// (skipped while one is still running), so the archive's final fsync
/// finds little left to do. tar does not fsync at all; on an ext4 VM disk
/// the fsync of a fresh 74 MB archive took ~100 ms when it all waited for
/// the end, even with the data already written back
/// (`sync_file_range` only writes data: the cost is committing the new
/// file's block allocations). Synced as it grows, the last fsync takes
/// ~6 ms. The writing thread never waits for a sync.
struct TailWriter<'a> {
    file: &'a File,
    /// Offset of the manifest's slot.
    slot: u64,
    /// Bytes taken off the reserve (tests force the tail to move).
    short_by: u64,
    listed: Receiver<Result<Listed, String>>,
    /// The reserve and what the list decided, once known.
    place: Option<(u64, Listed)>,
    /// Compressed bytes waiting for their place.
    held: Vec<u8>,
    /// Offset the next write lands at, once placed.
    at: u64,
    /// Offset at the last sync request.
    asked: u64,
    /// To the syncing thread; full while a sync runs.
    sync: std::sync::mpsc::SyncSender<()>,
}

/// Bytes between sync requests.
const WRITEBACK_CHUNK: u64 = 8 << 20;
/// Compressed bytes the tail may hold before its place is known; past it
/// the compressor waits for the listing.
const HOLD_AT_MOST: usize = 64 << 20;

impl<'a> TailWriter<'a> {
    fn new(
        file: &'a File,
        slot: u64,
        short_by: u64,
        listed: Receiver<Result<Listed, String>>,
        sync: std::sync::mpsc::SyncSender<()>,
    ) -> Self {
        TailWriter {
            file,
            slot,
            short_by,
            listed,
            place: None,
            held: Vec::new(),
            at: 0,
            asked: 0,
            sync,
        }
    }

    /// The list is complete: write what was held at its place.
    fn place(&mut self, listed: Listed) -> std::io::Result<()> {
        let reserve = listed.reserve.saturating_sub(self.short_by);
        let start = self.slot + reserve;
        self.file.write_all_at(&self.held, start)?;
        self.at = start + self.held.len() as u64;
        self.asked = start;
        self.held = Vec::new();
        self.place = Some((reserve, listed));
        Ok(())
    }

    /// The tail's end offset, the reserve, and what the list decided
    /// (waiting for it if the tail was written first).
    fn finish(mut self) -> Result<(u64, u64, Listed)> {
        if self.place.is_none() {
            let listed = listed_or_error(self.listed.recv().ok())?;
            self.place(listed).context("cannot write the archive")?;
        }
        let (reserve, listed) = self.place.take().expect("placed above");
        Ok((self.at, reserve, listed))
    }
}

/// What the listing sent (`None`: it ended without a word).
fn listed_or_error(got: Option<Result<Listed, String>>) -> std::io::Result<Listed> {
    match got {
        Some(Ok(listed)) => Ok(listed),
        Some(Err(e)) => Err(std::io::Error::other(e)),
        None => Err(std::io::Error::other("the entry list ended early")),
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

impl Write for TailWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.place.is_none() {
            let got = match self.listed.try_recv() {
                Err(TryRecvError::Empty) if self.held.len() < HOLD_AT_MOST => {
                    self.held.extend_from_slice(buf);
                    return Ok(buf.len());
                }
                // Enough held: wait for the listing (a tree so large that
                // listing it outlasts compressing this much).
                Err(TryRecvError::Empty) => self.listed.recv().ok(),
                Err(TryRecvError::Disconnected) => None,
                Ok(got) => Some(got),
            };
            self.place(listed_or_error(got)?)?;
        }
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
    fn the_tail_is_held_until_placed_then_synced_as_it_grows() {
        let f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..(3 * WRITEBACK_CHUNK + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let mut tx = Some(tx);
        let (end, reserve, syncs) = with_syncer(&f, |sync| {
            let mut w = TailWriter::new(&f, 4096, 0, rx, sync);
            let mut asked = 0;
            for (i, piece) in data.chunks(1 << 20).enumerate() {
                if i == 3 {
                    // Nothing reached the file before the list was done.
                    assert_eq!(f.metadata().unwrap().len(), 0);
                    assert_eq!(w.held.len(), 3 << 20);
                    let listed = Listed {
                        reserve: 1000,
                        mtime: 7,
                    };
                    tx.take().unwrap().send(Ok(listed)).unwrap();
                }
                let before = w.asked;
                w.write_all(piece).unwrap();
                asked += usize::from(w.asked != before);
            }
            let (end, reserve, listed) = w.finish()?;
            assert_eq!(listed.mtime, 7);
            Ok((end, reserve, asked))
        })
        .unwrap();
        assert_eq!(reserve, 1000);
        assert_eq!(end, 4096 + 1000 + data.len() as u64);
        // Asked for a sync at least once (the syncing thread may have
        // been busy for some of the chunks).
        assert!(syncs >= 1, "no sync was asked for");
        let mut back = vec![0u8; data.len()];
        f.read_exact_at(&mut back, 4096 + 1000).unwrap();
        assert!(back == data, "the tail's bytes moved");
    }

    #[test]
    fn a_tail_holding_its_limit_waits_for_the_list() {
        let f = tempfile::tempfile().unwrap();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let piece: Vec<u8> = (0..1u32 << 20).map(|i| (i % 253) as u8).collect();
        let pieces = HOLD_AT_MOST / piece.len() + 2;
        let sent = std::sync::atomic::AtomicBool::new(false);
        let end = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(300));
                sent.store(true, std::sync::atomic::Ordering::SeqCst);
                let listed = Listed {
                    reserve: 10,
                    mtime: 0,
                };
                tx.send(Ok(listed)).unwrap();
            });
            with_syncer(&f, |sync| {
                let mut w = TailWriter::new(&f, 0, 0, rx, sync);
                for _ in 0..pieces {
                    w.write_all(&piece).unwrap();
                    // Never more than the limit held while unplaced.
                    assert!(w.held.len() <= HOLD_AT_MOST + piece.len());
                }
                // Placed by now: the writer waited for the list.
                assert!(sent.load(std::sync::atomic::Ordering::SeqCst));
                Ok(w.finish()?.0)
            })
            .unwrap()
        });
        assert_eq!(end, 10 + (pieces * piece.len()) as u64);
        let mut back = vec![0u8; piece.len()];
        f.read_exact_at(&mut back, 10 + ((pieces - 1) * piece.len()) as u64)
            .unwrap();
        assert!(back == piece);
    }

    #[test]
    fn a_list_that_fails_fails_the_tail() {
        let f = tempfile::tempfile().unwrap();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        tx.send(Err("x: cannot read".to_string())).unwrap();
        let err = with_syncer(&f, |sync| {
            let mut w = TailWriter::new(&f, 0, 0, rx, sync);
            w.write_all(b"abc")?;
            Ok(())
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("x: cannot read"), "{err:#}");
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
