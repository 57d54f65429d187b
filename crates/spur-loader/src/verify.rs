//! The heap verifier: the checks of §8 of the format notes (`docs/format.md`), run over a
//! loaded heap, reporting every finding rather than stopping at the first.

use spur_format::raw::*;
use spur_format::{Layout, NewAddr, ObjHeader, Walk, WordSize, L32, L64};

use crate::conv::{u64_of, usize_of};
use crate::heap::LoadedHeap;
use crate::parallel::Threads;

/// What kind of problem a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FindingKind {
    /// The segment walk or a bridge is broken.
    Segment,
    /// nil, false, true, the free lists or the hidden roots are not where they must be.
    FirstObjects,
    /// The special objects array or the classes the VM checks at load.
    SpecialObjects,
    /// The class table: pages, hashes, unknown class indices.
    ClassTable,
    /// A pointer that lands outside the heap, inside an object, on a free chunk or a bridge.
    Pointer,
    /// A forwarder, which a saved image never holds.
    Forwarder,
    /// Free lists and free chunks.
    FreeSpace,
    /// A CompiledMethod whose header or literal count is wrong.
    Method,
    /// The mark, weakling or mourn stacks of the hidden roots.
    ObjStack,
    /// Header bits a snapshot leaves clear.
    HeaderBits,
    /// An object of a reserved format (6 or 8).
    ObjectFormat,
}

impl FindingKind {
    /// The name scripts see.
    pub const fn name(self) -> &'static str {
        match self {
            FindingKind::Segment => "segment",
            FindingKind::FirstObjects => "first-objects",
            FindingKind::SpecialObjects => "special-objects",
            FindingKind::ClassTable => "class-table",
            FindingKind::Pointer => "pointer",
            FindingKind::Forwarder => "forwarder",
            FindingKind::FreeSpace => "free-space",
            FindingKind::Method => "method",
            FindingKind::ObjStack => "obj-stack",
            FindingKind::HeaderBits => "header-bits",
            FindingKind::ObjectFormat => "object-format",
        }
    }
}

/// One problem found, with the address of the object (or slot) concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Which check found it.
    pub kind: FindingKind,
    /// Address of the object, slot or segment concerned, in this process.
    pub addr: u64,
    /// What is wrong, in words, with the numbers involved.
    pub what: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}: {}", self.addr, self.what)
    }
}

/// The verifier's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Entities walked: objects, free chunks and hidden objects; bridges excluded.
    pub objects: u64,
    /// Free chunks walked.
    pub free_chunks: u64,
    /// Bytes of those free chunks, headers included.
    pub free_bytes: u64,
    /// Non-nil class-table entries.
    pub classes: u64,
    /// Used class-table pages.
    pub class_table_pages: u64,
    /// Problems that make the heap unfit to run.
    pub errors: Vec<Finding>,
    /// Oddities a VM tolerates (e.g. header bits a snapshot normally clears).
    pub warnings: Vec<Finding>,
    /// Findings beyond the first [`MAX_FINDINGS`] of each list are counted here only.
    pub errors_dropped: u64,
    /// Warnings beyond the first [`MAX_FINDINGS`], counted only.
    pub warnings_dropped: u64,
}

impl Report {
    /// Is the heap intact (no errors)?
    pub fn ok(&self) -> bool {
        self.errors.is_empty() && self.errors_dropped == 0
    }
}

/// How many findings of each list a report keeps.
pub const MAX_FINDINGS: usize = 200;

/// Verifies a loaded heap, on as many threads as the machine offers.
pub fn verify(heap: &LoadedHeap) -> Report {
    verify_with(heap, Threads::Available)
}

/// Verifies a loaded heap on at most `threads` threads. The report is the
/// same whatever the number.
pub fn verify_with(heap: &LoadedHeap, threads: Threads) -> Report {
    verify_in_windows(heap, threads, WINDOW_BYTES)
}

/// How much of the heap the record of live object starts covers at a time
/// by default: 4 GiB (a 32 MiB block bitmap, 6 MiB of counts and a bit per
/// live object), so a heap of up to 4 GiB is checked in one window.
pub const WINDOW_BYTES: u64 = 4 << 30;

/// [`verify_with`], its record of live object starts covering at most
/// `window_bytes` of the heap at a time (rounded up to 512 bytes), and at
/// most one live object per 32 bytes of window (see
/// [`verify_in_windows_of`]). A larger heap's pointers are checked in as
/// many passes, one per window of addresses they may point to, so the
/// verifier's memory stays under `window_bytes / 64` (a bitmap, for
/// windows of up to [`BITMAP_UP_TO`]) or `window_bytes / 75` (the compact
/// record) whatever the heap's size. The report is the same whatever the
/// window.
pub fn verify_in_windows(heap: &LoadedHeap, threads: Threads, window_bytes: u64) -> Report {
    let heap_bytes: u64 = heap.segments().iter().map(|s| s.size).sum::<u64>()
        + heap.perm_space().map_or(0, |p| p.size);
    let record = if window_bytes.min(heap_bytes) <= BITMAP_UP_TO {
        LiveRecord::Bitmap
    } else {
        LiveRecord::Compact
    };
    verify_in_windows_of(heap, threads, window_bytes, window_bytes / 32, record)
}

/// How `verify` records the live object starts of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveRecord {
    /// A bit per 8 bytes: a window's bytes / 64. Fastest while it stays
    /// in cache, for windows of up to [`BITMAP_UP_TO`].
    Bitmap,
    /// A bit per 16-byte block, a bit per start for the half of its block
    /// it is in, and counts every 512 blocks: a window's bytes / 108 plus
    /// a bit per object. Fewer cache misses on larger windows.
    Compact,
}

/// The largest window [`verify_in_windows`] records as a [`LiveRecord::Bitmap`]:
/// 1 GiB (a 16 MiB bitmap).
pub const BITMAP_UP_TO: u64 = 1 << 30;

/// [`verify_in_windows`] with a window ending early, at the object that
/// would be its `window_objects + 1`-th live one (at least one per window),
/// the starts recorded as `record` says. The report is the same whatever
/// the limits and the record.
pub fn verify_in_windows_of(
    heap: &LoadedHeap,
    threads: Threads,
    window_bytes: u64,
    window_objects: u64,
    record: LiveRecord,
) -> Report {
    let _s = tracing::debug_span!("verify").entered();
    let n = threads.count();
    let window_bits = usize_of(window_bytes.div_ceil(512).max(1) * 64);
    // `Starts` counts in u32.
    let cap = usize_of(window_objects.clamp(1, u64::from(u32::MAX)));
    match (heap.word(), record) {
        (WordSize::W64, LiveRecord::Compact) => {
            Verifier::<L64, Starts>::new(heap, n, window_bits, cap).run()
        }
        (WordSize::W32, LiveRecord::Compact) => {
            Verifier::<L32, Starts>::new(heap, n, window_bits, cap).run()
        }
        (WordSize::W64, LiveRecord::Bitmap) => {
            Verifier::<L64, Bitmap>::new(heap, n, window_bits, cap).run()
        }
        (WordSize::W32, LiveRecord::Bitmap) => {
            Verifier::<L32, Bitmap>::new(heap, n, window_bits, cap).run()
        }
    }
}

