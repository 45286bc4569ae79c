//! What a launch hands the interpreter beyond the script: the path mapping
//! (as bytes: a destination need not be UTF-8), the interpreter view that
//! isolates a fallback interpreter from its own site dirs, and the
//! variables the shim reads. Kept out of `launch.rs` so its plan stays a
//! short read.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::pyview;
use crate::tree::FrozenTree;
use bbrun_util::fsutil;

/// A fallback interpreter run through a view (see [`pyview`]).
#[derive(Debug)]
pub struct View {
    /// The view's `bin/pythonX.Y`, exec'd instead of the base binary.
    pub python: PathBuf,
    /// The build environment's site dirs, as recorded (old paths).
    pub site_dirs: Vec<String>,
}

/// The build interpreter's place in this tree, when it was built inside
/// the tree (`ROOT/venv/bin/python3`): the tree's own, first.
pub fn in_tree_interpreter(tree: &FrozenTree) -> Option<PathBuf> {
    let want = &tree.map.interpreter.path;
    tree.map
        .old_roots()
        .iter()
        .find_map(|old| fsutil::relative_inside_bytes(want.as_bytes(), old))
        .map(|rel| tree.root.join(std::ffi::OsStr::from_bytes(rel)))
}

/// A view for `python` when it is a fallback: not the build interpreter,
/// not a venv's own interpreter (that one has its own site config), not
/// the bundled copy, and the map recorded the build site dirs.
pub fn plan(tree: &FrozenTree, python: &Path) -> Option<View> {
    let want = &tree.map.interpreter;
    let site_dirs = want.site_dirs.as_ref()?;
    if python.as_os_str().as_bytes() == want.path.as_bytes()
        || want
            .bundled
            .as_ref()
            .is_some_and(|b| tree.root.join(b) == python)
        || pyview::is_venv_python(python)
    {
        return None;
    }
    Some(View {
        python: pyview::interpreter(python, want)?,
        site_dirs: site_dirs.clone(),
    })
}

/// Variables for the shim: `BBRUN_SITE` (the site dirs to add, old paths,
/// one a line) under a view; `BBRUN_LAUNCHER`, so a child that runs
/// another tree's script can be handed to the launcher.
pub fn extra_env(view: Option<&View>) -> Vec<(OsString, OsString)> {
    let mut env = Vec::new();
    // Always set: a nested launch must not inherit its parent's.
    let site = view.map(|v| v.site_dirs.join("\n")).unwrap_or_default();
    env.push(("BBRUN_SITE".into(), site.into()));
    if let Ok(me) = std::env::current_exe() {
        env.push(("BBRUN_LAUNCHER".into(), me.into()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pathmap_keeps_non_utf8_bytes() {
        let pairs = vec![(b"/old".to_vec(), b"/new\xff/x".to_vec())];
        assert_eq!(
            bbrun_map::map_check::encode_pathmap(&pairs).as_bytes(),
            b"/old\t/new\xff/x\n".as_slice()
        );
    }
}
