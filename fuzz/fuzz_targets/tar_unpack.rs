//! An uncompressed tar stream unpacked into a fresh temp dir with every
//! check of `bbrun install` (run it with TMPDIR on a tmpfs): an error or a tree, never a panic, never a
//! write outside the directory.
#![no_main]
use bbrun_archive::unpack::{unpack_decoded, UnpackOptions};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // One unpack per input (half the file-system work per execution):
    // the last byte's low bit picks the symlink policy, so the fuzzer
    // reaches both without the tar stream itself changing meaning.
    let allow = data.last().is_some_and(|b| b & 1 == 1);
    let outer = tempfile::tempdir().unwrap();
    let dest = outer.path().join("d");
    std::fs::create_dir(&dest).unwrap();
    let opts = UnpackOptions {
        allow_external_symlinks: allow,
        ..Default::default()
    };
    let _ = unpack_decoded(Box::new(data), Path::new("fuzz.tar"), &dest, opts, &|| {});
    // Nothing beside DEST.
    let names: Vec<_> = std::fs::read_dir(outer.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "wrote outside DEST");
});
