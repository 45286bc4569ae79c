//! Listing a tree the way every archive and the manifest see it: every
//! entry below the root (not the root itself), sorted by its relative
//! '/'-separated path, hardlinks detected by inode, symlinks not followed.
//!
//! Plain byte order on the whole path puts a directory before its contents
//! (a prefix sorts first) and the first name of a hardlinked inode before
//! its other names, which is what tar needs to write a link after its target.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// What an entry of a tree or a manifest is; its manifest spelling is
/// [`EntryKind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Hardlink,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
            EntryKind::Hardlink => "hardlink",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<EntryKind> {
        Some(match s {
            "file" => EntryKind::File,
            "dir" => EntryKind::Dir,
            "symlink" => EntryKind::Symlink,
            "hardlink" => EntryKind::Hardlink,
            _ => return None,
        })
    }
}

/// One entry of a tree on disk.
#[derive(Debug, Clone)]
pub struct TreeItem {
    /// Relative, '/'-separated.
    pub path: String,
    pub abs: PathBuf,
    pub kind: EntryKind,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// File size; symlink target length; 0 for directories and hardlinks.
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// Symlink target, or for a hardlink the path of its first name.
    pub target: Option<String>,
}

/// What a killed bbrun run may leave behind; never content (see
/// [`bbrun_util::fsutil::is_debris`]).
pub use bbrun_util::fsutil::is_debris;

/// Every entry below `root`, sorted by path. Sockets are left out: they
/// belong to a running program (a buildout's `var/*.sock`), not to the
/// content, and no archive carries them. Names that are not UTF-8, fifos
/// and devices are refused: no format here carries them faithfully and a
/// Python tree has none.
pub fn walk(root: &Path) -> Result<Vec<TreeItem>> {
    Ok(walk_noting_sockets(root)?.0)
}

/// [`walk`], and the relative paths of the sockets it left out.
pub fn walk_noting_sockets(root: &Path) -> Result<(Vec<TreeItem>, Vec<String>)> {
    let mut items = Vec::new();
    let mut sockets = Vec::new();
    for found in list_below(root, root)? {
        match found {
            Found::Item(item, identity) => items.push((item, identity)),
            Found::Socket(rel) => sockets.push(rel),
        }
    }
    items.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    sockets.sort();
    let mut first_names = FirstNames::default();
    let items = items
        .into_iter()
        .map(|(mut item, identity)| {
            first_names.name(&mut item, identity);
            item
        })
        .collect();
    Ok((items, sockets))
}

/// Every entry below `root`, handed to `sink` in sorted order as the walk
/// reaches it (not yet hardlink-resolved: see [`FirstNames`]), sockets
/// included. A directory is listed when its turn comes, so a consumer
/// starts on the first entries while the rest of the tree is unlisted.
///
/// The order is byte order on the whole path: within a directory each
/// entry sorts at its name and a subdirectory's content at its name
/// followed by `/`, after siblings such as `name.b` or `name-x`.
pub fn walk_sorted(root: &Path, sink: &mut dyn FnMut(Found) -> Result<()>) -> Result<()> {
    walk_sorted_below(root, root, sink)
}

fn walk_sorted_below(
    root: &Path,
    dir: &Path,
    sink: &mut dyn FnMut(Found) -> Result<()>,
) -> Result<()> {
    enum Step {
        Emit(Found),
        Descend(PathBuf),
    }
    let mut steps: Vec<(String, Step)> = Vec::new();
    for found in list_dir(root, dir)? {
        if let Found::Item(item, _) = &found {
            if item.kind == EntryKind::Dir {
                steps.push((format!("{}/", item.path), Step::Descend(item.abs.clone())));
            }
        }
        let key = match &found {
            Found::Item(item, _) => item.path.clone(),
            Found::Socket(rel) => rel.clone(),
        };
        steps.push((key, Step::Emit(found)));
    }
    steps.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (_, step) in steps {
        match step {
            Step::Emit(found) => sink(found)?,
            Step::Descend(sub) => walk_sorted_below(root, &sub, sink)?,
        }
    }
    Ok(())
}

