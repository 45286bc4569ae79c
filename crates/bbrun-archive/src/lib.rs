//! Archives and system packages of a frozen tree: reproducible tar.zst /
//! tar.gz ([`tarball`]), .deb ([`deb`]) and .rpm ([`rpmpkg`]) writers over
//! one [`packset::PackSet`], the [`manifest`] every archive carries, and
//! safe unpacking.

pub mod deb;
pub mod manifest;
pub mod onepass;
pub mod onepass_file;
pub mod onepass_tree;
pub mod packset;
pub mod pkgscripts;
pub mod reproducible;
pub mod rpmpkg;
pub mod tarball;
pub mod unpack;
pub mod walk;
