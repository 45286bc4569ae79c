//! Shipping a frozen tree, beside the freeze → launch path: [`pack`]
//! (archives, and with [`package`] .deb/.rpm, leaving state out per
//! [`packstate`]), [`install`] and [`upgrade`] (unpack safely, keep state,
//! swap atomically; [`rollback`]), [`verify`] (the tree against its
//! manifest), [`retarget`] (`bbrun relocate`: the journaled rewrite of
//! recorded files for a new root) and [`autorelocate`] (the same, done by
//! the first launch of a tree moved by hand).

pub mod autorelocate;
pub mod install;
pub mod install_links;
pub mod pack;
pub mod package;
pub mod packstate;
pub mod retarget;
pub mod rollback;
pub mod upgrade;
pub mod verify;

/// What the launcher needs from shipping (see [`bbrun_run::launch::Hooks`]):
/// a tree moved by hand runs on its own files, never its original's.
pub const LAUNCH_HOOKS: bbrun_run::launch::Hooks = bbrun_run::launch::Hooks {
    own_files: autorelocate::ensure_own_files,
};
