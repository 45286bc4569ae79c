//! Native code during freeze: ELF files found in the tree get their RPATHs
//! made `$ORIGIN`-relative (and, on request, their libraries vendored and the
//! interpreter bundled). Freeze calls [`freeze_native`].
//!
//! A search path entry that names a directory inside the tree (under any
//! root the tree was built or relocated at, or under a prefix freeze copied
//! in) becomes `$ORIGIN/<relative path>`, which the loader resolves against
//! the directory of the file itself, wherever the tree is moved. The pass
//! plans every file first and writes only when the plan is complete, so
//! `--external-rpath error` fails before anything changed.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path};

use anyhow::{bail, Context, Result};
use bbrun_elf::SearchTag;

mod batch;

use bbrun_map::map::{self, Action, FileKind, InventoryEntry, RelocationMap, STATE_DIR};
use bbrun_util::fsutil;

/// What to do with RPATH/RUNPATH entries that point outside the root.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExternalRpath {
    /// Keep them, and list them in the report.
    #[default]
    Keep,
    /// Remove them from the search path.
    Drop,
    /// Fail the freeze, listing them.
    Error,
}

/// Options of `bbrun freeze` that concern native code.
#[derive(Debug, Clone, Default)]
pub struct NativeOptions {
    /// RPATH entries outside the root: keep (and report), drop, or error.
    pub external_rpath: ExternalRpath,
    /// Copy non-system shared libraries that extensions need into the tree.
    pub vendor_libs: bool,
    /// Copy the build interpreter into the tree and use it first.
    pub bundle_python: bool,
}

pub use crate::native_report::NativeReport;

/// Called by freeze after external paths are collected and before the map
/// is saved; may set `map.interpreter.bundled`.
pub fn freeze_native(
    root: &Path,
    map: &mut RelocationMap,
    opts: &NativeOptions,
    dry_run: bool,
) -> Result<NativeReport> {
    let mut report = NativeReport::default();
    let places = InTree::for_map(root, map)?;
    // Vendoring resolves libraries through the search paths as built, so it
    // runs before `--external-rpath drop` removes them.
    if opts.vendor_libs {
        crate::vendor::vendor_libs(root, map, dry_run, &mut report)?;
    }
    if opts.bundle_python {
        crate::bundle::bundle_python(root, map, dry_run, &mut report)?;
    }
    relativize_rpaths(root, &places, opts.external_rpath, dry_run, &mut report)?;
    Ok(report)
}

/// Absolute paths that lie inside the tree, and where: each base maps to a
/// directory relative to the root ("" for the root itself).
#[derive(Debug, Clone, Default)]
pub struct InTree {
    bases: Vec<(String, String)>,
}

impl InTree {
    /// Every root the tree had (build, realpath, relocations), the current
    /// root and its realpath, and every collected prefix.
    pub fn for_map(root: &Path, map: &RelocationMap) -> Result<InTree> {
        let mut places = InTree::default();
        for r in map.old_roots_utf8()? {
            places.add(&r, "");
        }
        places.add(&root.to_string_lossy(), "");
        let real = std::fs::canonicalize(root)
            .with_context(|| format!("{}: cannot resolve", root.display()))?;
        places.add(&real.to_string_lossy(), "");
        for p in &map.prefixes {
            places.add(&p.original, &p.in_tree);
        }
        Ok(places)
    }

    pub fn add(&mut self, base: &str, in_tree: &str) {
        let base = base.trim_end_matches('/');
        if !base.is_empty() && !self.bases.iter().any(|(b, _)| b == base) {
            self.bases.push((base.to_string(), in_tree.to_string()));
            // Longest first: a prefix nested in a root maps by its own entry.
            self.bases.sort_by_key(|(b, _)| std::cmp::Reverse(b.len()));
        }
    }

    /// The root-relative directory an absolute path names, if inside.
    pub fn locate(&self, path: &str) -> Option<String> {
        let path = fsutil::normalize(Path::new(path));
        let path = path.to_string_lossy();
        self.bases.iter().find_map(|(base, in_tree)| {
            let rest = fsutil::relative_inside(&path, base)?;
            Some(join_rel(in_tree, &rest))
        })
    }
}

fn join_rel(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// `$ORIGIN` form of `target` (root-relative dir) seen from `from`
/// (root-relative dir of the ELF file).
pub fn origin_relative(from: &str, target: &str) -> String {
    let parts = |s: &str| -> Vec<String> {
        Path::new(s)
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect()
    };
    let (from, target) = (parts(from), parts(target));
    let common = from.iter().zip(&target).take_while(|(a, b)| a == b).count();
    let mut out = String::from("$ORIGIN");
    for _ in common..from.len() {
        out.push_str("/..");
    }
    for t in &target[common..] {
        out.push('/');
        out.push_str(t);
    }
    out
}

/// The plan for one search path value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPlan {
    /// The new value; `None` when every entry was dropped.
    pub new: Option<String>,
    /// Entries outside the tree (kept, dropped or refused per policy).
    pub external: Vec<String>,
}

