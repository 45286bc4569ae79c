//! The import index: where every importable name on the scripts' sys.path
//! lives, recorded at freeze so the shim (`bbrun_shim.py`) can answer
//! imports without searching.
//!
//! Python looks for a top-level module in every sys.path entry in turn;
//! its per-directory finder stats the directory on every lookup to see
//! whether its cached listing is still good, then stats the candidate
//! file. A buildout script with 80 eggs pays ~80 stats per top-level
//! import, and a namespace package spread over 40 eggs (`zope.*`) pays ~40
//! per submodule. bbrun knows the tree at freeze: it records, per
//! directory, the file names and the subdirectories (with the `__init__`
//! files each holds) and the directory's mtime. At run time one stat per
//! directory per process checks the mtime; an entry that no longer matches
//! (a module added or removed since freeze changes its directory's mtime)
//! is searched the normal way, so a stale entry is never used.
//!
//! Which directories: every sys.path entry of a script that lies inside
//! the tree, a virtualenv's site-packages, the directories `.pth` files in
//! those add, and below each of them every subdirectory whose name can be
//! imported (packages and namespace portions), so submodule imports are
//! served too. Paths are relative to the root: a moved tree still uses it.
//!
//! Format (`.bbrun/index/dirs.txt`), one directory a line, fields split by
//! TAB: `RELDIR  MTIME_NS  FILES  SUBDIRS`, where FILES is the regular file
//! names joined by `/` and SUBDIRS is `NAME\x1fMTIME_NS\x1fINIT,INIT...`
//! items joined by `/`. A name holding a control character or a comma is
//! left out of the index (its directory is then searched normally).

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Result;

use bbrun_map::map::STATE_DIR;
use bbrun_util::fsutil;

/// Format tag on the first line; the shim ignores an index it does not know.
pub const HEADER: &str = "bbrun-import-index 1";
/// Deep enough for any real package layout; a bound against link loops.
const MAX_DEPTH: usize = 24;

/// `ROOT/.bbrun/index/dirs.txt`.
pub fn index_path(root: &Path) -> PathBuf {
    root.join(STATE_DIR).join("index").join("dirs.txt")
}

/// Write the index of `walk` atomically.
pub fn write(root: &Path, walk: &Walk) -> Result<usize> {
    let text = walk.text();
    let path = index_path(root);
    let dir = path.parent().expect("index path has a parent");
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("{}: cannot create ({e})", dir.display()))?;
    if std::fs::read(&path).ok().as_deref() != Some(text.as_bytes()) {
        fsutil::atomic_write(&path, text.as_bytes(), 0o644)?;
    }
    Ok(walk.records.len())
}

/// The index text for `seeds`.
pub fn build(root: &Path, seeds: &[PathBuf]) -> String {
    walk(root, seeds).text()
}

/// The directories an index covers, each with its record as read.
pub struct Walk {
    records: Vec<(String, PathBuf, Record)>,
}

impl Walk {
    /// The indexed directories (absolute).
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.records.iter().map(|(_, dir, _)| dir.as_path())
    }

    fn text(&self) -> String {
        let mut lines: Vec<String> = self
            .records
            .iter()
            .map(|(rel, _, rec)| rec.line(rel))
            .collect();
        lines.sort();
        let mut out = String::from(HEADER);
        out.push('\n');
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
        out
    }
}

/// Read the directories `seeds` (absolute; those outside `root` are
/// skipped) make importable: each seed, what its `.pth` files add, and
/// their importable subdirectories.
pub fn walk(root: &Path, seeds: &[PathBuf]) -> Walk {
    let mut todo: Vec<(PathBuf, usize)> = Vec::new();
    for seed in seeds {
        if seed.is_dir() {
            todo.push((seed.clone(), 0));
            todo.extend(pth_dirs(seed).into_iter().map(|d| (d, 0)));
        }
    }
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut records = Vec::new();
    while let Some((dir, depth)) = todo.pop() {
        let Some(rel) = relative(root, &dir) else {
            continue;
        };
        if !done.insert(rel.clone()) {
            continue;
        }
        let Some(rec) = record(&dir) else { continue };
        if depth < MAX_DEPTH {
            for sub in &rec.subdirs {
                if importable(&sub.name) {
                    todo.push((dir.join(&sub.name), depth + 1));
                }
            }
        }
        records.push((rel, dir, rec));
    }
    Walk { records }
}

struct Sub {
    name: String,
    mtime_ns: i128,
    inits: Vec<String>,
}

struct Record {
    mtime_ns: i128,
    files: Vec<String>,
    subdirs: Vec<Sub>,
}

impl Record {
    fn line(&self, rel: &str) -> String {
        let subs: Vec<String> = self
            .subdirs
            .iter()
            .map(|s| format!("{}\x1f{}\x1f{}", s.name, s.mtime_ns, s.inits.join(",")))
            .collect();
        format!(
            "{rel}\t{}\t{}\t{}",
            self.mtime_ns,
            self.files.join("/"),
            subs.join("/")
        )
    }
}

fn mtime_ns(m: &std::fs::Metadata) -> i128 {
    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
}

