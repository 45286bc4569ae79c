//! What a system package (.deb, .rpm) of a frozen tree holds beyond the
//! tree itself, and the metadata defaults: the packaged copy is the tree
//! relocated for its install prefix, with the launcher inside it.
//!
//! Only the packaged copies change; the tree on disk is never touched:
//! - recorded text files (`rewrite-on-relocate`) name the prefix,
//! - the map is the relocated map (files root = prefix),
//! - this bbrun is packaged at `PREFIX/.bbrun/bin/bbrun`,
//! - each script's line 1 runs that launcher; the rest is byte-identical.

use std::path::Path;

use anyhow::{bail, Context, Result};
use bbrun_archive::manifest::EntryKind;
use bbrun_archive::packset::PackSet;

use bbrun_map::map::{self, Action, RelocationMap};
use bbrun_map::relocate;
use bbrun_run::shebang;

/// Where the launcher goes inside a packaged tree.
pub const PACKAGED_LAUNCHER: &str = ".bbrun/bin/bbrun";

/// Make `set` (the tree at `root`, frozen as `map`) the content of a
/// package installed at `prefix`. Returns how many files were rewritten.
pub fn prepare_for_prefix(
    set: &mut PackSet,
    root: &Path,
    map: &RelocationMap,
    prefix: &str,
) -> Result<usize> {
    let mut changed = 0;
    let pairs = relocate::rewrite_pairs(map, Path::new(prefix));
    let inv_path = map::inventory_path(root);
    if inv_path.exists() {
        for entry in map::load_inventory(&inv_path)?.files {
            if entry.action != Action::RewriteOnRelocate
                || !is_file(set, &entry.path)
                || map.state.is_state(&entry.path)
            {
                continue;
            }
            let path = root.join(&entry.path);
            let bytes =
                std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            if let Some(new) = relocate::rewrite_text(&bytes, &pairs) {
                set.put_file(&entry.path, new, None)?;
                changed += 1;
            }
        }
    }

    let relocated = relocate::relocated_map(map, Path::new(prefix));
    set.put_file(&map_rel(), map_text(&relocated)?.into_bytes(), None)?;

    let exe = std::env::current_exe().context("cannot find the running bbrun binary")?;
    let bin = std::fs::read(&exe).with_context(|| format!("{}: cannot read", exe.display()))?;
    set.put_file(PACKAGED_LAUNCHER, bin, Some(0o755))?;

    let launcher = Path::new(prefix).join(PACKAGED_LAUNCHER);
    let line = shebang::launcher_line(Some(&launcher));
    for script in &map.scripts {
        if !is_file(set, &script.path) {
            continue;
        }
        let path = root.join(&script.path);
        let bytes =
            std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        let (first, body) = shebang::split_first_line(&bytes);
        if !first.starts_with(b"#!") {
            continue;
        }
        let mut out = Vec::with_capacity(line.len() + 1 + body.len());
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(body);
        set.put_file(&script.path, out, None)?;
        changed += 1;
    }
    Ok(changed)
}

/// The tree's configuration files, which a package marks as conffiles
/// (deb) or `%config(noreplace)` (rpm) so an admin's edits survive an
/// upgrade: the config files the inventory records (zope.conf, wsgi.ini
/// ...) and buildout.cfg, when packed as regular files.
pub fn config_files(set: &PackSet, root: &Path, map: &RelocationMap) -> Result<Vec<String>> {
    let mut out = vec![];
    let inv_path = map::inventory_path(root);
    if inv_path.exists() {
        for e in map::load_inventory(&inv_path)?.files {
            if e.kind == map::FileKind::Config && !e.path.starts_with(map::STATE_DIR) {
                out.push(e.path);
            }
        }
    }
    out.push("buildout.cfg".to_string());
    out.retain(|p| {
        set.get(p)
            .is_some_and(|e| e.kind == EntryKind::File && !map.state.is_state(p))
    });
    out.sort();
    out.dedup();
    Ok(out)
}

fn is_file(set: &PackSet, path: &str) -> bool {
    set.get(path)
        .is_some_and(|e| matches!(e.kind, EntryKind::File | EntryKind::Hardlink))
}

fn map_rel() -> String {
    format!("{}/{}", map::STATE_DIR, map::MAP_FILE)
}

/// The map as `map::save` writes it.
fn map_text(m: &RelocationMap) -> Result<String> {
    let text = toml::to_string_pretty(m).context("serialising relocation map")?;
    Ok(format!(
        "# bbrun relocation map: written by `bbrun freeze`, read by the launcher.\n# Reference: docs/relocation-map.md\n{text}"
    ))
}

/// An install prefix: absolute, normalized, not `/`, no whitespace (it
/// ends up in shebang lines) and no `..`.
pub fn check_prefix(prefix: &str) -> Result<String> {
    let p = prefix.trim_end_matches('/');
    if !p.starts_with('/')
        || p.is_empty()
        || p.contains(char::is_whitespace)
        || p.contains('\0')
        || p.split('/')
            .skip(1)
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        bail!("--prefix {prefix:?} must be an absolute directory path like /opt/myapp, without spaces, `.` or `..`");
    }
    Ok(p.to_string())
}

/// A package name from a directory name: lowercase, other characters `-`.
pub fn default_name(root: &Path) -> String {
    let base = root
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    name = name
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    name
}