/// A record of the live object starts of a window, by unit (8 bytes) of it.
trait Live: Sync {
    /// Room for `bits` units and at most `cap` starts.
    fn with_room(bits: usize, cap: usize) -> Self;
    /// Forgets every start.
    fn clear(&mut self);
    /// Records a start at unit `i`, above every unit recorded so far; false
    /// (and nothing recorded) when the starts already number `cap`.
    fn push(&mut self, i: usize) -> bool;
    /// Call once all are pushed, before `get`.
    fn seal(&mut self);
    /// Is a start recorded at unit `i`?
    fn get(&self, i: usize) -> bool;
    /// Asks for the memory `get(i)` reads most.
    fn prefetch(&self, i: usize);
}

/// One bit per 8-byte unit of (a window of) the heap.
struct Bitmap {
    words: Vec<u64>,
    /// Starts recorded, and how many it may hold (as a [`Live`]).
    count: usize,
    cap: usize,
}

impl Live for Bitmap {
    fn with_room(bits: usize, cap: usize) -> Self {
        Bitmap {
            cap,
            ..Bitmap::new(bits)
        }
    }
    fn clear(&mut self) {
        self.words.fill(0);
        self.count = 0;
    }
    #[inline(always)]
    fn push(&mut self, i: usize) -> bool {
        if self.count == self.cap {
            return false;
        }
        self.set(i);
        self.count += 1;
        true
    }
    fn seal(&mut self) {}
    #[inline(always)]
    fn get(&self, i: usize) -> bool {
        self.words
            .get(i >> 6)
            .is_some_and(|w| w >> (i & 63) & 1 == 1)
    }
    #[inline(always)]
    fn prefetch(&self, i: usize) {
        if let Some(w) = self.words.get(i >> 6) {
            spur_mem::hint::prefetch(w);
        }
    }
}

impl Bitmap {
    fn new(bits: usize) -> Self {
        Bitmap {
            words: vec![0; bits.div_ceil(64)],
            count: 0,
            cap: usize::MAX,
        }
    }
    #[inline(always)]
    fn set(&mut self, i: usize) {
        self.words[i >> 6] |= 1 << (i & 63);
    }
    #[inline(always)]
    fn get(&self, i: usize) -> bool {
        self.words[i >> 6] >> (i & 63) & 1 == 1
    }
}

/// The live object starts of a window of the heap, in about half the
/// memory of one bit per 8 bytes. Two object starts are at least 16 bytes
/// apart (the smallest object is a header and one word), so a 16-byte
/// block holds at most one: one bit per block says whether it holds one,
/// and for each block that does, in order, one more bit says whether the
/// start is the block's second word. A count of the starts below every
/// 512 blocks finds a block's place in that second list.
struct Starts {
    /// One bit per 16-byte block.
    blocks: Vec<u64>,
    /// For each run of [`RUN_WORDS`] words of `blocks`: the starts below
    /// it, then (in the next two, as one 64-bit number) for each of its
    /// words but the first, 9 bits counting the starts of the run's words
    /// before that one. Filled in by [`seal`](Self::seal).
    below: Vec<[u32; 3]>,
    /// For the n-th start, bit n: set when it is the second word of its block.
    odd: Vec<u64>,
    /// Starts recorded.
    count: usize,
    /// How many starts `odd` may hold.
    cap: usize,
}

impl Live for Starts {
    fn with_room(bits: usize, cap: usize) -> Self {
        Starts::new(bits, cap)
    }
    fn clear(&mut self) {
        Starts::clear(self);
    }
    #[inline(always)]
    fn push(&mut self, i: usize) -> bool {
        Starts::push(self, i)
    }
    fn seal(&mut self) {
        Starts::seal(self);
    }
    #[inline(always)]
    fn get(&self, i: usize) -> bool {
        Starts::get(self, i)
    }
    #[inline(always)]
    fn prefetch(&self, i: usize) {
        self.prefetch_block(i);
    }
}

/// Words of [`Starts::blocks`] per count of [`Starts::below`]: one cache line.
const RUN_WORDS: usize = 8;

impl Starts {
    /// Room for `bits` 8-byte units and at most `cap` starts.
    fn new(bits: usize, cap: usize) -> Self {
        let words = bits.div_ceil(128);
        Starts {
            blocks: vec![0; words],
            below: vec![[0; 3]; words.div_ceil(RUN_WORDS)],
            odd: Vec::new(),
            count: 0,
            cap,
        }
    }

    /// Forgets every start.
    fn clear(&mut self) {
        self.blocks.fill(0);
        self.odd.clear();
        self.count = 0;
    }

    /// Records a start at unit `i`, above every unit recorded so far; false
    /// (and nothing recorded) when the starts already number `cap`.
    #[inline(always)]
    fn push(&mut self, i: usize) -> bool {
        if self.count == self.cap {
            return false;
        }
        let k = i >> 1;
        debug_assert!(
            self.blocks[k >> 6] >> (k & 63) & 1 == 0,
            "two starts in a block"
        );
        self.blocks[k >> 6] |= 1 << (k & 63);
        let n = self.count;
        if n & 63 == 0 {
            self.odd.push(0);
        }
        self.odd[n >> 6] |= ((i & 1) as u64) << (n & 63);
        self.count += 1;
        true
    }

    /// Counts the starts below each run of blocks; call once all are pushed.
    fn seal(&mut self) {
        let mut n = 0u32;
        for (r, run) in self.blocks.chunks(RUN_WORDS).enumerate() {
            let mut part = 0u64;
            let mut c = 0u32;
            for (t, w) in run.iter().enumerate() {
                if t > 0 {
                    part |= u64::from(c) << (9 * (t - 1));
                }
                c += w.count_ones();
            }
            #[allow(clippy::cast_possible_truncation)]
            let (lo, hi) = (part as u32, (part >> 32) as u32);
            self.below[r] = [n, lo, hi];
            // At most 512 per run, and `count` fits a u32 (see `new`'s callers).
            n += c;
        }
    }

    /// Is a start recorded at unit `i`? (After [`seal`](Self::seal).)
    #[inline(always)]
    fn get(&self, i: usize) -> bool {
        self.rank(i).is_some_and(|n| self.is_at(n, i))
    }

    /// Asks for the memory [`rank`](Self::rank) of unit `i` reads.
    #[inline(always)]
    fn prefetch_block(&self, i: usize) {
        let wi = i >> 7;
        if let Some(w) = self.blocks.get(wi) {
            spur_mem::hint::prefetch(w);
            spur_mem::hint::prefetch(&self.below[wi / RUN_WORDS]);
        }
    }

    /// When unit `i`'s block holds a start, how many starts lie below it.
    #[inline(always)]
    fn rank(&self, i: usize) -> Option<usize> {
        let k = i >> 1;
        let wi = k >> 6;
        let &w = self.blocks.get(wi)?;
        if w >> (k & 63) & 1 == 0 {
            return None;
        }
        let [base, lo, hi] = self.below[wi / RUN_WORDS];
        let t = wi % RUN_WORDS;
        let before = if t == 0 {
            0
        } else {
            (u64::from(lo) | u64::from(hi) << 32) >> (9 * (t - 1)) & 511
        };
        Some(
            base as usize + usize_of(before) + (w & ((1u64 << (k & 63)) - 1)).count_ones() as usize,
        )
    }

