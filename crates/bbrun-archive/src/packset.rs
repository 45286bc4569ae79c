//! What goes into an archive: the tree's entries in sorted order, each read
//! from disk or replaced by bytes the packer made (a rewritten config file,
//! a script whose first line points at the packaged launcher, the manifest).
//! Every writer (tar, deb, rpm) packs the same [`PackSet`], so their
//! contents and manifests agree.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::manifest::{self, EntryKind, Manifest, ManifestEntry, MANIFEST_PATH};
use crate::walk;

/// Called with a number of content bytes just processed (hashed or
/// written); from several threads during hashing.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// Where an entry's content comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file on disk, with the size and mtime it had when listed: reading
    /// checks them so a file changed during packing is an error, not a
    /// silently inconsistent archive.
    Disk { path: PathBuf, mtime: i64 },
    /// Bytes made by the packer.
    Bytes(Arc<[u8]>),
    /// Directories and links.
    None,
}

#[derive(Debug, Clone)]
pub struct PackEntry {
    /// Relative, '/'-separated.
    pub path: String,
    pub kind: EntryKind,
    pub mode: u32,
    /// Content size of a file; 0 otherwise.
    pub size: u64,
    /// Symlink target or a hardlink's first name (a relative path).
    pub target: Option<String>,
    pub source: Source,
    /// The entry's archive mtime (see [`crate::reproducible::entry_mtime`]).
    pub mtime: i64,
}

