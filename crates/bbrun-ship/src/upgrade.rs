//! Installing over an existing tree is an upgrade: the code is replaced,
//! the application's state is kept. Just before the new tree is swapped
//! into place, every state path of the old tree (see `state.rs`) and every
//! file its manifest does not know (added by the user or the application)
//! is renamed into the new tree: renames within one filesystem, so nothing
//! is copied and nothing can be half-moved. The old tree stays beside DEST
//! as `.DEST.bbrun-prev` until the next upgrade; `bbrun rollback DEST`
//! swaps it back the same way, state included.
//!
//! A journal beside DEST (`.DEST.bbrun-state.PID.toml`) lists the moved
//! paths before the first rename, so a run killed half-way is undone by the
//! next one: the paths go back to the tree they came from.

use std::collections::HashSet;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bbrun_archive::manifest::{Manifest, MANIFEST_PATH};
use serde::{Deserialize, Serialize};

use bbrun_map::map;
use bbrun_map::state::StatePolicy;
use bbrun_util::fsutil;

/// `.DEST.bbrun-prev`: the tree an upgrade replaced.
pub fn prev_path(parent: &Path, name: &str) -> PathBuf {
    parent.join(format!(".{name}.bbrun-prev"))
}

fn journal_prefix(name: &str) -> String {
    format!(".{name}.bbrun-state.")
}

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    /// The tree the paths leave (DEST).
    from: map::RootPath,
    /// The tree they go to (staging, or the backup for a rollback).
    to: map::RootPath,
    /// Root-relative paths, moved in this order.
    moved: Vec<String>,
}

/// The state policy of the tree at `root` (empty without a readable map).
pub fn policy_of(root: &Path) -> StatePolicy {
    map::load(&map::map_path(root))
        .map(|m| m.state)
        .unwrap_or_default()
}

/// Refuse when an instance of the application runs from `root`: a pid
/// file naming a live process, a lock file another process holds (flock or
/// fcntl, tested without blocking), or a socket that accepts connections.
pub fn check_not_running(root: &Path, policy: &StatePolicy) -> Result<()> {
    for rel in state_files(root, policy) {
        let path = root.join(&rel);
        if let Some(why) = running_evidence(&path) {
            bail!(
                "{}: an instance is running ({rel} {why}); stop it first, or pass --force",
                root.display()
            );
        }
    }
    Ok(())
}

fn running_evidence(path: &Path) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    let meta = fs::symlink_metadata(path).ok()?;
    let name = path.file_name()?.to_string_lossy();
    if meta.file_type().is_socket() {
        return std::os::unix::net::UnixStream::connect(path)
            .ok()
            .map(|_| "accepts connections".to_string());
    }
    if !meta.is_file() {
        return None;
    }
    if name.ends_with(".pid") {
        let text = fs::read_to_string(path).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        return (pid > 0 && bbrun_run::debris::pid_alive(pid))
            .then(|| format!("names live process {pid}"));
    }
    if name.ends_with(".lock") {
        let f = fs::File::open(path).ok()?;
        // fcntl: ask who holds a conflicting lock, without taking one.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_RDLCK as i16;
        fl.l_whence = libc::SEEK_SET as i16;
        // SAFETY: a valid descriptor and a valid flock struct.
        let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut fl) };
        if rc == 0 && fl.l_type != libc::F_UNLCK as i16 {
            return Some(format!("is locked by process {}", fl.l_pid));
        }
        // flock (zc.lockfile): try a shared lock without blocking; a held
        // exclusive one refuses it. Ours goes with the descriptor.
        // SAFETY: a valid descriptor.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
        if rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Some("is locked by another process".to_string());
        }
    }
    None
}

