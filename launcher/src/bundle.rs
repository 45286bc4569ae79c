//! `bbrun freeze --bundle-python`: copy the build interpreter into the tree
//! and record it in the map so the launcher uses it first. (To be written.)

use std::path::Path;

use anyhow::{bail, Result};

use crate::map::RelocationMap;
use crate::native::NativeReport;

pub fn bundle_python(
    root: &Path,
    _map: &mut RelocationMap,
    _dry_run: bool,
    _report: &mut NativeReport,
) -> Result<()> {
    bail!("{}: --bundle-python is not implemented yet", root.display())
}
