//! Collecting paths outside the root (a venv's site-packages, develop eggs
//! elsewhere, a shared eggs cache) into the tree, so that after freeze the
//! tree needs nothing from outside but a compatible Python.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use bbrun_map::map::{CollectedPrefix, STATE_DIR};

/// Where collected copies live, relative to the root.
pub const EXTERNAL_DIR: &str = ".bbrun/external";

/// Drop paths nested inside another listed path: the outer copy holds them.
pub fn outermost(mut paths: Vec<String>) -> Vec<String> {
    paths.sort();
    paths.dedup();
    let mut out: Vec<String> = Vec::new();
    for p in paths {
        let nested = out
            .iter()
            .any(|o| p.starts_with(o.as_str()) && p.as_bytes().get(o.len()) == Some(&b'/'));
        if !nested {
            out.push(p);
        }
    }
    out
}

/// Plan where each external path goes: `.bbrun/external/NN-name`, numbered
/// after the prefixes already collected.
pub fn plan(external: &[String], existing: &[CollectedPrefix]) -> Vec<CollectedPrefix> {
    let mut planned = Vec::new();
    let mut next = existing.len() + 1;
    for original in external {
        if existing.iter().any(|p| &p.original == original) {
            continue;
        }
        let name = Path::new(original)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "root".into());
        planned.push(CollectedPrefix {
            original: original.clone(),
            in_tree: format!("{EXTERNAL_DIR}/{next:02}-{name}"),
        });
        next += 1;
    }
    planned
}

/// Copy `src` (file or directory) to `dest`, keeping symlinks as symlinks,
/// modes and modification times (a `.pyc` is checked against its source's
/// mtime). The copy is made beside `dest` and renamed into place, so an
/// interrupted freeze leaves no half copy.
pub fn copy_into_tree(src: &Path, dest: &Path) -> Result<u64> {
    let parent = dest.parent().context("destination has no parent")?;
    fs::create_dir_all(parent).with_context(|| format!("{}: cannot create", parent.display()))?;
    let staging = bbrun_util::fsutil::temp_sibling(dest);
    if staging.exists() {
        fs::remove_dir_all(&staging).ok();
    }
    let result = copy_tree(src, &staging);
    match result {
        Ok(n) => {
            // Only planned, unrecorded destinations get here: one already
            // present is a copy a killed freeze moved in before it could
            // write the map. It is bbrun's own (in .bbrun/external).
            if fs::symlink_metadata(dest).is_ok() {
                let _ = fs::remove_dir_all(dest).or_else(|_| fs::remove_file(dest));
            }
            fs::rename(&staging, dest)
                .with_context(|| format!("{}: cannot move copy into place", dest.display()))?;
            bbrun_util::fsutil::sync_dir(parent);
            Ok(n)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            let _ = fs::remove_file(&staging);
            Err(e)
        }
    }
}

/// Copy a tree; returns the bytes copied.
pub fn copy_tree(src: &Path, dest: &Path) -> Result<u64> {
    let mut bytes = 0;
    for entry in walkdir::WalkDir::new(src).follow_links(false) {
        let entry = entry.with_context(|| format!("{}: cannot walk", src.display()))?;
        let rel = entry.path().strip_prefix(src).unwrap_or(Path::new(""));
        let target: PathBuf = if rel.as_os_str().is_empty() {
            dest.to_path_buf()
        } else {
            dest.join(rel)
        };
        let meta = entry
            .path()
            .symlink_metadata()
            .with_context(|| format!("{}: cannot stat", entry.path().display()))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let link = fs::read_link(entry.path())?;
            std::os::unix::fs::symlink(&link, &target)
                .with_context(|| format!("{}: cannot create symlink", target.display()))?;
            continue;
        }
        if ft.is_dir() {
            fs::create_dir_all(&target)
                .with_context(|| format!("{}: cannot create", target.display()))?;
        } else if ft.is_file() {
            bytes += fs::copy(entry.path(), &target).with_context(|| {
                format!(
                    "{}: cannot copy to {}",
                    entry.path().display(),
                    target.display()
                )
            })?;
        } else {
            // Sockets, fifos, devices have no place in a distribution.
            continue;
        }
        fs::set_permissions(&target, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        bbrun_util::fsutil::copy_times(&target, &meta)?;
    }
    // Directory mtimes were disturbed by creating their children; fix them
    // bottom-up.
    for entry in walkdir::WalkDir::new(src).contents_first(true) {
        let entry = entry?;
        if entry.file_type().is_dir() {
            let rel = entry.path().strip_prefix(src).unwrap_or(Path::new(""));
            let meta = entry.metadata()?;
            bbrun_util::fsutil::copy_times(&dest.join(rel), &meta)?;
        }
    }
    Ok(bytes)
}

/// The state dir must never be collected into itself.
pub fn is_state_path(rel: &str) -> bool {
    rel == STATE_DIR || rel.starts_with(&format!("{STATE_DIR}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_paths_collapse_to_outermost() {
        let got = outermost(vec![
            "/v/site".into(),
            "/v/site/pkg".into(),
            "/v/sitex".into(),
            "/v/site".into(),
        ]);
        assert_eq!(got, vec!["/v/site", "/v/sitex"]);
    }

    #[test]
    fn plan_numbers_after_existing() {
        let existing = vec![CollectedPrefix {
            original: "/a".into(),
            in_tree: ".bbrun/external/01-a".into(),
        }];
        let got = plan(&["/a".into(), "/x/site-packages".into()], &existing);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].in_tree, ".bbrun/external/02-site-packages");
    }

    #[test]
    fn copy_keeps_symlinks_modes_and_mtimes() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("pkg")).unwrap();
        fs::write(src.join("pkg/m.py"), "x = 1\n").unwrap();
        fs::set_permissions(src.join("pkg/m.py"), fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink("pkg/m.py", src.join("link")).unwrap();
        let dest = d.path().join("out/copy");
        copy_into_tree(&src, &dest).unwrap();
        assert_eq!(
            fs::read_link(dest.join("link")).unwrap(),
            PathBuf::from("pkg/m.py")
        );
        let (a, b) = (
            fs::metadata(src.join("pkg/m.py")).unwrap(),
            fs::metadata(dest.join("pkg/m.py")).unwrap(),
        );
        assert_eq!(b.mode() & 0o777, 0o640);
        assert_eq!((a.mtime(), a.mtime_nsec()), (b.mtime(), b.mtime_nsec()));
    }
}
