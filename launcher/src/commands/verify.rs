//! `bbrun verify ROOT`: compare a tree with its manifest. Exit 0 when the
//! only differences are bbrun's own (relocation rewrites, script first
//! lines), 1 otherwise.

use std::path::PathBuf;

use anyhow::Result;

use bbrun_ship::verify;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The tree to check (holding .bbrun/manifest.tsv).
    pub root: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<i32> {
    let root = bbrun_util::fsutil::absolute_lexical(&args.root)?;
    let report = verify::verify_tree(&root)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for p in &report.changed {
            println!("changed: {p}");
        }
        for p in &report.missing {
            println!("missing: {p}");
        }
        for p in &report.added {
            println!("added: {p}");
        }
        for m in report.mode_changed.iter().filter(|m| m.error) {
            println!("mode: {} {} -> {} ({})", m.path, m.packed, m.now, m.what);
        }
        for o in &report.owner_changed {
            println!(
                "owner: {} uid {} gid {} (the tree's root: uid {} gid {})",
                o.path, o.uid, o.gid, report.root_uid, report.root_gid
            );
        }
        for e in &report.expected {
            println!("expected: {} ({})", e.path, e.reason);
        }
        for n in &report.notes {
            println!("note: {n}");
        }
        let n = report.changed.len()
            + report.missing.len()
            + report.added.len()
            + report.mode_changed.iter().filter(|m| m.error).count()
            + report.owner_changed.len();
        if report.ok {
            println!(
                "{}: matches its manifest ({} expected difference(s))",
                report.root,
                report.expected.len()
            );
        } else {
            println!("{}: {n} unexpected difference(s)", report.root);
        }
    }
    Ok(if report.ok { 0 } else { 1 })
}
