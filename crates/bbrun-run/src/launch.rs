//! Running a script of a frozen tree: find the tree, pick an interpreter,
//! exec it with the shim. Exec, never a child: signals, exit codes and the
//! terminal belong to the Python process, with the same PID.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::interp::{self, ProbeCache};
use crate::shebang;
use crate::shim;
use crate::tree::FrozenTree;
use bbrun_util::fsutil;

/// Everything needed to exec; built separately from the exec so tests and
/// `--print` can inspect it.
#[derive(Debug)]
pub struct LaunchPlan {
    pub python: PathBuf,
    pub argv: Vec<OsString>,
    /// Environment variables to set (the rest is inherited).
    pub env: Vec<(OsString, OsString)>,
    /// The tree's root, as reached.
    pub root: PathBuf,
    /// A zc.buildout run that may change the tree: the caller runs it
    /// through [`bbrun_buildout::buildout`] (offline, transactional), not exec.
    pub buildout: bool,
}

/// What a launch needs from the tooling crates, wired by the binary: this
/// crate depends on none of them (the hot path stays small, and the arrow
/// between run side and tooling points one way).
pub struct Hooks {
    /// A tree whose recorded files name another root (moved or copied by
    /// hand): rewrite them for where it is now and return the tree
    /// reloaded, or refuse (`bbrun_ship::autorelocate::ensure_own_files`).
    /// It returns a tree at its recorded root as it is, after one string
    /// comparison.
    pub own_files: fn(FrozenTree) -> Result<FrozenTree>,
}

/// Plan the launch of `script` (as typed by the user or passed by the
/// kernel) with `args`.
pub fn plan(script: &Path, args: &[OsString], hooks: &Hooks) -> Result<LaunchPlan> {
    let abs = fsutil::absolute_lexical(script)?;
    // `bbrun venv/bin/python ARGS`: the tree's interpreter itself, run with
    // the tree's mapping (its link may dangle on this machine).
    let interpreter_mode = is_interpreter(&abs);
    if !abs.is_file() && !interpreter_mode {
        bail!("{}: no such script", script.display());
    }
    // A script reached through a symlink outside the tree (a link in
    // /usr/local/bin) belongs to the tree its target is in.
    let (tree, abs) = match crate::tree::find_root(&abs) {
        Some(root) => (FrozenTree::open(&root)?, abs),
        None => {
            let real = std::fs::canonicalize(&abs)
                .with_context(|| format!("{}: cannot resolve", abs.display()))?;
            let root = crate::tree::find_root(&real).ok_or_else(|| not_in_tree(script))?;
            (FrozenTree::open(&root)?, real)
        }
    };
    // A tree moved or copied by hand runs on its own files, never on those
    // of the place it came from.
    let tree = (hooks.own_files)(tree)?;
    let rel = abs
        .strip_prefix(&tree.root)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let recorded = tree.map.script(&rel);
    let options = match recorded {
        Some(s) => s.options.clone(),
        None if interpreter_mode => vec![],
        None => unrecorded_script_options(&abs)?,
    };
    // The map says whether a script runs zc.buildout; only a script freeze
    // did not record is read to find out (it was read for its options
    // already, and is rare), or, for maps from before the flag, a recorded
    // one in a tree still needing `bbrun relocate` (where running it
    // unguarded would do damage at the old root).
    let buildout = match recorded {
        Some(s) => {
            s.buildout || rel == "bin/buildout" || (needs_relocating(&tree) && runs_buildout(&abs))
        }
        None => rel == "bin/buildout" || runs_buildout(&abs),
    } && !is_read_only_buildout(args);

    let mut cache = ProbeCache::load();
    let python = pick_interpreter(&tree, interpreter_mode.then_some(abs.as_path()), &mut cache)?;
    cache.save();
    let view = crate::launch_view::plan(&tree, &python);
    let exe = view.as_ref().map_or(&python, |v| &v.python).clone();

    // A child the shim handed over (`python -u ROOT/bin/x` started by a
    // launched process) keeps the options it was started with, after the
    // script's own; they are consumed here, not inherited further.
    let handed = std::env::var_os(CHILD_OPTIONS);
    let shim_dir = shim::ensure_dir(&tree.root, &python)?;
    let mut argv: Vec<OsString> = vec![exe.clone().into()];
    if !interpreter_mode {
        argv.extend(options.into_iter().map(OsString::from));
        argv.extend(child_options(handed.as_deref()));
        argv.push("-c".into());
        argv.push(shim::boot_code(&shim_dir).into());
        argv.push(script.as_os_str().to_owned());
    }
    argv.extend(args.iter().cloned());

    let pathmap = bbrun_map::map_check::encode_pathmap(&tree.path_mapping());
    // The launched script's process runs the shim from `-c` and activates
    // it there, so it needs no sitecustomize: without the shim's directory
    // on its PYTHONPATH, `site` finds what it finds in place (the
    // distribution's sitecustomize, or none), and the process is spared
    // loading ours and searching for the one it shadows (~0.2 ms of every
    // launch). Its children do need it: `run_main()` moves
    // BBRUN_PYTHONPATH into PYTHONPATH before the script runs. A bare
    // interpreter (`bbrun venv/bin/python`) has only sitecustomize.
    let (own, children) = python_paths(&shim_dir);
    let (own, children) = if interpreter_mode {
        (children, OsString::new())
    } else {
        (own, children)
    };
    let mut env: Vec<(OsString, OsString)> = vec![
        ("BBRUN_PATHMAP".into(), pathmap),
        ("BBRUN_ROOT".into(), tree.root.clone().into()),
        ("PYTHONPATH".into(), own),
        ("BBRUN_PYTHONPATH".into(), children),
        // Where the shim keeps the compiled script (bbrun_shim's code
        // cache): only a directory safedir checked is this user's own;
        // empty, never inherited, without one.
        (
            "BBRUN_CODE_CACHE".into(),
            cache.dir().map_or_else(OsString::new, |d| d.into()),
        ),
    ];
    if tree.root.join("pyvenv.cfg").is_file() {
        env.push(("BBRUN_VENV".into(), tree.root.clone().into()));
    } else {
        // Not inherited from a launch of another tree.
        env.push(("BBRUN_VENV".into(), OsString::new()));
    }
    env.extend(crate::launch_view::extra_env(view.as_ref()));
    if handed.is_some() {
        env.push((CHILD_OPTIONS.into(), OsString::new()));
    }
    Ok(LaunchPlan {
        python: exe,
        argv,
        env,
        root: tree.root,
        buildout,
    })
}

