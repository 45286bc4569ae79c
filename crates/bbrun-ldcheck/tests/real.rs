//! The emulated search against real files compiled with `cc`, and against
//! what the real loader (through `ldd`) says about them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bbrun_ldcheck::fs::{self, FileSource};
use bbrun_ldcheck::{machine, Config, Process, Via};

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

fn cc(args: &[&str]) {
    let out = Command::new("cc").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "cc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `dir/lib/libdep.so`, `dir/lib/libmid.so` (needs libdep, no search path
/// of its own), `dir/bin/app-rpath` and `dir/bin/app-runpath` (need libmid,
/// search `$ORIGIN/../lib` as DT_RPATH resp. DT_RUNPATH).
fn build(dir: &Path) {
    let s = |p: &str| dir.join(p).to_string_lossy().into_owned();
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("dep.c"), "int dep(void) { return 42; }\n").unwrap();
    std::fs::write(
        dir.join("mid.c"),
        "int dep(void);\nint mid(void) { return dep() + 1; }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("app.c"),
        "int mid(void);\nint main(void) { return mid() == 43 ? 0 : 1; }\n",
    )
    .unwrap();
    cc(&[
        "-shared",
        "-fPIC",
        "-Wl,-soname,libdep.so",
        "-o",
        &s("lib/libdep.so"),
        &s("dep.c"),
    ]);
    let libdir = format!("-L{}", s("lib"));
    cc(&[
        "-shared",
        "-fPIC",
        "-Wl,-soname,libmid.so",
        "-o",
        &s("lib/libmid.so"),
        &s("mid.c"),
        &libdir,
        "-ldep",
    ]);
    for (name, dtags) in [
        ("app-rpath", "--disable-new-dtags"),
        ("app-runpath", "--enable-new-dtags"),
    ] {
        let out = s(&format!("bin/{name}"));
        let flags = format!("-Wl,{dtags},-rpath,$ORIGIN/../lib");
        cc(&[
            "-o",
            &out,
            &s("app.c"),
            &libdir,
            "-lmid",
            "-Wl,--allow-shlib-undefined",
            &flags,
        ]);
    }
}

fn config() -> Config {
    let mut c = machine::this_machine().unwrap();
    // cargo puts its own directories there; the comparison runs ldd without.
    c.ld_library_path.clear();
    c
}

fn load(path: &Path) -> Process {
    let (obj, _) = fs::read(path).unwrap();
    let mut p = Process::new();
    p.load(obj, None, &config(), &mut FileSource::new());
    p
}

/// `ldd`'s answer: name -> resolved real path (None: "not found").
fn ldd(path: &Path) -> BTreeMap<String, Option<PathBuf>> {
    let out = Command::new("ldd")
        .arg(path)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let Some((name, rest)) = line.trim().split_once(" => ") else {
            continue;
        };
        let target = if rest.starts_with("not found") {
            None
        } else {
            rest.split(" (")
                .next()
                .map(|p| std::fs::canonicalize(p.trim()).unwrap())
        };
        map.insert(name.to_string(), target);
    }
    map
}

/// Every name the emulation resolved, as real paths, in ldd's shape (ldd
/// lists the loader itself by its PT_INTERP path, without a name).
fn ours(p: &Process) -> BTreeMap<String, Option<PathBuf>> {
    p.edges
        .iter()
        .filter(|e| !e.name.starts_with("ld-linux"))
        .map(|e| {
            let target =
                e.to.map(|i| std::fs::canonicalize(&p.nodes[i].object.path).unwrap());
            (e.name.clone(), target)
        })
        .collect()
}

#[test]
fn rpath_inherited_runpath_not_same_as_ldd() {
    if !have("cc") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let app = dir.path().join("bin/app-rpath");
    let p = load(&app);
    assert_eq!(p.missing(0).count(), 0, "{:?}", p.edges);
    let dep = p.edges.iter().find(|e| e.name == "libdep.so").unwrap();
    assert_eq!(dep.via, Some(Via::Rpath(app.clone())));
    let libc = p.edges.iter().find(|e| e.name == "libc.so.6").unwrap();
    assert!(matches!(
        libc.via,
        Some(Via::Cache | Via::DefaultDir | Via::Loaded)
    ));
    if have("ldd") {
        assert_eq!(ours(&p), ldd(&app));
    }

    let app = dir.path().join("bin/app-runpath");
    let p = load(&app);
    let missing: Vec<_> = p.missing(0).map(|e| e.name.as_str()).collect();
    assert_eq!(missing, vec!["libdep.so"]);
    if have("ldd") {
        assert_eq!(ours(&p), ldd(&app));
    }
}

#[test]
fn machine_libc_defines_glibc_versions() {
    let p = load(Path::new("/bin/sh"));
    let libc = p
        .nodes
        .iter()
        .find(|n| n.object.soname.as_deref() == Some("libc.so.6"))
        .unwrap();
    assert!(bbrun_ldcheck::versions::newest(&libc.object.version_defs, "GLIBC_").is_some());
    assert!(p.version_problems(0).is_empty());
}

#[test]
fn wrong_class_library_is_skipped() {
    // A 32-bit build may be impossible here (no multilib); skip then.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("w.c"), "int w(void) { return 1; }\n").unwrap();
    let out = Command::new("cc")
        .args(["-m32", "-shared", "-fPIC", "-o"])
        .arg(d.join("libw.so"))
        .arg(d.join("w.c"))
        .output();
    if !out.is_ok_and(|o| o.status.success()) {
        return;
    }
    let mut obj = bbrun_ldcheck::Object::new(d.join("user.so"), bbrun_ldcheck::Arch::X86_64);
    obj.needed = vec!["libw.so".into()];
    obj.rpath = Some(d.to_string_lossy().into_owned());
    let mut p = Process::new();
    p.load(obj, None, &config(), &mut FileSource::new());
    let m: Vec<_> = p.missing(0).collect();
    assert_eq!(m.len(), 1);
    assert!(m[0].rejected[0].1.contains("ELF32"));
}
