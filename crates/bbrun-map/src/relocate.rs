//! Rewriting recorded text files for a tree's new root: the shared core of
//! `bbrun relocate`, `bbrun install` and `bbrun pack --prefix`.
//!
//! Scripts are never touched here (the shim maps their paths at run time);
//! what changes are the files the inventory marks `rewrite-on-relocate`:
//! `.installed.cfg`, egg-links, `.pth`, editable finders, config files.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::schema::{RelocationMap, RootPath};
use bbrun_util::fsutil;

/// One old path prefix and what it becomes, as bytes: a destination need
/// not be UTF-8.
pub type PathPair = (Vec<u8>, Vec<u8>);

/// Every path prefix a recorded file may name, with what it becomes under
/// `new_root`, longest first: collected prefixes map into the tree's
/// `.bbrun/external/`, every old root maps to `new_root`.
pub fn rewrite_pairs(map: &RelocationMap, new_root: &Path) -> Vec<PathPair> {
    let new_root = new_root.as_os_str().as_bytes();
    let mut pairs: Vec<PathPair> = map
        .prefixes
        .iter()
        .map(|p| {
            let mut new = new_root.to_vec();
            new.push(b'/');
            new.extend_from_slice(p.in_tree.as_bytes());
            (p.original.clone().into_bytes(), new)
        })
        .collect();
    for old in map.old_roots() {
        if old != new_root {
            pairs.push((old.to_vec(), new_root.to_vec()));
        }
    }
    pairs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    pairs.dedup_by(|a, b| a.0 == b.0);
    pairs
}

/// Rewrite `text` for `pairs` in one pass (a path produced by one pair is
/// never rewritten by another); `None` when nothing changed.
pub fn rewrite_text<A: AsRef<[u8]>, B: AsRef<[u8]>>(
    text: &[u8],
    pairs: &[(A, B)],
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut pos = 0;
    let mut changed = false;
    while pos < text.len() {
        // The earliest boundary-respecting match of any old prefix; on a
        // tie the longer prefix (listed first) wins.
        let mut best: Option<(usize, &(A, B))> = None;
        for pair in pairs {
            let old = pair.0.as_ref();
            let mut from = pos;
            while let Some(i) = fsutil::find(&text[from..], old) {
                let at = from + i;
                if is_boundary(text.get(at + old.len()).copied()) {
                    if best.is_none_or(|(b, _)| at < b) {
                        best = Some((at, pair));
                    }
                    break;
                }
                from = at + 1;
            }
        }
        let Some((at, (old, new))) = best else { break };
        out.extend_from_slice(&text[pos..at]);
        out.extend_from_slice(new.as_ref());
        pos = at + old.as_ref().len();
        changed = true;
    }
    if !changed {
        return None;
    }
    out.extend_from_slice(&text[pos..]);
    Some(out)
}

fn is_boundary(after: Option<u8>) -> bool {
    matches!(
        after,
        None | Some(
            b'/' | b'\''
                | b'"'
                | b' '
                | b'\t'
                | b'\n'
                | b'\r'
                | b':'
                | b';'
                | b','
                | b'='
                | b')'
                | b']'
                | b'>'
                | b'<'
        )
    )
}

/// The map after its recorded files were rewritten for `new_root`: the
/// root they named before joins `previous_roots` (the scripts' paths still
/// need mapping from every root the tree ever had).
pub fn relocated_map(map: &RelocationMap, new_root: &Path) -> RelocationMap {
    let mut out = map.clone();
    let before = RootPath::from(map.files_root());
    if before.as_path() != new_root {
        if before.as_path() != Path::new(&out.build.root)
            && !out.build.previous_roots.contains(&before)
        {
            out.build.previous_roots.push(before);
        }
        out.build.files_root = Some(RootPath::from(new_root));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_never_rewrites_a_rewritten_path() {
        // New root inside the old one: /a -> /a/b must not become /a/b/b.
        let pairs = vec![("/a".to_string(), "/a/b".to_string())];
        assert_eq!(
            rewrite_text(b"x=/a/eggs /a", &pairs).unwrap(),
            b"x=/a/b/eggs /a/b"
        );
    }

    #[test]
    fn longer_prefix_wins_and_boundaries_hold() {
        let pairs = vec![
            (
                "/v/site-packages".to_string(),
                "/n/.bbrun/external/01-site-packages".to_string(),
            ),
            ("/v".to_string(), "/n".to_string()),
        ];
        let got = rewrite_text(b"'/v/site-packages/x' '/v/bin' '/vx'", &pairs).unwrap();
        assert_eq!(
            got,
            b"'/n/.bbrun/external/01-site-packages/x' '/n/bin' '/vx'".to_vec()
        );
        assert!(rewrite_text(b"/vx", &pairs).is_none());
    }
}
