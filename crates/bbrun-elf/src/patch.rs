//! Rewriting DT_RPATH / DT_RUNPATH.
//!
//! The dynamic string table is edited as a copy. When the new value fits
//! where the old one was (the usual case: `$ORIGIN/../lib` is shorter than
//! `/srv/build/parts/lib`), it is written over the old string and the file
//! keeps its size and layout. When it does not, the grown table is placed
//! in the unused file space after the end of a PT_LOAD segment, which is
//! extended to map it, and DT_STRTAB/DT_STRSZ and the `.dynstr` section
//! header follow it. Linkers pad segments to page boundaries in the file,
//! so that space is there in nearly every shared library; when it is not,
//! the rewrite falls back to object's ELF builder (`grow`).
//!
//! Strings in `.dynstr` may be shared (a linker can point a symbol name at
//! the tail of another string), so an old string is only overwritten or
//! cleared when nothing else points into it.

use crate::error::{malformed, ElfError};
use crate::read::{
    put_word, Layout, DT_GNU_HASH, DT_HASH, DT_STRSZ, DT_STRTAB, DT_SYMTAB, PT_LOAD, SHT_NOBITS,
    STRING_TAGS,
};
use crate::{grow, walk_verdef, walk_verneed, Class, SearchTag};

const SHT_STRTAB: u32 = 3;
const SHT_DYNSYM: u32 = 11;
const PF_W: u32 = 2;

/// Return new file bytes with DT_RPATH or DT_RUNPATH set to `value`
/// (`None` removes it). The input is never modified; an error leaves
/// nothing half-done because nothing is written.
pub fn set_search_path(
    data: &[u8],
    tag: SearchTag,
    value: Option<&str>,
) -> Result<Vec<u8>, ElfError> {
    // Only files `parse` accepts are rewritten: what bbrun reports about a
    // file and what it changes rest on the same reading.
    crate::parse(data)?;
    let l = Layout::read(data)?;
    if l.dyn_capacity == 0 {
        return Err(ElfError::Unsupported("no dynamic section".into()));
    }
    if let Some(v) = value {
        if v.contains('\0') {
            return Err(ElfError::Unsupported(
                "search path contains a NUL byte".into(),
            ));
        }
    }
    let dt = tag.dt();
    // Nothing to do: return the same bytes, so a second run is a no-op.
    let current: Vec<u64> = l
        .dynamic
        .iter()
        .filter(|d| d.tag == dt)
        .map(|d| d.val)
        .collect();
    match (value, current.as_slice()) {
        (None, []) => return Ok(data.to_vec()),
        (Some(v), [one]) if l.dynstr(*one)? == v.as_bytes() => return Ok(data.to_vec()),
        _ => {}
    }
    let out = match edit(&l, data, dt, &current, value) {
        Err(ElfError::NoRoom(why)) => {
            // Rebuilding is slower and moves tables; only when needed.
            grow::rewrite(data, dt as u32, value.map(str::as_bytes)).map_err(|e| match e {
                ElfError::NoRoom(more) => ElfError::NoRoom(format!("{why}; {more}")),
                e => e,
            })?
        }
        r => r?,
    };
    verify(&l, &out, tag, value)?;
    Ok(out)
}

