//! Native code during freeze: ELF files found in the tree get their RPATHs
//! made `$ORIGIN`-relative (and, on request, their libraries vendored and the
//! interpreter bundled). Filled in by the ELF work; freeze calls it.

use std::path::Path;

use anyhow::Result;

use crate::map::{InventoryEntry, RelocationMap};

/// Options of `bbrun freeze` that concern native code.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NativeOptions {}

/// What freeze learned and did about native code.
#[derive(Debug, Default)]
pub struct NativeReport {
    /// ELF files that named the build root, and what was done.
    pub entries: Vec<InventoryEntry>,
    /// Human-readable lines for the freeze report.
    pub notes: Vec<String>,
}

/// Called by freeze after scripts are scanned and before the map is saved;
/// may set `map.interpreter.bundled`.
pub fn freeze_native(
    _root: &Path,
    _map: &mut RelocationMap,
    _opts: &NativeOptions,
    _dry_run: bool,
) -> Result<NativeReport> {
    Ok(NativeReport::default())
}