/// Hardlink resolution in sorted order: the first name of an inode is
/// the file; its later names link to it.
#[derive(Default)]
pub struct FirstNames(HashMap<(u64, u64), String>);

impl FirstNames {
    /// Make `item` a hardlink to the first name of its inode if one came
    /// before it (items must come in sorted order).
    pub fn name(&mut self, item: &mut TreeItem, (dev, ino, nlink): (u64, u64, u64)) {
        if item.kind != EntryKind::File || nlink <= 1 {
            return;
        }
        match self.0.get(&(dev, ino)) {
            Some(first) => {
                item.kind = EntryKind::Hardlink;
                item.size = 0;
                item.target = Some(first.clone());
            }
            None => {
                self.0.insert((dev, ino), item.path.clone());
            }
        }
    }
}

/// What listing a directory finds: an entry with its inode identity
/// (device, inode, link count) for hardlink detection, or a socket.
pub enum Found {
    Item(TreeItem, (u64, u64, u64)),
    Socket(String),
}

/// Everything below `dir`, in no particular order. Subdirectories are
/// listed in parallel: a tree of 30k files costs ~60 ms of `stat`s on one
/// core, time in which `bbrun pack` has nothing else to do.
fn list_below(root: &Path, dir: &Path) -> Result<Vec<Found>> {
    let mut found = list_dir(root, dir)?;
    let subdirs: Vec<PathBuf> = found
        .iter()
        .filter_map(|f| match f {
            Found::Item(item, _) if item.kind == EntryKind::Dir => Some(item.abs.clone()),
            _ => None,
        })
        .collect();
    use rayon::prelude::*;
    let below = subdirs
        .par_iter()
        .map(|d| list_below(root, d))
        .collect::<Result<Vec<_>>>()?;
    found.extend(below.into_iter().flatten());
    Ok(found)
}

/// The entries of `dir` itself, in directory order.
fn list_dir(root: &Path, dir: &Path) -> Result<Vec<Found>> {
    let cannot_read =
        |at: &Path, e: std::io::Error| anyhow::anyhow!("{}: cannot read ({e})", at.display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| cannot_read(dir, e))? {
        let entry = entry.map_err(|e| cannot_read(dir, e))?;
        // Debris of killed runs is never content (see `is_debris`).
        if entry.file_name().to_str().is_some_and(is_debris) {
            continue;
        }
        let abs = entry.path();
        let rel = abs.strip_prefix(root).unwrap_or(&abs);
        let Some(rel) = rel.to_str() else {
            bail!(
                "{}: file name is not UTF-8; bbrun cannot archive it",
                abs.display()
            );
        };
        let rel = rel.to_string();
        // Not following a symlink: DirEntry::metadata is an lstat.
        let meta = entry
            .metadata()
            .with_context(|| format!("{}: cannot stat", abs.display()))?;
        let ft = meta.file_type();
        let (kind, size, target) = if ft.is_dir() {
            (EntryKind::Dir, 0, None)
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&abs)
                .with_context(|| format!("{}: cannot read symlink", abs.display()))?;
            let Some(t) = t.to_str() else {
                bail!("{}: symlink target is not UTF-8", abs.display());
            };
            (EntryKind::Symlink, t.len() as u64, Some(t.to_string()))
        } else if ft.is_file() {
            (EntryKind::File, meta.len(), None)
        } else if ft.is_socket() {
            found.push(Found::Socket(rel));
            continue;
        } else {
            bail!(
                "{}: is a fifo or device; bbrun archives only files, directories and links",
                abs.display()
            );
        };
        let identity = (meta.dev(), meta.ino(), meta.nlink());
        let item = TreeItem {
            path: rel,
            abs,
            kind,
            mode: meta.mode() & 0o7777,
            size,
            mtime: meta.mtime(),
            target,
        };
        found.push(Found::Item(item, identity));
    }
    Ok(found)
}

