//! Hand-built minimal ELF files in every class and byte order, and
//! malformed inputs. Real compiler output is tested in `tests/`.

use super::*;

/// A minimal dynamic shared object: one PT_LOAD over the whole file, a
/// PT_DYNAMIC, a string table and a dynamic array with `spare` extra
/// DT_NULLs. No section headers, like a stripped file.
pub(crate) fn synth(class: Class, endian: Endian, rpath: Option<&str>, spare: usize) -> Vec<u8> {
    let w: usize = if class == Class::Elf32 { 4 } else { 8 };
    let ehsize = 40 + 3 * w;
    let phentsize = if class == Class::Elf32 { 32 } else { 56 };
    let mut strtab = b"\0libc.so.6\0libdemo.so.1\0".to_vec();
    let rpath_idx = rpath.map(|r| {
        let i = strtab.len();
        strtab.extend_from_slice(r.as_bytes());
        strtab.push(0);
        i
    });
    let str_off = ehsize + 2 * phentsize;
    let dyn_off = (str_off + strtab.len()).next_multiple_of(8);
    let mut dynamic: Vec<(u64, u64)> = vec![(1, 1), (14, 11)];
    if let Some(i) = rpath_idx {
        dynamic.push((15, i as u64));
    }
    dynamic.push((5, str_off as u64));
    dynamic.push((10, strtab.len() as u64));
    dynamic.extend(std::iter::repeat_n((0, 0), 1 + spare));
    let end = dyn_off + dynamic.len() * 2 * w;

    let mut out = vec![0u8; end];
    let put = |out: &mut Vec<u8>, at: usize, v: u64, size: usize| {
        let bytes = match endian {
            Endian::Little => v.to_le_bytes().to_vec(),
            Endian::Big => v.to_be_bytes().to_vec(),
        };
        let b = match endian {
            Endian::Little => bytes[..size].to_vec(),
            Endian::Big => bytes[8 - size..].to_vec(),
        };
        out[at..at + size].copy_from_slice(&b);
    };
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = if class == Class::Elf32 { 1 } else { 2 };
    out[5] = if endian == Endian::Little { 1 } else { 2 };
    out[6] = 1;
    put(&mut out, 16, 3, 2); // ET_DYN
    put(&mut out, 18, 0x2a, 2);
    put(&mut out, 20, 1, 4);
    put(&mut out, 24 + w, ehsize as u64, w); // e_phoff
    let base = 28 + 3 * w;
    put(&mut out, base, ehsize as u64, 2);
    put(&mut out, base + 2, phentsize as u64, 2);
    put(&mut out, base + 4, 2, 2);
    let ph = |out: &mut Vec<u8>, at: usize, t: u64, off: u64, size: u64| {
        put(out, at, t, 4);
        if class == Class::Elf32 {
            put(out, at + 4, off, 4);
            put(out, at + 8, off, 4);
            put(out, at + 12, off, 4);
            put(out, at + 16, size, 4);
            put(out, at + 20, size, 4);
            put(out, at + 24, 4, 4);
            put(out, at + 28, 0x1000, 4);
        } else {
            put(out, at + 4, 4, 4);
            put(out, at + 8, off, 8);
            put(out, at + 16, off, 8);
            put(out, at + 24, off, 8);
            put(out, at + 32, size, 8);
            put(out, at + 40, size, 8);
            put(out, at + 48, 0x1000, 8);
        }
    };
    ph(&mut out, ehsize, 1, 0, end as u64);
    ph(
        &mut out,
        ehsize + phentsize,
        2,
        dyn_off as u64,
        (end - dyn_off) as u64,
    );
    out[str_off..str_off + strtab.len()].copy_from_slice(&strtab);
    for (i, (t, v)) in dynamic.iter().enumerate() {
        put(&mut out, dyn_off + i * 2 * w, *t, w);
        put(&mut out, dyn_off + i * 2 * w + w, *v, w);
    }
    out
}

const ALL: [(Class, Endian); 4] = [
    (Class::Elf32, Endian::Little),
    (Class::Elf32, Endian::Big),
    (Class::Elf64, Endian::Little),
    (Class::Elf64, Endian::Big),
];

