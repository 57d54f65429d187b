//! The load pipeline: header, segment table, placement, streaming read,
//! bridge repair or relocation.

use std::path::Path;
use std::time::Instant;

use spur_format::raw::*;
use spur_format::read::header::HEADER_PROBE_BYTES;
use spur_format::read::segment::repair_bridge_in_memory;
use spur_format::{FormatError, ImageHeader, Layout, NewAddr, SegmentTable, WordSize, L32, L64};
use spur_mem::{page_ceil, page_floor, Backing, FilesUnchanged, MemError, Reservation};

use crate::error::LoadError;
use crate::heap::{HeapSegment, LoadedHeap, Placement, Timings};
use crate::relocate::Relocation;
use crate::source::{ComposedSource, FileSource, ImageSource, InOneFile, SegmentReader};

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

/// How to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    pub placement: PlacementRequest,
    /// Transparent huge pages by default: filling a heap then takes one page
    /// fault per 2 MiB instead of one per 4 KiB, which makes loading several
    /// times faster than reading the same file into a `Vec`.
    pub backing: Backing,
    /// `None` (the default): read the segment files of a composed image.
    /// `Some(promise)`: map them in place (copy-on-write) where their old
    /// addresses are page-aligned, so loading costs the same whatever the
    /// size and pages are read only when touched. The promise (made with the
    /// `unsafe` [`FilesUnchanged::assume`]) is that nobody writes to or
    /// truncates the folder's `.data` files while the heap lives: a write
    /// may change the heap's bytes under it, and touching a page past a
    /// truncated file's new end kills the process with `SIGBUS`.
    pub map_files: Option<FilesUnchanged>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            placement: PlacementRequest::OldBase,
            backing: Backing::HugePages,
            map_files: None,
        }
    }
}

/// Bytes read from the file between two relocation passes: small enough that
/// the chunk is still in cache when its objects are rewritten.
const CHUNK: usize = 2 << 20;

