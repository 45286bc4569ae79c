//! The Python-side bootstrap, embedded so the launcher is one file.
//!
//! `bbrun freeze` writes the shim into the tree (`.bbrun/shim/`). At launch
//! the tree's copy is used when it matches this binary's; otherwise (a tree
//! frozen by another bbrun version, or a read-only tree missing it) a copy
//! in the per-user cache is used, so the launcher never writes into a tree.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use bbrun_map::map::STATE_DIR;
use bbrun_util::fsutil;

pub const SHIM_MODULE: &str = include_str!("../../../shim/bbrun_shim.py");
pub const SITECUSTOMIZE: &str = include_str!("../../../shim/sitecustomize.py");
pub const BUILD_MODULE: &str = include_str!("../../../shim/bbrun_build.py");
pub const SCRIPT_MODULE: &str = include_str!("../../../shim/bbrun_script.py");

/// The files of the shim directory, by name.
pub const FILES: [(&str, &str); 4] = [
    ("bbrun_shim.py", SHIM_MODULE),
    ("sitecustomize.py", SITECUSTOMIZE),
    ("bbrun_build.py", BUILD_MODULE),
    ("bbrun_script.py", SCRIPT_MODULE),
];

/// Code the interpreter runs with `-c`. The shim's directory is put on
/// sys.path explicitly too, so `-E`/`-I` in a shebang (which ignore
/// PYTHONPATH) still find it.
pub fn boot_code(shim_dir: &Path) -> String {
    format!(
        "import sys; sys.path.insert(0, {}); import bbrun_shim; bbrun_shim.run_main()",
        python_path_literal(shim_dir)
    )
}

/// A Python expression for `path` that keeps every byte: a plain literal
/// when it is UTF-8, else `os.fsdecode(b'...')` (the surrogate-escaped
/// string Python itself uses for such a path).
fn python_path_literal(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    if let Some(s) = path.to_str() {
        return python_str_literal(s);
    }
    let bytes: String = path
        .as_os_str()
        .as_bytes()
        .iter()
        .map(|b| format!("\\x{b:02x}"))
        .collect();
    format!("__import__('os').fsdecode(b'{bytes}')")
}

/// `ROOT/.bbrun/shim`.
pub fn tree_dir(root: &Path) -> PathBuf {
    root.join(STATE_DIR).join("shim")
}

/// Write the shim into a tree (freeze, install).
pub fn write_into(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    // The launcher refuses a state or shim directory others can write; a
    // umask of 002 must not make freeze produce one.
    for d in [Some(dir), dir.parent().filter(|p| p.ends_with(STATE_DIR))]
        .into_iter()
        .flatten()
    {
        drop_group_other_write(d);
    }
    for (name, text) in FILES {
        let path = dir.join(name);
        if std::fs::read(&path).ok().as_deref() != Some(text.as_bytes()) {
            // Its bytecode is for the text being replaced, and the pycs
            // `precompile` writes are never checked against the source.
            remove_pycs(dir, name.trim_end_matches(".py"));
            fsutil::atomic_write(&path, text.as_bytes(), 0o644)?;
        }
    }
    remove_retired(dir);
    Ok(())
}

/// Remove `__pycache__/STEM.*.pyc` (any interpreter, any `-O` level).
fn remove_pycs(dir: &Path, stem: &str) {
    let prefix = format!("{stem}.");
    let pycs = std::fs::read_dir(dir.join("__pycache__"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(&prefix) && name.ends_with(".pyc")
        });
    for e in pycs {
        let _ = std::fs::remove_file(e.path());
    }
}

/// Shim modules earlier versions wrote and this one no longer has (the
/// import index is part of `bbrun_shim.py` now): nothing imports them, but
/// a tree frozen again should not keep a stale copy beside the current one.
const RETIRED: [&str; 1] = ["bbrun_index"];

fn remove_retired(dir: &Path) {
    for stem in RETIRED {
        let _ = std::fs::remove_file(dir.join(format!("{stem}.py")));
        remove_pycs(dir, stem);
    }
}

