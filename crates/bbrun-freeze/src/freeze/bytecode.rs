//! Byte-code for every module the scripts can import, written at freeze.
//!
//! Not every distribution arrives with its `.pyc` files: zc.buildout
//! installs some wheels into `eggs/` without compiling them (a Plone 6
//! buildout: ~580 of ~6,000 modules), and anything built with
//! `PYTHONDONTWRITEBYTECODE` set has none. In place, the first run writes
//! them. A frozen tree is run where that first run may never write:
//! installed read-only from a package, run by a user who does not own it,
//! or with the variable set. There every start compiled those modules
//! again (8 ms of the Zope stack's imports for one module, `multipart`).
//! And where the first run did write, the new `__pycache__` changed its
//! directory's mtime, so the import index stopped answering for it.
//!
//! So freeze compiles, with the build interpreter, each `.py` in the
//! directories the index covers whose `.pyc` is missing or stale, before
//! the index records those directories. The `.pyc` files are the ones the
//! interpreter would write itself (timestamp-checked, for the `-O` levels
//! the scripts run with), so an import behaves exactly as after a first run
//! in place. A module that does not compile is left alone, as the
//! interpreter leaves it until imported.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Run by the build interpreter: directories on stdin, NUL-separated;
/// optimization levels in argv[1] (`0,2`). Checks a `.pyc` as the import
/// system does (magic, then source mtime and size, or a hash-based one's
/// own rule), and writes a missing or stale one as py_compile would, but
/// through a temp file named as bbrun's debris (`X.pyc.bbrun-tmp.PID`), so
/// a killed freeze leaves nothing the next one does not sweep.
const PROGRAM: &str = r#"
import importlib.util, os, stat, sys, warnings
from importlib import _bootstrap_external as ext
warnings.simplefilter("ignore")
magic = importlib.util.MAGIC_NUMBER
tail = ".bbrun-tmp.%d" % os.getpid()
levels = [int(x) for x in sys.argv[1].split(",")]
written = 0
for d in sys.stdin.buffer.read().split(b"\0"):
    if not d:
        continue
    d = os.fsdecode(d)
    try:
        names = os.listdir(d)
    except OSError:
        continue
    for n in names:
        if not n.endswith(".py"):
            continue
        src = os.path.join(d, n)
        try:
            st = os.stat(src)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        for level in levels:
            pyc = importlib.util.cache_from_source(src, optimization="" if level == 0 else level)
            try:
                with open(pyc, "rb") as f:
                    head = f.read(16)
            except OSError:
                head = b""
            if len(head) == 16 and head[:4] == magic:
                flags = int.from_bytes(head[4:8], "little")
                if flags & 1:
                    continue
                if flags == 0 \
                        and int.from_bytes(head[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF \
                        and int.from_bytes(head[12:16], "little") == st.st_size & 0xFFFFFFFF:
                    continue
            try:
                loader = ext.SourceFileLoader("<bbrun>", src)
                code = loader.source_to_code(loader.get_data(src), src, _optimize=level)
            except Exception:
                continue  # fails at import, as in place
            data = ext._code_to_timestamp_pyc(code, int(st.st_mtime), st.st_size)
            try:
                os.makedirs(os.path.dirname(pyc), exist_ok=True)
                fd = os.open(pyc + tail, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             ext._calc_mode(src) & 0o666)
                with open(fd, "wb") as f:
                    f.write(data)
                os.replace(pyc + tail, pyc)
                written += 1
            except OSError:
                try:
                    os.unlink(pyc + tail)
                except OSError:
                    pass
print(written)
"#;

/// Compile what `dirs` hold for `python` at `levels`; the number of
/// `.pyc` files written. None when the interpreter could not be run (the
/// tree then works as before: its first runs compile).
pub fn compile<'a>(
    python: &Path,
    dirs: impl Iterator<Item = &'a Path>,
    levels: &[u8],
) -> Option<usize> {
    use std::os::unix::ffi::OsStrExt;
    let mut input = Vec::new();
    for d in dirs {
        input.extend_from_slice(d.as_os_str().as_bytes());
        input.push(0);
    }
    let levels: Vec<String> = levels.iter().map(u8::to_string).collect();
    let mut cmd = Command::new(python);
    // Isolated: nothing of the tree or the environment is imported.
    cmd.args(["-I", "-S", "-c", PROGRAM, &levels.join(",")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // A killed freeze takes the compiler with it: nothing writes into the
    // tree after freeze is gone. SAFETY: prctl is async-signal-safe, and
    // nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().ok()?;
    // Written whole before reading: the program reads all of stdin first.
    let fed = child
        .stdin
        .take()
        .is_some_and(|mut s| s.write_all(&input).is_ok());
    let out = child.wait_with_output().ok()?;
    if !fed || !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The `-O` levels the scripts run with (`-O` 1, `-OO` 2), besides 0.
pub fn levels<'a>(options: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let mut out = vec![0u8];
    for o in options {
        let Some(letters) = o.strip_prefix('-') else {
            continue;
        };
        if letters.is_empty() || !letters.chars().all(|c| c.is_ascii_alphabetic()) {
            continue;
        }
        let level = letters.chars().filter(|&c| c == 'O').count().min(2) as u8;
        if !out.contains(&level) {
            out.push(level);
        }
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_from_script_options() {
        assert_eq!(levels([].into_iter()), [0]);
        assert_eq!(levels(["-s", "-O"].into_iter()), [0, 1]);
        assert_eq!(levels(["-sOO", "-O", "-Wignore"].into_iter()), [0, 1, 2]);
        // -W/-X arguments and long options are not flag letters.
        assert_eq!(levels(["-Wdefault::OO", "--OO"].into_iter()), [0]);
    }
}
