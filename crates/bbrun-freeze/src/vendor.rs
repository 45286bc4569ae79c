//! `bbrun freeze --vendor-libs`: copy the non-system shared libraries that
//! the tree's extensions need into `ROOT/.bbrun/lib/`, so the tree runs on
//! a machine without them.
//!
//! "Non-system" is everything outside [`bbrun_ldcheck::policy`] (glibc,
//! libgcc_s, libstdc++ and the manylinux display libraries stay with the
//! system). Each copy is named by the DT_NEEDED name the loader searches
//! for, and gets `$ORIGIN` as its own search path so copies find each
//! other. Each file that needs a copy gets an `$ORIGIN`-relative entry for
//! `.bbrun/lib` put first in its DT_RPATH (or DT_RUNPATH, when it has one:
//! a DT_RPATH beside it would be ignored). Running it again changes
//! nothing: the copies then resolve inside the tree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bbrun_elf::{Kind, SearchTag};
use bbrun_ldcheck::fs::{self as ldfs, FileSource};
use bbrun_ldcheck::{machine, policy, Config, Process};

use crate::elfwalk::{display_rel, elf_files, origin_relative};
use crate::native_report::{NativeReport, BUNDLE_DIR};
use bbrun_map::map::{self, Action, FileKind, InventoryEntry, RelocationMap};
use bbrun_util::fsutil;

/// Where `--vendor-libs` puts the copies, relative to the root.
pub const LIB_DIR: &str = ".bbrun/lib";

/// What a vendoring pass did (or would do, in a dry run).
#[derive(Debug, Default)]
pub struct Vendoring {
    /// DT_NEEDED name -> the file it was copied from.
    pub copied: BTreeMap<String, PathBuf>,
    /// Files whose search path gained the library directory.
    pub patched: Vec<PathBuf>,
    /// `(file, name)`: needs that do not resolve here, so cannot be copied.
    pub unresolved: Vec<(PathBuf, String)>,
    /// `(file, name)`: extensions linked to libpython, which the running
    /// interpreter provides (a second copy in the process would crash it).
    pub left_to_interpreter: Vec<(PathBuf, String)>,
}

/// Whose libraries are vendored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum For {
    /// The tree's extensions and programs: libpython is the interpreter's;
    /// search-path entries outside the tree are left to `--external-rpath`.
    Extensions,
    /// A bundled interpreter: libpython is copied too, and entries naming
    /// the original installation are dropped.
    Interpreter,
}

pub fn vendor_libs(
    root: &Path,
    _map: &mut RelocationMap,
    dry_run: bool,
    report: &mut NativeReport,
) -> Result<()> {
    // The shim is bbrun's; a bundled interpreter vendors its own libraries.
    let shim = Path::new(map::STATE_DIR).join("shim");
    let python = Path::new(BUNDLE_DIR);
    let files = elf_files(root, &[shim.as_path(), python])?;
    let lib_dir = root.join(LIB_DIR);
    let config = machine::this_machine().map_err(|e| anyhow::anyhow!("{e}"))?;
    let v = vendor_into(&config, root, &files, &lib_dir, For::Extensions, dry_run)?;
    describe(root, &v, dry_run, report);
    Ok(())
}

/// Notes and inventory entries for the freeze report.
pub fn describe(root: &Path, v: &Vendoring, dry_run: bool, report: &mut NativeReport) {
    let verb = if dry_run { "would vendor" } else { "vendored" };
    for (name, from) in &v.copied {
        report
            .notes
            .push(format!("{verb} {name} from {}", from.display()));
    }
    for (file, name) in &v.left_to_interpreter {
        report.notes.push(format!(
            "{} needs {name}: not vendored, the interpreter provides it",
            display_rel(root, file)
        ));
    }
    for (file, name) in &v.unresolved {
        report.notes.push(format!(
            "cannot vendor {name} needed by {}: it does not resolve on this machine",
            display_rel(root, file)
        ));
    }
    for p in &v.patched {
        report.entries.push(InventoryEntry {
            path: display_rel(root, p),
            kind: FileKind::Elf,
            action: Action::RpathRelativized,
        });
    }
}

