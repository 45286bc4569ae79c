//! `bbrun freeze`: read an already-built tree and record what a move
//! would break. [`freeze`] scans, collects external prefixes, records
//! scripts and writes the map; [`native`] makes ELF search paths
//! `$ORIGIN`-relative and, on request, [`vendor`]s libraries and
//! [`bundle`]s the interpreter; [`check`] (`bbrun check`) asks whether the
//! tree's native code loads on this machine.

pub mod bundle;
pub mod check;
pub mod elfwalk;
pub mod freeze;
pub mod native;
pub mod native_report;
pub mod pymodule;
pub mod vendor;
#[cfg(test)]
mod vendor_tests;
