//! Reading and rewriting the dynamic section of ELF files: DT_NEEDED,
//! DT_RPATH/DT_RUNPATH, DT_SONAME, symbol version needs and definitions.
//!
//! `parse` never panics: every read is bounds-checked and a file that
//! contradicts itself is an `ElfError` naming what is wrong. 32/64-bit and
//! little/big endian files are all read the same way.
//!
//! `set_search_path` rewrites DT_RPATH or DT_RUNPATH. A value that fits the
//! old string is written in place (the common case when a build path is
//! made `$ORIGIN`-relative, and the fastest); a longer one gets a grown copy
//! of the dynamic string table placed where the loader will map it (see
//! `patch`).

mod error;
mod grow;
mod patch;
mod read;

pub use error::ElfError;
pub use patch::set_search_path;

use read::{
    Layout, DT_FLAGS_1, DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME, DT_VERDEF, DT_VERDEFNUM,
    DT_VERNEED, DT_VERNEEDNUM,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Elf32,
    Elf64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    Little,
    Big,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// ET_EXEC, or ET_DYN marked DF_1_PIE.
    Executable,
    /// ET_DYN: shared libraries and Python extension modules.
    SharedObject,
    /// ET_REL: object files.
    Relocatable,
    Other,
}

/// Which dynamic entry holds a search path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchTag {
    /// DT_RPATH: searched before LD_LIBRARY_PATH, also for dependencies.
    Rpath,
    /// DT_RUNPATH: searched after LD_LIBRARY_PATH, for direct needs only.
    Runpath,
}

impl SearchTag {
    pub(crate) fn dt(self) -> u64 {
        match self {
            SearchTag::Rpath => DT_RPATH,
            SearchTag::Runpath => DT_RUNPATH,
        }
    }
}

/// One file named by `.gnu.version_r` and the versions needed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionNeed {
    /// e.g. `libc.so.6`.
    pub file: String,
    /// e.g. `GLIBC_2.2.5`, `GLIBC_2.34`.
    pub versions: Vec<String>,
}

/// What the loader reads from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    pub class: Class,
    pub endian: Endian,
    /// `e_machine`, e.g. 62 for x86-64.
    pub machine: u16,
    pub kind: Kind,
    /// PT_INTERP, e.g. `/lib64/ld-linux-x86-64.so.2`.
    pub interpreter: Option<String>,
    /// DT_NEEDED, in order.
    pub needed: Vec<String>,
    pub soname: Option<String>,
    pub rpath: Option<String>,
    pub runpath: Option<String>,
    pub version_needs: Vec<VersionNeed>,
    /// Versions this file defines (`.gnu.version_d`), without the base
    /// entry (which repeats the soname).
    pub version_defs: Vec<String>,
}

/// True when `data` starts with the ELF magic. Says nothing about whether
/// the rest is valid: `parse` does.
pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(b"\x7fELF")
}

/// Read what the loader needs from an ELF file.
pub fn parse(data: &[u8]) -> Result<ElfInfo, ElfError> {
    let l = Layout::read(data)?;
    let mut needed = Vec::new();
    let (mut soname, mut rpath, mut runpath) = (None, None, None);
    for d in &l.dynamic {
        match d.tag {
            DT_NEEDED => needed.push(l.dynstr_string(d.val)?),
            // First one wins, as in the loader.
            DT_SONAME if soname.is_none() => soname = Some(l.dynstr_string(d.val)?),
            DT_RPATH if rpath.is_none() => rpath = Some(l.dynstr_string(d.val)?),
            DT_RUNPATH if runpath.is_none() => runpath = Some(l.dynstr_string(d.val)?),
            _ => {}
        }
    }
    let pie = l.dyn_val(DT_FLAGS_1).is_some_and(|f| f & 0x0800_0000 != 0);
    let kind = match l.e_type {
        1 => Kind::Relocatable,
        2 => Kind::Executable,
        3 if pie => Kind::Executable,
        3 => Kind::SharedObject,
        _ => Kind::Other,
    };
    Ok(ElfInfo {
        class: l.r.class,
        endian: l.r.endian,
        machine: l.machine,
        kind,
        interpreter: l.interp.map(|b| String::from_utf8_lossy(b).into_owned()),
        needed,
        soname,
        rpath,
        runpath,
        version_needs: version_needs(&l)?,
        version_defs: version_defs(&l)?,
    })
}

