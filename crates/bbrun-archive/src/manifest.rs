//! The manifest: every entry of a packed tree with its kind, mode, size and
//! content hash, so an unpacked or installed copy can be checked against
//! what was packed (`bbrun verify`, `bbrun install`).
//!
//! It lives in the tree and in every archive at [`MANIFEST_PATH`] and
//! describes everything except itself.
//!
//! # Format (`.bbrun/manifest.tsv`)
//!
//! UTF-8 text, one line per entry, each line ended by `\n`. The first line
//! is the header `bbrun-manifest<TAB>1` (the format version). Every other
//! line has six tab-separated columns:
//!
//! ```text
//! path    kind    mode    size    sha256    target
//! bin/app file    0755    1234    9f86d0…   -
//! lib     dir     0755    0       -         -
//! py      symlink 0777    14      -         /usr/bin/python3
//! bin/b   hardlink 0755   0       -         bin/app
//! ```
//!
//! - `path`: relative to the root, `/`-separated, no `.`/`..`/empty parts.
//! - `kind`: `file`, `dir`, `symlink` or `hardlink`.
//! - `mode`: permission bits in octal (`mode & 0o7777`).
//! - `size`: bytes of a file; length of a symlink's target; 0 otherwise.
//! - `sha256`: lowercase hex digest of a file's content; `-` otherwise.
//! - `target`: a symlink's target as stored, or the path of the entry a
//!   hardlink shares its content with (always listed earlier); `-` otherwise.
//!
//! Entries are sorted by path (byte order), each path once. `path` and
//! `target` are escaped so no name can break a line or a column: `\\` for a
//! backslash, `\t`, `\n`, `\r`, and `\xHH` for other control bytes and for
//! a text that is exactly `-`, so a file named `-` is not read as "none".

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::walk;

/// Where the manifest lives in a tree and in every archive.
pub const MANIFEST_PATH: &str = ".bbrun/manifest.tsv";
/// The header line (without its newline).
pub const HEADER: &str = "bbrun-manifest\t1";

/// What an entry is (defined beside the tree walk that finds it).
pub use crate::walk::EntryKind;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Relative, '/'-separated.
    pub path: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub size: u64,
    /// Files only.
    pub sha256: Option<String>,
    /// Symlink target, or the earlier path a hardlink shares content with.
    pub target: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Sorted by path.
    pub entries: Vec<ManifestEntry>,
}

/// How a tree differs from a manifest; each list sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeDiff {
    /// In the tree, not in the manifest.
    pub added: Vec<String>,
    /// In the manifest, not in the tree.
    pub missing: Vec<String>,
    /// In both, with another kind, mode, size, content or target.
    pub changed: Vec<String>,
}

impl TreeDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.missing.is_empty() && self.changed.is_empty()
    }
}