impl PackEntry {
    /// The entry for a listed item, its mtime clamped to `clamp` (see
    /// [`crate::reproducible::entry_mtime`]); read from disk if a file.
    pub fn from_item(i: walk::TreeItem, clamp: Option<i64>) -> PackEntry {
        PackEntry {
            mtime: crate::reproducible::entry_mtime(i.mtime, clamp),
            source: match i.kind {
                EntryKind::File => Source::Disk {
                    path: i.abs,
                    mtime: i.mtime,
                },
                _ => Source::None,
            },
            path: i.path,
            kind: i.kind,
            mode: i.mode,
            size: i.size,
            target: i.target,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct PackSet {
    /// Sorted by path.
    pub entries: Vec<PackEntry>,
    /// The mtime of container headers and of entries the packer adds
    /// (see [`crate::reproducible::archive_mtime`]).
    pub mtime: i64,
    /// Sockets in the tree, not packed (see [`walk::walk`]).
    pub skipped_sockets: Vec<String>,
}

impl PackSet {
    /// The tree at `root`, without a manifest it may hold (the archive gets
    /// a fresh one); entries keep their mtimes, clamped to
    /// `SOURCE_DATE_EPOCH` (see [`crate::reproducible`]).
    pub fn from_tree(root: &Path) -> Result<PackSet> {
        let (items, skipped_sockets) = walk::walk_noting_sockets(root)?;
        let items: Vec<_> = items
            .into_iter()
            .filter(|i| i.path != MANIFEST_PATH)
            .collect();
        let mtime = crate::reproducible::archive_mtime(&items)?;
        let clamp = crate::reproducible::source_date_epoch()?;
        let entries = items
            .into_iter()
            .map(|i| PackEntry::from_item(i, clamp))
            .collect();
        Ok(PackSet {
            entries,
            mtime,
            skipped_sockets,
        })
    }

    pub fn get(&self, path: &str) -> Option<&PackEntry> {
        self.index(path).ok().map(|i| &self.entries[i])
    }

    fn index(&self, path: &str) -> std::result::Result<usize, usize> {
        self.entries.binary_search_by(|e| e.path.as_str().cmp(path))
    }

    /// Replace the content of file `path` (keeping its mode unless `mode`
    /// is given), or add it with its missing parent directories. A
    /// hardlinked name becomes a file of its own: its content now differs.
    pub fn put_file(&mut self, path: &str, bytes: Vec<u8>, mode: Option<u32>) -> Result<()> {
        manifest::check_path(path)?;
        let size = bytes.len() as u64;
        let bytes: Arc<[u8]> = bytes.into();
        let set_mtime = self.mtime;
        let entry = |old_mode: u32, mtime: i64| PackEntry {
            mtime,
            path: path.to_string(),
            kind: EntryKind::File,
            mode: mode.unwrap_or(old_mode),
            size,
            target: None,
            source: Source::Bytes(bytes.clone()),
        };
        match self.index(path) {
            Ok(i) => {
                let old = &self.entries[i];
                if matches!(old.kind, EntryKind::Dir | EntryKind::Symlink) {
                    bail!(
                        "{path}: is a {} in the tree, cannot replace it with a file",
                        old.kind.as_str()
                    );
                }
                let old_content = (old.source.clone(), old.size);
                // A rewritten file keeps its time: only its content changed.
                self.entries[i] = entry(old.mode, old.mtime);
                self.promote_hardlinks_of(path, old_content);
            }
            Err(_) => {
                self.ensure_dirs(path)?;
                let new = entry(0o644, set_mtime);
                let at = self.index(path).unwrap_err();
                self.entries.insert(at, new);
            }
        }
        Ok(())
    }

    /// Leave `path` out of the set (not what is below it). Other names of
    /// a removed file keep its content.
    pub fn remove(&mut self, path: &str) -> Option<PackEntry> {
        let i = self.index(path).ok()?;
        let old = self.entries.remove(i);
        if old.kind == EntryKind::File {
            self.promote_hardlinks_of(path, (old.source.clone(), old.size));
        }
        Some(old)
    }

    /// Entries that were hardlinks to `path` keep the old content: the
    /// first of them becomes the file (read from the same source) and the
    /// rest link to it.
    fn promote_hardlinks_of(&mut self, path: &str, (source, size): (Source, u64)) {
        let mut new_first: Option<String> = None;
        for e in &mut self.entries {
            if e.kind == EntryKind::Hardlink && e.target.as_deref() == Some(path) {
                match &new_first {
                    None => {
                        e.kind = EntryKind::File;
                        e.target = None;
                        e.source = source.clone();
                        e.size = size;
                        new_first = Some(e.path.clone());
                    }
                    Some(first) => e.target = Some(first.clone()),
                }
            }
        }
    }

    /// Add the missing parent directories of `path`. A parent that is a
    /// file or a symlink in the tree is an error: an archive with entries
    /// below a symlink would write through it when unpacked.
    fn ensure_dirs(&mut self, path: &str) -> Result<()> {
        let mut dir = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            if !dir.is_empty() {
                dir.push('/');
            }
            dir.push_str(part);
            match self.index(&dir) {
                Ok(i) if self.entries[i].kind != EntryKind::Dir => bail!(
                    "{dir}: is a {} in the tree, cannot add {path} below it",
                    self.entries[i].kind.as_str()
                ),
                Ok(_) => {}
                Err(at) => self.entries.insert(
                    at,
                    PackEntry {
                        mtime: self.mtime,
                        path: dir.clone(),
                        kind: EntryKind::Dir,
                        mode: 0o755,
                        size: 0,
                        target: None,
                        source: Source::None,
                    },
                ),
            }
        }
        Ok(())
    }

    /// Total content bytes (what progress counts per pass).
    pub fn content_bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    /// The manifest of this set, hashing files in parallel; the result does
    /// not depend on the thread count.
    pub fn manifest(&self, progress: Progress) -> Result<Manifest> {
        let entries = self
            .entries
            .par_iter()
            .map(|e| {
                let sha256 = match e.kind {
                    EntryKind::File => Some(hash_source(e, progress)?),
                    _ => None,
                };
                Ok(manifest_entry(e, sha256))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Manifest::from_entries(entries))
    }

    /// Compute the manifest and add it to the set at [`MANIFEST_PATH`].
    pub fn add_manifest(&mut self, progress: Progress) -> Result<Manifest> {
        let m = self.manifest(progress)?;
        self.put_file(MANIFEST_PATH, m.to_bytes(), Some(0o644))?;
        Ok(m)
    }
}

fn hash_source(e: &PackEntry, progress: Progress) -> Result<String> {
    let mut h = Sha256::new();
    let mut sink = |chunk: &[u8]| {
        h.update(chunk);
        progress(chunk.len() as u64);
        Ok(())
    };
    for_each_chunk(e, &mut sink)?;
    Ok(crate::manifest::hex(&h.finalize()))
}

/// Feed an entry's content to `sink` in chunks, checking that a disk file
/// still has the size and mtime it was listed with.
pub fn for_each_chunk(e: &PackEntry, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
    match &e.source {
        Source::Bytes(b) => sink(b),
        Source::None => Ok(()),
        Source::Disk { path, mtime } => {
            let mut f = std::fs::File::open(path)
                .with_context(|| format!("{}: cannot open", path.display()))?;
            let mut total = 0u64;
            bbrun_util::fsutil::read_chunks(&mut f, path, e.size, |chunk| {
                total += chunk.len() as u64;
                // A file that grew: stop, check_unchanged says so.
                if total > e.size {
                    return Ok(false);
                }
                sink(chunk)?;
                Ok(true)
            })?;
            check_unchanged(&f, path, e.size, *mtime, total)
        }
    }
}

/// A reader over an entry's content that fails (instead of writing a
/// corrupt archive) when a disk file changed since it was listed.
pub fn open_checked(e: &PackEntry) -> Result<Box<dyn Read + '_>> {
    match &e.source {
        Source::Bytes(b) => Ok(Box::new(&b[..])),
        Source::None => Ok(Box::new(std::io::empty())),
        Source::Disk { path, mtime } => {
            let f = std::fs::File::open(path)
                .with_context(|| format!("{}: cannot open", path.display()))?;
            Ok(Box::new(CheckedFile {
                f,
                path,
                size: e.size,
                mtime: *mtime,
                read: 0,
            }))
        }
    }
}

struct CheckedFile<'a> {
    f: std::fs::File,
    path: &'a Path,
    size: u64,
    mtime: i64,
    read: u64,
}

impl Read for CheckedFile<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min((self.size - self.read) as usize);
        if want == 0 {
            // The end: make sure the file did not change under us.
            return check_unchanged(&self.f, self.path, self.size, self.mtime, self.read)
                .map(|_| 0)
                .map_err(|e| std::io::Error::other(format!("{e:#}")));
        }
        let n = self.f.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::other(format!(
                "{}: changed while packing (shorter than {} bytes)",
                self.path.display(),
                self.size
            )));
        }
        self.read += n as u64;
        Ok(n)
    }
}

