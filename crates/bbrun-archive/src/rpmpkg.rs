//! RPM packages through the pure-Rust `rpm` crate: the files under the
//! install prefix, owned by root, with the set's single timestamp as build
//! time and file mtimes (`source_date`), a zstd payload, and no build host
//! or signature, so the same tree gives the same bytes.
//!
//! Hardlinks become an RPM hardlink set (same inode once installed).
//! Directories from the prefix down are owned by the package; the prefix's
//! parents (`/opt`) are not, so removing the package never removes them.

use std::collections::HashSet;
use std::io::Write;

use anyhow::{anyhow, bail, Context, Result};
use rpm::{Dependency, FileOptions, PackageBuilder, Timestamp};

use crate::manifest::EntryKind;
use crate::packset::{PackEntry, PackSet, Progress, Source};
use crate::pkgscripts::{self, PackageState};

#[derive(Debug, Clone)]
pub struct RpmMeta {
    pub name: String,
    pub version: String,
    pub release: String,
    /// RPM spelling: `x86_64`, `aarch64`, ...
    pub arch: String,
    pub license: String,
    /// First line: the summary; the whole text: the description.
    pub description: String,
    /// `name` or `name OP version` with OP one of `= < <= > >=`.
    pub requires: Vec<String>,
    /// State directories (made by `%post`, never removed by rpm) and
    /// `%config(noreplace)` files.
    pub state: PackageState,
}

/// Write the package of `set` installed under `prefix` (absolute) to `out`.
pub fn write_rpm<W: Write>(
    set: &PackSet,
    meta: &RpmMeta,
    prefix: &str,
    zstd_level: i32,
    out: &mut W,
    progress: Progress,
) -> Result<()> {
    let prefix = prefix.trim_end_matches('/');
    let summary = meta.description.lines().next().unwrap_or("").trim();
    let mtime = u32::try_from(set.mtime.max(0)).unwrap_or(u32::MAX);
    let config = rpm::BuildConfig::default()
        .compression(rpm::CompressionWithLevel::Zstd(zstd_level))
        .source_date(Timestamp(mtime));
    let mut b = PackageBuilder::new(
        &meta.name,
        &meta.version,
        &meta.license,
        &meta.arch,
        summary,
    );
    b.using_config(config);
    b.release(meta.release.clone());
    b.description(meta.description.clone());
    for r in &meta.requires {
        b.requires(parse_dependency(r)?);
    }
    if !meta.state.dirs.is_empty() {
        // No %postun: rpm has no purge, so state outlives the package.
        b.post_install_script(pkgscripts::post_install(prefix, &meta.state));
    }
    let config: HashSet<&str> = meta.state.config_files.iter().map(String::as_str).collect();
    let err = |path: &str, e: rpm::Error| anyhow!("{path}: cannot add to the rpm ({e})");

    // Files other names link to: they join the hardlink set too.
    let link_targets: HashSet<&str> = set
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::Hardlink)
        .filter_map(|e| e.target.as_deref())
        .collect();
    b.with_dir_entry(owned(FileOptions::dir(prefix).permissions(0o755), mtime))
        .map_err(|e| err(prefix, e))?;
    for e in &set.entries {
        let dest = format!("{prefix}/{}", e.path);
        let mode = (e.mode & 0o7777) as u16;
        let mtime = u32::try_from(e.mtime.max(0)).unwrap_or(u32::MAX);
        match e.kind {
            EntryKind::Dir => {
                b.with_dir_entry(owned(FileOptions::dir(&dest).permissions(mode), mtime))
                    .map_err(|x| err(&e.path, x))?;
            }
            EntryKind::Symlink => {
                let target = e.target.clone().unwrap_or_default();
                b.with_symlink(owned(
                    FileOptions::symlink(&dest, target).permissions(mode),
                    mtime,
                ))
                .map_err(|x| err(&e.path, x))?;
            }
            EntryKind::File | EntryKind::Hardlink => {
                let (content, identity) = if e.kind == EntryKind::Hardlink {
                    let t = e.target.as_deref().unwrap_or_default();
                    let first = set.get(t).ok_or_else(|| {
                        anyhow!("{}: hardlink to {t}, which is not packed", e.path)
                    })?;
                    (first, Some(t))
                } else {
                    (
                        e,
                        link_targets
                            .contains(e.path.as_str())
                            .then_some(e.path.as_str()),
                    )
                };
                let mut opts = owned(FileOptions::new(&dest).permissions(mode), mtime);
                if config.contains(e.path.as_str()) {
                    opts = opts.config().noreplace();
                }
                if let Some(id) = identity {
                    opts = opts.hardlink(id);
                }
                add_file(&mut b, content, opts).map_err(|x| err(&e.path, x))?;
                progress(content.size);
            }
        }
    }
    let pkg = b
        .build()
        .map_err(|e| anyhow!("cannot build the rpm ({e})"))?;
    pkg.write(out)
        .map_err(|e| anyhow!("cannot write the rpm ({e})"))
        .context("rpm")?;
    Ok(())
}

fn owned(o: rpm::FileOptionsBuilder, mtime: u32) -> rpm::FileOptionsBuilder {
    o.user("root").group("root").modified_at(Timestamp(mtime))
}

fn add_file(
    b: &mut PackageBuilder,
    e: &PackEntry,
    opts: rpm::FileOptionsBuilder,
) -> std::result::Result<(), rpm::Error> {
    match &e.source {
        Source::Disk { path, .. } => b.with_file(path, opts).map(|_| ()),
        Source::Bytes(bytes) => b.with_file_contents(bytes.to_vec(), opts).map(|_| ()),
        Source::None => b.with_file_contents(Vec::new(), opts).map(|_| ()),
    }
}

/// `name`, or `name OP version` (spaces around OP optional).
pub fn parse_dependency(s: &str) -> Result<Dependency> {
    let s = s.trim();
    for op in ["<=", ">=", "=", "<", ">"] {
        if let Some(i) = s.find(op) {
            let (name, ver) = (s[..i].trim(), s[i + op.len()..].trim());
            if name.is_empty() || ver.is_empty() || ver.contains(char::is_whitespace) {
                break;
            }
            return Ok(match op {
                "<=" => Dependency::less_eq(name, ver),
                ">=" => Dependency::greater_eq(name, ver),
                "=" => Dependency::eq(name, ver),
                "<" => Dependency::less(name, ver),
                _ => Dependency::greater(name, ver),
            });
        }
    }
    if s.is_empty() || s.contains(char::is_whitespace) || s.contains(['<', '>', '=']) {
        bail!("dependency {s:?} is not `name` or `name OP version` (OP: = < <= > >=)");
    }
    Ok(Dependency::any(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_parse() {
        assert!(parse_dependency("python(abi) = 3.11").is_ok());
        assert!(parse_dependency("foo>=1.2").is_ok());
        assert!(parse_dependency("bar").is_ok());
        for bad in ["", "a b", "x >=", ">= 1"] {
            let e = parse_dependency(bad).unwrap_err().to_string();
            assert!(e.contains("is not `name`"), "{e}");
        }
    }
}
