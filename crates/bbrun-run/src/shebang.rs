//! Script first lines: reading the interpreter and options buildout wrote,
//! and pointing the line at the launcher so `./bin/app` runs through bbrun.
//! Only line 1 ever changes; everything after it stays byte-identical.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

use bbrun_util::fsutil;

/// The longest first line every Linux kernel runs whole: 128 bytes before
/// 5.1 (`BINPRM_BUF_SIZE`), including `#!` and the newline. Longer lines
/// are cut silently by those kernels, so we never write one.
pub const MAX_SHEBANG_LEN: usize = 127;

/// The portable first line, used when the launcher's path is too long.
pub const ENV_SHEBANG: &str = "#!/usr/bin/env bbrun";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shebang {
    /// The program that runs the script (for `#!/usr/bin/env python3`, `python3`).
    pub interpreter: String,
    /// Options after the program, split on whitespace.
    pub options: Vec<String>,
}

/// Parse `#!/path/python3 -s` into its parts; `None` if not a shebang.
pub fn parse(line: &str) -> Option<Shebang> {
    let rest = line.strip_prefix("#!")?.trim();
    let mut words = rest.split_whitespace();
    let mut interpreter = words.next()?.to_string();
    let mut options: Vec<String> = words.map(str::to_string).collect();
    if Path::new(&interpreter)
        .file_name()
        .is_some_and(|n| n == "env")
    {
        // `env [-S] prog args`
        options.retain(|o| o != "-S");
        if options.is_empty() {
            return None;
        }
        interpreter = options.remove(0);
    }
    Some(Shebang {
        interpreter,
        options,
    })
}

/// Whether a shebang's program is the bbrun launcher.
pub fn is_launcher(interpreter: &str) -> bool {
    Path::new(interpreter)
        .file_name()
        .is_some_and(|n| n == "bbrun")
}

/// Whether a shebang's program looks like a Python interpreter.
pub fn is_python(interpreter: &str) -> bool {
    Path::new(interpreter)
        .file_name()
        .map(|n| {
            n.to_string_lossy().starts_with("python") || n.to_string_lossy().starts_with("pypy")
        })
        .unwrap_or(false)
}

/// Whether a script body runs zc.buildout's command line (buildout's own
/// script generator writes exactly this call).
pub fn runs_buildout(body: &[u8]) -> bool {
    fsutil::find(body, b"zc.buildout.buildout.main(").is_some()
}

/// The first line of a file, without its newline (at most 4 KiB read).
pub fn read_first_line(path: &Path) -> Result<String> {
    let mut buf = vec![0u8; 4096];
    let mut f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let n = f
        .read(&mut buf)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    buf.truncate(n);
    let end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end])
        .trim_end_matches('\r')
        .to_string())
}

/// Split file bytes into (first line without newline, the rest after it).
pub fn split_first_line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[]),
    }
}

/// sha256 of everything after line 1.
pub fn body_sha256(bytes: &[u8]) -> String {
    fsutil::sha256_hex(split_first_line(bytes).1)
}

/// The first line that runs a script through the launcher at `launcher`,
/// or the `env` form when that path is too long for the kernel.
pub fn launcher_line(launcher: Option<&Path>) -> String {
    match launcher {
        Some(p) => {
            let line = format!("#!{}", p.display());
            // +1 for the newline.
            if line.len() < MAX_SHEBANG_LEN && !line.contains(char::is_whitespace) {
                line
            } else {
                ENV_SHEBANG.to_string()
            }
        }
        None => ENV_SHEBANG.to_string(),
    }
}

/// The result of changing one script's first line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LineChange {
    pub path: String,
    pub old_line: String,
    pub new_line: String,
    pub body_sha256_before: String,
    pub body_sha256_after: String,
    pub changed: bool,
}

/// Replace line 1 of `path` with `new_line`, atomically, keeping the mode.
pub fn set_first_line(path: &Path, new_line: &str, dry_run: bool) -> Result<LineChange> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let (first, body) = split_first_line(&bytes);
    if !first.starts_with(b"#!") {
        bail!("{}: has no #! line to replace", path.display());
    }
    let before = fsutil::sha256_hex(body);
    let old_line = String::from_utf8_lossy(first).into_owned();
    let changed = old_line != new_line;
    let mut after = before.clone();
    if changed && !dry_run {
        let mut out = Vec::with_capacity(bytes.len() + new_line.len());
        out.extend_from_slice(new_line.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(body);
        fsutil::atomic_write(path, &out, 0o755)?;
        after = body_sha256(
            &std::fs::read(path)
                .with_context(|| format!("{}: cannot read back", path.display()))?,
        );
        if after != before {
            bail!(
                "{}: body changed while rewriting line 1 (sha256 {before} became {after})",
                path.display()
            );
        }
    }
    Ok(LineChange {
        path: path.display().to_string(),
        old_line,
        new_line: new_line.to_string(),
        body_sha256_before: before,
        body_sha256_after: after,
        changed,
    })
}

/// Rewrite line 1 of every script the map records.
pub fn apply(
    tree: &crate::tree::FrozenTree,
    launcher: Option<&Path>,
    restore: bool,
    dry_run: bool,
) -> Result<Vec<LineChange>> {
    let line = launcher_line(launcher);
    let mut changes = Vec::new();
    for script in &tree.map.scripts {
        let path = tree.root.join(&script.path);
        if !path.exists() {
            bail!(
                "{}: recorded in the map but missing; run `bbrun freeze` again",
                path.display()
            );
        }
        let new_line = if restore {
            script.shebang.as_str()
        } else {
            line.as_str()
        };
        changes.push(set_first_line(&path, new_line, dry_run)?);
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_env_shebangs() {
        assert_eq!(
            parse("#!/v/bin/python3 -sE"),
            Some(Shebang {
                interpreter: "/v/bin/python3".into(),
                options: vec!["-sE".into()]
            })
        );
        assert_eq!(
            parse("#!/usr/bin/env -S python3 -s").unwrap(),
            Shebang {
                interpreter: "python3".into(),
                options: vec!["-s".into()]
            }
        );
        assert_eq!(parse("import sys"), None);
        assert_eq!(parse("#!/usr/bin/env"), None);
    }

    #[test]
    fn long_launcher_path_falls_back_to_env() {
        let long = format!("/{}/bbrun", "x".repeat(200));
        assert_eq!(launcher_line(Some(Path::new(&long))), ENV_SHEBANG);
        assert_eq!(
            launcher_line(Some(Path::new("/opt/b/bbrun"))),
            "#!/opt/b/bbrun"
        );
    }

    #[test]
    fn first_line_change_keeps_body_bytes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        std::fs::write(&p, b"#!/old/python\r\nbody\n\x00\xff").unwrap();
        let c = set_first_line(&p, "#!/usr/bin/env bbrun", false).unwrap();
        assert!(c.changed);
        assert_eq!(c.body_sha256_before, c.body_sha256_after);
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"#!/usr/bin/env bbrun\nbody\n\x00\xff"
        );
    }
}
