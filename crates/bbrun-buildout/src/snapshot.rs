//! The snapshot that makes a buildout run transactional.
//!
//! zc.buildout uninstalls a changed part before it installs it again, and
//! removes every develop egg's files before registering them again, so a run
//! that fails halfway leaves a tree that no longer starts. Before the run,
//! what buildout may change is copied into `.bbrun/buildout-snapshot/`
//! (see [`super::clone`] for how cheaply): `bin/`, `parts/`, `develop-eggs/`,
//! `.installed.cfg`, every other path `.installed.cfg` lists as a part's
//! output (`__buildout_installed__`: generated configs elsewhere in the
//! tree), and bbrun's own map and inventory. The names in `eggs/` are
//! recorded; eggs a failed run added are removed, existing ones never
//! touched. `var/` (the application's data) is never part of it.
//!
//! `.bbrun/buildout-journal.toml` says where a run is: `taking` (the copy
//! is incomplete, the tree untouched: drop the copy) or `armed` (buildout may
//! have changed anything: put the copy back). Removing the journal is the
//! commit. A run killed at any point (`kill -9` of the whole process group)
//! is repaired by the next `bbrun buildout`, `bbrun bin/buildout`, or any
//! launch of a script of the tree (one `stat` of the journal).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::clone::{self, CloneStats};
use bbrun_map::map::STATE_DIR;
use bbrun_util::fsutil;
use bbrun_util::fsutil::remove_tree;

pub const JOURNAL: &str = "buildout-journal.toml";
const SNAPSHOT_DIR: &str = "buildout-snapshot";

/// What buildout may change, root-relative, besides listed part output.
const FIXED: &[&str] = &[
    "bin",
    "parts",
    "develop-eggs",
    ".installed.cfg",
    ".bbrun/map.toml",
    ".bbrun/inventory.toml",
];

/// Never snapshotted nor restored: application data, eggs (only their
/// names), bbrun's state.
const NEVER: &[&str] = &["var", "eggs", STATE_DIR];

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    state: String,
    /// Root-relative paths copied into the snapshot.
    items: Vec<String>,
    /// Paths that did not exist before the run: removed on restore.
    absent: Vec<String>,
    /// Egg directories in the tree and the names they held.
    #[serde(default, rename = "eggs")]
    egg_dirs: Vec<EggDir>,
}

#[derive(Debug, Serialize, Deserialize)]
struct EggDir {
    dir: String,
    names: Vec<String>,
}

/// A snapshot taken; [`commit`] or [`restore`] ends it.
#[derive(Debug, Serialize)]
pub struct Taken {
    pub items: usize,
    pub stats: CloneStats,
    pub seconds: f64,
}

pub fn journal_path(root: &Path) -> PathBuf {
    root.join(STATE_DIR).join(JOURNAL)
}

fn snapshot_dir(root: &Path) -> PathBuf {
    root.join(STATE_DIR).join(SNAPSHOT_DIR)
}

/// Copy what a run may change. The caller holds the tree's lock.
pub fn take(root: &Path) -> Result<Taken> {
    let start = Instant::now();
    let snap = snapshot_dir(root);
    if snap.exists() {
        // Left by a run that committed but was killed while cleaning up.
        remove_tree(&snap).with_context(|| format!("{}: cannot remove", snap.display()))?;
    }
    let (items, absent) = paths_to_save(root)?;
    let mut journal = Journal {
        state: "taking".into(),
        items: items.clone(),
        absent,
        egg_dirs: egg_dirs(root),
    };
    save(root, &journal)?;
    let mut stats = CloneStats::default();
    for rel in &items {
        let dst = snap.join("tree").join(rel);
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("{}: cannot create", parent.display()))?;
        }
        clone::clone_entry(&root.join(rel), &dst, &mut stats)?;
    }
    journal.state = "armed".into();
    save(root, &journal)?;
    Ok(Taken {
        items: items.len(),
        stats,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The run succeeded: drop the snapshot. Removing the journal commits.
pub fn commit(root: &Path) -> Result<()> {
    let journal = journal_path(root);
    fs::remove_file(&journal).with_context(|| format!("{}: cannot remove", journal.display()))?;
    fsutil::sync_dir(&root.join(STATE_DIR));
    let snap = snapshot_dir(root);
    remove_tree(&snap).with_context(|| format!("{}: cannot remove", snap.display()))
}

/// Finish what an interrupted run left: `Ok(true)` when the tree was put
/// back (or an incomplete snapshot dropped). The caller holds the lock.
pub fn repair(root: &Path) -> Result<bool> {
    let path = journal_path(root);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    let journal: Journal = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: unreadable buildout journal ({}); the snapshot is in {}; restore from it by hand, then remove the journal",
            path.display(),
            e.message(),
            snapshot_dir(root).display()
        )
    })?;
    if journal.state == "armed" {
        put_back(root, &journal)?;
    }
    commit(root)?;
    Ok(true)
}

