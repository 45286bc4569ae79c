//! The last resort for a search path that does not fit: rebuild the file
//! with object's ELF builder and give the grown tables a new PT_LOAD
//! segment at the end of the address space.
//!
//! The builder keeps every section at its file offset, so growing one
//! means moving it. Only tables nothing refers to by address except the
//! dynamic section (which the builder regenerates) are moved: the dynamic
//! string and symbol tables, hash tables, version tables and notes. The
//! extra program header needs room right after the existing ones, so the
//! sections that sit there (notes, `.interp`) move too; non-PT_LOAD
//! segments that covered them (PT_NOTE, PT_INTERP, PT_GNU_PROPERTY) follow.

use object::build::elf::{Builder, Dynamic, SectionData, SectionId};
use object::elf;

use crate::error::{malformed, ElfError};

/// Larger alignments than this (64 KiB pages, e.g. on aarch64) are not
/// seen in real shared objects.
const MAX_ALIGN: u64 = 0x1_0000;

fn no_room(why: impl std::fmt::Display) -> ElfError {
    ElfError::NoRoom(why.to_string())
}

/// Return `data` with dynamic tag `dt` set to `value` (removed if `None`).
pub(crate) fn rewrite(data: &[u8], dt: u32, value: Option<&[u8]>) -> Result<Vec<u8>, ElfError> {
    let mut b = Builder::read(data).map_err(|e| no_room(format!("cannot rebuild: {e}")))?;
    // The builder trusts offsets, sizes and alignments: it allocates up to
    // the largest offset and rounds with the alignment. Check them first,
    // so a lying header is an error, not a huge allocation or overflow.
    let len = data.len() as u64;
    let within = |off: u64, size: u64| off.checked_add(size).is_some_and(|end| end <= len);
    for g in b.segments.iter() {
        let fits_memory = g
            .p_vaddr
            .checked_add(g.p_memsz)
            .is_some_and(|e| e < 1 << 56);
        if !within(g.p_offset, g.p_filesz) || !fits_memory {
            return Err(malformed(
                "a segment lies outside the file or the address space",
            ));
        }
    }
    for s in b.sections.iter() {
        if s.sh_type != elf::SHT_NOBITS && s.is_alloc() && !within(s.sh_offset, s.sh_size) {
            return Err(malformed("a section lies outside the file"));
        }
        let align = s.sh_addralign;
        if align > MAX_ALIGN || (align != 0 && !align.is_power_of_two()) {
            return Err(malformed("section alignment is not a small power of two"));
        }
    }
    // Hash table parameters size tables the builder writes.
    let counts = [
        b.hash_bucket_count,
        b.gnu_hash_bloom_count,
        b.gnu_hash_bucket_count,
    ];
    if counts.iter().any(|&c| u64::from(c) > len) {
        return Err(malformed("hash table sizes larger than the file"));
    }
    // The builder divides by the bucket counts, masks with the bloom count
    // and shifts 32-bit hashes by the bloom shift.
    let has = |kind: fn(&SectionData<'_>) -> bool| b.sections.iter().any(|s| kind(&s.data));
    if has(|d| matches!(d, SectionData::Hash)) && b.hash_bucket_count == 0 {
        return Err(malformed(".hash has no buckets"));
    }
    if has(|d| matches!(d, SectionData::GnuHash))
        && (b.gnu_hash_bucket_count == 0
            || !b.gnu_hash_bloom_count.is_power_of_two()
            || b.gnu_hash_bloom_shift >= 32)
    {
        return Err(malformed(".gnu.hash parameters are invalid"));
    }
    let dynamic = b
        .dynamic_data_mut()
        .ok_or_else(|| no_room("cannot rebuild: no dynamic section"))?;
    let dt = elf::DynamicTag(i64::from(dt));
    let at = dynamic.iter().position(|d| d.tag() == dt);
    dynamic.retain(|d| d.tag() != dt);
    if let Some(v) = value {
        let entry = Dynamic::String {
            tag: dt,
            val: v.to_vec().into(),
        };
        match at {
            Some(i) => dynamic.insert(i.min(dynamic.len()), entry),
            None => dynamic.push(entry),
        }
    }

    let old_sizes: Vec<(SectionId, u64)> = b
        .sections
        .iter()
        .filter(|s| s.is_alloc())
        .map(|s| (s.id(), s.sh_size))
        .collect();
    b.set_section_sizes();
    let grew = |id: SectionId, b: &Builder<'_>| {
        old_sizes
            .iter()
            .any(|&(i, old)| i == id && b.sections.get(id).sh_size > old)
    };
    let mut moving: Vec<SectionId> = b
        .sections
        .iter()
        .filter(|s| s.is_alloc() && grew(s.id(), &b))
        .map(|s| s.id())
        .collect();
    if moving.is_empty() {
        // Everything still fits where it was.
        return write(b);
    }

    // One more program header: what sits right after the table moves.
    let phdr_end = b
        .header
        .e_phoff
        .saturating_add((b.segments.count() as u64 + 1) * b.encoder().program_header_size());
    for s in b.sections.iter().filter(|s| s.is_alloc()) {
        if s.sh_offset < phdr_end && s.sh_offset.saturating_add(s.sh_size) > b.header.e_phoff {
            moving.push(s.id());
        }
    }
    // A non-load segment is moved whole, so it stays contiguous.
    loop {
        let before = moving.len();
        for seg in b.segments.iter().filter(|g| g.p_type != elf::PT_LOAD) {
            if seg.sections.iter().any(|id| moving.contains(id)) {
                for id in &seg.sections {
                    if !moving.contains(id) {
                        moving.push(*id);
                    }
                }
            }
        }
        if moving.len() == before {
            break;
        }
    }
    let interp = b.interp_section();
    for &id in &moving {
        let s = b.sections.get(id);
        let movable = match s.data {
            SectionData::DynamicString
            | SectionData::DynamicSymbol
            | SectionData::Hash
            | SectionData::GnuHash
            | SectionData::GnuVersym
            | SectionData::GnuVerdef
            | SectionData::GnuVerneed
            | SectionData::Note(_) => true,
            SectionData::Data(_) => Some(id) == interp,
            _ => false,
        };
        if !movable || s.p_flags().contains(elf::PF_W) || s.sh_type == elf::SHT_NOBITS {
            return Err(no_room(format!(
                "section {} would have to move to make room",
                String::from_utf8_lossy(&s.name)
            )));
        }
    }

    for &id in &moving {
        let s = b.sections.get_mut(id);
        s.sh_addralign = s.sh_addralign.max(1);
        if !s.sh_addralign.is_power_of_two() || s.sh_addralign > MAX_ALIGN {
            return Err(malformed("section alignment is not a small power of two"));
        }
    }
    moving.sort_by_key(|id| {
        let s = b.sections.get(*id);
        (s.sh_addr, s.sh_size)
    });
    // Offset and address of the new segment agree modulo its alignment;
    // it must be at least the page size and every moved section's, so
    // each section lands at the same padding in file and memory.
    let align = moving
        .iter()
        .map(|id| b.sections.get(*id).sh_addralign)
        .fold(b.load_align.max(0x1000), u64::max);
    if !align.is_power_of_two() || align > 1 << 30 {
        return Err(malformed("segment alignment is not a power of two"));
    }
    let seg = b.segments.add_load_segment(elf::PF_R, align);
    let new_seg = seg.id();
    for id in &moving {
        seg.append_section(b.sections.get_mut(*id));
    }
    // Loaded segments other than PT_LOAD keep their sections, now moved.
    for seg in b.segments.iter_mut() {
        if seg.p_type != elf::PT_LOAD && seg.sections.iter().any(|id| moving.contains(id)) {
            seg.recalculate_ranges(&b.sections);
        }
        // The old PT_LOADs no longer hold the moved sections.
        if seg.p_type == elf::PT_LOAD && seg.id() != new_seg {
            seg.sections.retain(|id| !moving.contains(id));
        }
    }
    let phdrs = b.program_headers_size();
    for seg in b.segments.iter_mut().filter(|g| g.p_type == elf::PT_PHDR) {
        seg.p_filesz = phdrs;
        seg.p_memsz = phdrs;
    }
    write(b)
}

fn write(mut b: Builder<'_>) -> Result<Vec<u8>, ElfError> {
    // The writer aligns every section's offset with `sh_addralign - 1`:
    // 0 (which ELF allows, as "none") would underflow, and a value that is
    // not a power of two (which ELF forbids) would misplace data.
    for s in b.sections.iter_mut() {
        s.sh_addralign = s.sh_addralign.max(1);
        if !s.sh_addralign.is_power_of_two() || s.sh_addralign > MAX_ALIGN {
            return Err(malformed("section alignment is not a small power of two"));
        }
    }
    let mut out = Vec::new();
    b.write(&mut out)
        .map_err(|e| no_room(format!("cannot rebuild: {e}")))?;
    Ok(out)
}