/// Rewrite in place, or with the string table grown into the space after
/// a segment.
fn edit(
    l: &Layout<'_>,
    data: &[u8],
    dt: u64,
    current: &[u64],
    value: Option<&str>,
) -> Result<Vec<u8>, ElfError> {
    let strtab = l
        .strtab
        .ok_or_else(|| malformed("dynamic section without a string table"))?;
    let others = other_refs(l, dt)?;
    let mut tab =
        l.r.bytes(strtab.off, strtab.size, "dynamic string table")?
            .to_vec();

    // Clear the old strings nobody else uses, so the old path is gone from
    // the file, and remember the first one as a place to reuse.
    let mut reusable: Option<(u64, u64)> = None;
    for &o in current {
        let len = l.dynstr(o)?.len() as u64;
        let shared = match &others {
            Some(refs) => refs.iter().any(|&r| r >= o && r < o + len),
            None => true,
        };
        if !shared {
            tab[o as usize..(o + len) as usize].fill(0);
            if reusable.is_none() {
                reusable = Some((o, len));
            }
        }
    }

    let mut grown = false;
    let new_idx = match value {
        None => None,
        Some(v) => {
            let v = v.as_bytes();
            Some(match reusable {
                Some((o, len)) if v.len() as u64 <= len => {
                    tab[o as usize..o as usize + v.len()].copy_from_slice(v);
                    o
                }
                _ => match find_string(&tab, v) {
                    Some(i) => i as u64,
                    None => {
                        grown = true;
                        let i = tab.len() as u64;
                        tab.extend_from_slice(v);
                        tab.push(0);
                        i
                    }
                },
            })
        }
    };

    // The new dynamic array: the entry takes the place of the first old
    // one (or goes last), the others of the same tag go.
    let mut entries: Vec<(u64, u64)> = Vec::with_capacity(l.dynamic.len() + 1);
    let mut placed = false;
    for d in &l.dynamic {
        if d.tag == dt {
            if let (Some(i), false) = (new_idx, placed) {
                entries.push((dt, i));
                placed = true;
            }
        } else {
            entries.push((d.tag, d.val));
        }
    }
    if let (Some(i), false) = (new_idx, placed) {
        entries.push((dt, i));
    }
    // One DT_NULL must stay to end the array.
    if entries.len() as u64 + 1 > l.dyn_capacity {
        return Err(ElfError::NoRoom(format!(
            "the dynamic section has no spare entry for DT_{}",
            if dt == crate::read::DT_RPATH {
                "RPATH"
            } else {
                "RUNPATH"
            }
        )));
    }

    let mut out = data.to_vec();
    // The old table, cleared of the old strings, stays where it was (in
    // the grown case it is no longer referenced, but must not keep the
    // old path either).
    let old_len = strtab.size as usize;
    put(&mut out, strtab.off, &tab[..old_len]);
    if grown {
        let (off, addr) = place_table(l, &mut out, &tab)?;
        for e in entries.iter_mut() {
            match e.0 {
                DT_STRTAB => e.1 = addr,
                DT_STRSZ => e.1 = tab.len() as u64,
                _ => {}
            }
        }
        // Keep the section headers (readelf, strip, debuggers) in step.
        for h in l
            .sections
            .iter()
            .filter(|h| h.sh_type == SHT_STRTAB && h.offset == strtab.off)
        {
            let w = l.r.word_size();
            let at = h.hdr_off + 8 + w;
            write_word(l, &mut out, at, addr);
            write_word(l, &mut out, at + w, off);
            write_word(l, &mut out, at + 2 * w, tab.len() as u64);
        }
    }
    for i in 0..l.dyn_capacity {
        let (tag, val) = entries.get(i as usize).copied().unwrap_or((0, 0));
        let at = l.dyn_off + i * l.dyn_entsize;
        write_word(l, &mut out, at, tag);
        write_word(l, &mut out, at + l.r.word_size(), val);
    }
    Ok(out)
}

/// Read the result back: in a file whose tables overlap, one write can
/// land on another table, so a result that does not say what was asked,
/// or lost other dynamic strings, is refused rather than returned.
fn verify(
    before: &Layout<'_>,
    out: &[u8],
    tag: SearchTag,
    value: Option<&str>,
) -> Result<(), ElfError> {
    let fail = || malformed("overlapping tables: the rewritten file does not read back");
    let after = crate::parse(out).map_err(|_| fail())?;
    let got = match tag {
        SearchTag::Rpath => after.rpath.as_deref(),
        SearchTag::Runpath => after.runpath.as_deref(),
    };
    let needed: Vec<String> = before
        .dynamic
        .iter()
        .filter(|d| d.tag == crate::read::DT_NEEDED)
        .map(|d| before.dynstr_string(d.val))
        .collect::<Result<_, _>>()?;
    if got != value || after.needed != needed {
        return Err(fail());
    }
    Ok(())
}