/// Restore after a failed run: the tree as it was before it.
pub fn restore(root: &Path) -> Result<()> {
    repair(root).map(|_| ())
}

/// Move each saved item back into place; what the run made goes to the
/// snapshot's trash, deleted with it. Every step checks what is there, so
/// a restore killed halfway is finished by the next.
fn put_back(root: &Path, journal: &Journal) -> Result<()> {
    let snap = snapshot_dir(root);
    let trash = snap.join("trash");
    let mut n = 0;
    let mut discard = |live: &Path| -> Result<()> {
        if fs::symlink_metadata(live).is_err() {
            return Ok(());
        }
        n += 1;
        let dst = trash.join(n.to_string());
        fs::create_dir_all(&trash)
            .with_context(|| format!("{}: cannot create", trash.display()))?;
        if dst.exists() {
            remove_tree(&dst).with_context(|| format!("{}: cannot remove", dst.display()))?;
        }
        fs::rename(live, &dst).with_context(|| format!("{}: cannot move aside", live.display()))
    };
    for rel in &journal.items {
        let saved = snap.join("tree").join(rel);
        if fs::symlink_metadata(&saved).is_err() {
            continue;
        }
        let live = root.join(rel);
        discard(&live)?;
        fs::rename(&saved, &live).with_context(|| format!("{}: cannot restore", live.display()))?;
    }
    for rel in &journal.absent {
        discard(&root.join(rel))?;
    }
    for eggs in &journal.egg_dirs {
        let dir = root.join(&eggs.dir);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !eggs.names.contains(&name) && !is_egg_subdir(&name) {
                discard(&e.path())?;
            }
        }
    }
    fsutil::sync_dir(root);
    Ok(())
}

fn save(root: &Path, journal: &Journal) -> Result<()> {
    let text = toml::to_string(journal).context("serialising buildout journal")?;
    fsutil::atomic_write(&journal_path(root), text.as_bytes(), 0o644)
}

/// The items to copy (existing) and the ones to remove on restore (absent
/// now), root-relative.
fn paths_to_save(root: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let mut wanted: Vec<String> = FIXED.iter().map(|s| s.to_string()).collect();
    wanted.extend(installed_outputs(root));
    wanted.sort();
    wanted.dedup();
    // A path inside another saved one is saved with it.
    let all = wanted.clone();
    wanted.retain(|p| {
        !all.iter()
            .any(|q| q != p && p.starts_with(&format!("{q}/")))
    });
    let real_root =
        fs::canonicalize(root).with_context(|| format!("{}: cannot resolve", root.display()))?;
    let (mut items, mut absent) = (Vec::new(), Vec::new());
    for rel in wanted {
        let path = root.join(&rel);
        // Never follow a path out of the tree through a symlinked parent.
        let parent_inside = path
            .parent()
            .and_then(|p| fs::canonicalize(p).ok())
            .is_some_and(|p| p.starts_with(&real_root));
        if !parent_inside {
            continue;
        }
        if fs::symlink_metadata(&path).is_ok() {
            items.push(rel);
        } else {
            absent.push(rel);
        }
    }
    Ok((items, absent))
}

/// Paths `.installed.cfg` lists as parts' output that lie in the tree but
/// outside the fixed items, `var/` and `eggs/`.
fn installed_outputs(root: &Path) -> Vec<String> {
    let Ok(text) = fs::read_to_string(root.join(".installed.cfg")) else {
        return vec![];
    };
    let here = root.to_string_lossy();
    let mut out = Vec::new();
    let mut in_list = false;
    for line in text.lines() {
        let value = if let Some(rest) = line.strip_prefix("__buildout_installed__") {
            in_list = true;
            rest.trim_start().trim_start_matches('=').trim()
        } else if in_list && line.starts_with(char::is_whitespace) {
            line.trim()
        } else {
            in_list = false;
            continue;
        };
        let Some(rel) = fsutil::relative_inside(value, &here) else {
            continue;
        };
        let first = rel.split('/').next().unwrap_or("");
        if rel.is_empty()
            || NEVER.contains(&first)
            || FIXED
                .iter()
                .any(|f| rel == *f || rel.starts_with(&format!("{f}/")))
            || rel.split('/').any(|c| c == "..")
        {
            continue;
        }
        out.push(rel);
    }
    out
}

