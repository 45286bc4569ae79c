//! The tree's own `.bbrun/` files the launcher trusts (map, inventory,
//! shim), checked before a launch reads them; the cache side of the same
//! care is [`crate::safedir`].

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Result};

/// The files of a tree's `.bbrun/` that the launcher trusts (the map, the
/// inventory, the shim it puts on sys.path), checked as OpenSSH checks key
/// files: each must be a real file or directory (a symlink could lead to
/// another tree's map and its interpreter options), owned by the tree's
/// owner, root or the caller, and writable by nobody else. A few `lstat`s:
/// cheap enough for every launch.
pub fn check_tree_state(root: &Path) -> Result<()> {
    let owner = std::fs::metadata(root)
        .map_err(|e| anyhow::anyhow!("{}: cannot stat ({e})", root.display()))?
        .uid();
    let state = root.join(bbrun_map::map::STATE_DIR);
    check_state_entry(&state, owner, true, Need::Required)?;
    check_state_entry(
        &bbrun_map::map::map_path(root),
        owner,
        false,
        Need::Required,
    )?;
    check_state_entry(
        &bbrun_map::map::inventory_path(root),
        owner,
        false,
        Need::IfPresent,
    )?;
    let shim = crate::shim::tree_dir(root);
    check_state_entry(&shim, owner, true, Need::IfPresent)?;
    for (name, _) in crate::shim::FILES {
        check_state_entry(&shim.join(name), owner, false, Need::IfPresent)?;
    }
    // The shim's bytecode is code too.
    let pycache = shim.join("__pycache__");
    if check_state_entry(&pycache, owner, true, Need::IfPresent)? {
        if let Ok(entries) = std::fs::read_dir(&pycache) {
            for e in entries.flatten() {
                check_state_entry(&e.path(), owner, false, Need::Required)?;
            }
        }
    }
    Ok(())
}

/// Whether a missing entry is an error (the map) or simply not checked
/// (an inventory, a shim a tree may lack).
#[derive(Clone, Copy, PartialEq)]
enum Need {
    Required,
    IfPresent,
}

/// Check one entry with one `lstat`; `Ok(false)` when it cannot be
/// seen and is not required.
fn check_state_entry(path: &Path, tree_owner: u32, dir: bool, need: Need) -> Result<bool> {
    let m = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(_) if need == Need::IfPresent => return Ok(false),
        Err(e) => bail!("{}: cannot stat ({e})", path.display()),
    };
    let ft = m.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(path)
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        bail!(
            "{}: a symlink (to {target}); bbrun trusts only its own files inside the tree: replace it with a copy (`cp --remove-destination -r {target} {}`) or freeze the tree again",
            path.display(),
            path.display()
        );
    }
    if (dir && !ft.is_dir()) || (!dir && !ft.is_file()) {
        bail!(
            "{}: not a {}; freeze the tree again",
            path.display(),
            if dir { "directory" } else { "regular file" }
        );
    }
    // The caller's uid is asked last: a launch checks a dozen entries,
    // nearly always the tree owner's, and each ask is a syscall.
    let uid = m.uid();
    if uid != tree_owner && uid != 0 && uid != nix::unistd::geteuid().as_raw() {
        bail!(
            "{}: owned by uid {}, not by the tree's owner (uid {tree_owner}); refused, another user could change what runs: `chown {tree_owner} {}`",
            path.display(),
            m.uid(),
            path.display()
        );
    }
    if m.mode() & 0o022 != 0 {
        bail!(
            "{}: writable by group or others (mode {:04o}); refused, another user could change what runs: `chmod go-w {}`",
            path.display(),
            m.mode() & 0o7777,
            path.display()
        );
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn tree_state_refuses_loose_map_and_symlinked_state() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("tree");
        std::fs::create_dir_all(root.join(".bbrun")).unwrap();
        let map = root.join(".bbrun/map.toml");
        std::fs::write(&map, "format = 1\n").unwrap();
        std::fs::set_permissions(&map, std::fs::Permissions::from_mode(0o644)).unwrap();
        check_tree_state(&root).unwrap();
        std::fs::set_permissions(&map, std::fs::Permissions::from_mode(0o666)).unwrap();
        let msg = format!("{:#}", check_tree_state(&root).unwrap_err());
        assert!(msg.contains("chmod go-w"), "{msg}");
        std::fs::set_permissions(&map, std::fs::Permissions::from_mode(0o644)).unwrap();

        let other = t.path().join("other");
        std::fs::rename(root.join(".bbrun"), &other).unwrap();
        std::os::unix::fs::symlink(&other, root.join(".bbrun")).unwrap();
        let msg = format!("{:#}", check_tree_state(&root).unwrap_err());
        assert!(msg.contains("a symlink"), "{msg}");
    }
}
