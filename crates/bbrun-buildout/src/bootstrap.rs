//! A `bin/buildout` for a tree that has none (deleted, or never shipped):
//! what zc.buildout's `bootstrap` writes, found in the tree and written for
//! the interpreter bbrun picks here. (`buildout bootstrap` itself would
//! first delete `develop-eggs/`, eggs built there by recipes included.)

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use bbrun_map::map::STATE_DIR;
use bbrun_run::interp::{self, ProbeCache};
use bbrun_run::shim::python_str_literal;
use bbrun_run::tree::FrozenTree;
use bbrun_util::fsutil;

/// Distributions zc.buildout 6 imports at start, besides itself.
const DEPENDENCIES: &[&str] = &[
    "setuptools-",
    "pip-",
    "packaging-",
    "platformdirs-",
    "wheel-",
];

/// Write `script` running zc.buildout from the tree.
pub fn write(root: &Path, script: &Path) -> Result<()> {
    let tree = FrozenTree::open(root)?;
    let paths = buildout_paths(root)?;
    let mut cache = ProbeCache::load();
    let python = interp::find_compatible(root, &tree.map.interpreter, &mut cache)?;
    cache.save();
    let mut text = format!("#!{}\n\nimport sys\nsys.path[0:0] = [\n", python.display());
    for p in &paths {
        text.push_str(&format!(
            "  {},\n",
            python_str_literal(&p.to_string_lossy())
        ));
    }
    text.push_str(
        "  ]\n\nimport zc.buildout.buildout\n\nif __name__ == '__main__':\n    sys.exit(zc.buildout.buildout.main())\n",
    );
    if let Some(dir) = script.parent() {
        fs::create_dir_all(dir)?;
    }
    fsutil::atomic_write(script, text.as_bytes(), 0o755)?;
    println!("bbrun: wrote {} for {}", script.display(), python.display());
    Ok(())
}

/// Where zc.buildout and what it imports live in the tree: a collected
/// site-packages (`.bbrun/external/NN-site-packages`, a venv's
/// `lib/pythonX.Y/site-packages`) holding all of them, or one egg each in
/// `eggs/` (`eggs/vN/`).
fn buildout_paths(root: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for parent in [root.join(STATE_DIR).join("external"), root.join("lib")] {
        if let Ok(entries) = fs::read_dir(&parent) {
            for e in entries.flatten() {
                dirs.push(e.path());
                dirs.push(e.path().join("site-packages"));
            }
        }
    }
    dirs.sort();
    if let Some(d) = dirs
        .iter()
        .find(|d| d.join("zc/buildout/buildout.py").is_file())
    {
        return Ok(vec![d.clone()]);
    }
    let mut egg_dirs = vec![root.join("eggs")];
    if let Ok(entries) = fs::read_dir(root.join("eggs")) {
        egg_dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    let mut eggs: Vec<PathBuf> = egg_dirs
        .iter()
        .filter_map(|d| fs::read_dir(d).ok())
        .flat_map(|entries| entries.flatten().map(|e| e.path()))
        .filter(|p| p.join("EGG-INFO").is_dir())
        .collect();
    eggs.sort();
    let newest = |prefix: &str| {
        eggs.iter()
            .rev()
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .cloned()
    };
    let Some(buildout) = newest("zc.buildout-") else {
        bail!(
            "{}: no bin/buildout and no zc.buildout in the tree (eggs/, .bbrun/external/); ship the tree with bin/buildout",
            root.display()
        );
    };
    let mut out = vec![buildout];
    out.extend(DEPENDENCIES.iter().filter_map(|d| newest(d)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_collected_site_packages_or_eggs() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for egg in [
            "zc.buildout-5.0-py3.11.egg",
            "zc.buildout-6.0.1-py3.11.egg",
            "setuptools-80-py3.11.egg",
        ] {
            fs::create_dir_all(root.join("eggs/v5").join(egg).join("EGG-INFO")).unwrap();
        }
        let got = buildout_paths(root).unwrap();
        assert_eq!(
            got,
            vec![
                root.join("eggs/v5/zc.buildout-6.0.1-py3.11.egg"),
                root.join("eggs/v5/setuptools-80-py3.11.egg")
            ]
        );
        let sp = root.join(".bbrun/external/01-site-packages");
        fs::create_dir_all(sp.join("zc/buildout")).unwrap();
        fs::write(sp.join("zc/buildout/buildout.py"), "").unwrap();
        assert_eq!(buildout_paths(root).unwrap(), vec![sp]);
    }
}
