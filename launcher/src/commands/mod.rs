//! One module per subcommand: its clap arguments and its `run`.

pub mod buildout;
pub mod check;
pub mod freeze;
pub mod install;
pub mod pack;
pub mod relocate;
pub mod rollback;
pub mod run;
pub mod shebang;
pub mod verify;
