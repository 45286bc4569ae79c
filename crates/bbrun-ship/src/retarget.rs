//! Retargeting a whole tree for a new root: rewrite every recorded file
//! (inventory `rewrite-on-relocate`) and record the new root in the map.
//! Used by `bbrun relocate` (a tree moved by hand) and `bbrun install`
//! (a staged tree, for the DEST it is about to become).
//!
//! A plain loop of atomic writes would be crash-safe per file but not as a
//! whole: a re-run after a kill would rewrite the already rewritten files
//! again, which corrupts them when the new root lies inside the old one
//! (`/a` -> `/a/b` turns `/a/b/x` into `/a/b/b/x`). So the rewrite is a
//! small redo log: every new content is written beside its file first, then
//! a journal naming them is saved, then the renames happen, then the map,
//! then the journal goes. A re-run finds the journal and finishes it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use bbrun_map::map::{self, Action, RelocationMap, RootPath};
use bbrun_map::relocate;
use bbrun_util::fsutil;

/// The journal of an unfinished retarget, in the tree's state dir.
pub use bbrun_run::debris::JOURNAL;

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    new_root: RootPath,
    /// Root-relative paths whose new content waits in a pending sibling.
    files: Vec<String>,
}

/// What a retarget did, for reports.
#[derive(Debug, Default, Serialize)]
pub struct RetargetReport {
    pub root: String,
    /// The root the files named before (empty when already retargeted).
    pub from: String,
    pub to: String,
    pub rewritten: Vec<String>,
    /// Recorded files that are gone from the tree: nothing to rewrite.
    pub missing: Vec<String>,
    /// An interrupted earlier run was finished first.
    pub resumed: bool,
}

/// Rewrite the tree at `root` (where it is now) so its recorded files name
/// `new_root`. Idempotent; finishes an interrupted earlier run first.
pub fn retarget(root: &Path, new_root: &Path) -> Result<RetargetReport> {
    let mut report = RetargetReport {
        root: root.display().to_string(),
        to: new_root.display().to_string(),
        ..Default::default()
    };
    report.resumed = finish_journal(root)?;
    // With no journal left, any pending file is an interrupted run's.
    bbrun_run::debris::sweep(root)?;
    let map_path = map::map_path(root);
    let map = map::load(&map_path)?;
    if map.files_root() == new_root {
        return Ok(report);
    }
    report.from = map.files_root().display().to_string();
    let inventory = map::load_inventory(&map::inventory_path(root))?;
    let pairs = relocate::rewrite_pairs(&map, new_root);
    let real_root =
        fs::canonicalize(root).with_context(|| format!("{}: cannot resolve", root.display()))?;

    let mut pending: Vec<String> = Vec::new();
    let mut written: Vec<PathBuf> = Vec::new();
    let staged = (|| -> Result<()> {
        for entry in inventory
            .files
            .iter()
            .filter(|e| e.action == Action::RewriteOnRelocate)
            // Logs and databases keep their history, even when an older
            // inventory lists them.
            .filter(|e| !map.state.is_state(&e.path))
        {
            let path = checked_path(root, &real_root, &entry.path)?;
            let Some(path) = path else {
                report.missing.push(entry.path.clone());
                continue;
            };
            let bytes =
                fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            if let Some(new) = relocate::rewrite_text(&bytes, &pairs) {
                write_pending(&path, &new)?;
                written.push(pending_path(&path));
                pending.push(entry.path.clone());
            }
        }
        Ok(())
    })();
    if let Err(e) = staged {
        // A refused path leaves the tree as it was: no pending files.
        for p in &written {
            let _ = fs::remove_file(p);
        }
        return Err(e);
    }
    let journal = Journal {
        new_root: RootPath::from(new_root),
        files: pending.clone(),
    };
    let journal_path = root.join(map::STATE_DIR).join(JOURNAL);
    let text = toml::to_string(&journal).context("serialising relocate journal")?;
    fsutil::atomic_write(&journal_path, text.as_bytes(), 0o644)?;
    finish_journal(root)?;
    report.rewritten = pending;
    Ok(report)
}

