//! `bbrun pack`: a reproducible archive or system package of a frozen
//! tree, with its manifest inside at `.bbrun/manifest.tsv`.
//!
//! The manifest is written into the archive stream only: a manifest already
//! in the tree (from an earlier install) is left out and replaced by one
//! describing exactly the packed content, so the tree on disk is never
//! modified by packing.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context, Result};
use bbrun_archive::deb::{self, DebMeta};
use bbrun_archive::manifest::{EntryKind, MANIFEST_PATH};
use bbrun_archive::onepass_tree::{self, TreePack};
use bbrun_archive::packset::PackSet;
use bbrun_archive::rpmpkg::{self, RpmMeta};
use bbrun_archive::tarball::Compression;
use bbrun_map::map;
use bbrun_util::fsutil;
use serde::Serialize;

use crate::{package, packstate};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    TarZst,
    TarGz,
    Deb,
    Rpm,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::TarZst => "tar.zst",
            Format::TarGz => "tar.gz",
            Format::Deb => "deb",
            Format::Rpm => "rpm",
        }
    }

    pub fn is_package(self) -> bool {
        matches!(self, Format::Deb | Format::Rpm)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebCompression {
    Gz,
    Zst,
}

/// What to pack, and how (the `bbrun pack` options).
#[derive(Debug)]
pub struct PackOptions {
    /// The frozen tree.
    pub path: PathBuf,
    pub format: Format,
    /// Output file; `None`: the default name in the current directory.
    pub output: Option<PathBuf>,
    /// Compression level; `None`: zstd 3, gzip 6.
    pub level: Option<i32>,
    /// Pack the application's data as the initial state (tar only).
    pub with_data: bool,
    /// Hash the artifact for the summary (`--json`).
    pub sha256: bool,
    pub pkg: PackageOptions,
}

/// Package metadata for deb and rpm.
#[derive(Debug)]
pub struct PackageOptions {
    pub prefix: Option<String>,
    pub name: Option<String>,
    pub version: String,
    pub release: String,
    pub arch: Option<String>,
    pub description: Option<String>,
    pub depends: Vec<String>,
    pub no_python_depends: bool,
    pub maintainer: String,
    pub license: String,
    pub deb_compression: DebCompression,
}

/// Who watches a pack run: the binary draws a progress bar and prints
/// notes; the library only reports.
pub trait Watch: Sync {
    /// A line worth telling the user before the work starts.
    fn note(&self, line: &str);
    /// The work begins: `total` bytes will be read (`None`: known later,
    /// through [`Watch::total`]).
    fn start(&self, total: Option<u64>);
    /// The bytes to read are now known (an archive learns it once the
    /// tree is listed, while it is being written).
    fn total(&self, total: u64);
    /// A new phase (`hashing`, `writing`).
    fn phase(&self, name: &'static str);
    /// `done` of `total` bytes are read so far.
    fn position(&self, done: u64);
    /// The artifact is written.
    fn finish(&self);
}

#[derive(Serialize)]
pub struct Summary {
    pub output: String,
    pub format: &'static str,
    /// Regular files (hardlinks included), the manifest included.
    pub files: usize,
    /// Every entry: files, directories, links.
    pub entries: usize,
    /// Size of the artifact.
    pub bytes: u64,
    /// Bytes of file content packed.
    pub content_bytes: u64,
    /// Of the artifact; empty unless asked for ([`PackOptions::sha256`]).
    pub sha256: String,
    /// Sockets in the tree, left out (they belong to a running program).
    pub skipped_sockets: Vec<String>,
    /// Application state left out (see docs/state.md), as `path (class)`.
    pub state_left_out: Vec<String>,
    /// Data packed with --with-data.
    pub data_packed: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<PackageSummary>,
}

#[derive(Serialize)]
pub struct PackageSummary {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub prefix: String,
    pub depends: Vec<String>,
    pub rewritten_files: usize,
    /// State directories the post-install script creates.
    pub state_dirs: Vec<String>,
    /// conffiles / %config(noreplace).
    pub config_files: Vec<String>,
}

/// Pack the tree `opts.path` as `opts` says.
pub fn pack(opts: &PackOptions, watch: &dyn Watch) -> Result<Summary> {
    let root = fsutil::absolute_lexical(&opts.path)?;
    if !root.is_dir() {
        bail!("{}: no such directory", root.display());
    }
    let map_path = map::map_path(&root);
    if !map_path.is_file() {
        bail!(
            "{}: not a frozen tree (no {}/{}); run `bbrun freeze {}` first",
            root.display(),
            map::STATE_DIR,
            map::MAP_FILE,
            root.display()
        );
    }
    let map = map::load(&map_path)?;
    if !opts.format.is_package() {
        for (flag, set) in [
            ("--prefix", opts.pkg.prefix.is_some()),
            ("--name", opts.pkg.name.is_some()),
            ("--arch", opts.pkg.arch.is_some()),
            ("--depends", !opts.pkg.depends.is_empty()),
        ] {
            if set {
                bail!("{flag} applies to --format deb and rpm only");
            }
        }
    }
    let compression = compression(opts)?;
    if opts.with_data && opts.format.is_package() {
        bail!("--with-data applies to tar.zst and tar.gz: a package never ships state (its post-install script creates the state directories)");
    }

    // A package lists, hashes, then writes (its containers need sizes up
    // front); an archive is written while the tree is listed.
    let mut package = None;
    if opts.format.is_package() {
        let mut set = PackSet::from_tree(&root)?;
        note_sockets(watch, &root, &set.skipped_sockets);
        let stripped = packstate::strip(&mut set, &map.state, false, true);
        let summary = package_summary(opts, &mut set, &root, &map, &stripped)?;
        package = Some((set, stripped, summary));
    }
    let output = output_path(opts, &root, package.as_ref().map(|(_, _, p)| p))?;

    let done = AtomicU64::new(0);
    let progress = |n: u64| {
        let total = done.fetch_add(n, Ordering::Relaxed) + n;
        watch.position(total);
    };
    let (set, stripped, pkg) = match package {
        Some((mut set, stripped, p)) => {
            watch.start(Some(set.content_bytes() * 2));
            watch.phase("hashing");
            set.add_manifest(&progress)?;
            watch.phase("writing");
            write_atomically(&output, |out| {
                write_package(opts, &p, &stripped, &set, compression, out, &progress)
            })?;
            watch.finish();
            (set, stripped, Some(p))
        }
        None => {
            // State is left out as the tree is listed (see packstate).
            let choices = std::sync::Mutex::new(packstate::Stripped::default());
            let keep = |path: &str, kind: EntryKind| {
                let choice = packstate::archive_choice(&map.state, opts.with_data, path, kind);
                if let Ok(mut c) = choices.lock() {
                    c.note(path, choice);
                }
                !matches!(choice, packstate::ArchiveChoice::LeaveOut(_))
            };
            watch.start(None);
            watch.phase("writing");
            let TreePack { mut set, manifest } = write_atomically(&output, |out| {
                // Nothing is buffered yet: the tail is written in place.
                onepass_tree::write_tree_to_file(
                    &root,
                    &keep,
                    compression,
                    out.get_mut(),
                    &progress,
                    &|total| watch.total(total),
                )
            })?;
            watch.finish();
            note_sockets(watch, &root, &set.skipped_sockets);
            // The summary counts the manifest like any packed file.
            set.put_file(MANIFEST_PATH, manifest.to_bytes(), Some(0o644))?;
            (set, choices.into_inner().unwrap_or_default(), None)
        }
    };

    let bytes = std::fs::metadata(&output)
        .with_context(|| format!("{}: cannot stat", output.display()))?
        .len();
    let files = set
        .entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::File | EntryKind::Hardlink))
        .count();
    Ok(Summary {
        output: output.display().to_string(),
        format: opts.format.as_str(),
        files,
        entries: set.entries.len(),
        bytes,
        content_bytes: set.content_bytes(),
        sha256: if opts.sha256 {
            bbrun_archive::manifest::sha256_file(&output)?
        } else {
            String::new()
        },
        skipped_sockets: set.skipped_sockets.clone(),
        state_left_out: stripped
            .left_out
            .iter()
            .map(|(p, c)| format!("{p} ({})", c.as_str()))
            .collect(),
        data_packed: stripped.data_packed.clone(),
        package: pkg,
    })
}

