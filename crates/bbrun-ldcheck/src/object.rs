//! What the search needs to know about an ELF object, independent of how it
//! was read: tests describe objects directly, [`crate::fs`] reads real
//! files through `bbrun-elf`.

use std::path::{Path, PathBuf};

/// The properties two objects must share to be loaded into one process:
/// the loader skips a library of another class, byte order or machine and
/// keeps searching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Arch {
    pub class64: bool,
    pub little_endian: bool,
    /// `e_machine` (62 = x86-64, 183 = AArch64).
    pub machine: u16,
}

impl Arch {
    /// x86-64, the common case in tests.
    pub const X86_64: Arch = Arch {
        class64: true,
        little_endian: true,
        machine: 62,
    };
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ELF{}{} machine {}",
            if self.class64 { 64 } else { 32 },
            if self.little_endian { "LE" } else { "BE" },
            self.machine
        )
    }
}

/// A symbol version requirement: `versions` must be defined by `file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionNeed {
    pub file: String,
    pub versions: Vec<String>,
}

/// One ELF object's dynamic-linking facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The path it was found at, as the loader names it (symlinks kept:
    /// `$ORIGIN` is its directory).
    pub path: PathBuf,
    pub arch: Arch,
    pub needed: Vec<String>,
    pub soname: Option<String>,
    pub rpath: Option<String>,
    pub runpath: Option<String>,
    pub version_needs: Vec<VersionNeed>,
    pub version_defs: Vec<String>,
}

impl Object {
    /// An object with no dependencies, for tests and builders.
    pub fn new(path: impl Into<PathBuf>, arch: Arch) -> Object {
        Object {
            path: path.into(),
            arch,
            needed: vec![],
            soname: None,
            rpath: None,
            runpath: None,
            version_needs: vec![],
            version_defs: vec![],
        }
    }

    /// `$ORIGIN`: the directory the object was loaded from.
    pub fn origin(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }

    /// The file name, for messages.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }
}

/// What opening a candidate path gave.
#[derive(Debug, Clone)]
pub enum Probe {
    /// No file there: keep searching.
    Missing,
    /// A file the loader would reject (not ELF, unreadable, corrupt): it
    /// keeps searching too; the reason is kept for the report.
    Unusable(String),
    Found(Object),
}

/// Where the search opens candidate files. The real one reads the file
/// system; tests may describe objects in memory.
pub trait Source {
    fn open(&mut self, path: &Path) -> Probe;
}
