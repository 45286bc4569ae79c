//! A relocation map: parse + validate, then what the launcher derives
//! from it (path pairs, the BBRUN_PATHMAP encoding), and the byte-safe
//! root encoding round trip. Never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(map) = bbrun_map::map::parse(text, Path::new("map.toml")) {
        let pairs = bbrun_map::relocate::rewrite_pairs(&map, Path::new("/new/root"));
        let enc = bbrun_map::map_check::encode_pathmap(&pairs);
        // What the launcher puts in the environment must be settable.
        assert!(!std::os::unix::ffi::OsStrExt::as_bytes(enc.as_os_str()).contains(&0));
        let _ = map.old_roots();
    }
    // Roots that are not UTF-8 are stored as `bytes:` text: any string
    // that decodes encodes back to the same path.
    if let Some(root) = bbrun_map::map::RootPath::decode(text) {
        assert_eq!(bbrun_map::map::RootPath::decode(&root.encode()), Some(root));
    }
});
