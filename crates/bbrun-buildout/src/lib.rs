//! Re-running zc.buildout in a frozen tree where it landed: offline, with
//! no compiler, rebuilding nothing the move alone would not change, and
//! all-or-nothing.
//!
//! `bbrun buildout ROOT [ARGS…]`, `bbrun bin/buildout ARGS…` and
//! `./bin/buildout ARGS…` (after `bbrun shebang`) all come here:
//! 1. lock the tree (`.bbrun/lock`), finish an interrupted earlier run;
//! 2. `bbrun buildout ROOT`: relocate it if it was moved (as `bbrun
//!    relocate`), so `.installed.cfg` compares equal and parts are updated,
//!    not rebuilt at the old paths; `bin/buildout` refuses such a tree, as
//!    it always did;
//! 3. snapshot what buildout may change ([`snapshot`]);
//! 4. if `bin/buildout` names an interpreter this machine lacks, regenerate
//!    it (`buildout bootstrap`) for the one the launcher found;
//! 5. run buildout as a child with the offline settings ([`offline`]);
//! 6. on success refresh the freeze records ([`refresh`]) and drop the
//!    snapshot; on failure or interruption put the snapshot back and say in
//!    one line what would need the network or a compiler ([`diagnose`]).

pub mod bootstrap;
pub mod child;
pub mod clone;
pub mod diagnose;
pub mod lock;
pub mod offline;
pub mod refresh;
pub mod snapshot;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use bbrun_run::launch::{self, LaunchPlan};
use bbrun_run::shebang;
use bbrun_run::tree::FrozenTree;
use bbrun_ship::retarget;

/// How a moved tree is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// `bbrun buildout ROOT`: relocate it first, as `bbrun relocate`.
    Relocate,
    /// `bin/buildout` run as a script: refuse, as before (the guard of
    /// docs/launcher.md): running a copy's buildout must not silently
    /// rewrite that copy.
    Refuse,
}

/// Run the buildout script `script` of the tree at `root` with `args`.
pub fn run(root: &Path, script: &Path, args: &[OsString], moved: Moved) -> Result<i32> {
    let here = root.display();
    // A refused run writes nothing, not even the lock file.
    if moved == Moved::Refuse {
        refuse_unrelocated(root)?;
    }
    let lock = lock::acquire(root)?;
    if snapshot::repair(root)? {
        eprintln!(
            "bbrun: {}: put back the tree as it was before an interrupted buildout run",
            root.display()
        );
    }
    let moved = retarget::retarget(root, root)?;
    if !moved.from.is_empty() {
        println!(
            "bbrun: {here}: relocated from {} first ({} file(s) rewritten)",
            moved.from,
            moved.rewritten.len()
        );
    }
    let tree = FrozenTree::open(root)?;
    let before = refresh::before(&tree);

    let taken = match snapshot::take(root) {
        Ok(t) => t,
        Err(e) => {
            // Nothing was run yet: drop the partial copy, keep the tree.
            let _ = snapshot::repair(root);
            return Err(e);
        }
    };
    println!(
        "bbrun: snapshot of {} file(s), {:.1} MiB, in {:.2} s ({} copied, {} hard-linked, {} reflinked); restored if this run fails",
        taken.stats.files,
        taken.stats.bytes as f64 / (1024.0 * 1024.0),
        taken.seconds,
        taken.stats.copied,
        taken.stats.hard_linked,
        taken.stats.reflinked
    );
    lock::inherit(&lock);
    let result = run_in_snapshot(root, script, args, &before);
    match result {
        Ok(()) => {
            snapshot::commit(root)?;
            Ok(0)
        }
        Err(e) => {
            snapshot::restore(root).with_context(|| {
                format!("{e:#}; and restoring the tree failed too, run `bbrun buildout {here}` again to finish restoring")
            })?;
            Err(e)
        }
    }
}

/// Steps 4-6 (and writing a missing `bin/buildout`) while the snapshot is armed; an error means restore.
fn run_in_snapshot(
    root: &Path,
    script: &Path,
    args: &[OsString],
    before: &refresh::Before,
) -> Result<()> {
    let cfg = config_file(root, args);
    if !script.is_file() {
        bootstrap::write(root, script)?;
    }
    let plan = &launch::plan(script, args, &bbrun_ship::LAUNCH_HOOKS)?;
    if needs_regenerating(root, script, plan) {
        regenerate(root, script, plan)?;
    }
    let hide = offline::hide_site_packages(&FrozenTree::open(root)?.map, &plan.python);
    let done = child::run(
        plan,
        args.len(),
        &offline::assignments(),
        &offline::env(hide),
    )?;
    if !done.success {
        if done.interrupted {
            bail!(
                "{}: buildout was interrupted (exit {}); the tree was put back as it was before the run",
                cfg.display(),
                done.code
            );
        }
        bail!(
            "{}: {} (the tree was put back as it was before the run)",
            cfg.display(),
            diagnose::explain(&done.output)
        );
    }
    let start = std::time::Instant::now();
    refresh::after(root, before)?;
    println!(
        "bbrun: freeze records refreshed in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `-c FILE` from the arguments (relative to the working directory, as
/// buildout reads it), else `ROOT/buildout.cfg`.
fn config_file(root: &Path, args: &[OsString]) -> PathBuf {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-c" {
            if let Some(f) = it.next() {
                return bbrun_util::fsutil::absolute_lexical(Path::new(f))
                    .unwrap_or_else(|_| f.into());
            }
        }
    }
    root.join("buildout.cfg")
}

