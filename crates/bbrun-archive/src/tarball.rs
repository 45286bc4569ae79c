//! Reproducible tar streams of a [`PackSet`], plain or compressed with
//! zstd or gzip: the `.tar.zst`/`.tar.gz` archives and the data members of
//! a `.deb`.
//!
//! Headers are GNU (long names and link targets use GNU long-name records,
//! which GNU tar, bsdtar, dpkg and the `tar` crate all read), owner
//! `root:root` with uid/gid 0, and each entry's clamped mtime.

use std::io::{Read, Write};

use anyhow::{Context, Result};
use tar::{EntryType, Header};

use crate::manifest::EntryKind;
use crate::packset::{open_checked, PackEntry, PackSet, Progress};
use crate::reproducible;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// zstd at this level (1..=22), multi-threaded, frame checksum on.
    Zstd(i32),
    /// gzip at this level (0..=9), no name and no timestamp in the header.
    Gzip(u32),
}

impl Compression {
    /// `zst` or `gz`: the suffix after `.tar`.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::Zstd(_) => "zst",
            Compression::Gzip(_) => "gz",
        }
    }
}

/// Write `set` as a tar stream to `out` and return `out`. `root` is the
/// directory the entries go under inside the archive: `""` for the tree's
/// own top level, or e.g. `opt/app`, whose parent directories (`opt/`,
/// `opt/app/`) are written first as `0755` directories.
pub fn write_tar<W: Write>(set: &PackSet, root: &str, out: W, progress: Progress) -> Result<W> {
    let mut b = tar::Builder::new(out);
    let mtime = set.mtime.max(0) as u64;
    let prefix = root.trim_end_matches('/');
    if !prefix.is_empty() {
        let mut dir = String::new();
        for (i, part) in prefix.split('/').enumerate() {
            if i > 0 {
                dir.push('/');
            }
            dir.push_str(part);
            let mut h = header(EntryType::Directory, 0o755, 0, mtime);
            b.append_data(&mut h, format!("{dir}/"), std::io::empty())
                .with_context(|| format!("{dir}: cannot write tar entry"))?;
        }
    }
    append_entries(&mut b, &set.entries, prefix, &mut |_, e| {
        Ok(Box::new(ProgressReader {
            inner: open_checked(e)?,
            progress,
        }))
    })?;
    b.into_inner().context("cannot finish the tar stream")
}

/// Opens a file entry's content for the tar writer; called with the
/// entry's index in the set.
pub type Opener<'a, 'b> = dyn FnMut(usize, &'a PackEntry) -> Result<Box<dyn Read + 'a>> + 'b;

/// Append `entries` (under `prefix`, if not empty) to `b`, reading each
/// file's content through `open`.
pub fn append_entries<'a, W: Write>(
    b: &mut tar::Builder<W>,
    entries: &'a [PackEntry],
    prefix: &str,
    open: &mut Opener<'a, '_>,
) -> Result<()> {
    for (i, e) in entries.iter().enumerate() {
        append_entry(b, e, prefix, || open(i, e))?;
    }
    Ok(())
}

/// Append one entry (under `prefix`, if not empty) to `b`; a file's
/// content is read from what `open` returns.
pub fn append_entry<'r, W: Write>(
    b: &mut tar::Builder<W>,
    e: &PackEntry,
    prefix: &str,
    open: impl FnOnce() -> Result<Box<dyn Read + 'r>>,
) -> Result<()> {
    let name = |p: &str| -> String {
        if prefix.is_empty() {
            p.to_string()
        } else {
            format!("{prefix}/{p}")
        }
    };
    let path = name(&e.path);
    let ctx = || format!("{}: cannot write tar entry", e.path);
    match e.kind {
        EntryKind::Dir => {
            let mut h = header(EntryType::Directory, e.mode, 0, e.mtime.max(0) as u64);
            b.append_data(&mut h, format!("{path}/"), std::io::empty())
                .with_context(ctx)?;
        }
        EntryKind::File => {
            let mut h = header(EntryType::Regular, e.mode, e.size, e.mtime.max(0) as u64);
            let reader = open()?;
            b.append_data(&mut h, &path, reader).with_context(ctx)?;
        }
        EntryKind::Symlink => {
            let mut h = header(EntryType::Symlink, e.mode, 0, e.mtime.max(0) as u64);
            let target = e.target.as_deref().unwrap_or_default();
            // The target exactly as stored (`./x`, `a//b` stay so): the
            // crate's set_link_name would tidy it, and the manifest and
            // verify compare the literal text. Longer targets go into a
            // GNU long-link record, which the crate writes verbatim.
            if target.len() <= 100 {
                h.set_link_name_literal(target).with_context(ctx)?;
                b.append_data(&mut h, &path, std::io::empty())
                    .with_context(ctx)?;
            } else {
                b.append_link(&mut h, &path, target).with_context(ctx)?;
            }
        }
        EntryKind::Hardlink => {
            let mut h = header(EntryType::Link, e.mode, 0, e.mtime.max(0) as u64);
            let target = name(e.target.as_deref().unwrap_or_default());
            b.append_link(&mut h, &path, target).with_context(ctx)?;
        }
    }
    Ok(())
}

