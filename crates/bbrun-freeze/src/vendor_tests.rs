//! `vendor_into` on libraries compiled here with `cc`.

use std::path::Path;
use std::process::Command;

use bbrun_ldcheck::fs::{self as ldfs, FileSource};
use bbrun_ldcheck::{machine, Process};

use crate::vendor::{vendor_into, For};

fn cc(args: &[&str]) -> bool {
    Command::new("cc")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `ext/libv1.so` (needs libv2.so, RUNPATH `$ORIGIN`), `ext/libv2.so`, and
/// `tree/pkg/_m.so` needing libv1.so with no search path of its own (found
/// through LD_LIBRARY_PATH at freeze time).
fn build(d: &Path) -> bool {
    let s = |p: &str| d.join(p).to_string_lossy().into_owned();
    std::fs::create_dir_all(d.join("ext")).unwrap();
    std::fs::create_dir_all(d.join("tree/pkg")).unwrap();
    std::fs::write(d.join("v2.c"), "int v2(void) { return 2; }\n").unwrap();
    std::fs::write(
        d.join("v1.c"),
        "int v2(void);\nint v1(void) { return v2(); }\n",
    )
    .unwrap();
    std::fs::write(
        d.join("m.c"),
        "int v1(void);\nint m(void) { return v1(); }\n",
    )
    .unwrap();
    let ext = format!("-L{}", s("ext"));
    cc(&[
        "-shared",
        "-fPIC",
        "-Wl,-soname,libv2.so",
        "-o",
        &s("ext/libv2.so"),
        &s("v2.c"),
    ]) && cc(&[
        "-shared",
        "-fPIC",
        "-Wl,-soname,libv1.so",
        "-Wl,--enable-new-dtags,-rpath,$ORIGIN",
        "-o",
        &s("ext/libv1.so"),
        &s("v1.c"),
        &ext,
        "-lv2",
    ]) && cc(&[
        "-shared",
        "-fPIC",
        "-o",
        &s("tree/pkg/_m.so"),
        &s("m.c"),
        &ext,
        "-lv1",
    ])
}

#[test]
fn vendors_transitively_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    if !build(d) {
        return; // no C compiler
    }
    let tree = d.join("tree");
    let user = tree.join("pkg/_m.so");
    let lib_dir = tree.join(".bbrun/lib");
    let mut config = machine::this_machine().unwrap();
    config.ld_library_path = vec![d.join("ext").to_string_lossy().into_owned()];

    let dry = vendor_into(
        &config,
        &tree,
        std::slice::from_ref(&user),
        &lib_dir,
        For::Extensions,
        true,
    )
    .unwrap();
    assert_eq!(dry.copied.len(), 2);
    assert!(!lib_dir.exists(), "dry run wrote");

    let v = vendor_into(
        &config,
        &tree,
        std::slice::from_ref(&user),
        &lib_dir,
        For::Extensions,
        false,
    )
    .unwrap();
    assert_eq!(
        v.copied.keys().collect::<Vec<_>>(),
        vec!["libv1.so", "libv2.so"]
    );
    assert_eq!(v.patched, vec![user.clone()]);
    let (m, _) = ldfs::read(&user).unwrap();
    assert_eq!(m.rpath.as_deref(), Some("$ORIGIN/../.bbrun/lib"));
    let (v1, _) = ldfs::read(&lib_dir.join("libv1.so")).unwrap();
    assert_eq!(v1.runpath.as_deref(), Some("$ORIGIN"));

    // Without the original directory, everything resolves in the tree.
    config.ld_library_path.clear();
    let mut p = Process::new();
    p.load(m, None, &config, &mut FileSource::new());
    assert_eq!(p.missing(0).count(), 0, "{:?}", p.edges);
    assert!(bbrun_util::fsutil::normalize(&p.nodes[1].object.path).starts_with(&lib_dir));

    let again = vendor_into(
        &config,
        &tree,
        std::slice::from_ref(&user),
        &lib_dir,
        For::Extensions,
        false,
    )
    .unwrap();
    assert!(
        again.copied.is_empty() && again.patched.is_empty(),
        "{again:?}"
    );
}

#[test]
fn libpython_is_the_interpreters_unless_bundling() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = |p: &str| d.join(p).to_string_lossy().into_owned();
    std::fs::create_dir_all(d.join("ext")).unwrap();
    std::fs::create_dir_all(d.join("tree/pkg")).unwrap();
    std::fs::write(d.join("p.c"), "int py(void) { return 1; }\n").unwrap();
    std::fs::write(
        d.join("m.c"),
        "int py(void);\nint m(void) { return py(); }\n",
    )
    .unwrap();
    let rpath = format!("-Wl,-rpath,{}", s("ext"));
    let built =
        cc(&[
            "-shared",
            "-fPIC",
            "-Wl,-soname,libpython9.9.so.1.0",
            "-o",
            &s("ext/libpython9.9.so.1.0"),
            &s("p.c"),
        ]) && std::os::unix::fs::symlink("libpython9.9.so.1.0", d.join("ext/libpython9.9.so"))
            .is_ok()
            && cc(&[
                "-shared",
                "-fPIC",
                "-o",
                &s("tree/pkg/_m.so"),
                &s("m.c"),
                &format!("-L{}", s("ext")),
                "-lpython9.9",
                &rpath,
            ]);
    if !built {
        return;
    }
    let tree = d.join("tree");
    let users = [tree.join("pkg/_m.so")];
    let lib_dir = tree.join(".bbrun/lib");
    let config = machine::this_machine().unwrap();
    let ext = vendor_into(&config, &tree, &users, &lib_dir, For::Extensions, true).unwrap();
    assert!(ext.copied.is_empty());
    assert_eq!(ext.left_to_interpreter.len(), 1);
    let interp = vendor_into(&config, &tree, &users, &lib_dir, For::Interpreter, true).unwrap();
    assert!(interp.copied.contains_key("libpython9.9.so.1.0"));
}
