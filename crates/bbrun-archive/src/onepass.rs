//! A compressed tar of a tree and its manifest in one read of the tree:
//! each file is hashed as it streams into the compressor.
//!
//! The manifest sits at `.bbrun/manifest.tsv`, early in the sorted order,
//! but it can only be written once every file is hashed. Reading the tree
//! twice (hash everything, then write) doubles the I/O and leaves the
//! compressor idle during the first pass. Instead the archive is made of
//! two compressed frames (zstd) or members (gzip), which every decoder
//! reads as one stream (zstd and gzip define concatenation so):
//!
//! 1. the tail — every entry after the manifest — is tarred and compressed
//!    while its files are hashed, into a spill buffer (memory, then an
//!    anonymous temporary file for big trees);
//! 2. the head — the entries up to the manifest, then the manifest — is
//!    compressed into the output, followed by the tail's bytes.
//!
//! The decompressed tar stream is byte for byte the one [`tarball`] writes
//! for the same set (a test checks it), and each frame's bytes depend only
//! on its input, so the archive stays reproducible for any thread count.

use std::borrow::Borrow;
use std::io::{Read, Seek, SeekFrom, Write};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::manifest::{hex, EntryKind, Manifest, MANIFEST_PATH};
use crate::packset::{for_each_chunk, manifest_entry, open_checked, PackEntry, PackSet, Progress};
use crate::tarball::{self, Compression};

/// Memory the compressed tail may use before it spills to a temporary
/// file: a 300 MB tree compresses to ~100 MB; spilling writes it twice.
const SPILL_AT: usize = 512 << 20;
/// Tar bytes per block handed to the compressing thread, and how many
/// blocks may wait: the reader runs up to 32 MiB ahead.
const BLOCK: usize = 1 << 20;
const QUEUE_BLOCKS: usize = 32;
/// The two zero blocks `tar::Builder` ends a stream with.
const TAR_TRAILER: usize = 1024;

/// Write `set` (holding no manifest yet) with its manifest as a compressed
/// tar to `out`; returns `out` and the manifest. Each file is read once.
/// (A regular file output does better with [`crate::onepass_file`], which
/// streams the tail to its final place instead of holding it.)
pub fn write_with_manifest<W: Write>(
    set: &PackSet,
    compression: Compression,
    mut out: W,
    progress: Progress,
) -> Result<(W, Manifest)> {
    let plan = Plan::new(set)?;
    let (spill, tail_hashes) = plan.tail(compression, Spill::default(), progress)?;
    let (head, manifest) = plan.head(compression, tail_hashes, progress)?;
    out.write_all(&head).context("cannot write the archive")?;
    spill.copy_to(&mut out)?;
    Ok((out, manifest))
}

/// The entry list split at the manifest: the head (entries up to it and
/// the manifest itself) and the tail after it.
pub(crate) struct Plan<'a> {
    set: &'a PackSet,
    /// The set's entries that sort before the manifest, any parent
    /// directory it needs, and the manifest (content filled in once
    /// known): few, the `.bbrun/` ones. Copied, to hold the manifest.
    head: PackSet,
    /// Index of the manifest in `head`.
    at: usize,
    /// The set's entries after the manifest: nearly the whole tree,
    /// borrowed, never copied.
    tail: &'a [PackEntry],
}

