//! Command line: `bbrun SCRIPT [ARGS...]` runs a script, `bbrun COMMAND ...`
//! runs a command.
//!
//! The script form is checked before clap sees anything: it runs before every
//! script (often as a shebang interpreter, `bbrun ./bin/app ARGS`), and a
//! script's own arguments must pass through untouched, `--help` included.

use std::ffi::OsString;

use clap::{Parser, Subcommand};

use crate::commands;

#[derive(Parser, Debug)]
#[command(
    name = "bbrun",
    version,
    about = "Freeze a built buildout or virtualenv once; run its scripts from any prefix.",
    long_about = None,
    after_help = "Run a script of a frozen tree:  bbrun bin/instance fg   (or: bbrun run bin/instance fg)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Scan a built tree, collect what it needs from outside, write its relocation map.
    Freeze(commands::freeze::Args),
    /// Run a script of a frozen tree (the short form is `bbrun SCRIPT`).
    Run(commands::run::Args),
    /// Point the first line of each script at the launcher (or back).
    Shebang(commands::shebang::Args),
    /// Report shared libraries that will not load on this machine.
    Check(commands::check::Args),
    /// Pack a frozen tree into an archive or a system package.
    Pack(commands::pack::Args),
    /// Unpack an archive safely, verify it and relocate it for its new place.
    Install(commands::install::Args),
    /// Compare a tree with its manifest.
    Verify(commands::verify::Args),
    /// Rewrite recorded files for the tree's current location (after cp -a / rsync).
    Relocate(commands::relocate::Args),
    /// Re-run zc.buildout in a frozen tree: offline, no compiler, restored if it fails.
    Buildout(commands::buildout::Args),
    /// Put back the tree the last install replaced, keeping the application's state.
    Rollback(commands::rollback::Args),
}

const COMMANDS: &[&str] = &[
    "freeze", "run", "shebang", "check", "pack", "install", "verify", "relocate", "buildout",
    "rollback", "help",
];

/// Entry point; returns the process exit code.
pub fn main() -> i32 {
    let args: Vec<OsString> = std::env::args_os().collect();
    if let Some(first) = args.get(1) {
        if is_script_form(first) {
            return report(commands::run::run_script(first.into(), args[2..].to_vec()));
        }
    }
    let cli = Cli::parse_from(args);
    if !matches!(cli.command, Command::Run(_) | Command::Buildout(_)) {
        stop_quietly_on_closed_stdout();
    }
    report(match cli.command {
        Command::Freeze(a) => commands::freeze::run(a),
        Command::Run(a) => commands::run::run(a),
        Command::Shebang(a) => commands::shebang::run(a),
        Command::Check(a) => commands::check::run(a),
        Command::Pack(a) => commands::pack::run(a),
        Command::Install(a) => commands::install::run(a),
        Command::Verify(a) => commands::verify::run(a),
        Command::Relocate(a) => commands::relocate::run(a),
        Command::Buildout(a) => commands::buildout::run(a),
        Command::Rollback(a) => commands::rollback::run(a),
    })
}

/// `bbrun verify --json | head`: Rust ignores SIGPIPE, so a write to a
/// closed pipe fails and `println!` panics. A command that only reports
/// ends the way `cat` or `tar` do instead: killed by SIGPIPE, silently.
/// (Not for the commands that run Python: an exec'd interpreter would
/// inherit the default, and CPython sets up its own handling anyway.)
fn stop_quietly_on_closed_stdout() {
    // SAFETY: setting a signal disposition to SIG_DFL installs no handler;
    // nothing else in the process depends on SIGPIPE being ignored.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// A first argument that is not an option and not a command name is a
/// script. A path with a `/` is always a script, so a script called
/// `freeze` still runs as `./freeze` (which is how the kernel passes it).
fn is_script_form(first: &OsString) -> bool {
    let s = first.to_string_lossy();
    if s.contains('/') {
        return true;
    }
    !s.starts_with('-') && !COMMANDS.contains(&s.as_ref())
}

fn report(result: anyhow::Result<i32>) -> i32 {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "bbrun: error: {}",
                bbrun_util::errline::bound(&format!("{e:#}"))
            );
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_form_detection() {
        assert!(is_script_form(&"bin/app".into()));
        assert!(is_script_form(&"./freeze".into()));
        assert!(is_script_form(&"app".into()));
        assert!(!is_script_form(&"freeze".into()));
        assert!(!is_script_form(&"--help".into()));
    }

    #[test]
    fn clap_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