fn check_unchanged(f: &std::fs::File, path: &Path, size: u64, mtime: i64, read: u64) -> Result<()> {
    let meta = f
        .metadata()
        .with_context(|| format!("{}: cannot stat", path.display()))?;
    if read != size || meta.len() != size || meta.mtime() != mtime {
        bail!(
            "{}: changed while packing; pack again when the tree is quiet",
            path.display()
        );
    }
    Ok(())
}

/// The manifest's line for `e`, with its content's sha256 if a file.
pub(crate) fn manifest_entry(e: &PackEntry, sha256: Option<String>) -> ManifestEntry {
    ManifestEntry {
        path: e.path.clone(),
        kind: e.kind,
        mode: e.mode,
        size: match e.kind {
            EntryKind::Symlink => e.target.as_deref().map_or(0, |t| t.len() as u64),
            _ => e.size,
        },
        sha256,
        target: e.target.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn put_file_adds_parents_and_promotes_hardlinks() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::write(r.join("a"), b"same").unwrap();
        std::fs::hard_link(r.join("a"), r.join("b")).unwrap();
        std::fs::hard_link(r.join("a"), r.join("c")).unwrap();
        let mut set = PackSet::from_tree(r).unwrap();
        set.put_file("a", b"new".to_vec(), None).unwrap();
        set.put_file("x/y/z", b"z".to_vec(), None).unwrap();
        let kinds: Vec<_> = set
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("a", EntryKind::File),
                ("b", EntryKind::File),
                ("c", EntryKind::Hardlink),
                ("x", EntryKind::Dir),
                ("x/y", EntryKind::Dir),
                ("x/y/z", EntryKind::File)
            ]
        );
        assert_eq!(set.get("c").unwrap().target.as_deref(), Some("b"));
        std::os::unix::fs::symlink("/etc", r.join("s")).unwrap();
        let mut set2 = PackSet::from_tree(r).unwrap();
        let err = set2.put_file("s/passwd", b"x".to_vec(), None).unwrap_err();
        assert!(err.to_string().contains("s: is a symlink"), "{err}");
        let m = set.manifest(&|_| {}).unwrap();
        assert_eq!(
            m.get("a").unwrap().sha256.as_deref(),
            Some(manifest::sha256_hex(b"new").as_str())
        );
        assert_eq!(
            m.get("b").unwrap().sha256.as_deref(),
            Some(manifest::sha256_hex(b"same").as_str())
        );
    }

    #[test]
    fn changed_file_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), b"12345").unwrap();
        let set = PackSet::from_tree(d.path()).unwrap();
        std::fs::write(d.path().join("f"), b"12").unwrap();
        let err = set.manifest(&|_| {}).unwrap_err();
        assert!(
            format!("{err:#}").contains("changed while packing"),
            "{err:#}"
        );
        let mut out = Vec::new();
        let err = std::io::copy(&mut open_checked(&set.entries[0]).unwrap(), &mut out).unwrap_err();
        assert!(err.to_string().contains("changed while packing"), "{err}");
    }

    #[test]
    fn a_counter_is_a_progress() {
        let n = AtomicU64::new(0);
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), b"12345").unwrap();
        let set = PackSet::from_tree(d.path()).unwrap();
        set.manifest(&|k| {
            n.fetch_add(k, Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(n.load(Ordering::Relaxed), 5);
    }
}
