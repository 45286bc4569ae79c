//! `bbrun install ARCHIVE DEST`: unpack into a staging directory beside
//! DEST, verify it against the archive's manifest, retarget it for DEST,
//! then put it in place with one rename.
//!
//! Crash safety: until the final rename nothing at DEST changes, so a full
//! disk or a kill leaves the old state; the rename itself is atomic
//! (`renameat2(RENAME_EXCHANGE)` swaps a previous install with the new one),
//! so there is no moment without a complete tree at DEST. Leftovers of a
//! killed run (staging and backup directories named after a dead PID) are
//! cleaned by the next run, which then does the whole job.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bbrun_archive::manifest::{EntryKind, Manifest, MANIFEST_PATH};
use bbrun_archive::unpack;
use serde::Serialize;

use crate::retarget;
use crate::upgrade;
use crate::verify;
use bbrun_map::map;
use bbrun_run::tree::FrozenTree;
use bbrun_util::fsutil::{self, remove_tree};

#[derive(Debug, Serialize)]
pub struct InstallReport {
    pub archive: String,
    pub dest: String,
    pub entries: usize,
    pub bytes: u64,
    /// Files rewritten for DEST.
    pub rewritten: Vec<String>,
    /// Scripts whose first line now names the launcher.
    pub scripts: Vec<String>,
    pub launcher: String,
    /// A previous tree at DEST was replaced.
    pub replaced: bool,
    /// Symlinks kept pointing outside DEST (`--allow-external-symlinks`),
    /// as `path -> target`.
    pub external_symlinks: Vec<String>,
    /// Entries installed with fewer mode bits than archived, as
    /// `path: 4755 -> 0755` (see `--keep-modes`).
    pub stripped_modes: Vec<String>,
    /// What an upgrade kept from the previous tree (state, unknown files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept: Option<upgrade::Moved>,
    /// Where the previous tree is kept (`bbrun rollback DEST` swaps it back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    pub seconds: f64,
}

#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Named in the scripts' first lines.
    pub launcher: PathBuf,
    /// Flush the tree to disk before it is moved into place, so even a
    /// power cut leaves the old tree or the complete new one.
    pub sync: bool,
    /// Keep symlinks pointing outside DEST (a virtualenv's interpreter).
    pub allow_external_symlinks: bool,
    /// Keep setuid/setgid/sticky bits and group/world write as archived.
    pub keep_modes: bool,
    /// Upgrade even when an instance seems to run from DEST.
    pub force: bool,
}

