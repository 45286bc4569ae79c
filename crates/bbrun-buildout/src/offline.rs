//! The settings that make a buildout re-run offline and compiler-less,
//! so the operator never adds `-o`, `newest = false` or index options.
//!
//! Measured with zc.buildout 6.0.1 (docs/install.md, "Target-side
//! workflow"):
//! - `buildout:newest=false`: requirements the eggs in the tree satisfy are
//!   never looked up in an index. Not recorded in any part's options, so
//!   no part differs because of it.
//! - `buildout:allow-hosts=bbrun-offline.invalid`: any http(s) link is
//!   refused before a connection is tried (file: links are not), so a
//!   missing requirement fails at once with "Couldn't find a distribution"
//!   instead of waiting for a network timeout. Not recorded in parts either.
//!   `index` and `find-links` are recorded by zc.recipe.egg parts:
//!   overriding them would make every such part differ and reinstall.
//! - `-o` / `buildout:offline=true` is not used: zc.buildout 6.0.1 then
//!   fails to find recipe eggs in `eggs/v5`.
//! - pip (develop eggs are re-registered with `pip install -e` on every
//!   run): `PIP_NO_INDEX=1`, and `PIP_NO_BUILD_ISOLATION=0`, which turns
//!   build isolation *off* (pip reads the `no-` option's value inverted):
//!   the setuptools already in the tree builds, none is fetched.
//! - `BBRUN_HIDE_SITE=1` when the build ran in a virtualenv that is gone:
//!   the interpreter's own site-packages are taken off `sys.path`, as the
//!   venv had them off (else recipes resolve to the system's packages, their
//!   signature differs and the part is reinstalled).
//! - `BBRUN_KEEP_BUILT=1`: the shim reuses a develop egg's compiled
//!   extension that is newer than its sources instead of compiling it again
//!   (`bbrun_build.keep_built_extensions` in the shim).

use std::ffi::OsString;
use std::path::Path;

use bbrun_map::map::RelocationMap;

/// The unmatchable host for `allow-hosts`.
pub const NO_HOST: &str = "bbrun-offline.invalid";

/// `section:option=value` assignments, given before the user's arguments
/// (the user's own assignments, given later, win).
pub fn assignments() -> Vec<OsString> {
    vec![
        "buildout:newest=false".into(),
        format!("buildout:allow-hosts={NO_HOST}").into(),
    ]
}

/// Environment for buildout and every process it starts. `hide_site`:
/// see [`hide_site_packages`].
pub fn env(hide_site: bool) -> Vec<(OsString, OsString)> {
    let mut out: Vec<(OsString, OsString)> = [
        ("PIP_NO_INDEX", "1"),
        ("PIP_NO_BUILD_ISOLATION", "0"),
        ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
        ("BBRUN_KEEP_BUILT", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect();
    if hide_site {
        out.push(("BBRUN_HIDE_SITE".into(), "1".into()));
    }
    out
}

/// The tree was built with a virtualenv's python (freeze recorded its
/// base interpreter as a candidate) and runs now on another one, typically
/// that base: its system site-packages were not visible to the build's
/// buildout and must not be to this one (`bbrun_build.hide_site_packages` in the shim).
pub fn hide_site_packages(map: &RelocationMap, python: &Path) -> bool {
    !map.interpreter.candidates.is_empty() && Path::new(&map.interpreter.path) != python
}
