//! `bbrun freeze --vendor-libs`: copy the non-system shared libraries that
//! extensions need into the tree. (To be written.)

use std::path::Path;

use anyhow::{bail, Result};

use crate::map::RelocationMap;
use crate::native::NativeReport;

pub fn vendor_libs(
    root: &Path,
    _map: &mut RelocationMap,
    _dry_run: bool,
    _report: &mut NativeReport,
) -> Result<()> {
    bail!("{}: --vendor-libs is not implemented yet", root.display())
}
