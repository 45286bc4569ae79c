//! Reading buildout-generated scripts: which are Python, what their first
//! line says, and which absolute paths their `sys.path[0:0] = [...]` block
//! names.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use bbrun_map::map::{RelocationMap, Script};
use bbrun_run::shebang;

/// Directories whose executables are scripts a user runs.
pub const SCRIPT_DIRS: &[&str] = &["bin"];

/// A script found in the tree.
#[derive(Debug)]
pub struct FoundScript {
    pub script: Script,
    /// Absolute paths from the script's `sys.path` assignment.
    pub sys_path: Vec<String>,
    /// Other absolute path literals in the body.
    pub other_paths: Vec<String>,
}

/// Find the Python scripts under the tree's script dirs. A script whose
/// first line already names the launcher keeps the shebang the previous
/// map recorded for it.
pub fn find(root: &Path, previous: Option<&RelocationMap>) -> Result<Vec<FoundScript>> {
    let mut out = Vec::new();
    for dir in SCRIPT_DIRS {
        let dir = root.join(dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if !path.is_file() {
                continue;
            }
            if let Some(found) = read_script(root, &path, previous, |_| true)? {
                out.push(found);
            }
        }
    }
    Ok(out)
}

/// The script at `path`, if its first line runs Python (or the launcher,
/// for a script the previous map recorded) and `accept` takes that
/// interpreter.
fn read_script(
    root: &Path,
    path: &Path,
    previous: Option<&RelocationMap>,
    accept: impl Fn(&str) -> bool,
) -> Result<Option<FoundScript>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let (first, body) = shebang::split_first_line(&bytes);
    let first = String::from_utf8_lossy(first)
        .trim_end_matches('\r')
        .to_string();
    let Some(parsed) = shebang::parse(&first) else {
        return Ok(None);
    };
    let rel = path
        .strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned();
    let (line, options) = if shebang::is_launcher(&parsed.interpreter) {
        match previous.and_then(|m| m.script(&rel)) {
            Some(s) => (s.shebang.clone(), s.options.clone()),
            None => return Ok(None),
        }
    } else if shebang::is_python(&parsed.interpreter) && accept(&parsed.interpreter) {
        (first.clone(), parsed.options)
    } else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(body);
    let (sys_path, other_paths) = path_literals(&text);
    Ok(Some(FoundScript {
        script: Script {
            path: rel,
            shebang: line,
            options,
            body_sha256: bbrun_util::fsutil::sha256_hex(body),
            buildout: runs_buildout(body),
        },
        sys_path,
        other_paths,
    }))
}

/// Generated scripts outside `bin/`: recipes write them anywhere
/// (`parts/instance/bin/interpreter`, which zope2instance's `bin/instance
/// fg` starts). Any file whose first line runs the build interpreter (or a
/// Python under one of the tree's roots) and whose body names a build path
/// is one: its body must never be rewritten and `bbrun shebang` must reach
/// it. Only the first bytes of most files are read.
pub fn find_generated(
    root: &Path,
    interpreter: &str,
    roots: &[String],
    needles: &[String],
    previous: Option<&RelocationMap>,
    known: &std::collections::HashSet<String>,
) -> Result<Vec<FoundScript>> {
    use std::io::Read;
    let accept = |interp: &str| {
        interp == interpreter
            || roots
                .iter()
                .any(|r| bbrun_util::fsutil::relative_inside(interp, r).is_some())
    };
    let mut out = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() != 1 || e.file_name() != bbrun_map::map::STATE_DIR);
    for entry in walker {
        let entry = entry.with_context(|| format!("{}: cannot walk", root.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let path = entry.path();
        let mut head = [0u8; 2];
        let is_hashbang = std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut head))
            .map(|_| &head == b"#!")
            .unwrap_or(false);
        if !is_hashbang {
            continue;
        }
        let Some(found) = read_script(root, path, previous, accept)? else {
            continue;
        };
        if known.contains(&found.script.path) {
            continue;
        }
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let body = shebang::split_first_line(&bytes).1;
        if needles
            .iter()
            .any(|n| !n.is_empty() && bbrun_util::fsutil::find(body, n.as_bytes()).is_some())
        {
            out.push(found);
        }
    }
    Ok(out)
}

/// Whether a script body runs zc.buildout (the launcher asks too, for a
/// script freeze did not record).
pub use bbrun_run::shebang::runs_buildout;

/// Absolute path literals in a script body, split into those inside a
/// `sys.path[...] = [` ... `]` block and the rest.
pub fn path_literals(body: &str) -> (Vec<String>, Vec<String>) {
    let mut sys_path = Vec::new();
    let mut other = Vec::new();
    let mut in_block = false;
    for line in body.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("sys.path[") && trimmed.contains('=') {
            in_block = true;
        }
        for lit in string_literals(line) {
            if lit.starts_with('/') {
                if in_block {
                    sys_path.push(lit);
                } else {
                    other.push(lit);
                }
            }
        }
        // The block ends at the line holding `]`: either its own closing
        // line or a one-line `sys.path[0:0] = ['/a']`.
        let opener = trimmed.starts_with("sys.path[");
        if in_block
            && ((!opener && trimmed.contains(']')) || (opener && trimmed.trim_end().ends_with(']')))
        {
            in_block = false;
        }
    }
    (sys_path, other)
}

/// Simple quoted literals on one line (no escapes, no triple quotes): what
/// buildout writes for paths.
fn string_literals(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '#' {
            break;
        }
        if c == '\'' || c == '"' {
            let rest = &line[i + 1..];
            if let Some(end) = rest.find(c) {
                let lit = &rest[..end];
                if !lit.contains('\\') {
                    out.push(lit.to_string());
                }
                // Skip past the closing quote.
                for _ in 0..=lit.chars().count() {
                    chars.next();
                }
            } else {
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_sys_path_block_from_other_literals() {
        let body = "\nimport sys\nsys.path[0:0] = [\n  '/b/eggs/a.egg',\n  \"/venv/site-packages\",\n  ]\n\nimport app.main\nsys.argv[1:1] = ['-C', '/b/parts/etc/zope.conf']  # '/not/this'\n";
        let (sp, other) = path_literals(body);
        assert_eq!(sp, vec!["/b/eggs/a.egg", "/venv/site-packages"]);
        assert_eq!(other, vec!["/b/parts/etc/zope.conf"]);
    }

    #[test]
    fn one_line_sys_path_block() {
        let (sp, other) = path_literals("sys.path[0:0] = ['/a']\nx = '/b'\n");
        assert_eq!(sp, vec!["/a"]);
        assert_eq!(other, vec!["/b"]);
    }
}
