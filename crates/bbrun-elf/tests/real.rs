//! Real compiler output and the real loader: a library and a program that
//! needs it through an absolute RPATH/RUNPATH, rewritten to `$ORIGIN`
//! forms, then moved and run. `readelf` (test-only) must agree with
//! `parse` on every patched file.

use std::path::{Path, PathBuf};
use std::process::Command;

use bbrun_elf::{parse, set_search_path, Kind, SearchTag};

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `lib/libbbd.so` and `bin/prog` linked with `-rpath <dir>/lib`, with
/// DT_RPATH (`new_dtags` false) or DT_RUNPATH.
fn build(dir: &Path, new_dtags: bool) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("lib.c"), "int bbd_answer(void) { return 42; }\n").unwrap();
    std::fs::write(
        dir.join("prog.c"),
        "#include <stdio.h>\nint bbd_answer(void);\nint main(void) { printf(\"%d\\n\", bbd_answer()); return 0; }\n",
    )
    .unwrap();
    let lib = dir.join("lib/libbbd.so");
    sh(Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(dir.join("lib.c")));
    let prog = dir.join("bin/prog");
    let dtags = if new_dtags {
        "-Wl,--enable-new-dtags"
    } else {
        "-Wl,--disable-new-dtags"
    };
    sh(Command::new("cc")
        .arg("-o")
        .arg(&prog)
        .arg(dir.join("prog.c"))
        .arg(format!("-L{}", dir.join("lib").display()))
        .arg("-lbbd")
        .arg(format!("-Wl,-rpath,{}", dir.join("lib").display()))
        .arg(dtags));
    (lib, prog)
}

fn readelf_path(file: &Path, tag: &str) -> Option<String> {
    let out = sh(Command::new("readelf").arg("-d").arg(file));
    let line = out.lines().find(|l| l.contains(&format!("({tag})")))?;
    let start = line.find('[')? + 1;
    let end = line.rfind(']')?;
    Some(line[start..end].to_string())
}

fn patch(file: &Path, tag: SearchTag, value: &str) {
    let data = std::fs::read(file).unwrap();
    let out = set_search_path(&data, tag, Some(value)).unwrap();
    std::fs::write(file, out).unwrap();
}

fn run_moved(dir: &Path, moved: &Path) -> std::process::Output {
    std::fs::rename(dir, moved).unwrap();
    Command::new(moved.join("bin/prog"))
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap()
}

#[test]
fn parse_agrees_with_readelf_on_real_files() {
    let t = tempfile::tempdir().unwrap();
    let (lib, prog) = build(&t.path().join("a"), true);
    let info = parse(&std::fs::read(&prog).unwrap()).unwrap();
    assert!(info.needed.contains(&"libbbd.so".to_string()));
    assert!(info.needed.iter().any(|n| n.starts_with("libc.so")));
    assert_eq!(info.runpath, readelf_path(&prog, "RUNPATH"));
    assert!(info.interpreter.unwrap().contains("ld-linux"));
    assert_eq!(info.kind, Kind::Executable);
    assert!(info.version_needs.iter().any(
        |v| v.file.starts_with("libc.so") && v.versions.iter().any(|s| s.starts_with("GLIBC_"))
    ));
    let info = parse(&std::fs::read(&lib).unwrap()).unwrap();
    assert_eq!(info.kind, Kind::SharedObject);
    // libc itself: version definitions and a soname.
    let libc = sh(Command::new("cc").arg("-print-file-name=libc.so.6"));
    let libc = std::fs::read(libc.trim()).unwrap();
    let info = parse(&libc).unwrap();
    assert_eq!(info.soname.as_deref(), Some("libc.so.6"));
    assert!(info
        .version_defs
        .iter()
        .any(|v| v == "GLIBC_2.2.5" || v == "GLIBC_2.17"));
}

#[test]
fn moved_program_finds_its_library_only_after_rewrite() {
    for new_dtags in [false, true] {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a");
        build(&a, new_dtags);
        let c = t.path().join("c");
        sh(Command::new("cp").arg("-a").arg(&a).arg(&c));
        let prog = c.join("bin/prog");
        let tag = if new_dtags {
            SearchTag::Runpath
        } else {
            SearchTag::Rpath
        };
        patch(&prog, tag, "$ORIGIN/../lib");
        let name = if new_dtags { "RUNPATH" } else { "RPATH" };
        assert_eq!(readelf_path(&prog, name).as_deref(), Some("$ORIGIN/../lib"));
        // Unpatched: once the build dir is gone the loader cannot find
        // the library.
        let out = run_moved(&a, &t.path().join("a-moved"));
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open shared object file"));
        let out = run_moved(&c, &t.path().join("b"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n");
    }
}

#[test]
fn longer_path_than_the_original_still_loads() {
    for new_dtags in [false, true] {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a");
        let (lib, prog) = build(&a, new_dtags);
        // Put the library deep down; the new RPATH is much longer than
        // the short build path.
        let deep = "lib/x/a-rather-long-directory/and-another-one/yet-another-level/lib";
        std::fs::create_dir_all(a.join(deep)).unwrap();
        std::fs::rename(&lib, a.join(deep).join("libbbd.so")).unwrap();
        let tag = if new_dtags {
            SearchTag::Runpath
        } else {
            SearchTag::Rpath
        };
        let value = format!("$ORIGIN/../{deep}");
        let before = std::fs::read(&prog).unwrap();
        patch(&prog, tag, &value);
        let after = std::fs::read(&prog).unwrap();
        assert!(value.len() > a.join("lib").to_string_lossy().len());
        let name = if new_dtags { "RUNPATH" } else { "RPATH" };
        assert_eq!(readelf_path(&prog, name), Some(value.clone()));
        assert_eq!(
            parse(&after).unwrap().needed,
            parse(&before).unwrap().needed
        );
        let out = run_moved(&a, &t.path().join("b"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n");
    }
}

#[test]
fn path_too_long_for_any_padding_rebuilds_and_still_loads() {
    // Several kilobytes: no segment padding holds the grown string table,
    // so the file gets a new PT_LOAD (the program's PT_INTERP and notes
    // move with it).
    for new_dtags in [false, true] {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a");
        let (lib, prog) = build(&a, new_dtags);
        let filler: String = (0..400).map(|i| format!("/nonexistent/{i}:")).collect();
        let value = format!("{filler}$ORIGIN/../lib");
        let tag = if new_dtags {
            SearchTag::Runpath
        } else {
            SearchTag::Rpath
        };
        let before = std::fs::read(&prog).unwrap();
        patch(&prog, tag, &value);
        patch(&lib, SearchTag::Runpath, &value);
        let after = std::fs::read(&prog).unwrap();
        assert!(after.len() > before.len() + 4096);
        let name = if new_dtags { "RUNPATH" } else { "RPATH" };
        assert_eq!(readelf_path(&prog, name), Some(value.clone()));
        assert_eq!(readelf_path(&lib, "RUNPATH"), Some(value.clone()));
        let info = parse(&after).unwrap();
        assert_eq!(info.needed, parse(&before).unwrap().needed);
        assert_eq!(info.interpreter, parse(&before).unwrap().interpreter);
        let out = run_moved(&a, &t.path().join("b"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n");
    }
}
