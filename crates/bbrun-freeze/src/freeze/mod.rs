//! `bbrun freeze`: scan a built tree, collect what it needs from outside,
//! and write the relocation map and inventory.
//!
//! Freeze runs on the build machine, where the build interpreter and every
//! external path still exist; it is safe to run again (a tree moved since
//! keeps the roots recorded by the first freeze).

pub mod bytecode;
pub mod collect;
pub mod index;
pub mod scan;
pub mod scripts;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::native::{self, NativeOptions};
use bbrun_map::map::{
    self, BuildRoot, CollectedPrefix, Interpreter, Inventory, InventoryEntry, RelocationMap,
};
use bbrun_run::interp;
use bbrun_run::shim;
use bbrun_util::fsutil;

#[derive(Debug, Clone, Default)]
pub struct FreezeOptions {
    pub dry_run: bool,
    /// Refuse (listing them) instead of copying paths outside the root.
    pub no_collect: bool,
    /// The build interpreter, when the scripts' shebangs do not say.
    pub python: Option<PathBuf>,
    pub native: NativeOptions,
    /// `--state PATH[=CLASS]`: more application state.
    pub state: Vec<(String, bbrun_map::state::StateClass)>,
    /// `--not-state PATH`: not state, even below a state path.
    pub not_state: Vec<String>,
}

/// What freeze found and did, for the report and `--json`.
#[derive(Debug, Serialize)]
pub struct FreezeReport {
    pub root: String,
    pub map: String,
    pub dry_run: bool,
    pub interpreter: String,
    pub scripts: Vec<String>,
    pub collected: Vec<CollectedPrefix>,
    /// Absolute paths outside the tree that scripts name but freeze does
    /// not collect (not on sys.path): reported so nothing is a surprise.
    pub outside_literals: Vec<String>,
    /// Files naming a build path, grouped by kind.
    pub files: BTreeMap<String, Vec<InventoryEntry>>,
    pub notes: Vec<String>,
    /// Application state recorded in the map.
    pub state: Vec<bbrun_map::state::StatePath>,
}