impl<'a> Plan<'a> {
    pub(crate) fn new(set: &'a PackSet) -> Result<Plan<'a>> {
        let split = set
            .entries
            .partition_point(|e| e.path.as_str() <= MANIFEST_PATH);
        let mut head = PackSet {
            entries: set.entries[..split].to_vec(),
            mtime: set.mtime,
            skipped_sockets: vec![],
        };
        head.put_file(MANIFEST_PATH, Vec::new(), Some(0o644))?;
        let at = head
            .entries
            .iter()
            .position(|e| e.path == MANIFEST_PATH)
            .expect("the manifest was just added");
        Ok(Plan {
            set,
            head,
            at,
            tail: &set.entries[split..],
        })
    }

    /// Tar, hash and compress the tail into `out` as one frame, ending the
    /// tar stream. Returns `out` and each tail entry's sha256 (files only).
    pub(crate) fn tail<O: Write>(
        &self,
        compression: Compression,
        out: O,
        progress: Progress,
    ) -> Result<(O, Vec<Option<String>>)> {
        self.part(self.tail, true, compression, out, progress)
    }

    fn part<O: Write>(
        &self,
        entries: &[PackEntry],
        end_stream: bool,
        compression: Compression,
        out: O,
        progress: Progress,
    ) -> Result<(O, Vec<Option<String>>)> {
        let (out, _, hashes) = part(entries.iter(), end_stream, compression, out, progress)?;
        Ok((out, hashes))
    }

    /// The compressed head (entries before the manifest, then the manifest,
    /// without the end-of-archive blocks: the tail carries them) once the
    /// tail's hashes are known; and the manifest.
    pub(crate) fn head(
        &self,
        compression: Compression,
        tail_hashes: Vec<Option<String>>,
        progress: Progress,
    ) -> Result<(Vec<u8>, Manifest)> {
        // The entries before the manifest are few and small (.bbrun/).
        let mut hashes: Vec<Option<String>> =
            Vec::with_capacity(self.head.entries.len() + self.tail.len());
        for e in &self.head.entries[..self.at] {
            hashes.push(match e.kind {
                EntryKind::File => Some(hash_entry(e, progress)?),
                _ => None,
            });
        }
        hashes.push(None);
        hashes.extend(tail_hashes);
        let manifest = self.manifest(hashes);
        let head = self.compress_head(compression, &manifest)?;
        Ok((head, manifest))
    }

    /// The manifest of the set as given, from `hashes` (one per entry of
    /// [`Plan::entries`]): directories the set did not hold (added only to
    /// carry the manifest) are not in it.
    pub(crate) fn manifest(&self, hashes: Vec<Option<String>>) -> Manifest {
        let (head_hashes, tail_hashes) = {
            let mut hashes = hashes;
            let tail = hashes.split_off(self.head.entries.len());
            (hashes, tail)
        };
        let head = self
            .head
            .entries
            .iter()
            .zip(head_hashes)
            .filter(|(e, _)| e.path != MANIFEST_PATH && self.set.get(&e.path).is_some());
        let entries = head
            .chain(self.tail.iter().zip(tail_hashes))
            .map(|(e, sha)| manifest_entry(e, sha))
            .collect();
        Manifest::from_entries(entries)
    }

    /// The head's compressed bytes with `manifest` as the manifest's content.
    fn compress_head(&self, compression: Compression, manifest: &Manifest) -> Result<Vec<u8>> {
        self.compress_with_manifest(..=self.at, compression, manifest)
    }

    /// The entries `range` of the head (which ends at the manifest), the
    /// manifest's content being `manifest`, tarred without the end of the
    /// stream and compressed as one frame.
    fn compress_with_manifest(
        &self,
        range: impl std::slice::SliceIndex<[PackEntry], Output = [PackEntry]>,
        compression: Compression,
        manifest: &Manifest,
    ) -> Result<Vec<u8>> {
        let mut set = PackSet {
            entries: self.head.entries[range].to_vec(),
            mtime: self.head.mtime,
            skipped_sockets: vec![],
        };
        set.put_file(MANIFEST_PATH, manifest.to_bytes(), Some(0o644))?;
        compress_tar_part(&set.entries, compression)
    }
}

/// `entries` (small: the manifest and what goes with it) tarred without
/// the end of the stream, compressed as one frame.
pub(crate) fn compress_tar_part(
    entries: &[PackEntry],
    compression: Compression,
) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    tarball::append_entries(&mut b, entries, "", &mut |_, e| open_checked(e))?;
    let mut tar = b.into_inner().context("cannot finish the tar stream")?;
    tar.truncate(tar.len() - TAR_TRAILER);
    compress_part_in_jobs(compression, Vec::new(), Some(MANIFEST_JOB), |w| {
        w.write_all(&tar).context("cannot compress")
    })
}