    /// Is the `n`-th start (one in unit `i`'s block) at unit `i`?
    #[inline(always)]
    fn is_at(&self, n: usize, i: usize) -> bool {
        self.odd
            .get(n >> 6)
            .is_some_and(|w| (w >> (n & 63) & 1) as usize == i & 1)
    }
}

/// A pointer met by the pointer walk, waiting in a [`BATCH`] for its check.
#[derive(Clone, Copy, Default)]
struct Pending {
    /// Its unit in the window, or [`OUTSIDE`].
    unit: usize,
    /// Where the object holding it lies in the piece's bytes, and the slot.
    obj: usize,
    slot: usize,
}

/// Stands for a pointer into no segment.
const OUTSIDE: usize = usize::MAX;

/// How many pointers the walk gathers before checking them: enough that the
/// memory of the first is in cache when the last is asked for.
const BATCH: usize = 256;

/// Where the free chunks' headers are, as bit indices like the live
/// bitmap's. A saved image holds few free chunks, so they are listed in
/// heap order; a heap with so many that the list would outgrow half a
/// bitmap gets a bitmap instead. Either way one bitmap of the heap's size
/// (the live one) is the most `verify` keeps for long.
enum FreeStarts {
    /// Increasing bit indices.
    List(Vec<usize>),
    Bits(Bitmap),
}

impl FreeStarts {
    /// Records a free chunk at bit `i`, which is above every bit recorded so
    /// far; `bits` is the size of the live bitmap.
    fn push(&mut self, i: usize, bits: usize) {
        match self {
            FreeStarts::List(list) => {
                if list.len() < bits / 128 + 1024 {
                    list.push(i);
                    return;
                }
                let mut map = Bitmap::new(bits);
                for &j in list.iter() {
                    map.set(j);
                }
                map.set(i);
                *self = FreeStarts::Bits(map);
            }
            FreeStarts::Bits(map) => map.set(i),
        }
    }

    fn contains(&self, i: usize) -> bool {
        match self {
            FreeStarts::List(list) => list.binary_search(&i).is_ok(),
            FreeStarts::Bits(map) => map.get(i),
        }
    }
}

struct Verifier<'h, L: Layout, R: Live> {
    heap: &'h LoadedHeap,
    word: WordSize,
    /// First bit of each segment in the live bitmap (and the free starts).
    bit_base: Vec<usize>,
    /// Headers of live objects (not free chunks, bridges or forwarders)
    /// among the window's bits: unit `i` of `live` is the heap's bit
    /// `window + i`.
    live: R,
    /// The first heap bit of the window `live` holds now.
    window: usize,
    /// The heap bit where that window ends: `window + window_bits`, the
    /// heap's end, or the first live object that found `live` full.
    window_end: usize,
    /// Still recording the window's starts (not yet full).
    marking: bool,
    /// How many heap bits a window covers at most.
    window_bits: usize,
    /// Address ranges of the segments' objects and perm space, by address,
    /// each with its first bit.
    ranges: Vec<(u64, u64, usize)>,
    /// The addresses whose liveness the checks after the pointer walk ask
    /// for (class-table entries, the special objects, object-stack pages),
    /// increasing, and the answers, filled in window by window.
    queries: Vec<u64>,
    answers: Vec<bool>,
    /// Headers of free chunks.
    free: FreeStarts,
    /// Bits in the live bitmap.
    bits: usize,
    /// Forwarders seen: count and first address.
    forwarders: (u64, u64),
    /// Objects with the remembered or grey bit: count and first address.
    odd_bits: (u64, u64),
    /// Class-table entries by index (nil where unused).
    classes: Vec<u64>,
    nil: u64,
    report: Report,
    /// Per segment (perm space last): object starts about [`SPLIT`] bytes
    /// apart, where a walk of the pointers may begin.
    splits: Vec<Vec<usize>>,
    threads: usize,
    _l: std::marker::PhantomData<L>,
}

/// A pointer finding with the object's address and the slot, by which the
/// findings of several windows are put in heap order.
type Keyed = (u64, usize, Finding);

/// Bytes between the places where the pointer walk may be split.
const SPLIT: usize = 8 << 20;

/// A stretch of one segment (or perm space) for the pointer walk: objects
/// from offset `from` (an object start) up to `to`, `limit` being where the
/// segment's objects end.
struct Piece<'h> {
    bytes: &'h [u8],
    start: u64,
    base: usize,
    from: usize,
    to: usize,
    limit: usize,
}

impl<'h, L: Layout, R: Live> Verifier<'h, L, R> {
    fn new(heap: &'h LoadedHeap, threads: usize, window_bits: usize, cap: usize) -> Self {
        let mut bit_base = Vec::with_capacity(heap.segments().len() + 1);
        let mut bits = 0usize;
        for s in heap.segments() {
            bit_base.push(bits);
            bits += (s.size / 8) as usize;
        }
        // Perm space's bits come last.
        bit_base.push(bits);
        bits += heap.perm_space().map_or(0, |p| (p.size / 8) as usize);
        let mut ranges: Vec<(u64, u64, usize)> = heap
            .segments()
            .iter()
            .zip(&bit_base)
            .map(|(s, &b)| (s.new_start.get(), s.objects_end().get(), b))
            .collect();
        if let Some(p) = heap.perm_space() {
            ranges.push((p.start, p.start + p.size, bit_base[heap.segments().len()]));
        }
        ranges.sort_unstable();
        let in_window = bits.min(window_bits);
        Verifier {
            heap,
            word: heap.word(),
            bit_base,
            live: R::with_room(in_window, cap.min(in_window / 2 + 1)),
            window: 0,
            window_end: in_window,
            marking: true,
            window_bits,
            ranges,
            queries: Vec::new(),
            answers: Vec::new(),
            free: FreeStarts::List(Vec::new()),
            bits,
            forwarders: (0, 0),
            odd_bits: (0, 0),
            classes: Vec::new(),
            nil: heap.nil().get(),
            report: Report::default(),
            splits: vec![Vec::new(); heap.segments().len() + 1],
            threads,
            _l: std::marker::PhantomData,
        }
    }

    fn error(&mut self, kind: FindingKind, addr: u64, what: impl Into<String>) {
        if self.report.errors.len() < MAX_FINDINGS {
            self.report.errors.push(Finding {
                kind,
                addr,
                what: what.into(),
            });
        } else {
            self.report.errors_dropped += 1;
        }
    }

    fn warning(&mut self, kind: FindingKind, addr: u64, what: impl Into<String>) {
        if self.report.warnings.len() < MAX_FINDINGS {
            self.report.warnings.push(Finding {
                kind,
                addr,
                what: what.into(),
            });
        } else {
            self.report.warnings_dropped += 1;
        }
    }

