//! The load pipeline: header, segment table, placement (where each segment
//! goes: [`crate::placement`]), streaming read, bridge repair or relocation.

use std::path::Path;
use std::time::{Duration, Instant};

use spur_format::raw::*;
use spur_format::read::header::HEADER_PROBE_BYTES;
use spur_format::read::segment::repair_bridge_in_memory;
use spur_format::read::walk::{plausible_run, step};
use spur_format::{
    FileSegment, FormatError, ImageHeader, Layout, NewAddr, OldAddr, SegmentTable, Swizzle,
    WordSize, L32, L64,
};
use spur_mem::{Backing, FilesUnchanged};

use crate::conv::{u64_of, usize_of, Micros};
use crate::error::LoadError;
use crate::heap::{LoadedHeap, Placement, Timings};
use crate::parallel::Threads;
use crate::placement::{self, PlacementRequest};
pub use crate::placement::{MIN_BASE, RELOCATION_BASE_64};
use crate::relocate::Relocation;
use crate::source::{ComposedSource, FileSource, ImageSource, InOneFile, SegmentReader};

/// How to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Where to place the heap: at its old addresses (the default) or elsewhere.
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
    /// Threads for loading: with two or more (the default, when the machine
    /// has them) a relocated segment of more than 8 MiB is read and
    /// rewritten in two halves, one per thread, and a segment loaded in
    /// place is read on the calling thread while a second faults in its
    /// pages. The heap, and the error of a broken one, are the same either way.
    pub threads: Threads,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            placement: PlacementRequest::OldBase,
            backing: Backing::HugePages,
            map_files: None,
            threads: Threads::default(),
        }
    }
}

/// Bytes read from the file between two relocation passes: small enough that
/// the chunk is still in cache when its objects are rewritten.
const CHUNK: usize = 2 << 20;

/// Bytes read and rewritten at a time when relocating: small enough that a
/// chunk is still in the core's L2 cache (2 MiB on the machines we measured
/// on, shared with the rest of the work) when its objects are rewritten.
const HOT_CHUNK: usize = 256 << 10;

/// How far into the second half of a segment a start for its walk is looked
/// for ([`read_split`]); past that, the first half's walk goes on alone.
const GUESS_SPAN: usize = 1 << 20;

/// How far the second half's walk goes over headers only from its guessed
/// start before it rewrites anything ([`second_half`]).
const PREFIX_BYTES: usize = 64 << 10;

/// Every class index there can be.
const ANY_CLASS: usize = usize_of(CLASS_INDEX_MASK) + 1;

/// The class indices a guessed object start may meet: those of the class
/// table's pages, as the hidden-roots object (the 5th object, §2.4) in the
/// first bytes of the first segment lists them (`nil` is nil's old address:
/// a slot that holds it has no page). Every index when those bytes do not
/// tell. A guess is only a hint ([`read_split`] checks it), so this needs
/// no more care than that; but without it, pointers into the heap read as
/// headers look like objects.
fn class_bound<L: Layout>(first: &[u8], nil: u64) -> usize {
    let mut pos = 0;
    for _ in 0..4 {
        match step::<L>(first, pos, first.len()) {
            Ok((_, next)) => pos = next,
            Err(_) => return ANY_CLASS,
        }
    }
    let Ok((hidden, _)) = step::<L>(first, pos, first.len()) else {
        return ANY_CLASS;
    };
    let pages = usize_of(hidden.num_slots.min(CLASS_TABLE_ROOT_SLOTS));
    (0..pages)
        .rev()
        .find(|&k| L::slot(first, hidden.offset, k) != nil)
        .map_or(ANY_CLASS, |k| (k + 1) * usize_of(CLASS_TABLE_PAGE_SLOTS))
}