/// One directory's record, or None when it cannot be indexed faithfully
/// (unreadable, a name the format cannot carry): then Python searches it.
fn record(dir: &Path) -> Option<Record> {
    let meta = std::fs::metadata(dir).ok()?;
    let mut files = Vec::new();
    let mut subdirs = Vec::new();
    for entry in std::fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        let name = entry.file_name().into_string().ok()?;
        if !plain(&name) {
            return None;
        }
        // Following symlinks, as Python's isfile/isdir do.
        let Ok(m) = std::fs::metadata(entry.path()) else {
            continue; // a dangling link: Python skips it too
        };
        if m.is_file() {
            files.push(name);
        } else if m.is_dir() {
            let mut inits = Vec::new();
            for e in std::fs::read_dir(entry.path()).ok()? {
                let e = e.ok()?;
                let n = e.file_name().into_string().ok()?;
                if n.starts_with("__init__") {
                    if !plain(&n) {
                        return None;
                    }
                    if std::fs::metadata(e.path()).is_ok_and(|m| m.is_file()) {
                        inits.push(n);
                    }
                }
            }
            inits.sort();
            subdirs.push(Sub {
                name,
                mtime_ns: mtime_ns(&m),
                inits,
            });
        }
    }
    files.sort();
    subdirs.sort_by(|a, b| a.name.cmp(&b.name));
    Some(Record {
        mtime_ns: mtime_ns(&meta),
        files,
        subdirs,
    })
}

/// A name the line format carries unambiguously.
fn plain(name: &str) -> bool {
    !name.chars().any(|c| c.is_control() || c == ',')
}

/// Could `import NAME` reach this directory? (Any identifier; Python's own
/// rule is wider for find_spec, and such directories are simply searched.)
fn importable(name: &str) -> bool {
    name != "__pycache__"
        && name
            .chars()
            .next()
            .is_some_and(|c| c == '_' || c.is_alphabetic())
        && name.chars().all(|c| c == '_' || c.is_alphanumeric())
}

/// Directories a `.pth` file in `dir` adds (its non-comment, non-import
/// lines, relative to `dir`), as `site.addsitedir` would.
fn pth_dirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut out = Vec::new();
    for e in entries.filter_map(|e| e.ok()) {
        if !e.file_name().to_string_lossy().ends_with(".pth") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        for line in text.lines() {
            let line = line.trim_end();
            if line.is_empty()
                || line.starts_with('#')
                || line.starts_with("import ")
                || line.starts_with("import\t")
            {
                continue;
            }
            // Lexically normalised, as site.addsitedir's abspath does.
            let p = fsutil::normalize(&dir.join(line));
            if p.is_dir() {
                out.push(p);
            }
        }
    }
    out
}

/// `dir` relative to `root`, '/'-separated; None outside the root.
fn relative(root: &Path, dir: &Path) -> Option<String> {
    let rel = dir.strip_prefix(root).ok()?;
    let s = rel.to_str()?;
    if s.is_empty() || s.split('/').any(|c| c == ".." || c == ".") {
        return None;
    }
    Some(s.trim_end_matches('/').to_string())
}

/// A sys.path literal of a script, as it names a directory of the tree
/// now: mapped through the tree's old roots and collected prefixes.
pub fn current_dir(literal: &str, pairs: &[bbrun_map::relocate::PathPair]) -> PathBuf {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    for (old, new) in pairs {
        if let Some(rest) = fsutil::relative_inside_bytes(literal.as_bytes(), old) {
            let new = Path::new(OsStr::from_bytes(new));
            return if rest.is_empty() {
                new.to_path_buf()
            } else {
                new.join(OsStr::from_bytes(rest))
            };
        }
    }
    PathBuf::from(literal)
}

/// A virtualenv's site-packages directories (`lib/python*/site-packages`).
pub fn venv_site_dirs(root: &Path) -> Vec<PathBuf> {
    if !root.join("pyvenv.cfg").is_file() {
        return vec![];
    }
    let Ok(entries) = std::fs::read_dir(root.join("lib")) else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn records_files_packages_and_namespace_portions() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let egg = r.join("eggs/a.egg");
        std::fs::create_dir_all(egg.join("pkg/sub")).unwrap();
        std::fs::create_dir_all(egg.join("ns/inner")).unwrap();
        std::fs::create_dir_all(egg.join("EGG-INFO")).unwrap();
        std::fs::write(egg.join("mod.py"), "").unwrap();
        std::fs::write(egg.join("pkg/__init__.py"), "").unwrap();
        std::fs::write(egg.join("ns/inner/__init__.py"), "").unwrap();
        std::fs::write(egg.join("extra.pth"), "# c\nimport x\n../b\n").unwrap();
        std::fs::create_dir_all(r.join("eggs/b/q")).unwrap();
        let text = build(r, &[egg.clone(), PathBuf::from("/elsewhere")]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], HEADER);
        let rels: Vec<&str> = lines[1..]
            .iter()
            .map(|l| l.split('\t').next().unwrap())
            .collect();
        // EGG-INFO is not importable: not recursed into; the .pth dir is.
        assert_eq!(
            rels,
            [
                "eggs/a.egg",
                "eggs/a.egg/ns",
                "eggs/a.egg/ns/inner",
                "eggs/a.egg/pkg",
                "eggs/a.egg/pkg/sub",
                "eggs/b",
                "eggs/b/q"
            ]
        );
        let top: Vec<&str> = lines[1].split('\t').collect();
        assert_eq!(top[2], "extra.pth/mod.py");
        let subs: Vec<Vec<&str>> = top[3]
            .split('/')
            .map(|s| s.split('\x1f').collect())
            .collect();
        assert_eq!(subs[0][0], "EGG-INFO");
        assert_eq!((subs[1][0], subs[1][2]), ("ns", ""));
        assert_eq!((subs[2][0], subs[2][2]), ("pkg", "__init__.py"));
    }

    #[test]
    fn maps_literals_through_old_roots() {
        let pairs = vec![(b"/old".to_vec(), b"/new\xe9".to_vec())];
        assert_eq!(
            current_dir("/old/eggs/x.egg", &pairs)
                .as_os_str()
                .as_bytes(),
            b"/new\xe9/eggs/x.egg"
        );
        assert_eq!(current_dir("/other", &pairs), PathBuf::from("/other"));
    }
}