/// Write `set` as a compressed tar stream to `out` and return `out`.
pub fn write_compressed<W: Write>(
    set: &PackSet,
    root: &str,
    compression: Compression,
    out: W,
    progress: Progress,
) -> Result<W> {
    match compression {
        Compression::Zstd(level) => {
            let enc = zstd_encoder(out, level, reproducible::zstd_workers())?;
            let enc = write_tar(set, root, buffered(enc), progress)?;
            unbuffer(enc)?
                .finish()
                .context("zstd: cannot finish the stream")
        }
        Compression::Gzip(level) => {
            // GzBuilder writes mtime 0, no file name and OS "unknown".
            let enc = flate2::GzBuilder::new().write(out, flate2::Compression::new(level.min(9)));
            let enc = write_tar(set, root, buffered(enc), progress)?;
            unbuffer(enc)?
                .finish()
                .context("gzip: cannot finish the stream")
        }
    }
}

/// Big writes into the compressor: the tar writer copies file content in
/// 8 KiB pieces, and each call into a multi-threaded zstd stream has a
/// fixed cost. (std's io::copy also reads straight into this buffer.)
pub(crate) fn buffered<W: Write>(w: W) -> std::io::BufWriter<W> {
    std::io::BufWriter::with_capacity(1 << 20, w)
}

pub(crate) fn unbuffer<W: Write>(b: std::io::BufWriter<W>) -> Result<W> {
    b.into_inner()
        .map_err(|e| e.into_error())
        .context("cannot write the compressed stream")
}

/// A zstd encoder with `workers` (at least 1) threads; its output does not
/// depend on `workers`.
pub fn zstd_encoder<W: Write>(
    out: W,
    level: i32,
    workers: u32,
) -> Result<zstd::stream::write::Encoder<'static, W>> {
    let mut enc = zstd::stream::write::Encoder::new(out, level)
        .with_context(|| format!("zstd level {level}: cannot start compressor"))?;
    enc.multithread(workers.max(1))
        .context("zstd: cannot start worker threads")?;
    enc.include_checksum(true)
        .context("zstd: cannot enable checksums")?;
    Ok(enc)
}

fn header(kind: EntryType, mode: u32, size: u64, mtime: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    // Both names fit the fixed fields; these cannot fail.
    let _ = h.set_username("root");
    let _ = h.set_groupname("root");
    h
}

struct ProgressReader<'a, R> {
    inner: R,
    progress: Progress<'a>,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_output_does_not_depend_on_worker_count() {
        // Enough data for several zstd jobs, compressible but not trivially.
        let mut data = Vec::with_capacity(24 << 20);
        let mut x: u64 = 1;
        while data.len() < 24 << 20 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let word = (x >> 58) as usize;
            data.extend_from_slice(
                &b"lorem ipsum dolor sit amet, consectetur adipiscing elit sed do eiusmod tempor"
                    [word..word + 6],
            );
        }
        let pack = |workers| {
            let mut enc = zstd_encoder(Vec::new(), 3, workers).unwrap();
            enc.write_all(&data).unwrap();
            enc.finish().unwrap()
        };
        let one = pack(1);
        assert_eq!(one, pack(2));
        assert_eq!(one, pack(4));
        assert_eq!(zstd::decode_all(&one[..]).unwrap(), data);
    }
}