/// Reads the header and follows the bridges, without loading anything.
pub fn read_layout<S: ImageSource + ?Sized>(
    src: &S,
) -> Result<(ImageHeader, SegmentTable), LoadError> {
    let n = usize_of(u64_of(HEADER_PROBE_BYTES).min(src.len()));
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
    let (plan, fallback) = {
        let _s = tracing::debug_span!("reserve").entered();
        placement::place(&header, &table, opts, reader)?
    };
    let t_reserve = t0.elapsed();
    let mut heap = LoadedHeap {
        // Until a relocation moves it, the array is where the file says.
        special_objects: Swizzle::IN_PLACE.apply(header.special_objects_oop),
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
        placement::place_perm_space(&mut heap, meta, file, opts)?;
    }
    let moved = heap.segments.iter().any(|s| !s.swizzle().is_identity());
    let coalesced = plan.coalesced;
    // §2.4: skip the swizzle only when nothing moved and nothing was coalesced
    // (a coalesced heap with one segment at its old base is the same thing).
    let relocation = (moved || (coalesced && heap.segments.len() > 1)).then(|| {
        let r = Relocation::new(
            heap.word(),
            heap.segments.iter().map(|s| (s.old_start, s.new_start)),
        );
        match heap.perm {
            Some(p) => r.with_perm_space(p.start, p.start + p.size),
            None => r,
        }
    });
    let t1 = Instant::now();
    let swizzle_time = {
        let _s = tracing::debug_span!("read").entered();
        let r = relocation.as_ref();
        match heap.word() {
            WordSize::W64 => read_segments::<L64, R>(reader, &table, &mut heap, r, opts.threads)?,
            WordSize::W32 => read_segments::<L32, R>(reader, &table, &mut heap, r, opts.threads)?,
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
        heap.timings.swizzle_us = (swizzle_time.busy + t2.elapsed()).micros();
    } else if !coalesced {
        for (i, s) in table.segments.iter().enumerate() {
            let seg = heap.segments[i];
            let bytes = &mut heap.regions[seg.region].bytes_mut()
                [seg.offset..seg.offset + usize_of(seg.size)];
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
    heap.timings.reserve_us = t_reserve.micros();
    heap.timings.read_us = t_read.saturating_sub(swizzle_time.exposed).micros();
    heap.timings.total_us = t0.elapsed().micros();
    tracing::debug!(?heap.timings, placement = heap.placement.name(), "loaded");
    Ok(heap)
}

/// Perm-space objects keep their addresses, but their pointers into old
/// space follow it when it moves.
fn relocate_perm_space<L: Layout>(heap: &mut LoadedHeap, r: &Relocation) -> Result<(), LoadError> {
    let p = heap.perm.expect("perm space");
    let bytes = &mut heap.regions[p.region].bytes_mut()[p.offset..p.offset + usize_of(p.size)];
    let mut cursor = 0;
    let len = bytes.len();
    r.advance::<L>(bytes, &mut cursor, len, len, usize::MAX, (0, p.start))
        .map_err(LoadError::Relocate)?;
    Ok(())
}

/// Time spent rewriting pointers while the segments were read.
#[derive(Debug, Clone, Copy, Default)]
struct SwizzleTime {
    /// The rewriting itself, on whichever thread did it.
    busy: Duration,
    /// The part of it the read had to wait for: all of it on one thread,
    /// only the tail after the last read when a second thread rewrites.
    exposed: Duration,
}

/// Streams each segment from the source into its place, rewriting pointers
/// chunk by chunk when relocating: on the calling thread between reads
/// ([`Threads::One`]), or in two halves on two threads ([`read_split`]).
fn read_segments<L: Layout, R: SegmentReader + ?Sized>(
    reader: &R,
    table: &SegmentTable,
    heap: &mut LoadedHeap,
    relocation: Option<&Relocation>,
    threads: Threads,
) -> Result<SwizzleTime, LoadError> {
    let mut time = SwizzleTime::default();
    let mut objects = 0u64;
    // Asked once: on Linux the answer reads the process's cgroup files.
    let two = threads.count() > 1;
    let classes = match (relocation, table.segments.first(), heap.segments.first()) {
        (Some(_), Some(fs), Some(seg)) if two && !seg.mapped => {
            // The first chunk is read again with the rest: it costs little.
            let bytes = &mut heap.regions[seg.region].bytes_mut()[seg.offset..];
            let n = HOT_CHUNK.min(usize_of(seg.size));
            reader.read_segment(fs, 0, &mut bytes[..n])?;
            class_bound::<L>(&bytes[..n], fs.old_start.get())
        }
        _ => ANY_CLASS,
    };
    for (i, fs) in table.segments.iter().enumerate() {
        let seg = heap.segments[i];
        if seg.mapped {
            continue;
        }
        let region = &mut heap.regions[seg.region];
        let bytes = &mut region.bytes_mut()[seg.offset..seg.offset + usize_of(seg.size)];
        let job = Segment {
            index: i,
            new_start: seg.new_start.get(),
            limit: bytes.len() - usize_of(BRIDGE_BYTES),
        };
        let cursor = match relocation {
            None if two && bytes.len() > 4 * CHUNK => {
                read_prefaulted(reader, fs, bytes)?;
                continue;
            }
            None => {
                read_plain(reader, fs, bytes)?;
                continue;
            }
            // A second thread pays only over several chunks.
            Some(r) if two && bytes.len() > 4 * CHUNK => {
                let split = Split { job, classes };
                read_split::<L, R>(reader, fs, bytes, r, &split, &mut time, &mut objects)?
            }
            Some(r) => {
                read_interleaved::<L, R>(reader, fs, bytes, r, &job, &mut time, &mut objects)?
            }
        };
        if cursor != job.limit {
            return Err(LoadError::Relocate(FormatError::BadObject {
                segment: i,
                offset: u64_of(cursor),
                addr: job.new_start + u64_of(cursor),
                what: "does not end where the segment's bridge begins".into(),
            }));
        }
    }
    if relocation.is_some() {
        heap.objects_seen = Some(objects);
    }
    Ok(time)
}

/// The segment being read: its index, new address and where its bridge
/// starts (offsets are from the segment's start).
#[derive(Clone, Copy)]
struct Segment {
    index: usize,
    new_start: u64,
    limit: usize,
}

/// Reads a segment that needs no rewriting, chunk by chunk.
fn read_plain<R: SegmentReader + ?Sized>(
    reader: &R,
    fs: &FileSegment,
    bytes: &mut [u8],
) -> Result<(), LoadError> {
    for (k, piece) in bytes.chunks_mut(CHUNK).enumerate() {
        reader.read_segment(fs, u64_of(k * CHUNK), piece)?;
    }
    Ok(())
}

/// Reads a segment that needs no rewriting while a second thread faults in
/// its pages from the end backwards ([`prefault_from_the_end`]), so that the
/// page clearing is shared between the two cores.
fn read_prefaulted<R: SegmentReader + ?Sized>(
    reader: &R,
    fs: &FileSegment,
    bytes: &mut [u8],
) -> Result<(), LoadError> {
    let (mut filler, mut filled) = spur_mem::handoff::handoff(bytes);
    std::thread::scope(|s| {
        s.spawn(move || prefault_from_the_end(&mut filled));
        while filler.remaining() > 0 {
            let at = u64_of(filler.frontier());
            filler.fill(CHUNK, |piece| reader.read_segment(fs, at, piece))?;
        }
        Ok(())
    })
}

/// Faults in the pages the filler has not reached, a chunk at a time from
/// the end of the buffer backwards, until the two meet. Fresh memory costs
/// its first write a page clear (and, on a virtual machine that hands free
/// memory back to its host, a fault in the host): done here, it overlaps
/// the other thread's reading instead of adding to it.
fn prefault_from_the_end(filled: &mut spur_mem::handoff::Filled<'_>) {
    let mut back = filled.len();
    while back > 0 {
        let lo = back.saturating_sub(CHUNK);
        if filled.published() + CHUNK >= lo {
            break;
        }
        if !filled.prefault(lo, back) {
            break;
        }
        back = lo;
    }
}

/// One thread: read a chunk, rewrite the objects it completes, repeat.
/// Returns where the rewriting stopped.
fn read_interleaved<L: Layout, R: SegmentReader + ?Sized>(
    reader: &R,
    fs: &FileSegment,
    bytes: &mut [u8],
    r: &Relocation,
    job: &Segment,
    time: &mut SwizzleTime,
    objects: &mut u64,
) -> Result<usize, LoadError> {
    let mut cursor = 0;
    let (n, busy) = read_and_rewrite::<L, R>(reader, fs, bytes, 0, &mut cursor, r, job)?;
    *objects += n;
    time.busy += busy;
    time.exposed += busy;
    Ok(cursor)
}

/// Reads `bytes[from..]` chunk by chunk ([`HOT_CHUNK`], on the segment's grid
/// of chunks), rewriting after each chunk the objects it completes, from
/// `*cursor` on. Every read chunk's objects are rewritten before the next
/// chunk is read, so an error is the first of the walk from `*cursor` or of
/// the reads, whichever a single pass over the segment meets first. Returns
/// the objects rewritten and the time spent rewriting.
fn read_and_rewrite<L: Layout, R: SegmentReader + ?Sized>(
    reader: &R,
    fs: &FileSegment,
    bytes: &mut [u8],
    from: usize,
    cursor: &mut usize,
    r: &Relocation,
    job: &Segment,
) -> Result<(u64, Duration), LoadError> {
    let end = bytes.len();
    let (mut n, mut busy) = (0, Duration::ZERO);
    let mut frontier = from;
    while frontier < end {
        let len = (HOT_CHUNK - frontier % HOT_CHUNK).min(end - frontier);
        reader.read_segment(fs, u64_of(frontier), &mut bytes[frontier..frontier + len])?;
        frontier += len;
        let t = Instant::now();
        n += r
            .advance::<L>(
                bytes,
                cursor,
                frontier,
                job.limit,
                job.index,
                (0, job.new_start),
            )
            .map_err(LoadError::Relocate)?;
        busy += t.elapsed();
    }
    Ok((n, busy))
}

/// A segment to relocate in two halves, and the class indices a guessed
/// start may meet ([`class_bound`]).
struct Split {
    job: Segment,
    classes: usize,
}

/// What the second thread of [`read_split`] did with the second half.
enum SecondHalf {
    /// It read the whole half and walked it without a fault from a guessed
    /// start to the segment's bridge, rewriting from `at` (from the half's
    /// start) on: the first start at least [`PREFIX_BYTES`] past the guess.
    Walked { at: usize, objects: u64 },
    /// It read the whole half and rewrote nothing: no start was found.
    Read,
    /// A read failed, or the walk from the guess did: the half's bytes are
    /// not to be trusted (some may be rewritten).
    Failed,
}

/// Two threads, each doing the whole work on half of the segment: this one
/// reads the first half chunk by chunk and rewrites each chunk's objects
/// while the chunk is in its cache; a second thread does the same with the
/// second half, from a guessed object start near its beginning (the first
/// place where [`plausible_run`] finds
/// [`GUESS_STEPS`](spur_format::read::walk::GUESS_STEPS) headers in a row
/// that look like objects). Both cores then clear their own fresh pages,
/// read and rewrite at once, with nothing handed from one to the other.
///
/// The second walk rewrites nothing over its first [`PREFIX_BYTES`]. Then
/// the first walk goes on from where it stopped to where the second began
/// rewriting. If it lands exactly there, the two walks are the one walk
/// from the segment's start. If it does not, or the second walk or one of its reads failed,
/// the second half is read again from the file (which has not changed)
/// and walked from where the first walk really is, as [`read_interleaved`]
/// would. So the heap, the object count and the first error are those of
/// the single-threaded load, whatever the guess.
fn read_split<L: Layout, R: SegmentReader + ?Sized>(
    reader: &R,
    fs: &FileSegment,
    bytes: &mut [u8],
    r: &Relocation,
    split: &Split,
    time: &mut SwizzleTime,
    objects: &mut u64,
) -> Result<usize, LoadError> {
    let job = &split.job;
    let mid = bytes.len() / 2 / HOT_CHUNK * HOT_CHUNK;
    let mut cursor = 0;
    let (first, second) = {
        let (front, back) = bytes.split_at_mut(mid);
        std::thread::scope(|s| {
            let second = s.spawn(|| second_half::<L, R>(reader, fs, back, mid, r, split));
            let first = read_and_rewrite::<L, R>(reader, fs, front, 0, &mut cursor, r, job);
            let second = second
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (first, second)
        })
    };
    let (n, busy) = first?;
    let (outcome, busy2) = second;
    time.busy += busy + busy2;
    time.exposed += busy.max(busy2);
    *objects += n;
    let t = Instant::now();
    // Where the bytes may differ from the file's, when they do.
    let reread = match outcome {
        SecondHalf::Walked { at, objects: n2 } => {
            // The first walk, up to the guess: it lands on it or passes it.
            let guess = mid + at;
            *objects += r
                .advance::<L>(
                    bytes,
                    &mut cursor,
                    guess,
                    job.limit,
                    job.index,
                    (0, job.new_start),
                )
                .map_err(LoadError::Relocate)?;
            if cursor == guess {
                tracing::debug!(segment = job.index, mid, guess, "split walk confirmed");
                cursor = job.limit;
                *objects += n2;
                None
            } else {
                // Only the second walk wrote at or past the guess.
                tracing::debug!(segment = job.index, mid, guess, cursor, "guess missed");
                Some(guess)
            }
        }
        // Nothing was rewritten past the middle: the first walk goes on over
        // the bytes as read.
        SecondHalf::Read => {
            tracing::debug!(segment = job.index, mid, "no start guessed");
            *objects += r
                .advance::<L>(
                    bytes,
                    &mut cursor,
                    bytes.len(),
                    job.limit,
                    job.index,
                    (0, job.new_start),
                )
                .map_err(LoadError::Relocate)?;
            None
        }
        SecondHalf::Failed => {
            tracing::debug!(segment = job.index, mid, "second half read again");
            Some(mid)
        }
    };
    let n = match reread {
        Some(from) => read_and_rewrite::<L, R>(reader, fs, bytes, from, &mut cursor, r, job)?.0,
        None => 0,
    };
    *objects += n;
    let d = t.elapsed();
    time.busy += d;
    time.exposed += d;
    Ok(cursor)
}

/// The second thread of [`read_split`]: reads `back` (the segment from
/// `mid`) chunk by chunk, looks for a start in its first [`GUESS_SPAN`]
/// bytes, and from there rewrites each chunk's objects once it is read.
/// Returns what it did and the time spent rewriting.
fn second_half<L: Layout, R: SegmentReader + ?Sized>(
    reader: &R,
    fs: &FileSegment,
    back: &mut [u8],
    mid: usize,
    r: &Relocation,
    split: &Split,
) -> (SecondHalf, Duration) {
    let job = &split.job;
    let end = back.len();
    let limit = job.limit - mid;
    let (mut frontier, mut searched) = (0, 0);
    // The guess, then the walk over headers only from it, then the start
    // where the rewriting begins.
    let (mut guess, mut walked, mut from) = (None, 0, None);
    let (mut cursor, mut n) = (0, 0);
    let mut busy = Duration::ZERO;
    while frontier < end {
        let len = HOT_CHUNK.min(end - frontier);
        let piece = &mut back[frontier..frontier + len];
        if reader
            .read_segment(fs, u64_of(mid + frontier), piece)
            .is_err()
        {
            return (SecondHalf::Failed, busy);
        }
        frontier += len;
        let t = Instant::now();
        if guess.is_none() && searched < GUESS_SPAN {
            // A run of headers must end within what is read, unless it
            // reaches the segment's bridge.
            let seen = frontier.min(limit);
            let to = seen.min(GUESS_SPAN);
            guess = (searched..to).step_by(8).find(|&p| {
                plausible_run::<L>(back, p, seen, split.classes)
                    .is_some_and(|e| e < seen || seen == limit)
            });
            searched = to;
            walked = guess.unwrap_or(0);
        }
        if let (Some(g), None) = (guess, from) {
            // A walk from inside an object may fall into step with the true
            // walk only after a few objects: the first PREFIX_BYTES are
            // walked without writing, so the first walk can go through them
            // on bytes as read and meet this one where the rewriting begins.
            while walked < limit && walked < g + PREFIX_BYTES && walked + 16 <= frontier {
                match step::<L>(back, walked, limit) {
                    Ok((_, next)) => walked = next,
                    Err(_) => return (SecondHalf::Failed, busy + t.elapsed()),
                }
            }
            if walked >= limit || walked >= g + PREFIX_BYTES {
                from = Some(walked);
                cursor = walked;
            }
        }
        if from.is_some() {
            // Errors are the first walk's to find: any fault sends the
            // half back to be read again.
            match r.advance::<L>(back, &mut cursor, frontier, limit, job.index, (0, 0)) {
                Ok(k) => n += k,
                Err(_) => return (SecondHalf::Failed, busy + t.elapsed()),
            }
        }
        busy += t.elapsed();
    }
    let outcome = match (guess, from) {
        (_, Some(at)) if cursor == limit => SecondHalf::Walked { at, objects: n },
        (Some(_), _) => SecondHalf::Failed,
        (None, _) => SecondHalf::Read,
    };
    (outcome, busy)
}

/// Writes slot `i` of the object at `obj` during relocation: a rewritten
/// root. The slot must exist; the error names the object and the slot.
fn set_root_slot(heap: &mut LoadedHeap, obj: NewAddr, i: u64, value: u64) -> Result<(), LoadError> {
    let word = heap.word();
    let n = heap.num_slots(obj).unwrap_or(0);
    if i >= n {
        return Err(bad_root(
            heap,
            obj.get(),
            format!("has {n} slots; slot {i} cannot be rewritten"),
        ));
    }
    let at = obj.plus(8 + i * word.bytes());
    let result = match word {
        WordSize::W64 => heap.write_u64(at, value),
        WordSize::W32 => {
            // A 32-bit slot is half of the u64 at its 8-byte-aligned word.
            let base = NewAddr::from_heap_word(at.get() & !7);
            let shift = (at.get() & 4) * 8;
            match heap.read_u64(base) {
                Some(w) => {
                    let mask = 0xFFFF_FFFFu64 << shift;
                    heap.write_u64(base, (w & !mask) | ((value & 0xFFFF_FFFF) << shift))
                }
                None => Err(crate::heap::HeapAccessError::OutOfHeap {
                    addr: at.get(),
                    len: 4,
                }),
            }
        }
    };
    result.map_err(|e| bad_root(heap, obj.get(), format!("slot {i}: {e}")))
}

/// A relocation error about the root object at `addr`, with its segment and offset.
fn bad_root(heap: &LoadedHeap, addr: u64, what: String) -> LoadError {
    let (segment, offset) = heap
        .segment_of(NewAddr::from_heap_word(addr))
        .map_or((0, 0), |i| (i, addr - heap.segments()[i].new_start.get()));
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
    heap.special_objects = r.map(heap.header.special_objects_oop);
    let nil = heap.nil();
    // The 4th object: the free lists, a word object whose heads are raw addresses.
    let free_lists = nil.plus(48);
    let fl = heap.header_at(free_lists).ok_or_else(|| {
        bad_root(
            heap,
            free_lists.get(),
            "no free-lists object at nil+48".into(),
        )
    })?;
    if fl.class_index() == word.word_array_pun() && fl.format() == word.word_indexable_format() {
        let n = heap
            .num_slots(free_lists)
            .unwrap_or(0)
            .min(word.num_free_lists());
        for i in 0..n {
            let v = heap.slot(free_lists, i).unwrap_or(0);
            if v != 0 {
                set_root_slot(heap, free_lists, i, r.map(OldAddr::new(v)).get())?;
            }
        }
    }
    // The 5th object: the hidden roots, with the object stacks at 4096..4098.
    let Some(hidden) = heap.object_after(free_lists) else {
        return Err(bad_root(
            heap,
            free_lists.get(),
            "no hidden-roots object after the free lists".into(),
        ));
    };
    let nil_oop = nil.get();
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
                && heap.header_at(NewAddr::from_heap_word(p)).is_some_and(|h| {
                    h.class_index() == word.word_array_pun()
                        && h.format() == word.word_indexable_format()
                })
                && heap.num_slots(NewAddr::from_heap_word(p)) == Some(OBJ_STACK_PAGE_SLOTS)
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
            let p = NewAddr::from_heap_word(page);
            let top = heap.slot(p, OBJ_STACK_TOP).unwrap_or(0);
            let last = top
                .saturating_add(OBJ_STACK_NEXT)
                .min(OBJ_STACK_PAGE_SLOTS - 1);
            let mut field = 0;
            for i in (OBJ_STACK_NEXT..=last).rev() {
                field = heap.slot(p, i).unwrap_or(0);
                if field != 0 && !word.is_immediate(field) {
                    field = r.map(OldAddr::new(field)).get();
                    set_root_slot(heap, p, i, field)?;
                }
            }
            page = field;
        }
        let mut page = first;
        let mut pages = 0;
        while let Some(free) = heap
            .slot(NewAddr::from_heap_word(page), OBJ_STACK_FREE)
            .filter(|&f| f != 0)
        {
            let moved = r.map(OldAddr::new(free)).get();
            set_root_slot(heap, NewAddr::from_heap_word(page), OBJ_STACK_FREE, moved)?;
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
