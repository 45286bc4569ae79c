//! An inventory (`.bbrun/inventory.toml`): parse, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = bbrun_map::map::parse_inventory(text, Path::new("inventory.toml"));
    }
});