fn put(out: &mut [u8], off: u64, bytes: &[u8]) {
    let off = off as usize;
    out[off..off + bytes.len()].copy_from_slice(bytes);
}

fn write_word(l: &Layout<'_>, out: &mut [u8], at: u64, v: u64) {
    let at = at as usize;
    let w = l.r.word_size() as usize;
    put_word(&l.r, &mut out[at..at + w], v);
}

/// An offset where `v` followed by NUL already stands in the table: the
/// value may share another string's tail, as linkers do.
fn find_string(tab: &[u8], v: &[u8]) -> Option<usize> {
    let mut needle = v.to_vec();
    needle.push(0);
    tab.windows(needle.len()).position(|w| w == needle)
}

/// Every offset into the dynamic string table that something other than
/// the `dt` entries uses, or `None` when the dynamic symbols cannot be
/// counted (then no old string is overwritten).
fn other_refs(l: &Layout<'_>, dt: u64) -> Result<Option<Vec<u64>>, ElfError> {
    let mut refs: Vec<u64> = l
        .dynamic
        .iter()
        .filter(|d| d.tag != dt && STRING_TAGS.contains(&d.tag))
        .map(|d| d.val)
        .collect();
    for (file, names) in walk_verneed(l)? {
        refs.push(file);
        refs.extend(names);
    }
    for (_, names) in walk_verdef(l)? {
        refs.extend(names);
    }
    let Some(symtab) = l.dyn_val(DT_SYMTAB) else {
        return Ok(Some(refs));
    };
    let (Some(off), Some(count)) = (l.addr_to_off(symtab), dynsym_count(l)) else {
        return Ok(None);
    };
    let size = match l.r.class {
        Class::Elf32 => 16,
        Class::Elf64 => 24,
    };
    for i in 0..count {
        let at = off.saturating_add(i.saturating_mul(size));
        refs.push(u64::from(l.r.u32(at, "dynamic symbol table")?));
    }
    Ok(Some(refs))
}

/// The number of dynamic symbols: from the section header, else from the
/// hash tables the loader uses.
fn dynsym_count(l: &Layout<'_>) -> Option<u64> {
    let limit = l.r.data.len() as u64 / 16;
    if let Some(h) = l.sections.iter().find(|h| h.sh_type == SHT_DYNSYM) {
        if let Some(n) = h.size.checked_div(h.entsize) {
            return Some(n.min(limit));
        }
    }
    if let Some(off) = l.dyn_val(DT_HASH).and_then(|a| l.addr_to_off(a)) {
        return l
            .r
            .u32(off.saturating_add(4), "")
            .ok()
            .map(|n| u64::from(n).min(limit));
    }
    let off = l.dyn_val(DT_GNU_HASH).and_then(|a| l.addr_to_off(a))?;
    let what = "";
    let nbuckets = u64::from(l.r.u32(off, what).ok()?);
    let symoffset = u64::from(l.r.u32(off.saturating_add(4), what).ok()?);
    let bloom = u64::from(l.r.u32(off.saturating_add(8), what).ok()?);
    let buckets = off
        .checked_add(16)?
        .checked_add(bloom.checked_mul(l.r.word_size())?)?;
    let mut max = 0u64;
    for i in 0..nbuckets.min(limit) {
        max = max.max(u64::from(
            l.r.u32(buckets.saturating_add(i * 4), what).ok()?,
        ));
    }
    if max < symoffset {
        return Some(symoffset.min(limit));
    }
    // Walk the last chain to its end marker (low bit set).
    let chains = buckets.checked_add(nbuckets.checked_mul(4)?)?;
    let mut idx = max;
    while idx < limit {
        let h =
            l.r.u32(chains.checked_add((idx - symoffset) * 4)?, what)
                .ok()?;
        if h & 1 == 1 {
            return Some(idx + 1);
        }
        idx += 1;
    }
    None
}

