//! Unit tests of safe unpacking: archives are crafted in memory with raw
//! tar headers (the tar crate's own path setters refuse the hostile names
//! these tests need), and each hostile case checks the filesystem: nothing
//! appears outside DEST.

use super::*;
use crate::manifest::EntryKind;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use tar::{EntryType, Header};

struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        fs::create_dir(base.join("dest")).unwrap();
        fs::create_dir(base.join("outside")).unwrap();
        fs::write(base.join("outside/sentinel"), b"keep").unwrap();
        Fixture { _dir: dir, base }
    }
    fn dest(&self) -> PathBuf {
        self.base.join("dest")
    }
    fn archive(&self, bytes: &[u8]) -> PathBuf {
        let p = self.base.join("a.tar.zst");
        fs::write(&p, bytes).unwrap();
        p
    }
    /// Everything under `outside` and beside `dest`, for "nothing written".
    fn outside_listing(&self) -> Vec<String> {
        let mut out: Vec<String> = walkdir::WalkDir::new(&self.base)
            .into_iter()
            .map(|e| e.unwrap().path().to_path_buf())
            .filter(|p| !p.starts_with(self.dest()) && !p.ends_with("a.tar.zst"))
            .map(|p| p.display().to_string())
            .collect();
        out.sort();
        out
    }
}

fn header(name: &str, kind: EntryType, size: u64, link: Option<&str>) -> Header {
    let mut h = Header::new_gnu();
    let n = name.as_bytes();
    h.as_old_mut().name[..n.len()].copy_from_slice(n);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(if kind == EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_mtime(1_600_000_000);
    if let Some(l) = link {
        let b = l.as_bytes();
        h.as_old_mut().linkname[..b.len()].copy_from_slice(b);
    }
    h.set_cksum();
    h
}

enum E<'a> {
    F(&'a str, &'a [u8]),
    D(&'a str),
    S(&'a str, &'a str),
    H(&'a str, &'a str),
    Raw(Box<Header>, &'a [u8]),
}

fn tar_bytes(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::F(n, d) => b
                .append(&header(n, EntryType::Regular, d.len() as u64, None), *d)
                .unwrap(),
            E::D(n) => b
                .append(&header(n, EntryType::Directory, 0, None), &[][..])
                .unwrap(),
            E::S(n, t) => b
                .append(&header(n, EntryType::Symlink, 0, Some(t)), &[][..])
                .unwrap(),
            E::H(n, t) => b
                .append(&header(n, EntryType::Link, 0, Some(t)), &[][..])
                .unwrap(),
            E::Raw(h, d) => b.append(h, *d).unwrap(),
        }
    }
    b.into_inner().unwrap()
}

fn zst(entries: &[E]) -> Vec<u8> {
    zstd::encode_all(&tar_bytes(entries)[..], 3).unwrap()
}

fn gz(entries: &[E]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&tar_bytes(entries)).unwrap();
    enc.finish().unwrap()
}

/// Unpack `bytes`; expect a refusal mentioning `entry`, one line, naming
/// the archive; and nothing outside DEST.
fn refused(bytes: Vec<u8>, entry: &str, why: &str) {
    let fx = Fixture::new();
    let before = fx.outside_listing();
    let archive = fx.archive(&bytes);
    let err = unpack(&archive, &fx.dest(), &|_| {}).unwrap_err();
    let msg = format!("{err:#}");
    assert!(!msg.contains('\n'), "{msg}");
    assert!(msg.starts_with(&archive.display().to_string()), "{msg}");
    assert!(msg.contains(entry), "{entry:?} not in {msg:?}");
    assert!(msg.contains(why), "{why:?} not in {msg:?}");
    assert_eq!(fx.outside_listing(), before, "something written outside");
    assert_eq!(
        fs::read(fx.base.join("outside/sentinel")).unwrap(),
        b"keep".to_vec()
    );
}

