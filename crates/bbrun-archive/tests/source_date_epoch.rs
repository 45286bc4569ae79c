//! `SOURCE_DATE_EPOCH` fixes every timestamp. In its own test binary: it
//! sets a process-wide environment variable.

use std::io::Cursor;

use bbrun_archive::packset::PackSet;
use bbrun_archive::tarball::{self, Compression};

#[test]
fn source_date_epoch_sets_every_mtime_and_packs_identically() {
    std::env::set_var("SOURCE_DATE_EPOCH", "1234567890");
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("bin")).unwrap();
    std::fs::write(d.path().join("bin/app"), b"x").unwrap();
    let pack = || {
        let mut set = PackSet::from_tree(d.path()).unwrap();
        set.add_manifest(&|_| {}).unwrap();
        tarball::write_compressed(&set, "", Compression::Zstd(3), Vec::new(), &|_| {}).unwrap()
    };
    let a = pack();
    // Touching a file changes nothing once the epoch is fixed.
    std::fs::write(d.path().join("bin/app"), b"x").unwrap();
    assert_eq!(a, pack());
    let raw = zstd::decode_all(&a[..]).unwrap();
    let mut ar = tar::Archive::new(Cursor::new(raw));
    for e in ar.entries().unwrap() {
        assert_eq!(e.unwrap().header().mtime().unwrap(), 1_234_567_890);
    }

    std::env::set_var("SOURCE_DATE_EPOCH", "soon");
    let err = PackSet::from_tree(d.path()).unwrap_err().to_string();
    assert!(err.starts_with("SOURCE_DATE_EPOCH=\"soon\""), "{err}");
}
