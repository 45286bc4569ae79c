//! The relocation map: what `bbrun freeze` learned about a tree, stored as
//! TOML at `ROOT/.bbrun/map.toml`.
//!
//! The launcher reads this file before every script, so it holds only what a
//! launch needs (roots, interpreter, scripts, collected prefixes). The longer
//! per-file inventory (every file that names the build path and what bbrun
//! did about it) lives beside it in `inventory.toml`, read only by the
//! commands that rewrite or report files. This module reads and writes
//! both ([`crate::schema`] holds their types).

use std::path::Path;

use anyhow::{bail, Context, Result};

use bbrun_util::fsutil;

// The types live apart so that the validation `parse` calls depends on
// them without depending on this module.
pub use crate::schema::*;

/// Parse a map, with errors that name the file and what is wrong.
pub fn parse(text: &str, path: &Path) -> Result<RelocationMap> {
    // The launcher reads this file before every script. Straight into the
    // schema is one pass over the text; through a `toml::Table` first it
    // cost ~40% more (every key and string allocated twice). A map that
    // does not fit, or has another format, takes the slow path below for
    // its error message.
    if let Ok(map) = toml::from_str::<RelocationMap>(text) {
        if map.format == FORMAT_VERSION {
            crate::map_check::validate(&map, path)?;
            return Ok(map);
        }
    }
    // Check the format version before the full schema so that a map from a
    // newer bbrun says so instead of failing on an unknown field.
    let raw: toml::Table = toml::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a valid relocation map (bad TOML: {}); run `bbrun freeze` again",
            path.display(),
            one_line(&e.to_string())
        )
    })?;
    match raw.get("format").and_then(toml::Value::as_integer) {
        Some(v) if v == i64::from(FORMAT_VERSION) => {}
        Some(v) => bail!(
            "{}: relocation map format {v} is not supported by bbrun {} (it reads format {FORMAT_VERSION})",
            path.display(),
            env!("CARGO_PKG_VERSION")
        ),
        None => bail!(
            "{}: not a relocation map (no `format` key); run `bbrun freeze` again",
            path.display()
        ),
    }
    // The table already parsed becomes the map, or says what is missing.
    let map: RelocationMap = toml::Value::Table(raw)
        .try_into()
        .map_err(|e: toml::de::Error| {
            anyhow::anyhow!(
                "{}: incomplete relocation map ({}); run `bbrun freeze` again",
                path.display(),
                one_line(&e.to_string())
            )
        })?;
    crate::map_check::validate(&map, path)?;
    Ok(map)
}

pub fn load(path: &Path) -> Result<RelocationMap> {
    let text = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let text = std::str::from_utf8(&text)
        .map_err(|_| anyhow::anyhow!("{}: relocation map is not UTF-8 text", path.display()))?;
    parse(text, path)
}

pub fn save(path: &Path, map: &RelocationMap) -> Result<()> {
    let text = toml::to_string_pretty(map).context("serialising relocation map")?;
    let text = format!(
        "# bbrun relocation map: written by `bbrun freeze`, read by the launcher.\n# Reference: docs/relocation-map.md\n{text}"
    );
    fsutil::atomic_write(path, text.as_bytes(), 0o644)
}

pub fn load_inventory(path: &Path) -> Result<Inventory> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    parse_inventory(&text, path)
}

/// Parse an inventory's text; `path` names it in errors.
pub fn parse_inventory(text: &str, path: &Path) -> Result<Inventory> {
    toml::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a valid inventory ({}); run `bbrun freeze` again",
            path.display(),
            one_line(&e.to_string())
        )
    })
}

pub fn save_inventory(path: &Path, inventory: &Inventory) -> Result<()> {
    let text = toml::to_string_pretty(inventory).context("serialising inventory")?;
    fsutil::atomic_write(path, text.as_bytes(), 0o644)
}

/// toml's errors span several lines with a source excerpt; errors here are
/// one line.
fn one_line(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg).trim();
    let detail = msg
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.contains('|'))
        .unwrap_or("")
        .trim();
    if detail.is_empty() || detail == first {
        first.to_string()
    } else {
        format!("{first}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    fn sample() -> RelocationMap {
        let mut map = test_map("/build/app");
        map.build.root_realpath = "/real/build/app".into();
        map.interpreter.path = "/venv/bin/python3".into();
        map.scripts = vec![Script {
            path: "bin/app".into(),
            shebang: "#!/venv/bin/python3".into(),
            options: vec![],
            body_sha256: "00".into(),
            buildout: false,
        }];
        map
    }

    #[test]
    fn round_trips() {
        let map = sample();
        let text = toml::to_string_pretty(&map).unwrap();
        assert_eq!(parse(&text, Path::new("m.toml")).unwrap(), map);
    }

    #[test]
    fn bad_toml_is_one_line_naming_file() {
        let err = parse("format = 1\n[build\n", Path::new("/t/m.toml")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.starts_with("/t/m.toml: not a valid relocation map"),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn newer_format_is_refused() {
        let err = parse("format = 99\n", Path::new("m.toml")).unwrap_err();
        assert!(format!("{err}").contains("format 99 is not supported"));
    }

    #[test]
    fn truncated_map_says_incomplete() {
        let text = toml::to_string_pretty(&sample()).unwrap();
        let cut = &text[..text.find("[interpreter]").unwrap()];
        let err = parse(cut, Path::new("m.toml")).unwrap_err();
        let msg = format!("{err}");
        assert!(msg.contains("incomplete relocation map"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn old_roots_longest_first_without_duplicates() {
        let mut map = sample();
        map.build.root_realpath = map.build.root.clone();
        map.build.previous_roots = vec!["/b".into()];
        assert_eq!(map.old_roots(), vec![&b"/build/app"[..], b"/b"]);
    }

    #[test]
    fn roots_that_are_not_utf8_round_trip_exactly() {
        use std::os::unix::ffi::OsStringExt;
        let odd = |b: &[u8]| RootPath::new(std::ffi::OsString::from_vec(b.to_vec()));
        let mut map = sample();
        map.build.previous_roots = vec![odd(b"/srv/caf\xe9"), odd(b"/p/100%/\xff\xfe x")];
        map.build.files_root = Some(odd(b"/opt/\xc3\xa9t\xe9%41"));
        let text = toml::to_string_pretty(&map).unwrap();
        assert!(text.contains("bytes:/srv/caf%E9"), "{text}");
        assert!(text.contains("bytes:/opt/\u{e9}t%E9%2541"), "{text}");
        let back = parse(&text, Path::new("m.toml")).unwrap();
        assert_eq!(back, map);
        assert_eq!(
            back.files_root().as_os_str().as_bytes(),
            b"/opt/\xc3\xa9t\xe9%41"
        );
        // UTF-8 roots stay readable as they are.
        assert_eq!(RootPath::from("/a/%b").encode(), "/a/%b");
        assert_eq!(RootPath::decode("bytes:/x%4"), None);
        assert_eq!(RootPath::decode("bytes:/x%zz"), None);
    }
}
