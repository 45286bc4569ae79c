//! A virtualenv built inside the tree (Plone 6's `ROOT/venv`) links its
//! interpreter to the build host's base Python (`venv/bin/python3 ->
//! /usr/bin/python3.11`). Such a link leads out of the tree, so install
//! does not unpack it as it is (it would name whatever lives at that path
//! on this machine, or nothing): freeze recorded it, and install re-points
//! it at a compatible interpreter found here, and the venv's `pyvenv.cfg`
//! `home` with it. A link out of the tree that freeze did not record is
//! refused, as before (`--allow-external-symlinks` keeps all as they are).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use bbrun_map::map::RelocationMap;
use bbrun_run::interp::{self, ProbeCache};

/// Create the skipped `(path, target)` links under `staging`; returns them
/// as `(path, new target)` for the report.
pub fn repoint(
    archive: &Path,
    staging: &Path,
    skipped: &[(String, String)],
    map: &RelocationMap,
) -> Result<Vec<(String, String)>> {
    if skipped.is_empty() {
        return Ok(vec![]);
    }
    if let Some((path, target)) = skipped
        .iter()
        .find(|(p, _)| !map.interpreter.links.contains(p))
    {
        bail!(
            "{}: {path}: symlink to {target:?} leads out of the tree; refused (allow links out of the tree with --allow-external-symlinks)",
            archive.display()
        );
    }
    let python = target_interpreter(skipped, map)?;
    let mut out = Vec::new();
    let mut venvs: Vec<PathBuf> = Vec::new();
    for (path, target) in skipped {
        let new = if target.starts_with('/') {
            python.clone()
        } else {
            PathBuf::from(target)
        };
        let link = staging.join(path);
        std::os::unix::fs::symlink(&new, &link)
            .with_context(|| format!("{}: cannot create symlink", link.display()))?;
        out.push((path.clone(), new.display().to_string()));
        if let Some(venv) = link.parent().and_then(Path::parent) {
            if !venvs.iter().any(|v| v == venv) {
                venvs.push(venv.to_path_buf());
            }
        }
    }
    let home = python.parent().unwrap_or(Path::new("/"));
    for venv in venvs {
        set_home(&venv.join("pyvenv.cfg"), home)?;
    }
    Ok(out)
}

/// The interpreter the links get: the build host's own when this machine
/// has a compatible one at the same path, else the map's candidates, else
/// `pythonX.Y`/`python3` on `PATH`.
fn target_interpreter(skipped: &[(String, String)], map: &RelocationMap) -> Result<PathBuf> {
    let want = &map.interpreter;
    let mut cands: Vec<PathBuf> = skipped
        .iter()
        .filter(|(_, t)| t.starts_with('/'))
        .map(|(_, t)| PathBuf::from(t))
        .collect();
    cands.extend(want.candidates.iter().map(PathBuf::from));
    if let Some(path) = std::env::var_os("PATH") {
        for name in [format!("python{}", want.major_minor), "python3".into()] {
            cands.extend(std::env::split_paths(&path).map(|d| d.join(&name)));
        }
    }
    let mut cache = ProbeCache::load();
    let found = cands.into_iter().find(|c| {
        cache
            .probe_binary(c)
            .is_some_and(|p| p.is_ok_and(|p| interp::incompatibility(want, &p).is_none()))
    });
    cache.save();
    found.ok_or_else(|| {
        anyhow::anyhow!(
            "no compatible Python found for the tree's virtualenv: need {} {} (ABI {}); install one and run `bbrun install` again",
            want.implementation,
            want.major_minor,
            want.soabi
        )
    })
}

/// Point `pyvenv.cfg`'s `home` at `home` (where Python looks for the
/// standard library of a venv's interpreter).
fn set_home(cfg: &Path, home: &Path) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(cfg) else {
        return Ok(());
    };
    let mut changed = false;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            if key == "home" {
                let new = format!("home = {}", home.display());
                changed |= new != l;
                new
            } else {
                l.to_string()
            }
        })
        .collect();
    if changed {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(cfg)
                .with_context(|| format!("{}: cannot stat", cfg.display()))?
                .permissions(),
        );
        bbrun_util::fsutil::atomic_write(cfg, (lines.join("\n") + "\n").as_bytes(), mode & 0o7777)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_is_set_and_other_lines_kept() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("pyvenv.cfg");
        std::fs::write(
            &cfg,
            "home = /build/bin\ninclude-system-site-packages = false\nversion = 3.11.7\n",
        )
        .unwrap();
        set_home(&cfg, Path::new("/usr/bin")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&cfg).unwrap(),
            "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.7\n"
        );
    }
}