/// Byte-compile the shim with the tree's interpreter, so no launch pays for
/// compiling it (a read-only tree, or PYTHONDONTWRITEBYTECODE, would make
/// every launch do so). Best effort: without it the shim still works,
/// only slower.
pub fn precompile(dir: &Path, python: &Path) -> bool {
    // Unchecked-hash pycs: the interpreter loads them without reading the
    // source to hash it (~50 us of every launch for bbrun_shim's 34 KB),
    // and they stay valid when an archive or a copy changes mtimes. They
    // cannot go stale: the launcher uses this directory only when every
    // source holds exactly this binary's text (is_current), and
    // `write_into` removes a file's pycs before it replaces the file.
    let code = "import py_compile, sys\n\
for f in sys.argv[1:]:\n    \
py_compile.compile(f, doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)";
    let mut cmd = std::process::Command::new(python);
    cmd.args(["-S", "-E", "-s", "-c", code]);
    for (name, _) in FILES {
        cmd.arg(dir.join(name));
    }
    let ok = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    // The launcher refuses shim bytecode others could write (a umask of
    // 002 would make it group-writable); take those bits away.
    let pycache = dir.join("__pycache__");
    let paths = std::fs::read_dir(&pycache)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .chain([pycache.clone()]);
    for p in paths {
        drop_group_other_write(&p);
    }
    ok
}

/// `chmod go-w`, best effort; symlinks are left alone.
fn drop_group_other_write(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::symlink_metadata(p) {
        let mode = m.permissions().mode() & 0o7777;
        if !m.file_type().is_symlink() && mode & 0o022 != 0 {
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode & !0o022));
        }
    }
}

/// A directory holding this binary's shim: the tree's own when it is
/// current, else a per-user cache copy named by content hash, which is
/// byte-compiled with `python` when written (a tree frozen by another
/// bbrun would otherwise compile the shim at every launch where
/// PYTHONDONTWRITEBYTECODE is set).
pub fn ensure_dir(root: &Path, python: &Path) -> Result<PathBuf> {
    let tree = tree_dir(root);
    if is_current(&tree) {
        return Ok(tree);
    }
    // Code is loaded from here, often as root: only a directory that
    // nobody else can write (see safedir) will do.
    let base = crate::safedir::cache_dir().with_context(|| {
        format!(
            "{}: shim is missing or from another bbrun version and no safe cache directory holds a copy",
            tree.display()
        )
    })?;
    let dir = base.join(format!("shim-{CONTENT_HASH:016x}"));
    crate::safedir::ensure(&dir)?;
    if !is_current(&dir) {
        crate::debris::sweep_dir(&dir);
        write_into(&dir).with_context(|| {
            format!(
                "{}: shim is missing or from another bbrun version and the cache copy cannot be written; set BBRUN_CACHE_DIR to a writable directory owned by you",
                tree.display()
            )
        })?;
        precompile(&dir, python);
    }
    Ok(dir)
}

fn is_current(dir: &Path) -> bool {
    // One buffer for all files, never zeroed: `vec![0; n]` for each file
    // cleared ~45 KB at every launch (~40k instructions).
    let longest = FILES.iter().map(|(_, text)| text.len()).max().unwrap_or(0);
    let mut buf = Vec::with_capacity(longest + 1);
    FILES
        .iter()
        .all(|(name, text)| holds_exactly(&dir.join(name), text.as_bytes(), &mut buf))
}

/// Whether the file at `path` holds exactly `want`: one open and one
/// read of one byte more than `want` (each path lookup costs the launcher
/// ~2 us, and it checks every shim file). A regular file's read returns
/// all it can; a short read for any other reason only means "not
/// current", and the cache copy is used. `buf` is scratch space.
fn holds_exactly(path: &Path, want: &[u8], buf: &mut Vec<u8>) -> bool {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: a FIFO put in a file's place must not hang the launch.
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    else {
        return false;
    };
    buf.clear();
    buf.reserve(want.len() + 1);
    // SAFETY: `read` writes at most `want.len() + 1` bytes, which the
    // reserve above made room for, into the spare capacity.
    let n = unsafe { libc::read(f.as_raw_fd(), buf.as_mut_ptr().cast(), want.len() + 1) };
    let Ok(n) = usize::try_from(n) else {
        return false;
    };
    // SAFETY: the read initialized the first `n` bytes, and n <= capacity.
    unsafe { buf.set_len(n) };
    buf[..] == *want
}

/// FNV-1a over the shim files: only has to tell versions apart. Computed
/// at compile time: over the shim's ~45 KB it took ~60 us, at every launch
/// of a tree frozen by another bbrun.
const CONTENT_HASH: u64 = content_hash();

const fn content_hash() -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut f = 0;
    while f < FILES.len() {
        let text = FILES[f].1.as_bytes();
        let mut i = 0;
        while i < text.len() {
            h ^= text[i] as u64;
            h = h.wrapping_mul(0x100000001b3);
            i += 1;
        }
        f += 1;
    }
    h
}

