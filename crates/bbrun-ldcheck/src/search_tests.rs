//! Search-order cases over objects described in memory: each case puts a
//! library in several places and checks which one the emulated loader
//! takes, per glibc's rules.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::cache::CacheEntry;
use crate::expand::Tokens;
use crate::object::{Arch, Object, Probe, Source, VersionNeed};
use crate::search::{Config, Process, Via};

#[derive(Default)]
struct Mem(HashMap<PathBuf, Object>);

impl Source for Mem {
    fn open(&mut self, path: &Path) -> Probe {
        // Like the file system: `..` resolves, the object keeps the path
        // it was opened by.
        let mut norm = PathBuf::new();
        for c in path.components() {
            match c {
                std::path::Component::ParentDir => {
                    norm.pop();
                }
                std::path::Component::CurDir => {}
                c => norm.push(c),
            }
        }
        match self.0.get(&norm) {
            Some(o) => Probe::Found(Object {
                path: path.to_path_buf(),
                ..o.clone()
            }),
            None => Probe::Missing,
        }
    }
}

impl Mem {
    fn lib(&mut self, path: &str) -> &mut Object {
        self.lib_arch(path, Arch::X86_64)
    }
    fn lib_arch(&mut self, path: &str, arch: Arch) -> &mut Object {
        let name = Path::new(path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mut o = Object::new(path, arch);
        o.soname = Some(name);
        self.0.entry(PathBuf::from(path)).or_insert(o)
    }
}

fn config() -> Config {
    Config {
        ld_library_path: vec![],
        cache: vec![],
        default_dirs: vec!["/lib".into(), "/usr/lib".into()],
        tokens: Tokens {
            lib: "lib64".into(),
            platform: "x86_64".into(),
        },
    }
}

fn exe(needed: &[&str]) -> Object {
    let mut o = Object::new("/app/bin/exe", Arch::X86_64);
    o.needed = needed.iter().map(|s| s.to_string()).collect();
    o
}

/// Load `root` and return where `name` came from.
fn resolve(root: Object, mem: &mut Mem, cfg: &Config, name: &str) -> Option<(PathBuf, Via)> {
    let mut p = Process::new();
    p.load(root, None, cfg, mem);
    let e = p.edges.iter().find(|e| e.name == name)?;
    e.to.map(|i| (p.nodes[i].object.path.clone(), e.via.clone().unwrap()))
}

#[test]
fn rpath_beats_ld_library_path_beats_cache_beats_default() {
    let mut mem = Mem::default();
    for d in ["/r", "/l", "/c", "/lib"] {
        mem.lib(&format!("{d}/libx.so.1"));
    }
    let mut cfg = config();
    cfg.cache = vec![CacheEntry {
        name: "libx.so.1".into(),
        path: "/c/libx.so.1".into(),
        flags: 0x0303,
        hwcap: 0,
    }];
    let mut e = exe(&["libx.so.1"]);
    assert_eq!(
        resolve(e.clone(), &mut mem, &cfg, "libx.so.1").unwrap().1,
        Via::Cache
    );
    cfg.ld_library_path = vec!["/nowhere".into(), "/l".into()];
    let got = resolve(e.clone(), &mut mem, &cfg, "libx.so.1").unwrap();
    assert_eq!(got, (PathBuf::from("/l/libx.so.1"), Via::LdLibraryPath));
    e.rpath = Some("/r".into());
    let got = resolve(e.clone(), &mut mem, &cfg, "libx.so.1").unwrap();
    assert_eq!(got.0, PathBuf::from("/r/libx.so.1"));
    cfg.ld_library_path.clear();
    cfg.cache.clear();
    e.rpath = None;
    assert_eq!(
        resolve(e, &mut mem, &cfg, "libx.so.1").unwrap().1,
        Via::DefaultDir
    );
}

#[test]
fn runpath_disables_rpath_and_comes_after_ld_library_path() {
    let mut mem = Mem::default();
    for d in ["/r", "/l", "/u"] {
        mem.lib(&format!("{d}/libx.so.1"));
    }
    let mut cfg = config();
    let mut e = exe(&["libx.so.1"]);
    e.rpath = Some("/r".into());
    e.runpath = Some("/u".into());
    let got = resolve(e.clone(), &mut mem, &cfg, "libx.so.1").unwrap();
    assert_eq!(got, (PathBuf::from("/u/libx.so.1"), Via::Runpath));
    cfg.ld_library_path = vec!["/l".into()];
    let got = resolve(e, &mut mem, &cfg, "libx.so.1").unwrap();
    assert_eq!(got.1, Via::LdLibraryPath);
}

#[test]
fn rpath_is_inherited_runpath_is_not() {
    let mut mem = Mem::default();
    mem.lib("/deps/liba.so.1").needed = vec!["libb.so.1".into()];
    mem.lib("/deps/libb.so.1");
    let cfg = config();
    let mut e = exe(&["liba.so.1"]);
    e.rpath = Some("/deps".into());
    let got = resolve(e.clone(), &mut mem, &cfg, "libb.so.1").unwrap();
    assert_eq!(got.1, Via::Rpath(PathBuf::from("/app/bin/exe")));
    e.rpath = None;
    e.runpath = Some("/deps".into());
    assert_eq!(resolve(e.clone(), &mut mem, &cfg, "libb.so.1"), None);
    // liba with its own RUNPATH ignores every inherited RPATH.
    e.runpath = None;
    e.rpath = Some("/deps".into());
    mem.lib("/deps/liba.so.1").runpath = Some("/elsewhere".into());
    assert_eq!(resolve(e, &mut mem, &cfg, "libb.so.1"), None);
}

#[test]
fn dlopened_module_inherits_loader_chain_and_main_rpath() {
    // python (RPATH /py/lib) dlopens an extension needing libpy-only.so.
    let mut mem = Mem::default();
    mem.lib("/py/lib/libonly.so.1");
    let cfg = config();
    let mut python = Object::new("/py/bin/python", Arch::X86_64);
    python.rpath = Some("$ORIGIN/../lib".into());
    let mut p = Process::new();
    let main = p.load(python, None, &cfg, &mut mem);
    let mut ext = Object::new("/tree/pkg/_ext.so", Arch::X86_64);
    ext.needed = vec!["libonly.so.1".into()];
    let first = p.nodes.len();
    p.load(ext, Some(main), &cfg, &mut mem);
    assert_eq!(p.missing(first).count(), 0);
    let e = p.edges.iter().find(|e| e.name == "libonly.so.1").unwrap();
    assert_eq!(
        p.nodes[e.to.unwrap()].object.path,
        Path::new("/py/bin/../lib/libonly.so.1")
    );
}

#[test]
fn origin_in_rpath_and_in_needed() {
    let mut mem = Mem::default();
    mem.lib("/tree/.libs/libv.so.2");
    mem.lib("/tree/pkg/libdirect.so");
    let cfg = config();
    let mut ext = Object::new("/tree/pkg/_ext.so", Arch::X86_64);
    ext.rpath = Some("${ORIGIN}/../.libs".into());
    ext.needed = vec!["libv.so.2".into(), "$ORIGIN/libdirect.so".into()];
    let mut p = Process::new();
    p.load(ext, None, &cfg, &mut mem);
    assert_eq!(p.missing(0).count(), 0);
    assert_eq!(p.edges[1].via, Some(Via::Path));
}

#[test]
fn wrong_class_is_skipped_and_reported() {
    let mut mem = Mem::default();
    let i386 = Arch {
        class64: false,
        little_endian: true,
        machine: 3,
    };
    mem.lib_arch("/lib/libw.so.1", i386);
    mem.lib("/usr/lib/libw.so.1");
    let cfg = config();
    let mut p = Process::new();
    p.load(exe(&["libw.so.1"]), None, &cfg, &mut mem);
    let e = &p.edges[0];
    assert_eq!(
        p.nodes[e.to.unwrap()].object.path,
        Path::new("/usr/lib/libw.so.1")
    );
    assert_eq!(e.rejected.len(), 1);
    mem.0.remove(Path::new("/usr/lib/libw.so.1"));
    let mut p = Process::new();
    p.load(exe(&["libw.so.1"]), None, &cfg, &mut mem);
    let missing: Vec<_> = p.missing(0).collect();
    assert_eq!(missing.len(), 1);
    assert!(
        missing[0].rejected[0].1.contains("ELF32"),
        "{:?}",
        missing[0].rejected
    );
}

#[test]
fn loaded_soname_satisfies_later_requests_breadth_first() {
    // exe needs liba (RPATH finds libc in /special) and libb, which needs
    // libshared.so.1 without any RPATH: it gets the copy already loaded.
    let mut mem = Mem::default();
    mem.lib("/lib/liba.so.1").needed = vec!["libshared.so.1".into()];
    mem.lib("/lib/liba.so.1").rpath = Some("/special".into());
    mem.lib("/lib/libb.so.1").needed = vec!["libshared.so.1".into()];
    mem.lib("/special/libshared.so.1");
    let cfg = config();
    let mut p = Process::new();
    p.load(exe(&["liba.so.1", "libb.so.1"]), None, &cfg, &mut mem);
    assert_eq!(p.missing(0).count(), 0);
    let last = p
        .edges
        .iter()
        .rfind(|e| e.name == "libshared.so.1")
        .unwrap();
    assert_eq!(last.via, Some(Via::Loaded));
    assert_eq!(p.nodes.len(), 4);
}

#[test]
fn version_needs_checked_against_resolved_provider() {
    let mut mem = Mem::default();
    mem.lib("/lib/libc.so.6").version_defs = vec![
        "GLIBC_2.2.5".into(),
        "GLIBC_2.34".into(),
        "GLIBC_2.36".into(),
    ];
    let cfg = config();
    let mut e = exe(&["libc.so.6"]);
    e.version_needs = vec![VersionNeed {
        file: "libc.so.6".into(),
        versions: vec!["GLIBC_2.34".into(), "GLIBC_2.39".into()],
    }];
    let mut p = Process::new();
    p.load(e, None, &cfg, &mut mem);
    let probs = p.version_problems(0);
    assert_eq!(probs.len(), 1);
    assert_eq!(probs[0].missing, vec!["GLIBC_2.39".to_string()]);
    assert_eq!(probs[0].newest_available.as_deref(), Some("GLIBC_2.36"));
}