    /// The bit of address `a`, if `a` is 8-aligned and among a segment's
    /// objects or in perm space.
    #[inline(always)]
    fn bit(&self, a: u64) -> Option<usize> {
        if a & 7 != 0 {
            return None;
        }
        let r = &self.ranges;
        // Most heaps have one segment.
        if let Some(&(lo, hi, b)) = r.first() {
            if a.wrapping_sub(lo) < hi - lo {
                return Some(b + ((a - lo) >> 3) as usize);
            }
        }
        let k = if r.len() <= 4 {
            r.iter().position(|&(lo, hi, _)| a >= lo && a < hi)?
        } else {
            let k = r.partition_point(|x| x.0 <= a).checked_sub(1)?;
            if a >= r[k].1 {
                return None;
            }
            k
        };
        Some(r[k].2 + ((a - r[k].0) >> 3) as usize)
    }

    /// Is a live object's header at heap bit `b`? `None` when `b` lies
    /// outside the window `live` holds now.
    #[inline(always)]
    fn live_in_window(&self, b: usize) -> Option<bool> {
        (b >= self.window && b < self.window_end).then(|| self.live.get(b - self.window))
    }

    /// Records a live object at heap bit `b` if it falls in the window being
    /// marked; the first one that finds `live` full ends the window.
    #[inline(always)]
    fn mark(&mut self, b: usize) {
        if !self.marking || b < self.window || b >= self.window_end {
            return;
        }
        if !self.live.push(b - self.window) {
            self.marking = false;
            self.window_end = b;
        }
    }

    /// Is a live object's header at `a`, one of the [`queries`](Self::queries)?
    fn is_live(&self, a: u64) -> bool {
        match self.queries.binary_search(&a) {
            Ok(k) => self.answers[k],
            Err(_) => {
                debug_assert!(false, "{a:#x} was not among the queries");
                false
            }
        }
    }

    /// Collects the addresses [`is_live`](Self::is_live) will be asked about.
    fn gather_queries(&mut self) {
        let heap = self.heap;
        let mut q = self.classes.clone();
        q.push(heap.special_objects().get());
        let fl = NewAddr::from_heap_word(self.nil + 48);
        if let Some(hidden) = heap.object_after(fl) {
            for root in [
                MARK_STACK_ROOT_INDEX,
                WEAKLING_STACK_ROOT_INDEX,
                MOURN_QUEUE_ROOT_INDEX,
            ] {
                if let Some(page) = heap.slot(hidden, root) {
                    q.push(page);
                }
            }
        }
        q.sort_unstable();
        q.dedup();
        self.answers = vec![false; q.len()];
        self.queries = q;
    }

    /// Answers the queries that fall in the window the bitmap holds now.
    fn answer_queries(&mut self) {
        for k in 0..self.queries.len() {
            if let Some(live) = self
                .bit(self.queries[k])
                .and_then(|b| self.live_in_window(b))
            {
                self.answers[k] = live;
            }
        }
    }

    fn is_free(&self, a: u64) -> bool {
        self.bit(a).is_some_and(|b| self.free.contains(b))
    }

    fn run(mut self) -> Report {
        self.first_objects();
        self.gather_queries();
        self.walk();
        self.live.seal();
        self.answer_queries();
        // The checks below give the cap room for at most this many more errors.
        let cap = MAX_FINDINGS.saturating_sub(self.report.errors.len());
        let pointer_findings = self.pointers(cap);
        if self.forwarders.0 > 0 {
            // OpenSmalltalk and SqueakJS load such images: forwarders are followed
            // lazily, so they are reported, and pointers to them are errors.
            self.warning(
                FindingKind::Forwarder,
                self.forwarders.1,
                format!(
                    "{} forwarders in the heap (first here); a snapshot after a full GC holds none",
                    self.forwarders.0
                ),
            );
        }
        if self.odd_bits.0 > 0 {
            self.warning(
                FindingKind::HeaderBits,
                self.odd_bits.1,
                format!(
                    "{} objects with the remembered or grey bit set (first here); a snapshot leaves them clear",
                    self.odd_bits.0
                ),
            );
        }
        self.check_class_table();
        for (found, dropped) in pointer_findings {
            for f in found {
                if self.report.errors.len() < MAX_FINDINGS {
                    self.report.errors.push(f);
                } else {
                    self.report.errors_dropped += 1;
                }
            }
            self.report.errors_dropped += dropped;
        }
        self.special_objects();
        self.free_lists();
        self.obj_stacks();
        self.report
    }

    /// nil, false, true, the free lists and the hidden roots (§4.1), and the
    /// class table read from the hidden roots (§4.2).
    fn first_objects(&mut self) {
        let heap = self.heap;
        let nil = heap.nil();
        for (i, name) in ["nil", "false", "true"].into_iter().enumerate() {
            let a = NewAddr::from_heap_word(nil.get() + 16 * i as u64);
            match heap.header_at(a) {
                Some(h) if h.format() == FMT_ZERO_SIZED && h.raw_num_slots() == 0 => {}
                Some(h) => self.error(
                    FindingKind::FirstObjects,
                    a.get(),
                    format!("{name} must be a 0-slot format-0 object, found {h:?}"),
                ),
                None => self.error(
                    FindingKind::FirstObjects,
                    a.get(),
                    format!("no {name} object"),
                ),
            }
        }
        let fl = NewAddr::from_heap_word(nil.get() + 48);
        let want = (
            self.word.word_array_pun(),
            self.word.word_indexable_format(),
            self.word.num_free_lists(),
        );
        match heap.header_at(fl) {
            Some(h) if (h.class_index(), h.format(), heap.num_slots(fl).unwrap_or(0)) == want => {}
            other => self.error(
                FindingKind::FirstObjects,
                fl.get(),
                format!(
                    "the 4th object must be the free lists (class {}, format {}, {} slots), found {other:?}",
                    want.0, want.1, want.2
                ),
            ),
        }
        let Some(hidden) = heap.object_after(fl) else {
            self.error(
                FindingKind::FirstObjects,
                fl.get(),
                "no 5th object (hidden roots)",
            );
            return;
        };
        let h = heap.header_at(hidden).unwrap_or(ObjHeader(0));
        let n = heap.num_slots(hidden).unwrap_or(0);
        if h.class_index() != CLASS_ARRAY_PUN
            || h.format() != FMT_INDEXABLE
            || n != HIDDEN_ROOTS_SLOTS
        {
            self.error(
                FindingKind::FirstObjects,
                hidden.get(),
                format!(
                    "the 5th object must be the hidden roots (class 16, format 2, {HIDDEN_ROOTS_SLOTS} slots), found {h:?} with {n} slots"
                ),
            );
            return;
        }
        // Class-table pages: a run of 1024-slot pages, then nil.
        let mut pages = 0u64;
        let mut ended = false;
        for p in 0..CLASS_TABLE_ROOT_SLOTS {
            let page = heap.slot(hidden, p).unwrap_or(self.nil);
            if page == self.nil {
                ended = true;
                continue;
            }
            let ph = heap.header_at(NewAddr::from_heap_word(page));
            let ok = ph
                .is_some_and(|h| h.class_index() == CLASS_ARRAY_PUN && h.format() == FMT_INDEXABLE)
                && heap.num_slots(NewAddr::from_heap_word(page)) == Some(CLASS_TABLE_PAGE_SLOTS);
            if ended || !ok {
                self.error(
                    FindingKind::ClassTable,
                    page,
                    format!(
                        "class-table root slot {p} holds {page:#x}, which is not a class-table page following the used pages"
                    ),
                );
                continue;
            }
            pages += 1;
            self.classes
                .resize(usize_of((p + 1) * CLASS_TABLE_PAGE_SLOTS), self.nil);
            for j in 0..CLASS_TABLE_PAGE_SLOTS {
                self.classes[usize_of(p * CLASS_TABLE_PAGE_SLOTS + j)] = heap
                    .slot(NewAddr::from_heap_word(page), j)
                    .unwrap_or(self.nil);
            }
        }
        self.report.class_table_pages = pages;
        if pages == 0 {
            self.error(
                FindingKind::ClassTable,
                hidden.get(),
                "the class table has no pages",
            );
        }
    }

