//! The relocation map: what `bbrun freeze` learned about a tree, stored as
//! TOML at `ROOT/.bbrun/map.toml`.
//!
//! The launcher reads this file before every script, so it holds only what a
//! launch needs (roots, interpreter, scripts, collected prefixes). The longer
//! per-file inventory (every file that names the build path and what bbrun
//! did about it) lives beside it in `inventory.toml`, read only by the
//! commands that rewrite or report files.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
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

/// Parse a map, with errors that name the file and what is wrong.
pub fn parse(text: &str, path: &Path) -> Result<RelocationMap> {
    // Check the format version before the full schema so that a map from a
    // newer bbrun says so instead of failing on an unknown field.
    let raw: toml::Table = toml::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a valid relocation map (bad TOML: {}); run `bbrun freeze` again",
            path.display(),
            one_line(&e.to_string())
        )
    })?;
    match raw.get("format").and_then(toml::Value::as_integer) {
        Some(v) if v == i64::from(FORMAT_VERSION) => {}
        Some(v) => bail!(
            "{}: relocation map format {v} is not supported by bbrun {} (it reads format {FORMAT_VERSION})",
            path.display(),
            env!("CARGO_PKG_VERSION")
        ),
        None => bail!(
            "{}: not a relocation map (no `format` key); run `bbrun freeze` again",
            path.display()
        ),
    }
    // The table already parsed becomes the map: the launcher reads this
    // file before every script, so the text is parsed once.
    let map: RelocationMap = toml::Value::Table(raw)
        .try_into()
        .map_err(|e: toml::de::Error| {
            anyhow::anyhow!(
                "{}: incomplete relocation map ({}); run `bbrun freeze` again",
                path.display(),
                one_line(&e.to_string())
            )
        })?;
    crate::map_check::validate(&map, path)?;
    Ok(map)
}

pub fn load(path: &Path) -> Result<RelocationMap> {
    let text = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let text = std::str::from_utf8(&text)
        .map_err(|_| anyhow::anyhow!("{}: relocation map is not UTF-8 text", path.display()))?;
    parse(text, path)
}

pub fn save(path: &Path, map: &RelocationMap) -> Result<()> {
    let text = toml::to_string_pretty(map).context("serialising relocation map")?;
    let text = format!(
        "# bbrun relocation map: written by `bbrun freeze`, read by the launcher.\n# Reference: docs/relocation-map.md\n{text}"
    );
    fsutil::atomic_write(path, text.as_bytes(), 0o644)
}

pub fn load_inventory(path: &Path) -> Result<Inventory> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    parse_inventory(&text, path)
}

/// Parse an inventory's text; `path` names it in errors.
pub fn parse_inventory(text: &str, path: &Path) -> Result<Inventory> {
    toml::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a valid inventory ({}); run `bbrun freeze` again",
            path.display(),
            one_line(&e.to_string())
        )
    })
}

pub fn save_inventory(path: &Path, inventory: &Inventory) -> Result<()> {
    let text = toml::to_string_pretty(inventory).context("serialising inventory")?;
    fsutil::atomic_write(path, text.as_bytes(), 0o644)
}

/// toml's errors span several lines with a source excerpt; errors here are
/// one line.
fn one_line(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg).trim();
    let detail = msg
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.contains('|'))
        .unwrap_or("")
        .trim();
    if detail.is_empty() || detail == first {
        first.to_string()
    } else {
        format!("{first}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RelocationMap {
        RelocationMap {
            format: FORMAT_VERSION,
            bbrun_version: "0.1.0".into(),
            build: BuildRoot {
                root: "/build/app".into(),
                root_realpath: "/real/build/app".into(),
                previous_roots: vec![],
                files_root: None,
            },
            interpreter: Interpreter {
                path: "/venv/bin/python3".into(),
                implementation: "cpython".into(),
                version: "3.11.7".into(),
                major_minor: "3.11".into(),
                cache_tag: "cpython-311".into(),
                soabi: "cpython-311-x86_64-linux-gnu".into(),
                platform: "linux-x86_64".into(),
                candidates: vec![],
                bundled: None,
                site_dirs: None,
                links: vec![],
            },
            scripts: vec![Script {
                path: "bin/app".into(),
                shebang: "#!/venv/bin/python3".into(),
                options: vec![],
                body_sha256: "00".into(),
                buildout: false,
            }],
            prefixes: vec![],
            state: Default::default(),
        }
    }

    #[test]
    fn round_trips() {
        let map = sample();
        let text = toml::to_string_pretty(&map).unwrap();
        assert_eq!(parse(&text, Path::new("m.toml")).unwrap(), map);
    }

    #[test]
    fn bad_toml_is_one_line_naming_file() {
        let err = parse("format = 1\n[build\n", Path::new("/t/m.toml")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.starts_with("/t/m.toml: not a valid relocation map"),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn newer_format_is_refused() {
        let err = parse("format = 99\n", Path::new("m.toml")).unwrap_err();
        assert!(format!("{err}").contains("format 99 is not supported"));
    }

    #[test]
    fn truncated_map_says_incomplete() {
        let text = toml::to_string_pretty(&sample()).unwrap();
        let cut = &text[..text.find("[interpreter]").unwrap()];
        let err = parse(cut, Path::new("m.toml")).unwrap_err();
        let msg = format!("{err}");
        assert!(msg.contains("incomplete relocation map"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn old_roots_longest_first_without_duplicates() {
        let mut map = sample();
        map.build.root_realpath = map.build.root.clone();
        map.build.previous_roots = vec!["/b".into()];
        assert_eq!(map.old_roots(), vec![&b"/build/app"[..], b"/b"]);
    }

    #[test]
    fn roots_that_are_not_utf8_round_trip_exactly() {
        use std::os::unix::ffi::OsStringExt;
        let odd = |b: &[u8]| RootPath::new(std::ffi::OsString::from_vec(b.to_vec()));
        let mut map = sample();
        map.build.previous_roots = vec![odd(b"/srv/caf\xe9"), odd(b"/p/100%/\xff\xfe x")];
        map.build.files_root = Some(odd(b"/opt/\xc3\xa9t\xe9%41"));
        let text = toml::to_string_pretty(&map).unwrap();
        assert!(text.contains("bytes:/srv/caf%E9"), "{text}");
        assert!(text.contains("bytes:/opt/\u{e9}t%E9%2541"), "{text}");
        let back = parse(&text, Path::new("m.toml")).unwrap();
        assert_eq!(back, map);
        assert_eq!(
            back.files_root().as_os_str().as_bytes(),
            b"/opt/\xc3\xa9t\xe9%41"
        );
        // UTF-8 roots stay readable as they are.
        assert_eq!(RootPath::from("/a/%b").encode(), "/a/%b");
        assert_eq!(RootPath::decode("bytes:/x%4"), None);
        assert_eq!(RootPath::decode("bytes:/x%zz"), None);
    }
}
