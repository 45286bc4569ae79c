//! Comparing a tree with its manifest (`.bbrun/manifest.tsv`), telling the
//! differences bbrun made itself (relocation rewrites, script first lines)
//! from everything else.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result};
use bbrun_archive::manifest::{EntryKind, Manifest, ManifestEntry, TreeDiff, MANIFEST_PATH};
use bbrun_archive::unpack::safe_mode;
use serde::Serialize;

use bbrun_map::map::{self, Action, Inventory, RelocationMap};
use bbrun_run::shebang;

/// A difference that install/relocate (or Python itself) makes on purpose.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Expected {
    pub path: String,
    pub reason: &'static str,
}

/// A permission difference, told apart from content: removing write bits
/// (a read-only install) is harmless; anything else fails the check.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ModeChange {
    pub path: String,
    /// Octal, as packed and as now.
    pub packed: String,
    pub now: String,
    /// Fails the check (gained bits, lost read or exec bits).
    pub error: bool,
    pub what: &'static str,
}

/// A file not owned like the tree's root: someone else can change it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OwnerChange {
    pub path: String,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub root: String,
    /// Differences that are not bbrun's doing: each one fails the check.
    pub added: Vec<String>,
    pub missing: Vec<String>,
    /// Content (or kind, or link target) differs.
    pub changed: Vec<String>,
    /// Permission bits differ (content may be the same).
    pub mode_changed: Vec<ModeChange>,
    /// Owner differs from the tree root's (root_uid, root_gid).
    pub owner_changed: Vec<OwnerChange>,
    pub root_uid: u32,
    pub root_gid: u32,
    pub expected: Vec<Expected>,
    /// Harmless differences worth knowing (write bits removed).
    pub notes: Vec<String>,
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
    let mut report = classify(
        root,
        diff,
        &expected,
        &actual,
        map.as_ref(),
        inventory.as_ref(),
    );
    check_owners(root, &actual, map.as_ref(), &mut report)?;
    Ok(report)
}

/// Files of the tree (state aside) owned by another user or group than
/// the tree's root directory.
fn check_owners(
    root: &Path,
    actual: &Manifest,
    map: Option<&RelocationMap>,
    report: &mut VerifyReport,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::metadata(root).with_context(|| format!("{}: cannot stat", root.display()))?;
    report.root_uid = meta.uid();
    report.root_gid = meta.gid();
    for e in &actual.entries {
        if map.is_some_and(|m| m.state.is_state(&e.path)) {
            continue;
        }
        let Ok(m) = std::fs::symlink_metadata(root.join(&e.path)) else {
            continue;
        };
        if m.uid() != meta.uid() || m.gid() != meta.gid() {
            report.owner_changed.push(OwnerChange {
                path: e.path.clone(),
                uid: m.uid(),
                gid: m.gid(),
            });
        }
    }
    report.ok &= report.owner_changed.is_empty();
    Ok(())
}