    /// Walks every segment: counts, marks object starts, and checks what can
    /// be checked object by object.
    fn walk(&mut self) {
        let heap = self.heap;
        let segs = heap.segments();
        for (i, s) in segs.iter().enumerate() {
            let bytes = heap.segment_bytes(i);
            let base = self.bit_base[i];
            let mut w = Walk::<L>::new(bytes, s.new_start.get(), i);
            let mut next_split = SPLIT;
            for obj in w.by_ref() {
                if obj.start() >= next_split {
                    self.splits[i].push(obj.start());
                    next_split = obj.start() + SPLIT;
                }
                self.report.objects += 1;
                let h = obj.header;
                let addr = s.new_start.get() + obj.offset as u64;
                let bit = base + (obj.offset >> 3);
                if h.is_free_chunk() {
                    self.free.push(bit, self.bits);
                    self.report.free_chunks += 1;
                    self.report.free_bytes += self.word.body_bytes(obj.num_slots).unwrap_or(0)
                        + if obj.has_overflow() { 8 } else { 0 };
                    continue;
                }
                if h.is_bridge() {
                    self.error(
                        FindingKind::Segment,
                        addr,
                        "a bridge in the middle of a segment",
                    );
                    continue;
                }
                if !h.is_forwarder() {
                    self.mark(bit);
                }
                self.object(addr, h, &obj, bytes);
            }
            let end = w.position();
            if let Err(e) = w.finish() {
                self.error(
                    FindingKind::Segment,
                    s.new_start.get() + end as u64,
                    e.to_string(),
                );
            }
            self.bridge(i);
        }
        if let (Some(p), Some(bytes)) = (heap.perm_space(), heap.perm_bytes()) {
            let base = self.bit_base[segs.len()];
            let mut w = Walk::<L>::without_bridge(bytes, p.start, segs.len());
            let mut next_split = SPLIT;
            for obj in w.by_ref() {
                if obj.start() >= next_split {
                    self.splits[segs.len()].push(obj.start());
                    next_split = obj.start() + SPLIT;
                }
                self.report.objects += 1;
                let h = obj.header;
                let addr = p.start + obj.offset as u64;
                if h.is_free_chunk() || h.is_bridge() {
                    self.error(
                        FindingKind::Segment,
                        addr,
                        "perm space holds a free chunk or a bridge",
                    );
                    continue;
                }
                let bit = base + (obj.offset >> 3);
                if !h.is_forwarder() {
                    self.mark(bit);
                }
                self.object(addr, h, &obj, bytes);
            }
            let end = w.position();
            if let Err(e) = w.finish() {
                self.error(
                    FindingKind::Segment,
                    p.start + end as u64,
                    format!("perm space: {e}"),
                );
            }
        }
    }

    /// Checks of one live object that need no other object.
    fn object(&mut self, addr: u64, h: ObjHeader, obj: &spur_format::Obj, bytes: &[u8]) {
        if h.is_forwarder() {
            if self.forwarders.0 == 0 {
                self.forwarders.1 = addr;
            }
            self.forwarders.0 += 1;
            return;
        }
        let fmt = h.format();
        if fmt == 6 || fmt == 8 {
            self.error(
                FindingKind::ObjectFormat,
                addr,
                format!("format {fmt} is reserved"),
            );
        }
        if h.is_compiled_method() {
            let n = obj.num_slots;
            let hdr = if n > 0 {
                L::slot(bytes, obj.offset, 0)
            } else {
                0
            };
            match self.word.small_integer(hdr) {
                Some(v) if n > 0 => {
                    let lits = (v & METHOD_NUM_LITERALS_MASK).cast_unsigned();
                    if lits + 1 > n {
                        self.error(
                            FindingKind::Method,
                            addr,
                            format!(
                                "method header says {lits} literals but the method has {n} slots"
                            ),
                        );
                    }
                }
                _ => self.error(
                    FindingKind::Method,
                    addr,
                    format!("method header {hdr:#x} is not a SmallInteger"),
                ),
            }
        }
        let ci = h.class_index();
        if !h.is_hidden() {
            let known = self
                .classes
                .get(ci as usize)
                .is_some_and(|&c| c != self.nil);
            if !known && !self.classes.is_empty() {
                self.error(
                    FindingKind::ClassTable,
                    addr,
                    format!("class index {ci} names no class in the class table"),
                );
            }
        }
        if h.is_remembered() || h.is_grey() {
            if self.odd_bits.0 == 0 {
                self.odd_bits.1 = addr;
            }
            self.odd_bits.0 += 1;
        }
    }

    /// The bridge at the end of segment `i` (§2.1, §2.5).
    fn bridge(&mut self, i: usize) {
        let heap = self.heap;
        let segs = heap.segments();
        let s = &segs[i];
        if !s.own_bridge {
            return;
        }
        let at = s.objects_end();
        let bytes = heap.segment_bytes(i);
        let o = bytes.len() - usize_of(BRIDGE_BYTES);
        let w0 = spur_format::layout::u64_at(bytes, o);
        let w1 = spur_format::layout::u64_at(bytes, o + 8);
        let short = ObjHeader(w0);
        let (ok, spans_to) = if short.is_bridge() && short.raw_num_slots() == 0 {
            (
                short.format() == self.word.word_indexable_format(),
                at.get() + 16,
            )
        } else if spur_format::objheader::is_overflow_word(w0) {
            let long = ObjHeader(w1);
            let n = self.word.overflow_slots(w0);
            (
                long.is_bridge() && long.raw_num_slots() == 255,
                at.get() + 8 + self.word.body_bytes(n).unwrap_or(0),
            )
        } else {
            (false, 0)
        };
        if !ok {
            self.error(
                FindingKind::Segment,
                at.get(),
                format!(
                    "segment {i} does not end with a valid bridge (words {w0:#018x} {w1:#018x})"
                ),
            );
            return;
        }
        let want = segs
            .get(i + 1)
            .map_or(s.new_start.get() + s.size, |n| n.new_start.get());
        if spans_to != want {
            self.error(
                FindingKind::Segment,
                at.get(),
                format!(
                    "segment {i}'s bridge spans to {spans_to:#x}, but the next segment starts at {want:#x}"
                ),
            );
        }
    }

