//! `bbrun buildout ROOT [ARGS…]`: re-run zc.buildout in a frozen tree at
//! its target, offline and compiler-less, all-or-nothing (see
//! [`bbrun_buildout::buildout`]). ARGS go to buildout (`-c other.cfg`,
//! `install part`, `section:option=value`); buildout runs in ROOT.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result};

use bbrun_run::tree::FrozenTree;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The frozen tree (holding .bbrun/map.toml and buildout.cfg).
    pub root: PathBuf,
    /// Arguments for buildout, passed through.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

pub fn run(args: Args) -> Result<i32> {
    let root = bbrun_util::fsutil::absolute_lexical(&args.root)?;
    let tree = FrozenTree::open(&root)?;
    let script = bbrun_buildout::script_of(&tree)?;
    // Buildout reads buildout.cfg (and a relative `-c FILE`) from its
    // working directory, as `cd ROOT && bin/buildout` would.
    std::env::set_current_dir(&root)
        .with_context(|| format!("{}: cannot change into it", root.display()))?;
    bbrun_buildout::run(&root, &script, &args.args, bbrun_buildout::Moved::Relocate)
}