impl Manifest {
    /// The manifest of the tree at `root` as it is now, without the
    /// manifest file itself. Files are hashed in parallel; the result does
    /// not depend on the thread count.
    pub fn from_tree(root: &Path) -> Result<Manifest> {
        let items: Vec<_> = walk::walk(root)?
            .into_iter()
            .filter(|i| i.path != MANIFEST_PATH)
            .collect();
        let entries = items
            .par_iter()
            .map(|i| {
                let sha256 = match i.kind {
                    EntryKind::File => Some(sha256_file(&i.abs)?),
                    _ => None,
                };
                Ok(ManifestEntry {
                    path: i.path.clone(),
                    kind: i.kind,
                    mode: i.mode,
                    size: i.size,
                    sha256,
                    target: i.target.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Manifest::from_entries(entries))
    }

    /// A manifest of `entries`, sorted by path.
    pub fn from_entries(mut entries: Vec<ManifestEntry>) -> Manifest {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Manifest { entries }
    }

    /// Parse manifest bytes read from `source` (named in every error, with
    /// the line number).
    pub fn parse(bytes: &[u8], source: &Path) -> Result<Manifest> {
        let src = source.display();
        let text = std::str::from_utf8(bytes).map_err(|e| {
            anyhow!(
                "{src}: manifest is not UTF-8 text (at byte {})",
                e.valid_up_to()
            )
        })?;
        let mut lines = text.split_terminator('\n');
        match lines.next() {
            Some(HEADER) => {}
            Some(h) if h.starts_with("bbrun-manifest\t") => bail!(
                "{src}:1: manifest version {:?} is not supported (this bbrun reads version 1)",
                &h["bbrun-manifest\t".len()..]
            ),
            _ => bail!("{src}:1: not a bbrun manifest (no `bbrun-manifest` header)"),
        }
        if !text.ends_with('\n') {
            bail!("{src}: manifest is truncated (no newline at the end)");
        }
        let mut entries = Vec::new();
        for (i, line) in lines.enumerate() {
            let n = i + 2;
            let e = parse_line(line).map_err(|e| anyhow!("{src}:{n}: {e}"))?;
            entries.push(e);
        }
        let m = Manifest::from_entries(entries);
        for w in m.entries.windows(2) {
            if w[0].path == w[1].path {
                bail!("{src}: manifest lists {:?} twice", w[0].path);
            }
        }
        let by_path: BTreeMap<&str, &ManifestEntry> =
            m.entries.iter().map(|e| (e.path.as_str(), e)).collect();
        for e in &m.entries {
            if e.kind == EntryKind::Hardlink {
                let t = e.target.as_deref().unwrap_or_default();
                if by_path.get(t).is_none_or(|t| t.kind != EntryKind::File) {
                    bail!(
                        "{src}: hardlink {:?} names {t:?}, which is not a file in the manifest",
                        e.path
                    );
                }
            }
        }
        Ok(m)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Written piece by piece, escaping only names that need it: the
        // manifest of a Plone tree (29k lines) is written at the end of
        // every pack, on its critical path (~28 ms through format! and an
        // escaped copy of every name; ~13 ms so).
        let mut s = String::with_capacity(64 + self.entries.len() * 140);
        s.push_str(HEADER);
        s.push('\n');
        for e in &self.entries {
            escape_into(&mut s, &e.path);
            s.push('\t');
            s.push_str(e.kind.as_str());
            let _ = write!(s, "\t{:04o}\t{}\t", e.mode, e.size);
            s.push_str(e.sha256.as_deref().unwrap_or("-"));
            s.push('\t');
            match e.target.as_deref() {
                Some(t) => escape_into(&mut s, t),
                None => s.push('-'),
            }
            s.push('\n');
        }
        s.into_bytes()
    }

    pub fn get(&self, path: &str) -> Option<&ManifestEntry> {
        self.entries
            .binary_search_by(|e| e.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// Compare the tree at `root` with this manifest. A hardlink unpacked
    /// as a separate copy with the same content (or the reverse) counts as
    /// unchanged: the content is what matters to the application.
    pub fn compare(&self, root: &Path) -> Result<TreeDiff> {
        let now = Manifest::from_tree(root)?;
        let mut diff = TreeDiff::default();
        let (mut a, mut b) = (
            self.entries.iter().peekable(),
            now.entries.iter().peekable(),
        );
        loop {
            match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(x), None) => {
                    diff.missing.push(x.path.clone());
                    a.next();
                }
                (None, Some(y)) => {
                    diff.added.push(y.path.clone());
                    b.next();
                }
                (Some(x), Some(y)) => match x.path.cmp(&y.path) {
                    std::cmp::Ordering::Less => {
                        diff.missing.push(x.path.clone());
                        a.next();
                    }
                    std::cmp::Ordering::Greater => {
                        diff.added.push(y.path.clone());
                        b.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if !same(x, self, y, &now) {
                            diff.changed.push(x.path.clone());
                        }
                        a.next();
                        b.next();
                    }
                },
            }
        }
        Ok(diff)
    }
}

/// Whether `x` (of manifest `mx`) and `y` (of `my`) describe the same thing.
fn same(x: &ManifestEntry, mx: &Manifest, y: &ManifestEntry, my: &Manifest) -> bool {
    let content = |e: &ManifestEntry, m: &Manifest| -> Option<(u64, Option<String>)> {
        let e = match e.kind {
            EntryKind::Hardlink => m.get(e.target.as_deref()?)?,
            _ => e,
        };
        Some((e.size, e.sha256.clone()))
    };
    if x.mode != y.mode {
        return false;
    }
    match (x.kind, y.kind) {
        (EntryKind::File | EntryKind::Hardlink, EntryKind::File | EntryKind::Hardlink) => {
            content(x, mx).is_some() && content(x, mx) == content(y, my)
        }
        _ => x == y,
    }
}

fn parse_line(line: &str) -> Result<ManifestEntry> {
    let cols: Vec<&str> = line.split('\t').collect();
    if cols.len() != 6 {
        bail!("expected 6 tab-separated columns, found {}", cols.len());
    }
    let path = unescape(cols[0]).map_err(|e| anyhow!("path: {e}"))?;
    check_path(&path)?;
    let kind = EntryKind::parse(cols[1]).ok_or_else(|| anyhow!("unknown kind {:?}", cols[1]))?;
    let mode = u32::from_str_radix(cols[2], 8)
        .ok()
        .filter(|m| *m <= 0o7777 && !cols[2].is_empty())
        .ok_or_else(|| anyhow!("bad mode {:?} (octal permission bits)", cols[2]))?;
    let size: u64 = cols[3]
        .parse()
        .map_err(|_| anyhow!("bad size {:?}", cols[3]))?;
    let sha256 = match cols[4] {
        "-" => None,
        h if h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Some(h.to_string())
        }
        h => bail!("bad sha256 {h:?} (64 lowercase hex digits)"),
    };
    let target = match cols[5] {
        "-" => None,
        t => Some(unescape(t).map_err(|e| anyhow!("target: {e}"))?),
    };
    match kind {
        EntryKind::File if sha256.is_none() => bail!("file {path:?} has no sha256"),
        EntryKind::File | EntryKind::Dir if target.is_some() => {
            bail!("{} {path:?} has a target", kind.as_str())
        }
        EntryKind::Symlink | EntryKind::Hardlink if target.is_none() => {
            bail!("{} {path:?} has no target", kind.as_str())
        }
        EntryKind::Dir | EntryKind::Symlink | EntryKind::Hardlink if sha256.is_some() => {
            bail!("{} {path:?} has a sha256", kind.as_str())
        }
        _ => {}
    }
    if kind == EntryKind::Hardlink {
        check_path(target.as_deref().unwrap_or_default()).map_err(|e| anyhow!("target: {e}"))?;
    }
    if target
        .as_deref()
        .is_some_and(|t| t.is_empty() || t.contains('\0'))
    {
        bail!(
            "{} {path:?} has an empty target or one with a NUL byte",
            kind.as_str()
        );
    }
    Ok(ManifestEntry {
        path,
        kind,
        mode,
        size,
        sha256,
        target,
    })
}

/// A manifest path must stay inside the root: relative, no `.`, `..` or
/// empty parts, no NUL.
pub fn check_path(path: &str) -> Result<()> {
    if path.is_empty()
        || path.starts_with('/')
        || path.contains('\0')
        || path
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
    {
        bail!("path {path:?} is not a plain relative path inside the tree");
    }
    Ok(())
}

/// Escape a path or target for one column; see the module docs.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

/// [`escape`], appended to `out`.
pub fn escape_into(out: &mut String, s: &str) {
    if s == "-" {
        out.push_str("\\x2d");
        return;
    }
    let plain = |b: u8| b >= 0x20 && b != b'\\' && b != 0x7f;
    if s.bytes().all(plain) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

pub fn unescape(s: &str) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let b = u8::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|b| b.is_ascii() && hex.len() == 2)
                    .ok_or_else(|| anyhow!("bad escape \\x{hex} in {s:?}"))?;
                out.push(b as char);
            }
            other => bail!(
                "bad escape \\{} in {s:?}",
                other.map(String::from).unwrap_or_default()
            ),
        }
    }
    Ok(out)
}

