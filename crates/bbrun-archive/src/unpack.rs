//! Safe unpacking of a tar.zst or tar.gz archive into an empty directory.
//!
//! The archive is untrusted: every entry is checked before anything is
//! written, and nothing is ever written outside DEST. The rules:
//!
//! - names are plain relative paths: no `..`, not absolute, UTF-8;
//! - each path appears once;
//! - only files, directories, symlinks and hardlinks (no devices or fifos);
//! - no entry is written through a symlink of the archive, and symlinks are
//!   created last, after every check and every other write, each one
//!   resolved against the final layout (through the archive's other
//!   symlinks) and refused if it leads outside DEST;
//! - a hardlink names an earlier regular file of the archive.
//!
//! Content is hashed as it is written, so the caller gets a [`Manifest`] of
//! what is on disk without reading it back. Decompression runs on the
//! calling thread and file writes on a second one, so the two overlap.
//!
//! This module is the entry points (compression told by content, options,
//! the report); `unpacker` applies the rules entry by entry, `paths`
//! cleans names and resolves symlinks against the final layout, `files`
//! writes one file or directory.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::manifest::Manifest;

/// Compression of an archive, told by its first bytes (never its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Zstd,
    Gzip,
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Files up to this size are read whole and written by a writer thread;
/// larger ones are streamed by the reader so memory stays bounded.
const BUFFERED_MAX: u64 = 4 << 20;
/// Jobs queued for the writer threads at most (each at most `BUFFERED_MAX`).
const QUEUE: usize = 64;
/// Writer threads. Creating files is kernel work that dominates unpacking
/// many small files; two writers keep both cores busy while the reader
/// decompresses and hashes.
const WRITERS: usize = 2;

pub fn detect(archive: &Path) -> Result<Compression> {
    let mut head = [0u8; 4];
    let mut f =
        File::open(archive).with_context(|| format!("{}: cannot open", archive.display()))?;
    let n = read_up_to(&mut f, &mut head)
        .with_context(|| format!("{}: cannot read", archive.display()))?;
    compression_of(&head[..n], archive)
}

/// The compression named by an archive's first (up to four) bytes.
pub fn compression_of(head: &[u8], archive: &Path) -> Result<Compression> {
    if head.len() >= 4 && head[..4] == ZSTD_MAGIC {
        Ok(Compression::Zstd)
    } else if head.len() >= 2 && head[..2] == GZIP_MAGIC {
        Ok(Compression::Gzip)
    } else if head.is_empty() {
        bail!("{}: empty, not an archive", archive.display())
    } else {
        bail!(
            "{}: not a tar.zst or tar.gz archive (unknown magic bytes)",
            archive.display()
        )
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct UnpackOptions {
    /// Keep symlinks that point outside DEST (absolute or `..` past it)
    /// instead of refusing the archive. Nothing is ever written through
    /// them: entries below any symlink stay refused, and symlinks are
    /// created after every other write.
    pub allow_external_symlinks: bool,
    /// Write modes as archived. By default setuid, setgid and sticky bits
    /// and group/world write are removed ([`safe_mode`]): an archive from
    /// elsewhere must not install a setuid program or a directory anyone
    /// can change when root installs it. Manifests keep the archived mode.
    pub keep_modes: bool,
    /// Leave symlinks that point outside DEST uncreated and report them
    /// (`Unpacked::skipped_symlinks`) instead of refusing the archive: the
    /// caller decides (a virtualenv's interpreter link is re-pointed at an
    /// interpreter of this machine). Ignored with `allow_external_symlinks`.
    pub skip_external_symlinks: bool,
}

/// Bits an install removes unless asked to keep them.
pub const UNSAFE_MODE_BITS: u32 = 0o7022;

/// `mode` without setuid, setgid, sticky and group/world write.
pub fn safe_mode(mode: u32) -> u32 {
    mode & !UNSAFE_MODE_BITS
}

/// What [`unpack_with`] wrote.
#[derive(Debug)]
pub struct Unpacked {
    pub manifest: Manifest,
    /// Symlinks kept although they point outside DEST: (path, target).
    pub external_symlinks: Vec<(String, String)>,
    /// Files and directories written with fewer mode bits than archived:
    /// (path, archived mode, written mode).
    pub stripped_modes: Vec<(String, u32, u32)>,
    /// Symlinks out of DEST left uncreated (`skip_external_symlinks`):
    /// (path, target).
    pub skipped_symlinks: Vec<(String, String)>,
}

/// Unpack `archive` into `dest`, an existing empty directory, refusing
/// every symlink that leads outside it. See [`unpack_with`].
pub fn unpack(archive: &Path, dest: &Path, progress: &dyn Fn(u64)) -> Result<Manifest> {
    Ok(unpack_with(archive, dest, UnpackOptions::default(), progress)?.manifest)
}

/// Unpack `archive` into `dest`, an existing empty directory. `progress`
/// is called with the compressed bytes read so far. Returns the manifest
/// of what was written. On error, `dest` may hold a partial tree (the
/// caller owns it and removes it); nothing outside it was touched.
pub fn unpack_with(
    archive: &Path,
    dest: &Path,
    opts: UnpackOptions,
    progress: &dyn Fn(u64),
) -> Result<Unpacked> {
    let file =
        File::open(archive).with_context(|| format!("{}: cannot open", archive.display()))?;
    unpack_reader(file, archive, dest, opts, progress)
}

/// [`unpack_with`] from any reader, in one pass: the magic bytes are read
/// from the same stream that is then decompressed, so a pipe, a FIFO or
/// `/dev/stdin` works. `archive` only names the input in errors.
pub fn unpack_reader<R: Read>(
    input: R,
    archive: &Path,
    dest: &Path,
    opts: UnpackOptions,
    progress: &dyn Fn(u64),
) -> Result<Unpacked> {
    let read = Arc::new(AtomicU64::new(0));
    let mut counting = Counting {
        inner: input,
        read: read.clone(),
    };
    let mut head = [0u8; 4];
    let n = read_up_to(&mut counting, &mut head)
        .with_context(|| format!("{}: cannot read", archive.display()))?;
    let compression = compression_of(&head[..n], archive)?;
    let stream = io::Cursor::new(head[..n].to_vec()).chain(counting);
    let buffered = BufReader::with_capacity(1 << 20, stream);
    let decoder: Box<dyn Read + '_> = match compression {
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .with_context(|| format!("{}: cannot start zstd decoder", archive.display()))?,
        ),
        // Multi-member, as gzip(1) reads; each member's CRC-32 and length
        // are checked by flate2 when the member ends, which `run` makes
        // sure is reached by reading the stream to its end.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
    };
    unpack_decoded(decoder, archive, dest, opts, &|| {
        progress(read.load(Ordering::Relaxed))
    })
}

/// Unpack an uncompressed tar stream (what the decoders yield; also the
/// fuzzing entry point).
pub fn unpack_decoded<'r>(
    decoder: Box<dyn Read + 'r>,
    archive: &Path,
    dest: &Path,
    opts: UnpackOptions,
    progress: &dyn Fn(),
) -> Result<Unpacked> {
    let mut unpacker = Unpacker::new(archive, dest);
    unpacker.keep_modes = opts.keep_modes;
    let result = unpacker.run(decoder, progress);
    // A writer's error (a full disk) comes first: it is why the reader
    // stopped, if it did.
    unpacker.finish_writers()?;
    result?;
    unpacker.finish(opts)
}

struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

mod files;
mod paths;
mod unpacker;

pub use paths::clean_path;
use unpacker::Unpacker;

#[cfg(test)]
mod tests;