/// Every non-directory below the state paths of `root` (runtime files
/// first), root-relative. A symlinked state directory (data kept on another
/// disk) is followed for this check only.
fn state_files(root: &Path, policy: &StatePolicy) -> Vec<String> {
    let mut out = Vec::new();
    for r in expand_roots(root, policy) {
        for e in walkdir::WalkDir::new(root.join(&r))
            .follow_root_links(true)
            .follow_links(false)
            .into_iter()
            .flatten()
        {
            if e.file_type().is_dir() {
                continue;
            }
            if let Ok(rel) = e.path().strip_prefix(root) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// The policy's state paths present in `root`, prefix patterns expanded
/// to the matching names of their directory.
fn expand_roots(root: &Path, policy: &StatePolicy) -> Vec<String> {
    let mut out = Vec::new();
    for r in policy.roots() {
        if let Some(prefix) = r.strip_suffix('*') {
            let (dir, start) = prefix.rsplit_once('/').unwrap_or(("", prefix));
            let Ok(entries) = fs::read_dir(root.join(dir)) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(start))
                .collect();
            names.sort();
            for n in names {
                out.push(if dir.is_empty() {
                    n
                } else {
                    format!("{dir}/{n}")
                });
            }
        } else if fs::symlink_metadata(root.join(&r)).is_ok() {
            out.push(r);
        }
    }
    out
}

/// What moved from the old tree to the new one.
#[derive(Debug, Default, Serialize)]
pub struct Moved {
    /// State paths (whole directories count once).
    pub state: Vec<String>,
    /// Files and directories the old manifest does not list.
    pub unknown: Vec<String>,
    /// Unknown files left in the backup because the new tree has a file of
    /// that name.
    pub left_in_backup: Vec<String>,
}

/// Plan what moves from `from` to `to`: the state of both policies, and
/// what `from`'s manifest does not list.
fn plan(from: &Path, to: &Path, policy: &StatePolicy) -> Result<Moved> {
    let mut moved = Moved::default();
    let state = expand_roots(from, policy);
    moved.state = state.clone();
    let manifest_path = from.join(MANIFEST_PATH);
    let Ok(bytes) = fs::read(&manifest_path) else {
        // Without a manifest nothing tells the user's files from the old
        // code: they stay in the backup.
        return Ok(moved);
    };
    let manifest = Manifest::parse(&bytes, &manifest_path)?;
    let known: HashSet<&str> = manifest.entries.iter().map(|e| e.path.as_str()).collect();
    let mut walk = walkdir::WalkDir::new(from)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    while let Some(e) = walk.next() {
        let e = e.with_context(|| format!("{}: cannot walk", from.display()))?;
        let rel = e
            .path()
            .strip_prefix(from)
            .unwrap_or(e.path())
            .to_string_lossy()
            .into_owned();
        let is_dir = e.file_type().is_dir();
        let skip = rel == map::STATE_DIR
            || policy.is_state(&rel)
            || state.iter().any(|s| s == &rel)
            || rel.ends_with("__pycache__")
            || rel.ends_with(".pyc");
        if skip || known.contains(rel.as_str()) {
            if skip && is_dir {
                walk.skip_current_dir();
            }
            continue;
        }
        if is_dir {
            walk.skip_current_dir();
        }
        if fs::symlink_metadata(to.join(&rel)).is_ok() {
            moved.left_in_backup.push(rel);
        } else {
            moved.unknown.push(rel);
        }
    }
    Ok(moved)
}

/// Each parent of `rel` in `root` must be a real directory (never a
/// symlink: a rename through it would leave the tree); missing ones are
/// created when `create`.
fn check_parents(root: &Path, rel: &str, create: bool) -> Result<()> {
    let mut dir = root.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!(
                "{}: is not a directory (a symlink or file), so {rel} cannot move; move it by hand",
                dir.display()
            ),
            Err(_) if create => {
                fs::create_dir(&dir).with_context(|| format!("{}: cannot create", dir.display()))?
            }
            Err(_) => bail!("{}: missing", dir.display()),
        }
    }
    Ok(())
}