#[test]
fn parses_every_class_and_byte_order() {
    for (class, endian) in ALL {
        let f = synth(class, endian, Some("/build/parts/lib"), 0);
        let info = parse(&f).unwrap();
        assert_eq!((info.class, info.endian), (class, endian));
        assert_eq!(info.machine, 0x2a);
        assert_eq!(info.kind, Kind::SharedObject);
        assert_eq!(info.needed, vec!["libc.so.6"]);
        assert_eq!(info.soname.as_deref(), Some("libdemo.so.1"));
        assert_eq!(info.rpath.as_deref(), Some("/build/parts/lib"));
        assert_eq!(info.runpath, None);
        assert_eq!(info.interpreter, None);
        assert!(info.version_needs.is_empty());
    }
}

#[test]
fn shorter_path_is_written_in_place() {
    for (class, endian) in ALL {
        let f = synth(class, endian, Some("/build/parts/lib"), 0);
        let out = set_search_path(&f, SearchTag::Rpath, Some("$ORIGIN/../lib")).unwrap();
        assert_eq!(out.len(), f.len());
        let info = parse(&out).unwrap();
        assert_eq!(info.rpath.as_deref(), Some("$ORIGIN/../lib"));
        assert_eq!(info.needed, vec!["libc.so.6"]);
        // The old path is gone from the bytes, not just unreferenced.
        assert!(!out.windows(6).any(|w| w == b"/build"));
    }
}

#[test]
fn longer_path_grows_the_string_table() {
    for (class, endian) in ALL {
        let f = synth(class, endian, Some("/b/l"), 0);
        let long = "$ORIGIN/../../../../deep/er/and/deeper/parts/demo/lib";
        let out = set_search_path(&f, SearchTag::Rpath, Some(long)).unwrap();
        let info = parse(&out).unwrap();
        assert_eq!(info.rpath.as_deref(), Some(long), "{class:?} {endian:?}");
        assert_eq!(info.soname.as_deref(), Some("libdemo.so.1"));
        assert!(!out.windows(4).any(|w| w == b"/b/l"));
    }
}

#[test]
fn remove_and_add_entries() {
    let f = synth(Class::Elf64, Endian::Little, Some("/build/lib"), 1);
    let gone = set_search_path(&f, SearchTag::Rpath, None).unwrap();
    let info = parse(&gone).unwrap();
    assert_eq!(info.rpath, None);
    assert_eq!(info.needed, vec!["libc.so.6"]);
    // A spare DT_NULL takes a new entry.
    let added = set_search_path(&gone, SearchTag::Runpath, Some("$ORIGIN")).unwrap();
    assert_eq!(parse(&added).unwrap().runpath.as_deref(), Some("$ORIGIN"));
    // Without one there is no room, and the error says so.
    let tight = synth(Class::Elf64, Endian::Little, None, 0);
    let err = set_search_path(&tight, SearchTag::Runpath, Some("$ORIGIN")).unwrap_err();
    assert!(err.to_string().contains("no spare entry"), "{err}");
}

#[test]
fn same_value_is_a_no_op() {
    let f = synth(Class::Elf32, Endian::Big, Some("$ORIGIN/lib"), 0);
    assert_eq!(
        set_search_path(&f, SearchTag::Rpath, Some("$ORIGIN/lib")).unwrap(),
        f
    );
    assert_eq!(set_search_path(&f, SearchTag::Runpath, None).unwrap(), f);
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    for (class, endian) in ALL {
        let f = synth(class, endian, Some("/build/lib"), 0);
        for n in 0..f.len() {
            let cut = &f[..n];
            let _ = parse(cut);
            let _ = set_search_path(cut, SearchTag::Rpath, Some("$ORIGIN/x/y/z/w/v"));
        }
    }
}

#[test]
fn errors_are_one_line_and_say_why() {
    assert_eq!(parse(b"hello").unwrap_err().to_string(), "not an ELF file");
    assert_eq!(parse(b"").unwrap_err(), ElfError::NotElf);
    let f = synth(Class::Elf64, Endian::Little, None, 0);
    assert_eq!(
        parse(&f[..70]).unwrap_err().to_string(),
        "truncated program header table"
    );
    assert_eq!(
        parse(&f[..10]).unwrap_err().to_string(),
        "truncated ELF identification"
    );
    let mut bad = f.clone();
    bad[4] = 7;
    assert_eq!(
        parse(&bad).unwrap_err().to_string(),
        "malformed ELF: unknown ELF class 7"
    );
    let mut garbage = b"\x7fELF".to_vec();
    garbage.extend((0..200u32).map(|i| (i * 37 % 251) as u8));
    let msg = parse(&garbage).unwrap_err().to_string();
    assert!(!msg.contains('\n'), "{msg}");
}