/// Install `archive` at `dest`. `progress` gets the compressed bytes read
/// so far.
pub fn install(
    archive: &Path,
    dest: &Path,
    opts: &InstallOptions,
    progress: &dyn Fn(u64),
) -> Result<InstallReport> {
    let started = Instant::now();
    let from_stdin = archive.as_os_str() == "-";
    let archive = if from_stdin {
        PathBuf::from("(standard input)")
    } else {
        fsutil::absolute_lexical(archive)?
    };
    // A regular file is checked before anything is created; a pipe or FIFO
    // is read once, so its magic bytes are checked by the unpacker.
    if fs::metadata(&archive).is_ok_and(|m| m.is_file()) {
        unpack::detect(&archive)?;
    }
    let dest = fsutil::absolute_lexical(dest)?;
    let (parent, name) = match (dest.parent(), dest.file_name()) {
        (Some(p), Some(n)) => (p.to_path_buf(), fsutil::name_key(n)),
        _ => bail!("{}: cannot install at the filesystem root", dest.display()),
    };
    fs::create_dir_all(&parent).with_context(|| format!("{}: cannot create", parent.display()))?;
    recover(&parent, &name, &dest)?;
    let replacing = check_dest(&dest)?;
    let prev = upgrade::prev_path(&parent, &name);
    if replacing {
        // Fail before the long part: a running instance, or a backup of
        // an earlier upgrade that still holds state (never deleted).
        if !opts.force {
            upgrade::check_not_running(&dest, &upgrade::policy_of(&dest))?;
        }
        if prev.exists() && upgrade::holds_state(&prev) {
            bail!(
                "{}: the backup of an earlier upgrade holds application state; move it away (or `bbrun rollback {}`) first",
                prev.display(),
                dest.display()
            );
        }
        // Only one backup is kept, and it goes now: peak disk use stays
        // at two trees (DEST and the staged one).
        if prev.exists() {
            remove_tree(&prev)
                .with_context(|| format!("{}: cannot remove the older backup", prev.display()))?;
        }
    }

    let staging = parent.join(format!(".{name}.bbrun-staging.{}", std::process::id()));
    fs::create_dir(&staging)
        .with_context(|| format!("{}: cannot create staging directory", staging.display()))?;
    let staged = stage(&archive, from_stdin, &staging, &dest, opts, progress);
    let mut report = match staged {
        Ok(r) => r,
        Err(e) => {
            let _ = remove_tree(&staging);
            return Err(e);
        }
    };
    if !replacing {
        if let Err(e) = put_in_place(&staging, &dest, &parent) {
            let _ = remove_tree(&staging);
            return Err(e);
        }
    } else {
        match upgrade_in_place(&staging, &dest, &parent, &name, opts.force) {
            Ok(kept) => {
                report.kept = Some(kept);
                report.backup = Some(prev.display().to_string());
            }
            Err(e) => {
                // A journal left behind means state could not go back:
                // the staging tree holds it, the next run moves it back.
                if !upgrade::journal_path(&parent, &name).exists() {
                    let _ = remove_tree(&staging);
                }
                return Err(e);
            }
        }
    }
    report.replaced = replacing;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Unpack, verify and retarget into `staging` for its future path `dest`.
fn stage(
    archive: &Path,
    from_stdin: bool,
    staging: &Path,
    dest: &Path,
    opts: &InstallOptions,
    progress: &dyn Fn(u64),
) -> Result<InstallReport> {
    let unpack_opts = unpack::UnpackOptions {
        allow_external_symlinks: opts.allow_external_symlinks,
        keep_modes: opts.keep_modes,
        skip_external_symlinks: true,
    };
    let unpacked = if from_stdin {
        unpack::unpack_reader(
            std::io::stdin().lock(),
            archive,
            staging,
            unpack_opts,
            progress,
        )?
    } else {
        unpack::unpack_with(archive, staging, unpack_opts, progress)?
    };
    let mut external = unpacked.external_symlinks;
    let stripped = unpacked.stripped_modes;
    let skipped = unpacked.skipped_symlinks;
    let unpacked = unpacked.manifest;
    check_against_manifest(archive, staging, &unpacked)?;
    // Everything install writes from here on lives in .bbrun/ or is a
    // checked regular file; with links out of the tree allowed, .bbrun
    // itself must not be one.
    let state = staging.join(map::STATE_DIR);
    if !fs::symlink_metadata(&state).is_ok_and(|m| m.is_dir()) {
        bail!(
            "{}: {} is not a directory in the archive; refused",
            archive.display(),
            map::STATE_DIR
        );
    }
    if !map::map_path(staging).is_file() {
        bail!(
            "{}: holds no {}/{}; is it a frozen tree packed by `bbrun pack`?",
            archive.display(),
            map::STATE_DIR,
            map::MAP_FILE
        );
    }
    let frozen = map::load(&map::map_path(staging))?;
    external.extend(crate::install_links::repoint(
        archive, staging, &skipped, &frozen,
    )?);
    let retargeted = retarget::retarget(staging, dest)?;
    let tree = FrozenTree::open(staging)?;
    let real_root = fs::canonicalize(staging)
        .with_context(|| format!("{}: cannot resolve", staging.display()))?;
    for s in &tree.map.scripts {
        if retarget::checked_path(staging, &real_root, &s.path)?.is_none() {
            bail!(
                "{}: script {} recorded in the map is not in the archive",
                archive.display(),
                s.path
            );
        }
    }
    let changes = bbrun_run::shebang::apply(&tree, Some(&opts.launcher), false, false)?;
    // One flush for the whole tree before it becomes visible at DEST, so a
    // power cut after the rename cannot leave empty files behind. (A full
    // disk needs no flush to be seen: ext4 and xfs reserve space at write.)
    if opts.sync {
        sync_filesystem(staging);
    }
    Ok(InstallReport {
        archive: archive.display().to_string(),
        dest: dest.display().to_string(),
        entries: unpacked.entries.len(),
        bytes: unpacked
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .map(|e| e.size)
            .sum(),
        rewritten: retargeted.rewritten,
        scripts: changes
            .iter()
            .map(|c| {
                Path::new(&c.path)
                    .strip_prefix(staging)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| c.path.clone())
            })
            .collect(),
        launcher: opts.launcher.display().to_string(),
        replaced: false,
        external_symlinks: external
            .iter()
            .map(|(p, t)| format!("{p} -> {t}"))
            .collect(),
        stripped_modes: stripped
            .iter()
            .map(|(p, from, to)| format!("{p}: {from:04o} -> {to:04o}"))
            .collect(),
        kept: None,
        backup: None,
        seconds: 0.0,
    })
}