/// `(PYTHONPATH without the shim, the shim's directory first)`: the
/// caller's entries are kept, those of another tree's shim dropped (a
/// script of one tree running another's must not pile them up).
fn python_paths(shim_dir: &Path) -> (OsString, OsString) {
    let kept: Vec<PathBuf> = std::env::var_os("PYTHONPATH")
        .filter(|p| !p.is_empty())
        .map(|p| {
            std::env::split_paths(&p)
                .filter(|p| !p.join("bbrun_shim.py").exists())
                .collect()
        })
        .unwrap_or_default();
    let kept = std::env::join_paths(kept).unwrap_or_default();
    let mut with_shim = shim_dir.as_os_str().to_owned();
    if !kept.is_empty() {
        with_shim.push(":");
        with_shim.push(&kept);
    }
    (kept, with_shim)
}

/// Set by the shim when it hands a child over to the launcher: the
/// child's interpreter options, one a line.
const CHILD_OPTIONS: &str = "BBRUN_CHILD_OPTIONS";

/// The handed-over options that are flag options (`-u`, `-X dev`...);
/// anything else (a script path, `-c CODE`) is dropped.
fn child_options(handed: Option<&std::ffi::OsStr>) -> Vec<OsString> {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let Some(handed) = handed else {
        return vec![];
    };
    handed
        .as_bytes()
        .split(|&b| b == b'\n')
        .filter(|o| is_flag_option(o))
        .map(|o| OsString::from_vec(o.to_vec()))
        .collect()
}

/// `-u`, `-OO`, `-sB`: letters of flags only; or `-W...`, `-X...`. Never
/// `-c`/`-m` or anything that would change what runs.
fn is_flag_option(o: &[u8]) -> bool {
    match o {
        [b'-', b'W' | b'X', _, ..] => true,
        [b'-', rest @ ..] if !rest.is_empty() => rest.iter().all(|c| b"dOBsSvbqPiu".contains(c)),
        _ => false,
    }
}