/// zstd job size for the frame that holds the manifest. That frame is
/// compressed after every other byte of the archive, so nothing overlaps
/// it: at the default job size for level 3 (8 MiB) the 5 MB manifest of a
/// Plone tree is one job on one core, ~45 ms. In 1 MiB jobs every worker
/// takes a share. Jobs are cut by size, not by thread count, so the bytes
/// stay the same on any machine.
const MANIFEST_JOB: u32 = 1 << 20;

/// Compress what `body` writes as one frame (zstd) or member (gzip).
fn compress_part<O: Write>(
    compression: Compression,
    out: O,
    body: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<O> {
    compress_part_in_jobs(compression, out, None, body)
}

/// [`compress_part`], zstd cutting its input into jobs of `job_size`
/// bytes (`None`: zstd's default for the level).
fn compress_part_in_jobs<O: Write>(
    compression: Compression,
    out: O,
    job_size: Option<u32>,
    body: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<O> {
    match compression {
        Compression::Zstd(level) => {
            let mut enc = tarball::zstd_encoder(out, level, crate::reproducible::zstd_workers())?;
            if let Some(size) = job_size {
                enc.set_parameter(zstd::stream::raw::CParameter::JobSize(size))
                    .context("zstd: cannot set the job size")?;
            }
            let mut w = tarball::buffered(enc);
            body(&mut w)?;
            tarball::unbuffer(w)?
                .finish()
                .context("zstd: cannot finish the stream")
        }
        Compression::Gzip(level) => {
            let enc = flate2::GzBuilder::new().write(out, flate2::Compression::new(level.min(9)));
            let mut w = tarball::buffered(enc);
            body(&mut w)?;
            tarball::unbuffer(w)?
                .finish()
                .context("gzip: cannot finish the stream")
        }
    }
}

/// Tar, hash and compress `entries` into `out` as one frame: one thread
/// reads, hashes and tars the files (taking the entries as they come,
/// which may be while the tree is still listed), well ahead of this one,
/// which compresses. The two overlap like `tar | zstd`, and a deep queue
/// between them hides the wait for a busy core. Returns `out`, the
/// entries, and each one's sha256 (files only).
#[allow(clippy::type_complexity)]
pub(crate) fn part<O: Write, E: Borrow<PackEntry> + Send>(
    entries: impl Iterator<Item = E> + Send,
    end_stream: bool,
    compression: Compression,
    out: O,
    progress: Progress,
) -> Result<(O, Vec<E>, Vec<Option<String>>)> {
    std::thread::scope(|scope| -> Result<_> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUE_BLOCKS);
        let reader = scope.spawn(move || tar_hashing(entries, tx, end_stream, progress));
        let out = compress_part(compression, out, |w| {
            for block in rx {
                w.write_all(&block).context("cannot compress")?;
            }
            Ok(())
        });
        // The reader's error (a file changed) explains a short stream.
        let (entries, hashes) = reader
            .join()
            .map_err(|_| anyhow::anyhow!("the reading thread panicked"))??;
        Ok((out?, entries, hashes))
    })
}

