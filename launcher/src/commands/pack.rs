//! `bbrun pack ROOT --format tar.zst|tar.gz|deb|rpm`: a reproducible
//! archive or system package of a frozen tree, with its manifest inside at
//! `.bbrun/manifest.tsv`.
//!
//! The manifest is written into the archive stream only: a manifest already
//! in the tree (from an earlier install) is left out and replaced by one
//! describing exactly the packed content, so the tree on disk is never
//! modified by packing.

use std::fs::OpenOptions;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context, Result};
use bbrun_archive::deb::{self, DebMeta};
use bbrun_archive::manifest::{EntryKind, MANIFEST_PATH};
use bbrun_archive::onepass_file;
use bbrun_archive::packset::PackSet;
use bbrun_archive::rpmpkg::{self, RpmMeta};
use bbrun_archive::tarball::Compression;
use serde::Serialize;

use crate::{fsutil, map, package, packstate};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    #[value(name = "tar.zst")]
    TarZst,
    #[value(name = "tar.gz")]
    TarGz,
    Deb,
    Rpm,
}

impl Format {
    fn as_str(self) -> &'static str {
        match self {
            Format::TarZst => "tar.zst",
            Format::TarGz => "tar.gz",
            Format::Deb => "deb",
            Format::Rpm => "rpm",
        }
    }

    fn is_package(self) -> bool {
        matches!(self, Format::Deb | Format::Rpm)
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebCompression {
    Gz,
    Zst,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The frozen tree to pack (holds .bbrun/map.toml).
    pub path: PathBuf,
    /// Archive or package format.
    #[arg(long, value_enum)]
    pub format: Format,
    /// Output file [default: NAME.tar.zst, NAME_VERSION_ARCH.deb,
    /// NAME-VERSION-RELEASE.ARCH.rpm in the current directory].
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Compression level [default: zstd 3, gzip 6].
    #[arg(long, allow_negative_numbers = true)]
    pub level: Option<i32>,
    /// Print a JSON summary (output, format, files, bytes, sha256).
    #[arg(long)]
    pub json: bool,
    /// tar.zst/tar.gz: pack the application's data (state of class data,
    /// e.g. var/filestorage/Data.fs) as the initial state of a fresh
    /// install. Logs, pid/lock files, sockets and caches are never packed.
    #[arg(long)]
    pub with_data: bool,
    /// Package metadata (deb/rpm).
    #[command(flatten)]
    pub pkg: Box<PackageArgs>,
}

/// Options for --format deb and rpm (boxed: the CLI enum stays small).
#[derive(clap::Args, Debug)]
pub struct PackageArgs {
    /// deb/rpm: where the package installs the tree [default: /opt/NAME].
    #[arg(long)]
    pub prefix: Option<String>,
    /// deb/rpm: package name [default: from ROOT's directory name].
    #[arg(long)]
    pub name: Option<String>,
    /// deb/rpm: package version.
    #[arg(long, default_value = "0.1.0")]
    pub version: String,
    /// rpm: package release.
    #[arg(long, default_value = "1")]
    pub release: String,
    /// deb/rpm: architecture [default: this machine's, e.g. amd64 / x86_64].
    #[arg(long)]
    pub arch: Option<String>,
    /// deb/rpm: description; the first line is the summary.
    #[arg(long)]
    pub description: Option<String>,
    /// deb/rpm: a dependency (repeatable), e.g. `libpq5` or `libpq >= 13`.
    /// Added to the interpreter dependency (deb: python3.X, rpm:
    /// `python(abi) = 3.X`) used when the tree bundles no interpreter.
    #[arg(long = "depends")]
    pub depends: Vec<String>,
    /// deb/rpm: do not add the interpreter dependency.
    #[arg(long)]
    pub no_python_depends: bool,
    /// deb: the Maintainer field.
    #[arg(long, default_value = "bbrun pack <root@localhost>")]
    pub maintainer: String,
    /// rpm: the License field.
    #[arg(long, default_value = "Unknown")]
    pub license: String,
    /// deb: compression of data.tar (gz: every dpkg; zst: dpkg >= 1.21.18).
    #[arg(long, value_enum, default_value = "gz")]
    pub deb_compression: DebCompression,
}

#[derive(Serialize)]
struct Summary {
    output: String,
    format: &'static str,
    /// Regular files (hardlinks included), the manifest included.
    files: usize,
    /// Every entry: files, directories, links.
    entries: usize,
    /// Size of the artifact.
    bytes: u64,
    /// Bytes of file content packed.
    content_bytes: u64,
    sha256: String,
    /// Sockets in the tree, left out (they belong to a running program).
    skipped_sockets: Vec<String>,
    /// Application state left out (see docs/state.md), as `path (class)`.
    state_left_out: Vec<String>,
    /// Data packed with --with-data.
    data_packed: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    package: Option<PackageSummary>,
}

#[derive(Serialize)]
struct PackageSummary {
    name: String,
    version: String,
    arch: String,
    prefix: String,
    depends: Vec<String>,
    rewritten_files: usize,
    /// State directories the post-install script creates.
    state_dirs: Vec<String>,
    /// conffiles / %config(noreplace).
    config_files: Vec<String>,
}

pub fn run(args: Args) -> Result<i32> {
    let root = fsutil::absolute_lexical(&args.path)?;
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
    if !args.format.is_package() {
        for (flag, set) in [
            ("--prefix", args.pkg.prefix.is_some()),
            ("--name", args.pkg.name.is_some()),
            ("--arch", args.pkg.arch.is_some()),
            ("--depends", !args.pkg.depends.is_empty()),
        ] {
            if set {
                bail!("{flag} applies to --format deb and rpm only");
            }
        }
    }
    let compression = compression(&args)?;
    if args.with_data && args.format.is_package() {
        bail!("--with-data applies to tar.zst and tar.gz: a package never ships state (its post-install script creates the state directories)");
    }

    let mut set = PackSet::from_tree(&root)?;
    for s in &set.skipped_sockets {
        eprintln!(
            "bbrun: note: {}: socket left out of the archive",
            root.join(s).display()
        );
    }
    let stripped = packstate::strip(
        &mut set,
        &map.state,
        args.with_data,
        args.format.is_package(),
    );
    let mut pkg = None;
    if args.format.is_package() {
        let name = args
            .pkg
            .name
            .clone()
            .unwrap_or_else(|| package::default_name(&root));
        let prefix = package::check_prefix(
            &args
                .pkg
                .prefix
                .clone()
                .unwrap_or_else(|| format!("/opt/{name}")),
        )?;
        let rewritten = package::prepare_for_prefix(&mut set, &root, &map, &prefix)?;
        let (deb_arch, rpm_arch) = package::machine_arch();
        let python = (!args.pkg.no_python_depends)
            .then(|| package::interpreter_depends(&map))
            .flatten();
        let mut depends: Vec<String> = match (args.format, python) {
            (Format::Deb, Some((d, _))) => vec![d],
            (Format::Rpm, Some((_, r))) => vec![r],
            _ => vec![],
        };
        depends.extend(args.pkg.depends.iter().cloned());
        pkg = Some(PackageSummary {
            arch: args.pkg.arch.clone().unwrap_or_else(|| {
                if args.format == Format::Deb {
                    deb_arch
                } else {
                    rpm_arch
                }
                .to_string()
            }),
            name,
            version: args.pkg.version.clone(),
            prefix,
            depends,
            rewritten_files: rewritten,
            state_dirs: stripped.dirs.iter().map(|(d, _)| d.clone()).collect(),
            config_files: package::config_files(&set, &root, &map)?,
        });
    }

    let output = match &args.output {
        Some(o) => fsutil::absolute_lexical(o)?,
        None => std::env::current_dir()?.join(default_output(&args, &root, pkg.as_ref())),
    };
    if output.starts_with(&root) {
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

    // A tar archive is written in one read of the tree, hashing as it
    // goes (bbrun_archive::onepass); packages hash first, then write.
    let one_pass = matches!(args.format, Format::TarZst | Format::TarGz);
    let passes = if one_pass { 1 } else { 2 };
    let bar = progress_bar(set.content_bytes() * passes);
    let done = AtomicU64::new(0);
    let progress = |n: u64| {
        let total = done.fetch_add(n, Ordering::Relaxed) + n;
        bar.set_position(total);
    };
    // BBRUN_PACK_TIMING=1 prints each phase's time (benches/pack.sh).
    let timing = std::env::var_os("BBRUN_PACK_TIMING").is_some();
    let t0 = std::time::Instant::now();
    if !one_pass {
        bar.set_message("hashing");
        set.add_manifest(&progress)?;
    }
    bar.set_message("writing");
    let t1 = std::time::Instant::now();

    let mut manifest = None;
    write_atomically(&output, |out| match args.format {
        Format::TarZst | Format::TarGz => {
            // Nothing is buffered yet: the tail is written in place.
            let m = onepass_file::write_with_manifest_to_file(
                &set,
                compression,
                out.get_mut(),
                &progress,
            )?;
            manifest = Some(m);
            Ok(())
        }
        Format::Deb => {
            let p = pkg.as_ref().expect("package metadata for deb");
            let meta = DebMeta {
                name: p.name.clone(),
                version: p.version.clone(),
                arch: p.arch.clone(),
                maintainer: args.pkg.maintainer.clone(),
                description: description(&args, &p.name),
                depends: p.depends.clone(),
                state: package_state(p, &stripped),
            };
            deb::write_deb(&set, &meta, &p.prefix, compression, out, &progress)
        }
        Format::Rpm => {
            let p = pkg.as_ref().expect("package metadata for rpm");
            let meta = RpmMeta {
                name: p.name.clone(),
                version: p.version.clone(),
                release: args.pkg.release.clone(),
                arch: p.arch.clone(),
                license: args.pkg.license.clone(),
                description: description(&args, &p.name),
                requires: p.depends.clone(),
                state: package_state(p, &stripped),
            };
            let level = match compression {
                Compression::Zstd(l) => l,
                Compression::Gzip(_) => 3,
            };
            rpmpkg::write_rpm(&set, &meta, &p.prefix, level, out, &progress)
        }
    })?;
    bar.finish_and_clear();
    if let Some(m) = manifest {
        // The summary below counts the manifest like any packed file.
        set.put_file(MANIFEST_PATH, m.to_bytes(), Some(0o644))?;
    }
    if timing {
        eprintln!(
            "bbrun pack: hashing {:.2}s, writing {:.2}s",
            (t1 - t0).as_secs_f64(),
            t1.elapsed().as_secs_f64()
        );
    }

    let bytes = std::fs::metadata(&output)
        .with_context(|| format!("{}: cannot stat", output.display()))?
        .len();
    let files = set
        .entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::File | EntryKind::Hardlink))
        .count();
    if args.json {
        let summary = Summary {
            output: output.display().to_string(),
            format: args.format.as_str(),
            files,
            entries: set.entries.len(),
            bytes,
            content_bytes: set.content_bytes(),
            sha256: fsutil::sha256_file(&output)?,
            skipped_sockets: set.skipped_sockets.clone(),
            state_left_out: stripped
                .left_out
                .iter()
                .map(|(p, c)| format!("{p} ({})", c.as_str()))
                .collect(),
            data_packed: stripped.data_packed.clone(),
            package: pkg,
        };
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{}: wrote {} ({files} files, {bytes} bytes)",
            output.display(),
            args.format.as_str()
        );
        if !stripped.left_out.is_empty() {
            println!(
                "  application state left out: {} file(s){}",
                stripped.left_out.len(),
                if args.format.is_package() || args.with_data {
                    ""
                } else {
                    " (--with-data packs the data as initial state)"
                }
            );
        }
    }
    Ok(0)
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