/// Complete an interrupted retarget: move every pending file into place,
/// record the journal's root in the map, drop the journal. `Ok(false)`
/// when there was none.
fn finish_journal(root: &Path) -> Result<bool> {
    let journal_path = root.join(map::STATE_DIR).join(JOURNAL);
    let text = match fs::read_to_string(&journal_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(e).with_context(|| format!("{}: cannot read", journal_path.display()))
        }
    };
    let journal: Journal = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: unreadable relocate journal ({}); remove it and run `bbrun relocate` again",
            journal_path.display(),
            e.message()
        )
    })?;
    let real_root =
        fs::canonicalize(root).with_context(|| format!("{}: cannot resolve", root.display()))?;
    for rel in &journal.files {
        let Some(path) = checked_path(root, &real_root, rel)? else {
            continue;
        };
        let pending = pending_path(&path);
        if pending.exists() {
            fs::rename(&pending, &path)
                .with_context(|| format!("{}: cannot replace", path.display()))?;
            fsutil::sync_dir(path.parent().unwrap_or(root));
        }
    }
    let map_path = map::map_path(root);
    let map: RelocationMap = map::load(&map_path)?;
    if map.files_root() != journal.new_root.as_path() {
        map::save(
            &map_path,
            &relocate::relocated_map(&map, journal.new_root.as_path()),
        )?;
    }
    fs::remove_file(&journal_path)
        .with_context(|| format!("{}: cannot remove", journal_path.display()))?;
    Ok(true)
}

/// `root/rel` when it is a regular file inside the tree; `None` when gone.
/// A recorded path that is not plain or that leads outside the tree (a
/// tampered inventory) is an error: nothing outside is ever written.
pub fn checked_path(root: &Path, real_root: &Path, rel: &str) -> Result<Option<PathBuf>> {
    let inventory = map::inventory_path(root);
    if bbrun_archive::manifest::check_path(rel).is_err() {
        bail!(
            "{}: records {rel:?}, which is not a plain path inside the tree; refusing to rewrite it",
            inventory.display()
        );
    }
    let path = root.join(rel);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot stat", path.display())),
    };
    if !meta.is_file() {
        bail!(
            "{}: recorded for rewriting but not a regular file (a symlink or directory); refusing to rewrite it",
            path.display()
        );
    }
    let real =
        fs::canonicalize(&path).with_context(|| format!("{}: cannot resolve", path.display()))?;
    if !real.starts_with(real_root) {
        bail!(
            "{}: resolves to {}, outside the tree; refusing to rewrite it",
            path.display(),
            real.display()
        );
    }
    Ok(Some(path))
}

/// `dir/.name.bbrun-relocate`: a fixed name, so a re-run finds it.
fn pending_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.bbrun-relocate"))
}