/// Copy the non-system libraries `users` need (transitively) into
/// `lib_dir` and point the users at it.
pub fn vendor_into(
    config: &Config,
    root: &Path,
    users: &[PathBuf],
    lib_dir: &Path,
    target: For,
    dry_run: bool,
) -> Result<Vendoring> {
    let drop_external = target == For::Interpreter;
    let mut source = FileSource::new();
    let root_real = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let inside = |p: &Path| {
        let p = fsutil::normalize(p);
        p.starts_with(root) || std::fs::canonicalize(&p).is_ok_and(|r| r.starts_with(&root_real))
    };
    let mut out = Vendoring::default();
    // Files in the tree that need an entry for `lib_dir`.
    let mut to_patch: BTreeSet<PathBuf> = BTreeSet::new();
    for user in users {
        let (obj, info) = match ldfs::read(user) {
            Ok(x) => x,
            Err(_) => continue, // `bbrun check` reports unreadable files
        };
        if !matches!(info.kind, Kind::SharedObject | Kind::Executable) {
            continue;
        }
        if drop_external && has_external_entries(&info, root) {
            to_patch.insert(user.clone());
        }
        let mut p = Process::new();
        p.load(obj, None, config, &mut source);
        for e in &p.edges {
            let from = &p.nodes[e.from].object;
            // What a system library needs is the system's business.
            let from_name = from.soname.clone().unwrap_or_else(|| from.file_name());
            let from_is_system = e.from != 0 && policy::is_system_library(&from_name);
            if from_is_system || policy::is_system_library(&e.name) {
                continue;
            }
            if target == For::Extensions && e.name.starts_with("libpython") {
                out.left_to_interpreter.push((user.clone(), e.name.clone()));
                continue;
            }
            let Some(t) = e.to else {
                out.unresolved.push((user.clone(), e.name.clone()));
                continue;
            };
            let lib = &p.nodes[t].object.path;
            if inside(lib) {
                continue;
            }
            let real = std::fs::canonicalize(lib).unwrap_or_else(|_| lib.clone());
            match out.copied.get(&e.name) {
                Some(prev) if *prev != real => bail!(
                    "{}: two different libraries are needed as {}: {} and {}; cannot vendor both",
                    display_rel(root, user),
                    e.name,
                    prev.display(),
                    real.display()
                ),
                _ => {
                    out.copied.insert(e.name.clone(), real);
                }
            }
            // A file in the tree must find the copy; a copied library
            // finds its siblings through its own `$ORIGIN`.
            if inside(&from.path) {
                to_patch.insert(from.path.clone());
            }
        }
    }
    out.unresolved.sort();
    out.unresolved.dedup();
    if !dry_run {
        for (name, from) in &out.copied {
            copy_library(from, &lib_dir.join(name))?;
        }
    }
    for file in to_patch {
        let entry = origin_relative(&file, lib_dir);
        let changed = add_search_entry(&file, &entry, root, drop_external, dry_run)?;
        if changed {
            out.patched.push(file);
        }
    }
    Ok(out)
}

/// Copy one library to `dest`, its search path set to `$ORIGIN`, written
/// atomically. An identical existing copy is left alone.
fn copy_library(from: &Path, dest: &Path) -> Result<()> {
    let data = std::fs::read(from).with_context(|| format!("{}: cannot read", from.display()))?;
    let info = bbrun_elf::parse(&data).map_err(|e| anyhow::anyhow!("{}: {e}", from.display()))?;
    // The original search path named the build machine's directories; the
    // copies live together, so `$ORIGIN` is all they need.
    let bytes = if info.runpath.is_some() {
        bbrun_elf::set_search_path(&data, SearchTag::Runpath, Some("$ORIGIN"))
    } else if info.rpath.is_some() || !info.needed.is_empty() {
        bbrun_elf::set_search_path(&data, SearchTag::Rpath, Some("$ORIGIN"))
    } else {
        Ok(data.clone())
    };
    let bytes = match bytes {
        Ok(b) => b,
        // No room for a new entry in a library without one: it still
        // works when its needs are system libraries or found by its users.
        Err(_) if info.rpath.is_none() && info.runpath.is_none() => data,
        Err(e) => bail!("{}: cannot set its search path: {e}", from.display()),
    };
    if std::fs::read(dest).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    fsutil::atomic_write(dest, &bytes, 0o755)
}

fn has_external_entries(info: &bbrun_elf::ElfInfo, root: &Path) -> bool {
    [&info.rpath, &info.runpath]
        .into_iter()
        .flatten()
        .flat_map(|v| v.split(':'))
        .any(|e| e.starts_with('/') && !Path::new(e).starts_with(root))
}

/// Put `entry` first in the file's DT_RUNPATH (if it has one) or DT_RPATH.
/// Returns whether the file changed.
fn add_search_entry(
    file: &Path,
    entry: &str,
    root: &Path,
    drop_external: bool,
    dry_run: bool,
) -> Result<bool> {
    let data = std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
    let info = bbrun_elf::parse(&data).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let (tag, current) = match (&info.runpath, &info.rpath) {
        (Some(rp), _) => (SearchTag::Runpath, rp.as_str()),
        (None, Some(rp)) => (SearchTag::Rpath, rp.as_str()),
        (None, None) => (SearchTag::Rpath, ""),
    };
    let mut entries: Vec<&str> = vec![entry];
    for e in current.split(':').filter(|e| !e.is_empty()) {
        let external = e.starts_with('/') && !Path::new(e).starts_with(root);
        if e != entry && !(drop_external && external) {
            entries.push(e);
        }
    }
    let value = entries.join(":");
    if value == current {
        return Ok(false);
    }
    if dry_run {
        return Ok(true);
    }
    let bytes = bbrun_elf::set_search_path(&data, tag, Some(&value)).map_err(|e| {
        anyhow::anyhow!("{}: cannot set search path to {value}: {e}", file.display())
    })?;
    fsutil::atomic_write(file, &bytes, 0o755)?;
    Ok(true)
}
