//! Archives and system packages of a frozen tree: reproducible tar.zst /
//! tar.gz, .deb and .rpm writers, the manifest, and safe unpacking.

pub mod manifest;
pub mod unpack;
pub mod walk;
