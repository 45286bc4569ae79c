//! Running a fallback interpreter as the build environment saw it.
//!
//! When the build venv is gone and the launcher falls back to a base
//! interpreter (`/usr/bin/python3.11`), that interpreter would put its own
//! site-packages and user site on `sys.path` and run every `.pth` there:
//! packages hidden in place would import, and a slow `.pth` would run at
//! every start. So the launcher runs it through a *view*: a directory
//! holding only `pyvenv.cfg` (`home` = the base interpreter's directory,
//! `include-system-site-packages = false`) and `bin/pythonX.Y`, a symlink
//! to the base interpreter. Python then takes the view as `sys.prefix`,
//! adds no site-packages and no user site, and children started with
//! `sys.executable` get the same view. The build environment's own site
//! dirs (recorded by freeze) are added back by the shim, `.pth` included,
//! so `sys.path` equals the in-place one modulo the root.
//!
//! The view names nothing of the tree, so one per base interpreter serves
//! every tree; it lives in the per-user cache (`view-HASH`, a directory
//! owned by the user, mode 0700, so nobody else can swap the symlink),
//! never in the tree, where `pack` would ship a link to this machine's
//! interpreter. Reusing it costs one `readlink` and one `lstat`.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use bbrun_map::map::Interpreter;

/// The view's interpreter for `python` (a base interpreter compatible with
/// `want`), created on first use; `None` when no safe place can hold it
/// (the caller then runs `python` itself).
pub fn interpreter(python: &Path, want: &Interpreter) -> Option<PathBuf> {
    let name = format!("python{}", want.major_minor);
    let base = crate::interp::ProbeCache::default_location()?;
    let dir = base.join(format!("view-{:016x}", fnv(python.as_os_str())));
    let exe = dir.join("bin").join(&name);
    // The hot path: the view exists and points at this interpreter.
    if std::fs::read_link(&exe).ok().as_deref() == Some(python) && is_safe(&dir) {
        return Some(exe);
    }
    create(&dir, python, want, &name).ok()?;
    is_safe(&dir).then_some(exe)
}

/// The view must be the caller's own and closed to others.
fn is_safe(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir)
        .map(|m| m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o077 == 0)
        .unwrap_or(false)
}

fn create(dir: &Path, python: &Path, want: &Interpreter, name: &str) -> Result<()> {
    let bin = dir.join("bin");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&bin)
        .with_context(|| format!("{}: cannot create", bin.display()))?;
    let real = std::fs::canonicalize(python)
        .with_context(|| format!("{}: cannot resolve", python.display()))?;
    let home = real.parent().unwrap_or(Path::new("/"));
    let cfg = format!(
        "home = {}\ninclude-system-site-packages = false\nversion = {}\n",
        home.display(),
        want.version
    );
    // pyvenv.cfg first, then the link that marks the view complete.
    bbrun_util::fsutil::atomic_write(&dir.join("pyvenv.cfg"), cfg.as_bytes(), 0o644)?;
    let exe = bin.join(name);
    let tmp = bbrun_util::fsutil::temp_sibling(&exe);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(python, &tmp)
        .with_context(|| format!("{}: cannot create", tmp.display()))?;
    std::fs::rename(&tmp, &exe).with_context(|| format!("{}: cannot create", exe.display()))?;
    Ok(())
}

/// Whether `python` is an interpreter of a virtualenv (its own site
/// configuration; never wrapped).
pub fn is_venv_python(python: &Path) -> bool {
    python
        .parent()
        .and_then(Path::parent)
        .is_some_and(|d| d.join("pyvenv.cfg").is_file())
}

fn fnv(s: &std::ffi::OsStr) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
