//! Validation of a parsed relocation map, and the one encoding of its path
//! pairs for the shim.
//!
//! A map arrives with untrusted archives, so a well-formed TOML file may
//! still hold fields no real tree has: a NUL byte (no Linux path holds
//! one; putting it in the environment would abort the launcher), an
//! `in_tree` prefix that climbs out of the tree with `..`, a relative root.
//! Every command loads maps through `map::parse`, which calls
//! [`validate`], so none of them sees such a map. Tab and newline are
//! legal in Linux paths and are kept: [`encode_pathmap`] escapes them.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path};

use anyhow::{bail, Result};

use crate::schema::RelocationMap;

/// Check every path-like field; the error names the field and what to do.
pub fn validate(map: &RelocationMap, path: &Path) -> Result<()> {
    let b = &map.build;
    let mut roots: Vec<(&str, &str)> = vec![
        ("build.root", &b.root),
        ("build.root_realpath", &b.root_realpath),
    ];
    let root_paths = b
        .previous_roots
        .iter()
        .map(|r| ("build.previous_roots", r))
        .chain(b.files_root.iter().map(|r| ("build.files_root", r)));
    for (field, root) in root_paths {
        absolute_bytes(field, root.as_bytes(), path)?;
    }
    roots.extend(
        map.prefixes
            .iter()
            .map(|p| ("prefix.original", p.original.as_str())),
    );
    for (field, value) in roots {
        absolute(field, value, path)?;
    }
    let i = &map.interpreter;
    no_nul("interpreter.path", i.path.as_bytes(), path)?;
    for c in &i.candidates {
        no_nul("interpreter.candidates", c.as_bytes(), path)?;
    }
    for s in &map.scripts {
        relative_inside("script.path", &s.path, path)?;
        for o in &s.options {
            no_nul("script.options", o.as_bytes(), path)?;
        }
    }
    for p in &map.prefixes {
        relative_inside("prefix.in_tree", &p.in_tree, path)?;
    }
    if let Some(bundled) = &i.bundled {
        relative_inside("interpreter.bundled", bundled, path)?;
    }
    for link in &i.links {
        relative_inside("interpreter.links", link, path)?;
    }
    for dir in i.site_dirs.iter().flatten() {
        absolute("interpreter.site_dirs", dir, path)?;
    }
    // A state path outside the tree would make install move (and rollback
    // take) files that are not the tree's.
    for p in &map.state.paths {
        relative_inside("state.path", p.path.trim_end_matches('*'), path)?;
    }
    for p in &map.state.not_state {
        relative_inside("state.not_state", p.trim_end_matches('*'), path)?;
    }
    Ok(())
}

fn no_nul(field: &str, value: &[u8], path: &Path) -> Result<()> {
    if value.contains(&0) {
        bail!(
            "{}: {field} holds a NUL byte, which no path can; the map is corrupt or forged, freeze the tree again from its source",
            path.display()
        );
    }
    Ok(())
}

fn absolute(field: &str, value: &str, path: &Path) -> Result<()> {
    absolute_bytes(field, value.as_bytes(), path)
}

fn absolute_bytes(field: &str, value: &[u8], path: &Path) -> Result<()> {
    no_nul(field, value, path)?;
    if !value.starts_with(b"/") {
        bail!(
            "{}: {field} {} is not an absolute path; the map is corrupt or forged, freeze the tree again from its source",
            path.display(),
            bbrun_util::errline::quote(&String::from_utf8_lossy(value))
        );
    }
    Ok(())
}

/// A path relative to the root that stays inside it: not empty, not
/// absolute, no `..`.
fn relative_inside(field: &str, value: &str, path: &Path) -> Result<()> {
    no_nul(field, value.as_bytes(), path)?;
    let ok = !value.is_empty()
        && Path::new(value)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !ok {
        bail!(
            "{}: {field} {} must be a path inside the tree (relative, without `..`); the map is corrupt or forged, freeze the tree again from its source",
            path.display(),
            bbrun_util::errline::quote(value)
        );
    }
    Ok(())
}

/// `BBRUN_PATHMAP`: one `OLD<TAB>NEW` pair a line, with `\`, tab and
/// newline inside a path escaped as `\\`, `\t`, `\n` so any path a Linux
/// file system allows survives. Bytes are passed as bytes; the shim
/// decodes the variable with `os.environb` + `os.fsdecode`, so a path that
/// is not UTF-8 round-trips as surrogate escapes. Decoded by `_parse` in
/// shim/bbrun_shim.py.
pub fn encode_pathmap<A: AsRef<[u8]>, B: AsRef<[u8]>>(pairs: &[(A, B)]) -> OsString {
    let mut out = Vec::new();
    for (old, new) in pairs {
        escape_into(old.as_ref(), &mut out);
        out.push(b'\t');
        escape_into(new.as_ref(), &mut out);
        out.push(b'\n');
    }
    OsString::from_vec(out)
}

fn escape_into(s: &[u8], out: &mut Vec<u8>) {
    for &b in s {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{test_map, CollectedPrefix, RelocationMap};

    fn sample() -> RelocationMap {
        test_map("/b/app")
    }

    /// What `map::parse` does after reading the TOML.
    fn check(map: &RelocationMap) -> Result<()> {
        validate(map, Path::new("/t/map.toml"))
    }

    #[test]
    fn nul_in_any_root_is_one_line_error() {
        let cases: Vec<fn(&mut RelocationMap)> = vec![
            |m| m.build.root = "/a\0b".into(),
            |m| m.build.root_realpath = "/a\0b".into(),
            |m| m.build.previous_roots = vec!["/x\0".into()],
            |m| m.build.files_root = Some("/\0".into()),
            |m| {
                m.prefixes = vec![CollectedPrefix {
                    original: "/o\0".into(),
                    in_tree: "p".into(),
                }]
            },
            |m| m.interpreter.path = "/p\0".into(),
        ];
        for set in cases {
            let mut m = sample();
            set(&mut m);
            let msg = format!("{:#}", check(&m).unwrap_err());
            assert!(msg.contains("NUL byte"), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn in_tree_must_stay_inside() {
        for bad in ["../x", "a/../../x", "/abs", ""] {
            let mut m = sample();
            m.prefixes = vec![CollectedPrefix {
                original: "/o".into(),
                in_tree: bad.into(),
            }];
            let msg = format!("{:#}", check(&m).unwrap_err());
            assert!(msg.contains("prefix.in_tree"), "{msg}");
        }
        let mut m = sample();
        m.prefixes = vec![CollectedPrefix {
            original: "/o".into(),
            in_tree: ".bbrun/prefix/o".into(),
        }];
        check(&m).unwrap();
    }

    #[test]
    fn relative_root_refused_tab_and_newline_kept() {
        let mut m = sample();
        m.build.root = "rel".into();
        assert!(check(&m).is_err());
        m.build.root = "/a\tb\nc".into();
        check(&m).unwrap();
    }

    #[test]
    fn pathmap_escapes_separators() {
        let pairs = vec![(b"/a\tb\\".to_vec(), b"/n\nw".to_vec())];
        let enc = encode_pathmap(&pairs).into_vec();
        assert_eq!(enc, b"/a\\tb\\\\\t/n\\nw\n".to_vec());
    }
}
