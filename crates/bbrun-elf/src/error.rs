//! Why a file could not be read or rewritten: one line, no file name (the
//! caller names the file).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfError {
    /// No `\x7fELF` magic.
    NotElf,
    /// A table or string runs past the end of the file; says which.
    Truncated(&'static str),
    /// The file contradicts itself (bad class, sizes, offsets...).
    Malformed(String),
    /// Valid ELF that this crate does not handle (e.g. no dynamic section
    /// when one is needed).
    Unsupported(String),
    /// The new string does not fit and no room could be made for it.
    NoRoom(String),
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::NotElf => f.write_str("not an ELF file"),
            ElfError::Truncated(what) => write!(f, "truncated {what}"),
            ElfError::Malformed(why) => write!(f, "malformed ELF: {why}"),
            ElfError::Unsupported(why) => write!(f, "unsupported ELF: {why}"),
            ElfError::NoRoom(why) => write!(f, "cannot rewrite: {why}"),
        }
    }
}

impl std::error::Error for ElfError {}

pub(crate) fn malformed(why: impl Into<String>) -> ElfError {
    ElfError::Malformed(why.into())
}