/// Upper bound on records walked in the version chains of one file (aux
/// records included): a file cannot hold more 8-byte records than it has
/// bytes, so a cycle ends here instead of looping or filling memory.
fn chain_limit(l: &Layout<'_>) -> u64 {
    l.r.data.len() as u64 / 8 + 1
}

const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
const SHT_GNU_VERDEF: u32 = 0x6fff_fffd;

/// `.gnu.version_r` as string-table offsets: (file, [version names]).
pub(crate) fn walk_verneed(l: &Layout<'_>) -> Result<Vec<(u64, Vec<u64>)>, ElfError> {
    let Some(mut at) = l.table_off(DT_VERNEED, SHT_GNU_VERNEED) else {
        return Ok(vec![]);
    };
    let what = "version needs (.gnu.version_r)";
    let count = l.dyn_val(DT_VERNEEDNUM).unwrap_or(u64::MAX);
    let mut budget = chain_limit(l);
    let mut out = Vec::new();
    for _ in 0..count.min(budget) {
        let cnt = l.r.u16(at.saturating_add(2), what)?;
        let file = u64::from(l.r.u32(at.saturating_add(4), what)?);
        let aux = l.r.u32(at.saturating_add(8), what)?;
        let next = l.r.u32(at.saturating_add(12), what)?;
        let mut names = Vec::new();
        let mut a = at.saturating_add(u64::from(aux));
        for _ in 0..cnt {
            budget = budget
                .checked_sub(1)
                .ok_or_else(|| error::malformed(format!("{what}: endless chain")))?;
            names.push(u64::from(l.r.u32(a.saturating_add(8), what)?));
            let anext = l.r.u32(a.saturating_add(12), what)?;
            if anext == 0 {
                break;
            }
            a = a.saturating_add(u64::from(anext));
        }
        out.push((file, names));
        if next == 0 {
            break;
        }
        at = at.saturating_add(u64::from(next));
    }
    Ok(out)
}

/// `.gnu.version_d` as string-table offsets: (is_base, [names]).
pub(crate) fn walk_verdef(l: &Layout<'_>) -> Result<Vec<(bool, Vec<u64>)>, ElfError> {
    let Some(mut at) = l.table_off(DT_VERDEF, SHT_GNU_VERDEF) else {
        return Ok(vec![]);
    };
    let what = "version definitions (.gnu.version_d)";
    let count = l.dyn_val(DT_VERDEFNUM).unwrap_or(u64::MAX);
    let mut budget = chain_limit(l);
    let mut out = Vec::new();
    for _ in 0..count.min(budget) {
        let flags = l.r.u16(at.saturating_add(2), what)?;
        let cnt = l.r.u16(at.saturating_add(6), what)?;
        let aux = l.r.u32(at.saturating_add(12), what)?;
        let next = l.r.u32(at.saturating_add(16), what)?;
        let mut names = Vec::new();
        let mut a = at.saturating_add(u64::from(aux));
        for _ in 0..cnt {
            budget = budget
                .checked_sub(1)
                .ok_or_else(|| error::malformed(format!("{what}: endless chain")))?;
            names.push(u64::from(l.r.u32(a, what)?));
            let anext = l.r.u32(a.saturating_add(4), what)?;
            if anext == 0 {
                break;
            }
            a = a.saturating_add(u64::from(anext));
        }
        // VER_FLG_BASE marks the entry naming the file itself.
        out.push((flags & 1 != 0, names));
        if next == 0 {
            break;
        }
        at = at.saturating_add(u64::from(next));
    }
    Ok(out)
}

fn version_needs(l: &Layout<'_>) -> Result<Vec<VersionNeed>, ElfError> {
    walk_verneed(l)?
        .into_iter()
        .map(|(file, names)| {
            Ok(VersionNeed {
                file: l.dynstr_string(file)?,
                versions: names
                    .into_iter()
                    .map(|n| l.dynstr_string(n))
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect()
}

fn version_defs(l: &Layout<'_>) -> Result<Vec<String>, ElfError> {
    let mut out = Vec::new();
    for (base, names) in walk_verdef(l)? {
        // The first name is the version defined; later ones are parents.
        if let (false, Some(&first)) = (base, names.first()) {
            out.push(l.dynstr_string(first)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
