//! Property test standing in for a fuzzer: real compiler output, mutated
//! (bytes overwritten, headers favoured, truncated), must never make
//! `parse` or `set_search_path` panic, and every successful rewrite must
//! read back with the value asked for.
//!
//! `PROPTEST_CASES=20000 cargo test -p bbrun-elf --release --test fuzz`
//! runs it longer.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use bbrun_elf::{parse, set_search_path, SearchTag};
use proptest::prelude::*;

/// A shared library with DT_RPATH and a program with DT_RUNPATH and
/// version needs, built once per test run.
fn samples() -> &'static [Vec<u8>] {
    static SAMPLES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("l.c"), "int f(void) { return 1; }\n").unwrap();
        std::fs::write(
            d.join("p.c"),
            "#include <stdio.h>\nint f(void);\nint main(void) { printf(\"%d\\n\", f()); return 0; }\n",
        )
        .unwrap();
        let run = |args: &[&str]| {
            let ok = Command::new("cc")
                .current_dir(d)
                .args(args)
                .status()
                .unwrap()
                .success();
            assert!(ok, "cc {args:?}");
        };
        run(&[
            "-shared",
            "-fPIC",
            "-o",
            "libl.so",
            "l.c",
            "-Wl,-rpath,/build/root/parts/lib:/usr/local/lib",
            "-Wl,--disable-new-dtags",
        ]);
        run(&[
            "-o",
            "p",
            "p.c",
            "-L.",
            "-ll",
            "-Wl,-rpath,/build/root/parts/lib",
            "-Wl,--enable-new-dtags",
        ]);
        let read = |n: &str| std::fs::read(Path::new(d).join(n)).unwrap();
        vec![read("libl.so"), read("p")]
    })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

#[derive(Debug, Clone)]
struct Mutation {
    sample: usize,
    /// (position, byte): positions below 1024 hit the headers and the
    /// dynamic tables of these small files.
    writes: Vec<(usize, u8)>,
    truncate: Option<usize>,
    tag: SearchTag,
    value: Option<String>,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let pos = prop_oneof![0usize..128, 0usize..1024, 0usize..20_000];
    let byte = prop_oneof![Just(0u8), Just(0xff), Just(0x7f), Just(1), any::<u8>()];
    (
        0usize..2,
        prop::collection::vec((pos, byte), 0..8),
        prop::option::weighted(0.2, 0usize..20_000),
        prop_oneof![Just(SearchTag::Rpath), Just(SearchTag::Runpath)],
        prop::option::weighted(
            0.85,
            prop_oneof![
                Just("$ORIGIN/../lib".to_string()),
                "[$A-Za-z/._:]{0,300}".prop_map(|s| s),
                // Longer than any padding after a segment: the file is
                // rebuilt with a new segment.
                (5000usize..9000).prop_map(|n| "/x".repeat(n / 2)),
            ],
        ),
    )
        .prop_map(|(sample, writes, truncate, tag, value)| Mutation {
            sample,
            writes,
            truncate,
            tag,
            value,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_real_files_never_panic(m in mutation()) {
        let mut data = samples()[m.sample].clone();
        for &(p, b) in &m.writes {
            if let Some(slot) = data.get_mut(p) {
                *slot = b;
            }
        }
        if let Some(n) = m.truncate {
            data.truncate(n);
        }
        let _ = parse(&data);
        if let Ok(out) = set_search_path(&data, m.tag, m.value.as_deref()) {
            let info = parse(&out).expect("a rewritten file must parse");
            let got = match m.tag {
                SearchTag::Rpath => info.rpath,
                SearchTag::Runpath => info.runpath,
            };
            prop_assert_eq!(got, m.value.clone());
            // Idempotent: the same request again changes nothing.
            let again = set_search_path(&out, m.tag, m.value.as_deref()).expect("second rewrite");
            prop_assert!(again == out);
        }
    }
}

/// Found by the property test above (one run in several): a zeroed byte
/// in the program's section headers gave a section `sh_addralign` 0
/// (which ELF allows), and rewriting with a search path too long for the
/// padding (the file is rebuilt) made object's writer subtract 1 from it.
#[test]
fn zero_section_alignment_rebuilt_without_panic() {
    let mut data = samples()[1].clone();
    // ELF64 little-endian: e_shoff at 0x28, e_shentsize at 0x3a, e_shnum at
    // 0x3c; sh_addralign at 0x30 in each section header.
    let u = |at: usize, n: usize| {
        data[at..at + n]
            .iter()
            .rev()
            .fold(0usize, |v, &b| (v << 8) | b as usize)
    };
    let (shoff, shentsize, shnum) = (u(0x28, 8), u(0x3a, 2), u(0x3c, 2));
    for i in 1..shnum {
        let at = shoff + i * shentsize + 0x30;
        data[at..at + 8].fill(0);
    }
    let long = "/x".repeat(3000);
    for tag in [SearchTag::Rpath, SearchTag::Runpath] {
        if let Ok(out) = set_search_path(&data, tag, Some(&long)) {
            let info = parse(&out).expect("a rewritten file must parse");
            let got = match tag {
                SearchTag::Rpath => info.rpath,
                SearchTag::Runpath => info.runpath,
            };
            assert_eq!(got.as_deref(), Some(long.as_str()));
        }
    }
}

/// Found by cargo-fuzz with debug assertions (elf_patch): `e_shoff` near
/// 2^64 with `e_shnum` 0 made the read of the first section header (where
/// the real count would be) overflow its field offsets.
#[test]
fn section_header_offset_near_the_top_is_an_error() {
    let data: [u8; 64] = [
        127, 69, 76, 70, 2, 1, 1, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 62, 0, 1, 0, 0, 0, 176, 35, 0,
        0, 0, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 249, 255, 255, 255, 255, 255, 255, 255, 0, 0, 3, 0,
        62, 0, 1, 0, 0, 0, 176, 0, 0, 0, 82, 0,
    ];
    assert!(parse(&data).is_err());
    assert!(set_search_path(&data, SearchTag::Runpath, Some("$ORIGIN")).is_err());
}
