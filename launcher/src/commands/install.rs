//! `bbrun install ARCHIVE DEST`: unpack safely, verify against the
//! archive's manifest, relocate for DEST, and move into place atomically.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use bbrun_ship::install;

/// Archives smaller than this install too fast for a progress bar to help.
const PROGRESS_MIN_BYTES: u64 = 32 << 20;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A tar.zst or tar.gz made by `bbrun pack` (told apart by content);
    /// `-` reads it from standard input (a pipe), in one pass.
    pub archive: PathBuf,
    /// Where the tree goes: missing, empty, or a previous install to replace.
    pub dest: PathBuf,
    /// Launcher to name in the scripts' first lines (default: this bbrun).
    #[arg(long)]
    pub launcher: Option<PathBuf>,
    /// Do not flush the tree to disk before moving it into place: faster
    /// (the flush covers the whole filesystem, other programs' writes too),
    /// but a power cut just after may leave empty files.
    #[arg(long)]
    pub no_sync: bool,
    /// Keep symlinks that point outside DEST (a virtualenv's
    /// `bin/python3 -> /usr/bin/python3.11`) instead of refusing the
    /// archive. Nothing is ever written through them.
    #[arg(long)]
    pub allow_external_symlinks: bool,
    /// Keep setuid/setgid/sticky bits and group/world write as archived
    /// (by default they are removed, and each removal is listed).
    #[arg(long)]
    pub keep_modes: bool,
    /// Upgrade even when an instance seems to run from DEST (a live pid
    /// file, a held lock, a socket that answers).
    #[arg(long)]
    pub force: bool,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<i32> {
    let launcher = match args.launcher {
        Some(p) => bbrun_util::fsutil::absolute_lexical(&p)?,
        None => std::env::current_exe().context("cannot locate the running bbrun")?,
    };
    let size = std::fs::metadata(&args.archive)
        .map(|m| m.len())
        .unwrap_or(0);
    let bar = if std::io::stderr().is_terminal() && size >= PROGRESS_MIN_BYTES {
        let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} unpacking {bytes}/{total_bytes} [{wide_bar}] {bytes_per_sec} {eta}",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let opts = install::InstallOptions {
        launcher,
        sync: !args.no_sync,
        allow_external_symlinks: args.allow_external_symlinks,
        keep_modes: args.keep_modes,
        force: args.force,
    };
    let result = install::install(&args.archive, &args.dest, &opts, &|n| bar.set_position(n));
    bar.finish_and_clear();
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "installed {} at {} ({} entries, {} bytes, {:.2}s){}",
            report.archive,
            report.dest,
            report.entries,
            report.bytes,
            report.seconds,
            if report.replaced {
                "; replaced the previous tree"
            } else {
                ""
            }
        );
        for f in &report.rewritten {
            println!("  rewritten for {}: {f}", report.dest);
        }
        for m in &report.stripped_modes {
            println!("  mode made safe (setuid/setgid/sticky, group/world write removed; --keep-modes keeps them): {m}");
        }
        if let Some(k) = &report.kept {
            print_kept(k);
        }
        if let Some(b) = &report.backup {
            println!(
                "  previous tree kept at {b} (`bbrun rollback {}` swaps it back)",
                report.dest
            );
        }
        for l in &report.external_symlinks {
            println!("  symlink out of the tree kept: {l}");
        }
        println!(
            "  scripts run through {}: {}",
            report.launcher,
            report.scripts.join(", ")
        );
    }
    Ok(0)
}

/// What an upgrade or a rollback carried over from the replaced tree.
pub fn print_kept(k: &bbrun_ship::upgrade::Moved) {
    for p in &k.state {
        println!("  application state kept: {p}");
    }
    for p in &k.unknown {
        println!("  kept (not in the previous manifest): {p}");
    }
    for p in &k.left_in_backup {
        println!("  left in the backup (the new tree has its own): {p}");
    }
}
