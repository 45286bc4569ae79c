//! The relocation map format: what `bbrun freeze` writes into a tree's
//! `.bbrun/` and everything else reads. It is the contract between the
//! build side (freeze) and the run side (the launcher), so it depends on
//! neither.
//!
//! [`schema`] holds the map's and inventory's types, [`map`] reads and
//! writes them; [`map_check`] refuses a map
//! that could make the launcher read outside its tree; [`state`] is the
//! map's `[state]` table (which paths hold application data);
//! [`relocate`] is what the map means at a new root: the prefix pairs the
//! shim maps at run time and the text rewrite relocate and install apply.

pub mod map;
pub mod map_check;
pub mod relocate;
pub mod schema;
pub mod state;
