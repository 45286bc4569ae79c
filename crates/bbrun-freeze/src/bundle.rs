//! `bbrun freeze --bundle-python`: copy the build interpreter into the tree
//! and record it in the map so the launcher uses it first.
//!
//! Layout: `.bbrun/python/bin/pythonX.Y` (the real binary, not a venv's
//! link to it), `.bbrun/python/lib/pythonX.Y/` (the standard library with
//! `lib-dynload`), and `.bbrun/python/lib/` for libpython and every other
//! non-system library the binary and `lib-dynload` need (libssl, libffi,
//! ...; see [`crate::vendor`]). Python finds its prefix from the binary's
//! location (`lib/pythonX.Y/os.py` one level above `bin/`), so the bundle
//! works wherever the tree goes. The binary's search path becomes
//! `$ORIGIN/../lib`; entries naming the original installation are dropped.
//!
//! Left out, as a server application does not need them and they pull in
//! large or GUI dependencies: the test suites (`test/`, `tests/`,
//! `idle_test/`, `_test*` modules), `idlelib`, `tkinter`/`_tkinter`
//! (needs Tcl/Tk and X11), `turtledemo`, static `*.a` archives, and the
//! interpreter's own `site-packages` (the tree carries its packages).
//! `__pycache__` is kept: the copies keep their mtimes, so the cached
//! bytecode stays valid and nothing is written into the tree at run time.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::elfwalk::elf_files;
use crate::native_report::{NativeReport, BUNDLE_DIR};
use bbrun_map::map::RelocationMap;
use bbrun_run::interp;
use bbrun_util::fsutil;

/// Records which binary the bundle was copied from, for idempotence.
const STAMP: &str = "BBRUN-SOURCE";

/// Top-level standard-library entries left out (see the module docs).
const SKIP_TOP: &[&str] = &[
    "idlelib",
    "tkinter",
    "turtledemo",
    "site-packages",
    "dist-packages",
];
/// Directory names left out anywhere in the standard library.
const SKIP_DIRS: &[&str] = &["test", "tests", "idle_test"];
/// Extension-module name prefixes left out of `lib-dynload`.
const SKIP_MODULES: &[&str] = &[
    "_tkinter",
    "_test",
    "_ctypes_test",
    "_xxtestfuzz",
    "xxlimited",
];

/// What the real interpreter says about its installation.
#[derive(Debug, Deserialize)]
struct Layout {
    version: String,
    stdlib: PathBuf,
    dynload: String,
}

const LAYOUT_CODE: &str = "import sys, sysconfig, json; cv = sysconfig.get_config_var; \
print(json.dumps({'version': '%d.%d' % sys.version_info[:2], \
'stdlib': sysconfig.get_path('stdlib'), 'dynload': cv('DESTSHARED') or ''}))";

pub fn bundle_python(
    root: &Path,
    map: &mut RelocationMap,
    dry_run: bool,
    report: &mut NativeReport,
) -> Result<()> {
    let real = real_interpreter(map)?;
    let layout = probe_layout(&real)?;
    let dest = root.join(BUNDLE_DIR);
    let exe_rel = format!("{BUNDLE_DIR}/bin/python{}", layout.version);
    let stamp = format!("{}\n{}\n", real.display(), fsutil::sha256_file(&real)?);
    if dry_run {
        report
            .notes
            .push(format!("would bundle {} into {BUNDLE_DIR}", real.display()));
        return Ok(());
    }
    let current = fs::read_to_string(dest.join(STAMP)).unwrap_or_default();
    if current == stamp && root.join(&exe_rel).is_file() {
        report
            .notes
            .push(format!("{BUNDLE_DIR}: already holds {}", real.display()));
        map.interpreter.bundled = Some(exe_rel);
        return Ok(());
    }

    let stage = fsutil::temp_sibling(&dest);
    let _ = fs::remove_dir_all(&stage);
    let built = build_stage(&stage, &real, &layout);
    if let Err(e) = built {
        let _ = fs::remove_dir_all(&stage);
        return Err(e);
    }
    swap_into_place(&stage, &dest)?;

    let exe = root.join(&exe_rel);
    let mut users = vec![exe.clone()];
    users.extend(elf_files(&dest.join("lib"), &[])?);
    let config = bbrun_ldcheck::machine::this_machine().map_err(|e| anyhow::anyhow!("{e}"))?;
    let v = crate::vendor::vendor_into(
        &config,
        root,
        &users,
        &dest.join("lib"),
        crate::vendor::For::Interpreter,
        false,
    )?;
    crate::vendor::describe(root, &v, false, report);
    fsutil::atomic_write(&dest.join(STAMP), stamp.as_bytes(), 0o644)?;
    report.notes.push(format!(
        "bundled {} as {exe_rel} ({} libraries vendored beside it)",
        real.display(),
        v.copied.len()
    ));
    map.interpreter.bundled = Some(exe_rel);
    Ok(())
}

/// The real binary behind the build interpreter: a venv's `python` is a
/// link or copy that needs its venv, so follow it to the base executable.
fn real_interpreter(map: &RelocationMap) -> Result<PathBuf> {
    let want = &map.interpreter;
    let mut looked = Vec::new();
    for cand in std::iter::once(&want.path).chain(want.candidates.iter()) {
        let path = Path::new(cand);
        if !path.exists() {
            looked.push(format!("{cand} (missing)"));
            continue;
        }
        let probe = interp::probe_uncached(path)?;
        let base = match probe.base_executable.as_str() {
            "" => path.to_path_buf(),
            b => PathBuf::from(b),
        };
        let real = fs::canonicalize(&base)
            .with_context(|| format!("{}: cannot resolve", base.display()))?;
        let probe = interp::probe_uncached(&real)?;
        if let Some(why) = interp::incompatibility(want, &probe) {
            looked.push(format!("{} ({why})", real.display()));
            continue;
        }
        return Ok(real);
    }
    bail!(
        "--bundle-python: the build interpreter is not on this machine: {}; bundle on the build machine",
        looked.join(", ")
    )
}

