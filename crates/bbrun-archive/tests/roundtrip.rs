//! Archives read back with the `tar` crate: every kind of entry, mode and
//! name survives, the manifest inside describes the content, and the same
//! tree packs to the same bytes.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use bbrun_archive::deb::{self, DebMeta};
use bbrun_archive::manifest::{Manifest, MANIFEST_PATH};
use bbrun_archive::packset::PackSet;
use bbrun_archive::tarball::{self, Compression};

fn sample_tree(r: &Path) {
    let w = |p: &str, data: &[u8], mode: u32| {
        let p = r.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    w("bin/app", b"#!/usr/bin/python3\nprint('hi')\n", 0o755);
    w(
        "lib/data.bin",
        &(0..=255u8).cycle().take(70_000).collect::<Vec<_>>(),
        0o600,
    );
    w(".bbrun/map.toml", b"format = 1\n", 0o644);
    w(".bbrun/manifest.tsv", b"stale, never packed\n", 0o644);
    let long = format!("deep/{}/{}.py", "d".repeat(90), "n".repeat(120));
    w(&long, b"long name", 0o644);
    std::fs::hard_link(r.join("bin/app"), r.join("bin/app-again")).unwrap();
    std::os::unix::fs::symlink("../lib/data.bin", r.join("bin/data")).unwrap();
    std::os::unix::fs::symlink(format!("/{}", "t".repeat(150)), r.join("bin/far")).unwrap();
    std::os::unix::fs::symlink("./x//y/", r.join("bin/odd")).unwrap();
    std::fs::create_dir(r.join("empty")).unwrap();
    std::fs::set_permissions(r.join("empty"), std::fs::Permissions::from_mode(0o750)).unwrap();
    // An old source file, as in an egg byte-compiled at build time.
    w("lib/old.py", b"x = 1\n", 0o644);
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(OLD_MTIME);
    std::fs::File::options()
        .write(true)
        .open(r.join("lib/old.py"))
        .unwrap()
        .set_modified(old)
        .unwrap();
}

const OLD_MTIME: u64 = 1_000_000_000;

fn pack(root: &Path, c: Compression) -> Vec<u8> {
    let mut set = PackSet::from_tree(root).unwrap();
    set.add_manifest(&|_| {}).unwrap();
    tarball::write_compressed(&set, "", c, Vec::new(), &|_| {}).unwrap()
}

#[derive(Debug, PartialEq)]
struct Seen {
    kind: tar::EntryType,
    mode: u32,
    link: Option<String>,
    data: Vec<u8>,
    mtime: u64,
}

fn read_back(tar_bytes: &[u8]) -> BTreeMap<String, Seen> {
    let mut a = tar::Archive::new(Cursor::new(tar_bytes));
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        assert_eq!(h.uid().unwrap(), 0);
        assert_eq!(h.gid().unwrap(), 0);
        assert_eq!(h.username().unwrap(), Some("root"));
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(
            path.trim_end_matches('/').to_string(),
            Seen {
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                link,
                data,
                mtime: h.mtime().unwrap(),
            },
        );
    }
    out
}

#[test]
fn tar_zst_round_trips_every_kind_of_entry() {
    let d = tempfile::tempdir().unwrap();
    sample_tree(d.path());
    let bytes = pack(d.path(), Compression::Zstd(3));
    let seen = read_back(&zstd::decode_all(&bytes[..]).unwrap());

    let app = &seen["bin/app"];
    assert_eq!((app.kind, app.mode), (tar::EntryType::Regular, 0o755));
    assert_eq!(app.data, b"#!/usr/bin/python3\nprint('hi')\n");
    let again = &seen["bin/app-again"];
    assert_eq!(again.kind, tar::EntryType::Link);
    assert_eq!(again.link.as_deref(), Some("bin/app"));
    assert_eq!(seen["bin/data"].kind, tar::EntryType::Symlink);
    assert_eq!(seen["bin/data"].link.as_deref(), Some("../lib/data.bin"));
    assert_eq!(seen["bin/far"].link.as_deref().map(str::len), Some(151));
    assert_eq!(seen["bin/odd"].link.as_deref(), Some("./x//y/"));
    assert_eq!(seen["lib/data.bin"].mode, 0o600);
    assert_eq!(seen["lib/data.bin"].data.len(), 70_000);
    assert_eq!(
        (seen["empty"].kind, seen["empty"].mode),
        (tar::EntryType::Directory, 0o750)
    );
    assert!(seen.keys().any(|k| k.len() > 200), "long name lost");
    // Each entry keeps its own mtime (a .pyc is checked against its
    // source's): the old file is not moved to the newest time.
    assert_eq!(seen["lib/old.py"].mtime, OLD_MTIME);
    assert!(seen["bin/app"].mtime > OLD_MTIME);

    // The manifest inside is fresh and matches the content.
    let m = Manifest::parse(&seen[MANIFEST_PATH].data, Path::new(MANIFEST_PATH)).unwrap();
    assert!(m.get(MANIFEST_PATH).is_none());
    assert_eq!(m.entries.len(), seen.len() - 1);
    assert!(m.compare(d.path()).unwrap().is_empty());
    // Entries come sorted, directories before their content.
    let order: Vec<_> = {
        let raw = zstd::decode_all(&bytes[..]).unwrap();
        let mut a = tar::Archive::new(Cursor::new(raw));
        a.entries()
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches('/')
                    .to_string()
            })
            .collect()
    };
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
}