/// The newest mtime in the tree (0 for an empty tree): the default archive
/// timestamp, so an unchanged tree packs to the same bytes.
pub fn newest_mtime(items: &[TreeItem]) -> i64 {
    items.iter().map(|i| i.mtime).max().unwrap_or(0).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_with_hardlinks_after_first_name() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir(r.join("a")).unwrap();
        std::fs::write(r.join("a/z"), b"x").unwrap();
        std::fs::hard_link(r.join("a/z"), r.join("a.b")).unwrap();
        std::os::unix::fs::symlink("a/z", r.join("s")).unwrap();
        let items = walk(r).unwrap();
        let names: Vec<_> = items.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(names, ["a", "a.b", "a/z", "s"]);
        assert_eq!(items[1].kind, EntryKind::File);
        assert_eq!(items[2].kind, EntryKind::Hardlink);
        assert_eq!(items[2].target.as_deref(), Some("a.b"));
        assert_eq!(items[3].kind, EntryKind::Symlink);
        assert_eq!(items[3].target.as_deref(), Some("a/z"));
    }

    #[test]
    fn the_sorted_walk_yields_the_sorted_listing() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        // Names that sort between a directory and its content: `a.b`,
        // `a-c`, `a!` come after `a` but before `a/...`.
        for dir in ["a/x", "a/x.y", "a-c/q", "b", "a/x/deep"] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        for f in [
            "a/x/deep/f",
            "a/x0",
            "a/x.y/g",
            "a.b",
            "a!",
            "a-c/q/h",
            "b/z",
            "a/x/ff",
        ] {
            std::fs::write(r.join(f), f).unwrap();
        }
        std::fs::hard_link(r.join("a/x0"), r.join("a!x")).unwrap();
        std::os::unix::fs::symlink("b", r.join("a/x/l")).unwrap();
        let _l = std::os::unix::net::UnixListener::bind(r.join("a/x/s.sock")).unwrap();
        let (want, want_sockets) = walk_noting_sockets(r).unwrap();
        let mut got = Vec::new();
        let mut sockets = Vec::new();
        let mut first_names = FirstNames::default();
        walk_sorted(r, &mut |found| {
            match found {
                Found::Item(mut item, identity) => {
                    first_names.name(&mut item, identity);
                    got.push(item);
                }
                Found::Socket(rel) => sockets.push(rel),
            }
            Ok(())
        })
        .unwrap();
        let show = |items: &[TreeItem]| -> Vec<String> {
            items
                .iter()
                .map(|i| format!("{} {:?} {:?}", i.path, i.kind, i.target))
                .collect()
        };
        assert_eq!(show(&got), show(&want));
        assert_eq!(sockets, want_sockets);
        assert!(got.iter().any(|i| i.kind == EntryKind::Hardlink));
    }

    #[test]
    fn sockets_are_left_out_and_noted() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("var")).unwrap();
        let _l = std::os::unix::net::UnixListener::bind(d.path().join("var/zeo.sock")).unwrap();
        let (items, sockets) = walk_noting_sockets(d.path()).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(sockets, ["var/zeo.sock"]);
    }

    #[test]
    fn debris_names() {
        for d in [
            "_x.so.bbrun-tmp.123",
            ".map.toml.bbrun-tmp.9",
            ".buildout.cfg.bbrun-relocate",
            ".app.bbrun-staging.77",
            ".app.bbrun-old.1",
        ] {
            assert!(is_debris(d), "{d}");
        }
        for ok in [
            "x.bbrun-tmp.",
            "x.bbrun-tmp.1a",
            "a.bbrun-relocate",
            "app.bbrun-old.1",
            "x.so",
        ] {
            assert!(!is_debris(ok), "{ok}");
        }
    }
}
