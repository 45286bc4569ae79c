//! `bbrun run SCRIPT [ARGS...]` and the short form `bbrun SCRIPT [ARGS...]`.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Result;

use crate::launch;

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
    let plan = launch::plan(&args.script, &args.args)?;
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
        return Ok(0);
    }
    launch::exec(plan)
}

/// The short form, and the shebang form (`#!/usr/bin/env bbrun`).
pub fn run_script(script: PathBuf, args: Vec<OsString>) -> Result<i32> {
    launch::exec(launch::plan(&script, &args)?)
}