/// How a mode change counts: only removing write bits is harmless.
fn mode_change(path: &str, packed: u32, now: u32) -> ModeChange {
    let gained = now & !packed;
    let lost = packed & !now;
    let (error, what) = if gained & 0o6000 != 0 {
        (true, "gained setuid/setgid")
    } else if gained & 0o111 != 0 {
        (true, "gained exec permission")
    } else if gained != 0 {
        (true, "gained permissions")
    } else if lost & !0o222 != 0 {
        (true, "lost read or exec permission")
    } else {
        (false, "write permission removed")
    };
    ModeChange {
        path: path.to_string(),
        packed: format!("{packed:04o}"),
        now: format!("{now:04o}"),
        error,
        what,
    }
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
    let is_state = |p: &str| map.is_some_and(|m| m.state.is_state(p));
    for path in diff.changed {
        let (Some(x), Some(y)) = (expected.get(&path), actual.get(&path)) else {
            report.changed.push(path);
            continue;
        };
        if is_state(&path) {
            report.expected.push(Expected {
                path,
                reason: "application state (changes at run time)",
            });
            continue;
        }
        // Install removes unsafe mode bits (setuid, group write...): that
        // difference is bbrun's own. Any other is reported.
        let stripped = x.mode != y.mode && y.mode == safe_mode(x.mode);
        if x.mode != y.mode && !stripped {
            report.mode_changed.push(mode_change(&path, x.mode, y.mode));
        }
        let same_content = {
            let mut y2 = y.clone();
            y2.mode = x.mode;
            same(x, expected, &y2, actual)
        };
        if same_content {
            if stripped {
                report.expected.push(Expected {
                    path,
                    reason: "mode made safe by install (setuid/setgid/sticky, group/world write removed)",
                });
            }
            continue;
        }
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
        let reason = if venv_link(&path) && y.kind == EntryKind::Symlink {
            Some("virtualenv's interpreter link re-pointed at this machine's interpreter")
        } else if y.kind != EntryKind::File {
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
    let harmless = report.mode_changed.iter().filter(|m| !m.error).count();
    if harmless > 0 {
        report.notes.push(format!(
            "{harmless} path(s) lost write permission only (a read-only install): not an error"
        ));
    }
    let missing = std::mem::take(&mut report.missing);
    for path in missing {
        if is_state(&path) {
            report.expected.push(Expected {
                path,
                reason: "application state (changes at run time)",
            });
        } else {
            report.missing.push(path);
        }
    }
    for path in diff.added {
        if is_state(&path) {
            report.expected.push(Expected {
                path,
                reason: "application state (changes at run time)",
            });
        } else if path == state_file(crate::autorelocate::LOCK_FILE) {
            report.expected.push(Expected {
                path,
                reason: "lock of bbrun's relocation at a new root and of `bbrun buildout` runs",
            });
        } else if path.ends_with(".pyc") && path.contains("__pycache__/")
            || path.ends_with("__pycache__")
        {
            // Python writes bytecode caches beside the sources it imports.
            report.expected.push(Expected {
                path,
                reason: "bytecode cache written by Python at run time",
            });
        } else {
            report.added.push(path);
        }
    }
    report.ok = report.added.is_empty()
        && report.missing.is_empty()
        && report.changed.is_empty()
        && report.mode_changed.iter().all(|m| !m.error);
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
    let now = map.files_root().as_os_str().as_bytes();
    let mut candidates: Vec<&[u8]> = vec![map.build.root.as_bytes()];
    candidates.extend(map.build.previous_roots.iter().map(|r| r.as_bytes()));
    for old in candidates.into_iter().filter(|c| *c != now) {
        // The packed copy names the collected copies by their original
        // paths when it was packed where it was built, or by the in-tree
        // copies under `old` when it was packed after a relocate (freeze,
        // mv, relocate, pack): both are tried.
        for to_originals in [true, false] {
            let mut pairs: Vec<(Vec<u8>, &[u8])> = if to_originals {
                map.prefixes
                    .iter()
                    .map(|p| {
                        let copy = [now, b"/", p.in_tree.as_bytes()].concat();
                        (copy, p.original.as_bytes())
                    })
                    .collect()
            } else {
                vec![]
            };
            pairs.push((now.to_vec(), old));
            pairs.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
            let undone =
                bbrun_map::relocate::rewrite_text(&bytes, &pairs).unwrap_or_else(|| bytes.clone());
            if bbrun_util::fsutil::sha256_hex(&undone) == want {
                return Some(true);
            }
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
        // The content change is bbrun's; the lost read bits are not.
        assert_eq!(r.mode_changed.len(), 1);
        assert!(r.mode_changed[0].error);
        assert!(!r.ok);
        let have = Manifest::from_entries(vec![file(".installed.cfg", "2", 0o644)]);
        let diff = diff_manifests(&want, &have);
        let r = classify(Path::new("/t"), diff, &want, &have, None, Some(&inv));
        assert!(r.ok, "{r:?}");
        assert_eq!(r.expected.len(), 1);
    }

    #[test]
    fn modes_tell_read_only_from_gained_bits() {
        assert!(!mode_change("a", 0o755, 0o555).error);
        assert!(!mode_change("a", 0o644, 0o444).error);
        assert_eq!(
            mode_change("a", 0o644, 0o755).what,
            "gained exec permission"
        );
        assert_eq!(mode_change("a", 0o755, 0o4755).what, "gained setuid/setgid");
        assert!(mode_change("a", 0o644, 0o664).error);
        assert!(mode_change("a", 0o644, 0o600).error);
        // Only the mode differs: not listed as a content change.
        let want = Manifest::from_entries(vec![file("bin/x", "1", 0o755)]);
        let have = Manifest::from_entries(vec![file("bin/x", "1", 0o555)]);
        let r = classify(
            Path::new("/t"),
            diff_manifests(&want, &have),
            &want,
            &have,
            None,
            None,
        );
        assert!(r.changed.is_empty() && r.ok, "{r:?}");
        assert_eq!(r.notes.len(), 1);
    }
}