/// Tar `entries` into blocks sent to `tx`, hashing each file as the tar
/// writer pulls its content; returns the entries and each one's sha256
/// (files only). Without `end_stream` the two zero blocks that end a tar
/// are left out.
#[allow(clippy::type_complexity)]
fn tar_hashing<E: Borrow<PackEntry>>(
    entries: impl Iterator<Item = E>,
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    end_stream: bool,
    progress: Progress,
) -> Result<(Vec<E>, Vec<Option<String>>)> {
    let mut kept = Vec::new();
    let mut hashes = Vec::new();
    let mut b = tar::Builder::new(ChannelWriter {
        tx,
        block: Vec::with_capacity(BLOCK + TAR_TRAILER),
    });
    for e in entries {
        let entry: &PackEntry = e.borrow();
        let hash = std::cell::RefCell::new(Sha256::new());
        tarball::append_entry(&mut b, entry, "", || {
            Ok(Box::new(HashingReader {
                inner: open_checked(entry)?,
                hash: &hash,
                progress,
            }))
        })?;
        hashes.push(match entry.kind {
            EntryKind::File => Some(hex(&hash.into_inner().finalize())),
            _ => None,
        });
        kept.push(e);
    }
    let mut w = b.into_inner().context("cannot finish the tar stream")?;
    if !end_stream {
        // The writer holds the last TAR_TRAILER bytes back: the end blocks.
        let keep = w.block.len() - TAR_TRAILER;
        w.block.truncate(keep);
    }
    w.send_all()?;
    Ok((kept, hashes))
}

/// Tar output cut into blocks for the compressing thread. The last
/// [`TAR_TRAILER`] bytes written are always held back, so a part that does
/// not end the tar stream can drop its end blocks.
struct ChannelWriter {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    block: Vec<u8>,
}

impl ChannelWriter {
    /// Send all but the last TAR_TRAILER bytes.
    fn send_block(&mut self) -> std::io::Result<()> {
        if self.block.len() <= TAR_TRAILER {
            return Ok(());
        }
        let mut next = Vec::with_capacity(BLOCK + TAR_TRAILER);
        next.extend_from_slice(&self.block[self.block.len() - TAR_TRAILER..]);
        self.block.truncate(self.block.len() - TAR_TRAILER);
        let block = std::mem::replace(&mut self.block, next);
        self.send(block)
    }

    /// Send everything left.
    fn send_all(&mut self) -> std::io::Result<()> {
        let block = std::mem::take(&mut self.block);
        if block.is_empty() {
            return Ok(());
        }
        self.send(block)
    }