fn probe_layout(python: &Path) -> Result<Layout> {
    let out = Command::new(python)
        .args(["-S", "-E", "-s", "-c", LAYOUT_CODE])
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .output()
        .with_context(|| format!("{}: cannot run", python.display()))?;
    if !out.status.success() {
        bail!("{}: cannot ask for its standard library", python.display());
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{}: unexpected answer about its layout", python.display()))
}

/// Fill `stage` with the binary and the standard library.
fn build_stage(stage: &Path, real: &Path, layout: &Layout) -> Result<()> {
    let name = format!("python{}", layout.version);
    let bin = stage.join("bin");
    fs::create_dir_all(&bin).with_context(|| format!("{}: cannot create", bin.display()))?;
    copy_file(real, &bin.join(&name))?;
    for alias in ["python3", "python"] {
        std::os::unix::fs::symlink(&name, bin.join(alias))
            .with_context(|| format!("{}: cannot create symlink", bin.join(alias).display()))?;
    }
    let lib = stage.join("lib").join(&name);
    copy_filtered(&layout.stdlib, &lib, true)?;
    fs::create_dir_all(lib.join("site-packages"))?;
    let dynload = Path::new(&layout.dynload);
    if !layout.dynload.is_empty() && !dynload.starts_with(&layout.stdlib) {
        copy_filtered(dynload, &lib.join("lib-dynload"), false)?;
    }
    Ok(())
}

/// Replace `dest` with `stage`; the old bundle is removed only once the
/// new one is in place.
fn swap_into_place(stage: &Path, dest: &Path) -> Result<()> {
    let old = dest.with_extension("old");
    let _ = fs::remove_dir_all(&old);
    if dest.exists() {
        fs::rename(dest, &old).with_context(|| format!("{}: cannot move aside", dest.display()))?;
    }
    fs::rename(stage, dest)
        .with_context(|| format!("{}: cannot move into place", dest.display()))?;
    let _ = fs::remove_dir_all(&old);
    if let Some(parent) = dest.parent() {
        fsutil::sync_dir(parent);
    }
    Ok(())
}

fn skipped(rel: &Path, is_dir: bool, top_level_rules: bool) -> bool {
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if is_dir {
        return SKIP_DIRS.contains(&name.as_str())
            || top_level_rules
                && rel.components().count() == 1
                && SKIP_TOP.contains(&name.as_str());
    }
    name.ends_with(".a")
        || name.ends_with(".so") && SKIP_MODULES.iter().any(|p| name.starts_with(p))
}

/// Copy a directory tree, leaving out [`skipped`] entries; keeps symlinks,
/// modes and mtimes (bytecode caches are validated against source mtimes).
fn copy_filtered(src: &Path, dest: &Path, top_level_rules: bool) -> Result<()> {
    let walker = walkdir::WalkDir::new(src)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| {
            let rel = e.path().strip_prefix(src).unwrap_or(e.path());
            rel.as_os_str().is_empty() || !skipped(rel, e.file_type().is_dir(), top_level_rules)
        });
    let mut dirs = Vec::new();
    for entry in walker {
        let entry = entry.with_context(|| format!("{}: cannot walk", src.display()))?;
        let rel = entry.path().strip_prefix(src).unwrap_or(Path::new(""));
        let target = dest.join(rel);
        let ft = entry.file_type();
        if ft.is_symlink() {
            let link = fs::read_link(entry.path())?;
            std::os::unix::fs::symlink(&link, &target)
                .with_context(|| format!("{}: cannot create symlink", target.display()))?;
        } else if ft.is_dir() {
            fs::create_dir_all(&target)
                .with_context(|| format!("{}: cannot create", target.display()))?;
            dirs.push((entry.path().to_path_buf(), target));
        } else if ft.is_file() {
            copy_file(entry.path(), &target)?;
        }
    }
    // Creating children changed the directories' mtimes; restore them.
    for (from, to) in dirs.iter().rev() {
        bbrun_util::fsutil::copy_times(to, &fs::metadata(from)?)?;
    }
    Ok(())
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .with_context(|| format!("{}: cannot copy to {}", from.display(), to.display()))?;
    let meta = fs::metadata(from)?;
    fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    bbrun_util::fsutil::copy_times(to, &meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdlib_filter() {
        assert!(skipped(Path::new("test"), true, true));
        assert!(skipped(Path::new("ctypes/test"), true, true));
        assert!(skipped(Path::new("tkinter"), true, true));
        assert!(!skipped(Path::new("json"), true, true));
        assert!(!skipped(Path::new("email/mime"), true, true));
        assert!(skipped(
            Path::new("config-3.11-x86_64-linux-gnu/libpython3.11.a"),
            false,
            true
        ));
        assert!(skipped(
            Path::new("lib-dynload/_tkinter.cpython-311-x86_64-linux-gnu.so"),
            false,
            true
        ));
        assert!(!skipped(
            Path::new("lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so"),
            false,
            true
        ));
    }
}
