//! A bounds-checked reader for the parts of an ELF file the loader uses:
//! header, program and section headers, the dynamic section and the dynamic
//! string table. Every access goes through `Reader`, which returns an error
//! instead of indexing out of range, so no input can make it panic.

use crate::error::{malformed, ElfError};
use crate::{Class, Endian};

pub(crate) const PT_LOAD: u32 = 1;
pub(crate) const PT_DYNAMIC: u32 = 2;
pub(crate) const PT_INTERP: u32 = 3;
pub(crate) const SHT_DYNAMIC: u32 = 6;
pub(crate) const SHT_NOBITS: u32 = 8;

pub(crate) const DT_NULL: u64 = 0;
pub(crate) const DT_NEEDED: u64 = 1;
pub(crate) const DT_HASH: u64 = 4;
pub(crate) const DT_STRTAB: u64 = 5;
pub(crate) const DT_SYMTAB: u64 = 6;
pub(crate) const DT_STRSZ: u64 = 10;
pub(crate) const DT_SONAME: u64 = 14;
pub(crate) const DT_RPATH: u64 = 15;
pub(crate) const DT_RUNPATH: u64 = 29;
pub(crate) const DT_FLAGS_1: u64 = 0x6fff_fffb;
pub(crate) const DT_GNU_HASH: u64 = 0x6fff_fef5;
pub(crate) const DT_VERDEF: u64 = 0x6fff_fffc;
pub(crate) const DT_VERDEFNUM: u64 = 0x6fff_fffd;
pub(crate) const DT_VERNEED: u64 = 0x6fff_fffe;
pub(crate) const DT_VERNEEDNUM: u64 = 0x6fff_ffff;
/// Tags whose value is an offset into the dynamic string table.
pub(crate) const STRING_TAGS: [u64; 9] = [
    DT_NEEDED,
    DT_SONAME,
    DT_RPATH,
    DT_RUNPATH,
    0x6fff_fefa, // DT_CONFIG
    0x6fff_fefb, // DT_DEPAUDIT
    0x6fff_fefc, // DT_AUDIT
    0x7fff_fffd, // DT_AUXILIARY
    0x7fff_ffff, // DT_FILTER
];

/// Typed, bounds-checked reads of a byte buffer in the file's byte order.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    pub data: &'a [u8],
    pub class: Class,
    pub endian: Endian,
}