fn note_sockets(watch: &dyn Watch, root: &Path, sockets: &[String]) {
    for s in sockets {
        watch.note(&format!(
            "{}: socket left out of the archive",
            root.join(s).display()
        ));
    }
}

/// Prepare `set` for the package's prefix and describe the package.
fn package_summary(
    opts: &PackOptions,
    set: &mut PackSet,
    root: &Path,
    map: &map::RelocationMap,
    stripped: &packstate::Stripped,
) -> Result<PackageSummary> {
    let name = opts
        .pkg
        .name
        .clone()
        .unwrap_or_else(|| package::default_name(root));
    let prefix = package::check_prefix(
        &opts
            .pkg
            .prefix
            .clone()
            .unwrap_or_else(|| format!("/opt/{name}")),
    )?;
    let rewritten = package::prepare_for_prefix(set, root, map, &prefix)?;
    let (deb_arch, rpm_arch) = package::machine_arch();
    let python = (!opts.pkg.no_python_depends)
        .then(|| package::interpreter_depends(map))
        .flatten();
    let mut depends: Vec<String> = match (opts.format, python) {
        (Format::Deb, Some((d, _))) => vec![d],
        (Format::Rpm, Some((_, r))) => vec![r],
        _ => vec![],
    };
    depends.extend(opts.pkg.depends.iter().cloned());
    Ok(PackageSummary {
        arch: opts.pkg.arch.clone().unwrap_or_else(|| {
            if opts.format == Format::Deb {
                deb_arch
            } else {
                rpm_arch
            }
            .to_string()
        }),
        name,
        version: opts.pkg.version.clone(),
        prefix,
        depends,
        rewritten_files: rewritten,
        state_dirs: stripped.dirs.iter().map(|(d, _)| d.clone()).collect(),
        config_files: package::config_files(set, root, map)?,
    })
}