/// sha256 of a file's content (one implementation for every hash bbrun
/// prints or checks).
pub use bbrun_util::fsutil::sha256_file;

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of a digest, as the manifest writes sha256 sums.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bbrun_util::fsutil::hex(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("bin")).unwrap();
        std::fs::write(r.join("bin/app"), b"#!/x\nprint(1)\n").unwrap();
        std::fs::set_permissions(r.join("bin/app"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::hard_link(r.join("bin/app"), r.join("bin/same")).unwrap();
        std::os::unix::fs::symlink("app", r.join("bin/link")).unwrap();
        std::fs::write(r.join("tab\there\nnl\\-"), b"odd").unwrap();
        std::fs::write(r.join("-"), b"dash").unwrap();
        std::fs::create_dir_all(r.join(".bbrun")).unwrap();
        std::fs::write(r.join(MANIFEST_PATH), b"stale").unwrap();
        d
    }

    #[test]
    fn round_trips_through_text_with_odd_names() {
        let d = tree();
        let m = Manifest::from_tree(d.path()).unwrap();
        assert!(m.get(MANIFEST_PATH).is_none());
        assert_eq!(m.get("bin/same").unwrap().kind, EntryKind::Hardlink);
        assert_eq!(m.get("bin/link").unwrap().target.as_deref(), Some("app"));
        let bytes = m.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(text.lines().count(), m.entries.len() + 1, "{text}");
        assert!(text.contains("\\x2d\tfile"), "{text}");
        let back = Manifest::parse(&bytes, Path::new("m.tsv")).unwrap();
        assert_eq!(back, m);
        assert!(m.compare(d.path()).unwrap().is_empty());
    }

    #[test]
    fn compare_finds_added_missing_changed() {
        let d = tree();
        let r = d.path();
        let m = Manifest::from_tree(r).unwrap();
        std::fs::write(r.join("new"), b"n").unwrap();
        std::fs::remove_file(r.join("-")).unwrap();
        std::fs::set_permissions(r.join("bin/app"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        let diff = m.compare(r).unwrap();
        assert_eq!(diff.added, ["new"]);
        assert_eq!(diff.missing, ["-"]);
        assert_eq!(diff.changed, ["bin/app", "bin/same"]);
    }

    #[test]
    fn hardlink_unpacked_as_copy_is_unchanged() {
        let d = tree();
        let r = d.path();
        let m = Manifest::from_tree(r).unwrap();
        std::fs::remove_file(r.join("bin/same")).unwrap();
        std::fs::copy(r.join("bin/app"), r.join("bin/same")).unwrap();
        assert!(m.compare(r).unwrap().is_empty());
    }

    #[test]
    fn malformed_input_errors_name_source_and_line() {
        let src = Path::new("/t/manifest.tsv");
        let cases: &[(&[u8], &str)] = &[
            (b"", "/t/manifest.tsv:1: not a bbrun manifest"),
            (b"bbrun-manifest\t9\n", "version \"9\" is not supported"),
            (b"bbrun-manifest\t1", "truncated"),
            (
                b"bbrun-manifest\t1\na\tfile\n",
                "/t/manifest.tsv:2: expected 6",
            ),
            (
                b"bbrun-manifest\t1\n../x\tdir\t0755\t0\t-\t-\n",
                ":2: path \"../x\"",
            ),
            (
                b"bbrun-manifest\t1\nx\tfile\t0644\t1\t-\t-\n",
                "has no sha256",
            ),
            (b"bbrun-manifest\t1\nx\tdir\t9\t0\t-\t-\n", "bad mode"),
            (
                b"bbrun-manifest\t1\nx\\q\tdir\t0755\t0\t-\t-\n",
                "bad escape",
            ),
            (
                b"bbrun-manifest\t1\nx\\x\tdir\t0755\t0\t-\t-\n",
                "bad escape",
            ),
            (
                b"bbrun-manifest\t1\nx\thardlink\t0644\t0\t-\ty\n",
                "not a file in the manifest",
            ),
            (
                b"bbrun-manifest\t1\nx\tdir\t0755\t0\t-\t-\nx\tdir\t0755\t0\t-\t-\n",
                "twice",
            ),
            (b"\xff\xfe", "not UTF-8"),
            (
                b"bbrun-manifest\t1\nx\tsymlink\t0777\t1\t-\ta\\x00\n",
                "NUL byte",
            ),
        ];
        for (input, want) in cases {
            let err = format!("{:#}", Manifest::parse(input, src).unwrap_err());
            assert!(err.contains(want), "{want:?} not in {err:?}");
            assert!(err.contains("/t/manifest.tsv"), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn escape_round_trips() {
        for s in ["a\tb", "a\nb\\c", "-", "--", "\x01\x7f", "ü/é"] {
            assert_eq!(unescape(&escape(s)).unwrap(), s);
            assert!(!escape(s).contains(['\t', '\n']));
        }
    }
}
