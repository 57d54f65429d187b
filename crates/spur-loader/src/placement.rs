//! Where a heap goes in this process's address space (§2, §5): each
//! segment at its old address (segments sharing pages share a
//! reservation), or all of them coalesced into one range elsewhere; the
//! headroom after the last segment (§5.3); perm space at its one address
//! (§6); and the one search for free space below 4 GiB that a 32-bit heap,
//! and the runtime's new space and stack zone for it, must use.
//!
//! Placement only reserves and commits memory (through `spur-mem`) and
//! says where each segment starts; reading the segments in and rewriting
//! pointers is the load's next step.

use std::ops::Range;

use spur_format::raw::*;
use spur_format::read::composed::SegmentMeta;
use spur_format::{ImageHeader, NewAddr, SegmentTable, Swizzle, WordSize};
use spur_mem::{page_ceil, page_floor, Backing, MemError, Reservation};

use crate::conv::usize_of;
use crate::error::LoadError;
use crate::heap::{HeapSegment, LoadedHeap, PermSpace};
use crate::load::LoadOptions;
use crate::source::SegmentReader;

/// Where the caller wants the heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlacementRequest {
    /// At the image's old addresses, each segment at its own old start;
    /// relocate only when a range is taken.
    #[default]
    OldBase,
    /// Anywhere else: coalesce the segments and swizzle.
    Relocate,
    /// Coalesced, with nil at exactly this (8-aligned) address.
    At(u64),
}

/// Where a 64-bit heap relocated without `--base` goes when that range is
/// free (32 TiB, far from Pharo's 1 TiB old space and from the shared
/// libraries near the top), so that relocated snapshots are reproducible;
/// the next 32 TiB up when the image itself lives there.
pub const RELOCATION_BASE_64: u64 = 0x2000_0000_0000;

/// The lowest address a heap may be asked to start at: the kernel maps
/// nothing in the first 64 KiB (`vm.mmap_min_addr`).
pub const MIN_BASE: u64 = 0x1_0000;

/// Where the search for room below 4 GiB starts: clear of the low memory
/// a process's own binary and libraries usually occupy.
pub const LOW_SEARCH_FROM: u64 = 0x1000_0000;
/// The step of that search.
pub const LOW_SEARCH_STEP: u64 = 16 << 20;
/// The top of the range a 32-bit heap's memory must lie in.
pub const LOW_LIMIT: u64 = 1 << 32;

