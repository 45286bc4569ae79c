//! Finding a Python interpreter compatible with the one a tree was built
//! with.
//!
//! Compatibility is judged on what a built tree depends on: implementation,
//! `major.minor`, the extension ABI tag (SOABI) and the platform. Asking an
//! interpreter costs a process start (~15 ms), too much before every script,
//! so answers are cached per user, keyed by the binary's identity (device,
//! inode, size, mtime): a replaced interpreter is asked again.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use bbrun_map::map::Interpreter;
use bbrun_util::fsutil;

/// What an interpreter says about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Probe {
    pub implementation: String,
    pub version: String,
    pub major_minor: String,
    pub cache_tag: String,
    pub soabi: String,
    pub platform: String,
    /// `sys._base_executable`: the real binary behind a venv's python.
    pub base_executable: String,
}

/// The probe program; `-S -E -s` keep site and the environment out so the
/// answer describes the binary, not the current venv or PYTHONPATH.
const PROBE_CODE: &str = "import sys, sysconfig, json; print(json.dumps({\
'implementation': sys.implementation.name, \
'version': '%d.%d.%d' % sys.version_info[:3], \
'major_minor': '%d.%d' % sys.version_info[:2], \
'cache_tag': sys.implementation.cache_tag or '', \
'soabi': sysconfig.get_config_var('SOABI') or '', \
'platform': sysconfig.get_platform(), \
'base_executable': getattr(sys, '_base_executable', sys.executable)}))";

/// Run `python` and ask it what it is (uncached).
pub fn probe_uncached(python: &Path) -> Result<Probe> {
    let out = Command::new(python)
        .args(["-S", "-E", "-s", "-c", PROBE_CODE])
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .output()
        .with_context(|| format!("{}: cannot run", python.display()))?;
    if !out.status.success() {
        bail!(
            "{}: does not run as a Python interpreter ({})",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("no output")
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "{}: unexpected answer to the interpreter probe",
            python.display()
        )
    })
}

/// Why a candidate was not used; collected into the final error.
#[derive(Debug)]
pub struct Rejection {
    pub path: PathBuf,
    pub reason: String,
}

/// Compare a probe with what the tree needs; `None` when compatible.
pub fn incompatibility(want: &Interpreter, got: &Probe) -> Option<String> {
    if got.implementation != want.implementation {
        return Some(format!(
            "is {}, not {}",
            got.implementation, want.implementation
        ));
    }
    if got.major_minor != want.major_minor {
        return Some(format!(
            "is {} {}, need {}",
            got.implementation, got.version, want.major_minor
        ));
    }
    if !want.soabi.is_empty() && !got.soabi.is_empty() && got.soabi != want.soabi {
        return Some(format!("ABI {} differs from {}", got.soabi, want.soabi));
    }
    if got.platform != want.platform {
        return Some(format!(
            "platform {} differs from {}",
            got.platform, want.platform
        ));
    }
    None
}

/// Per-user cache of probes, a small JSON file.
pub struct ProbeCache {
    path: Option<PathBuf>,
    entries: BTreeMap<String, CachedProbe>,
    dirty: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedProbe {
    identity: (u64, u64, u64, i64, i64),
    probe: Probe,
}

impl ProbeCache {
    /// The safe per-user cache directory (see [`crate::safedir`]); none
    /// when no candidate is safe, which only costs speed here.
    pub fn default_location() -> Option<PathBuf> {
        crate::safedir::cache_dir().ok()
    }

    pub fn load() -> ProbeCache {
        let path = Self::default_location().map(|d| d.join("interpreters.json"));
        let entries = path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        ProbeCache {
            path,
            entries,
            dirty: false,
        }
    }

    /// The checked per-user cache directory this cache lives in, if any:
    /// the shim keeps compiled scripts there too (`BBRUN_CODE_CACHE`).
    pub fn dir(&self) -> Option<&Path> {
        self.path.as_deref().and_then(Path::parent)
    }

    /// Probe `python`, from the cache when its binary is unchanged.
    ///
    /// A hit is found by the binary's identity, which `stat` gives through
    /// any links: resolving them (a venv's `python` -> `python3` -> the
    /// base binary, a `readlink` per path component) cost the launcher
    /// ~20 us at every launch. Only a miss resolves the path, to name the
    /// entry.
    pub fn probe(&mut self, python: &Path) -> Result<Probe> {
        let meta = std::fs::metadata(python)
            .with_context(|| format!("{}: not found", python.display()))?;
        self.probe_with(python, &meta)
    }

    /// [`Self::probe`] for a candidate that must be an executable binary
    /// ([`is_executable_binary`]); `None` when it is not one. One `stat`
    /// serves both questions.
    pub fn probe_binary(&mut self, python: &Path) -> Option<Result<Probe>> {
        let meta = binary_metadata(python)?;
        Some(self.probe_with(python, &meta))
    }