/// Write `bytes` beside `path` with its mode and owner, synced.
fn write_pending(path: &Path, bytes: &[u8]) -> Result<()> {
    let meta = fs::metadata(path).with_context(|| format!("{}: cannot stat", path.display()))?;
    let pending = pending_path(path);
    // A stale one from an interrupted run (before its journal was saved).
    let _ = fs::remove_file(&pending);
    let mode = meta.permissions().mode() & 0o7777;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&pending)
        .with_context(|| format!("{}: cannot create", pending.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("{}: cannot write", pending.display()))?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("{}: cannot set mode", pending.display()))?;
    let _ = std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bbrun_map::map::{Inventory, InventoryEntry};

    fn tree(root: &Path, built_at: &str) {
        fs::create_dir_all(root.join(".bbrun")).unwrap();
        fs::write(
            root.join(".installed.cfg"),
            format!("[app]\n_b = {built_at}/bin\nx = {built_at}2\n"),
        )
        .unwrap();
        let map = map::test_map(built_at);
        map::save(&map::map_path(root), &map).unwrap();
        map::save_inventory(
            &map::inventory_path(root),
            &Inventory {
                files: vec![InventoryEntry {
                    path: ".installed.cfg".into(),
                    kind: map::FileKind::InstalledCfg,
                    action: Action::RewriteOnRelocate,
                }],
            },
        )
        .unwrap();
    }

    #[test]
    fn nested_new_root_is_rewritten_once_even_when_rerun() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("a/b");
        tree(&root, "/a");
        let r = retarget(&root, Path::new("/a/b")).unwrap();
        assert_eq!(r.rewritten, [".installed.cfg"]);
        let want = "[app]\n_b = /a/b/bin\nx = /a2\n";
        assert_eq!(
            fs::read_to_string(root.join(".installed.cfg")).unwrap(),
            want
        );
        let again = retarget(&root, Path::new("/a/b")).unwrap();
        assert!(again.rewritten.is_empty());
        assert_eq!(
            fs::read_to_string(root.join(".installed.cfg")).unwrap(),
            want
        );
        let map = map::load(&map::map_path(&root)).unwrap();
        assert_eq!(map.files_root(), Path::new("/a/b"));
    }

    #[test]
    fn interrupted_run_is_finished_by_the_next() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("t");
        tree(&root, "/old");
        // As if killed after the journal was saved, before any rename.
        let cfg = root.join(".installed.cfg");
        write_pending(&cfg, b"[app]\n_b = /new/bin\n").unwrap();
        let j = Journal {
            new_root: "/new".into(),
            files: vec![".installed.cfg".into()],
        };
        fs::write(
            root.join(".bbrun").join(JOURNAL),
            toml::to_string(&j).unwrap(),
        )
        .unwrap();
        let r = retarget(&root, Path::new("/new")).unwrap();
        assert!(r.resumed);
        assert!(r.rewritten.is_empty());
        assert_eq!(fs::read_to_string(&cfg).unwrap(), "[app]\n_b = /new/bin\n");
        assert!(!root.join(".bbrun").join(JOURNAL).exists());
        assert!(!pending_path(&cfg).exists());
    }

    #[test]
    fn refused_path_leaves_no_pending_files() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("t");
        tree(&root, "/old");
        fs::write(root.join("ok.cfg"), "/old/x\n").unwrap();
        let mut inv = map::load_inventory(&map::inventory_path(&root)).unwrap();
        let mut bad = inv.files[0].clone();
        // A good file first (its pending copy is written), then a bad one.
        inv.files[0].path = "ok.cfg".into();
        bad.path = "../outside".into();
        inv.files.push(bad);
        map::save_inventory(&map::inventory_path(&root), &inv).unwrap();
        assert!(retarget(&root, Path::new("/new")).is_err());
        let left: Vec<_> = walkdir::WalkDir::new(&root)
            .into_iter()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("bbrun-relocate"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(fs::read_to_string(root.join("ok.cfg")).unwrap(), "/old/x\n");
    }

    #[test]
    fn inventory_paths_leading_outside_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("t");
        tree(&root, "/old");
        fs::write(d.path().join("victim"), "/old\n").unwrap();
        std::os::unix::fs::symlink("../victim", root.join("link")).unwrap();
        for bad in ["../victim", "link"] {
            let mut inv = map::load_inventory(&map::inventory_path(&root)).unwrap();
            inv.files[0].path = bad.into();
            map::save_inventory(&map::inventory_path(&root), &inv).unwrap();
            let err = format!("{:#}", retarget(&root, Path::new("/new")).unwrap_err());
            assert!(err.contains("refusing to rewrite"), "{err}");
            assert_eq!(
                fs::read_to_string(d.path().join("victim")).unwrap(),
                "/old\n"
            );
        }
    }
}
