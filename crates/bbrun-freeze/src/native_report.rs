//! What the three native passes of freeze share, so none imports another
//! for it: the report they add to, and where the bundled interpreter lives
//! (the bundle writes it; vendoring leaves it to the bundle).
//! [`crate::native`] runs the passes: rpaths, then [`crate::vendor`], then
//! [`crate::bundle`] (which vendors the interpreter's own libraries).

use bbrun_map::map::InventoryEntry;

/// Where `--bundle-python` copies the interpreter, root-relative.
pub const BUNDLE_DIR: &str = ".bbrun/python";

/// What freeze learned and did about native code.
#[derive(Debug, Default)]
pub struct NativeReport {
    /// ELF files that named the build root, and what was done.
    pub entries: Vec<InventoryEntry>,
    /// Human-readable lines for the freeze report.
    pub notes: Vec<String>,
}