    fn probe_with(&mut self, python: &Path, meta: &std::fs::Metadata) -> Result<Probe> {
        let identity = (
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
        );
        if let Some(hit) = self.entries.values().find(|e| e.identity == identity) {
            return Ok(hit.probe.clone());
        }
        let real = std::fs::canonicalize(python)
            .with_context(|| format!("{}: not found", python.display()))?;
        let key = real.to_string_lossy().into_owned();
        let probe = probe_uncached(python)?;
        self.entries.insert(
            key,
            CachedProbe {
                identity,
                probe: probe.clone(),
            },
        );
        self.dirty = true;
        Ok(probe)
    }

    /// Save new answers. A cache that cannot be written only costs speed.
    pub fn save(&self) {
        let (Some(path), true) = (&self.path, self.dirty) else {
            return;
        };
        if let Ok(bytes) = serde_json::to_vec(&self.entries) {
            let _ = fsutil::atomic_write(path, &bytes, 0o644);
        }
        if let Some(dir) = path.parent() {
            crate::debris::sweep_dir(dir);
        }
    }
}

/// The places to look, in order (a place may come twice; the search skips
/// a repeat): `$BBRUN_PYTHON`, the bundled interpreter,
/// the original path, interpreters in the tree, map-listed candidates, then
/// `pythonX.Y`, `python3`, `python` on `PATH`.
///
/// Made as the search asks: it nearly always stops at the first place, and
/// joining every `PATH` directory with every name up front cost each launch
/// ~45k instructions.
pub fn candidates<'a>(root: &'a Path, want: &'a Interpreter) -> impl Iterator<Item = PathBuf> + 'a {
    candidates_from(root, want, std::env::var_os("BBRUN_PYTHON"), || {
        std::env::var_os("PATH")
    })
}

/// [`candidates`] with `$BBRUN_PYTHON` and `$PATH` (read only if reached)
/// given.
fn candidates_from<'a>(
    root: &'a Path,
    want: &'a Interpreter,
    explicit: Option<OsString>,
    path_var: impl FnOnce() -> Option<OsString> + 'a,
) -> impl Iterator<Item = PathBuf> + 'a {
    // An explicit choice is the only candidate: silently falling back
    // would hide the user's mistake.
    let explicit = explicit.filter(|p| !p.is_empty());
    let search = explicit.is_none();
    let names = move || {
        [
            format!("python{}", want.major_minor),
            "python3".into(),
            "python".into(),
        ]
    };
    let searched = search.then(move || {
        let mut path_var = Some(path_var);
        let on_path = std::iter::once(()).flat_map(move |()| {
            let path_var = path_var.take().expect("reached once");
            let dirs: Vec<PathBuf> = path_var()
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default();
            names()
                .into_iter()
                .flat_map(move |name| dirs.iter().map(|d| d.join(&name)).collect::<Vec<_>>())
        });
        want.bundled
            .iter()
            .map(|b| root.join(b))
            .chain(std::iter::once(PathBuf::from(&want.path)))
            .chain(names().into_iter().map(|n| root.join("bin").join(n)))
            .chain(want.candidates.iter().map(PathBuf::from))
            .chain(on_path)
    });
    explicit
        .map(PathBuf::from)
        .into_iter()
        .chain(searched.into_iter().flatten())
}

/// Pick the first compatible interpreter, or fail with one line naming
/// what was looked for and where.
pub fn find_compatible(root: &Path, want: &Interpreter, cache: &mut ProbeCache) -> Result<PathBuf> {
    let mut rejected: Vec<Rejection> = Vec::new();
    // Repeats are skipped as they come: the search nearly always ends at
    // the first candidate, and deduplicating the whole list up front (a
    // few dozen paths from PATH) cost every launch more than the rest of
    // choosing the interpreter.
    let mut tried: Vec<PathBuf> = Vec::new();
    for cand in candidates(root, want) {
        if tried.iter().any(|t| t.as_os_str() == cand.as_os_str()) {
            continue;
        }
        tried.push(cand.clone());
        let Some(probed) = cache.probe_binary(&cand) else {
            if cand.exists() {
                rejected.push(Rejection {
                    path: cand,
                    reason: "not an executable binary".into(),
                });
            }
            continue;
        };
        match probed {
            Ok(probe) => match incompatibility(want, &probe) {
                None => return Ok(cand),
                Some(reason) => rejected.push(Rejection { path: cand, reason }),
            },
            Err(e) => rejected.push(Rejection {
                path: cand,
                reason: format!("{e:#}"),
            }),
        }
    }
    let looked = if rejected.is_empty() {
        format!(
            "none of {} (original), the tree's bin/, the map's candidates or PATH exists",
            want.path
        )
    } else {
        rejected
            .iter()
            .map(|r| format!("{} {}", r.path.display(), r.reason))
            .collect::<Vec<_>>()
            .join("; ")
    };
    bail!(
        "no compatible Python found: need {} {} (ABI {}, {}); looked at: {looked}; install one or set BBRUN_PYTHON",
        want.implementation,
        want.major_minor,
        if want.soabi.is_empty() { "any" } else { &want.soabi },
        want.platform
    )
}