pub fn freeze(root_arg: &Path, opts: &FreezeOptions) -> Result<FreezeReport> {
    let root = fsutil::absolute_lexical(root_arg)?;
    if !root.is_dir() {
        bail!("{}: not a directory", root_arg.display());
    }
    let root_real = std::fs::canonicalize(&root)
        .with_context(|| format!("{}: cannot resolve", root.display()))?;
    // A buildout built through a symlink and frozen by its real path (or
    // the other way round) names the other spelling in every file: freeze
    // it under the spelling the build used, so those paths are inside.
    let given = root;
    let root = build_spelling(&given, &root_real).unwrap_or_else(|| given.clone());
    if !opts.dry_run {
        // Temp files of a killed freeze would otherwise be scanned, and
        // shipped by pack.
        bbrun_run::debris::sweep(&root)?;
    }
    // Freeze finds the build paths in the tree's files as text; a path
    // that is not UTF-8 cannot be searched for as one (a destination can:
    // install, relocate and the launcher treat roots as bytes).
    let (Some(root_s), Some(root_real_s)) = (root.to_str(), root_real.to_str()) else {
        bail!(
            "{}: this path is not UTF-8 text; freeze reads the tree's files as text and records the build root in them, so build and freeze at a UTF-8 path (the frozen tree may then be installed or moved to any path)",
            root.display()
        );
    };
    let (root_s, root_real_s) = (root_s.to_string(), root_real_s.to_string());

    let map_path = map::map_path(&root);
    let previous = if map_path.exists() {
        Some(map::load(&map_path)?)
    } else {
        None
    };

    let mut found = scripts::find(&root, previous.as_ref())?;
    if found.is_empty() && previous.is_none() {
        bail!(
            "{}: no Python scripts in bin/; is this a built buildout or virtualenv?",
            root.display()
        );
    }

    let mut map = match &previous {
        Some(prev) => prev.clone(),
        None => new_map(&root_s, &root_real_s, &found, opts)?,
    };
    map.bbrun_version = env!("CARGO_PKG_VERSION").to_string();
    {
        let mut roots: Vec<String> = map.old_roots_utf8()?;
        roots.push(root_s.clone());
        roots.push(root_real_s.clone());
        let mut needles = roots.clone();
        needles.extend(map.prefixes.iter().map(|p| p.original.clone()));
        let known: HashSet<String> = found.iter().map(|f| f.script.path.clone()).collect();
        found.extend(scripts::find_generated(
            &root,
            &map.interpreter.path,
            &roots,
            &needles,
            previous.as_ref(),
            &known,
        )?);
    }
    map.scripts = found.iter().map(|f| f.script.clone()).collect();

    // Everything the tree knows as "inside": the current root and every
    // root it was built or relocated at.
    let mut inside: Vec<String> = map.old_roots_utf8()?;
    inside.push(root_s.clone());
    inside.push(root_real_s.clone());
    let is_inside = |p: &str| {
        inside
            .iter()
            .any(|r| fsutil::relative_inside(p, r).is_some())
    };

    if map.interpreter.site_dirs.is_none() {
        map.interpreter.site_dirs = build_site_dirs(&map.interpreter);
    }
    map.interpreter.links = venv_links(&root);
    let stdlib = interpreter_stdlib(&map.interpreter);
    let mut external: Vec<String> = Vec::new();
    let mut outside_literals: Vec<String> = Vec::new();
    for f in &found {
        for p in &f.sys_path {
            if !is_inside(p)
                && !stdlib
                    .iter()
                    .any(|s| fsutil::relative_inside(p, s).is_some())
            {
                external.push(p.clone());
            }
        }
        outside_literals.extend(f.other_paths.iter().filter(|p| !is_inside(p)).cloned());
    }
    // The build venv's site-packages was on every script's sys.path in
    // place (site added it): it goes with the tree, like a prefix a script
    // names. A base interpreter's own site dirs stay where they are.
    if let Some(venv) = venv_prefix(&map.interpreter.path) {
        for d in map.interpreter.site_dirs.iter().flatten() {
            if !is_inside(d) && fsutil::relative_inside(d, &venv).is_some() && Path::new(d).is_dir()
            {
                external.push(d.clone());
            }
        }
    }
    external.extend(
        develop_egg_links(&root)
            .into_iter()
            .filter(|p| !is_inside(p)),
    );
    // Already collected earlier: the scripts still name the original path.
    external.retain(|p| {
        !map.prefixes
            .iter()
            .any(|c| fsutil::relative_inside(p, &c.original).is_some())
    });
    let external = collect::outermost(external);
    let missing: Vec<&String> = external.iter().filter(|p| !Path::new(p).exists()).collect();
    if !missing.is_empty() {
        bail!(
            "{}: scripts need paths outside the tree that do not exist here: {}; freeze on the build machine, where they exist",
            root.display(),
            missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    if opts.no_collect && !external.is_empty() {
        bail!(
            "{}: scripts need paths outside the tree and --no-collect was given: {}",
            root.display(),
            external.join(", ")
        );
    }
    let planned = collect::plan(&external, &map.prefixes);
    if !opts.dry_run {
        for p in &planned {
            collect::copy_into_tree(Path::new(&p.original), &root.join(&p.in_tree))?;
        }
    }
    map.prefixes.extend(planned.iter().cloned());

    let native = native::freeze_native(&root, &mut map, &opts.native, opts.dry_run)?;
    let mut notes = native.notes;
    if root != given {
        notes.push(format!(
            "{}: frozen as {}, the spelling of this directory the buildout was built with",
            given.display(),
            root.display()
        ));
    }

    // Byte-code before the scan, so it records the .pyc files this writes
    // (a second freeze then finds the tree as the first left it).
    let python = runnable_interpreter(&root, &map);
    // What the index covers: the scripts' paths (the state policy decided
    // below plays no part).
    let seeds = index_seeds(&root, &root_real_s, &map, &found);
    if !opts.dry_run {
        byte_compile(&python, &map, &index::walk(&root, &seeds), &mut notes);
    }

    let mut needles: Vec<String> = map.old_roots_utf8()?;
    needles.extend(map.prefixes.iter().map(|p| p.original.clone()));
    let script_set: HashSet<String> = map.scripts.iter().map(|s| s.path.clone()).collect();
    // State first from what needs no scan (var/, the options), so the scan
    // skips databases and logs; then what the config files found name.
    let roots: Vec<String> = map.old_roots_utf8()?;
    let roots: Vec<&str> = roots.iter().map(String::as_str).collect();
    let mut policy = state_policy(&root, map.state.clone(), &[], &roots, opts);
    let mut entries =
        scan::scan_skipping(&root, &needles, &script_set, &|rel| policy.is_state(rel))?;
    let configs: Vec<String> = entries
        .iter()
        .filter(|e| e.kind == map::FileKind::Config)
        .map(|e| e.path.clone())
        .collect();
    policy = state_policy(&root, map.state.clone(), &configs, &roots, opts);
    // A log or database that names the build path is history, not
    // configuration: nothing rewrites it.
    entries.retain(|e| !policy.is_state(&e.path));
    map.state = policy;
    // The ELF pass knows better what it did to native files.
    for n in &native.entries {
        entries.retain(|e| e.path != n.path);
        entries.push(n.clone());
    }
    entries.sort();

    if !opts.dry_run {
        let shim_dir = shim::tree_dir(&root);
        shim::write_into(&shim_dir)?;
        if !shim::precompile(&shim_dir, &python) {
            notes.push(format!(
                "could not byte-compile the shim with {}; launches will compile it",
                python.display()
            ));
        }
        map::save_inventory(
            &map::inventory_path(&root),
            &Inventory {
                files: entries.clone(),
            },
        )?;
        map::save(&map_path, &map)?;
        // Walked again, last: the byte-compile above and the writes into
        // .bbrun/ since change mtimes the index records (a develop egg at
        // the root makes the root itself, and .bbrun with it, indexed).
        index::write(&root, &index::walk(&root, &seeds))?;
    }

    let mut files: BTreeMap<String, Vec<InventoryEntry>> = BTreeMap::new();
    for e in entries {
        files.entry(kind_name(e.kind)).or_default().push(e);
    }
    outside_literals.sort();
    outside_literals.dedup();
    Ok(FreezeReport {
        root: root_s,
        map: map_path.to_string_lossy().into_owned(),
        dry_run: opts.dry_run,
        interpreter: map.interpreter.path.clone(),
        scripts: map.scripts.iter().map(|s| s.path.clone()).collect(),
        collected: planned,
        outside_literals,
        files,
        notes,
        state: map.state.paths.clone(),
    })
}

/// The directories the import index starts from (see [`index`]): the
/// scripts' sys.path entries as the tree names them now, the scripts' own
/// directories (a script runs with its directory first on sys.path, so an
/// unindexed `bin/` would be searched live before every egg), and a
/// virtualenv's site-packages.
fn index_seeds(
    root: &Path,
    root_real: &str,
    map: &RelocationMap,
    found: &[scripts::FoundScript],
) -> Vec<PathBuf> {
    let root_s = root.to_string_lossy();
    let mut pairs = bbrun_map::relocate::rewrite_pairs(map, root);
    if root_real != root_s {
        pairs.push((root_real.as_bytes().to_vec(), root_s.as_bytes().to_vec()));
    }
    let mut seeds: Vec<PathBuf> = found
        .iter()
        .flat_map(|f| f.sys_path.iter())
        .map(|p| index::current_dir(p, &pairs))
        .collect();
    seeds.extend(
        found
            .iter()
            .filter_map(|f| root.join(&f.script.path).parent().map(Path::to_path_buf)),
    );
    seeds.extend(index::venv_site_dirs(root));
    seeds.sort();
    seeds.dedup();
    seeds
}

/// Compile the modules of `walk`'s directories that have no current
/// `.pyc` (see [`bytecode`]), saying how many in a note.
fn byte_compile(python: &Path, map: &RelocationMap, walk: &index::Walk, notes: &mut Vec<String>) {
    let levels = bytecode::levels(
        map.scripts
            .iter()
            .flat_map(|s| s.options.iter().map(String::as_str)),
    );
    match bytecode::compile(python, walk.dirs(), &levels) {
        Some(0) => {}
        Some(written) => notes.push(format!(
            "byte-compiled {written} module(s) that had no current .pyc, so no run has to"
        )),
        None => notes.push(format!(
            "could not run {} to byte-compile the tree's modules; a run that cannot write .pyc files will compile them",
            python.display()
        )),
    }
}

/// The interpreter to byte-compile with: the build interpreter, or, in a
/// tree frozen again where it is gone (a target-side buildout run), the
/// one the launcher would run. Same version, so the same `.pyc` names.
fn runnable_interpreter(root: &Path, map: &RelocationMap) -> PathBuf {
    let mut cache = interp::ProbeCache::load();
    let python = interp::find_compatible(root, &map.interpreter, &mut cache)
        .unwrap_or_else(|_| PathBuf::from(&map.interpreter.path));
    cache.save();
    python
}

/// The tree's state policy: the defaults and what `configs` name, the
/// options of an earlier freeze (kept from `previous`), then this run's
/// options.
fn state_policy(
    root: &Path,
    previous: bbrun_map::state::StatePolicy,
    configs: &[String],
    roots: &[&str],
    opts: &FreezeOptions,
) -> bbrun_map::state::StatePolicy {
    let mut policy = bbrun_map::state::defaults(root, configs, roots);
    for p in previous.paths.iter().filter(|p| p.origin == "option") {
        policy.add(&p.path, p.class, "option");
    }
    for x in &previous.not_state {
        policy.exclude(x);
    }
    for (path, class) in &opts.state {
        policy.add(path, *class, "option");
    }
    for x in &opts.not_state {
        policy.exclude(x);
    }
    policy.sort();
    policy
}

fn kind_name(kind: map::FileKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The root as the buildout wrote it, when it is another spelling of the
/// same directory (`real`, the root resolved): zc.buildout records each
/// part's `bin` directory as `_b = ROOT/bin` in `.installed.cfg` (it
/// resolves egg paths, not the buildout directory).
fn build_spelling(root: &Path, real: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(root.join(".installed.cfg")).ok()?;
    text.lines()
        .filter_map(|l| l.strip_prefix("_b = "))
        .filter_map(|b| Path::new(b.trim_end()).parent().map(Path::to_path_buf))
        .find(|cand| {
            cand.is_absolute()
                && cand != root
                && std::fs::canonicalize(cand).is_ok_and(|c| c == *real)
        })
}

/// A first map for a tree never frozen before: probe the build interpreter.
fn new_map(
    root: &str,
    root_real: &str,
    found: &[scripts::FoundScript],
    opts: &FreezeOptions,
) -> Result<RelocationMap> {
    let python = match &opts.python {
        Some(p) => p.to_string_lossy().into_owned(),
        None => most_common_interpreter(found).with_context(|| {
            format!("{root}: cannot tell the build interpreter from bin/ scripts; pass --python")
        })?,
    };
    if !Path::new(&python).exists() {
        bail!(
            "{python}: the build interpreter named by the scripts does not exist; freeze on the build machine or pass --python"
        );
    }
    let probe = interp::probe_uncached(Path::new(&python))?;
    let mut candidates = Vec::new();
    if !probe.base_executable.is_empty() && probe.base_executable != python {
        candidates.push(probe.base_executable.clone());
    }
    Ok(RelocationMap {
        format: map::FORMAT_VERSION,
        bbrun_version: env!("CARGO_PKG_VERSION").to_string(),
        build: BuildRoot {
            root: root.to_string(),
            root_realpath: root_real.to_string(),
            previous_roots: vec![],
            files_root: None,
        },
        interpreter: Interpreter {
            path: python,
            implementation: probe.implementation,
            version: probe.version,
            major_minor: probe.major_minor,
            cache_tag: probe.cache_tag,
            soabi: probe.soabi,
            platform: probe.platform,
            candidates,
            bundled: None,
            site_dirs: None,
            links: vec![],
        },
        scripts: vec![],
        prefixes: vec![],
        state: Default::default(),
    })
}

fn most_common_interpreter(found: &[scripts::FoundScript]) -> Option<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for f in found {
        if let Some(s) = bbrun_run::shebang::parse(&f.script.shebang) {
            if s.interpreter.starts_with('/') {
                *counts.entry(s.interpreter).or_default() += 1;
            }
        }
    }
    counts.into_iter().max_by_key(|(_, n)| *n).map(|(p, _)| p)
}

/// The interpreter's own standard library directories: any compatible
/// interpreter brings its own, so scripts naming them need no copy.
fn interpreter_stdlib(want: &Interpreter) -> Vec<String> {
    let code =
        "import sysconfig; p = sysconfig.get_paths(); print(p['stdlib']); print(p['platstdlib'])";
    std::process::Command::new(&want.path)
        .args(["-S", "-E", "-s", "-c", code])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The site dirs the build interpreter put on `sys.path` when it ran the
/// scripts (site-packages, the user site if enabled); `None` if it cannot
/// say (then a fallback interpreter runs as it is).
fn build_site_dirs(want: &Interpreter) -> Option<Vec<String>> {
    let code = "import json, site, sys\n\
d = site.getsitepackages() + ([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])\n\
print(json.dumps([p for p in d if p in sys.path]))";
    let out = std::process::Command::new(&want.path)
        .args(["-c", code])
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    serde_json::from_slice(&out.stdout).ok()
}

/// The interpreter links of the virtualenvs in the tree (the root itself,
/// or a directory right below it, as Plone 6's `ROOT/venv`): every
/// `bin/python*` symlink, relative ones too (they lead out through the
/// absolute one).
fn venv_links(root: &Path) -> Vec<String> {
    let mut venvs = vec![root.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(root) {
        venvs.extend(
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name() != map::STATE_DIR)
                .map(|e| e.path()),
        );
    }
    let mut out = Vec::new();
    for venv in venvs.iter().filter(|v| v.join("pyvenv.cfg").is_file()) {
        let Ok(entries) = std::fs::read_dir(venv.join("bin")) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_link = e.file_type().is_ok_and(|t| t.is_symlink());
            if is_link && (name.starts_with("python") || name.starts_with("pypy")) {
                if let Ok(rel) = e.path().strip_prefix(root) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
    }
    out.sort();
    out
}

/// The prefix of the virtualenv `python` belongs to, if it is a venv's.
fn venv_prefix(python: &str) -> Option<String> {
    let prefix = Path::new(python).parent()?.parent()?;
    prefix
        .join("pyvenv.cfg")
        .is_file()
        .then(|| prefix.to_string_lossy().into_owned())
}

/// Targets of `develop-eggs/*.egg-link` files (first line: the project dir).
fn develop_egg_links(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root.join("develop-eggs")) else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".egg-link"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| t.lines().next().map(|l| l.trim().to_string()))
        .filter(|l| l.starts_with('/'))
        .collect()
}