/// Move the state and the unknown files of `from` into `to` (the tree
/// that will take `from`'s place), journaled in `parent` under `name`.
/// Returns what moved and the journal to drop once the swap is done.
pub fn move_into(
    from: &Path,
    to: &Path,
    policy: &StatePolicy,
    parent: &Path,
    name: &str,
) -> Result<(Moved, PathBuf)> {
    let moved = plan(from, to, policy)?;
    let paths: Vec<String> = moved.state.iter().chain(&moved.unknown).cloned().collect();
    for rel in &paths {
        check_parents(from, rel, false)?;
    }
    let journal = parent.join(format!(
        "{}{}.toml",
        journal_prefix(name),
        std::process::id()
    ));
    let text = toml::to_string(&Journal {
        from: from.into(),
        to: to.into(),
        moved: paths.clone(),
    })
    .context("serialising the state journal")?;
    fsutil::atomic_write(&journal, text.as_bytes(), 0o600)?;
    let result = (|| -> Result<()> {
        for rel in &paths {
            let dst = to.join(rel);
            check_parents(to, rel, true)?;
            // What the archive put there (empty state directories, initial
            // data) gives way to the state that lives on.
            if fs::symlink_metadata(&dst).is_ok() {
                fsutil::remove_tree_or_file(&dst)
                    .with_context(|| format!("{}: cannot make room", dst.display()))?;
            }
            fs::rename(from.join(rel), &dst).with_context(|| {
                format!(
                    "{}: cannot move into the new tree",
                    from.join(rel).display()
                )
            })?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        if undo(from, to, &paths) {
            let _ = fs::remove_file(&journal);
        }
        return Err(e);
    }
    fsutil::sync_dir(parent);
    Ok((moved, journal))
}

/// Put back what moved from `from` to `to` (after a failed swap).
/// `false` when something could not go back (it stays in `to`, and the
/// journal must stay too).
pub fn undo(from: &Path, to: &Path, paths: &[String]) -> bool {
    let mut all = true;
    for rel in paths.iter().rev() {
        let src = to.join(rel);
        let dst = from.join(rel);
        if fs::symlink_metadata(&src).is_ok() && fs::symlink_metadata(&dst).is_err() {
            all &= fs::rename(&src, &dst).is_ok();
        }
    }
    all
}

/// This run's journal beside DEST; while it exists, the tree it names as
/// `to` may hold state and must not be deleted.
pub fn journal_path(parent: &Path, name: &str) -> PathBuf {
    parent.join(format!(
        "{}{}.toml",
        journal_prefix(name),
        std::process::id()
    ))
}

/// Undo what moved for [`move_into`] calls of dead runs: a path still in
/// the tree it went to goes back where it came from, unless that place is
/// taken. A swap that did happen leaves nothing to do.
///
/// A dead run's journal that never got into place (its temp file,
/// `..DEST.bbrun-state.PID.toml.bbrun-tmp.PID`) is removed: nothing moves
/// before the journal is renamed into place, so it records nothing done.
pub fn recover_journals(parent: &Path, name: &str) -> Result<()> {
    let prefix = journal_prefix(name);
    let Ok(entries) = fs::read_dir(parent) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let file_name = e.file_name().to_string_lossy().into_owned();
        if is_dead_journal_temp(&file_name, &prefix) && e.file_type().is_ok_and(|t| t.is_file()) {
            fs::remove_file(e.path())
                .with_context(|| format!("{}: cannot remove", e.path().display()))?;
            continue;
        }
        let Some(pid) = file_name
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".toml"))
        else {
            continue;
        };
        if pid
            .parse::<i32>()
            .is_ok_and(|p| p == std::process::id() as i32 || !bbrun_run::debris::pid_alive(p))
        {
            let text = fs::read_to_string(e.path())
                .with_context(|| format!("{}: cannot read", e.path().display()))?;
            let j: Journal = toml::from_str(&text).map_err(|x| {
                anyhow::anyhow!(
                    "{}: unreadable state journal ({}); move the paths it lists back by hand, then remove it",
                    e.path().display(),
                    x.message()
                )
            })?;
            if !j.from.as_path().is_dir() {
                bail!(
                    "{}: an interrupted upgrade moved state out of {}, which is missing; move the paths it lists from {} back by hand, then remove it",
                    e.path().display(),
                    j.from,
                    j.to
                );
            }
            if !undo(j.from.as_path(), j.to.as_path(), &j.moved) {
                bail!(
                    "{}: an interrupted upgrade left state in {} that cannot go back to {}; move the paths it lists by hand, then remove it",
                    e.path().display(),
                    j.to,
                    j.from
                );
            }
            fs::remove_file(e.path())
                .with_context(|| format!("{}: cannot remove", e.path().display()))?;
        }
    }
    Ok(())
}

/// `.` + a journal's name + `.bbrun-tmp.PID` (fsutil::atomic_write's temp
/// file) of a process that is gone.
fn is_dead_journal_temp(file_name: &str, prefix: &str) -> bool {
    bbrun_run::debris::dead_temp(file_name)
        .and_then(|target| target.strip_prefix('.'))
        .and_then(|journal| journal.strip_prefix(prefix))
        .is_some_and(|rest| rest.ends_with(".toml"))
}

/// Whether `root` holds state files (a backup that must not be deleted).
pub fn holds_state(root: &Path) -> bool {
    !state_files(root, &policy_of(root)).is_empty()
}