fn compression(args: &Args) -> Result<Compression> {
    let zstd = matches!(args.format, Format::TarZst | Format::Rpm)
        || (args.format == Format::Deb && args.pkg.deb_compression == DebCompression::Zst);
    Ok(if zstd {
        let level = args.level.unwrap_or(3);
        if !(1..=22).contains(&level) {
            bail!("--level {level}: zstd levels are 1 to 22");
        }
        Compression::Zstd(level)
    } else {
        let level = args.level.unwrap_or(6);
        if !(0..=9).contains(&level) {
            bail!("--level {level}: gzip levels are 0 to 9");
        }
        Compression::Gzip(level as u32)
    })
}

fn description(args: &Args, name: &str) -> String {
    args.pkg
        .description
        .clone()
        .unwrap_or_else(|| format!("{name}: a frozen Python application packed by bbrun"))
}

fn default_output(args: &Args, root: &Path, pkg: Option<&PackageSummary>) -> String {
    match (args.format, pkg) {
        (Format::Deb, Some(p)) => format!("{}_{}_{}.deb", p.name, p.version, p.arch),
        (Format::Rpm, Some(p)) => {
            format!(
                "{}-{}-{}.{}.rpm",
                p.name, p.version, args.pkg.release, p.arch
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
fn write_atomically(
    output: &Path,
    write: impl FnOnce(&mut BufWriter<std::fs::File>) -> Result<()>,
) -> Result<()> {
    let tmp = fsutil::temp_sibling(output);
    let result = (|| -> Result<()> {
        // Readable too: the one-pass writer may move what it wrote.
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("{}: cannot create temporary file", tmp.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, f);
        write(&mut out).with_context(|| format!("{}: cannot write", output.display()))?;
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
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A byte-count bar on stderr for trees worth watching, hidden when
/// stderr is not a terminal (CI logs, pipes).
fn progress_bar(total: u64) -> indicatif::ProgressBar {
    const LARGE: u64 = 32 << 20;
    if !std::io::stderr().is_terminal() || total < LARGE {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:>8} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_nothing_behind() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("app.tar.zst");
        std::fs::write(&out, b"previous artifact").unwrap();
        let err = write_atomically(&out, |w| {
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