    /// §8 class table: every entry's hash indexes back to it.
    fn check_class_table(&mut self) {
        let mut count = 0;
        for i in 0..self.classes.len() {
            let c = self.classes[i];
            if c == self.nil {
                continue;
            }
            // Entries at pun indices are left alone by the VMs' checks.
            if u64_of(i) < u64::from(FIRST_VALID_CLASS_INDEX) && !matches!(i, 1..=4) {
                continue;
            }
            count += 1;
            if !self.is_live(c) {
                self.error(
                    FindingKind::ClassTable,
                    c,
                    format!("class-table entry {i} is not an object"),
                );
                continue;
            }
            let hash = self
                .heap
                .header_at(NewAddr::from_heap_word(c))
                .map_or(0, |h| h.hash()) as usize;
            if hash == 0 || self.classes.get(hash) != Some(&c) {
                self.error(
                    FindingKind::ClassTable,
                    c,
                    format!(
                        "class at index {i} has identity hash {hash}, but the class table holds {:#x} there",
                        self.classes.get(hash).copied().unwrap_or(0)
                    ),
                );
            }
        }
        self.report.classes = count;
    }

    /// Every pointer of every live object lands on a live object's header.
    ///
    /// The walk is split at the object starts [`walk`](Self::walk) recorded
    /// every [`SPLIT`] bytes; the pieces run on up to `threads` threads. A
    /// heap larger than a window is walked once per window, each walk
    /// checking the pointers into that window (and the first one those into
    /// no segment), after marking the window's live objects. Each piece's
    /// findings of every window are merged in heap order (object, then
    /// slot), at most `cap` of them described and the rest counted, so the
    /// result is the one a single walk of one window gives.
    fn pointers(&mut self, cap: usize) -> Vec<(Vec<Finding>, u64)> {
        let heap = self.heap;
        let nsegs = heap.segments().len();
        let mut pieces: Vec<Piece<'h>> = Vec::new();
        let mut add = |bytes: &'h [u8], start: u64, base: usize, limit: usize, splits: &[usize]| {
            let mut from = 0;
            // The splits are object starts in increasing order, all below `limit`.
            for &to in splits.iter().chain(std::iter::once(&limit)) {
                pieces.push(Piece {
                    bytes,
                    start,
                    base,
                    from,
                    to,
                    limit,
                });
                from = to;
            }
        };
        for (i, s) in heap.segments().iter().enumerate() {
            let bytes = heap.segment_bytes(i);
            let limit = bytes.len().saturating_sub(usize_of(BRIDGE_BYTES));
            add(
                bytes,
                s.new_start.get(),
                self.bit_base[i],
                limit,
                &self.splits[i],
            );
        }
        if let (Some(p), Some(bytes)) = (heap.perm_space(), heap.perm_bytes()) {
            add(
                bytes,
                p.start,
                self.bit_base[nsegs],
                bytes.len(),
                &self.splits[nsegs],
            );
        }
        let mut merged: Vec<(Vec<Keyed>, u64)> = Vec::new();
        loop {
            let results = self.pointers_of_window(&pieces, cap, merged.is_empty());
            if merged.is_empty() {
                merged = results;
            } else {
                for ((found, dropped), (more, more_dropped)) in merged.iter_mut().zip(results) {
                    found.extend(more);
                    found.sort_by_key(|k| (k.0, k.1));
                    *dropped += more_dropped + u64_of(found.len().saturating_sub(cap));
                    found.truncate(cap);
                }
            }
            if self.window_end >= self.bits {
                break;
            }
            self.mark_window(self.window_end, &pieces);
            self.answer_queries();
        }
        merged
            .into_iter()
            .map(|(found, dropped)| (found.into_iter().map(|k| k.2).collect(), dropped))
            .collect()
    }

    /// Marks the live objects of the window starting at heap bit `first`:
    /// every object of the pieces that reach into it that is not a free
    /// chunk, a bridge or a forwarder, as [`walk`](Self::walk) marks them,
    /// up to the first that finds `live` full.
    fn mark_window(&mut self, first: usize, pieces: &[Piece<'_>]) {
        self.live.clear();
        self.window = first;
        self.window_end = (first + self.window_bits).min(self.bits);
        self.marking = true;
        for p in pieces {
            if !self.marking {
                break;
            }
            if p.base + p.to / 8 < first || p.base + p.from / 8 >= self.window_end {
                continue;
            }
            let mut pos = p.from;
            while pos < p.to {
                let Ok((obj, next)) = spur_format::read::walk::step::<L>(p.bytes, pos, p.limit)
                else {
                    break;
                };
                pos = next;
                let h = obj.header;
                if !(h.is_free_chunk() || h.is_bridge() || h.is_forwarder()) {
                    self.mark(p.base + (obj.offset >> 3));
                }
            }
        }
        self.live.seal();
    }

    /// The pointer findings of every piece for the window the bitmap holds
    /// now, in piece order; with `outside`, pointers into no segment too.
    fn pointers_of_window(
        &self,
        pieces: &[Piece<'_>],
        cap: usize,
        outside: bool,
    ) -> Vec<(Vec<Keyed>, u64)> {
        let threads = self.threads.min(pieces.len()).max(1);
        if threads == 1 {
            return pieces
                .iter()
                .map(|p| self.pointers_in(p, cap, outside))
                .collect();
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut done: Vec<(usize, (Vec<Keyed>, u64))> = std::thread::scope(|sc| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    sc.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(p) = pieces.get(k) else { break };
                            out.push((k, self.pointers_in(p, cap, outside)));
                        }
                        out
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        done.sort_unstable_by_key(|(k, _)| *k);
        done.into_iter().map(|(_, r)| r).collect()
    }

    /// The pointer findings of one piece of the heap for the window the
    /// bitmap holds now: at most `cap` of them described, the rest counted.
    fn pointers_in(&self, p: &Piece<'_>, cap: usize, outside: bool) -> (Vec<Keyed>, u64) {
        let mut found = Vec::new();
        let mut dropped = 0u64;
        let mut batch = [Pending::default(); BATCH];
        let mut len = 0;
        let (window, width) = (self.window, self.window_end - self.window);
        // The addresses of the first range that fall in the window, as
        // (first address, bytes, unit of the first address): most pointers
        // of most heaps, told apart by one comparison.
        let (fast_lo, fast_len, fast_unit) =
            self.ranges.first().map_or((0, 0, 0), |&(lo, hi, b)| {
                let from = window.max(b);
                let to = self.window_end.min(b + usize_of((hi - lo) >> 3));
                if from < to {
                    (
                        lo + u64_of(from - b) * 8,
                        u64_of(to - from) * 8,
                        from - window,
                    )
                } else {
                    (0, 0, 0)
                }
            });
        let mut pos = p.from;
        while pos < p.to {
            // The first walk reported any error; this one just stops there.
            let Ok((obj, next)) = spur_format::read::walk::step::<L>(p.bytes, pos, p.limit) else {
                break;
            };
            pos = next;
            let h = obj.header;
            // Free chunks, bridges and forwarders are not live (walk marks none).
            if h.class_index() < CLASS_FORWARDER
                || h.is_free_chunk()
                || h.is_bridge()
                || h.is_forwarder()
            {
                continue;
            }
            let n = usize_of(obj.num_slots);
            let count = if h.format() <= FMT_LAST_POINTER {
                n
            } else if h.is_compiled_method() && n > 0 {
                match self.word.small_integer(L::slot(p.bytes, obj.offset, 0)) {
                    Some(v) => {
                        (usize_of((v & METHOD_NUM_LITERALS_MASK).cast_unsigned()) + 1).min(n)
                    }
                    None => 0,
                }
            } else {
                0
            };
            // The walk's step checked that the object's slots lie in `bytes`.
            let body = &p.bytes[obj.offset + 8..obj.offset + 8 + count * L::W];
            for (j, c) in body.chunks_exact(L::W).enumerate() {
                let v = L::get(c);
                if self.word.is_immediate(v) {
                    continue;
                }
                let off = v.wrapping_sub(fast_lo);
                let unit = if off < fast_len && v & 7 == 0 {
                    fast_unit + usize_of(off >> 3)
                } else {
                    match self.bit(v) {
                        Some(b) if b.wrapping_sub(window) < width => b - window,
                        // Another window's walk looks at this one.
                        Some(_) => continue,
                        None if outside => OUTSIDE,
                        None => continue,
                    }
                };
                batch[len] = Pending {
                    unit,
                    obj: obj.offset,
                    slot: j,
                };
                len += 1;
                if len == BATCH {
                    self.check_batch(p, &batch, &mut found, &mut dropped, cap);
                    len = 0;
                }
            }
        }
        self.check_batch(p, &batch[..len], &mut found, &mut dropped, cap);
        (found, dropped)
    }

    /// Checks a batch of pointers of piece `p` in two rounds, the first
    /// asking for the memory of the record of starts that the second reads
    /// (its block words and counts; the bit per start is a sixth of their
    /// size, and mostly in cache): the findings, in the batch's
    /// order, join `found`, at most `cap` described, the rest counted in
    /// `dropped`.
    fn check_batch(
        &self,
        p: &Piece<'_>,
        batch: &[Pending],
        found: &mut Vec<Keyed>,
        dropped: &mut u64,
        cap: usize,
    ) {
        for e in batch {
            self.live.prefetch(e.unit);
        }
        for e in batch {
            if self.live.get(e.unit) {
                continue;
            }
            if found.len() >= cap {
                // Counted only: no need to say why.
                *dropped += 1;
            } else {
                let j = e.slot;
                let v = L::slot(p.bytes, e.obj, j);
                let addr = p.start + e.obj as u64;
                let why = self.diagnose(v);
                found.push((
                    addr,
                    j,
                    Finding {
                        kind: FindingKind::Pointer,
                        addr,
                        what: format!("slot {j} holds {v:#x}, which {why}"),
                    },
                ));
            }
        }
    }

    /// Why `v` is not a valid pointer.
    fn diagnose(&self, v: u64) -> &'static str {
        let segs = self.heap.segments();
        let i = segs.partition_point(|s| s.new_start.get() <= v);
        if let Some(s) = i.checked_sub(1).map(|i| &segs[i]) {
            if s.own_bridge && v == s.objects_end().get() {
                return "points to a segment bridge";
            }
        }
        if self.heap.perm_space().is_some_and(|p| p.holds(v)) {
            return "points into the middle of a perm-space object";
        }
        match self.heap.segment_of(NewAddr::from_heap_word(v)) {
            None => "lies outside every segment of the heap",
            Some(_) if self.is_free(v) => "points to a free chunk",
            Some(_)
                if self
                    .heap
                    .header_at(NewAddr::from_heap_word(v))
                    .is_some_and(|h| h.is_forwarder()) =>
            {
                "points to a forwarder"
            }
            Some(_) => "points into the middle of an object",
        }
    }

    /// §4.3 and §8: the special objects array and the classes the VMs check.
    fn special_objects(&mut self) {
        let heap = self.heap;
        let so = heap.special_objects();
        if !self.is_live(so.get()) {
            self.error(
                FindingKind::SpecialObjects,
                so.get(),
                "the special objects oop is not an object",
            );
            return;
        }
        for (i, (name, want)) in [
            ("nil", self.nil),
            ("false", self.nil + 16),
            ("true", self.nil + 32),
        ]
        .into_iter()
        .enumerate()
        {
            let got = heap.slot(so, i as u64);
            if got != Some(want) {
                self.error(
                    FindingKind::SpecialObjects,
                    so.get(),
                    format!(
                        "special object {i} must be {name} at {want:#x}, found {:#x}",
                        got.unwrap_or(0)
                    ),
                );
            }
        }
        if self.classes.is_empty() {
            return;
        }
        for (slot, index, name) in special::COMPACT_CLASS_CHECKS {
            let Some(got) = heap.slot(so, slot as u64) else {
                continue;
            };
            let want = self.classes.get(index as usize).copied().unwrap_or(0);
            if got != want {
                self.error(
                    FindingKind::SpecialObjects,
                    so.get(),
                    format!(
                        "special object {slot} ({name}) is {got:#x}, but class index {index} holds {want:#x}"
                    ),
                );
            }
        }
    }

    /// §3.5.1: list heads, chains and the tree of large chunks.
    fn free_lists(&mut self) {
        let heap = self.heap;
        let fl = NewAddr::from_heap_word(self.nil + 48);
        let lists = self.word.num_free_lists();
        if heap.num_slots(fl) != Some(lists) {
            return;
        }
        let word = self.word;
        let chunk_bytes = |a: u64| -> u64 {
            let n = heap.num_slots(NewAddr::from_heap_word(a)).unwrap_or(0);
            let over = heap
                .header_at(NewAddr::from_heap_word(a))
                .is_some_and(|h| h.raw_num_slots() == 255);
            word.body_bytes(n).unwrap_or(0) + if over { 8 } else { 0 }
        };
        let budget = self.report.free_chunks + 1;
        let mut reached = 0u64;
        for i in 1..lists {
            let mut p = heap.slot(fl, i).unwrap_or(0);
            let mut steps = 0;
            while p != 0 {
                if !self.is_free(p) {
                    self.error(
                        FindingKind::FreeSpace,
                        p,
                        format!("free list {i} leads to {p:#x}, which is not a free chunk"),
                    );
                    break;
                }
                if chunk_bytes(p) != i * 8 {
                    self.error(
                        FindingKind::FreeSpace,
                        p,
                        format!(
                            "free list {i} holds a chunk of {} bytes, not {}",
                            chunk_bytes(p),
                            i * 8
                        ),
                    );
                }
                steps += 1;
                reached += 1;
                if steps > budget {
                    self.error(FindingKind::FreeSpace, p, format!("free list {i} loops"));
                    break;
                }
                p = heap
                    .slot(NewAddr::from_heap_word(p), FREE_CHUNK_NEXT)
                    .unwrap_or(0);
            }
        }
        // Head 0: a binary tree by size; equal sizes chained through `next`.
        let root = heap.slot(fl, 0).unwrap_or(0);
        let mut stack = vec![(root, 0u64)];
        let mut steps = 0;
        while let Some((node, parent)) = stack.pop() {
            if node == 0 {
                continue;
            }
            steps += 1;
            if steps > budget {
                self.error(FindingKind::FreeSpace, node, "the free-chunk tree loops");
                break;
            }
            if !self.is_free(node) {
                self.error(
                    FindingKind::FreeSpace,
                    node,
                    format!("the free-chunk tree leads to {node:#x}, which is not a free chunk"),
                );
                continue;
            }
            let size = chunk_bytes(node);
            if size < lists * 8 {
                self.error(
                    FindingKind::FreeSpace,
                    node,
                    format!(
                        "a {size}-byte chunk in the tree of chunks of at least {} bytes",
                        lists * 8
                    ),
                );
            }
            let got_parent = heap
                .slot(NewAddr::from_heap_word(node), FREE_CHUNK_PARENT)
                .unwrap_or(0);
            if got_parent != parent {
                self.error(
                    FindingKind::FreeSpace,
                    node,
                    format!("tree node's parent is {got_parent:#x}, expected {parent:#x}"),
                );
            }
            reached += 1;
            let mut p = heap
                .slot(NewAddr::from_heap_word(node), FREE_CHUNK_NEXT)
                .unwrap_or(0);
            while p != 0 && steps <= budget {
                steps += 1;
                if !self.is_free(p) || chunk_bytes(p) != size {
                    self.error(FindingKind::FreeSpace, p, format!("the list of {size}-byte tree chunks holds {p:#x}, not a free chunk of that size"));
                    break;
                }
                reached += 1;
                p = heap
                    .slot(NewAddr::from_heap_word(p), FREE_CHUNK_NEXT)
                    .unwrap_or(0);
            }
            for (slot, smaller) in [(FREE_CHUNK_SMALLER, true), (FREE_CHUNK_LARGER, false)] {
                let child = heap.slot(NewAddr::from_heap_word(node), slot).unwrap_or(0);
                if child != 0 && self.is_free(child) {
                    let cs = chunk_bytes(child);
                    if (smaller && cs >= size) || (!smaller && cs <= size) {
                        self.error(
                            FindingKind::FreeSpace,
                            child,
                            format!("tree node of {cs} bytes is on the wrong side of a {size}-byte node"),
                        );
                    }
                }
                stack.push((child, node));
            }
        }
        if reached != self.report.free_chunks {
            self.error(
                FindingKind::FreeSpace,
                fl.get(),
                format!(
                    "the free lists reach {reached} chunks, but the heap holds {}",
                    self.report.free_chunks
                ),
            );
        }
        let declared = heap.header().free_old_space;
        if declared != self.report.free_bytes {
            self.warning(
                FindingKind::FreeSpace,
                fl.get(),
                format!(
                    "header field freeOldSpaceInImage says {declared} bytes, the free chunks hold {}",
                    self.report.free_bytes
                ),
            );
        }
    }

    /// §4.2: the mark and weakling stacks are empty; stack pages are well formed.
    fn obj_stacks(&mut self) {
        let heap = self.heap;
        let fl = NewAddr::from_heap_word(self.nil + 48);
        let Some(hidden) = heap.object_after(fl) else {
            return;
        };
        if heap.num_slots(hidden) != Some(HIDDEN_ROOTS_SLOTS) {
            return;
        }
        for (root, must_be_empty) in [
            (MARK_STACK_ROOT_INDEX, true),
            (WEAKLING_STACK_ROOT_INDEX, true),
            (MOURN_QUEUE_ROOT_INDEX, false),
        ] {
            let page = heap.slot(hidden, root).unwrap_or(self.nil);
            if page == self.nil {
                continue;
            }
            let ok = self.is_live(page)
                && heap
                    .header_at(NewAddr::from_heap_word(page))
                    .is_some_and(|h| {
                        h.class_index() == self.word.word_array_pun()
                            && h.format() == self.word.word_indexable_format()
                    })
                && heap.num_slots(NewAddr::from_heap_word(page)) == Some(OBJ_STACK_PAGE_SLOTS);
            if !ok {
                self.error(
                    FindingKind::ObjStack,
                    page,
                    format!("hidden root {root} is not an object-stack page"),
                );
                continue;
            }
            let my = heap
                .slot(NewAddr::from_heap_word(page), OBJ_STACK_MY)
                .unwrap_or(0);
            if my != root {
                self.error(
                    FindingKind::ObjStack,
                    page,
                    format!("object-stack page of root {root} says it belongs to {my}"),
                );
            }
            let top = heap
                .slot(NewAddr::from_heap_word(page), OBJ_STACK_TOP)
                .unwrap_or(0);
            if must_be_empty && top != 0 {
                self.error(
                    FindingKind::ObjStack,
                    page,
                    format!("object stack {root} holds {top} entries; a saved image's is empty"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record of starts answers as a set of its starts does, at every
    /// unit: starts at even and odd units, dense runs (a start every 16
    /// bytes) across the counts' run boundaries, sparse stretches, and a
    /// full record refusing more.
    #[test]
    fn starts_answer_as_the_set_of_starts() {
        let bits = 80_000;
        let mut want = std::collections::BTreeSet::new();
        let mut i = 1;
        let mut k = 0u64;
        while i < bits {
            want.insert(i);
            k = k
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Mostly the smallest gap (2 units), sometimes long ones.
            let gap = match k >> 60 {
                0..=9 => 2,
                10..=13 => 3 + (k >> 40) as usize % 8,
                _ => 40 + (k >> 30) as usize % 300,
            };
            i += gap;
        }
        let mut starts = Starts::new(bits, want.len());
        for &i in &want {
            assert!(starts.push(i), "unit {i}");
        }
        assert!(!starts.push(bits + 2), "a full record takes no more");
        starts.seal();
        let mut rank = 0;
        for i in 0..bits + 200 {
            assert_eq!(starts.get(i), want.contains(&i), "unit {i}");
            if want.contains(&i) {
                assert_eq!(starts.rank(i), Some(rank), "unit {i}");
                rank += 1;
            }
        }
        assert!(want.len() > 2000, "{} starts", want.len());
    }

    /// The list turns into a bitmap when it grows past half a bitmap's
    /// bytes, and answers the same before and after.
    #[test]
    fn free_starts_answer_the_same_as_list_and_as_bitmap() {
        let bits = 1 << 20;
        let limit = bits / 128 + 1024;
        let mut free = FreeStarts::List(Vec::new());
        let at = |k: usize| 3 * k + k % 2;
        let mut k = 0;
        while matches!(free, FreeStarts::List(_)) {
            free.push(at(k), bits);
            k += 1;
        }
        assert_eq!(k, limit + 1, "the list holds {limit} starts, then turns");
        for _ in 0..100 {
            free.push(at(k), bits);
            k += 1;
        }
        let want: std::collections::BTreeSet<usize> = (0..k).map(at).collect();
        let list = FreeStarts::List(want.iter().copied().collect());
        for i in 0..at(k) + 8 {
            assert_eq!(free.contains(i), want.contains(&i), "bit {i}");
            assert_eq!(list.contains(i), want.contains(&i), "bit {i}");
        }
    }
}