/// Where the artifact goes; never inside the tree.
fn output_path(opts: &PackOptions, root: &Path, pkg: Option<&PackageSummary>) -> Result<PathBuf> {
    let output = match &opts.output {
        Some(o) => fsutil::absolute_lexical(o)?,
        None => std::env::current_dir()?.join(default_output(opts, root, pkg)),
    };
    if output.starts_with(root) {
        bail!(
            "{}: the output is inside the tree being packed; write it elsewhere (-o)",
            output.display()
        );
    }
    if output.is_dir() {
        bail!(
            "{}: is a directory; give a file name with -o",
            output.display()
        );
    }
    Ok(output)
}

/// Write `set` (its manifest added) as the .deb or .rpm `p` describes.
fn write_package(
    opts: &PackOptions,
    p: &PackageSummary,
    stripped: &packstate::Stripped,
    set: &PackSet,
    compression: Compression,
    out: &mut BufWriter<std::fs::File>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    match opts.format {
        Format::Deb => {
            let meta = DebMeta {
                name: p.name.clone(),
                version: p.version.clone(),
                arch: p.arch.clone(),
                maintainer: opts.pkg.maintainer.clone(),
                description: description(opts, &p.name),
                depends: p.depends.clone(),
                state: package_state(p, stripped),
            };
            deb::write_deb(set, &meta, &p.prefix, compression, out, progress)
        }
        Format::Rpm => {
            let meta = RpmMeta {
                name: p.name.clone(),
                version: p.version.clone(),
                release: opts.pkg.release.clone(),
                arch: p.arch.clone(),
                license: opts.pkg.license.clone(),
                description: description(opts, &p.name),
                requires: p.depends.clone(),
                state: package_state(p, stripped),
            };
            let level = match compression {
                Compression::Zstd(l) => l,
                Compression::Gzip(_) => 3,
            };
            rpmpkg::write_rpm(set, &meta, &p.prefix, level, out, progress)
        }
        Format::TarZst | Format::TarGz => bail!("{}: not a package format", opts.format.as_str()),
    }
}

