//! Removing what killed runs left inside a tree (see
//! [`bbrun_util::fsutil::is_debris`]): temp files of a dead process, and
//! relocate's pending files when no relocate journal will claim them.
//! Every command that writes into a tree (freeze, relocate, shebang) sweeps
//! first, so a kill -9 costs nothing but the re-run; pack and the manifest
//! never list debris.

use std::path::{Path, PathBuf};

use anyhow::Result;
use bbrun_map::map;
use bbrun_util::fsutil::is_debris;

/// The journal of an unfinished retarget (`bbrun relocate`), in the tree's
/// state dir: while it exists, relocate's pending files are claimed. Named
/// here, below the shipping crate that writes it, because every writer
/// sweeps.
pub const JOURNAL: &str = "relocate-journal.toml";

/// Remove debris of dead runs below `root`; returns what was removed.
/// A temp file of a live process (another bbrun working now) is kept.
pub fn sweep(root: &Path) -> Result<Vec<PathBuf>> {
    let journal = root.join(map::STATE_DIR).join(JOURNAL).exists();
    let mut removed = Vec::new();
    let mut walker = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .into_iter();
    while let Some(e) = walker.next() {
        let Ok(e) = e else { continue };
        let Some(name) = e.file_name().to_str() else {
            continue;
        };
        if !is_debris(name) {
            continue;
        }
        if e.file_type().is_dir() {
            // A killed freeze's half copy (`.NN-name.bbrun-tmp.PID`).
            walker.skip_current_dir();
            if dead_temp(name).is_some() && std::fs::remove_dir_all(e.path()).is_ok() {
                removed.push(e.path().to_path_buf());
            }
            continue;
        }
        if !e.file_type().is_file() {
            continue;
        }
        let stale = if name.contains(".bbrun-tmp.") {
            dead_temp(name).is_some()
        } else {
            // `.NAME.bbrun-relocate`: pending until its journal is written;
            // with no journal, an interrupted run's leftover.
            name.ends_with(".bbrun-relocate") && !journal
        };
        if stale && std::fs::remove_file(e.path()).is_ok() {
            removed.push(e.path().to_path_buf());
        }
    }
    Ok(removed)
}

/// Remove dead-PID temp files directly in `dir` (not below): for the
/// launcher's cache, where only the rare writes (a new probe, a new shim
/// copy) pay for the look.
pub fn sweep_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if dead_temp(name).is_some() && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// For `TARGET.bbrun-tmp.PID` (a temp file or copy of bbrun's) whose
/// process is gone: `TARGET`. `None` for any other name, or a live PID.
pub fn dead_temp(name: &str) -> Option<&str> {
    let (target, pid) = name.rsplit_once(".bbrun-tmp.")?;
    pid.parse::<i32>()
        .is_ok_and(|p| !pid_alive(p))
        .then_some(target)
}

/// Whether a process runs with `pid`. Our own PID counts as dead: a
/// leftover with it is from a dead process whose PID we inherited (this
/// run sweeps before it creates anything).
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 || pid == std::process::id() as i32 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_dead_temps_and_orphan_pending_keeps_live() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join(".bbrun")).unwrap();
        std::fs::create_dir_all(r.join("lib")).unwrap();
        // PID 2^22+ is above Linux's pid_max default: dead.
        let dead = r.join("lib/_x.so.bbrun-tmp.4194304");
        let live = r.join(format!(
            "lib/.y.bbrun-tmp.{}",
            std::os::unix::process::parent_id()
        ));
        let pending = r.join(".installed.cfg.bbrun-relocate");
        let keep = r.join("lib/_x.so");
        for p in [&dead, &live, &pending, &keep] {
            std::fs::write(p, b"x").unwrap();
        }
        std::fs::write(r.join(".bbrun").join(JOURNAL), b"").unwrap();
        assert!(sweep(r).unwrap() == vec![dead.clone()]);
        assert!(pending.exists(), "a journal claims it");
        std::fs::remove_file(r.join(".bbrun").join(JOURNAL)).unwrap();
        assert_eq!(sweep(r).unwrap(), vec![pending.clone()]);
        assert!(live.exists() && keep.exists());
    }
}
