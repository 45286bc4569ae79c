//! `bbrun pack ROOT --format tar.zst|tar.gz|deb|rpm`: a reproducible
//! archive or system package of a frozen tree, with its manifest inside at
//! `.bbrun/manifest.tsv`.
//!
//! The manifest is written into the archive stream only: a manifest already
//! in the tree (from an earlier install) is left out and replaced by one
//! describing exactly the packed content, so the tree on disk is never
//! modified by packing. The work is [`bbrun_ship::pack`]; this module
//! parses the options, draws the progress bar and prints the summary.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::Result;
use bbrun_ship::pack::{self, PackOptions, PackageOptions, Summary, Watch};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    #[value(name = "tar.zst")]
    TarZst,
    #[value(name = "tar.gz")]
    TarGz,
    Deb,
    Rpm,
}

impl From<Format> for pack::Format {
    fn from(f: Format) -> pack::Format {
        match f {
            Format::TarZst => pack::Format::TarZst,
            Format::TarGz => pack::Format::TarGz,
            Format::Deb => pack::Format::Deb,
            Format::Rpm => pack::Format::Rpm,
        }
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

pub fn run(args: Args) -> Result<i32> {
    let pkg = *args.pkg;
    let opts = PackOptions {
        path: args.path,
        format: args.format.into(),
        output: args.output,
        level: args.level,
        with_data: args.with_data,
        sha256: args.json,
        pkg: PackageOptions {
            prefix: pkg.prefix,
            name: pkg.name,
            version: pkg.version,
            release: pkg.release,
            arch: pkg.arch,
            description: pkg.description,
            depends: pkg.depends,
            no_python_depends: pkg.no_python_depends,
            maintainer: pkg.maintainer,
            license: pkg.license,
            deb_compression: match pkg.deb_compression {
                DebCompression::Gz => pack::DebCompression::Gz,
                DebCompression::Zst => pack::DebCompression::Zst,
            },
        },
    };
    let watch = Bar::default();
    let begun = std::time::Instant::now();
    let summary = pack::pack(&opts, &watch)?;
    let ended = std::time::Instant::now();
    // BBRUN_PACK_TIMING=1 prints each phase's time (benches/pack.sh).
    if std::env::var_os("BBRUN_PACK_TIMING").is_some() {
        if let (Some(t0), Some(t1), Some(t2)) =
            (watch.started.get(), watch.writing.get(), watch.done.get())
        {
            // An archive is listed while it is written: its listing ends
            // inside the writing phase.
            let listed = watch
                .listed
                .get()
                .map_or(0.0, |t| (*t - begun).as_secs_f64());
            eprintln!(
                "bbrun pack: before work {:.2}s, listed at {:.2}s, hashing {:.2}s, writing {:.2}s, finishing {:.2}s",
                (*t0 - begun).as_secs_f64(),
                listed,
                (*t1 - *t0).as_secs_f64(),
                (*t2 - *t1).as_secs_f64(),
                (ended - *t2).as_secs_f64()
            );
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary, opts.format.is_package() || opts.with_data);
    }
    Ok(0)
}

fn print_summary(s: &Summary, data_has_a_place: bool) {
    println!(
        "{}: wrote {} ({} files, {} bytes)",
        s.output, s.format, s.files, s.bytes
    );
    if !s.state_left_out.is_empty() {
        println!(
            "  application state left out: {} file(s){}",
            s.state_left_out.len(),
            if data_has_a_place {
                ""
            } else {
                " (--with-data packs the data as initial state)"
            }
        );
    }
}

/// A byte-count bar on stderr for trees worth watching, hidden when
/// stderr is not a terminal (CI logs, pipes); and when each phase began.
#[derive(Default)]
struct Bar {
    bar: OnceLock<indicatif::ProgressBar>,
    started: OnceLock<Instant>,
    listed: OnceLock<Instant>,
    writing: OnceLock<Instant>,
    done: OnceLock<Instant>,
}

impl Watch for Bar {
    fn note(&self, line: &str) {
        eprintln!("bbrun: note: {line}");
    }

    fn start(&self, total: Option<u64>) {
        let _ = self.started.set(Instant::now());
        if let Some(total) = total {
            self.total(total);
        }
    }

    fn total(&self, total: u64) {
        let _ = self.listed.set(Instant::now());
        let _ = self.bar.set(progress_bar(total));
    }

    fn phase(&self, name: &'static str) {
        if name == "writing" {
            let _ = self.writing.set(Instant::now());
        }
        if let Some(b) = self.bar.get() {
            b.set_message(name);
        }
    }

    fn position(&self, done: u64) {
        if let Some(b) = self.bar.get() {
            b.set_position(done);
        }
    }

    fn finish(&self) {
        if let Some(b) = self.bar.get() {
            b.finish_and_clear();
        }
        let _ = self.done.set(Instant::now());
    }
}

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
