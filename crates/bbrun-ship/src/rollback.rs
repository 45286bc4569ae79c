//! `bbrun rollback DEST`: swap an upgraded tree with the one it replaced
//! (`.DEST.bbrun-prev`), state moving along the same way as in an upgrade
//! (see [`crate::upgrade`]). Apart from upgrade because it drives
//! install's swap, which drives upgrade's moves: the arrows point one way.

use std::path::Path;

use anyhow::{bail, Result};
use bbrun_map::map;
use bbrun_util::fsutil;
use serde::Serialize;

use crate::install;
use crate::upgrade::{check_not_running, policy_of, prev_path, union, Moved};

#[derive(Debug, Serialize)]
pub struct RollbackReport {
    pub dest: String,
    /// Where the tree rolled back from is kept now (rolling back again
    /// swaps it back).
    pub backup: String,
    pub kept: Moved,
}

/// `bbrun rollback DEST`: swap DEST with `.DEST.bbrun-prev`, moving DEST's
/// state (and files its manifest does not know) along.
pub fn rollback(dest: &Path, force: bool) -> Result<RollbackReport> {
    let dest = fsutil::absolute_lexical(dest)?;
    let (parent, name) = match (dest.parent(), dest.file_name()) {
        (Some(p), Some(n)) => (p.to_path_buf(), fsutil::name_key(n)),
        _ => bail!("{}: not an installed tree", dest.display()),
    };
    install::recover(&parent, &name, &dest)?;
    let prev = prev_path(&parent, &name);
    // A real directory with a valid map, never a symlink planted under
    // the backup name.
    if !install::is_restorable(&prev) {
        bail!(
            "{}: no previous tree to roll back to ({} is missing or not a bbrun tree); only `bbrun install` over an existing tree keeps one",
            dest.display(),
            prev.display()
        );
    }
    if !map::map_path(&dest).is_file() {
        bail!(
            "{}: not a bbrun tree (no {}/{}); refusing to swap it",
            dest.display(),
            map::STATE_DIR,
            map::MAP_FILE
        );
    }
    let policy = union(&policy_of(&dest), &policy_of(&prev));
    if !force {
        check_not_running(&dest, &policy)?;
    }
    let kept = install::swap_keeping_state(&dest, &prev, &policy, &parent, &name)?;
    Ok(RollbackReport {
        dest: dest.display().to_string(),
        backup: prev.display().to_string(),
        kept,
    })
}
