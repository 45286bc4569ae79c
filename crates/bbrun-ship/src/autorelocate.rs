//! Zero-step moves: a tree moved or copied by hand (`mv`, `cp -a`, rsync)
//! has its recorded files (zope.conf, wsgi.ini, `.installed.cfg`,
//! egg-links...) rewritten for where it is now by the first launch there.
//!
//! Those files are data the program reads, not code the shim sees: left
//! alone, a copy made beside a running original would open the original's
//! `var/` (its Data.fs, its lock, its logs). So a launch at a new root
//! relocates first, with the same journaled, idempotent rewrite as
//! `bbrun relocate`, under an exclusive lock so concurrent first launches
//! rewrite once. The hot path pays one string comparison: only a tree whose
//! map names another root does any of this.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::retarget;
use bbrun_map::map::STATE_DIR;
use bbrun_run::tree::FrozenTree;

/// Name of the lock file in the tree's state dir.
pub const LOCK_FILE: &str = "lock";

/// `tree` when its recorded files already name its root; else relocate
/// them (the tree must be writable by the caller) and return the tree as
/// reloaded. A tree that cannot be relocated refuses to start: running it
/// would read another copy's files.
pub fn ensure_own_files(tree: FrozenTree) -> Result<FrozenTree> {
    if tree.map.files_root() == tree.root {
        return Ok(tree);
    }
    // The same directory by another spelling (a symlinked path): the files
    // name this very tree; rewriting them at every switch of spelling
    // would only churn.
    if same_dir(tree.map.files_root(), &tree.root) {
        return Ok(tree);
    }
    let root = tree.root.clone();
    let here = root.display();
    let state = root.join(STATE_DIR);
    if nix::unistd::access(&state, nix::unistd::AccessFlags::W_OK).is_err() {
        bail!(
            "{}: moved from {}, and its recorded files (config, .installed.cfg) still name that place, but this user cannot rewrite them; run `bbrun relocate {here}` as the tree's owner",
            root.display(),
            tree.map.files_root().display()
        );
    }
    let lock_path = state.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("{}: cannot open", lock_path.display()))?;
    let _lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("{}: cannot lock", lock_path.display()))?;
    // Another launch may have relocated while this one waited: retarget
    // re-reads the map and does nothing then.
    retarget::retarget(&root, &root).map_err(|e| {
        anyhow::anyhow!(
            "{}: moved from {}; rewriting its recorded files for this place failed ({e:#}); fix that and run `bbrun relocate {here}`",
            root.display(),
            tree.map.files_root().display()
        )
    })?;
    FrozenTree::open(&root)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}
