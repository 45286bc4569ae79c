//! Reading real files for the search, through `bbrun-elf`. Each path is
//! read and parsed once per [`FileSource`], however many objects need it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bbrun_elf::{Class, ElfInfo, Endian};

use crate::object::{Arch, Object, Probe, Source, VersionNeed};

/// Opens candidates on the file system, remembering answers.
#[derive(Debug, Default)]
pub struct FileSource {
    memo: HashMap<PathBuf, Probe>,
}

impl FileSource {
    pub fn new() -> FileSource {
        FileSource::default()
    }
}

impl Source for FileSource {
    fn open(&mut self, path: &Path) -> Probe {
        if let Some(p) = self.memo.get(path) {
            return p.clone();
        }
        let probe = match std::fs::metadata(path) {
            Err(_) => Probe::Missing,
            Ok(m) if !m.is_file() => Probe::Missing,
            Ok(_) => match read(path) {
                Ok((obj, _)) => Probe::Found(obj),
                Err(why) => Probe::Unusable(why),
            },
        };
        self.memo.insert(path.to_path_buf(), probe.clone());
        probe
    }
}

/// Read and parse one file; the error is one line without the file name.
pub fn read(path: &Path) -> Result<(Object, ElfInfo), String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    if !bbrun_elf::is_elf(&data) {
        return Err("not an ELF file".into());
    }
    let info = bbrun_elf::parse(&data).map_err(|e| e.to_string())?;
    Ok((object_from(path, &info), info))
}

/// The search's view of a parsed file found at `path`.
pub fn object_from(path: &Path, info: &ElfInfo) -> Object {
    Object {
        path: path.to_path_buf(),
        arch: Arch {
            class64: info.class == Class::Elf64,
            little_endian: info.endian == Endian::Little,
            machine: info.machine,
        },
        needed: info.needed.clone(),
        soname: info.soname.clone(),
        rpath: info.rpath.clone(),
        runpath: info.runpath.clone(),
        version_needs: info
            .version_needs
            .iter()
            .map(|v| VersionNeed {
                file: v.file.clone(),
                versions: v.versions.clone(),
            })
            .collect(),
        version_defs: info.version_defs.clone(),
    }
}

/// True when the file at `path` starts with the ELF magic (reads 4 bytes).
pub fn has_elf_magic(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map(|_| bbrun_elf::is_elf(&magic))
        .unwrap_or(false)
}
