//! `bbrun check`: would every ELF file of the tree load on this machine?
//! For each Python extension, executable and library: the DT_NEEDED names
//! that do not resolve (transitively) and the symbol versions the resolved
//! libraries lack, with the module whose import would fail.
//!
//! Extensions are checked as the interpreter loads them: inside a process
//! that already holds the interpreter and its libraries (bundled one first,
//! else a compatible one found as the launcher would), dlopened by
//! libpython, so RPATH inheritance and already-loaded sonames count.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use bbrun_ldcheck::fs::{self as ldfs, FileSource};
use bbrun_ldcheck::{machine, Process};
use serde::Serialize;

use crate::elfwalk::{display_rel, elf_files};
use crate::pymodule::SysPathRoots;
use bbrun_map::map::{self, RelocationMap};

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub root: String,
    /// True when every file loads.
    pub ok: bool,
    /// The interpreter extensions were checked under, if one was found.
    pub interpreter: Option<String>,
    pub checked: usize,
    /// Files with a problem (a subset of `files`).
    pub problems: Vec<FileResult>,
    pub files: Vec<FileResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileResult {
    /// Relative to the root (absolute for the interpreter outside it).
    pub path: String,
    /// `extension`, `executable`, `library` or `interpreter`.
    pub kind: &'static str,
    /// Dotted module name of an extension: what fails to import.
    pub module: Option<String>,
    /// Every library the file brings into the process, as resolved here.
    pub libraries: Vec<Resolved>,
    pub missing: Vec<Missing>,
    pub versions: Vec<VersionIssue>,
    /// The file itself could not be read as ELF.
    pub error: Option<String>,
}