/// Reserves `len` bytes (a multiple of the page size) below 4 GiB, as a
/// 32-bit heap's memory must lie: the first free range from
/// [`LOW_SEARCH_FROM`] up, in steps of [`LOW_SEARCH_STEP`], that does not
/// overlap `avoid` (an image's own old range, kept free for it). `None`
/// when no candidate is free; other failures of the kernel are errors.
pub fn reserve_below_4g(
    len: u64,
    avoid: Option<Range<u64>>,
) -> Result<Option<Reservation>, MemError> {
    let mut cand = LOW_SEARCH_FROM;
    while cand.checked_add(len).is_some_and(|end| end <= LOW_LIMIT) {
        let clear = avoid
            .as_ref()
            .is_none_or(|a| cand + len <= a.start || cand >= a.end);
        if clear {
            match Reservation::at(cand, len) {
                Ok(r) => return Ok(Some(r)),
                Err(MemError::Occupied { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        cand += LOW_SEARCH_STEP;
    }
    Ok(None)
}

/// Initial headroom after the heap (§5.3), from `extraVMMemory` (or the
/// 16 MiB default) and the free space the image already carries.
pub fn initial_headroom(extra_vm_memory: u32, free_old_space: u64) -> u64 {
    let h = if extra_vm_memory == 0 {
        DEFAULT_GROW_HEADROOM
    } else {
        u64::from(extra_vm_memory)
    };
    let f = free_old_space;
    if f >= h {
        0
    } else if f >= h / 8 * 7 {
        h / 8
    } else if f >= h / 4 * 3 {
        h / 4
    } else if f >= h / 8 * 5 {
        h / 8 * 3
    } else if f >= h / 2 {
        h / 2
    } else {
        h
    }
}

/// Reserves the heap as `opts.placement` asks, falling back from the old
/// addresses to a coalesced range when one is taken. Returns the plan and,
/// after a fallback, why the old addresses could not be used.
pub(crate) fn place<R: SegmentReader + ?Sized>(
    header: &ImageHeader,
    table: &SegmentTable,
    opts: &LoadOptions,
    reader: &R,
) -> Result<(Plan, Option<String>), LoadError> {
    let headroom = initial_headroom(header.extra_vm_memory, header.free_old_space);
    Ok(match opts.placement {
        PlacementRequest::OldBase => {
            match place_at_old_addresses(header, table, headroom, opts, reader) {
                Ok(plan) => (plan, None),
                Err(e) => {
                    let why = spur_format::error::Chain(&e).to_string();
                    tracing::warn!("old addresses unavailable, relocating: {why}");
                    (
                        coalesce(header, table, headroom, None, opts.backing)?,
                        Some(why),
                    )
                }
            }
        }
        PlacementRequest::Relocate => {
            (coalesce(header, table, headroom, None, opts.backing)?, None)
        }
        PlacementRequest::At(addr) => (
            coalesce(header, table, headroom, Some(addr), opts.backing)?,
            None,
        ),
    })
}

/// Places perm space at the one address it can live at (§6), mapping
/// `permSpace.data` there when it can.
pub(crate) fn place_perm_space(
    heap: &mut LoadedHeap,
    meta: SegmentMeta,
    file: &std::fs::File,
    opts: &LoadOptions,
) -> Result<(), LoadError> {
    let lo = page_floor(meta.start);
    let hi = page_ceil(meta.start + meta.size.max(1));
    let mut r = Reservation::at(lo, hi - lo)?;
    r.commit(hi - lo, opts.backing)?;
    let offset = usize_of(meta.start - lo);
    let promise = opts.map_files.filter(|_| meta.size > 0 && meta.start == lo);
    let mapped = promise.is_some();
    if let Some(promise) = promise {
        r.map_file_unchanged(promise, 0, file, 0, meta.size)?;
    } else if meta.size > 0 {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut r.bytes_mut()[offset..offset + usize_of(meta.size)], 0)
            .map_err(|source| LoadError::Read {
                offset: 0,
                len: meta.size,
                source,
            })?;
    }
    heap.perm = Some(PermSpace {
        start: meta.start,
        size: meta.size,
        mapped,
        region: heap.regions.len(),
        offset,
    });
    heap.regions.push(r);
    Ok(())
}

/// Where the segments went: the reservations holding them, each segment's
/// place, and the headroom reserved after the last one.
pub(crate) struct Plan {
    pub(crate) regions: Vec<Reservation>,
    pub(crate) segments: Vec<HeapSegment>,
    /// All segments back to back in one range, each over the previous
    /// one's bridge (§2.3).
    pub(crate) coalesced: bool,
    /// Headroom reserved after the heap: what the image asks for (§5.3),
    /// less what does not fit below the address limit.
    pub(crate) headroom: u64,
}

/// Reserves each segment's old range (segments sharing pages share a
/// reservation), with the headroom after the last one.
fn place_at_old_addresses<R: SegmentReader + ?Sized>(
    header: &ImageHeader,
    table: &SegmentTable,
    headroom: u64,
    opts: &LoadOptions,
    reader: &R,
) -> Result<Plan, MemError> {
    let page = spur_mem::page_size();
    let n = table.segments.len();
    let mut reserved_headroom = 0;
    // Page ranges, merged where they touch.
    let mut groups: Vec<(u64, u64, Vec<usize>)> = Vec::new();
    for (i, s) in table.segments.iter().enumerate() {
        let lo = page_floor(s.old_start.get());
        let mut end = s.old_end().get();
        if i == n - 1 {
            reserved_headroom = headroom.min(header.word.address_limit() - end);
            end += reserved_headroom;
        }
        let hi = page_ceil(end);
        match groups.last_mut() {
            Some(g) if lo <= g.1 => {
                g.1 = g.1.max(hi);
                g.2.push(i);
            }
            _ => groups.push((lo, hi, vec![i])),
        }
    }
    let mut regions = Vec::with_capacity(groups.len());
    let mut segments = Vec::with_capacity(n);
    for (lo, hi, members) in groups {
        let mut r = Reservation::at(lo, hi - lo)?;
        let last = &table.segments[*members.last().unwrap()];
        r.commit(last.old_end().get() - lo, opts.backing)?;
        for i in members {
            let s = &table.segments[i];
            let file = opts
                .map_files
                .filter(|_| s.old_start.get().is_multiple_of(page))
                .and_then(|promise| Some((promise, reader.segment_file(s)?)));
            if let Some((promise, f)) = file {
                r.map_file_unchanged(promise, s.old_start.get() - lo, f, 0, s.size)?;
            }
            segments.push(HeapSegment {
                index: i,
                old_start: s.old_start,
                new_start: Swizzle::IN_PLACE.apply(s.old_start),
                size: s.size,
                region: regions.len(),
                offset: usize_of(s.old_start.get() - lo),
                own_bridge: true,
                mapped: file.is_some(),
            });
        }
        regions.push(r);
    }
    Ok(Plan {
        regions,
        segments,
        coalesced: false,
        headroom: reserved_headroom,
    })
}

/// Reserves one range for all segments back to back, each overwriting the
/// previous one's bridge (§2.3), at `at` or wherever there is room.
fn coalesce(
    header: &ImageHeader,
    table: &SegmentTable,
    headroom: u64,
    at: Option<u64>,
    backing: Backing,
) -> Result<Plan, LoadError> {
    let word = header.word;
    let n = table.segments.len() as u64;
    let heap_len = header.data_size - BRIDGE_BYTES * (n - 1);
    let need = heap_len
        .checked_add(headroom)
        .ok_or(LoadError::TooLarge { need: u64::MAX })?;
    let limit = word.address_limit();
    let mut reserved_headroom = headroom;
    let (region, start) = match at {
        Some(addr) => {
            if addr % 8 != 0 || addr == 0 {
                return Err(LoadError::BadBase {
                    addr,
                    why: "the base must be a non-zero multiple of 8",
                });
            }
            if addr.checked_add(heap_len).is_none_or(|e| e > limit) {
                return Err(LoadError::BadBase {
                    addr,
                    why: "the heap would not fit below the address limit of its word size",
                });
            }
            if page_floor(addr) < MIN_BASE {
                return Err(LoadError::BadBase {
                    addr,
                    why: "the base must be at least 0x10000: the kernel maps nothing below",
                });
            }
            let lo = page_floor(addr);
            reserved_headroom = headroom.min(limit - addr - heap_len);
            let hi = page_ceil(addr + heap_len + reserved_headroom);
            (Reservation::at(lo, hi - lo)?, addr)
        }
        None if word == WordSize::W64 => {
            let len = page_ceil(need);
            let old = (header.old_base.get(), table.old_end().get());
            let stable = [RELOCATION_BASE_64, 2 * RELOCATION_BASE_64]
                .into_iter()
                .find(|&b| (b + len <= old.0 || b >= old.1) && b + len <= limit)
                .and_then(|b| Reservation::at(b, len).ok());
            let r = match stable {
                Some(r) => r,
                None => Reservation::anywhere(len, 2 << 20)?,
            };
            let base = r.base();
            (r, base)
        }
        None => {
            // A 32-bit heap must stay below 4 GiB: look for room from 256 MiB up,
            // away from the image's own old range. Headroom is a wish: when
            // there is no room for it (a header may ask for 4 GiB), the heap
            // alone is placed, as the VMs shrink their request.
            let old = header.old_base.get()..table.old_end().get();
            let r = match reserve_below_4g(page_ceil(need), Some(old.clone()))? {
                Some(r) => r,
                None => {
                    reserved_headroom = 0;
                    reserve_below_4g(page_ceil(heap_len), Some(old.clone()))?.ok_or(
                        LoadError::NoRoomBelow4G {
                            need: heap_len,
                            old_start: old.start,
                            old_end: old.end,
                        },
                    )?
                }
            };
            let base = r.base();
            (r, base)
        }
    };
    let mut region = region;
    let base_off = usize_of(start - region.base());
    region.commit(base_off as u64 + heap_len, backing)?;
    let mut segments = Vec::with_capacity(usize_of(n));
    let mut off = base_off;
    for s in &table.segments {
        segments.push(HeapSegment {
            index: s.index,
            old_start: s.old_start,
            new_start: NewAddr::in_reservation(region.base(), off as u64),
            size: s.size,
            region: 0,
            offset: off,
            own_bridge: s.index as u64 == n - 1,
            mapped: false,
        });
        off += usize_of(s.size - BRIDGE_BYTES);
    }
    Ok(Plan {
        regions: vec![region],
        segments,
        coalesced: true,
        headroom: reserved_headroom,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_low_search_stays_below_4g_and_clear_of_the_range_to_avoid() {
        let len = 1 << 20;
        let avoid = LOW_SEARCH_FROM..LOW_SEARCH_FROM + 4 * LOW_SEARCH_STEP;
        let r = reserve_below_4g(len, Some(avoid.clone()))
            .unwrap()
            .expect("room below 4 GiB");
        assert!(r.base() >= avoid.end, "{:#x}", r.base());
        assert!(r.base() + len <= LOW_LIMIT);
        assert_eq!(r.base() % LOW_SEARCH_STEP, 0);
        // Nothing fits that is larger than the range searched.
        assert!(reserve_below_4g(LOW_LIMIT, None).unwrap().is_none());
    }
}