/// A real binary (ELF), not a script: `bin/python` in a buildout may be an
/// interpreter *script* that would recurse into the launcher.
pub fn is_executable_binary(path: &Path) -> bool {
    binary_metadata(path).is_some()
}

/// The metadata of `path` if it is an executable binary.
fn binary_metadata(path: &Path) -> Option<std::fs::Metadata> {
    use std::io::Read;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.mode() & 0o111 == 0 {
        return None;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|_| &magic == b"\x7fELF")
        .then_some(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want() -> Interpreter {
        let mut i = bbrun_map::map::test_map("/x").interpreter;
        i.path = "/x/python3".into();
        i.version = "3.11.7".into();
        i
    }

    #[test]
    fn candidates_come_in_order_and_path_is_read_only_when_reached() {
        let mut want = want();
        want.major_minor = "3.11".into();
        want.bundled = Some(".bbrun/python/bin/python3.11".into());
        want.candidates = vec!["/opt/py/bin/python3.11".into()];
        let root = Path::new("/t");
        let path_read = std::cell::Cell::new(false);
        let path_var = || {
            path_read.set(true);
            Some(OsString::from("/a:/b"))
        };
        let mut found = candidates_from(root, &want, None, path_var);
        assert_eq!(
            found.next().unwrap(),
            Path::new("/t/.bbrun/python/bin/python3.11")
        );
        assert!(
            !path_read.get(),
            "PATH read before its candidates were reached"
        );
        let rest: Vec<PathBuf> = found.collect();
        assert!(path_read.get());
        let want_rest = [
            "/x/python3",
            "/t/bin/python3.11",
            "/t/bin/python3",
            "/t/bin/python",
            "/opt/py/bin/python3.11",
            "/a/python3.11",
            "/b/python3.11",
            "/a/python3",
            "/b/python3",
            "/a/python",
            "/b/python",
        ];
        assert_eq!(rest, want_rest.map(PathBuf::from));
        let only: Vec<PathBuf> =
            candidates_from(root, &want, Some("/mine/python".into()), || None).collect();
        assert_eq!(only, [PathBuf::from("/mine/python")]);
        let empty_is_unset: Vec<PathBuf> =
            candidates_from(root, &want, Some("".into()), || None).collect();
        assert_eq!(empty_is_unset.len(), 6);
    }

    fn probe(mm: &str, soabi: &str) -> Probe {
        Probe {
            implementation: "cpython".into(),
            version: format!("{mm}.1"),
            major_minor: mm.into(),
            cache_tag: String::new(),
            soabi: soabi.into(),
            platform: "linux-x86_64".into(),
            base_executable: String::new(),
        }
    }

    #[test]
    fn same_minor_same_abi_is_compatible() {
        assert_eq!(
            incompatibility(&want(), &probe("3.11", "cpython-311-x86_64-linux-gnu")),
            None
        );
    }

    #[test]
    fn other_minor_or_abi_is_not() {
        assert!(
            incompatibility(&want(), &probe("3.12", "cpython-312-x86_64-linux-gnu"))
                .unwrap()
                .contains("need 3.11")
        );
        assert!(
            incompatibility(&want(), &probe("3.11", "cpython-311d-x86_64-linux-gnu"))
                .unwrap()
                .contains("ABI")
        );
    }

    #[test]
    fn real_interpreter_probes() {
        let Some(py) = std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|d| d.join("python3"))
            .find(|p| p.exists())
        else {
            return;
        };
        let p = probe_uncached(&py).unwrap();
        assert!(p.major_minor.starts_with("3."));
        assert!(!p.cache_tag.is_empty());
    }

    /// A cached answer is found by the binary's identity, through any link
    /// to it; a changed binary is asked again. The "binary" here is a
    /// file that cannot run, so any probe that is not a cache hit fails.
    #[test]
    fn cached_probe_is_found_through_links_and_dropped_on_change() {
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().join("python3.11");
        std::fs::write(&bin, "not an interpreter").unwrap();
        let link = t.path().join("python");
        std::os::unix::fs::symlink(&bin, &link).unwrap();
        let m = std::fs::metadata(&bin).unwrap();
        let mut cache = ProbeCache {
            path: None,
            entries: BTreeMap::new(),
            dirty: false,
        };
        cache.entries.insert(
            bin.to_string_lossy().into_owned(),
            CachedProbe {
                identity: (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()),
                probe: probe("3.11", "cpython-311-x86_64-linux-gnu"),
            },
        );
        assert_eq!(cache.probe(&link).unwrap().major_minor, "3.11");
        assert_eq!(cache.probe(&bin).unwrap().major_minor, "3.11");
        // Another size: two writes may share an mtime tick.
        std::fs::write(&bin, "another, longer binary").unwrap();
        assert!(cache.probe(&link).is_err());
    }
}