/// `eggs/` and its `vN` subdirectories (zc.buildout 5+ keeps eggs in
/// `eggs/v5`), with the names they hold.
fn egg_dirs(root: &Path) -> Vec<EggDir> {
    let mut out = Vec::new();
    let mut dirs = vec!["eggs".to_string()];
    if let Ok(entries) = fs::read_dir(root.join("eggs")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if is_egg_subdir(&name) && e.path().is_dir() {
                dirs.push(format!("eggs/{name}"));
            }
        }
    }
    for dir in dirs {
        if let Ok(entries) = fs::read_dir(root.join(&dir)) {
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            out.push(EggDir { dir, names });
        }
    }
    out
}

fn is_egg_subdir(name: &str) -> bool {
    name.len() > 1 && name.starts_with('v') && name[1..].bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(d: &Path) {
        for dir in [
            ".bbrun",
            "bin",
            "parts/x",
            "develop-eggs",
            "eggs/v5/a.egg",
            "var",
            "etc",
        ] {
            fs::create_dir_all(d.join(dir)).unwrap();
        }
        fs::write(d.join("bin/app"), "#!/p\nold\n").unwrap();
        fs::write(d.join("parts/x/lib.so"), "lib").unwrap();
        fs::write(d.join("etc/app.conf"), "port 1\n").unwrap();
        fs::write(d.join("var/Data.fs"), "data").unwrap();
        let here = d.display();
        fs::write(
            d.join(".installed.cfg"),
            format!("[x]\n__buildout_installed__ = {here}/parts/x\n\t{here}/etc/app.conf\n\t{here}/etc/new.conf\n\t{here}/var/log\nrecipe = r\n"),
        )
        .unwrap();
    }

    #[test]
    fn failed_run_is_undone_and_data_kept() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        tree(root);
        let taken = take(root).unwrap();
        assert!(taken.stats.files >= 4, "{taken:?}");
        // What a failing run does: rewrite in place, remove a part, add an
        // egg and a config, write data.
        fs::write(root.join("bin/app"), "#!/p\nnew\n").unwrap();
        fs::remove_dir_all(root.join("parts/x")).unwrap();
        fs::write(root.join("etc/app.conf"), "port 2\n").unwrap();
        fs::write(root.join("etc/new.conf"), "x").unwrap();
        fs::create_dir(root.join("eggs/v5/b.egg")).unwrap();
        fs::write(root.join("var/Data.fs"), "more data").unwrap();
        restore(root).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("bin/app")).unwrap(),
            "#!/p\nold\n"
        );
        assert_eq!(
            fs::read_to_string(root.join("parts/x/lib.so")).unwrap(),
            "lib"
        );
        assert_eq!(
            fs::read_to_string(root.join("etc/app.conf")).unwrap(),
            "port 1\n"
        );
        assert!(!root.join("etc/new.conf").exists());
        assert!(root.join("eggs/v5/a.egg").exists() && !root.join("eggs/v5/b.egg").exists());
        assert_eq!(
            fs::read_to_string(root.join("var/Data.fs")).unwrap(),
            "more data"
        );
        assert!(!journal_path(root).exists() && !snapshot_dir(root).exists());
        assert!(!repair(root).unwrap());
    }

    #[test]
    fn restore_killed_halfway_is_finished_by_the_next() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        tree(root);
        take(root).unwrap();
        fs::write(root.join("bin/app"), "changed").unwrap();
        // As if killed after bin/ was moved aside, before the copy came back.
        fs::create_dir_all(snapshot_dir(root).join("trash")).unwrap();
        fs::rename(root.join("bin"), snapshot_dir(root).join("trash/1")).unwrap();
        assert!(repair(root).unwrap());
        assert_eq!(
            fs::read_to_string(root.join("bin/app")).unwrap(),
            "#!/p\nold\n"
        );
    }

    #[test]
    fn incomplete_snapshot_is_dropped_and_commit_keeps_the_run() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        tree(root);
        take(root).unwrap();
        fs::write(root.join("bin/app"), "new").unwrap();
        commit(root).unwrap();
        assert_eq!(fs::read_to_string(root.join("bin/app")).unwrap(), "new");
        take(root).unwrap();
        let text = fs::read_to_string(journal_path(root)).unwrap();
        fs::write(journal_path(root), text.replace("armed", "taking")).unwrap();
        fs::write(root.join("bin/app"), "newer").unwrap();
        assert!(repair(root).unwrap());
        assert_eq!(fs::read_to_string(root.join("bin/app")).unwrap(), "newer");
    }
}
