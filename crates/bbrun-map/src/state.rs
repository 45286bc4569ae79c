//! Application state: the paths of a tree that hold its data (databases,
//! blobs), logs, runtime files (pid, lock, socket) and caches, as opposed
//! to its code. Recorded at freeze in the map's `[state]` table; pack
//! leaves state out, install keeps it across upgrades, relocate never
//! rewrites it.
//!
//! A recorded path covers itself and everything below it; a path ending in
//! `*` covers every path that starts with the text before the `*`
//! (`var/filestorage/Data.fs*` also covers `Data.fs.index`). The longest
//! recorded path that covers a file decides; an exclusion (`--not-state`)
//! at least as long wins. Inside state, file names decide the class of
//! runtime files and logs whatever their directory's class, so a lock
//! beside a database is never packed as data.

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum StateClass {
    /// The application's data (a ZODB `Data.fs`, blobs): kept on upgrade,
    /// packed only with `--with-data`.
    Data,
    /// Logs: kept on upgrade, never packed, never rewritten.
    Log,
    /// Pid files, lock files, sockets: belong to a running process.
    Runtime,
    /// Caches the application rebuilds (not Python's `__pycache__`, which
    /// is part of the code).
    Cache,
}

impl StateClass {
    pub fn as_str(self) -> &'static str {
        match self {
            StateClass::Data => "data",
            StateClass::Log => "log",
            StateClass::Runtime => "runtime",
            StateClass::Cache => "cache",
        }
    }

    pub fn parse(s: &str) -> Option<StateClass> {
        Some(match s {
            "data" => StateClass::Data,
            "log" => StateClass::Log,
            "runtime" => StateClass::Runtime,
            "cache" => StateClass::Cache,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct StatePath {
    /// Relative to the root; a trailing `*` makes it a prefix.
    pub path: String,
    pub class: StateClass,
    /// Why it is state: `default`, `option` (freeze --state) or the config
    /// file that names it.
    #[serde(default)]
    pub origin: String,
}

/// The map's `[state]` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StatePolicy {
    #[serde(default, rename = "path")]
    pub paths: Vec<StatePath>,
    /// Paths that are not state even below a state path (freeze --not-state).
    #[serde(default)]
    pub not_state: Vec<String>,
}

/// How long a recorded path is when it covers `rel`, or `None`.
fn covers(pattern: &str, rel: &str) -> Option<usize> {
    if let Some(prefix) = pattern.strip_suffix('*') {
        return rel.starts_with(prefix).then_some(prefix.len());
    }
    let below = rel.len() > pattern.len()
        && rel.starts_with(pattern)
        && rel.as_bytes()[pattern.len()] == b'/';
    (rel == pattern || below).then_some(pattern.len())
}

/// The class a file name alone gives inside state.
fn class_by_name(rel: &str) -> Option<StateClass> {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if [".lock", ".pid", ".sock"].iter().any(|s| name.ends_with(s)) {
        Some(StateClass::Runtime)
    } else if name.ends_with(".log") || name.contains(".log.") {
        Some(StateClass::Log)
    } else {
        None
    }
}

impl StatePolicy {
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.not_state.is_empty()
    }

    /// The class of `rel` (root-relative, `/`-separated), `None` for code.
    pub fn class_of(&self, rel: &str) -> Option<StateClass> {
        let mut best: Option<(usize, StateClass)> = None;
        for p in &self.paths {
            if let Some(n) = covers(&p.path, rel) {
                // On a tie the class that keeps more wins (data over logs
                // over runtime files): a directory named twice is kept.
                if best.is_none_or(|(b, c)| n > b || n == b && p.class < c) {
                    best = Some((n, p.class));
                }
            }
        }
        let (len, class) = best?;
        if self
            .not_state
            .iter()
            .filter_map(|x| covers(x, rel))
            .any(|n| n >= len)
        {
            return None;
        }
        Some(class_by_name(rel).unwrap_or(class))
    }

    pub fn is_state(&self, rel: &str) -> bool {
        self.class_of(rel).is_some()
    }

    /// The recorded state paths as plain paths (a prefix pattern's
    /// directory part is not itself state, so it is dropped), outermost
    /// only: what install moves from an old tree to the new one.
    pub fn roots(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut all: Vec<&StatePath> = self.paths.iter().collect();
        all.sort_by_key(|p| p.path.len());
        for p in all {
            let path = p.path.as_str();
            if out.iter().any(|o| covers(o, path).is_some()) {
                continue;
            }
            out.push(path.to_string());
        }
        out
    }

    /// Add a path (replacing the class of the same path), dropping an
    /// equal exclusion.
    pub fn add(&mut self, path: &str, class: StateClass, origin: &str) {
        self.not_state.retain(|x| x != path);
        if let Some(p) = self.paths.iter_mut().find(|p| p.path == path) {
            if origin == "option" || class < p.class {
                p.class = class;
                p.origin = origin.to_string();
            }
            return;
        }
        self.paths.push(StatePath {
            path: path.to_string(),
            class,
            origin: origin.to_string(),
        });
    }

    pub fn exclude(&mut self, path: &str) {
        self.paths.retain(|p| p.path != path);
        if !self.not_state.iter().any(|x| x == path) {
            self.not_state.push(path.to_string());
        }
    }

    pub fn sort(&mut self) {
        self.paths.sort();
        self.not_state.sort();
        self.not_state.dedup();
    }
}

/// Parse a `--state` value: `PATH` (data) or `PATH=CLASS`; PATH relative to
/// the root, plain (no `..`), an optional trailing `*`.
pub fn parse_option(value: &str) -> anyhow::Result<(String, StateClass)> {
    let (path, class) = match value.rsplit_once('=') {
        Some((p, c)) => (
            p,
            StateClass::parse(c).ok_or_else(|| {
                anyhow::anyhow!(
                    "--state {value}: unknown class {c:?}; use data, log, runtime or cache"
                )
            })?,
        ),
        None => (value, StateClass::Data),
    };
    Ok((check_path(path, "--state")?, class))
}

/// A state path as given on the command line, made root-relative.
pub fn check_path(path: &str, flag: &str) -> anyhow::Result<String> {
    let p = path.trim_end_matches('/').trim_start_matches("./");
    let plain = p.strip_suffix('*').unwrap_or(p);
    let ok = !plain.is_empty()
        && !p.starts_with('/')
        && !p.contains('\0')
        && !plain.contains('*')
        && plain
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if !ok {
        anyhow::bail!(
            "{flag} {path}: must be a path relative to the tree's root (like var or var/filestorage/Data.fs*), without `..`"
        );
    }
    Ok(p.to_string())
}

/// Keys of config files that name state, whatever the file's syntax
/// (zope.conf `<filestorage> path`, `blob-dir`, zdaemon `socket-name`...).
const KEYS: &[(&str, StateClass)] = &[
    ("blob-dir", StateClass::Data),
    ("blob_dir", StateClass::Data),
    ("blobstorage", StateClass::Data),
    ("pid-filename", StateClass::Runtime),
    ("lock-filename", StateClass::Runtime),
    ("socket-name", StateClass::Runtime),
    ("zdaemon-socket", StateClass::Runtime),
];

/// The state a config file's text names under one of `roots` (absolute
/// build roots): `(root-relative path, class)` pairs. A path after a
/// state key is taken as is (a directory for `blob-dir`); other paths
/// count by their suffix (`.fs`, `.log`, `.pid`, `.lock`, `.sock`), as a
/// prefix so the files beside them (`Data.fs.index`, `event.log.1`) are
/// covered too.
pub fn named_in_config(text: &str, roots: &[&str]) -> Vec<(String, StateClass)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let key = trimmed
            .split(|c: char| c.is_whitespace() || c == '=')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let key_class = KEYS.iter().find(|(k, _)| *k == key).map(|(_, c)| *c);
        for root in roots {
            let needle = format!("{root}/");
            let mut from = 0;
            while let Some(i) = line[from..].find(&needle) {
                let start = from + i;
                let rest = &line[start + needle.len()..];
                let end = rest
                    .find(|c: char| c.is_whitespace() || "'\",;)>]".contains(c))
                    .unwrap_or(rest.len());
                let rel = rest[..end].trim_end_matches('/');
                from = start + needle.len() + end;
                if rel.is_empty() || check_path(rel, "").is_err() {
                    continue;
                }
                let by_suffix = if rel.ends_with(".fs") {
                    Some(StateClass::Data)
                } else {
                    class_by_name(rel)
                };
                match (key_class, by_suffix) {
                    (Some(c), _) => out.push((rel.to_string(), c)),
                    (None, Some(c)) => out.push((format!("{rel}*"), c)),
                    _ => {}
                }
            }
        }
    }
    out
}

