//! The relocation map's and inventory's types: what `bbrun freeze`
//! learned about a tree. [`crate::map`] reads and writes them as TOML,
//! through [`crate::map_check`], which refuses what no real tree holds.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use bbrun_util::fsutil;

/// Directory inside the tree that holds everything bbrun writes.
pub const STATE_DIR: &str = ".bbrun";
/// File name of the map inside [`STATE_DIR`].
pub const MAP_FILE: &str = "map.toml";
/// File name of the inventory inside [`STATE_DIR`].
pub const INVENTORY_FILE: &str = "inventory.toml";
/// The map format this bbrun writes and understands.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RelocationMap {
    /// Format version; a launcher refuses maps newer than it understands.
    pub format: u32,
    /// Version of bbrun that wrote the map.
    pub bbrun_version: String,
    pub build: BuildRoot,
    pub interpreter: Interpreter,
    /// Scripts in `bin/` (and other script dirs) with their original shebangs.
    #[serde(default, rename = "script")]
    pub scripts: Vec<Script>,
    /// Paths outside the root that the tree needed, copied into the tree.
    #[serde(default, rename = "prefix")]
    pub prefixes: Vec<CollectedPrefix>,
    /// Which paths hold application state (data, logs, runtime files):
    /// packed without, kept on upgrade, never rewritten. See `state.rs`.
    #[serde(default, skip_serializing_if = "crate::state::StatePolicy::is_empty")]
    pub state: crate::state::StatePolicy,
}

/// Where the tree was built. Both forms are recorded: buildout passes egg
/// locations through `realpath()` but not the buildout directory, so a tree
/// built through a symlinked path holds both.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BuildRoot {
    pub root: String,
    pub root_realpath: String,
    /// Roots the tree's text files were rewritten for since the build (by
    /// `bbrun install`/`bbrun relocate`), oldest first. The launcher maps all
    /// of them, so a tree moved again still resolves paths named by scripts.
    /// Destinations are chosen by whoever installs, so they are bytes.
    #[serde(default)]
    pub previous_roots: Vec<RootPath>,
    /// The root that rewritten text files (`.installed.cfg`, egg-links...)
    /// currently name; equal to `root` until a relocate.
    #[serde(default)]
    pub files_root: Option<RootPath>,
}

/// An absolute path as Linux holds it: bytes, not necessarily UTF-8.
///
/// TOML strings are Unicode, so a path that is UTF-8 is written as it is
/// and any other as `bytes:` followed by the path with each byte that is
/// not part of valid UTF-8, and `%` itself, written `%XX`. A root is
/// absolute, so it never starts with `bytes:`: the two forms cannot be
/// confused, and an older bbrun reading the escaped form refuses it as a
/// relative root instead of mapping wrong paths.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RootPath(PathBuf);

const BYTES_TAG: &str = "bytes:";

impl RootPath {
    pub fn new(path: impl Into<PathBuf>) -> RootPath {
        RootPath(path.into())
    }

    pub fn as_path(&self) -> &Path {
        &self.0
    }

    pub fn as_bytes(&self) -> &[u8] {
        use std::os::unix::ffi::OsStrExt;
        self.0.as_os_str().as_bytes()
    }

    /// The TOML form (see the type's documentation).
    pub fn encode(&self) -> String {
        match self.0.to_str() {
            Some(s) => s.to_string(),
            None => format!("{BYTES_TAG}{}", fsutil::percent_escape(self.as_bytes())),
        }
    }

    /// The path a TOML string names; `None` for a malformed escape.
    pub fn decode(s: &str) -> Option<RootPath> {
        use std::os::unix::ffi::OsStringExt;
        let Some(rest) = s.strip_prefix(BYTES_TAG) else {
            return Some(RootPath(PathBuf::from(s)));
        };
        let bytes = fsutil::percent_unescape(rest)?;
        Some(RootPath(PathBuf::from(std::ffi::OsString::from_vec(bytes))))
    }
}

impl std::fmt::Display for RootPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.display().fmt(f)
    }
}

impl From<&str> for RootPath {
    fn from(s: &str) -> RootPath {
        RootPath(PathBuf::from(s))
    }
}

impl From<&Path> for RootPath {
    fn from(p: &Path) -> RootPath {
        RootPath(p.to_path_buf())
    }
}

impl Serialize for RootPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for RootPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<RootPath, D::Error> {
        let s = String::deserialize(d)?;
        RootPath::decode(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{s:?} is not a path: `bytes:` form with a bad %XX escape"
            ))
        })
    }
}