/// A Python string literal for `s` (repr-style, always single-quoted).
pub fn python_str_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writing_the_shim_drops_retired_modules_only() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("shim");
        std::fs::create_dir_all(dir.join("__pycache__")).unwrap();
        for name in [
            "bbrun_index.py",
            "__pycache__/bbrun_index.cpython-311.pyc",
            "__pycache__/bbrun_index.cpython-312.opt-1.pyc",
            "__pycache__/bbrun_indexer.cpython-311.pyc",
            "notes.txt",
        ] {
            std::fs::write(dir.join(name), "x").unwrap();
        }
        write_into(&dir).unwrap();
        assert!(is_current(&dir));
        let mut left: Vec<String> = walk_names(&dir);
        left.sort();
        assert_eq!(
            left,
            [
                "__pycache__/bbrun_indexer.cpython-311.pyc",
                "bbrun_build.py",
                "bbrun_script.py",
                "bbrun_shim.py",
                "notes.txt",
                "sitecustomize.py",
            ]
        );
    }

    #[test]
    fn rewriting_a_shim_file_drops_its_bytecode_only() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("shim");
        write_into(&dir).unwrap();
        std::fs::create_dir_all(dir.join("__pycache__")).unwrap();
        let pycs = [
            "__pycache__/bbrun_shim.cpython-311.pyc",
            "__pycache__/bbrun_shim.cpython-312.opt-2.pyc",
            "__pycache__/sitecustomize.cpython-311.pyc",
        ];
        for name in pycs {
            std::fs::write(dir.join(name), "x").unwrap();
        }
        // Unchanged sources keep their bytecode.
        write_into(&dir).unwrap();
        assert!(pycs.iter().all(|p| dir.join(p).exists()));
        // A source from another version loses it, the others keep theirs.
        std::fs::write(dir.join("bbrun_shim.py"), "# older shim\n").unwrap();
        write_into(&dir).unwrap();
        assert!(is_current(&dir));
        assert!(!dir.join(pycs[0]).exists() && !dir.join(pycs[1]).exists());
        assert!(dir.join(pycs[2]).exists());
    }

    fn walk_names(dir: &Path) -> Vec<String> {
        let mut out = vec![];
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() {
                out.extend(
                    walk_names(&e.path())
                        .into_iter()
                        .map(|n| format!("{name}/{n}")),
                );
            } else {
                out.push(name);
            }
        }
        out
    }

    #[test]
    fn literal_escapes_quotes_and_backslashes() {
        assert_eq!(python_str_literal("a'b\\c"), "'a\\'b\\\\c'");
    }

    #[test]
    fn precompiles_with_a_real_interpreter() {
        let d = tempfile::tempdir().unwrap();
        write_into(d.path()).unwrap();
        let Some(py) = std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|p| p.join("python3"))
            .find(|p| p.exists())
        else {
            return;
        };
        assert!(precompile(d.path(), &py));
        let cache: Vec<_> = std::fs::read_dir(d.path().join("__pycache__"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(cache.len(), FILES.len());
        // Unchecked-hash pycs (PEP 552 flags 0b01): loaded without
        // reading the source.
        for pyc in cache {
            let head = std::fs::read(&pyc).unwrap();
            assert_eq!(&head[4..8], &[1, 0, 0, 0], "{}", pyc.display());
        }
    }

    #[test]
    fn written_under_umask_002_stays_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        // As a umask of 002 leaves them (without changing the process-wide
        // umask under other tests).
        let shim = d.path().join(STATE_DIR).join("shim");
        std::fs::create_dir_all(&shim).unwrap();
        for p in [d.path().join(STATE_DIR), shim.clone()] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o775)).unwrap();
        }
        write_into(&shim).unwrap();
        for p in [
            d.path().join(STATE_DIR),
            d.path().join(STATE_DIR).join("shim"),
        ] {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o022, 0, "{}", p.display());
        }
    }

    #[test]
    fn write_then_current() {
        let d = tempfile::tempdir().unwrap();
        assert!(!is_current(d.path()));
        write_into(d.path()).unwrap();
        assert!(is_current(d.path()));
        std::fs::write(d.path().join("bbrun_shim.py"), "x").unwrap();
        assert!(!is_current(d.path()));
    }
}

#[cfg(test)]
mod path_literal_tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn non_utf8_path_survives_as_fsdecode_of_bytes() {
        let p = Path::new(std::ffi::OsStr::from_bytes(b"/t/caf\xe9"));
        assert_eq!(
            python_path_literal(p),
            "__import__('os').fsdecode(b'\\x2f\\x74\\x2f\\x63\\x61\\x66\\xe9')"
        );
        assert_eq!(python_path_literal(Path::new("/t/a'b")), "'/t/a\\'b'");
    }
}
