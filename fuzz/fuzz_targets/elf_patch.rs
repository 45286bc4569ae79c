//! ELF reading and RUNPATH/RPATH patching: an error or new bytes that
//! parse again with the requested search path, never a panic.
#![no_main]
use bbrun_elf::{parse, set_search_path, SearchTag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse(data);
    for (tag, value) in [
        (SearchTag::Runpath, Some("$ORIGIN/../lib")),
        (
            SearchTag::Rpath,
            Some("$ORIGIN/../../a-much-longer-search-path/than-before/lib"),
        ),
        (SearchTag::Runpath, None),
    ] {
        if let Ok(out) = set_search_path(data, tag, value) {
            parse(&out).expect("patched output must parse");
        }
    }
});