/// Initial headroom after the heap (§5.3), from `extraVMMemory` (or the
/// 16 MiB default) and the free space the image already carries.
pub fn initial_headroom(extra_vm_memory: u32, free_old_space: u64) -> u64 {
    let h = if extra_vm_memory == 0 {
        DEFAULT_GROW_HEADROOM
    } else {
        extra_vm_memory as u64
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

/// Reads the header and follows the bridges, without loading anything.
pub fn read_layout<S: ImageSource + ?Sized>(
    src: &S,
) -> Result<(ImageHeader, SegmentTable), LoadError> {
    let n = (HEADER_PROBE_BYTES as u64).min(src.len()) as usize;
    let mut first = vec![0u8; n];
    src.read_exact_at(&mut first, 0)?;
    let header = ImageHeader::parse(&first, src.len())?;
    let table = SegmentTable::read(&header, |off| {
        let mut b = [0u8; 16];
        src.read_exact_at(&mut b, off)?;
        Ok::<_, LoadError>(b)
    })?;
    Ok((header, table))
}

/// Loads the image at `path`: a single file, or a composed image's folder.
pub fn load_path(path: &Path, opts: &LoadOptions) -> Result<LoadedHeap, LoadError> {
    let t0 = Instant::now();
    if path.is_dir() {
        let src = {
            let _s = tracing::debug_span!("header").entered();
            ComposedSource::open(path)?
        };
        return load_segments(src.header.clone(), src.table.clone(), &src, opts, t0);
    }
    let src = FileSource::open(path)?;
    load(&src, opts)
}

/// Loads a composed image already opened (and checked) as a [`ComposedSource`].
pub fn load_composed(src: &ComposedSource, opts: &LoadOptions) -> Result<LoadedHeap, LoadError> {
    let t0 = Instant::now();
    load_segments(src.header.clone(), src.table.clone(), src, opts, t0)
}

/// Reads the layout of the image at `path`, a single file or a composed folder.
pub fn read_layout_path(path: &Path) -> Result<(ImageHeader, SegmentTable), LoadError> {
    if path.is_dir() {
        let src = ComposedSource::open(path)?;
        return Ok((src.header, src.table));
    }
    read_layout(&FileSource::open(path)?)
}

/// Loads a single-file image from any source.
pub fn load<S: ImageSource + ?Sized>(src: &S, opts: &LoadOptions) -> Result<LoadedHeap, LoadError> {
    let t0 = Instant::now();
    let (header, table) = {
        let _s = tracing::debug_span!("header").entered();
        read_layout(src)?
    };
    load_segments(header, table, &InOneFile(src), opts, t0)
}

/// The pipeline after the layout is known: placement, streamed read (or
/// mapping), then bridge repair or relocation.
fn load_segments<R: SegmentReader + ?Sized>(
    header: ImageHeader,
    table: SegmentTable,
    reader: &R,
    opts: &LoadOptions,
    t0: Instant,
) -> Result<LoadedHeap, LoadError> {
    let headroom = initial_headroom(header.extra_vm_memory, header.free_old_space);
    let mut fallback = None;
    let plan = {
        let _s = tracing::debug_span!("reserve").entered();
        match opts.placement {
            PlacementRequest::OldBase => {
                match place_at_old_addresses(&header, &table, headroom, opts, reader) {
                    Ok(plan) => plan,
                    Err(e) => {
                        let why = e.to_string();
                        tracing::warn!("old addresses unavailable, relocating: {why}");
                        fallback = Some(why);
                        coalesce(&header, &table, headroom, None, opts.backing)?
                    }
                }
            }
            PlacementRequest::Relocate => coalesce(&header, &table, headroom, None, opts.backing)?,
            PlacementRequest::At(addr) => {
                coalesce(&header, &table, headroom, Some(addr), opts.backing)?
            }
        }
    };
    let t_reserve = t0.elapsed();
    let mut heap = LoadedHeap {
        special_objects: NewAddr(header.special_objects_oop.0),
        header,
        regions: plan.regions,
        segments: plan.segments,
        placement: Placement::OldBase,
        swizzled: false,
        timings: Timings::default(),
        fallback,
        headroom: plan.headroom,
        objects_seen: None,
        perm: None,
    };
    if let Some((meta, file)) = reader.perm() {
        place_perm_space(&mut heap, meta, file, opts)?;
    }
    let moved = heap.segments.iter().any(|s| !s.swizzle().is_identity());
    let coalesced = plan.coalesced;
    // §2.4: skip the swizzle only when nothing moved and nothing was coalesced
    // (a coalesced heap with one segment at its old base is the same thing).
    let relocation = (moved || (coalesced && heap.segments.len() > 1)).then(|| {
        let r = Relocation::new(
            heap.word(),
            heap.segments.iter().map(|s| (s.old_start.0, s.new_start.0)),
        );
        match heap.perm {
            Some(p) => r.with_perm_space(p.start, p.start + p.size),
            None => r,
        }
    });
    let t1 = Instant::now();
    let swizzle_time = {
        let _s = tracing::debug_span!("read").entered();
        match heap.word() {
            WordSize::W64 => {
                read_segments::<L64, R>(reader, &table, &mut heap, relocation.as_ref())?
            }
            WordSize::W32 => {
                read_segments::<L32, R>(reader, &table, &mut heap, relocation.as_ref())?
            }
        }
    };
    let t_read = t1.elapsed();
    if let Some(r) = &relocation {
        let t2 = Instant::now();
        let _s = tracing::debug_span!("swizzle").entered();
        fix_roots(&mut heap, r)?;
        if heap.perm.is_some() {
            match heap.word() {
                WordSize::W64 => relocate_perm_space::<L64>(&mut heap, r)?,
                WordSize::W32 => relocate_perm_space::<L32>(&mut heap, r)?,
            }
        }
        heap.placement = Placement::Relocated;
        heap.swizzled = true;
        heap.timings.swizzle_us = (swizzle_time + t2.elapsed()).as_micros() as u64;
    } else if !coalesced {
        for (i, s) in table.segments.iter().enumerate() {
            let seg = heap.segments[i];
            let bytes = &mut heap.regions[seg.region].bytes_mut()
                [seg.offset..seg.offset + seg.size as usize];
            // Only write when something changes: a write to a mapped segment
            // copies its page.
            let mut want = bytes[bytes.len() - 16..].to_vec();
            repair_bridge_in_memory(heap.header.word, &mut want, s.gap_after);
            let at = bytes.len() - 16;
            if bytes[at..] != want[want.len() - 16..] {
                bytes[at..].copy_from_slice(&want[want.len() - 16..]);
            }
        }
    }
    heap.timings.reserve_us = t_reserve.as_micros() as u64;
    heap.timings.read_us = t_read.saturating_sub(swizzle_time).as_micros() as u64;
    heap.timings.total_us = t0.elapsed().as_micros() as u64;
    tracing::debug!(?heap.timings, placement = heap.placement.name(), "loaded");
    Ok(heap)
}

/// Places perm space at the one address it can live at (§6), mapping
/// `permSpace.data` there when it can.
fn place_perm_space(
    heap: &mut LoadedHeap,
    meta: spur_format::read::composed::SegmentMeta,
    file: &std::fs::File,
    opts: &LoadOptions,
) -> Result<(), LoadError> {
    let lo = page_floor(meta.start);
    let hi = page_ceil(meta.start + meta.size.max(1));
    let mut r = Reservation::at(lo, hi - lo)?;
    r.commit(hi - lo, opts.backing)?;
    let offset = (meta.start - lo) as usize;
    let promise = opts.map_files.filter(|_| meta.size > 0 && meta.start == lo);
    let mapped = promise.is_some();
    if let Some(promise) = promise {
        r.map_file_unchanged(promise, 0, file, 0, meta.size)?;
    } else if meta.size > 0 {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut r.bytes_mut()[offset..offset + meta.size as usize], 0)
            .map_err(|source| LoadError::Read {
                offset: 0,
                len: meta.size,
                source,
            })?;
    }
    heap.perm = Some(crate::heap::PermSpace {
        start: meta.start,
        size: meta.size,
        mapped,
        region: heap.regions.len(),
        offset,
    });
    heap.regions.push(r);
    Ok(())
}

/// Perm-space objects keep their addresses, but their pointers into old
/// space follow it when it moves.
fn relocate_perm_space<L: Layout>(heap: &mut LoadedHeap, r: &Relocation) -> Result<(), LoadError> {
    let p = heap.perm.expect("perm space");
    let bytes = &mut heap.regions[p.region].bytes_mut()[p.offset..p.offset + p.size as usize];
    let mut cursor = 0;
    let len = bytes.len();
    r.advance::<L>(bytes, &mut cursor, len, len, usize::MAX, (0, p.start))
        .map_err(LoadError::Relocate)?;
    Ok(())
}

struct Plan {
    regions: Vec<Reservation>,
    segments: Vec<HeapSegment>,
    coalesced: bool,
    /// Headroom reserved after the heap: what the image asks for (§5.3),
    /// less what does not fit below the address limit.
    headroom: u64,
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
        let lo = page_floor(s.old_start.0);
        let mut end = s.old_end().0;
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
        r.commit(last.old_end().0 - lo, opts.backing)?;
        for i in members {
            let s = &table.segments[i];
            let file = opts
                .map_files
                .filter(|_| s.old_start.0.is_multiple_of(page))
                .and_then(|promise| Some((promise, reader.segment_file(s)?)));
            if let Some((promise, f)) = file {
                r.map_file_unchanged(promise, s.old_start.0 - lo, f, 0, s.size)?;
            }
            segments.push(HeapSegment {
                index: i,
                old_start: s.old_start,
                new_start: NewAddr(s.old_start.0),
                size: s.size,
                region: regions.len(),
                offset: (s.old_start.0 - lo) as usize,
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
            let lo = page_floor(addr);
            reserved_headroom = headroom.min(limit - addr - heap_len);
            let hi = page_ceil(addr + heap_len + reserved_headroom);
            (Reservation::at(lo, hi - lo)?, addr)
        }
        None if word == WordSize::W64 => {
            let len = page_ceil(need);
            let r = Reservation::anywhere(len, 2 << 20)?;
            let base = r.base();
            (r, base)
        }
        None => {
            // A 32-bit heap must stay below 4 GiB: look for room from 256 MiB up,
            // away from the image's own old range. Headroom is a wish: when
            // there is no room for it (a header may ask for 4 GiB), the heap
            // alone is placed, as the VMs shrink their request.
            let old = (header.old_base.0, table.old_end().0);
            let find = |len: u64| -> Result<Option<Reservation>, LoadError> {
                let mut cand: u64 = 0x1000_0000;
                while cand + len <= limit {
                    if cand + len <= old.0 || cand >= old.1 {
                        match Reservation::at(cand, len) {
                            Ok(r) => return Ok(Some(r)),
                            Err(MemError::Occupied { .. }) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    cand += 16 << 20;
                }
                Ok(None)
            };
            let r = match find(page_ceil(need))? {
                Some(r) => r,
                None => {
                    reserved_headroom = 0;
                    find(page_ceil(heap_len))?.ok_or(LoadError::TooLarge { need: heap_len })?
                }
            };
            let base = r.base();
            (r, base)
        }
    };
    let mut region = region;
    let base_off = (start - region.base()) as usize;
    region.commit(base_off as u64 + heap_len, backing)?;
    let mut segments = Vec::with_capacity(n as usize);
    let mut off = base_off;
    for s in &table.segments {
        segments.push(HeapSegment {
            index: s.index,
            old_start: s.old_start,
            new_start: NewAddr(region.base() + off as u64),
            size: s.size,
            region: 0,
            offset: off,
            own_bridge: s.index as u64 == n - 1,
            mapped: false,
        });
        off += (s.size - BRIDGE_BYTES) as usize;
    }
    Ok(Plan {
        regions: vec![region],
        segments,
        coalesced: true,
        headroom: reserved_headroom,
    })
}

/// Streams each segment from the source into its place, rewriting pointers
/// chunk by chunk when relocating. Returns the time spent rewriting.
fn read_segments<L: Layout, R: SegmentReader + ?Sized>(
    reader: &R,
    table: &SegmentTable,
    heap: &mut LoadedHeap,
    relocation: Option<&Relocation>,
) -> Result<std::time::Duration, LoadError> {
    let mut swizzle = std::time::Duration::ZERO;
    let mut objects = 0u64;
    for (i, fs) in table.segments.iter().enumerate() {
        let seg = heap.segments[i];
        if seg.mapped {
            continue;
        }
        let region = &mut heap.regions[seg.region];
        let bytes = region.bytes_mut();
        let start = seg.offset;
        let end = start + seg.size as usize;
        let limit = end - BRIDGE_BYTES as usize;
        let mut frontier = start;
        let mut cursor = start;
        while frontier < end {
            let n = CHUNK.min(end - frontier);
            reader.read_segment(
                fs,
                (frontier - start) as u64,
                &mut bytes[frontier..frontier + n],
            )?;
            frontier += n;
            if let Some(r) = relocation {
                let t = Instant::now();
                objects += r
                    .advance::<L>(
                        bytes,
                        &mut cursor,
                        frontier,
                        limit,
                        i,
                        (start, seg.new_start.0),
                    )
                    .map_err(LoadError::Relocate)?;
                swizzle += t.elapsed();
            }
        }
        if relocation.is_some() && cursor != limit {
            return Err(LoadError::Relocate(FormatError::BadObject {
                segment: i,
                offset: (cursor - start) as u64,
                addr: seg.new_start.0 + (cursor - start) as u64,
                what: "does not end where the segment's bridge begins".into(),
            }));
        }
    }
    if relocation.is_some() {
        heap.objects_seen = Some(objects);
    }
    Ok(swizzle)
}

/// Writes slot `i` of the object at `obj` during relocation: a rewritten
/// root. The slot must exist; the error names the object and the slot.
fn set_root_slot(heap: &mut LoadedHeap, obj: NewAddr, i: u64, value: u64) -> Result<(), LoadError> {
    let word = heap.word();
    let n = heap.num_slots(obj).unwrap_or(0);
    if i >= n {
        return Err(bad_root(
            heap,
            obj.0,
            format!("has {n} slots; slot {i} cannot be rewritten"),
        ));
    }
    let at = NewAddr(obj.0 + 8 + i * word.bytes());
    let result = match word {
        WordSize::W64 => heap.write_u64(at, value),
        WordSize::W32 => {
            // A 32-bit slot is half of the u64 at its 8-byte-aligned word.
            let base = NewAddr(at.0 & !7);
            let shift = (at.0 & 4) * 8;
            match heap.read_u64(base) {
                Some(w) => {
                    let mask = 0xFFFF_FFFFu64 << shift;
                    heap.write_u64(base, (w & !mask) | ((value & 0xFFFF_FFFF) << shift))
                }
                None => Err(crate::heap::HeapAccessError::OutOfHeap { addr: at.0, len: 4 }),
            }
        }
    };
    result.map_err(|e| bad_root(heap, obj.0, format!("slot {i}: {e}")))
}

/// A relocation error about the root object at `addr`, with its segment and offset.
fn bad_root(heap: &LoadedHeap, addr: u64, what: String) -> LoadError {
    let (segment, offset) = heap
        .segment_of(NewAddr(addr))
        .map_or((0, 0), |i| (i, addr - heap.segments()[i].new_start.0));
    LoadError::Relocate(FormatError::BadObject {
        segment,
        offset,
        addr,
        what,
    })
}

/// After the object walk: the special objects oop, the object stacks in the
/// hidden roots and the free-list heads (§2.4, steps 1–4).
fn fix_roots(heap: &mut LoadedHeap, r: &Relocation) -> Result<(), LoadError> {
    let word = heap.word();
    heap.special_objects = NewAddr(r.apply(heap.header.special_objects_oop.0));
    let nil = heap.nil();
    // The 4th object: the free lists, a word object whose heads are raw addresses.
    let free_lists = NewAddr(nil.0 + 48);
    let fl = heap
        .header_at(free_lists)
        .ok_or_else(|| bad_root(heap, free_lists.0, "no free-lists object at nil+48".into()))?;
    if fl.class_index() == word.word_array_pun() && fl.format() == word.word_indexable_format() {
        let n = heap
            .num_slots(free_lists)
            .unwrap_or(0)
            .min(word.num_free_lists());
        for i in 0..n {
            let v = heap.slot(free_lists, i).unwrap_or(0);
            if v != 0 {
                set_root_slot(heap, free_lists, i, r.apply(v))?;
            }
        }
    }
    // The 5th object: the hidden roots, with the object stacks at 4096..4098.
    let Some(hidden) = heap.object_after(free_lists) else {
        return Err(bad_root(
            heap,
            free_lists.0,
            "no hidden-roots object after the free lists".into(),
        ));
    };
    let nil_oop = nil.0;
    for root in [
        MARK_STACK_ROOT_INDEX,
        WEAKLING_STACK_ROOT_INDEX,
        MOURN_QUEUE_ROOT_INDEX,
    ] {
        let Some(first) = heap.slot(hidden, root) else {
            continue;
        };
        if first == nil_oop {
            continue;
        }
        let is_page = |heap: &LoadedHeap, p: u64| {
            !word.is_immediate(p)
                && heap.header_at(NewAddr(p)).is_some_and(|h| {
                    h.class_index() == word.word_array_pun()
                        && h.format() == word.word_indexable_format()
                })
                && heap.num_slots(NewAddr(p)) == Some(OBJ_STACK_PAGE_SLOTS)
        };
        let limit = heap.heap_bytes() / (OBJ_STACK_PAGE_SLOTS * word.bytes()) + 1;
        let mut page = first;
        let mut pages = 0;
        while page != 0 {
            if !is_page(heap, page) || pages > limit {
                return Err(bad_root(
                    heap,
                    page,
                    format!("hidden root {root} leads here, which is not an object-stack page"),
                ));
            }
            pages += 1;
            let p = NewAddr(page);
            let top = heap.slot(p, OBJ_STACK_TOP).unwrap_or(0);
            let last = top
                .saturating_add(OBJ_STACK_NEXT)
                .min(OBJ_STACK_PAGE_SLOTS - 1);
            let mut field = 0;
            for i in (OBJ_STACK_NEXT..=last).rev() {
                field = heap.slot(p, i).unwrap_or(0);
                if field != 0 && !word.is_immediate(field) {
                    field = r.apply(field);
                    set_root_slot(heap, p, i, field)?;
                }
            }
            page = field;
        }
        let mut page = first;
        let mut pages = 0;
        while let Some(free) = heap.slot(NewAddr(page), OBJ_STACK_FREE).filter(|&f| f != 0) {
            let moved = r.apply(free);
            set_root_slot(heap, NewAddr(page), OBJ_STACK_FREE, moved)?;
            pages += 1;
            if !is_page(heap, moved) || pages > limit {
                return Err(bad_root(
                    heap,
                    moved,
                    format!("hidden root {root}: this free page link is not an object-stack page"),
                ));
            }
            page = moved;
        }
    }
    Ok(())
}
