//! `bbrun shebang ROOT`: point each script's first line at the launcher (or
//! back at its original interpreter with `--restore`).

use std::path::PathBuf;

use anyhow::{Context, Result};

use bbrun_run::shebang;
use bbrun_run::tree::FrozenTree;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The frozen tree.
    pub root: PathBuf,
    /// Launcher path to name in the first line (default: this bbrun).
    #[arg(long, conflicts_with_all = ["env", "restore"])]
    pub launcher: Option<PathBuf>,
    /// Write `#!/usr/bin/env bbrun`: survives moves, needs bbrun on PATH.
    #[arg(long, conflicts_with = "restore")]
    pub env: bool,
    /// Put back the shebangs buildout wrote (recorded in the map).
    #[arg(long)]
    pub restore: bool,
    /// Show what would change without writing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<i32> {
    let tree = FrozenTree::open(&args.root)?;
    if !args.dry_run {
        bbrun_run::debris::sweep(&tree.root)?;
    }
    let launcher = if args.env || args.restore {
        None
    } else {
        Some(match &args.launcher {
            Some(p) => p.clone(),
            None => std::env::current_exe().context("cannot locate the running bbrun")?,
        })
    };
    let changes = shebang::apply(&tree, launcher.as_deref(), args.restore, args.dry_run)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&changes)?);
    } else {
        for c in &changes {
            println!(
                "{}{}: {} -> {}\n  body sha256 before {}\n  body sha256 after  {}",
                if args.dry_run { "(dry run) " } else { "" },
                c.path,
                c.old_line,
                c.new_line,
                c.body_sha256_before,
                c.body_sha256_after
            );
        }
    }
    Ok(0)
}
