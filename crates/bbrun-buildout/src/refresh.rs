//! After a successful run: buildout regenerated scripts (line 1 now names
//! this machine's interpreter, bodies name the tree's current paths) and
//! maybe configs. The freeze records follow, so the tree stays frozen and
//! can be moved, packed and relocated again; scripts that ran through the
//! launcher (`bbrun shebang`) do so again.

use std::path::Path;

use anyhow::{Context, Result};

use bbrun_freeze::freeze::{self, FreezeOptions};
use bbrun_run::shebang;
use bbrun_run::tree::FrozenTree;

/// What the scripts' first lines were before the run.
pub struct Before {
    /// The launcher line the recorded scripts had (`bbrun shebang`), if any.
    launcher_line: Option<String>,
}

pub fn before(tree: &FrozenTree) -> Before {
    let launcher_line = tree.map.scripts.iter().find_map(|s| {
        let line = shebang::read_first_line(&tree.root.join(&s.path)).ok()?;
        let parsed = shebang::parse(&line)?;
        shebang::is_launcher(&parsed.interpreter).then_some(line)
    });
    Before { launcher_line }
}

/// Freeze again (map, inventory, RPATHs of anything new) and point the
/// scripts back at the launcher if they were. Nothing outside the tree is
/// collected: a run that made scripts need outside paths fails here, and
/// the caller restores the tree.
pub fn after(root: &Path, before: &Before) -> Result<()> {
    let opts = FreezeOptions {
        no_collect: true,
        ..Default::default()
    };
    freeze::freeze(root, &opts).context("refreshing the freeze records after buildout")?;
    if let Some(line) = &before.launcher_line {
        let tree = FrozenTree::open(root)?;
        for s in &tree.map.scripts {
            let path = root.join(&s.path);
            if path.exists() {
                shebang::set_first_line(&path, line, false)?;
            }
        }
    }
    Ok(())
}
