//! The inventory scan: every file in the tree that still names a build-time
//! path, classified, with what bbrun does about it.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result};

use bbrun_map::map::{Action, FileKind, InventoryEntry, STATE_DIR};
use bbrun_util::fsutil;

/// Files larger than this are not searched: they are data, not the small
/// text and binaries that carry build paths, and reading them would make
/// freeze slow on trees with large blobs.
const MAX_SCAN_BYTES: u64 = 256 * 1024 * 1024;

/// Walk `root` and list the files that contain any of `needles`.
/// `scripts` are root-relative paths of the scripts the launcher runs.
pub fn scan(
    root: &Path,
    needles: &[String],
    scripts: &HashSet<String>,
) -> Result<Vec<InventoryEntry>> {
    scan_skipping(root, needles, scripts, &|_| false)
}

/// [`scan`], not entering the paths `skip` says (application state: its
/// databases can be large and are never rewritten).
pub fn scan_skipping(
    root: &Path,
    needles: &[String],
    scripts: &HashSet<String>,
    skip: &dyn Fn(&str) -> bool,
) -> Result<Vec<InventoryEntry>> {
    let needles: Vec<&[u8]> = needles
        .iter()
        .map(|n| n.as_bytes())
        .filter(|n| !n.is_empty())
        .collect();
    let mut out = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| {
            // The state dir is bbrun's own, except the collected copies, which
            // are the tree's now.
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap_or(e.path())
                .to_string_lossy()
                .into_owned();
            !(rel == format!("{STATE_DIR}/shim")
                || rel.ends_with(".toml") && rel.starts_with(STATE_DIR)
                || !rel.is_empty() && skip(&rel))
        });
    for entry in walker {
        let entry = entry.with_context(|| format!("{}: cannot walk", root.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let meta = entry
            .metadata()
            .with_context(|| format!("{}: cannot stat", entry.path().display()))?;
        if meta.len() == 0 || meta.len() > MAX_SCAN_BYTES {
            continue;
        }
        let bytes = std::fs::read(entry.path())
            .with_context(|| format!("{}: cannot read", entry.path().display()))?;
        if !needles.iter().any(|n| fsutil::find(&bytes, n).is_some()) {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap_or(entry.path())
            .to_string_lossy()
            .into_owned();
        let kind = classify(&rel, &bytes, scripts);
        out.push(InventoryEntry {
            action: action_for(kind, &rel, &bytes),
            path: rel,
            kind,
        });
    }
    out.sort();
    Ok(out)
}

pub fn classify(rel: &str, bytes: &[u8], scripts: &HashSet<String>) -> FileKind {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if scripts.contains(rel) {
        FileKind::Script
    } else if bytes.starts_with(b"\x7fELF") {
        FileKind::Elf
    } else if name == ".installed.cfg" {
        FileKind::InstalledCfg
    } else if name.ends_with(".egg-link") {
        FileKind::EggLink
    } else if name.starts_with("__editable__") && name.ends_with("_finder.py") {
        FileKind::EditableFinder
    } else if name.ends_with(".pth") {
        FileKind::Pth
    } else if [
        ".conf", ".cfg", ".ini", ".zcml", ".xml", ".toml", ".json", ".yaml", ".yml",
    ]
    .iter()
    .any(|ext| name.ends_with(ext))
    {
        FileKind::Config
    } else {
        FileKind::Other
    }
}

/// What bbrun does about a file of this kind.
pub fn action_for(kind: FileKind, rel: &str, bytes: &[u8]) -> Action {
    match kind {
        // Scripts stay byte-for-byte; the shim maps their paths.
        FileKind::Script => Action::MappedAtRunTime,
        // Native code: freeze's ELF pass decides; until then, reported.
        FileKind::Elf => Action::Reported,
        FileKind::Pth
        | FileKind::EggLink
        | FileKind::EditableFinder
        | FileKind::InstalledCfg
        | FileKind::Config => Action::RewriteOnRelocate,
        // CPython rewrites a cached module's co_filename to the source it
        // was loaded for (`_imp._fix_co_filename`), so stale paths inside
        // .pyc files never surface.
        FileKind::Other if rel.ends_with(".pyc") => Action::MappedAtRunTime,
        FileKind::Other if is_text(bytes) => Action::RewriteOnRelocate,
        FileKind::Other => Action::Reported,
    }
}

/// Text, as far as prefix rewriting is concerned: no NUL bytes. Rewriting
/// a binary's length-sensitive strings would corrupt it.
pub fn is_text(bytes: &[u8]) -> bool {
    !bytes.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_buildout_files() {
        let scripts: HashSet<String> = ["bin/app".to_string()].into();
        assert_eq!(classify("bin/app", b"#!", &scripts), FileKind::Script);
        assert_eq!(
            classify(".installed.cfg", b"", &scripts),
            FileKind::InstalledCfg
        );
        assert_eq!(
            classify("develop-eggs/x.egg-link", b"", &scripts),
            FileKind::EggLink
        );
        assert_eq!(
            classify("develop-eggs/__editable___x_1_0_finder.py", b"", &scripts),
            FileKind::EditableFinder
        );
        assert_eq!(
            classify("parts/i/etc/zope.conf", b"", &scripts),
            FileKind::Config
        );
        assert_eq!(
            classify("eggs/x/m.so", b"\x7fELF..", &scripts),
            FileKind::Elf
        );
    }

    #[test]
    fn finds_only_files_naming_a_needle() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/app.conf"), "path /build/x/var\n").unwrap();
        std::fs::write(d.path().join("etc/other.conf"), "nothing\n").unwrap();
        let got = scan(d.path(), &["/build/x".into()], &HashSet::new()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "etc/app.conf");
        assert_eq!(got[0].action, Action::RewriteOnRelocate);
    }
}
