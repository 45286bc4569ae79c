//! The `bbrun` binary's library: the command line and nothing else. Each
//! module of [`commands`] parses one subcommand's arguments, calls the crate
//! that does the work, and prints its report:
//!
//! - `bbrun SCRIPT`, `bbrun run`: [`bbrun_run`] (the hot path);
//! - `bbrun freeze`, `bbrun check`: [`bbrun_freeze`];
//! - `bbrun pack/install/verify/relocate/rollback`: [`bbrun_ship`];
//! - `bbrun buildout`: [`bbrun_buildout`].
//!
//! The map format they share is [`bbrun_map`]; docs/architecture.md draws
//! the whole.

pub mod cli;
pub mod commands;