#[test]
fn unpacks_files_dirs_links_with_modes_mtimes_and_hashes() {
    let fx = Fixture::new();
    let mut exe = header("bin/app", EntryType::Regular, 5, None);
    exe.set_mode(0o755);
    exe.set_cksum();
    let bytes = zst(&[
        E::D("./"),
        E::D("bin/"),
        E::Raw(Box::new(exe), b"#!x\n\n"),
        E::F("lib/deep/m.py", b"print(1)\n"),
        E::S("bin/link", "app"),
        E::S("up", "lib/deep/../deep/m.py"),
        E::H("bin/same", "bin/app"),
    ]);
    let m = unpack(&fx.archive(&bytes), &fx.dest(), &|_| {}).unwrap();
    let d = fx.dest();
    assert_eq!(fs::read(d.join("lib/deep/m.py")).unwrap(), b"print(1)\n");
    assert_eq!(fs::read(d.join("bin/link")).unwrap(), b"#!x\n\n");
    assert_eq!(fs::read(d.join("up")).unwrap(), b"print(1)\n");
    let app = fs::metadata(d.join("bin/app")).unwrap();
    assert_eq!(app.mode() & 0o7777, 0o755);
    assert_eq!(app.mtime(), 1_600_000_000);
    // Directories too, though their content was created after them.
    assert_eq!(fs::metadata(d.join("bin")).unwrap().mtime(), 1_600_000_000);
    assert_eq!(app.ino(), fs::metadata(d.join("bin/same")).unwrap().ino());
    let e = m.get("lib/deep/m.py").unwrap();
    assert_eq!(
        e.sha256.as_deref(),
        Some(crate::manifest::sha256_hex(b"print(1)\n").as_str())
    );
    assert_eq!(m.get("lib").unwrap().kind, EntryKind::Dir);
    assert_eq!(m.get("bin/same").unwrap().kind, EntryKind::Hardlink);
    // What was written is what a fresh look at the tree sees.
    assert!(m.compare(&d).unwrap().is_empty(), "{:?}", m.compare(&d));
}

#[test]
fn gzip_and_large_streamed_files() {
    let fx = Fixture::new();
    let big: Vec<u8> = (0..(5u32 << 20)).map(|i| (i % 251) as u8).collect();
    let bytes = gz(&[E::F("big.bin", &big), E::F("small", b"s")]);
    let archive = fx.base.join("named-like-zst.tar.zst");
    fs::write(&archive, bytes).unwrap();
    assert_eq!(detect(&archive).unwrap(), Compression::Gzip);
    let m = unpack(&archive, &fx.dest(), &|_| {}).unwrap();
    assert_eq!(fs::read(fx.dest().join("big.bin")).unwrap(), big);
    assert_eq!(
        m.get("big.bin").unwrap().sha256.as_deref(),
        Some(crate::manifest::sha256_hex(&big).as_str())
    );
}

#[test]
fn path_traversal_refused() {
    refused(
        zst(&[E::F("../outside/evil", b"x")]),
        "../outside/evil",
        "..",
    );
    refused(zst(&[E::F("a/../../outside/evil", b"x")]), "evil", "..");
}

#[test]
fn absolute_path_refused() {
    let fx = Fixture::new();
    let target = fx.base.join("outside/abs-evil").display().to_string();
    refused(zst(&[E::F(&target, b"x")]), &target, "absolute");
}

#[test]
fn symlink_escape_then_write_through_refused() {
    refused(
        zst(&[E::S("l", "../outside"), E::F("l/pwned", b"x")]),
        "l/pwned",
        "through the archive's symlink",
    );
    // Also through a directory symlink nested in a real directory.
    refused(
        zst(&[
            E::D("d"),
            E::S("d/l", "../../outside"),
            E::F("d/l/pwned", b"x"),
        ]),
        "d/l/pwned",
        "symlink",
    );
}

#[test]
fn escaping_symlinks_refused_and_never_created() {
    refused(
        zst(&[E::S("l", "../outside")]),
        "l",
        "outside the destination",
    );
    refused(zst(&[E::S("l", "/etc")]), "l", "absolute");
    // Escapes only through another symlink: d -> . makes d/.. the parent
    // of DEST, whichever order the two come in.
    refused(zst(&[E::S("d", "."), E::S("e", "d/..")]), "e", "outside");
    refused(zst(&[E::S("e", "d/.."), E::S("d", ".")]), "e", "outside");
    refused(zst(&[E::S("d", "/"), E::S("e", "d/etc")]), "e", "absolute");
    refused(
        zst(&[E::S("a", "b"), E::S("b", "a")]),
        "a",
        "too many symlinks",
    );
}

#[test]
fn bad_hardlinks_refused() {
    refused(
        zst(&[E::H("h", "../outside/sentinel")]),
        "h",
        "hardlink target",
    );
    let fx = Fixture::new();
    let abs = fx.base.join("outside/sentinel").display().to_string();
    refused(zst(&[E::H("h", &abs)]), "h", "absolute");
    refused(zst(&[E::H("h", "nope")]), "h", "not an earlier file");
    refused(
        zst(&[E::S("s", "x"), E::H("h", "s")]),
        "h",
        "not an earlier file",
    );
    refused(
        zst(&[E::D("d"), E::H("h", "d")]),
        "h",
        "not an earlier file",
    );
}