impl<'a> Reader<'a> {
    pub fn bytes(&self, off: u64, len: u64, what: &'static str) -> Result<&'a [u8], ElfError> {
        let start = usize::try_from(off).map_err(|_| ElfError::Truncated(what))?;
        let len = usize::try_from(len).map_err(|_| ElfError::Truncated(what))?;
        let end = start.checked_add(len).ok_or(ElfError::Truncated(what))?;
        self.data.get(start..end).ok_or(ElfError::Truncated(what))
    }

    fn array<const N: usize>(&self, off: u64, what: &'static str) -> Result<[u8; N], ElfError> {
        let b = self.bytes(off, N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    pub fn u16(&self, off: u64, what: &'static str) -> Result<u16, ElfError> {
        let a = self.array::<2>(off, what)?;
        Ok(match self.endian {
            Endian::Little => u16::from_le_bytes(a),
            Endian::Big => u16::from_be_bytes(a),
        })
    }

    pub fn u32(&self, off: u64, what: &'static str) -> Result<u32, ElfError> {
        let a = self.array::<4>(off, what)?;
        Ok(match self.endian {
            Endian::Little => u32::from_le_bytes(a),
            Endian::Big => u32::from_be_bytes(a),
        })
    }

    pub fn u64(&self, off: u64, what: &'static str) -> Result<u64, ElfError> {
        let a = self.array::<8>(off, what)?;
        Ok(match self.endian {
            Endian::Little => u64::from_le_bytes(a),
            Endian::Big => u64::from_be_bytes(a),
        })
    }

    /// An address-sized field: 4 bytes in ELF32, 8 in ELF64.
    pub fn word(&self, off: u64, what: &'static str) -> Result<u64, ElfError> {
        match self.class {
            Class::Elf32 => self.u32(off, what).map(u64::from),
            Class::Elf64 => self.u64(off, what),
        }
    }

    pub fn word_size(&self) -> u64 {
        match self.class {
            Class::Elf32 => 4,
            Class::Elf64 => 8,
        }
    }

    /// The NUL-terminated string at `off`, without the NUL.
    pub fn cstr(&self, off: u64, limit: u64, what: &'static str) -> Result<&'a [u8], ElfError> {
        let tail = self.bytes(off, limit.saturating_sub(off), what)?;
        let n = tail
            .iter()
            .position(|&b| b == 0)
            .ok_or(ElfError::Truncated(what))?;
        Ok(&tail[..n])
    }
}

/// Encode `v` as an address-sized field into `out`.
pub(crate) fn put_word(r: &Reader<'_>, out: &mut [u8], v: u64) {
    match (r.class, r.endian) {
        (Class::Elf32, Endian::Little) => out[..4].copy_from_slice(&(v as u32).to_le_bytes()),
        (Class::Elf32, Endian::Big) => out[..4].copy_from_slice(&(v as u32).to_be_bytes()),
        (Class::Elf64, Endian::Little) => out[..8].copy_from_slice(&v.to_le_bytes()),
        (Class::Elf64, Endian::Big) => out[..8].copy_from_slice(&v.to_be_bytes()),
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Segment {
    /// File offset of this program header entry.
    pub hdr_off: u64,
    pub p_type: u32,
    pub p_flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Section {
    /// File offset of this section header entry.
    pub hdr_off: u64,
    pub sh_type: u32,
    pub offset: u64,
    pub size: u64,
    pub link: u32,
    pub entsize: u64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct DynEntry {
    pub tag: u64,
    pub val: u64,
}

/// Where everything is: what `parse` reports from and `set_search_path`
/// rewrites.
pub(crate) struct Layout<'a> {
    pub r: Reader<'a>,
    pub e_type: u16,
    pub machine: u16,
    pub phoff: u64,
    pub phentsize: u64,
    pub shoff: u64,
    pub shentsize: u64,
    pub segments: Vec<Segment>,
    pub sections: Vec<Section>,
    /// Entries of the dynamic section up to (not including) DT_NULL.
    pub dynamic: Vec<DynEntry>,
    /// File offset and capacity (in entries, DT_NULLs included) of the
    /// dynamic section.
    pub dyn_off: u64,
    pub dyn_capacity: u64,
    pub dyn_entsize: u64,
    /// The dynamic string table: file offset, address, size.
    pub strtab: Option<StrTab>,
    pub interp: Option<&'a [u8]>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct StrTab {
    pub off: u64,
    pub size: u64,
}

impl<'a> Layout<'a> {
    pub fn read(data: &'a [u8]) -> Result<Layout<'a>, ElfError> {
        if !crate::is_elf(data) {
            return Err(ElfError::NotElf);
        }
        if data.len() < 16 {
            return Err(ElfError::Truncated("ELF identification"));
        }
        let class = match data[4] {
            1 => Class::Elf32,
            2 => Class::Elf64,
            c => return Err(malformed(format!("unknown ELF class {c}"))),
        };
        let endian = match data[5] {
            1 => Endian::Little,
            2 => Endian::Big,
            e => return Err(malformed(format!("unknown data encoding {e}"))),
        };
        let r = Reader {
            data,
            class,
            endian,
        };
        let w = r.word_size();
        let ehsize = 40 + 3 * w;
        r.bytes(0, ehsize, "ELF header")?;
        let e_type = r.u16(16, "ELF header")?;
        let machine = r.u16(18, "ELF header")?;
        let phoff = r.word(24 + w, "ELF header")?;
        let shoff = r.word(24 + 2 * w, "ELF header")?;
        let base = 28 + 3 * w; // after e_flags
        let phentsize = u64::from(r.u16(base + 2, "ELF header")?);
        let phnum = u64::from(r.u16(base + 4, "ELF header")?);
        let shentsize = u64::from(r.u16(base + 6, "ELF header")?);
        let mut shnum = u64::from(r.u16(base + 8, "ELF header")?);

        let mut segments = Vec::new();
        if phnum > 0 {
            let want = if class == Class::Elf32 { 32 } else { 56 };
            if phentsize < want {
                return Err(malformed(format!("program header size {phentsize}")));
            }
            let total = phentsize
                .checked_mul(phnum)
                .ok_or(ElfError::Truncated("program header table"))?;
            r.bytes(phoff, total, "program header table")?;
            for i in 0..phnum {
                segments.push(read_segment(&r, phoff + i * phentsize)?);
            }
        }

        let mut sections = Vec::new();
        if shoff != 0 {
            let want = if class == Class::Elf32 { 40 } else { 64 };
            if shentsize < want {
                return Err(malformed(format!("section header size {shentsize}")));
            }
            if shnum == 0 {
                // More than 0xff00 sections: the real count is in the first
                // header's sh_size.
                shnum = read_section(&r, shoff)?.size;
            }
            let total = shentsize
                .checked_mul(shnum)
                .ok_or(ElfError::Truncated("section header table"))?;
            r.bytes(shoff, total, "section header table")?;
            for i in 0..shnum {
                sections.push(read_section(&r, shoff + i * shentsize)?);
            }
        }

        let mut layout = Layout {
            r,
            e_type,
            machine,
            phoff,
            phentsize,
            shoff,
            shentsize,
            segments,
            sections,
            dynamic: Vec::new(),
            dyn_off: 0,
            dyn_capacity: 0,
            dyn_entsize: 2 * w,
            strtab: None,
            interp: None,
        };
        layout.read_interp()?;
        layout.read_dynamic()?;
        Ok(layout)
    }

    fn read_interp(&mut self) -> Result<(), ElfError> {
        if let Some(s) = self.segments.iter().find(|s| s.p_type == PT_INTERP) {
            let b = self.r.bytes(s.offset, s.filesz, "interpreter path")?;
            let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            self.interp = Some(&b[..n]);
        }
        Ok(())
    }

    fn read_dynamic(&mut self) -> Result<(), ElfError> {
        // The loader finds the dynamic section through PT_DYNAMIC; section
        // headers are a fallback for files without program headers.
        let (off, size, link) =
            if let Some(s) = self.segments.iter().find(|s| s.p_type == PT_DYNAMIC) {
                let link = self
                    .sections
                    .iter()
                    .find(|h| h.sh_type == SHT_DYNAMIC && h.offset == s.offset)
                    .map(|h| h.link);
                (s.offset, s.filesz, link)
            } else if let Some(h) = self.sections.iter().find(|h| h.sh_type == SHT_DYNAMIC) {
                (h.offset, h.size, Some(h.link))
            } else {
                return Ok(());
            };
        let ent = self.dyn_entsize;
        self.r.bytes(off, size, "dynamic section")?;
        self.dyn_off = off;
        self.dyn_capacity = size / ent;
        for i in 0..self.dyn_capacity {
            let at = off + i * ent;
            let tag = self.r.word(at, "dynamic section")?;
            let val = self.r.word(at + self.r.word_size(), "dynamic section")?;
            if tag == DT_NULL {
                break;
            }
            self.dynamic.push(DynEntry { tag, val });
        }

        let addr = self.dyn_val(DT_STRTAB);
        let size = self.dyn_val(DT_STRSZ);
        self.strtab = match (addr, size) {
            (Some(addr), Some(size)) => match self.addr_to_off(addr) {
                Some(off) => Some(StrTab { off, size }),
                None if self.segments.is_empty() => None,
                None => {
                    return Err(malformed(format!(
                        "DT_STRTAB address {addr:#x} is not in any loaded segment"
                    )))
                }
            },
            _ => None,
        };
        if self.strtab.is_none() {
            // No usable DT_STRTAB: the section linked from .dynamic.
            let linked = link
                .and_then(|l| self.sections.get(l as usize))
                .filter(|h| h.sh_type != SHT_NOBITS);
            if let Some(h) = linked {
                self.strtab = Some(StrTab {
                    off: h.offset,
                    size: h.size,
                });
            }
        }
        if let Some(t) = self.strtab {
            self.r.bytes(t.off, t.size, "dynamic string table")?;
        }
        Ok(())
    }

    pub fn dyn_val(&self, tag: u64) -> Option<u64> {
        self.dynamic.iter().find(|d| d.tag == tag).map(|d| d.val)
    }

    /// The file offset of a virtual address, through the PT_LOAD segments.
    pub fn addr_to_off(&self, addr: u64) -> Option<u64> {
        self.segments
            .iter()
            .filter(|s| s.p_type == PT_LOAD)
            .find(|s| addr >= s.vaddr && addr - s.vaddr < s.filesz)
            .and_then(|s| s.offset.checked_add(addr - s.vaddr))
    }

    /// The string at offset `idx` of the dynamic string table.
    pub fn dynstr(&self, idx: u64) -> Result<&'a [u8], ElfError> {
        let t = self.strtab.ok_or_else(|| {
            malformed("dynamic entries name strings but there is no string table")
        })?;
        if idx >= t.size {
            return Err(malformed(format!(
                "string offset {idx:#x} past the dynamic string table ({:#x} bytes)",
                t.size
            )));
        }
        self.r
            .cstr(t.off + idx, t.off + t.size, "dynamic string table")
    }

    pub fn dynstr_string(&self, idx: u64) -> Result<String, ElfError> {
        Ok(String::from_utf8_lossy(self.dynstr(idx)?).into_owned())
    }

    /// A table the dynamic section points at by address (DT_VERNEED...),
    /// or else the section of type `sh_type`.
    pub fn table_off(&self, tag: u64, sh_type: u32) -> Option<u64> {
        if let Some(addr) = self.dyn_val(tag) {
            if let Some(off) = self.addr_to_off(addr) {
                return Some(off);
            }
        }
        self.sections
            .iter()
            .find(|h| h.sh_type == sh_type)
            .map(|h| h.offset)
    }
}

/// `at` when a header of at most 64 bytes starting there has its fields
/// at offsets that do not overflow (an untrusted `e_shoff` near 2^64).
fn header_at(at: u64, what: &'static str) -> Result<u64, ElfError> {
    at.checked_add(64)
        .map(|_| at)
        .ok_or(ElfError::Truncated(what))
}

fn read_segment(r: &Reader<'_>, at: u64) -> Result<Segment, ElfError> {
    let what = "program header table";
    let at = header_at(at, what)?;
    Ok(match r.class {
        Class::Elf32 => Segment {
            hdr_off: at,
            p_type: r.u32(at, what)?,
            offset: r.word(at + 4, what)?,
            vaddr: r.word(at + 8, what)?,
            filesz: r.word(at + 16, what)?,
            memsz: r.word(at + 20, what)?,
            p_flags: r.u32(at + 24, what)?,
            align: r.word(at + 28, what)?,
        },
        Class::Elf64 => Segment {
            hdr_off: at,
            p_type: r.u32(at, what)?,
            p_flags: r.u32(at + 4, what)?,
            offset: r.word(at + 8, what)?,
            vaddr: r.word(at + 16, what)?,
            filesz: r.word(at + 32, what)?,
            memsz: r.word(at + 40, what)?,
            align: r.word(at + 48, what)?,
        },
    })
}

fn read_section(r: &Reader<'_>, at: u64) -> Result<Section, ElfError> {
    let what = "section header table";
    let at = header_at(at, what)?;
    let w = r.word_size();
    // Fields after sh_flags are all address-sized up to sh_link, then
    // sh_link and sh_info are 4 bytes, then sh_addralign, sh_entsize.
    let addr_at = at + 8 + w;
    Ok(Section {
        hdr_off: at,
        sh_type: r.u32(at + 4, what)?,
        offset: r.word(addr_at + w, what)?,
        size: r.word(addr_at + 2 * w, what)?,
        link: r.u32(addr_at + 3 * w, what)?,
        entsize: r.word(addr_at + 3 * w + 8 + w, what)?,
    })
}