/// Every entry written must be exactly what the archive's manifest lists.
fn check_against_manifest(archive: &Path, staging: &Path, unpacked: &Manifest) -> Result<()> {
    let Some(entry) = unpacked.get(MANIFEST_PATH) else {
        bail!(
            "{}: has no {MANIFEST_PATH}; pack the tree with `bbrun pack`",
            archive.display()
        );
    };
    if entry.kind != EntryKind::File {
        bail!(
            "{}: {MANIFEST_PATH} is not a regular file",
            archive.display()
        );
    }
    let path = staging.join(MANIFEST_PATH);
    let bytes = fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let manifest = Manifest::parse(&bytes, &archive.join(MANIFEST_PATH))?;
    let diff = verify::diff_manifests(&manifest, unpacked);
    let first = |v: &[String], what: &str| v.first().map(|p| (p.clone(), what.to_string()));
    let problem = first(
        &diff.changed,
        "differs from the archive's manifest (tampered or corrupt)",
    )
    .or_else(|| {
        first(
            &diff.missing,
            "listed in the manifest but not in the archive",
        )
    })
    .or_else(|| first(&diff.added, "in the archive but not in its manifest"));
    if let Some((path, what)) = problem {
        let n = diff.changed.len() + diff.missing.len() + diff.added.len();
        let more = if n > 1 {
            format!(" ({} more difference(s))", n - 1)
        } else {
            String::new()
        };
        bail!(
            "{}: {path}: {what}{more}; nothing installed",
            archive.display()
        );
    }
    Ok(())
}

/// Whether DEST holds a tree to replace. A non-empty directory that is not
/// a bbrun tree is refused: install never deletes what it did not put there.
fn check_dest(dest: &Path) -> Result<bool> {
    let meta = match fs::symlink_metadata(dest) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot stat", dest.display())),
    };
    if !meta.is_dir() {
        bail!(
            "{}: exists and is not a directory (a symlink or file); refusing to replace it",
            dest.display()
        );
    }
    let empty = fs::read_dir(dest)
        .with_context(|| format!("{}: cannot list", dest.display()))?
        .next()
        .is_none();
    if empty {
        return Ok(false);
    }
    if !map::map_path(dest).is_file() {
        bail!(
            "{}: not empty and not a bbrun tree (no {}/{}); refusing to replace it",
            dest.display(),
            map::STATE_DIR,
            map::MAP_FILE
        );
    }
    Ok(true)
}

/// Move the staged tree to a missing or empty DEST.
fn put_in_place(staging: &Path, dest: &Path, parent: &Path) -> Result<()> {
    // rename(2) also replaces an empty directory, atomically.
    fs::rename(staging, dest)
        .with_context(|| format!("{}: cannot move the new tree into place", dest.display()))?;
    fsutil::sync_dir(parent);
    Ok(())
}

/// Replace the tree at DEST with the staged one, keeping DEST's state
/// (moved into the staged tree just before the swap) and the old tree as
/// `.DEST.bbrun-prev`.
fn upgrade_in_place(
    staging: &Path,
    dest: &Path,
    parent: &Path,
    name: &str,
    force: bool,
) -> Result<upgrade::Moved> {
    let policy = upgrade::union(&upgrade::policy_of(dest), &upgrade::policy_of(staging));
    if !force {
        upgrade::check_not_running(dest, &policy)?;
    }
    swap_keeping_state(dest, staging, &policy, parent, name)
}

