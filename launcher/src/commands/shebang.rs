//! `bbrun shebang ROOT`: point each script's first line at the launcher (or
//! back at its original interpreter with `--restore`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::shebang::{self, LineChange};
use crate::tree::FrozenTree;

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
        crate::debris::sweep(&tree.root)?;
    }
    let launcher = if args.env || args.restore {
        None
    } else {
        Some(match &args.launcher {
            Some(p) => p.clone(),
            None => std::env::current_exe().context("cannot locate the running bbrun")?,
        })
    };
    let changes = apply(&tree, launcher.as_deref(), args.restore, args.dry_run)?;
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

/// Rewrite line 1 of every script the map records.
pub fn apply(
    tree: &FrozenTree,
    launcher: Option<&Path>,
    restore: bool,
    dry_run: bool,
) -> Result<Vec<LineChange>> {
    let line = shebang::launcher_line(launcher);
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
        changes.push(shebang::set_first_line(&path, new_line, dry_run)?);
    }
    Ok(changes)
}
