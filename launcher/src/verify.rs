//! Comparing a tree with its manifest (`.bbrun/manifest.tsv`), telling the
//! differences bbrun made itself (relocation rewrites, script first lines)
//! from everything else.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use bbrun_archive::manifest::{EntryKind, Manifest, ManifestEntry, TreeDiff, MANIFEST_PATH};
use bbrun_archive::unpack::safe_mode;
use serde::Serialize;

use crate::map::{self, Action, Inventory, RelocationMap};
use crate::shebang;

/// A difference that install/relocate (or Python itself) makes on purpose.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Expected {
    pub path: String,
    pub reason: &'static str,
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub root: String,
    /// Differences that are not bbrun's doing: each one fails the check.
    pub added: Vec<String>,
    pub missing: Vec<String>,
    pub changed: Vec<String>,
    pub expected: Vec<Expected>,
    pub ok: bool,
}

/// Check the tree at `root` against `root/.bbrun/manifest.tsv`.
pub fn verify_tree(root: &Path) -> Result<VerifyReport> {
    let manifest_path = root.join(MANIFEST_PATH);
    let bytes = std::fs::read(&manifest_path).with_context(|| {
        format!(
            "{}: cannot read the manifest (trees get one from `bbrun pack`)",
            manifest_path.display()
        )
    })?;
    let expected = Manifest::parse(&bytes, &manifest_path)?;
    let actual = Manifest::from_tree(root)?;
    let diff = diff_manifests(&expected, &actual);
    // A tree whose map or inventory is unreadable is still checked; only
    // nothing counts as bbrun's own doing.
    let map = map::load(&map::map_path(root)).ok();
    let inventory = map::load_inventory(&map::inventory_path(root)).ok();
    Ok(classify(
        root,
        diff,
        &expected,
        &actual,
        map.as_ref(),
        inventory.as_ref(),
    ))
}

/// How `actual` differs from `expected`. A hardlink on one side and a copy
/// with the same content on the other count as the same.
pub fn diff_manifests(expected: &Manifest, actual: &Manifest) -> TreeDiff {
    let a: HashMap<&str, &ManifestEntry> = expected
        .entries
        .iter()
        .filter(|e| e.path != MANIFEST_PATH)
        .map(|e| (e.path.as_str(), e))
        .collect();
    let b: HashMap<&str, &ManifestEntry> = actual
        .entries
        .iter()
        .filter(|e| e.path != MANIFEST_PATH)
        .map(|e| (e.path.as_str(), e))
        .collect();
    let mut diff = TreeDiff::default();
    for (path, x) in &a {
        match b.get(path) {
            None => diff.missing.push(path.to_string()),
            Some(y) if !same(x, expected, y, actual) => diff.changed.push(path.to_string()),
            Some(_) => {}
        }
    }
    diff.added = b
        .keys()
        .filter(|p| !a.contains_key(*p))
        .map(|p| p.to_string())
        .collect();
    diff.added.sort();
    diff.missing.sort();
    diff.changed.sort();
    diff
}

fn same(x: &ManifestEntry, mx: &Manifest, y: &ManifestEntry, my: &Manifest) -> bool {
    fn content<'a>(e: &'a ManifestEntry, m: &'a Manifest) -> Option<(u64, Option<&'a str>)> {
        let e = match e.kind {
            EntryKind::Hardlink => m.get(e.target.as_deref()?)?,
            _ => e,
        };
        Some((e.size, e.sha256.as_deref()))
    }
    if x.mode != y.mode {
        return false;
    }
    let is_file = |k| matches!(k, EntryKind::File | EntryKind::Hardlink);
    if is_file(x.kind) && is_file(y.kind) {
        let c = content(x, mx);
        c.is_some() && c == content(y, my)
    } else {
        x.kind == y.kind && x.target == y.target && x.size == y.size
    }
}

