//! `bbrun run SCRIPT [ARGS...]` and the short form `bbrun SCRIPT [ARGS...]`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Result;

use bbrun_run::launch;
use bbrun_ship::LAUNCH_HOOKS;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print the interpreter command line and environment instead of running.
    #[arg(long)]
    pub print: bool,
    /// The script to run, inside a frozen tree.
    pub script: PathBuf,
    /// Arguments for the script, passed through untouched.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

pub fn run(args: Args) -> Result<i32> {
    let plan = launch::plan(&args.script, &args.args, &LAUNCH_HOOKS)?;
    if args.print {
        for (k, v) in &plan.env {
            println!(
                "{}={}",
                k.to_string_lossy(),
                v.to_string_lossy().replace('\n', "\\n")
            );
        }
        let words: Vec<String> = plan
            .argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        println!("{}", words.join(" "));
        if plan.buildout {
            println!("# a buildout run: bbrun runs it as a child, offline, with a snapshot (bbrun buildout)");
        }
        return Ok(0);
    }
    launch_or_buildout(plan, &args.script, &args.args)
}

/// The short form, and the shebang form (`#!/usr/bin/env bbrun`).
pub fn run_script(script: PathBuf, args: Vec<OsString>) -> Result<i32> {
    launch_or_buildout(launch::plan(&script, &args, &LAUNCH_HOOKS)?, &script, &args)
}

/// Exec the script, unless it is a buildout run that may change the tree
/// (offline and transactional, as a child). Either way, a tree left
/// half-changed by a killed buildout run is put back first.
fn launch_or_buildout(plan: launch::LaunchPlan, script: &Path, args: &[OsString]) -> Result<i32> {
    if plan.buildout {
        return bbrun_buildout::run_planned(plan, script, args);
    }
    bbrun_buildout::repair_before_launch(&plan.root)?;
    launch::exec(plan)
}
