//! `bbrun relocate ROOT`: after a tree was moved by hand (`cp -a`, rsync),
//! rewrite its recorded files (`.installed.cfg`, egg-links, `.pth` ...) for
//! where it is now and record that in its map. Idempotent.

use std::path::PathBuf;

use anyhow::Result;

use bbrun_run::tree::FrozenTree;
use bbrun_ship::retarget;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The moved tree.
    pub root: PathBuf,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<i32> {
    let root = bbrun_util::fsutil::absolute_lexical(&args.root)?;
    // Fails with a clear message when ROOT is not a frozen tree.
    FrozenTree::open(&root)?;
    let here = root.display();
    let report = retarget::retarget(&root, &root)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    if report.resumed {
        println!("{here}: finished an interrupted relocate");
    }
    if report.from.is_empty() {
        println!("{here}: already relocated for this path; nothing to do");
    } else {
        println!(
            "{here}: relocated from {} ({} file(s) rewritten)",
            report.from,
            report.rewritten.len()
        );
        for f in &report.rewritten {
            println!("  rewritten: {f}");
        }
    }
    for f in &report.missing {
        println!("  recorded but missing (skipped): {f}");
    }
    Ok(0)
}
