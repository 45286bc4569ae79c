//! The loader's search, emulated for one process: which file each
//! DT_NEEDED name resolves to, in glibc's order.
//!
//! For a name requested by object L (glibc `elf/dl-load.c`):
//! 1. a name with a `/` is opened as is;
//! 2. unless L has DT_RUNPATH: the DT_RPATH of L, then of the object that
//!    loaded L, and so on up the chain (objects with DT_RUNPATH contribute
//!    nothing), then the main program's DT_RPATH;
//! 3. `LD_LIBRARY_PATH`;
//! 4. L's own DT_RUNPATH (never inherited);
//! 5. `/etc/ld.so.cache`;
//! 6. the default directories.
//!
//! A name matching an object already in the process (by requested name or
//! DT_SONAME) is not searched again; dependencies are loaded breadth-first,
//! so which copy wins follows the loader. A candidate of another class or
//! machine is skipped, as ld.so does. Not emulated: `glibc-hwcaps/` and
//! legacy hwcap subdirectories, DF_1_NODEFLIB, `LD_PRELOAD`, secure mode.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use crate::cache::CacheEntry;
use crate::expand::{expand, split_path, Tokens};
use crate::object::{Object, Probe, Source};
use crate::versions::{self, VersionProblem};

/// The machine-wide inputs of the search.
#[derive(Debug, Clone)]
pub struct Config {
    /// `LD_LIBRARY_PATH`, split (entries may hold tokens).
    pub ld_library_path: Vec<String>,
    pub cache: Vec<CacheEntry>,
    /// Searched last, e.g. `/lib/x86_64-linux-gnu`, `/usr/lib/...`, `/lib`.
    pub default_dirs: Vec<String>,
    pub tokens: Tokens,
}

/// How a name was resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// Already in the process under that name or soname.
    Loaded,
    /// The name held a `/`, or the object was loaded by path (dlopen).
    Path,
    /// DT_RPATH of the object at this path (the requester or a loader).
    Rpath(PathBuf),
    LdLibraryPath,
    Runpath,
    Cache,
    DefaultDir,
}

impl Via {
    pub fn describe(&self) -> String {
        match self {
            Via::Loaded => "already loaded".into(),
            Via::Path => "path".into(),
            Via::Rpath(of) => format!("RPATH of {}", of.display()),
            Via::LdLibraryPath => "LD_LIBRARY_PATH".into(),
            Via::Runpath => "RUNPATH".into(),
            Via::Cache => "ld.so.cache".into(),
            Via::DefaultDir => "default directory".into(),
        }
    }
}

/// An object in the emulated process.
#[derive(Debug, Clone)]
pub struct Node {
    pub object: Object,
    /// Names it was requested by (ld.so's `l_libname`).
    pub names: Vec<String>,
    /// The object whose request loaded it (`l_loader`), for RPATH
    /// inheritance.
    pub loader: Option<usize>,
}

/// One DT_NEEDED entry and what it resolved to.
#[derive(Debug, Clone)]
pub struct Edge {
    pub from: usize,
    pub name: String,
    /// Index into [`Process::nodes`]; `None` when not found.
    pub to: Option<usize>,
    pub via: Option<Via>,
    /// Candidates that existed but were rejected, with the reason.
    pub rejected: Vec<(PathBuf, String)>,
}

/// The objects of one process, built up by [`Process::load`].
#[derive(Debug, Clone)]
pub struct Process {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// The main program, whose DT_RPATH every search without DT_RUNPATH
    /// also uses, and whose `$ORIGIN` `LD_LIBRARY_PATH` expands with.
    pub main: Option<usize>,
}

impl Default for Process {
    fn default() -> Self {
        Self::new()
    }
}

impl Process {
    pub fn new() -> Process {
        Process {
            nodes: vec![],
            edges: vec![],
            main: None,
        }
    }

    /// Load `object` (already opened by path, like the executable or a
    /// `dlopen` of a path) and, breadth-first, everything it needs. `loader`
    /// is the object whose code requested it: an extension module's loader
    /// is the interpreter (libpython). Returns the object's index.
    pub fn load(
        &mut self,
        object: Object,
        loader: Option<usize>,
        config: &Config,
        source: &mut dyn Source,
    ) -> usize {
        let root = self.push(object, None, loader);
        if loader.is_none() && self.main.is_none() {
            self.main = Some(root);
        }
        let mut queue = VecDeque::from([root]);
        while let Some(i) = queue.pop_front() {
            for name in self.nodes[i].object.needed.clone() {
                if let Some(j) = self.find_loaded(&name) {
                    self.edges.push(Edge {
                        from: i,
                        name,
                        to: Some(j),
                        via: Some(Via::Loaded),
                        rejected: vec![],
                    });
                    continue;
                }
                let mut rejected = vec![];
                let found = self.search(i, &name, config, source, &mut rejected);
                let (to, via) = match found {
                    Some((obj, via)) => {
                        // The same file under another name is the same object.
                        let j = match self.nodes.iter().position(|n| n.object.path == obj.path) {
                            Some(j) => {
                                self.nodes[j].names.push(name.clone());
                                j
                            }
                            None => {
                                let j = self.push(obj, Some(name.clone()), Some(i));
                                queue.push_back(j);
                                j
                            }
                        };
                        (Some(j), Some(via))
                    }
                    None => (None, None),
                };
                self.edges.push(Edge {
                    from: i,
                    name,
                    to,
                    via,
                    rejected,
                });
            }
        }
        root
    }

