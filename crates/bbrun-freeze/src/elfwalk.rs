//! Finding the ELF files of a tree, shared by `bbrun check`,
//! `--vendor-libs` and `--bundle-python`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Every regular file under `dir` (symlinks not followed, so a linked copy
/// is checked once, at its real place) whose first bytes are the ELF magic,
/// sorted. `skip` prunes directories (root-relative prefixes).
pub fn elf_files(dir: &Path, skip: &[&Path]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| !skip.iter().any(|s| e.path() == dir.join(s)));
    for entry in walker {
        let entry = entry.with_context(|| format!("{}: cannot walk", dir.display()))?;
        if entry.file_type().is_file() && bbrun_ldcheck::fs::has_elf_magic(entry.path()) {
            out.push(entry.into_path());
        }
    }
    out.sort();
    Ok(out)
}

/// `path` relative to `root` for messages, or as is when outside.
pub fn display_rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| path.to_string_lossy().into_owned())
}

/// `$ORIGIN`-relative search entry from the directory of `user` to `dir`
/// (both absolute, lexical): `$ORIGIN/../../.bbrun/lib`.
pub fn origin_relative(user: &Path, dir: &Path) -> String {
    let from = bbrun_util::fsutil::normalize(user.parent().unwrap_or(Path::new("/")));
    let to = bbrun_util::fsutil::normalize(dir);
    let common = from
        .components()
        .zip(to.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut parts: Vec<String> = vec!["$ORIGIN".into()];
    parts.extend(std::iter::repeat_n(
        "..".to_string(),
        from.components().count() - common,
    ));
    parts.extend(
        to.components()
            .skip(common)
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_relative_paths() {
        assert_eq!(
            origin_relative(
                Path::new("/t/eggs/x.egg/pkg/_m.so"),
                Path::new("/t/.bbrun/lib")
            ),
            "$ORIGIN/../../../.bbrun/lib"
        );
        assert_eq!(
            origin_relative(Path::new("/t/lib/a.so"), Path::new("/t/lib")),
            "$ORIGIN"
        );
        assert_eq!(
            origin_relative(Path::new("/t/p/bin/python"), Path::new("/t/p/lib")),
            "$ORIGIN/../lib"
        );
    }
}