/// `bin/buildout`'s own interpreter (recorded by freeze, or line 1) does
/// not exist here: the note's "special bootstrap" rewrites it for the
/// interpreter the launcher chose.
fn needs_regenerating(root: &Path, script: &Path, plan: &LaunchPlan) -> bool {
    let rel = script
        .strip_prefix(root)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Ok(tree) = FrozenTree::open(root) else {
        return false;
    };
    let line = match tree.map.script(&rel) {
        Some(s) => s.shebang.clone(),
        None => shebang::read_first_line(script).unwrap_or_default(),
    };
    match shebang::parse(&line) {
        Some(s) if s.interpreter.starts_with('/') => {
            !Path::new(&s.interpreter).exists() && Path::new(&s.interpreter) != plan.python
        }
        _ => false,
    }
}

/// Write `script` for this machine: line 1 names the interpreter the
/// launcher chose (with the recorded options), and the paths its body
/// names (`sys.path[0:0] = [...]`) where they are now, so it also runs
/// without bbrun. `buildout bootstrap` would do the same but first deletes
/// all of `develop-eggs/`, eggs built by zc.recipe.egg:custom included.
fn regenerate(root: &Path, script: &Path, plan: &LaunchPlan) -> Result<()> {
    let tree = FrozenTree::open(root)?;
    let bytes =
        std::fs::read(script).with_context(|| format!("{}: cannot read", script.display()))?;
    let (_, body) = shebang::split_first_line(&bytes);
    let rel = script
        .strip_prefix(root)
        .unwrap_or(script)
        .to_string_lossy();
    let options = tree
        .map
        .script(&rel)
        .map(|s| s.options.join(" "))
        .unwrap_or_default();
    let mut line = format!("#!{}", plan.python.display());
    if !options.is_empty() {
        line = format!("{line} {options}");
    }
    let body =
        bbrun_map::relocate::rewrite_text(body, &tree.path_mapping()).unwrap_or(body.to_vec());
    let mut out = line.clone().into_bytes();
    out.push(b'\n');
    out.extend_from_slice(&body);
    bbrun_util::fsutil::atomic_write(script, &out, 0o755)?;
    println!(
        "bbrun: regenerated {} for {}",
        script.display(),
        plan.python.display()
    );
    Ok(())
}

/// The buildout script of the tree at `root` for `bbrun buildout ROOT`.
pub fn script_of(tree: &FrozenTree) -> Result<PathBuf> {
    let default = tree.root.join("bin/buildout");
    if default.is_file() {
        return Ok(default);
    }
    if let Some(s) = tree
        .map
        .scripts
        .iter()
        .find(|s| s.buildout && tree.root.join(&s.path).is_file())
    {
        return Ok(tree.root.join(&s.path));
    }
    // Written from the tree's zc.buildout inside the run (bootstrap).
    Ok(default)
}

/// A launch found to be a buildout run (see [`LaunchPlan::buildout`]).
pub fn run_planned(plan: LaunchPlan, script: &Path, args: &[OsString]) -> Result<i32> {
    let abs = bbrun_util::fsutil::absolute_lexical(script)?;
    // A script reached through a symlink outside the tree: its real path.
    let abs = if abs.starts_with(&plan.root) {
        abs
    } else {
        std::fs::canonicalize(&abs).with_context(|| format!("{}: cannot resolve", abs.display()))?
    };
    run(&plan.root, &abs, args, Moved::Refuse)
}

/// zc.buildout run where `.installed.cfg` names another root would
/// uninstall the parts at the old paths (deleting a copy that still lives
/// there) and rebuild everything.
fn refuse_unrelocated(root: &Path) -> Result<()> {
    let tree = FrozenTree::open(root)?;
    let files_root = tree.map.files_root().display();
    let here = root.display();
    let installed = root.join(".installed.cfg");
    if tree.map.files_root() != root && installed.exists() {
        bail!(
            "{}: names the tree's old root {files_root}; a buildout run now would uninstall parts there and rebuild them here. Run `bbrun relocate {here}` first (or `bbrun buildout {here}`, which does)",
            installed.display()
        );
    }
    Ok(())
}

/// Cheap check before every launch: a journal left by a killed run means
/// the tree may be half-changed. Put it back first, unless the run is
/// still going (it holds the lock).
pub fn repair_before_launch(root: &Path) -> Result<()> {
    if std::fs::symlink_metadata(snapshot::journal_path(root)).is_err() {
        return Ok(());
    }
    if let Some(_lock) = lock::try_acquire(root)? {
        if snapshot::repair(root)? {
            eprintln!(
                "bbrun: {}: put back the tree as it was before an interrupted buildout run",
                root.display()
            );
        }
    }
    Ok(())
}
