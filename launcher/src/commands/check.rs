//! `bbrun check ROOT [--json]`: run on the target machine before going
//! live; reports every shared library that will not load here.
//!
//! Exit status: 0 when everything resolves, 1 when problems were found
//! (missing libraries, missing symbol versions, unreadable ELF files),
//! 2 when the check itself could not run (no such tree, corrupt
//! `/etc/ld.so.cache`...).

use std::path::PathBuf;

use anyhow::Result;

use bbrun_freeze::check::{self, CheckReport};
use bbrun_util::fsutil;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit status: 0 when every library resolves, 1 when problems were found, 2 when the check could not run."
)]
pub struct Args {
    /// The tree to check (a frozen buildout or virtualenv).
    pub path: PathBuf,
    /// Print the report as JSON (every file, its resolved libraries and
    /// its problems).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<i32> {
    let root = fsutil::absolute_lexical(&args.path)?;
    let report = check::check(&root)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.ok { 0 } else { 1 })
}

fn print_report(r: &CheckReport) {
    println!("{}: checked {} ELF files", r.root, r.checked);
    if let Some(py) = &r.interpreter {
        println!("extensions checked as loaded by {py}");
    }
    for f in &r.problems {
        let what = match &f.module {
            Some(m) => format!("{} (module {m})", f.path),
            None => format!("{} ({})", f.path, f.kind),
        };
        println!("{what}:");
        if let Some(e) = &f.error {
            println!("  cannot read: {e}");
        }
        for m in &f.missing {
            if m.needed_by == f.path {
                println!("  {}: not found", m.name);
            } else {
                println!("  {}: not found (needed by {})", m.name, m.needed_by);
            }
            for r in &m.rejected {
                println!("    skipped {r}");
            }
        }
        for v in &f.versions {
            println!("  {}: {}", v.object, v.message);
        }
        if let Some(m) = &f.module {
            println!("  => `import {m}` will fail on this machine");
        }
    }
    if r.ok {
        println!("ok: every shared library resolves on this machine");
    } else {
        println!(
            "{} of {} files will not load on this machine",
            r.problems.len(),
            r.checked
        );
    }
}