    fn push(&mut self, object: Object, name: Option<String>, loader: Option<usize>) -> usize {
        let mut names: Vec<String> = name.into_iter().collect();
        names.push(object.path.to_string_lossy().into_owned());
        self.nodes.push(Node {
            object,
            names,
            loader,
        });
        self.nodes.len() - 1
    }

    /// An object already in the process that answers to `name`.
    pub fn find_loaded(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| {
            n.names.iter().any(|x| x == name) || n.object.soname.as_deref() == Some(name)
        })
    }

    fn search(
        &self,
        requester: usize,
        name: &str,
        config: &Config,
        source: &mut dyn Source,
        rejected: &mut Vec<(PathBuf, String)>,
    ) -> Option<(Object, Via)> {
        let req = &self.nodes[requester].object;
        let mut look = Lookup {
            source,
            config,
            want: req.arch,
            rejected,
        };
        let origin = req.origin().to_string_lossy().into_owned();
        let name = if name.contains('$') {
            expand(name, Some(&origin), &config.tokens)?
        } else {
            name.to_string()
        };
        if name.contains('/') {
            return look.path(PathBuf::from(&name)).map(|o| (o, Via::Path));
        }

        if req.runpath.is_none() {
            // DT_RPATH of the requester and its loaders, then of the main
            // program; an object with DT_RUNPATH has its DT_RPATH ignored.
            let mut chain: Vec<usize> = vec![];
            let mut k = Some(requester);
            while let Some(i) = k {
                chain.push(i);
                k = self.nodes[i].loader;
            }
            if let Some(m) = self.main.filter(|m| !chain.contains(m)) {
                chain.push(m);
            }
            for i in chain {
                let obj = &self.nodes[i].object;
                if let (None, Some(rp)) = (&obj.runpath, &obj.rpath) {
                    let o = obj.origin().to_string_lossy().into_owned();
                    if let Some(hit) = look.dirs(rp, Some(&o), &name) {
                        return Some((hit, Via::Rpath(obj.path.clone())));
                    }
                }
            }
        }
        if !config.ld_library_path.is_empty() {
            let main_origin = self
                .main
                .map(|m| self.nodes[m].object.origin().to_string_lossy().into_owned());
            let list = config.ld_library_path.join(":");
            if let Some(hit) = look.dirs(&list, main_origin.as_deref(), &name) {
                return Some((hit, Via::LdLibraryPath));
            }
        }
        if let Some(rp) = &req.runpath {
            if let Some(hit) = look.dirs(rp, Some(&origin), &name) {
                return Some((hit, Via::Runpath));
            }
        }
        // Plain entries first; legacy hwcap variants (`tls/`, `x86_64/`
        // subdirectories) after; `glibc-hwcaps/` variants never, as they
        // depend on the CPU (every such library has a plain entry too).
        let named = || config.cache.iter().filter(|e| e.name == name);
        let plain = named().filter(|e| e.hwcap == 0);
        let legacy = named().filter(|e| e.hwcap != 0 && !e.is_hwcaps_variant());
        for entry in plain.chain(legacy) {
            if let Some(o) = look.path(PathBuf::from(&entry.path)) {
                return Some((o, Via::Cache));
            }
        }
        for d in &config.default_dirs {
            if let Some(o) = look.path(Path::new(d).join(&name)) {
                return Some((o, Via::DefaultDir));
            }
        }
        None
    }

    /// DT_NEEDED names, from `first` on, that did not resolve.
    pub fn missing(&self, first: usize) -> impl Iterator<Item = &Edge> {
        self.edges
            .iter()
            .filter(move |e| e.from >= first && e.to.is_none())
    }

    /// Symbol versions that objects from `first` on require and their
    /// provider (as resolved) does not define.
    pub fn version_problems(&self, first: usize) -> Vec<VersionProblem> {
        let mut out = vec![];
        for (i, node) in self.nodes.iter().enumerate().skip(first) {
            for need in &node.object.version_needs {
                let provider = self
                    .edges
                    .iter()
                    .find(|e| e.from == i && e.name == need.file)
                    .and_then(|e| e.to)
                    .or_else(|| self.find_loaded(&need.file));
                let Some(p) = provider else {
                    continue; // reported as missing already
                };
                let defs = &self.nodes[p].object.version_defs;
                if let Some(problem) =
                    versions::check(&node.object.path, need, &self.nodes[p].object.path, defs)
                {
                    out.push(problem);
                }
            }
        }
        out
    }
}

/// One search: where candidates are opened and rejections collected.
struct Lookup<'a> {
    source: &'a mut dyn Source,
    config: &'a Config,
    want: crate::object::Arch,
    rejected: &'a mut Vec<(PathBuf, String)>,
}

impl Lookup<'_> {
    /// Open one candidate; a file of another class or machine is skipped.
    fn path(&mut self, path: PathBuf) -> Option<Object> {
        match self.source.open(&path) {
            Probe::Missing => None,
            Probe::Unusable(why) => {
                self.rejected.push((path, why));
                None
            }
            Probe::Found(obj) if obj.arch != self.want => {
                let why = format!("is {}, need {}", obj.arch, self.want);
                self.rejected.push((path, why));
                None
            }
            Probe::Found(obj) => Some(obj),
        }
    }

    /// `name` in each directory of a colon-separated list, tokens expanded.
    fn dirs(&mut self, list: &str, origin: Option<&str>, name: &str) -> Option<Object> {
        for dir in split_path(list) {
            let Some(dir) = expand(&dir, origin, &self.config.tokens) else {
                continue;
            };
            if let Some(o) = self.path(Path::new(&dir).join(name)) {
                return Some(o);
            }
        }
        None
    }
}
