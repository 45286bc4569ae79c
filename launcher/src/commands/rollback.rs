//! `bbrun rollback DEST`: put back the tree the last `bbrun install`
//! replaced, keeping the application's state.

use std::path::PathBuf;

use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The installed tree (its previous version is `.DEST.bbrun-prev`).
    pub dest: PathBuf,
    /// Roll back even when an instance seems to run from DEST.
    #[arg(long)]
    pub force: bool,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<i32> {
    let report = bbrun_ship::rollback::rollback(&args.dest, args.force)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "rolled back {}; the tree it replaced is kept at {} (rollback again to swap back)",
            report.dest, report.backup
        );
        super::install::print_kept(&report.kept);
    }
    Ok(0)
}