#[test]
fn same_tree_packs_to_same_bytes() {
    let d = tempfile::tempdir().unwrap();
    sample_tree(d.path());
    for c in [Compression::Zstd(3), Compression::Gzip(6)] {
        let a = pack(d.path(), c);
        // A copy at another path, with other inode numbers, packs the same
        // when its times are kept (cp -a).
        let e = tempfile::tempdir().unwrap();
        let copy = e.path().join("copy");
        let ok = std::process::Command::new("cp")
            .arg("-a")
            .arg(d.path())
            .arg(&copy)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        assert_eq!(a, pack(d.path(), c), "{c:?}");
        assert_eq!(a, pack(&copy, c), "{c:?} copy");
    }
}

#[test]
fn gzip_round_trips() {
    let d = tempfile::tempdir().unwrap();
    sample_tree(d.path());
    let bytes = pack(d.path(), Compression::Gzip(6));
    // No name, no timestamp in the gzip header.
    assert_eq!(&bytes[4..8], &[0, 0, 0, 0]);
    assert_eq!(bytes[3] & 0x08, 0);
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut raw)
        .unwrap();
    assert_eq!(read_back(&raw)["bin/app"].mode, 0o755);
}

#[test]
fn deb_is_an_ar_with_control_and_data_under_prefix() {
    let d = tempfile::tempdir().unwrap();
    sample_tree(d.path());
    let mut set = PackSet::from_tree(d.path()).unwrap();
    set.add_manifest(&|_| {}).unwrap();
    let meta = DebMeta {
        name: "myapp".into(),
        version: "1.0".into(),
        arch: "amd64".into(),
        maintainer: "m <m@x>".into(),
        description: "app".into(),
        depends: vec![],
        state: Default::default(),
    };
    let mut out = Cursor::new(Vec::new());
    deb::write_deb(
        &set,
        &meta,
        "/opt/myapp",
        Compression::Zstd(3),
        &mut out,
        &|_| {},
    )
    .unwrap();
    let bytes = out.into_inner();
    assert!(bytes.starts_with(b"!<arch>\ndebian-binary   "));
    // Walk the ar members.
    let mut at = 8;
    let mut members = BTreeMap::new();
    while at < bytes.len() {
        let h = &bytes[at..at + 60];
        let name = String::from_utf8_lossy(&h[..16]).trim().to_string();
        let size: usize = String::from_utf8_lossy(&h[48..58]).trim().parse().unwrap();
        assert_eq!(&h[58..60], b"`\n");
        members.insert(name, bytes[at + 60..at + 60 + size].to_vec());
        at += 60 + size + size % 2;
    }
    assert_eq!(at, bytes.len());
    assert_eq!(members["debian-binary"], b"2.0\n");
    let data = read_back(&zstd::decode_all(&members["data.tar.zst"][..]).unwrap());
    assert_eq!(data["opt/myapp/bin/app"].mode, 0o755);
    assert_eq!(
        data["opt/myapp/bin/app-again"].link.as_deref(),
        Some("opt/myapp/bin/app")
    );
    assert!(data.contains_key("opt"));
    let mut control = Vec::new();
    flate2::read::GzDecoder::new(&members["control.tar.gz"][..])
        .read_to_end(&mut control)
        .unwrap();
    let c = read_back(&control);
    let text = String::from_utf8(c["control"].data.clone()).unwrap();
    assert!(text.starts_with("Package: myapp\nVersion: 1.0\n"), "{text}");
}

#[test]
fn rpm_holds_every_entry_under_prefix_reproducibly() {
    use bbrun_archive::rpmpkg::{self, RpmMeta};
    let d = tempfile::tempdir().unwrap();
    sample_tree(d.path());
    let meta = RpmMeta {
        name: "myapp".into(),
        version: "1.0".into(),
        release: "1".into(),
        arch: "x86_64".into(),
        license: "MIT".into(),
        description: "app".into(),
        requires: vec!["python(abi) = 3.11".into()],
        state: Default::default(),
    };
    let build = || {
        let mut set = PackSet::from_tree(d.path()).unwrap();
        set.add_manifest(&|_| {}).unwrap();
        let mut out = Vec::new();
        rpmpkg::write_rpm(&set, &meta, "/opt/myapp", 3, &mut out, &|_| {}).unwrap();
        out
    };
    let bytes = build();
    assert_eq!(bytes, build());
    let pkg = rpm::Package::parse(&mut Cursor::new(&bytes)).unwrap();
    let files: BTreeMap<String, _> = pkg
        .metadata
        .get_file_entries()
        .unwrap()
        .into_iter()
        .map(|f| (f.path().to_string_lossy().into_owned(), f))
        .collect();
    assert!(files.keys().all(|p| p.starts_with("/opt/myapp")));
    let app = &files["/opt/myapp/bin/app"];
    assert_eq!(
        (app.permissions(), app.user(), app.group()),
        (0o755, "root", "root")
    );
    assert_eq!(files["/opt/myapp/bin/app-again"].permissions(), 0o755);
    assert_eq!(
        files["/opt/myapp/bin/data"].linkto(),
        Some("../lib/data.bin")
    );
    assert_eq!(files["/opt/myapp/lib/data.bin"].permissions(), 0o600);
    assert_eq!(files["/opt/myapp/empty"].permissions(), 0o750);
    assert!(files.contains_key("/opt/myapp/.bbrun/manifest.tsv"));
}