#[test]
fn devices_and_fifos_refused() {
    refused(
        zst(&[E::Raw(
            Box::new(header("dev", EntryType::Char, 0, None)),
            &[],
        )]),
        "dev",
        "device node",
    );
    refused(
        zst(&[E::Raw(
            Box::new(header("blk", EntryType::Block, 0, None)),
            &[],
        )]),
        "blk",
        "device node",
    );
    refused(
        zst(&[E::Raw(Box::new(header("p", EntryType::Fifo, 0, None)), &[])]),
        "p",
        "fifo",
    );
}

#[test]
fn duplicates_refused() {
    refused(zst(&[E::F("a", b"1"), E::F("a", b"2")]), "a", "duplicate");
    refused(zst(&[E::D("d"), E::D("d/")]), "d", "duplicate");
    refused(zst(&[E::F("a", b"1"), E::S("a", "b")]), "a", "duplicate");
    refused(zst(&[E::F("d/x", b"1"), E::F("d", b"2")]), "d", "directory");
    refused(
        zst(&[E::F("f", b"1"), E::F("f/x", b"2")]),
        "f/x",
        "not a directory",
    );
}

#[test]
fn truncated_and_garbage_archives_are_errors_not_panics() {
    let good = zst(&[E::F("a", &[7u8; 100_000]), E::F("b", b"x")]);
    for cut in [5, good.len() / 3, good.len() / 2, good.len() - 3] {
        let fx = Fixture::new();
        let err = unpack(&fx.archive(&good[..cut]), &fx.dest(), &|_| {}).unwrap_err();
        let msg = format!("{err:#}");
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.contains("a.tar.zst"), "{msg}");
    }
    let mut garbage = ZSTD_MAGIC.to_vec();
    garbage.extend((0..5000u32).map(|i| (i * 7919 % 256) as u8));
    let fx = Fixture::new();
    let err = unpack(&fx.archive(&garbage), &fx.dest(), &|_| {}).unwrap_err();
    assert!(format!("{err:#}").contains("corrupt"), "{err:#}");
    // Valid compression around bytes that are no tar.
    let fx = Fixture::new();
    let junk = zstd::encode_all(&[0x41u8; 3000][..], 1).unwrap();
    let err = unpack(&fx.archive(&junk), &fx.dest(), &|_| {}).unwrap_err();
    assert!(format!("{err:#}").contains("a.tar.zst"), "{err:#}");
    let fx = Fixture::new();
    let err = unpack(&fx.archive(b"PK\x03\x04zip"), &fx.dest(), &|_| {}).unwrap_err();
    assert!(format!("{err:#}").contains("not a tar.zst or tar.gz"));
}

#[test]
fn clean_path_rules() {
    assert_eq!(clean_path(b"./a//b/").unwrap(), "a/b");
    assert_eq!(clean_path(b".").unwrap(), "");
    assert!(clean_path(b"a/../b").is_err());
    assert!(clean_path(b"/a").is_err());
    assert!(clean_path(b"a\xff").is_err());
}

#[test]
fn external_symlinks_kept_only_on_request_and_never_written_through() {
    let allow = UnpackOptions {
        allow_external_symlinks: true,
        ..Default::default()
    };
    let fx = Fixture::new();
    let bytes = zst(&[
        E::S("bin/python", "python3"),
        E::S("bin/python3", "/usr/bin/python3"),
        E::F("bin/app", b"x"),
    ]);
    let got = unpack_with(&fx.archive(&bytes), &fx.dest(), allow, &|_| {}).unwrap();
    assert_eq!(
        got.external_symlinks,
        [
            ("bin/python".to_string(), "python3".to_string()),
            ("bin/python3".to_string(), "/usr/bin/python3".to_string())
        ]
    );
    assert_eq!(
        fs::read_link(fx.dest().join("bin/python3")).unwrap(),
        PathBuf::from("/usr/bin/python3")
    );
    // Write-through and loops stay refused with the option.
    for (bytes, entry) in [
        (
            zst(&[E::S("l", "../outside"), E::F("l/pwned", b"x")]),
            "l/pwned",
        ),
        (zst(&[E::S("a", "b"), E::S("b", "a")]), "a"),
    ] {
        let fx = Fixture::new();
        let before = fx.outside_listing();
        let err = unpack_with(&fx.archive(&bytes), &fx.dest(), allow, &|_| {}).unwrap_err();
        assert!(format!("{err:#}").contains(entry), "{err:#}");
        assert_eq!(fx.outside_listing(), before);
    }
}

