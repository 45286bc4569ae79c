//! `bbrun check` (not implemented yet).

use std::path::PathBuf;

use anyhow::{bail, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The tree or archive to work on.
    pub path: PathBuf,
}

pub fn run(args: Args) -> Result<i32> {
    bail!(
        "{}: `bbrun check` is not implemented yet",
        args.path.display()
    )
}
