//! `bbrun freeze ROOT`: write the relocation map and report what still
//! names the build path.

use std::path::PathBuf;

use anyhow::Result;

use bbrun_freeze::freeze::{self, FreezeOptions, FreezeReport};
use bbrun_freeze::native::{ExternalRpath, NativeOptions};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Root of the built tree (the buildout directory or the virtualenv).
    pub root: PathBuf,
    /// Show what would be collected and changed; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not copy paths outside ROOT into the tree; fail listing them.
    #[arg(long)]
    pub no_collect: bool,
    /// The build interpreter, when the scripts' first lines do not name it.
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Application state besides the defaults (var/ and what config files
    /// name): `PATH` (data) or `PATH=CLASS` with CLASS data, log, runtime or
    /// cache; relative to ROOT, a trailing `*` for a prefix. Repeatable.
    #[arg(long = "state", value_name = "PATH[=CLASS]")]
    pub state: Vec<String>,
    /// A path that is not state, even below a state path. Repeatable.
    #[arg(long = "not-state", value_name = "PATH")]
    pub not_state: Vec<String>,
    #[command(flatten)]
    pub native: NativeArgs,
}

/// Options that concern native code (see [`NativeOptions`]).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NativeArgs {
    /// RPATH entries outside the root: keep (and report), drop, or error.
    #[arg(long, value_enum, default_value_t = RpathArg::Keep)]
    pub external_rpath: RpathArg,
    /// Copy non-system shared libraries that extensions need into the tree.
    #[arg(long)]
    pub vendor_libs: bool,
    /// Copy the build interpreter into the tree and use it first.
    #[arg(long)]
    pub bundle_python: bool,
}

/// What to do with RPATH/RUNPATH entries that point outside the root.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RpathArg {
    /// Keep them, and list them in the report.
    #[default]
    Keep,
    /// Remove them from the search path.
    Drop,
    /// Fail the freeze, listing them.
    Error,
}

impl From<NativeArgs> for NativeOptions {
    fn from(a: NativeArgs) -> NativeOptions {
        NativeOptions {
            external_rpath: match a.external_rpath {
                RpathArg::Keep => ExternalRpath::Keep,
                RpathArg::Drop => ExternalRpath::Drop,
                RpathArg::Error => ExternalRpath::Error,
            },
            vendor_libs: a.vendor_libs,
            bundle_python: a.bundle_python,
        }
    }
}

pub fn run(args: Args) -> Result<i32> {
    let opts = FreezeOptions {
        dry_run: args.dry_run,
        no_collect: args.no_collect,
        python: args.python,
        native: args.native.into(),
        state: args
            .state
            .iter()
            .map(|s| bbrun_map::state::parse_option(s))
            .collect::<Result<_>>()?,
        not_state: args
            .not_state
            .iter()
            .map(|s| bbrun_map::state::check_path(s, "--not-state"))
            .collect::<Result<_>>()?,
    };
    let report = freeze::freeze(&args.root, &opts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(0)
}

const LISTED_PER_KIND: usize = 12;

fn print_report(r: &FreezeReport) {
    let verb = if r.dry_run { "would write" } else { "wrote" };
    println!("{}: {verb} {}", r.root, r.map);
    println!("interpreter: {}", r.interpreter);
    println!("scripts ({}): {}", r.scripts.len(), r.scripts.join(", "));
    if !r.collected.is_empty() {
        println!("collected from outside the tree:");
        for c in &r.collected {
            println!("  {} -> {}", c.original, c.in_tree);
        }
    }
    if !r.files.is_empty() {
        println!("files that name a build path:");
        for (kind, entries) in &r.files {
            println!("  {kind} ({}):", entries.len());
            // A venv's site-packages holds hundreds of .pyc naming it; the
            // first few show the pattern, --json has them all.
            for e in entries.iter().take(LISTED_PER_KIND) {
                println!("    {} [{}]", e.path, action_text(e.action));
            }
            if entries.len() > LISTED_PER_KIND {
                let mut by_action: std::collections::BTreeMap<&str, usize> = Default::default();
                for e in &entries[LISTED_PER_KIND..] {
                    *by_action.entry(action_text(e.action)).or_default() += 1;
                }
                for (action, n) in by_action {
                    println!("    ... and {n} more [{action}]");
                }
            }
        }
    }
    if !r.outside_literals.is_empty() {
        println!("paths outside the tree that scripts name (not on sys.path, not collected):");
        for p in &r.outside_literals {
            println!("  {p}");
        }
    }
    if !r.state.is_empty() {
        println!("application state (kept on upgrade, not packed):");
        for s in &r.state {
            println!("  {} [{}; {}]", s.path, s.class.as_str(), s.origin);
        }
    }
    for n in &r.notes {
        println!("note: {n}");
    }
}

fn action_text(a: bbrun_map::map::Action) -> &'static str {
    use bbrun_map::map::Action::*;
    match a {
        MappedAtRunTime => "mapped at run time by the shim",
        RewriteOnRelocate => "rewritten by bbrun install/relocate",
        RpathRelativized => "RPATH made $ORIGIN-relative",
        Reported => "left as is",
    }
}
