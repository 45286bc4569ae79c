//! `set_search_path FILE rpath|runpath [VALUE]`: set (or, without VALUE,
//! remove) a search path in place. A test helper: the integration tests
//! use it to give real wheel-built extension modules an RPATH before
//! freeze; bbrun itself calls the library.

use std::process::ExitCode;

use bbrun_elf::SearchTag;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (file, tag, value) = match args.as_slice() {
        [f, t, rest @ ..] if rest.len() <= 1 => (f, t, rest.first()),
        _ => {
            eprintln!("usage: set_search_path FILE rpath|runpath [VALUE]");
            return ExitCode::from(2);
        }
    };
    let tag = match tag.as_str() {
        "rpath" => SearchTag::Rpath,
        "runpath" => SearchTag::Runpath,
        other => {
            eprintln!("{other}: expected rpath or runpath");
            return ExitCode::from(2);
        }
    };
    let result = std::fs::read(file)
        .map_err(|e| e.to_string())
        .and_then(|data| {
            bbrun_elf::set_search_path(&data, tag, value.map(String::as_str))
                .map_err(|e| e.to_string())
        })
        .and_then(|out| std::fs::write(file, out).map_err(|e| e.to_string()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{file}: {e}");
            ExitCode::FAILURE
        }
    }
}
