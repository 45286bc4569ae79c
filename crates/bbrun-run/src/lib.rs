//! The launcher's hot path: everything `bbrun bin/script` does before it
//! execs Python, and nothing else. [`tree`] finds and opens the frozen tree
//! (its map, checked); [`interp`] and [`pyview`] find a compatible
//! interpreter; [`launch`] plans the exec with the [`shim`] on
//! `PYTHONPATH` and [`exec`] carries it out; [`shebang`] reads and writes script first lines;
//! [`safedir`] makes the per-user cache safe to load code from; [`debris`]
//! sweeps what killed runs left.
//!
//! The tooling crates (freeze, ship, buildout) depend on this one, never
//! the reverse: what a launch needs from them (rewriting a moved tree's
//! files) is passed in by the binary (see [`launch::Hooks`]).

pub mod debris;
pub mod exec;
pub mod interp;
pub mod launch;
pub mod launch_view;
pub mod pyview;
pub mod safedir;
pub mod shebang;
pub mod shim;
pub mod tree;
pub mod tree_state;