/// Put the grown string table in the file space after a PT_LOAD segment,
/// extending the segment over it. Returns its file offset and address.
fn place_table(l: &Layout<'_>, out: &mut Vec<u8>, tab: &[u8]) -> Result<(u64, u64), ElfError> {
    let need = tab.len() as u64;
    // Read-only segments first: a string table belongs there.
    let mut candidates: Vec<usize> = (0..l.segments.len())
        .filter(|&i| l.segments[i].p_type == PT_LOAD)
        .collect();
    candidates.sort_by_key(|&i| l.segments[i].p_flags & PF_W != 0);
    for i in candidates {
        let s = l.segments[i];
        // A segment with .bss cannot grow in the file: the bytes after its
        // file part must read as zeros in memory.
        if s.filesz != s.memsz {
            continue;
        }
        let Some(end_off) = s.offset.checked_add(s.filesz) else {
            continue;
        };
        let Some(end_va) = s.vaddr.checked_add(s.memsz) else {
            continue;
        };
        // The file may grow at its end, but only there.
        if end_off > out.len() as u64 {
            continue;
        }
        let start_off = end_off.next_multiple_of(8);
        let Some(start_va) = end_va.checked_add(start_off - end_off) else {
            continue;
        };
        let (Some(new_end_off), Some(new_end_va)) =
            (start_off.checked_add(need), start_va.checked_add(need))
        else {
            continue;
        };
        if file_range_free(l, end_off, new_end_off) && memory_free(l, i, new_end_va) {
            if new_end_off as usize > out.len() {
                out.resize(new_end_off as usize, 0);
            }
            out[end_off as usize..start_off as usize].fill(0);
            put(out, start_off, tab);
            let grow = new_end_off - s.offset;
            let (fsz, msz) = match l.r.class {
                Class::Elf32 => (16, 20),
                Class::Elf64 => (32, 40),
            };
            write_word(l, out, s.hdr_off + fsz, grow);
            write_word(l, out, s.hdr_off + msz, grow);
            return Ok((start_off, start_va));
        }
    }
    Err(ElfError::NoRoom(format!(
        "no free space after a loaded segment for a {need}-byte string table"
    )))
}

/// Nothing in the file (headers, segments, sections) uses [from, to).
fn file_range_free(l: &Layout<'_>, from: u64, to: u64) -> bool {
    let overlaps = |off: u64, size: u64| size > 0 && off < to && off.saturating_add(size) > from;
    let w = l.r.word_size();
    let phdrs = l.phentsize * l.segments.len() as u64;
    let shdrs = l.shentsize * l.sections.len() as u64;
    !(overlaps(0, 40 + 3 * w)
        || overlaps(l.phoff, phdrs)
        || overlaps(l.shoff, shdrs)
        || l.segments.iter().any(|s| overlaps(s.offset, s.filesz))
        || l.sections
            .iter()
            .any(|h| h.sh_type != SHT_NOBITS && overlaps(h.offset, h.size)))
}

/// Segment `i` may grow to end at `new_end_va` without its pages meeting
/// another loaded segment's pages.
fn memory_free(l: &Layout<'_>, i: usize, new_end_va: u64) -> bool {
    let s = l.segments[i];
    let page = s.align.max(4096);
    if !page.is_power_of_two() {
        return false;
    }
    let lo = s.vaddr & !(page - 1);
    let Some(hi) = new_end_va.checked_next_multiple_of(page) else {
        return false;
    };
    l.segments
        .iter()
        .enumerate()
        .filter(|&(j, o)| j != i && o.p_type == PT_LOAD && o.memsz > 0)
        .all(|(_, o)| {
            let o_lo = o.vaddr & !(page - 1);
            let o_hi = o.vaddr.saturating_add(o.memsz);
            o_lo >= hi || o_hi <= lo
        })
}
