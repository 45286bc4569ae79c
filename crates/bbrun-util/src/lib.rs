//! The bottom of bbrun's crates: small helpers every other crate uses and
//! that know nothing of trees or maps. [`fsutil`] writes files so a reader
//! never sees half of one (temp sibling, fsync, rename) and names and
//! sweeps the temp files of killed runs; [`errline`] keeps an error one
//! readable line whatever it quotes.

pub mod errline;
pub mod fsutil;