/// The interpreter the scripts were built with, and how to find a
/// compatible one elsewhere.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Interpreter {
    /// Path named by the scripts' shebangs (may be a venv symlink).
    pub path: String,
    /// `sys.implementation.name`, e.g. `cpython`.
    pub implementation: String,
    /// Full version, e.g. `3.11.7`.
    pub version: String,
    /// `3.11`: what compatibility is judged on, with the ABI.
    pub major_minor: String,
    /// `sys.implementation.cache_tag`, e.g. `cpython-311`.
    pub cache_tag: String,
    /// `sysconfig.get_config_var('SOABI')`, e.g. `cpython-311-x86_64-linux-gnu`.
    pub soabi: String,
    /// `sysconfig.get_platform()`, e.g. `linux-x86_64`.
    pub platform: String,
    /// Further places to look, in order, before `PATH`.
    #[serde(default)]
    pub candidates: Vec<String>,
    /// An interpreter copied into the tree by `freeze --bundle-python`,
    /// relative to the root; used first when present.
    #[serde(default)]
    pub bundled: Option<String>,
    /// The build interpreter's site dirs as it ran the scripts (a venv's
    /// site-packages; the base's own when built without a venv). On a
    /// fallback interpreter the launcher hides the base's site dirs and the
    /// shim adds exactly these (mapped), `.pth` included. Absent in maps
    /// from before it was recorded: the fallback then runs as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_dirs: Option<Vec<String>>,
    /// A virtualenv's interpreter links inside the tree (`venv/bin/python3`
    /// -> `/usr/bin/python3.11`), relative to the root. They lead out of
    /// the tree, so `bbrun install` does not unpack them as they are: it
    /// re-points them at a compatible interpreter of the target (and the
    /// venv's `pyvenv.cfg` `home` with them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Script {
    /// Path relative to the root, e.g. `bin/instance`.
    pub path: String,
    /// The first line as buildout wrote it, without the newline.
    pub shebang: String,
    /// Interpreter options from the shebang (`-s`, `-sE` ...), passed on.
    #[serde(default)]
    pub options: Vec<String>,
    /// sha256 of everything after the first line.
    pub body_sha256: String,
    /// The script runs zc.buildout (`bin/buildout`, or any script calling
    /// `zc.buildout.buildout.main()`): the launcher runs it through the
    /// transactional offline re-run instead of exec. Recorded at freeze so
    /// the launcher never reads a script to find out.
    #[serde(default, skip_serializing_if = "is_false")]
    pub buildout: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CollectedPrefix {
    /// The absolute path the tree named, outside the root.
    pub original: String,
    /// Where its copy lives, relative to the root.
    pub in_tree: String,
}

/// One file that names the build path, and what bbrun does about it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct InventoryEntry {
    /// Path relative to the root.
    pub path: String,
    pub kind: FileKind,
    pub action: Action,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    Script,
    Pth,
    EggLink,
    EditableFinder,
    InstalledCfg,
    Config,
    Elf,
    Other,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The shim maps the paths at run time; the file stays untouched.
    MappedAtRunTime,
    /// Rewritten for the new root by `bbrun install` / `bbrun relocate`.
    RewriteOnRelocate,
    /// RPATH made `$ORIGIN`-relative by freeze.
    RpathRelativized,
    /// Nothing bbrun can safely do; reported so the user knows.
    Reported,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Inventory {
    #[serde(default, rename = "file")]
    pub files: Vec<InventoryEntry>,
}

impl RelocationMap {
    /// Every root the tree's paths may name, as bytes, longest first so
    /// that a root nested in another maps by its own entry.
    pub fn old_roots(&self) -> Vec<&[u8]> {
        let mut roots: Vec<&[u8]> = vec![
            self.build.root.as_bytes(),
            self.build.root_realpath.as_bytes(),
        ];
        roots.extend(self.build.previous_roots.iter().map(RootPath::as_bytes));
        if let Some(files_root) = &self.build.files_root {
            roots.push(files_root.as_bytes());
        }
        roots.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        roots.dedup();
        roots
    }

    /// [`old_roots`](Self::old_roots) as text, for the freeze side, which
    /// scans files for them as strings; an error names the root that is
    /// not UTF-8.
    pub fn old_roots_utf8(&self) -> Result<Vec<String>> {
        self.old_roots()
            .into_iter()
            .map(|r| {
                std::str::from_utf8(r).map(str::to_string).map_err(|_| {
                    anyhow::anyhow!(
                        "{}: the tree was relocated to this path, which is not UTF-8 text; freeze reads the tree's files as text, so move it to a UTF-8 path and run `bbrun relocate` there first",
                        Path::new(std::ffi::OsStr::from_bytes(r)).display()
                    )
                })
            })
            .collect()
    }

    /// The root that text files rewritten by relocate currently name.
    pub fn files_root(&self) -> &Path {
        match &self.build.files_root {
            Some(r) => r.as_path(),
            None => Path::new(&self.build.root),
        }
    }

    pub fn script(&self, rel: &str) -> Option<&Script> {
        self.scripts.iter().find(|s| s.path == rel)
    }
}

/// A map of a tree built at `root` with a CPython 3.11, no scripts and no
/// collected prefixes: what unit tests start from.
#[cfg(any(test, feature = "test-support"))]
pub fn test_map(root: &str) -> RelocationMap {
    RelocationMap {
        format: FORMAT_VERSION,
        bbrun_version: "0".into(),
        build: BuildRoot {
            root: root.into(),
            root_realpath: root.into(),
            previous_roots: vec![],
            files_root: None,
        },
        interpreter: Interpreter {
            path: "/usr/bin/python3".into(),
            implementation: "cpython".into(),
            version: "3.11.2".into(),
            major_minor: "3.11".into(),
            cache_tag: "cpython-311".into(),
            soabi: "cpython-311-x86_64-linux-gnu".into(),
            platform: "linux-x86_64".into(),
            candidates: vec![],
            bundled: None,
            site_dirs: None,
            links: vec![],
        },
        scripts: vec![],
        prefixes: vec![],
        state: Default::default(),
    }
}

/// `ROOT/.bbrun/map.toml`.
pub fn map_path(root: &Path) -> PathBuf {
    root.join(STATE_DIR).join(MAP_FILE)
}

/// `ROOT/.bbrun/inventory.toml`.
pub fn inventory_path(root: &Path) -> PathBuf {
    root.join(STATE_DIR).join(INVENTORY_FILE)
}
