//! `relativize ROOT [OLD_ROOT...]`: run freeze's RPATH pass alone over a
//! tree, for benches/rpath.sh. Entries under ROOT or an OLD_ROOT become
//! `$ORIGIN`-relative; prints how many files changed and the time taken.

use std::path::Path;
use std::time::Instant;

use bbrun_freeze::native::{relativize_rpaths, ExternalRpath, InTree, NativeReport};
use bbrun_map::map::Action;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(root) = args.first() else {
        anyhow::bail!("usage: relativize ROOT [OLD_ROOT...]");
    };
    let mut places = InTree::default();
    places.add(root, "");
    for old in &args[1..] {
        places.add(old, "");
    }
    let start = Instant::now();
    let mut report = NativeReport::default();
    relativize_rpaths(
        Path::new(root),
        &places,
        ExternalRpath::Keep,
        false,
        &mut report,
    )?;
    let secs = start.elapsed().as_secs_f64();
    let changed = report
        .entries
        .iter()
        .filter(|e| e.action == Action::RpathRelativized)
        .count();
    println!("{changed} {secs:.6}");
    Ok(())
}