/// Rewrite one RPATH/RUNPATH value for an ELF file in `file_dir`
/// (root-relative).
pub fn plan_search_path(
    value: &str,
    file_dir: &str,
    places: &InTree,
    policy: ExternalRpath,
) -> PathPlan {
    let mut entries = Vec::new();
    let mut external = Vec::new();
    for entry in value.split(':') {
        if entry.starts_with("$ORIGIN") || entry.starts_with("${ORIGIN}") || entry.is_empty() {
            entries.push(entry.to_string());
            continue;
        }
        match entry
            .starts_with('/')
            .then(|| places.locate(entry))
            .flatten()
        {
            Some(target) => entries.push(origin_relative(file_dir, &target)),
            None => {
                // Absolute paths elsewhere, and relative ones (which the
                // loader resolves against the working directory).
                external.push(entry.to_string());
                if policy != ExternalRpath::Drop {
                    entries.push(entry.to_string());
                }
            }
        }
    }
    PathPlan {
        new: (!entries.is_empty()).then(|| entries.join(":")),
        external,
    }
}

/// One ELF file to rewrite: its path, and each tag's old and new value.
struct FilePlan {
    rel: String,
    changes: Vec<(SearchTag, String, Option<String>)>,
}

/// Find every ELF file in the tree by its magic, and make the search path
/// entries that point inside the tree `$ORIGIN`-relative.
///
/// One pass, each file opened and read once: a file to change is rewritten
/// into a temp file beside it right away, and all of them replace their
/// targets at the end (see `batch`), so with `--external-rpath error` the
/// tree is left as it was.
pub fn relativize_rpaths(
    root: &Path,
    places: &InTree,
    policy: ExternalRpath,
    dry_run: bool,
    report: &mut NativeReport,
) -> Result<()> {
    let previous = map::load_inventory(&map::inventory_path(root)).unwrap_or_default();
    let mut refused = Vec::new();
    let mut batch = batch::Batch::default();
    let shim = Path::new(STATE_DIR).join("shim");
    let walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.path().strip_prefix(root).map_or(true, |r| r != shim));
    for entry in walker {
        let entry = entry.with_context(|| format!("{}: cannot walk", root.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        let rel = rel.to_string_lossy().into_owned();
        let name = entry.file_name().to_string_lossy();
        let data = match read_if_elf(entry.path())? {
            Some(data) => data,
            None if looks_like_shared_library(&name) => {
                // Named like a shared library but not one (often empty):
                // the loader would refuse it; say so, touch nothing.
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                report.notes.push(format!(
                    "{rel}: not rewritten: named like a shared library but not an ELF file ({size} bytes)"
                ));
                continue;
            }
            None => continue,
        };
        let info = match bbrun_elf::parse(&data) {
            Ok(info) => info,
            Err(e) => {
                report.notes.push(format!("{rel}: not rewritten: {e}"));
                continue;
            }
        };
        let dir = Path::new(&rel)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut changes = Vec::new();
        let tags = [
            (SearchTag::Rpath, "RPATH", &info.rpath),
            (SearchTag::Runpath, "RUNPATH", &info.runpath),
        ];
        for (tag, name, value) in tags {
            let Some(value) = value else { continue };
            let plan = plan_search_path(value, &dir, places, policy);
            for ext in &plan.external {
                match policy {
                    ExternalRpath::Keep => report.notes.push(format!(
                        "{rel}: {name} entry {ext} is outside the tree; kept (--external-rpath keep)"
                    )),
                    ExternalRpath::Drop => report.notes.push(format!(
                        "{rel}: {name} entry {ext} is outside the tree; dropped"
                    )),
                    ExternalRpath::Error => refused.push(format!("{rel} ({name} {ext})")),
                }
            }
            if plan.new.as_deref() != Some(value.as_str()) {
                changes.push((tag, value.clone(), plan.new));
            }
        }
        if !changes.is_empty() {
            let plan = FilePlan { rel, changes };
            apply(
                root,
                plan,
                data,
                dry_run || policy_fails(&refused),
                &mut batch,
                report,
            )?;
        } else if previous
            .files
            .iter()
            .any(|e| e.path == rel && e.action == Action::RpathRelativized)
        {
            // Relativized by an earlier freeze: still so, nothing to do.
            report
                .entries
                .push(elf_entry(&rel, Action::RpathRelativized));
        }
    }
    if !refused.is_empty() {
        // Dropping the batch removes its temp files: nothing changed.
        bail!(
            "{}: search paths outside the tree (--external-rpath error): {}",
            root.display(),
            refused.join(", ")
        );
    }
    batch.commit()
}

/// Once a refusal is certain, further rewrites would only be thrown away.
fn policy_fails(refused: &[String]) -> bool {
    !refused.is_empty()
}

fn elf_entry(rel: &str, action: Action) -> InventoryEntry {
    InventoryEntry {
        path: rel.to_string(),
        kind: FileKind::Elf,
        action,
    }
}

/// Rewrite one file into `batch` (or, in a dry run, say what would change).
fn apply(
    root: &Path,
    plan: FilePlan,
    mut data: Vec<u8>,
    dry_run: bool,
    batch: &mut batch::Batch,
    report: &mut NativeReport,
) -> Result<()> {
    let describe = |tag: SearchTag, old: &str, new: &Option<String>| {
        let name = if tag == SearchTag::Rpath {
            "RPATH"
        } else {
            "RUNPATH"
        };
        match new {
            Some(new) => format!("{name} {old} -> {new}"),
            None => format!("{name} {old} removed"),
        }
    };
    let what: Vec<String> = plan
        .changes
        .iter()
        .map(|(t, o, n)| describe(*t, o, n))
        .collect();
    if dry_run {
        report
            .notes
            .push(format!("{}: would rewrite {}", plan.rel, what.join(", ")));
        report
            .entries
            .push(elf_entry(&plan.rel, Action::RpathRelativized));
        return Ok(());
    }
    for (tag, _, new) in &plan.changes {
        match bbrun_elf::set_search_path(&data, *tag, new.as_deref()) {
            Ok(out) => data = out,
            Err(e) => {
                report
                    .notes
                    .push(format!("{}: not rewritten: {e}", plan.rel));
                report.entries.push(elf_entry(&plan.rel, Action::Reported));
                return Ok(());
            }
        }
    }
    batch.stage(&root.join(&plan.rel), &data)?;
    report
        .notes
        .push(format!("{}: {}", plan.rel, what.join(", ")));
    report
        .entries
        .push(elf_entry(&plan.rel, Action::RpathRelativized));
    Ok(())
}

/// `libx.so`, `ext.cpython-311-x86_64-linux-gnu.so`, `libx.so.1.2`.
fn looks_like_shared_library(name: &str) -> bool {
    name.ends_with(".so")
        || name
            .split_once(".so.")
            .is_some_and(|(_, v)| v.starts_with(|c: char| c.is_ascii_digit()))
}

/// The whole file when it starts with the ELF magic. Only four bytes are
/// read from other files: most files in a tree are not ELF, some are large.
fn read_if_elf(path: &Path) -> Result<Option<Vec<u8>>> {
    let mut f = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut data = vec![0u8; 4];
    match f.read_exact(&mut data) {
        Ok(()) if bbrun_elf::is_elf(&data) => {}
        Ok(()) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    }
    f.read_to_end(&mut data)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(Some(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places() -> InTree {
        let mut p = InTree::default();
        p.add("/build/a", "");
        p.add("/real/build/a", "");
        p.add("/venv/lib/site", ".bbrun/external/01-site");
        p
    }

    #[test]
    fn origin_relative_paths() {
        assert_eq!(origin_relative("a/b", "a/b"), "$ORIGIN");
        assert_eq!(origin_relative("a/b", "a/c/lib"), "$ORIGIN/../c/lib");
        assert_eq!(origin_relative("", "parts/lib"), "$ORIGIN/parts/lib");
        assert_eq!(origin_relative("eggs/x/y", ""), "$ORIGIN/../../..");
    }

    #[test]
    fn inside_entries_become_origin_relative() {
        let p = places();
        let plan = plan_search_path(
            "/build/a/parts/demo/lib:$ORIGIN/.libs:/usr/local/lib:/real/build/a/lib/../lib2:/venv/lib/site/pkg",
            "eggs/demo.egg/demo",
            &p,
            ExternalRpath::Keep,
        );
        assert_eq!(
            plan.new.as_deref(),
            Some("$ORIGIN/../../../parts/demo/lib:$ORIGIN/.libs:/usr/local/lib:$ORIGIN/../../../lib2:$ORIGIN/../../../.bbrun/external/01-site/pkg")
        );
        assert_eq!(plan.external, vec!["/usr/local/lib"]);
    }

    #[test]
    fn drop_policy_removes_external_entries() {
        let p = places();
        let plan = plan_search_path("/usr/lib/x:/build/a/lib", "lib", &p, ExternalRpath::Drop);
        assert_eq!(plan.new.as_deref(), Some("$ORIGIN"));
        let plan = plan_search_path("/opt/x", "lib", &p, ExternalRpath::Drop);
        assert_eq!(plan.new, None);
        assert_eq!(plan.external, vec!["/opt/x"]);
    }

    #[test]
    fn sibling_of_root_is_not_inside() {
        let p = places();
        let plan = plan_search_path("/build/ab/lib", "lib", &p, ExternalRpath::Keep);
        assert_eq!(plan.new.as_deref(), Some("/build/ab/lib"));
        assert_eq!(plan.external, vec!["/build/ab/lib"]);
    }
}
