//! Emulating the dynamic loader's library search on this machine: which
//! file each DT_NEEDED of an ELF object resolves to (or that none does),
//! following glibc's order (see [`search`]), `/etc/ld.so.cache` parsed
//! directly ([`cache`]), and symbol versions the resolved libraries lack
//! ([`versions`]). [`policy`] says which libraries every Linux system
//! provides, for vendoring decisions.

pub mod cache;
pub mod expand;
pub mod fs;
pub mod machine;
pub mod object;
pub mod policy;
pub mod search;
#[cfg(test)]
mod search_tests;
pub mod versions;

pub use object::{Arch, Object, Probe, Source, VersionNeed};
pub use search::{Config, Edge, Node, Process, Via};
pub use versions::VersionProblem;