impl FileResult {
    pub fn has_problem(&self) -> bool {
        !self.missing.is_empty() || !self.versions.is_empty() || self.error.is_some()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Resolved {
    pub name: String,
    pub path: String,
    pub via: String,
    pub needed_by: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Missing {
    pub name: String,
    pub needed_by: String,
    /// Files that exist under that name but were rejected, with why.
    pub rejected: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionIssue {
    pub object: String,
    pub library: String,
    pub provider: String,
    pub missing: Vec<String>,
    pub newest_available: Option<String>,
    pub message: String,
}

/// Check every ELF file under `root`.
pub fn check(root: &Path) -> Result<CheckReport> {
    if !root.is_dir() {
        bail!("{}: not a directory", root.display());
    }
    let config = machine::this_machine().map_err(|e| anyhow::anyhow!("{e}"))?;
    let map = match map::map_path(root).exists() {
        true => Some(map::load(&map::map_path(root))?),
        false => None,
    };
    let modules = match &map {
        Some(m) => SysPathRoots::for_tree(root, m),
        None => SysPathRoots::default(),
    };
    let mut source = FileSource::new();
    let shim = Path::new(map::STATE_DIR).join("shim");
    let files = elf_files(root, &[shim.as_path()])?;

    let python = map.as_ref().and_then(|m| interpreter_for(root, m));
    let mut base = Process::new();
    let mut loader = None;
    let mut results = Vec::new();
    if let Some(py) = &python {
        match ldfs::read(py) {
            Ok((obj, _)) => {
                let main = base.load(obj, None, &config, &mut source);
                // Python dlopens extensions from libpython when it is shared.
                loader = Some(
                    base.nodes
                        .iter()
                        .position(|n| {
                            n.object
                                .soname
                                .as_deref()
                                .is_some_and(|s| s.starts_with("libpython"))
                        })
                        .unwrap_or(main),
                );
                if !py.starts_with(root) {
                    results.push(result_for(root, &base, 0, "interpreter", None));
                }
            }
            Err(e) => bail!("{}: {e}", py.display()),
        }
    }

    let mut reached: HashSet<PathBuf> = HashSet::new();
    let mut libraries = Vec::new();
    for path in &files {
        let (obj, info) = match ldfs::read(path) {
            Ok(x) => x,
            Err(e) => {
                results.push(error_result(root, path, modules.module_name(path), e));
                continue;
            }
        };
        let module = modules.module_name(path);
        let kind = match (info.kind, &module, &info.interpreter) {
            (bbrun_elf::Kind::Executable, _, _) | (_, None, Some(_)) => "executable",
            (bbrun_elf::Kind::SharedObject, Some(_), _) => "extension",
            (bbrun_elf::Kind::SharedObject, None, None) => {
                libraries.push((path.clone(), obj));
                continue;
            }
            _ => continue, // object files, core dumps: never loaded
        };
        let (proc, first) = if kind == "extension" {
            let mut p = base.clone();
            let first = p.nodes.len();
            p.load(obj, loader, &config, &mut source);
            (p, first)
        } else {
            let mut p = Process::new();
            p.load(obj, None, &config, &mut source);
            (p, 0)
        };
        reached.extend(proc.nodes[first..].iter().map(|n| n.object.path.clone()));
        results.push(result_for(root, &proc, first, kind, module));
    }
    // A library no extension or executable loads is checked on its own; one
    // they load was checked with them, search paths inherited.
    for (path, obj) in libraries {
        if reached.contains(&path) {
            continue;
        }
        let mut p = Process::new();
        p.load(obj, None, &config, &mut source);
        results.push(result_for(root, &p, 0, "library", None));
    }
    results.sort_by(|a, b| a.path.cmp(&b.path));
    let problems: Vec<FileResult> = results
        .iter()
        .filter(|r| r.has_problem())
        .cloned()
        .collect();
    Ok(CheckReport {
        root: root.to_string_lossy().into_owned(),
        ok: problems.is_empty(),
        interpreter: python.map(|p| p.to_string_lossy().into_owned()),
        checked: results.len(),
        problems,
        files: results,
    })
}

/// The interpreter the launcher would use: the bundled one, else the first
/// compatible candidate. None when there is none (extensions are then
/// checked on their own).
fn interpreter_for(root: &Path, map: &RelocationMap) -> Option<PathBuf> {
    if let Some(b) = &map.interpreter.bundled {
        let p = root.join(b);
        if p.exists() {
            return Some(p);
        }
    }
    let mut cache = bbrun_run::interp::ProbeCache::load();
    let found = bbrun_run::interp::find_compatible(root, &map.interpreter, &mut cache).ok();
    cache.save();
    found.and_then(|p| std::fs::canonicalize(p).ok())
}

fn result_for(
    root: &Path,
    p: &Process,
    first: usize,
    kind: &'static str,
    module: Option<String>,
) -> FileResult {
    let name_of = |i: usize| display_rel(root, &p.nodes[i].object.path);
    let libraries = p
        .edges
        .iter()
        .filter(|e| e.from >= first)
        .filter_map(|e| {
            e.to.map(|t| Resolved {
                name: e.name.clone(),
                path: p.nodes[t].object.path.to_string_lossy().into_owned(),
                via: e.via.as_ref().map(|v| v.describe()).unwrap_or_default(),
                needed_by: name_of(e.from),
            })
        })
        .collect();
    let missing = p
        .missing(first)
        .map(|e| Missing {
            name: e.name.clone(),
            needed_by: name_of(e.from),
            rejected: e
                .rejected
                .iter()
                .map(|(path, why)| format!("{} ({why})", path.display()))
                .collect(),
        })
        .collect();
    let versions = p
        .version_problems(first)
        .into_iter()
        .map(|v| VersionIssue {
            object: display_rel(root, &v.object),
            library: v.file.clone(),
            provider: v.provider.to_string_lossy().into_owned(),
            missing: v.missing.clone(),
            newest_available: v.newest_available.clone(),
            message: v.describe(),
        })
        .collect();
    FileResult {
        path: name_of(first),
        kind,
        module,
        libraries,
        missing,
        versions,
        error: None,
    }
}

fn error_result(root: &Path, path: &Path, module: Option<String>, e: String) -> FileResult {
    FileResult {
        path: display_rel(root, path),
        kind: if module.is_some() {
            "extension"
        } else {
            "library"
        },
        module,
        libraries: vec![],
        missing: vec![],
        versions: vec![],
        error: Some(e),
    }
}
