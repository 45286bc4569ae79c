//! The `bbrun` binary: a thin wrapper around the library so that every
//! command is testable without spawning a process.

fn main() {
    std::process::exit(bbrun::cli::main());
}