/// The default policy of the tree at `root`: `var/` (buildout's place for
/// data, logs and pid files) and `var/log`, when present, plus what
/// `configs` (root-relative text files naming a build root) name.
pub fn defaults(root: &Path, configs: &[String], roots: &[&str]) -> StatePolicy {
    let mut policy = StatePolicy::default();
    if root.join("var").is_dir() {
        policy.add("var", StateClass::Data, "default");
    }
    if root.join("var/log").is_dir() {
        policy.add("var/log", StateClass::Log, "default");
    }
    for rel in configs {
        let Ok(text) = std::fs::read(root.join(rel)) else {
            continue;
        };
        for (path, class) in named_in_config(&String::from_utf8_lossy(&text), roots) {
            policy.add(&path, class, rel);
        }
    }
    policy.sort();
    policy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> StatePolicy {
        let mut p = StatePolicy::default();
        p.add("var", StateClass::Data, "default");
        p.add("var/log", StateClass::Log, "default");
        p.add("parts/x/Data.fs*", StateClass::Data, "zope.conf");
        p
    }

    #[test]
    fn classes_by_longest_path_then_name() {
        let p = policy();
        assert_eq!(p.class_of("var"), Some(StateClass::Data));
        assert_eq!(
            p.class_of("var/filestorage/Data.fs"),
            Some(StateClass::Data)
        );
        assert_eq!(
            p.class_of("var/filestorage/Data.fs.lock"),
            Some(StateClass::Runtime)
        );
        assert_eq!(p.class_of("var/log/event.log"), Some(StateClass::Log));
        assert_eq!(p.class_of("var/log/old"), Some(StateClass::Log));
        assert_eq!(p.class_of("var/instance.pid"), Some(StateClass::Runtime));
        assert_eq!(p.class_of("variable/x"), None);
        assert_eq!(p.class_of("parts/x/Data.fs.index"), Some(StateClass::Data));
        assert_eq!(p.class_of("parts/x/other"), None);
        // Log names count only inside state.
        assert_eq!(p.class_of("eggs/x/test.log"), None);
        let mut q = p.clone();
        q.exclude("var/keep");
        assert_eq!(q.class_of("var/keep/a"), None);
        assert_eq!(q.class_of("var/other"), Some(StateClass::Data));
        assert_eq!(p.roots(), ["var", "parts/x/Data.fs*"]);
    }

    #[test]
    fn config_files_name_state() {
        let text = "\
<zodb_db main>
  <filestorage>
    path /b/app/var/filestorage/Data.fs
    blob-dir /b/app/var/blobstorage
  </filestorage>
</zodb_db>
pid-filename /b/app/parts/instance/Z4.pid
<logfile>
  path /b/app/parts/log/event.log
</logfile>
socket-name /b/app/parts/zd.sock
# path /b/app/commented.log
args = ('/b/app/var/log/access.log', 'a')
eggs /b/app/eggs/x.egg
";
        let got = named_in_config(text, &["/b/app"]);
        assert_eq!(
            got,
            [
                ("var/filestorage/Data.fs*".into(), StateClass::Data),
                ("var/blobstorage".into(), StateClass::Data),
                ("parts/instance/Z4.pid".into(), StateClass::Runtime),
                ("parts/log/event.log*".into(), StateClass::Log),
                ("parts/zd.sock".into(), StateClass::Runtime),
                ("var/log/access.log*".into(), StateClass::Log),
            ]
        );
    }

    #[test]
    fn options_are_checked() {
        assert_eq!(
            parse_option("var/db=data").unwrap(),
            ("var/db".into(), StateClass::Data)
        );
        assert_eq!(
            parse_option("./run/").unwrap(),
            ("run".into(), StateClass::Data)
        );
        assert_eq!(parse_option("x.log*=log").unwrap().0, "x.log*");
        for bad in ["/abs", "../x", "a/../b", "", "*", "a*b/c", "x=bogus"] {
            assert!(parse_option(bad).is_err(), "{bad}");
        }
    }
}
