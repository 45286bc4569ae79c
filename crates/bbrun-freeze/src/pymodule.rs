//! Which Python module an extension file is: its dotted name relative to
//! the `sys.path` entry that holds it, e.g.
//! `eggs/v5/BTrees-6.5-py3.11-linux-x86_64.egg/BTrees/_OOBTree.cpython-311-x86_64-linux-gnu.so`
//! -> `BTrees._OOBTree`.

use std::path::{Path, PathBuf};

use bbrun_map::map::RelocationMap;

/// Where the tree's `sys.path` entries are, as absolute paths in the tree's
/// current location.
#[derive(Debug, Default)]
pub struct SysPathRoots {
    roots: Vec<PathBuf>,
}

impl SysPathRoots {
    /// From the scripts' `sys.path` blocks (mapped from the build root to
    /// `root`) and the prefixes freeze collected. Directories recognised by
    /// layout (`*.egg`, `site-packages`, `lib-dynload`) need no listing.
    pub fn for_tree(root: &Path, map: &RelocationMap) -> SysPathRoots {
        let pairs = bbrun_map::relocate::rewrite_pairs(map, root);
        let mut roots: Vec<PathBuf> = map.prefixes.iter().map(|p| root.join(&p.in_tree)).collect();
        if let Ok(found) = crate::freeze::scripts::find(root, Some(map)) {
            for entry in found.iter().flat_map(|f| f.sys_path.iter()) {
                roots.push(crate::freeze::index::current_dir(entry, &pairs));
            }
        }
        roots.sort();
        roots.dedup();
        SysPathRoots { roots }
    }

    /// The dotted module name of the extension at `file` (absolute), or
    /// `None` for a file Python would not import as a module (a plain
    /// shared library, or one outside any `sys.path` entry).
    pub fn module_name(&self, file: &Path) -> Option<String> {
        let base = self.holding_entry(file)?;
        let rel = file.strip_prefix(&base).ok()?;
        dotted(rel)
    }

    /// The deepest `sys.path` entry holding `file`: a listed one or one
    /// recognised by layout.
    fn holding_entry(&self, file: &Path) -> Option<PathBuf> {
        file.ancestors()
            .skip(1)
            .find(|dir| {
                let by_layout = dir.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.ends_with(".egg")
                        || n == "site-packages"
                        || n == "dist-packages"
                        || n == "lib-dynload"
                });
                by_layout || self.roots.iter().any(|r| r == dir)
            })
            .map(Path::to_path_buf)
    }
}

/// `BTrees/_OOBTree.cpython-311-x86_64-linux-gnu.so` -> `BTrees._OOBTree`.
/// Extension file names are `NAME.so`, `NAME.abi3.so` or `NAME.TAG.so`
/// (Python's `EXTENSION_SUFFIXES`); every package part must be an
/// identifier.
pub fn dotted(rel: &Path) -> Option<String> {
    let file = rel.file_name()?.to_str()?;
    let parts: Vec<&str> = file.split('.').collect();
    let stem = match parts.as_slice() {
        [stem, "so"] | [stem, _, "so"] => *stem,
        _ => return None,
    };
    let mut names: Vec<&str> = rel
        .parent()
        .into_iter()
        .flat_map(|p| p.components())
        .map(|c| c.as_os_str().to_str())
        .collect::<Option<_>>()?;
    names.push(stem);
    names
        .iter()
        .all(|n| is_identifier(n))
        .then(|| names.join("."))
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egg_layout() {
        let roots = SysPathRoots::default();
        let f = Path::new("/t/eggs/v5/BTrees-6.5-py3.11-linux-x86_64.egg/BTrees/_OOBTree.cpython-311-x86_64-linux-gnu.so");
        assert_eq!(roots.module_name(f).as_deref(), Some("BTrees._OOBTree"));
    }

    #[test]
    fn site_packages_and_listed_roots() {
        let roots = SysPathRoots {
            roots: vec![PathBuf::from("/t/src")],
        };
        let f = Path::new("/v/lib/python3.11/site-packages/zope/interface/_zope.abi3.so");
        assert_eq!(
            roots.module_name(f).as_deref(),
            Some("zope.interface._zope")
        );
        assert_eq!(
            roots
                .module_name(Path::new("/t/src/demo/_speed.so"))
                .as_deref(),
            Some("demo._speed")
        );
        assert_eq!(roots.module_name(Path::new("/elsewhere/x.so")), None);
    }

    #[test]
    fn libraries_are_not_modules() {
        assert_eq!(dotted(Path::new("pkg.libs/libz-1a2b.so.1.2")), None);
        assert_eq!(dotted(Path::new("pkg/libfoo.so.1")), None);
        assert_eq!(dotted(Path::new("1pkg/x.so")), None);
        assert_eq!(dotted(Path::new("m.so")).as_deref(), Some("m"));
    }
}