/// Move `dest`'s state into `other`, then swap the two trees atomically;
/// afterwards `other`'s tree is at `dest` and the former `dest` is at
/// `.DEST.bbrun-prev`. On failure everything is as before.
pub(crate) fn swap_keeping_state(
    dest: &Path,
    other: &Path,
    policy: &bbrun_map::state::StatePolicy,
    parent: &Path,
    name: &str,
) -> Result<upgrade::Moved> {
    let (moved, journal) = upgrade::move_into(dest, other, policy, parent, name)?;
    let paths: Vec<String> = moved.state.iter().chain(&moved.unknown).cloned().collect();
    let fail = |e: anyhow::Error| {
        if upgrade::undo(dest, other, &paths) {
            let _ = fs::remove_file(&journal);
        }
        Err(e)
    };
    let prev = upgrade::prev_path(parent, name);
    match exchange(other, dest) {
        Ok(()) => {
            fsutil::sync_dir(parent);
            // `other` now holds the former tree, without its state.
            if other != prev {
                if prev.exists() {
                    let _ = remove_tree(&prev);
                }
                let _ = fs::rename(other, &prev);
            }
        }
        Err(e) if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
            return fail(anyhow::Error::new(e).context(format!(
                "{}: cannot swap the new tree into place",
                dest.display()
            )));
        }
        Err(_) => {
            // No RENAME_EXCHANGE on this filesystem: two renames, with the
            // old tree first renamed to a backup that a re-run puts back if
            // we die in between.
            let backup = parent.join(format!(".{name}.bbrun-old.{}", std::process::id()));
            if let Err(e) = fs::rename(dest, &backup) {
                return fail(anyhow::Error::new(e).context(format!(
                    "{}: cannot move the previous tree aside",
                    dest.display()
                )));
            }
            if let Err(e) = fs::rename(other, dest) {
                let _ = fs::rename(&backup, dest);
                return fail(anyhow::Error::new(e).context(format!(
                    "{}: cannot move the new tree into place",
                    dest.display()
                )));
            }
            fsutil::sync_dir(parent);
            if prev.exists() {
                let _ = remove_tree(&prev);
            }
            let _ = fs::rename(&backup, &prev);
        }
    }
    fsutil::sync_dir(parent);
    let _ = fs::remove_file(&journal);
    Ok(moved)
}

fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    let ca = CString::new(a.as_os_str().as_bytes())?;
    let cb = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: two valid NUL-terminated paths; no memory is shared.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Clean what killed runs left beside DEST. A backup whose run died between
/// its two renames (DEST missing) goes back to DEST first; then state moved
/// by a dead run goes back to DEST (see `upgrade.rs`); a backup of a run
/// that finished its swap becomes `.DEST.bbrun-prev`.
pub(crate) fn recover(parent: &Path, name: &str, dest: &Path) -> Result<()> {
    let staging_prefix = format!(".{name}.bbrun-staging.");
    let backup_prefix = format!(".{name}.bbrun-old.");
    let entries =
        fs::read_dir(parent).with_context(|| format!("{}: cannot list", parent.display()))?;
    let mut stale: Vec<(PathBuf, bool)> = Vec::new();
    for e in entries.flatten() {
        let file_name = e.file_name().to_string_lossy().into_owned();
        for (prefix, is_backup) in [(&staging_prefix, false), (&backup_prefix, true)] {
            if let Some(pid) = file_name.strip_prefix(prefix.as_str()) {
                if pid
                    .parse::<i32>()
                    .is_ok_and(|p| !bbrun_run::debris::pid_alive(p))
                {
                    stale.push((e.path(), is_backup));
                }
            }
        }
    }
    for (path, is_backup) in &stale {
        if *is_backup && fs::symlink_metadata(dest).is_err() && is_restorable(path) {
            fs::rename(path, dest).with_context(|| {
                format!(
                    "{}: cannot restore the previous tree from {}",
                    dest.display(),
                    path.display()
                )
            })?;
        }
    }
    upgrade::recover_journals(parent, name)?;
    let prev = upgrade::prev_path(parent, name);
    for (path, is_backup) in &stale {
        if fs::symlink_metadata(path).is_err() {
            continue;
        }
        // Only a real previous tree becomes the rollback backup; anything
        // else under a backup name (a planted symlink) is removed itself.
        if *is_backup && fs::symlink_metadata(&prev).is_err() && is_restorable(path) {
            let _ = fs::rename(path, &prev);
            continue;
        }
        remove_tree(path)
            .with_context(|| format!("{}: cannot remove stale directory", path.display()))?;
    }
    Ok(())
}

/// A backup is put back only if it is what install moved aside: a real
/// directory (not a symlink someone planted under the backup name)
/// holding a valid relocation map. Anything else is removed (a symlink
/// itself, never what it points to).
pub(crate) fn is_restorable(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
        && fs::symlink_metadata(map::map_path(path)).is_ok_and(|m| m.is_file())
        && map::load(&map::map_path(path)).is_ok()
}

fn sync_filesystem(path: &Path) {
    if let Ok(f) = fs::File::open(path) {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; syncfs only flushes.
        unsafe {
            libc::syncfs(f.as_raw_fd());
        }
    }
}