/// The interpreter for this launch: `$BBRUN_PYTHON` if set; else the
/// binary the user named (`bbrun venv/bin/python`) or the build
/// interpreter's place inside this tree (a venv built in the tree, as
/// Plone 6 does: a copy runs on its own venv, never the original's),
/// when compatible; else the usual search.
fn pick_interpreter(
    tree: &FrozenTree,
    named: Option<&Path>,
    cache: &mut ProbeCache,
) -> Result<PathBuf> {
    let want = &tree.map.interpreter;
    if std::env::var_os("BBRUN_PYTHON").is_none_or(|p| p.is_empty()) {
        let in_tree = crate::launch_view::in_tree_interpreter(tree);
        for cand in named.map(Path::to_path_buf).into_iter().chain(in_tree) {
            if cache
                .probe_binary(&cand)
                .is_some_and(|p| p.is_ok_and(|p| interp::incompatibility(want, &p).is_none()))
            {
                return Ok(cand);
            }
        }
    }
    interp::find_compatible(&tree.root, want, cache)
}

/// A Python interpreter binary (or a venv's link to one, even dangling),
/// as opposed to buildout's `bin/py` interpreter *script*.
fn is_interpreter(abs: &Path) -> bool {
    let name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !(name.starts_with("python") || name.starts_with("pypy")) {
        return false;
    }
    let is_link = std::fs::symlink_metadata(abs).is_ok_and(|m| m.file_type().is_symlink());
    is_link || shebang::read_first_line(abs).is_ok_and(|l| l.starts_with("\x7fELF"))
}

/// Interpreter options for a script freeze did not record (added to the
/// tree later, or outside `bin/`): taken from its own first line. A file
/// whose first line names another program (a shell script) is not ours to
/// run through Python.
fn unrecorded_script_options(abs: &Path) -> Result<Vec<String>> {
    let line = shebang::read_first_line(abs)?;
    if line.starts_with("\x7fELF") {
        bail!(
            "{}: a binary, not a Python script; run it directly",
            abs.display()
        );
    }
    match shebang::parse(&line) {
        None => Ok(vec![]),
        Some(s) if shebang::is_launcher(&s.interpreter) => Ok(vec![]),
        Some(s) if shebang::is_python(&s.interpreter) => Ok(s.options),
        Some(s) => bail!(
            "{}: not a Python script (its first line runs {}); run it directly",
            abs.display(),
            s.interpreter
        ),
    }
}

/// Replace this process with the planned interpreter.
pub fn exec(plan: LaunchPlan) -> Result<i32> {
    crate::exec::exec_with(&plan.python, &plan.argv, &plan.env)
}

fn not_in_tree(script: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: not inside a frozen tree (no .bbrun/map.toml in any parent directory); run `bbrun freeze ROOT` on the tree first",
        script.display()
    )
}

/// Buildout invocations that only print and never touch parts.
fn is_read_only_buildout(args: &[OsString]) -> bool {
    args.iter().any(|a| {
        let a = a.to_string_lossy();
        matches!(
            a.as_ref(),
            "--version" | "-h" | "--help" | "annotate" | "query"
        )
    })
}

/// `.installed.cfg` still names another root (cheap check first).
fn needs_relocating(tree: &FrozenTree) -> bool {
    tree.map.files_root() != tree.root && tree.root.join(".installed.cfg").exists()
}

/// A script that calls zc.buildout's main (any name), read from disk.
fn runs_buildout(abs: &Path) -> bool {
    std::fs::read(abs)
        .map(|b| b.len() < 64 * 1024 && shebang::runs_buildout(&b))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn handed_over_options_are_flags_only() {
        let got = child_options(Some(OsStr::new(
            "-u\n-OO\n-Xdev\n-Werror\n-c\n-qc\n-mpdb\n/x.py\n--\n-\n",
        )));
        assert_eq!(got, ["-u", "-OO", "-Xdev", "-Werror"]);
        assert!(child_options(None).is_empty());
    }
}
