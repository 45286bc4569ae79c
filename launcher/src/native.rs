//! Native code during freeze: ELF files found in the tree get their RPATHs
//! made `$ORIGIN`-relative (and, on request, their libraries vendored and the
//! interpreter bundled). Filled in by the ELF work; freeze calls it.

use std::path::Path;

use anyhow::Result;

use crate::map::{InventoryEntry, RelocationMap};

/// What to do with RPATH/RUNPATH entries that point outside the root.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExternalRpath {
    /// Keep them, and list them in the report.
    #[default]
    Keep,
    /// Remove them from the search path.
    Drop,
    /// Fail the freeze, listing them.
    Error,
}

/// Options of `bbrun freeze` that concern native code.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NativeOptions {
    /// RPATH entries outside the root: keep (and report), drop, or error.
    #[arg(long, value_enum, default_value_t = ExternalRpath::Keep)]
    pub external_rpath: ExternalRpath,
    /// Copy non-system shared libraries that extensions need into the tree.
    #[arg(long)]
    pub vendor_libs: bool,
    /// Copy the build interpreter into the tree and use it first.
    #[arg(long)]
    pub bundle_python: bool,
}

/// What freeze learned and did about native code.
#[derive(Debug, Default)]
pub struct NativeReport {
    /// ELF files that named the build root, and what was done.
    pub entries: Vec<InventoryEntry>,
    /// Human-readable lines for the freeze report.
    pub notes: Vec<String>,
}

/// Called by freeze after external paths are collected and before the map
/// is saved; may set `map.interpreter.bundled`.
pub fn freeze_native(
    root: &Path,
    map: &mut RelocationMap,
    opts: &NativeOptions,
    dry_run: bool,
) -> Result<NativeReport> {
    let mut report = NativeReport::default();
    if opts.vendor_libs {
        crate::vendor::vendor_libs(root, map, dry_run, &mut report)?;
    }
    if opts.bundle_python {
        crate::bundle::bundle_python(root, map, dry_run, &mut report)?;
    }
    Ok(report)
}