/// The union of two trees' policies: state either one calls state moves.
pub fn union(a: &StatePolicy, b: &StatePolicy) -> StatePolicy {
    let mut out = a.clone();
    for p in &b.paths {
        out.add(&p.path, p.class, &p.origin);
    }
    out.not_state.retain(|x| b.not_state.contains(x));
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bbrun_map::state::StateClass;

    fn policy() -> StatePolicy {
        let mut p = StatePolicy::default();
        p.add("var", StateClass::Data, "default");
        p.add("parts/db/Data.fs*", StateClass::Data, "x.conf");
        p
    }

    #[test]
    fn held_locks_and_live_pids_are_seen() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("var")).unwrap();
        let p = policy();
        fs::write(r.join("var/app.pid"), "999999999\n").unwrap();
        fs::write(r.join("var/Data.fs.lock"), "").unwrap();
        check_not_running(r, &p).unwrap();
        // A lock held by another process (a child holding flock).
        // (-o: only flock itself holds it, so killing flock releases it.)
        let mut child = std::process::Command::new("flock")
            .arg("-o")
            .arg(r.join("var/Data.fs.lock"))
            .args(["sleep", "30"])
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut err = None;
        while std::time::Instant::now() < deadline {
            if let Err(e) = check_not_running(r, &p) {
                err = Some(e);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        let msg = format!("{:#}", err.expect("held lock not seen"));
        assert!(msg.contains("var/Data.fs.lock is locked"), "{msg}");
        assert!(msg.contains("--force"), "{msg}");
        fs::write(r.join("var/app.pid"), format!("{}\n", child.id())).unwrap();
        // flock forks before its child closes the locked descriptor (-o):
        // killed in between, that child still holds the lock a moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while check_not_running(r, &p).is_err() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        check_not_running(r, &p).unwrap();
        fs::write(r.join("var/app.pid"), "1\n").unwrap();
        let msg = format!("{:#}", check_not_running(r, &p).unwrap_err());
        assert!(msg.contains("names live process 1"), "{msg}");
    }

    #[test]
    fn state_and_unknown_files_move_and_a_dead_run_is_undone() {
        let d = tempfile::tempdir().unwrap();
        let (old, new) = (d.path().join("app"), d.path().join("stage"));
        for t in [&old, &new] {
            fs::create_dir_all(t.join("var")).unwrap();
            fs::create_dir_all(t.join("parts/db")).unwrap();
            fs::create_dir_all(t.join(".bbrun")).unwrap();
            fs::write(t.join("code.py"), "x").unwrap();
        }
        fs::write(old.join("var/data"), "precious").unwrap();
        fs::write(old.join("parts/db/Data.fs"), "db").unwrap();
        fs::write(old.join("parts/db/Data.fs.index"), "ix").unwrap();
        fs::write(old.join("mine.txt"), "user file").unwrap();
        fs::create_dir(old.join("uploads")).unwrap();
        fs::write(old.join("uploads/a"), "a").unwrap();
        fs::write(new.join("var/initial"), "from the archive").unwrap();
        let m = Manifest::from_tree(&old).unwrap();
        let known: Vec<_> = m
            .entries
            .into_iter()
            .filter(|e| {
                !["mine.txt", "uploads", "uploads/a", "var/data"].contains(&e.path.as_str())
                    && !e.path.starts_with("parts/db/")
            })
            .collect();
        fs::write(
            old.join(MANIFEST_PATH),
            Manifest::from_entries(known).to_bytes(),
        )
        .unwrap();
        let (moved, journal) = move_into(&old, &new, &policy(), d.path(), "app").unwrap();
        assert_eq!(
            moved.state,
            ["var", "parts/db/Data.fs", "parts/db/Data.fs.index"]
        );
        assert_eq!(moved.unknown, ["mine.txt", "uploads"]);
        assert_eq!(
            fs::read_to_string(new.join("var/data")).unwrap(),
            "precious"
        );
        assert!(!new.join("var/initial").exists());
        assert_eq!(fs::read_to_string(new.join("uploads/a")).unwrap(), "a");
        assert!(!old.join("var").exists());
        // The run "died" before the swap: the next run puts everything back.
        assert!(journal.exists());
        recover_journals(d.path(), "app").unwrap();
        assert!(!journal.exists());
        assert_eq!(
            fs::read_to_string(old.join("var/data")).unwrap(),
            "precious"
        );
        assert_eq!(
            fs::read_to_string(old.join("parts/db/Data.fs")).unwrap(),
            "db"
        );
        assert_eq!(
            fs::read_to_string(old.join("mine.txt")).unwrap(),
            "user file"
        );
        assert!(!new.join("mine.txt").exists());
    }

    #[test]
    fn a_journal_a_dead_run_was_writing_goes_a_live_one_stays() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        // PID 2^22+ is above Linux's pid_max default: dead.
        let dead = r.join("..app.bbrun-state.4194304.toml.bbrun-tmp.4194304");
        let live = r.join(format!(
            "..app.bbrun-state.{0}.toml.bbrun-tmp.{0}",
            std::os::unix::process::parent_id()
        ));
        let other_tree = r.join("..apps.bbrun-state.4194304.toml.bbrun-tmp.4194304");
        for p in [&dead, &live, &other_tree] {
            fs::write(p, "half a journal").unwrap();
        }
        recover_journals(r, "app").unwrap();
        assert!(!dead.exists());
        assert!(live.exists() && other_tree.exists());
    }
}