    fn send(&self, block: Vec<u8>) -> std::io::Result<()> {
        self.tx
            .send(block)
            .map_err(|_| std::io::Error::other("the compressor stopped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.block.extend_from_slice(buf);
        if self.block.len() >= BLOCK + TAR_TRAILER {
            self.send_block()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct HashingReader<'a> {
    inner: Box<dyn Read + 'a>,
    hash: &'a std::cell::RefCell<Sha256>,
    progress: Progress<'a>,
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.borrow_mut().update(&buf[..n]);
        (self.progress)(n as u64);
        Ok(n)
    }
}

fn hash_entry(e: &PackEntry, progress: Progress) -> Result<String> {
    let mut h = Sha256::new();
    for_each_chunk(e, &mut |chunk: &[u8]| {
        h.update(chunk);
        progress(chunk.len() as u64);
        Ok(())
    })?;
    Ok(hex(&h.finalize()))
}

/// Bytes kept in memory up to [`SPILL_AT`], then in an anonymous
/// temporary file (gone when closed, whatever happens).
#[derive(Default)]
struct Spill {
    mem: Vec<u8>,
    file: Option<std::fs::File>,
}

impl Write for Spill {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(f) = &mut self.file {
            return f.write(buf);
        }
        if self.mem.len() + buf.len() > SPILL_AT {
            let mut f = anonymous_file()?;
            f.write_all(&self.mem)?;
            self.mem = Vec::new();
            let n = f.write(buf)?;
            self.file = Some(f);
            return Ok(n);
        }
        self.mem.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Spill {
    fn copy_to(self, out: &mut dyn Write) -> Result<()> {
        match self.file {
            None => out.write_all(&self.mem).context("cannot write the archive"),
            Some(mut f) => {
                f.seek(SeekFrom::Start(0))
                    .context("temporary file: cannot rewind")?;
                std::io::copy(&mut f, out).context("cannot write the archive")?;
                Ok(())
            }
        }
    }
}

/// An unnamed file in the temporary directory (O_TMPFILE), or a named one
/// unlinked at once where the file system lacks O_TMPFILE.
fn anonymous_file() -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir();
    let tmp = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(&dir);
    if let Ok(f) = tmp {
        return Ok(f);
    }
    for i in 0..100u32 {
        let p = dir.join(format!(".bbrun-pack-{}-{i}", std::process::id()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
        {
            Ok(f) => {
                let _ = std::fs::remove_file(&p);
                return Ok(f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no temporary file name free"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small tree with `.bbrun/` entries before the manifest, 300 files
    /// after it, a symlink and a hardlink.
    pub(crate) fn tree(r: &std::path::Path) {
        let w = |p: &str, data: &[u8]| {
            let p = r.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, data).unwrap();
        };
        w(".bbrun/map.toml", b"format = 1\n");
        w(".bbrun/index/dirs.txt", b"x\n");
        w(".bbrun/shim/a.py", b"pass\n");
        w(".a-before", b"first\n");
        for i in 0..300 {
            let data: Vec<u8> = (0..(i * 97) % 20000).map(|x| (x * i) as u8).collect();
            w(&format!("lib/p{}/m{i}.py", i % 7), &data);
        }
        std::os::unix::fs::symlink("lib/p1", r.join("link")).unwrap();
        std::fs::hard_link(r.join("lib/p1/m1.py"), r.join("lib/p1/zz.py")).unwrap();
    }

    pub(crate) fn decompress(c: Compression, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match c {
            Compression::Zstd(_) => {
                zstd::stream::read::Decoder::new(bytes)
                    .unwrap()
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Compression::Gzip(_) => {
                flate2::read::MultiGzDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .unwrap();
            }
        };
        out
    }

    #[test]
    fn same_tar_stream_and_manifest_as_two_passes() {
        let d = tempfile::tempdir().unwrap();
        tree(d.path());
        for c in [Compression::Zstd(3), Compression::Gzip(6)] {
            let set = PackSet::from_tree(d.path()).unwrap();
            let mut two = set.clone();
            let want_manifest = two.add_manifest(&|_| {}).unwrap();
            let want = tarball::write_compressed(&two, "", c, Vec::new(), &|_| {}).unwrap();
            let (got, manifest) = write_with_manifest(&set, c, Vec::new(), &|_| {}).unwrap();
            assert_eq!(manifest, want_manifest);
            assert_eq!(decompress(c, &got), decompress(c, &want));
            // Reproducible: the same bytes again.
            let (again, _) = write_with_manifest(&set, c, Vec::new(), &|_| {}).unwrap();
            assert_eq!(got, again);
        }
    }

    #[test]
    fn a_file_changed_while_packing_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        tree(d.path());
        let set = PackSet::from_tree(d.path()).unwrap();
        std::fs::write(d.path().join("lib/p3/m3.py"), b"shorter").unwrap();
        let err = write_with_manifest(&set, Compression::Zstd(3), Vec::new(), &|_| {}).unwrap_err();
        assert!(
            format!("{err:#}").contains("changed while packing"),
            "{err:#}"
        );
    }

    #[test]
    fn spill_goes_to_a_file_past_the_limit() {
        let mut s = Spill::default();
        let chunk = vec![7u8; 16 << 20];
        let n = SPILL_AT / chunk.len() + 2;
        for _ in 0..n {
            s.write_all(&chunk).unwrap();
        }
        assert!(s.file.is_some() && s.mem.is_empty());
        let mut out = Vec::new();
        s.copy_to(&mut out).unwrap();
        assert_eq!(out.len(), n * chunk.len());
        assert!(out.iter().all(|&b| b == 7));
    }
}
