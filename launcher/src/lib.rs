//! bbrun: relocate an already-built Python application tree (a zc.buildout
//! buildout or a virtualenv) so it runs from any prefix.
//!
//! The library is split by idea: [`map`] is the relocation map on disk,
//! [`freeze`] writes it, [`launch`] reads it and execs the interpreter with
//! the [`shim`], [`interp`] finds a compatible interpreter, [`shebang`]
//! points script first lines at the launcher.

pub mod autorelocate;
pub mod buildout;
pub mod bundle;
pub mod check;
pub mod cli;
pub mod commands;
pub mod debris;
pub mod elfwalk;
pub mod errline;
pub mod freeze;
pub mod fsutil;
pub mod install;
pub mod install_links;
pub mod interp;
pub mod launch;
pub mod launch_view;
pub mod map;
pub mod map_check;
pub mod native;
pub mod package;
pub mod packstate;
pub mod pymodule;
pub mod pyview;
pub mod relocate;
pub mod retarget;
pub mod safedir;
pub mod shebang;
pub mod shim;
pub mod state;
pub mod tree;
pub mod upgrade;
pub mod vendor;
#[cfg(test)]
mod vendor_tests;
pub mod verify;