/// Split a diff into what bbrun did on purpose and the rest.
pub fn classify(
    root: &Path,
    diff: TreeDiff,
    expected: &Manifest,
    actual: &Manifest,
    map: Option<&RelocationMap>,
    inventory: Option<&Inventory>,
) -> VerifyReport {
    let mut report = VerifyReport {
        root: root.display().to_string(),
        missing: diff.missing,
        ..Default::default()
    };
    let rewritten = |p: &str| {
        inventory.is_some_and(|inv| {
            inv.files
                .iter()
                .any(|e| e.path == p && e.action == Action::RewriteOnRelocate)
        })
    };
    let state_file = |name: &str| format!("{}/{name}", map::STATE_DIR);
    for path in diff.changed {
        let (Some(x), Some(y)) = (expected.get(&path), actual.get(&path)) else {
            report.changed.push(path);
            continue;
        };
        // Install removes unsafe mode bits (setuid, group write...);
        // anything else but content is never ours.
        let stripped = x.mode != y.mode && y.mode == safe_mode(x.mode);
        let same_but_mode = stripped && {
            let mut x2 = x.clone();
            x2.mode = y.mode;
            same(&x2, expected, y, actual)
        };
        let content_only = (x.mode == y.mode || stripped) && y.kind == EntryKind::File;
        let venv_link = |p: &str| map.is_some_and(|m| m.interpreter.links.iter().any(|l| l == p));
        let venv_cfg = |p: &str| {
            p.strip_suffix("pyvenv.cfg").is_some_and(|dir| {
                map.is_some_and(|m| {
                    m.interpreter
                        .links
                        .iter()
                        .any(|l| l.starts_with(&format!("{dir}bin/")))
                })
            })
        };
        let reason = if same_but_mode {
            Some("mode made safe by install (setuid/setgid/sticky, group/world write removed)")
        } else if venv_link(&path) && y.kind == EntryKind::Symlink {
            Some("virtualenv's interpreter link re-pointed at this machine's interpreter")
        } else if !content_only {
            None
        } else if venv_cfg(&path) {
            Some("virtualenv's pyvenv.cfg: home set to this machine's interpreter")
        } else if path == state_file(map::MAP_FILE) && map.is_some() {
            // Only a map that loads (validated) is an update of bbrun's.
            Some("relocation map updated for the tree's new root")
        } else if rewritten(&path) {
            match map.map(|m| undo_rewrite_matches(root, &path, m, x.sha256.as_deref())) {
                Some(Some(true)) => Some("recorded file rewritten for the tree's new root (undoing the rewrite gives the packed content)"),
                Some(Some(false)) => None,
                _ => Some("recorded file rewritten for the tree's new root"),
            }
        } else if map.is_some_and(|m| script_line1_only(root, m, &path)) {
            Some("script's first line points at the launcher")
        } else {
            None
        };
        match reason {
            Some(reason) => report.expected.push(Expected { path, reason }),
            None => report.changed.push(path),
        }
    }
    for path in diff.added {
        // Python writes bytecode caches beside the sources it imports.
        if path == state_file(crate::autorelocate::LOCK_FILE) {
            report.expected.push(Expected {
                path,
                reason: "lock of the launcher's relocation at a new root",
            });
        } else if path.ends_with(".pyc") && path.contains("__pycache__/")
            || path.ends_with("__pycache__")
        {
            report.expected.push(Expected {
                path,
                reason: "bytecode cache written by Python at run time",
            });
        } else if path == state_file("lock") {
            report.expected.push(Expected {
                path,
                reason: "lock file of `bbrun buildout` runs",
            });
        } else {
            report.added.push(path);
        }
    }
    report.ok = report.added.is_empty() && report.missing.is_empty() && report.changed.is_empty();
    report
}

/// Whether undoing the relocation rewrite of `rel` gives the packed
/// content (`want`): `Some(true)` yes, `Some(false)` no (tampered after the
/// rewrite), `None` when the rewrite cannot be undone unambiguously (the
/// tree was built through a symlink, so two old forms became one).
fn undo_rewrite_matches(
    root: &Path,
    rel: &str,
    map: &RelocationMap,
    want: Option<&str>,
) -> Option<bool> {
    let want = want?;
    if map.build.root != map.build.root_realpath {
        return None;
    }
    let bytes = std::fs::read(root.join(rel)).ok()?;
    let now = map.files_root();
    let mut candidates: Vec<&str> = vec![&map.build.root];
    candidates.extend(map.build.previous_roots.iter().map(String::as_str));
    for old in candidates.into_iter().filter(|c| *c != now) {
        let mut pairs: Vec<(String, String)> = map
            .prefixes
            .iter()
            .map(|p| (format!("{now}/{}", p.in_tree), p.original.clone()))
            .collect();
        pairs.push((now.to_string(), old.to_string()));
        pairs.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        let undone = crate::relocate::rewrite_text(&bytes, &pairs).unwrap_or_else(|| bytes.clone());
        if crate::fsutil::sha256_hex(&undone) == want {
            return Some(true);
        }
    }
    Some(false)
}

/// A recorded script whose body (everything after line 1) is still what
/// freeze recorded.
fn script_line1_only(root: &Path, map: &RelocationMap, rel: &str) -> bool {
    let Some(script) = map.script(rel) else {
        return false;
    };
    std::fs::read(root.join(rel))
        .map(|b| shebang::body_sha256(&b) == script.body_sha256)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, sha: &str, mode: u32) -> ManifestEntry {
        ManifestEntry {
            path: path.into(),
            kind: EntryKind::File,
            mode,
            size: 1,
            sha256: Some(sha.into()),
            target: None,
        }
    }

    #[test]
    fn diff_sees_added_missing_changed_and_accepts_hardlink_copies() {
        let mut link = file("b", "x", 0o644);
        link.kind = EntryKind::Hardlink;
        link.target = Some("a".into());
        link.sha256 = None;
        let want = Manifest::from_entries(vec![
            file("a", "1", 0o644),
            link,
            file("c", "3", 0o644),
            file("d", "4", 0o644),
        ]);
        let have = Manifest::from_entries(vec![
            file("a", "1", 0o644),
            file("b", "1", 0o644),
            file("c", "9", 0o644),
            file("e", "5", 0o644),
        ]);
        let d = diff_manifests(&want, &have);
        assert_eq!(d.changed, ["c"]);
        assert_eq!(d.missing, ["d"]);
        assert_eq!(d.added, ["e"]);
    }

    #[test]
    fn mode_change_of_a_rewritten_file_is_not_expected() {
        let want = Manifest::from_entries(vec![file(".installed.cfg", "1", 0o644)]);
        let have = Manifest::from_entries(vec![file(".installed.cfg", "2", 0o600)]);
        let inv = Inventory {
            files: vec![map::InventoryEntry {
                path: ".installed.cfg".into(),
                kind: map::FileKind::InstalledCfg,
                action: Action::RewriteOnRelocate,
            }],
        };
        let diff = diff_manifests(&want, &have);
        let r = classify(Path::new("/t"), diff, &want, &have, None, Some(&inv));
        assert_eq!(r.changed, [".installed.cfg"]);
        assert!(!r.ok);
        let have = Manifest::from_entries(vec![file(".installed.cfg", "2", 0o644)]);
        let diff = diff_manifests(&want, &have);
        let r = classify(Path::new("/t"), diff, &want, &have, None, Some(&inv));
        assert!(r.ok, "{r:?}");
        assert_eq!(r.expected.len(), 1);
    }
}
