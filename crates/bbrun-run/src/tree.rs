//! Finding the frozen tree a script belongs to, the way git finds `.git`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use bbrun_map::map::{self, RelocationMap};

/// A frozen tree at its current location.
#[derive(Debug)]
pub struct FrozenTree {
    /// The root as reached (lexical, symlinks kept).
    pub root: PathBuf,
    pub map: RelocationMap,
}

impl FrozenTree {
    /// Load the tree rooted at `root` (which must hold `.bbrun/map.toml`).
    pub fn open(root: &Path) -> Result<FrozenTree> {
        let map_path = map::map_path(root);
        // The state check `lstat`s the map first; a missing map is told
        // apart only when it fails (a path lookup is ~2 us of every launch).
        if let Err(e) = crate::tree_state::check_tree_state(root) {
            if !map_path.exists() {
                bail!(
                    "{}: no relocation map; run `bbrun freeze {}` first",
                    map_path.display(),
                    root.display()
                );
            }
            return Err(e);
        }
        Ok(FrozenTree {
            root: root.to_path_buf(),
            map: map::load(&map_path)?,
        })
    }

    /// `(old, new)` pairs the shim applies, longest old path first.
    pub fn path_mapping(&self) -> Vec<bbrun_map::relocate::PathPair> {
        bbrun_map::relocate::rewrite_pairs(&self.map, &self.root)
    }
}

/// Walk up from the directory holding `file` (absolute) to the nearest
/// directory holding `.bbrun/map.toml`.
pub fn find_root(file: &Path) -> Option<PathBuf> {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if map::map_path(d).is_file() {
            return Some(d.to_path_buf());
        }
        dir = d.parent();
    }
    None
}