fn package_state(
    p: &PackageSummary,
    stripped: &packstate::Stripped,
) -> bbrun_archive::pkgscripts::PackageState {
    bbrun_archive::pkgscripts::PackageState {
        dirs: stripped.dirs.clone(),
        config_files: p.config_files.clone(),
    }
}

fn compression(opts: &PackOptions) -> Result<Compression> {
    let zstd = matches!(opts.format, Format::TarZst | Format::Rpm)
        || (opts.format == Format::Deb && opts.pkg.deb_compression == DebCompression::Zst);
    Ok(if zstd {
        let level = opts.level.unwrap_or(3);
        if !(1..=22).contains(&level) {
            bail!("--level {level}: zstd levels are 1 to 22");
        }
        Compression::Zstd(level)
    } else {
        let level = opts.level.unwrap_or(6);
        if !(0..=9).contains(&level) {
            bail!("--level {level}: gzip levels are 0 to 9");
        }
        Compression::Gzip(level as u32)
    })
}

fn description(opts: &PackOptions, name: &str) -> String {
    opts.pkg
        .description
        .clone()
        .unwrap_or_else(|| format!("{name}: a frozen Python application packed by bbrun"))
}

fn default_output(opts: &PackOptions, root: &Path, pkg: Option<&PackageSummary>) -> String {
    match (opts.format, pkg) {
        (Format::Deb, Some(p)) => format!("{}_{}_{}.deb", p.name, p.version, p.arch),
        (Format::Rpm, Some(p)) => {
            format!(
                "{}-{}-{}.{}.rpm",
                p.name, p.version, opts.pkg.release, p.arch
            )
        }
        (f, _) => {
            let base = root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "tree".into());
            format!("{base}.{}", f.as_str())
        }
    }
}

/// Write through a temporary file beside `output`, fsync, rename: readers
/// never see a half-written artifact, and a failure leaves none behind.
fn write_atomically<T>(
    output: &Path,
    write: impl FnOnce(&mut BufWriter<std::fs::File>) -> Result<T>,
) -> Result<T> {
    let tmp = fsutil::temp_sibling(output);
    let result = (|| -> Result<T> {
        // Readable too: the one-pass writer may move what it wrote.
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("{}: cannot create temporary file", tmp.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, f);
        // A fault of the tree (found while it is listed, as an archive is
        // written) names the tree's file; anything else, the output.
        let written = write(&mut out).map_err(|e| {
            if onepass_tree::TreeFault::is_in(&e) {
                e
            } else {
                e.context(format!("{}: cannot write", output.display()))
            }
        })?;
        out.flush()
            .with_context(|| format!("{}: cannot write", tmp.display()))?;
        let f = out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("{}: cannot write", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("{}: cannot sync", tmp.display()))?;
        std::fs::rename(&tmp, output)
            .with_context(|| format!("{}: cannot replace", output.display()))?;
        fsutil::sync_dir(output.parent().unwrap_or(Path::new(".")));
        Ok(written)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_nothing_behind() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("app.tar.zst");
        std::fs::write(&out, b"previous artifact").unwrap();
        let err = write_atomically::<()>(&out, |w| {
            w.write_all(&[0u8; 3 << 20])?;
            bail!("disk on fire")
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("disk on fire"));
        // The old artifact is intact and no temporary file is left.
        assert_eq!(std::fs::read(&out).unwrap(), b"previous artifact");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        write_atomically(&out, |w| Ok(w.write_all(b"new")?)).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