#[test]
fn pax_mtime_wins_over_a_rounded_header_field() {
    // Python's tarfile writes a float mtime as a PAX record and rounds the
    // header field; a .pyc records the truncated seconds of its source.
    let record = |kv: &str| {
        let mut n = kv.len() + 3;
        while format!("{n} {kv}\n").len() != n {
            n += 1;
        }
        format!("{n} {kv}\n")
    };
    let pax = record("mtime=1000000000.9");
    let mut h = header("././@PaxHeader", EntryType::XHeader, pax.len() as u64, None);
    h.set_cksum();
    let fx = Fixture::new();
    let bytes = zst(&[
        E::Raw(Box::new(h), pax.as_bytes()),
        E::F("src.py", b"x = 1\n"),
        E::F("other.py", b"y\n"),
    ]);
    unpack(&fx.archive(&bytes), &fx.dest(), &|_| {}).unwrap();
    assert_eq!(
        fs::metadata(fx.dest().join("src.py")).unwrap().mtime(),
        1_000_000_000
    );
    // The record applied to its entry only.
    assert_eq!(
        fs::metadata(fx.dest().join("other.py")).unwrap().mtime(),
        1_600_000_000
    );
}

#[test]
fn unsafe_modes_stripped_unless_kept_manifest_keeps_archived() {
    let mut suid = header("bin/su", EntryType::Regular, 2, None);
    suid.set_mode(0o4755);
    suid.set_cksum();
    let mut open = header("var", EntryType::Directory, 0, None);
    open.set_mode(0o3777);
    open.set_cksum();
    let bytes = zst(&[
        E::D("bin"),
        E::Raw(Box::new(suid), b"#!"),
        E::Raw(Box::new(open), b""),
    ]);
    for keep in [false, true] {
        let fx = Fixture::new();
        let archive = fx.archive(&bytes);
        let opts = UnpackOptions {
            keep_modes: keep,
            ..Default::default()
        };
        let u = unpack_with(&archive, &fx.dest(), opts, &|_| {}).unwrap();
        let mode = |p: &str| fs::metadata(fx.dest().join(p)).unwrap().mode() & 0o7777;
        assert_eq!(u.manifest.get("bin/su").unwrap().mode, 0o4755);
        if keep {
            assert_eq!((mode("bin/su"), mode("var")), (0o4755, 0o3777));
            assert!(u.stripped_modes.is_empty());
        } else {
            assert_eq!((mode("bin/su"), mode("var")), (0o755, 0o755));
            assert_eq!(
                u.stripped_modes,
                vec![
                    ("bin/su".to_string(), 0o4755, 0o755),
                    ("var".to_string(), 0o3777, 0o755)
                ]
            );
        }
    }
}

#[test]
fn data_after_the_stream_or_the_tar_is_refused() {
    let good = gz(&[E::F("a", b"x")]);
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"garbage");
    refused(trailing, "", "corrupt");
    let mut bad_crc = good.clone();
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 0xff;
    refused(bad_crc, "", "corrupt");
    let mut tar = tar_bytes(&[E::F("a", b"x")]);
    tar.extend_from_slice(b"junk after the end marker");
    refused(
        zstd::encode_all(&tar[..], 3).unwrap(),
        "",
        "data after the end",
    );
}

#[test]
fn one_pass_from_a_reader() {
    let fx = Fixture::new();
    let bytes = gz(&[E::F("a", b"x")]);
    // A reader that hands out one byte at a time, like a slow pipe.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }
    let u = unpack_reader(
        Trickle(&bytes),
        Path::new("(pipe)"),
        &fx.dest(),
        UnpackOptions::default(),
        &|_| {},
    )
    .unwrap();
    assert!(u.manifest.get("a").is_some());
    let err = unpack_reader(
        &b"hello"[..],
        Path::new("(pipe)"),
        &fx.dest(),
        UnpackOptions::default(),
        &|_| {},
    )
    .unwrap_err();
    assert!(format!("{err}").contains("unknown magic bytes"));
}

#[test]
fn external_symlinks_skipped_on_request_are_reported_not_created() {
    let skip = UnpackOptions {
        skip_external_symlinks: true,
        ..Default::default()
    };
    let fx = Fixture::new();
    let bytes = zst(&[
        E::S("bin/python", "python3"),
        E::S("bin/python3", "/usr/bin/python3"),
        E::S("bin/inside", "app"),
        E::F("bin/app", b"x"),
    ]);
    let got = unpack_with(&fx.archive(&bytes), &fx.dest(), skip, &|_| {}).unwrap();
    assert!(got.external_symlinks.is_empty());
    assert_eq!(
        got.skipped_symlinks,
        [
            ("bin/python".to_string(), "python3".to_string()),
            ("bin/python3".to_string(), "/usr/bin/python3".to_string())
        ]
    );
    assert!(fs::symlink_metadata(fx.dest().join("bin/python3")).is_err());
    assert!(fs::symlink_metadata(fx.dest().join("bin/python")).is_err());
    assert_eq!(
        fs::read_link(fx.dest().join("bin/inside")).unwrap(),
        PathBuf::from("app")
    );
}