/// This machine's architecture in Debian's and RPM's spellings.
pub fn machine_arch() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", "x86_64"),
        "aarch64" => ("arm64", "aarch64"),
        "x86" => ("i386", "i686"),
        "arm" => ("armhf", "armv7hl"),
        "powerpc64" => ("ppc64el", "ppc64le"),
        "s390x" => ("s390x", "s390x"),
        "riscv64" => ("riscv64", "riscv64"),
        other => (other, other),
    }
}

/// The dependency on the interpreter a tree needs when it does not bundle
/// one: Debian's versioned interpreter package (`python3.11`), and RPM's
/// `python(abi) = 3.11`, which every Fedora/RHEL/SUSE CPython package of
/// that version provides whatever its package name (`python3`,
/// `python3.11`). `None` for a bundled interpreter or a non-CPython one
/// (no common package name to depend on).
pub fn interpreter_depends(map: &RelocationMap) -> Option<(String, String)> {
    let i = &map.interpreter;
    if i.bundled.is_some() || i.implementation != "cpython" || i.major_minor.is_empty() {
        return None;
    }
    Some((
        format!("python{}", i.major_minor),
        format!("python(abi) = {}", i.major_minor),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bbrun_map::map::{BuildRoot, FileKind, Interpreter, Inventory, InventoryEntry, Script};

    fn frozen(root: &Path) -> RelocationMap {
        let build = "/build/app".to_string();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join(".bbrun")).unwrap();
        std::fs::write(
            root.join("bin/app"),
            "#!/build/venv/bin/python3 -s\nimport x  # /build/app\n",
        )
        .unwrap();
        std::fs::write(root.join(".installed.cfg"), "[b]\ndirectory = /build/app\n").unwrap();
        std::fs::write(root.join("untouched.cfg"), "dir = /build/app\n").unwrap();
        let map = RelocationMap {
            format: map::FORMAT_VERSION,
            bbrun_version: "0".into(),
            build: BuildRoot {
                root: build.clone(),
                root_realpath: build,
                previous_roots: vec![],
                files_root: None,
            },
            interpreter: Interpreter {
                path: "/build/venv/bin/python3".into(),
                implementation: "cpython".into(),
                version: "3.11.2".into(),
                major_minor: "3.11".into(),
                cache_tag: "cpython-311".into(),
                soabi: "x".into(),
                platform: "linux-x86_64".into(),
                candidates: vec![],
                bundled: None,
                site_dirs: None,
                links: vec![],
            },
            scripts: vec![Script {
                path: "bin/app".into(),
                shebang: "#!/build/venv/bin/python3 -s".into(),
                options: vec!["-s".into()],
                body_sha256: String::new(),
                buildout: false,
            }],
            prefixes: vec![],
            state: Default::default(),
        };
        map::save(&map::map_path(root), &map).unwrap();
        let inv = Inventory {
            files: vec![InventoryEntry {
                path: ".installed.cfg".into(),
                kind: FileKind::InstalledCfg,
                action: Action::RewriteOnRelocate,
            }],
        };
        map::save_inventory(&map::inventory_path(root), &inv).unwrap();
        map
    }

    fn content(set: &PackSet, path: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut r = bbrun_archive::packset::open_checked(set.get(path).unwrap()).unwrap();
        std::io::Read::read_to_end(&mut r, &mut out).unwrap();
        out
    }

    #[test]
    fn packaged_copy_is_relocated_and_the_tree_untouched() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let map = frozen(root);
        let before = std::fs::read(root.join("bin/app")).unwrap();
        let mut set = PackSet::from_tree(root).unwrap();
        let n = prepare_for_prefix(&mut set, root, &map, "/opt/app").unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            content(&set, ".installed.cfg"),
            b"[b]\ndirectory = /opt/app\n"
        );
        assert_eq!(content(&set, "untouched.cfg"), b"dir = /build/app\n");
        // Line 1 runs the packaged launcher; the body is byte-identical.
        assert_eq!(
            content(&set, "bin/app"),
            b"#!/opt/app/.bbrun/bin/bbrun\nimport x  # /build/app\n"
        );
        assert_eq!(
            set.get("bin/app").unwrap().mode,
            std::fs::metadata(root.join("bin/app"))
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
                .unwrap()
        );
        let packed_map = map::parse(
            std::str::from_utf8(&content(&set, ".bbrun/map.toml")).unwrap(),
            Path::new("map.toml"),
        )
        .unwrap();
        assert_eq!(packed_map.files_root(), Path::new("/opt/app"));
        let launcher = set.get(PACKAGED_LAUNCHER).unwrap();
        assert_eq!(launcher.mode, 0o755);
        assert!(launcher.size > 0);
        // Nothing on disk changed.
        assert_eq!(std::fs::read(root.join("bin/app")).unwrap(), before);
        assert!(!root.join(PACKAGED_LAUNCHER).exists());
        assert_eq!(interpreter_depends(&map).unwrap().1, "python(abi) = 3.11");
    }

    #[test]
    fn prefixes_are_checked() {
        assert_eq!(check_prefix("/opt/app/").unwrap(), "/opt/app");
        for bad in ["opt/app", "/", "/opt/../x", "/opt//x", "/opt/my app"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_from_directories() {
        assert_eq!(default_name(Path::new("/srv/My_App")), "my-app");
        assert_eq!(default_name(Path::new("/srv/_x_")), "x");
    }
}
