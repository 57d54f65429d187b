//! The heap verifier: the checks of §8 of the format notes (`docs/format.md`), run over a
//! loaded heap, reporting every finding rather than stopping at the first.

use std::sync::atomic::{AtomicU64, Ordering};

use spur_format::raw::*;
use spur_format::{FormatError, Layout, NewAddr, Obj, ObjHeader, WordSize, L32, L64};

use crate::conv::{u64_of, usize_of};
use crate::heap::LoadedHeap;
use crate::parallel::{self, Threads};

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
/// by default: 4 GiB (a [`LiveRecord::Compact`] record of 51.2 MiB), so a
/// heap of up to 4 GiB is checked in one window.
pub const WINDOW_BYTES: u64 = 4 << 30;

/// [`verify_with`], its record of live object starts covering at most
/// `window_bytes` of the heap at a time (rounded up to 512 bytes), and at
/// most one live object per 32 bytes of window (see
/// [`verify_in_windows_of`]). A larger heap's pointers are checked in as
/// many passes, one per window of addresses they may point to, so the
/// verifier's memory stays under `window_bytes / 64` (a bitmap, for
/// windows of up to [`BITMAP_UP_TO`]) or `window_bytes / 80` (the compact
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
    /// Three states per 16-byte block (no start, a start in its first or
    /// its second word), five blocks a byte: a window's bytes / 80, one
    /// memory access per lookup. Fewer cache misses on larger windows.
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
    // Counts of starts stay below u32::MAX.
    let cap = usize_of(window_objects.clamp(1, u64::from(u32::MAX)));
    match (heap.word(), record) {
        (WordSize::W64, LiveRecord::Compact) => {
            Verifier::<L64, LiveTrits>::new(heap, n, window_bits, cap).run()
        }
        (WordSize::W32, LiveRecord::Compact) => {
            Verifier::<L32, LiveTrits>::new(heap, n, window_bits, cap).run()
        }
        (WordSize::W64, LiveRecord::Bitmap) => {
            Verifier::<L64, LiveBits>::new(heap, n, window_bits, cap).run()
        }
        (WordSize::W32, LiveRecord::Bitmap) => {
            Verifier::<L32, LiveBits>::new(heap, n, window_bits, cap).run()
        }
    }
}

/// A record of the live object starts of a window, by unit (8 bytes) of
/// it. A start adds a number to one word of the record; the numbers of
/// distinct starts add without carry, so walks of different parts of the
/// heap, on different threads, may record their starts into one record.
trait Live: Sync {
    /// Room for `units` units.
    fn with_room(units: usize) -> Self;
    /// The word a start at unit `i` adds to, and what it adds.
    fn place(i: usize) -> (usize, u64);
    /// The record's words.
    fn words(&self) -> &[AtomicU64];
    /// The record's words, to clear them.
    fn words_mut(&mut self) -> &mut [AtomicU64];
    /// Is a start recorded at unit `i`?
    fn get(&self, i: usize) -> bool;
    /// Asks for the memory `get(i)` reads.
    #[inline(always)]
    fn prefetch(&self, i: usize) {
        if let Some(w) = self.words().get(Self::place(i).0) {
            spur_mem::hint::prefetch(w);
        }
    }
    /// Forgets every start.
    fn clear(&mut self) {
        for w in self.words_mut() {
            *w.get_mut() = 0;
        }
    }
    /// Records a start at unit `i` through `m`, which gathers the starts
    /// of one word before adding them to it; the starts one marker records
    /// increase.
    #[inline(always)]
    fn add(&self, m: &mut Marker, i: usize) {
        let (w, v) = Self::place(i);
        if w != m.word {
            self.flush(m);
            m.word = w;
        }
        m.sum += v;
    }
    /// Adds what `m` gathered to the record.
    fn flush(&self, m: &mut Marker) {
        if m.sum != 0 {
            if let Some(w) = self.words().get(m.word) {
                w.fetch_add(m.sum, Ordering::Relaxed);
            }
            m.sum = 0;
        }
    }
}

/// Starts gathered for one word of a [`Live`] record.
#[derive(Debug, Clone, Copy)]
struct Marker {
    word: usize,
    sum: u64,
}

impl Marker {
    const fn new() -> Self {
        Marker {
            word: usize::MAX,
            sum: 0,
        }
    }
}

/// One bit per 8-byte unit of (a window of) the heap.
struct LiveBits {
    words: Vec<AtomicU64>,
}

impl Live for LiveBits {
    fn with_room(units: usize) -> Self {
        LiveBits {
            words: (0..units.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        }
    }
    #[inline(always)]
    fn place(i: usize) -> (usize, u64) {
        (i >> 6, 1 << (i & 63))
    }
    fn words(&self) -> &[AtomicU64] {
        &self.words
    }
    fn words_mut(&mut self) -> &mut [AtomicU64] {
        &mut self.words
    }
    #[inline(always)]
    fn get(&self, i: usize) -> bool {
        self.words
            .get(i >> 6)
            .is_some_and(|w| w.load(Ordering::Relaxed) >> (i & 63) & 1 == 1)
    }
}

/// The live object starts of a window of the heap in one byte per five
/// 16-byte blocks. Two object starts are at least 16 bytes apart (the
/// smallest object is a header and one word), so a block holds at most
/// one, and is in one of three states: no start, a start in its first word,
/// a start in its second. Five blocks' states are the digits of a number
/// in base 3 below 3^5 = 243, one byte; a lookup reads that byte and takes
/// the block's digit from a table. At 4 GiB that is 51.2 MiB, read once
/// per pointer.
struct LiveTrits {
    /// Eight bytes a word, byte `q` holding blocks `5q..5q + 5`.
    words: Vec<AtomicU64>,
}

/// Powers of 3: a block's digit's weight in its byte.
const POW3: [u64; 5] = [1, 3, 9, 27, 81];

/// `DIGIT[d][b]`: digit `d` of byte `b` in base 3.
static DIGIT: [[u8; 256]; 5] = digits();

const fn digits() -> [[u8; 256]; 5] {
    let mut t = [[0u8; 256]; 5];
    let mut d = 0;
    while d < 5 {
        let mut b = 0;
        while b < 256 {
            // Both below 256, the digit below 3.
            #[allow(clippy::cast_possible_truncation)]
            {
                t[d][b] = ((b as u64 / POW3[d]) % 3) as u8;
            }
            b += 1;
        }
        d += 1;
    }
    t
}

impl Live for LiveTrits {
    fn with_room(units: usize) -> Self {
        let bytes = units.div_ceil(2).div_ceil(5);
        LiveTrits {
            words: (0..bytes.div_ceil(8)).map(|_| AtomicU64::new(0)).collect(),
        }
    }
    #[inline(always)]
    fn place(i: usize) -> (usize, u64) {
        let k = i >> 1;
        let q = k / 5;
        (
            q >> 3,
            ((1 + (i & 1) as u64) * POW3[k % 5]) << ((q & 7) * 8),
        )
    }
    fn words(&self) -> &[AtomicU64] {
        &self.words
    }
    fn words_mut(&mut self) -> &mut [AtomicU64] {
        &mut self.words
    }
    #[inline(always)]
    fn get(&self, i: usize) -> bool {
        let k = i >> 1;
        let q = k / 5;
        let Some(w) = self.words.get(q >> 3) else {
            return false;
        };
        // The byte of block k.
        #[allow(clippy::cast_possible_truncation)]
        let b = (w.load(Ordering::Relaxed) >> ((q & 7) * 8)) as u8;
        usize::from(DIGIT[k % 5][usize::from(b)]) == 1 + (i & 1)
    }
}

/// One bit per 8-byte unit of the heap: the free chunks' starts of a heap
/// with many.
struct Bitmap {
    words: Vec<u64>,
}

impl Bitmap {
    fn new(bits: usize) -> Self {
        Bitmap {
            words: vec![0; bits.div_ceil(64)],
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

/// Increasing bit indices, kept in four bytes each while they fit 32 bits
/// (a heap of up to 32 GiB), in a word each from the first that does not.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StartList {
    Narrow(Vec<u32>),
    Wide(Vec<usize>),
}

impl Default for StartList {
    fn default() -> Self {
        StartList::Narrow(Vec::new())
    }
}

impl StartList {
    /// Adds `i`, above every index added so far.
    fn push(&mut self, i: usize) {
        match self {
            StartList::Narrow(v) => match u32::try_from(i) {
                Ok(x) => v.push(x),
                Err(_) => {
                    let mut wide: Vec<usize> = v.iter().map(|&x| x as usize).collect();
                    wide.push(i);
                    *self = StartList::Wide(wide);
                }
            },
            StartList::Wide(v) => v.push(i),
        }
    }

    fn len(&self) -> usize {
        match self {
            StartList::Narrow(v) => v.len(),
            StartList::Wide(v) => v.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The indices, in increasing order.
    fn indices(&self) -> Box<dyn Iterator<Item = usize> + '_> {
        match self {
            StartList::Narrow(v) => Box::new(v.iter().map(|&x| x as usize)),
            StartList::Wide(v) => Box::new(v.iter().copied()),
        }
    }

    fn contains(&self, i: usize) -> bool {
        match self {
            StartList::Narrow(v) => u32::try_from(i).is_ok_and(|x| v.binary_search(&x).is_ok()),
            StartList::Wide(v) => v.binary_search(&i).is_ok(),
        }
    }

    /// [`contains`](Self::contains), `i` being among the positions `at` if anywhere.
    fn contains_in(&self, i: usize, at: std::ops::Range<usize>) -> bool {
        match self {
            StartList::Narrow(v) => v
                .get(at)
                .is_some_and(|v| u32::try_from(i).is_ok_and(|x| v.binary_search(&x).is_ok())),
            StartList::Wide(v) => v.get(at).is_some_and(|v| v.binary_search(&i).is_ok()),
        }
    }
}

/// Where the free chunks' headers are, as bit indices like the live
/// bitmap's. A saved image holds few free chunks, so they are listed in
/// heap order; a heap with so many that the list would outgrow half a
/// bitmap gets a bitmap instead. Either way one bitmap of the heap's size
/// (the live one) is the most `verify` keeps for long.
enum FreeStarts {
    /// Increasing bit indices.
    List(StartList),
    /// The same, with an index to find them by: [`seal`](FreeStarts::seal)ed.
    Indexed(StartList, StartIndex),
    Bits(Bitmap),
}

/// Where each stretch of `1 << shift` bits begins in a [`StartList`]: a
/// lookup searches about [`PER_STRETCH`] indices, one or two cache lines,
/// instead of the whole list, whose search misses the cache at every step
/// once the list is larger than the cache (a heap's free-list walk asks
/// about each of its chunks: 964,450 of them on a 4 GiB heap).
struct StartIndex {
    shift: u32,
    /// `firsts[k]`: how many indices lie below `k << shift`; one more entry
    /// than there are stretches.
    firsts: Vec<u32>,
}

/// How many starts a stretch of a [`StartIndex`] holds on average, at most.
const PER_STRETCH: usize = 16;

impl StartIndex {
    /// The index of `list`, whose indices lie below `bits`.
    fn of(list: &StartList, bits: usize) -> Self {
        let stretches = (list.len() / PER_STRETCH).max(1);
        let mut shift = 0u32;
        while (bits >> shift) > stretches {
            shift += 1;
        }
        let n = (bits >> shift) + 1;
        let mut firsts = Vec::with_capacity(n + 1);
        let mut seen = 0u32;
        for i in list.indices() {
            while firsts.len() <= i >> shift {
                firsts.push(seen);
            }
            seen += 1;
        }
        firsts.resize(n + 1, seen);
        StartIndex { shift, firsts }
    }

    /// The positions in the list of the indices of `i`'s stretch.
    fn range(&self, i: usize) -> std::ops::Range<usize> {
        let k = i >> self.shift;
        match (self.firsts.get(k), self.firsts.get(k + 1)) {
            (Some(&a), Some(&b)) => a as usize..b as usize,
            _ => 0..0,
        }
    }
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
                for j in list.indices() {
                    map.set(j);
                }
                map.set(i);
                *self = FreeStarts::Bits(map);
            }
            FreeStarts::Indexed(list, _) => {
                *self = FreeStarts::List(std::mem::take(list));
                self.push(i, bits);
            }
            FreeStarts::Bits(map) => map.set(i),
        }
    }

    /// Builds the index of a list, for lookups once every start is in.
    fn seal(&mut self, bits: usize) {
        if let FreeStarts::List(list) = self {
            // Positions in the list fit four bytes: it holds at most
            // bits / 128 + 1024 starts.
            if u32::try_from(list.len()).is_ok() {
                let index = StartIndex::of(list, bits);
                *self = FreeStarts::Indexed(std::mem::take(list), index);
            }
        }
    }

    /// [`push`](Self::push) of each of `more`, increasing and above every
    /// bit recorded so far; an empty list takes `more` itself, rather than
    /// a copy.
    fn extend(&mut self, more: StartList, bits: usize) {
        match self {
            FreeStarts::List(list) if list.is_empty() && more.len() <= bits / 128 + 1024 => {
                *list = more;
            }
            _ => {
                for i in more.indices() {
                    self.push(i, bits);
                }
            }
        }
    }

    fn contains(&self, i: usize) -> bool {
        match self {
            FreeStarts::List(list) => list.contains(i),
            FreeStarts::Indexed(list, index) => list.contains_in(i, index.range(i)),
            FreeStarts::Bits(map) => map.get(i),
        }
    }
}

/// Formats whose objects the first walk looks at more closely: the reserved
/// 6 and 8, and forwarders (7).
const ODD_FORMATS: u32 = 1 << 6 | 1 << 7 | 1 << 8;

/// The remembered and grey bits, which a snapshot leaves clear.
const ODD_BITS: u64 = 1 << REMEMBERED_SHIFT | 1 << GREY_SHIFT;

/// The smallest part of a segment the first walk gives a thread of its own.
const MIN_PART: usize = 8 << 20;

/// What the first walk of a part of a segment found, in heap order.
struct PartWalk {
    objects: u64,
    free_chunks: u64,
    free_bytes: u64,
    /// Free chunks' heap bits.
    free: StartList,
    /// The first [`MAX_FINDINGS`] errors; the rest counted.
    errors: Vec<Finding>,
    errors_dropped: u64,
    /// Forwarders, and objects with the remembered or grey bit: count and
    /// first address.
    forwarders: (u64, u64),
    odd_bits: (u64, u64),
    /// Object starts about [`SPLIT`] bytes apart, for the pointer walk.
    splits: Vec<usize>,
    next_split: usize,
    /// Live starts recorded, through `marker`.
    marks: usize,
    marker: Marker,
}

impl PartWalk {
    fn new() -> Self {
        PartWalk {
            objects: 0,
            free_chunks: 0,
            free_bytes: 0,
            free: StartList::default(),
            errors: Vec::new(),
            errors_dropped: 0,
            forwarders: (0, 0),
            odd_bits: (0, 0),
            splits: Vec::new(),
            next_split: SPLIT,
            marks: 0,
            marker: Marker::new(),
        }
    }

    fn error(&mut self, kind: FindingKind, addr: u64, what: impl Into<String>) {
        if self.errors.len() < MAX_FINDINGS {
            self.errors.push(Finding {
                kind,
                addr,
                what: what.into(),
            });
        } else {
            self.errors_dropped += 1;
        }
    }
}

/// What the first walk of one segment (or perm space) reads, shared by the
/// walks of its parts.
struct PartCtx<'a, R: Live> {
    classes: &'a [u64],
    nil: u64,
    word: WordSize,
    /// The record of the first window, which ends at heap bit `window_end`.
    live: &'a R,
    window_end: usize,
    /// The segment's address, first heap bit and bytes.
    start: u64,
    base: usize,
    perm: bool,
    bytes: &'a [u8],
}

impl<R: Live> PartCtx<'_, R> {
    /// Counts, marks and checks one object of the walk.
    #[inline(always)]
    fn visit<L: Layout>(&self, p: &mut PartWalk, obj: &Obj) {
        if obj.start() >= p.next_split {
            p.splits.push(obj.start());
            p.next_split = obj.start() + SPLIT;
        }
        p.objects += 1;
        let h = obj.header;
        // Most objects: of a class in the table, of a plain format, no
        // header bits set that a snapshot clears; nothing to check but the
        // class, nothing to do but mark the start.
        if (h.class_index() > LAST_CLASS_INDEX_PUN)
            & ((ODD_FORMATS >> h.format()) & 1 == 0)
            & (h.0 & ODD_BITS == 0)
            & method_header_fits::<L>(self.bytes, obj)
            && self.known_class(h.class_index())
        {
            let bit = self.base + (obj.offset >> 3);
            if bit < self.window_end {
                self.live.add(&mut p.marker, bit);
                p.marks += 1;
            }
            return;
        }
        self.visit_others::<L>(p, obj);
    }

    /// Is class index `ci` one the class table names (or is there no table)?
    #[inline(always)]
    fn known_class(&self, ci: u32) -> bool {
        self.classes.is_empty()
            || self
                .classes
                .get(ci as usize)
                .is_some_and(|&c| c != self.nil)
    }

    /// [`visit`](Self::visit) of every object that is not of the common kind.
    #[inline(never)]
    fn visit_others<L: Layout>(&self, p: &mut PartWalk, obj: &Obj) {
        let h = obj.header;
        let addr = self.start + obj.offset as u64;
        let bit = self.base + (obj.offset >> 3);
        if self.perm {
            if h.is_free_chunk() || h.is_bridge() {
                p.error(
                    FindingKind::Segment,
                    addr,
                    "perm space holds a free chunk or a bridge",
                );
                return;
            }
        } else {
            if h.is_free_chunk() {
                p.free.push(bit);
                p.free_chunks += 1;
                p.free_bytes += self.word.body_bytes(obj.num_slots).unwrap_or(0)
                    + if obj.has_overflow() { 8 } else { 0 };
                return;
            }
            if h.is_bridge() {
                p.error(
                    FindingKind::Segment,
                    addr,
                    "a bridge in the middle of a segment",
                );
                return;
            }
        }
        // The first window begins at heap bit 0.
        if !h.is_forwarder() && bit < self.window_end {
            self.live.add(&mut p.marker, bit);
            p.marks += 1;
        }
        self.object::<L>(p, addr, h, obj);
    }

    /// Checks of one live object that need no other object.
    fn object<L: Layout>(&self, p: &mut PartWalk, addr: u64, h: ObjHeader, obj: &Obj) {
        if h.is_forwarder() {
            if p.forwarders.0 == 0 {
                p.forwarders.1 = addr;
            }
            p.forwarders.0 += 1;
            return;
        }
        let fmt = h.format();
        if fmt == 6 || fmt == 8 {
            p.error(
                FindingKind::ObjectFormat,
                addr,
                format!("format {fmt} is reserved"),
            );
        }
        if h.is_compiled_method() {
            let n = obj.num_slots;
            let hdr = if n > 0 {
                L::slot(self.bytes, obj.offset, 0)
            } else {
                0
            };
            match self.word.small_integer(hdr) {
                Some(v) if n > 0 => {
                    let lits = (v & METHOD_NUM_LITERALS_MASK).cast_unsigned();
                    if lits + 1 > n {
                        p.error(
                            FindingKind::Method,
                            addr,
                            format!(
                                "method header says {lits} literals but the method has {n} slots"
                            ),
                        );
                    }
                }
                _ => p.error(
                    FindingKind::Method,
                    addr,
                    format!("method header {hdr:#x} is not a SmallInteger"),
                ),
            }
        }
        let ci = h.class_index();
        if !h.is_hidden() && !self.known_class(ci) {
            p.error(
                FindingKind::ClassTable,
                addr,
                format!("class index {ci} names no class in the class table"),
            );
        }
        if h.is_remembered() || h.is_grey() {
            if p.odd_bits.0 == 0 {
                p.odd_bits.1 = addr;
            }
            p.odd_bits.0 += 1;
        }
    }
}

/// The live objects of piece `p` in order (no free chunk, bridge or
/// forwarder, which the first walk marks none of), each with the bytes of
/// its slots that hold oops ([`pointer_slots`]). It stops where the walk
/// fails: the first walk has reported that.
#[inline(always)]
fn live_bodies<'p, L: Layout>(p: &'p Piece<'_>) -> impl Iterator<Item = (Obj, &'p [u8])> {
    let bytes: &'p [u8] = p.bytes;
    let (to, limit) = (p.to, p.limit);
    let mut pos = p.from;
    std::iter::from_fn(move || {
        while pos < to {
            let (obj, next) = spur_format::read::walk::step::<L>(bytes, pos, limit).ok()?;
            pos = next;
            let h = obj.header;
            if h.class_index() < CLASS_FORWARDER
                || h.is_free_chunk()
                || h.is_bridge()
                || h.is_forwarder()
            {
                continue;
            }
            let count = pointer_slots::<L>(bytes, &obj);
            // The walk's step checked that the object's slots lie in `bytes`.
            let body = &bytes[obj.offset + 8..obj.offset + 8 + count * L::W];
            return Some((obj, body));
        }
        None
    })
}

/// Is `obj` not a compiled method, or one whose header is a SmallInteger
/// that counts no more literals than the method has slots? Without a
/// branch, as [`pointer_slots`].
#[inline(always)]
fn method_header_fits<L: Layout>(bytes: &[u8], obj: &Obj) -> bool {
    let n = usize_of(obj.num_slots);
    let (small, lits) = method_header::<L>(bytes, obj);
    !obj.header.is_compiled_method() | ((small != 0) & (lits < n))
}

/// A compiled method's header slot, read whatever the object: whether it is
/// a SmallInteger (1) or not (0), and the literal count it gives.
#[inline(always)]
fn method_header<L: Layout>(bytes: &[u8], obj: &Obj) -> (usize, usize) {
    // Every object has room for one slot (the smallest holds a header and a word).
    let hdr = L::slot(bytes, obj.offset, 0);
    // A SmallInteger's value: the header shifted past its tag bits.
    let (small, tag_bits) = match L::WORD {
        WordSize::W32 => (hdr & 1, 1),
        WordSize::W64 => (u64::from(hdr & 7 == 1), 3),
    };
    (
        usize_of(small),
        usize_of(hdr >> tag_bits & METHOD_NUM_LITERALS_MASK.cast_unsigned()),
    )
}

/// How many slots of `obj` hold oops: all of a pointer object's, a
/// compiled method's header and literals (none if its header is not a
/// SmallInteger), none of any other. Chosen without a branch: objects of
/// the kinds alternate unpredictably in a heap.
#[inline(always)]
fn pointer_slots<L: Layout>(bytes: &[u8], obj: &Obj) -> usize {
    let h = obj.header;
    let n = usize_of(obj.num_slots);
    let (small, lits) = method_header::<L>(bytes, obj);
    let method = usize::from(h.is_compiled_method()) & small;
    let pointers = usize::from(h.format() <= FMT_LAST_POINTER);
    let in_method = (lits + 1).min(n);
    // Exactly one of the masks is all ones, or none.
    (n & pointers.wrapping_neg()) | (in_method & method.wrapping_neg())
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
    /// Starts recorded in the window, how many it may hold, and the
    /// marker that records them.
    marks: usize,
    cap: usize,
    marker: Marker,
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
            live: R::with_room(in_window),
            window: 0,
            window_end: in_window,
            marking: true,
            marks: 0,
            cap,
            marker: Marker::new(),
            window_bits,
            ranges,
            queries: Vec::new(),
            answers: Vec::new(),
            free: FreeStarts::List(StartList::default()),
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
        if self.marks == self.cap {
            self.marking = false;
            self.window_end = b;
            return;
        }
        self.live.add(&mut self.marker, b - self.window);
        self.marks += 1;
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
        let remark = self.walk();
        self.free.seal(self.bits);
        let pieces = self.pieces();
        if remark {
            self.mark_window(0, &pieces);
        }
        self.answer_queries();
        // The checks below give the cap room for at most this many more errors.
        let cap = MAX_FINDINGS.saturating_sub(self.report.errors.len());
        let pointer_findings = self.pointers(&pieces, cap);
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
    /// be checked object by object. A segment of at least two
    /// [`MIN_PART`]s is walked in parts on up to `threads` threads, split at
    /// guessed object starts ([`parallel::walk_in_parts`]), the parts'
    /// counts and findings joined in heap order: the report is the one of
    /// the walk from each segment's start. True when the starts recorded
    /// must be marked again: a part that ran was not part of that walk (a
    /// wrong guess, or one past a broken object), or the window holds more
    /// starts than it may, and ends earlier.
    fn walk(&mut self) -> bool {
        let heap = self.heap;
        let segs = heap.segments();
        let mut remark = false;
        for i in 0..=segs.len() {
            let perm = i == segs.len();
            let (bytes, start, limit) = if perm {
                match (heap.perm_space(), heap.perm_bytes()) {
                    (Some(p), Some(bytes)) => (bytes, p.start, bytes.len()),
                    _ => break,
                }
            } else {
                let bytes = heap.segment_bytes(i);
                let limit = bytes.len().saturating_sub(usize_of(BRIDGE_BYTES));
                (bytes, segs[i].new_start.get(), limit)
            };
            let parts = self.threads.min(limit / MIN_PART).max(1);
            let guesses = parallel::guesses::<L>(bytes, limit, parts, self.classes.len());
            let ctx = PartCtx {
                classes: &self.classes,
                nil: self.nil,
                word: self.word,
                live: &self.live,
                window_end: self.window_end,
                start,
                base: self.bit_base[i],
                perm,
                bytes,
            };
            let walked = parallel::walk_in_parts::<L, PartWalk>(
                bytes,
                limit,
                &guesses,
                PartWalk::new,
                |p, obj| ctx.visit::<L>(p, obj),
            );
            remark |= walked.discarded;
            for p in walked.parts {
                self.join(i, p);
            }
            if let Some((offset, what)) = walked.failed {
                let e = FormatError::BadObject {
                    segment: i,
                    offset: u64_of(offset),
                    addr: start.wrapping_add(u64_of(offset)),
                    what,
                };
                let at = start + u64_of(limit);
                if perm {
                    self.error(FindingKind::Segment, at, format!("perm space: {e}"));
                } else {
                    self.error(FindingKind::Segment, at, e.to_string());
                }
            }
            if !perm {
                self.bridge(i);
            }
        }
        remark || self.marks > self.cap
    }

    /// Adds what the walk of a part of segment `i` (perm space for the last)
    /// found to the report, after the parts before it.
    fn join(&mut self, i: usize, mut p: PartWalk) {
        self.report.objects += p.objects;
        self.report.free_chunks += p.free_chunks;
        self.report.free_bytes += p.free_bytes;
        self.free.extend(p.free, self.bits);
        for f in p.errors {
            self.error(f.kind, f.addr, f.what);
        }
        self.report.errors_dropped += p.errors_dropped;
        for (mine, theirs) in [
            (&mut self.forwarders, p.forwarders),
            (&mut self.odd_bits, p.odd_bits),
        ] {
            if mine.0 == 0 {
                mine.1 = theirs.1;
            }
            mine.0 += theirs.0;
        }
        self.splits[i].extend(p.splits);
        self.marks += p.marks;
        self.live.flush(&mut p.marker);
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
    fn pointers(&mut self, pieces: &[Piece<'h>], cap: usize) -> Vec<(Vec<Finding>, u64)> {
        let mut merged: Vec<(Vec<Keyed>, u64)> = Vec::new();
        loop {
            let results = self.pointers_of_window(pieces, cap, merged.is_empty());
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
            self.mark_window(self.window_end, pieces);
            self.answer_queries();
        }
        merged
            .into_iter()
            .map(|(found, dropped)| (found.into_iter().map(|k| k.2).collect(), dropped))
            .collect()
    }

    /// The stretches the pointer walk is split into: each segment (and perm
    /// space) cut at the object starts [`walk`](Self::walk) recorded.
    fn pieces(&self) -> Vec<Piece<'h>> {
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
        pieces
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
        self.marks = 0;
        self.marker = Marker::new();
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
        self.live.flush(&mut self.marker);
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
        if self.piece_is_clean(p, outside) {
            return (Vec::new(), 0);
        }
        self.pointer_findings_in(p, cap, outside)
    }

    /// Does the pointer walk of piece `p` find nothing for the window the
    /// record holds now? The walk of [`pointer_findings_in`](Self::pointer_findings_in),
    /// keeping only each pointer's unit: a heap fit to run takes this walk
    /// alone, and one with a finding is walked again to describe it.
    fn piece_is_clean(&self, p: &Piece<'_>, outside: bool) -> bool {
        let width = self.window_end - self.window;
        // Units are kept in four bytes: windows of up to 32 GiB.
        if u32::try_from(width).is_err() {
            return false;
        }
        let fast = self.fast_range();
        let mut units = [0u32; 2 * BATCH];
        let mut len = 0;
        for (_, body) in live_bodies::<L>(p) {
            let count = body.len() / L::W;
            if len + count > BATCH {
                if !self.units_live(&units[..len]) {
                    return false;
                }
                len = 0;
            }
            if count > BATCH {
                // A large object: its slots a batch at a time.
                for part in body.chunks(BATCH * L::W) {
                    let Some(n) = self.gather(part, &mut units, 0, fast, outside) else {
                        return false;
                    };
                    if !self.units_live(&units[..n]) {
                        return false;
                    }
                }
                continue;
            }
            let Some(n) = self.gather(body, &mut units, len, fast, outside) else {
                return false;
            };
            len = n;
        }
        self.units_live(&units[..len])
    }

    /// Writes the units of the pointers among `slots` (at most `units.len()`
    /// of them) that point into the window to the start of `units`, and
    /// says how many; `None` when one points into no segment and `outside`
    /// asks for those (a finding). Slots that hold immediates cost no
    /// branch: each slot's unit is written, and counted only if it is one.
    #[inline(always)]
    fn gather(
        &self,
        slots: &[u8],
        units: &mut [u32; 2 * BATCH],
        len: usize,
        (fast_lo, fast_len, fast_unit): (u64, u64, usize),
        outside: bool,
    ) -> Option<usize> {
        let start = len;
        let mut len = len;
        let mut others = 0;
        for c in slots.chunks_exact(L::W) {
            let v = L::get(c);
            let off = v.wrapping_sub(fast_lo);
            let pointer = usize::from(!L::WORD.is_immediate(v));
            let fast = usize::from(off < fast_len) & usize::from(v & 7 == 0);
            // Below `width` when `fast`; overwritten when not counted.
            #[allow(clippy::cast_possible_truncation)]
            {
                units[len & (2 * BATCH - 1)] = (fast_unit + usize_of(off >> 3)) as u32;
            }
            len += pointer & fast;
            others |= pointer & (fast ^ 1);
        }
        if others == 0 {
            return Some(len);
        }
        // A pointer outside the first range: the slots again, one by one.
        let mut len = start;
        for c in slots.chunks_exact(L::W) {
            let v = L::get(c);
            if L::WORD.is_immediate(v) {
                continue;
            }
            let b = match self.unit_elsewhere(v, outside) {
                Some(OUTSIDE) => return None,
                Some(b) => b,
                None => continue,
            };
            // Below the window's width, which fits 32 bits.
            #[allow(clippy::cast_possible_truncation)]
            {
                units[len & (2 * BATCH - 1)] = b as u32;
            }
            len += 1;
        }
        Some(len)
    }

    /// The unit in the window of pointer `v`, which is not in the first
    /// range's part of it; [`OUTSIDE`] when `v` lies in no segment and
    /// `outside` asks for such pointers; `None` when no check of this
    /// window's walk is owed: `v` lies in another window, whose walk looks
    /// at it, or outside every segment when `outside` does not ask.
    #[inline(always)]
    fn unit_elsewhere(&self, v: u64, outside: bool) -> Option<usize> {
        match self.bit(v) {
            Some(b) if b.wrapping_sub(self.window) < self.window_end - self.window => {
                Some(b - self.window)
            }
            Some(_) => None,
            None => outside.then_some(OUTSIDE),
        }
    }

    /// Are all of `units` live starts in the record? Asks for the memory of
    /// each before reading any.
    #[inline(always)]
    fn units_live(&self, units: &[u32]) -> bool {
        for &u in units {
            self.live.prefetch(u as usize);
        }
        let mut dead = 0usize;
        for &u in units {
            dead += usize::from(!self.live.get(u as usize));
        }
        dead == 0
    }

    /// The addresses of the first range that fall in the window, as (first
    /// address, bytes, unit of the first address): most pointers of most
    /// heaps, told apart by one comparison.
    fn fast_range(&self) -> (u64, u64, usize) {
        let window = self.window;
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
        })
    }

    /// The pointer findings of one piece, described as [`pointers_in`](Self::pointers_in) says.
    fn pointer_findings_in(&self, p: &Piece<'_>, cap: usize, outside: bool) -> (Vec<Keyed>, u64) {
        let mut found = Vec::new();
        let mut dropped = 0u64;
        let mut batch = [Pending::default(); BATCH];
        let mut len = 0;
        let (fast_lo, fast_len, fast_unit) = self.fast_range();
        for (obj, body) in live_bodies::<L>(p) {
            for (j, c) in body.chunks_exact(L::W).enumerate() {
                let v = L::get(c);
                if self.word.is_immediate(v) {
                    continue;
                }
                let off = v.wrapping_sub(fast_lo);
                let unit = if off < fast_len && v & 7 == 0 {
                    fast_unit + usize_of(off >> 3)
                } else {
                    match self.unit_elsewhere(v, outside) {
                        Some(unit) => unit,
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
    /// asking for the word of the record of starts that the second reads:
    /// the findings, in the batch's order, join `found`, at most `cap`
    /// described, the rest counted in `dropped`.
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

    /// Bytes of the free chunk at `a`, headers included.
    fn chunk_bytes(&self, a: u64) -> u64 {
        let heap = self.heap;
        let n = heap.num_slots(NewAddr::from_heap_word(a)).unwrap_or(0);
        let over = heap
            .header_at(NewAddr::from_heap_word(a))
            .is_some_and(|h| h.raw_num_slots() == 255);
        self.word.body_bytes(n).unwrap_or(0) + if over { 8 } else { 0 }
    }

    /// The chains of the free lists of exact sizes (heads 1 and up), walked
    /// side by side, a step of each in turn with the next chunk of each
    /// asked for ahead: the chunks' headers lie all over the heap, and one
    /// chain alone waits on memory at every step. The number of chunks
    /// they reach when every one is a free chunk of its list's size and
    /// none loops; `None` otherwise, and the lists are walked again one by
    /// one to say what is wrong.
    fn lists_clean(&self, fl: NewAddr, lists: u64, budget: u64) -> Option<u64> {
        let heap = self.heap;
        // (bytes of the list's chunks, the chunk, steps taken)
        let mut chains: Vec<(u64, u64, u64)> = (1..lists)
            .filter_map(|i| {
                let p = heap.slot(fl, i).unwrap_or(0);
                (p != 0).then_some((i * 8, p, 0))
            })
            .collect();
        let mut reached = 0u64;
        while !chains.is_empty() {
            let mut k = 0;
            while let Some(&(size, p, steps)) = chains.get(k) {
                if !self.is_free(p) || self.chunk_bytes(p) != size || steps >= budget {
                    return None;
                }
                reached += 1;
                let next = heap
                    .slot(NewAddr::from_heap_word(p), FREE_CHUNK_NEXT)
                    .unwrap_or(0);
                if next == 0 {
                    chains.swap_remove(k);
                } else {
                    heap.prefetch(NewAddr::from_heap_word(next));
                    chains[k] = (size, next, steps + 1);
                    k += 1;
                }
            }
        }
        Some(reached)
    }

    /// §3.5.1: list heads, chains and the tree of large chunks.
    fn free_lists(&mut self) {
        let heap = self.heap;
        let fl = NewAddr::from_heap_word(self.nil + 48);
        let lists = self.word.num_free_lists();
        if heap.num_slots(fl) != Some(lists) {
            return;
        }
        let budget = self.report.free_chunks + 1;
        let clean = self.lists_clean(fl, lists, budget);
        let mut reached = clean.unwrap_or(0);
        for i in (1..lists).filter(|_| clean.is_none()) {
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
                if self.chunk_bytes(p) != i * 8 {
                    self.error(
                        FindingKind::FreeSpace,
                        p,
                        format!(
                            "free list {i} holds a chunk of {} bytes, not {}",
                            self.chunk_bytes(p),
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
            let size = self.chunk_bytes(node);
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
                if !self.is_free(p) || self.chunk_bytes(p) != size {
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
                    let cs = self.chunk_bytes(child);
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

    /// The branch-free reading of an object's oop slots and method header
    /// agrees with the plain one, for every format, small slot counts and
    /// method headers of every kind: SmallIntegers counting fewer, as many
    /// and more literals than there are slots, negative ones, and pointers.
    #[test]
    fn branch_free_slot_counts_match_the_plain_reading() {
        fn check<L: Layout>() {
            let w = L::WORD;
            let mut headers: Vec<u64> = (0..6).map(|lits| w.encode_small_integer(lits)).collect();
            headers.extend([
                w.encode_small_integer(-1),
                w.encode_small_integer(0x7FFF | 1 << 20),
                0,
                0x1000,
                w.encode_small_integer(3) | 2,
            ]);
            for fmt in 0..32u8 {
                for n in 0..5u64 {
                    for &hdr in &headers {
                        let mut bytes = vec![0u8; 8 + 8 * L::W];
                        L::set_slot(&mut bytes, 0, 0, hdr);
                        let obj = Obj {
                            offset: 0,
                            header: ObjHeader::new(40, fmt, u8::try_from(n).unwrap(), 1),
                            num_slots: n,
                        };
                        let h = obj.header;
                        let small = w.small_integer(L::slot(&bytes, 0, 0));
                        let lits = small.map(|v| (v & METHOD_NUM_LITERALS_MASK).cast_unsigned());
                        let want = if h.format() <= FMT_LAST_POINTER {
                            usize_of(n)
                        } else if h.is_compiled_method() && n > 0 {
                            lits.map_or(0, |l| usize_of(l + 1).min(usize_of(n)))
                        } else {
                            0
                        };
                        let what = format!("{:?}, format {fmt}, {n} slots, header {hdr:#x}", w);
                        assert_eq!(pointer_slots::<L>(&bytes, &obj), want, "{what}");
                        let fits = !h.is_compiled_method() || lits.is_some_and(|l| l < n);
                        assert_eq!(method_header_fits::<L>(&bytes, &obj), fits, "{what}");
                    }
                }
            }
        }
        check::<L32>();
        check::<L64>();
    }

    /// Both records answer as a set of their starts does, at every unit:
    /// starts at even and odd units, dense runs (a start every 16 bytes)
    /// across bytes and words, sparse stretches; recorded by one marker, or
    /// by three markers each taking a stretch (on three threads), their
    /// words shared at the stretches' ends.
    #[test]
    fn records_answer_as_the_set_of_starts() {
        fn check<R: Live>(want: &[usize], units: usize) {
            let set: std::collections::BTreeSet<usize> = want.iter().copied().collect();
            let mut one = R::with_room(units);
            let mut m = Marker::new();
            for &i in want {
                one.add(&mut m, i);
            }
            one.flush(&mut m);
            let three = R::with_room(units);
            let cut = [0, want.len() / 3 + 1, 2 * want.len() / 3 + 3, want.len()];
            std::thread::scope(|sc| {
                for k in 0..3 {
                    let (three, part) = (&three, &want[cut[k]..cut[k + 1]]);
                    sc.spawn(move || {
                        let mut m = Marker::new();
                        for &i in part {
                            three.add(&mut m, i);
                        }
                        three.flush(&mut m);
                    });
                }
            });
            for i in 0..units + 200 {
                assert_eq!(one.get(i), set.contains(&i), "unit {i}");
                assert_eq!(three.get(i), set.contains(&i), "unit {i}");
            }
            one.clear();
            assert!((0..units).all(|i| !one.get(i)));
        }
        let units = 80_000;
        let mut want = Vec::new();
        let mut i = 1;
        let mut k = 0u64;
        while i < units {
            want.push(i);
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
        assert!(want.len() > 2000, "{} starts", want.len());
        check::<LiveBits>(&want, units);
        check::<LiveTrits>(&want, units);
        // Every block full, first and second words alternating.
        let dense: Vec<usize> = (0..units / 2).map(|k| 2 * k + (k / 3) % 2).collect();
        check::<LiveBits>(&dense, units);
        check::<LiveTrits>(&dense, units);
    }

    /// The list turns into a bitmap when it grows past half a bitmap's
    /// bytes, and answers the same before and after, pushed one by one or
    /// extended by lists.
    #[test]
    fn free_starts_answer_the_same_as_list_and_as_bitmap() {
        let bits = 1 << 20;
        let limit = bits / 128 + 1024;
        let list_of = |v: Vec<usize>| {
            let mut l = StartList::default();
            for i in v {
                l.push(i);
            }
            l
        };
        let mut free = FreeStarts::List(StartList::default());
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
        let list = FreeStarts::List(list_of(want.iter().copied().collect()));
        // Extended in two steps: a list taken whole, then one pushed.
        let mut joined = FreeStarts::List(StartList::default());
        joined.extend(list_of((0..100).map(at).collect()), bits);
        joined.extend(list_of((100..k).map(at).collect()), bits);
        assert!(matches!(joined, FreeStarts::Bits(_)));
        let mut sealed = FreeStarts::List(list_of(want.iter().copied().collect()));
        sealed.seal(bits);
        assert!(matches!(sealed, FreeStarts::Indexed(..)));
        // Sparse starts, and none at all, indexed too.
        let sparse_want: Vec<usize> = (0..50).map(|k| k * k * 331 + 7).collect();
        let mut sparse = FreeStarts::List(list_of(sparse_want.clone()));
        sparse.seal(bits);
        let mut none = FreeStarts::List(StartList::default());
        none.seal(bits);
        for i in 0..bits {
            assert_eq!(sparse.contains(i), sparse_want.contains(&i), "bit {i}");
            assert!(!none.contains(i), "bit {i}");
        }
        for i in 0..at(k) + 8 {
            assert_eq!(free.contains(i), want.contains(&i), "bit {i}");
            assert_eq!(sealed.contains(i), want.contains(&i), "bit {i}");
            assert_eq!(list.contains(i), want.contains(&i), "bit {i}");
            assert_eq!(joined.contains(i), want.contains(&i), "bit {i}");
        }
    }

    /// A list of starts keeps four bytes an index up to 2^32 - 1, widens
    /// at the first index past it, and answers the same either way.
    #[test]
    fn start_lists_widen_past_32_bits() {
        let top = u32::MAX as usize;
        let mut l = StartList::default();
        for i in [3, 17, top - 1, top] {
            l.push(i);
        }
        assert!(matches!(l, StartList::Narrow(_)));
        assert!(l.contains(top) && l.contains(17) && !l.contains(16));
        assert!(!l.contains(top + 1));
        l.push(top + 5);
        assert!(matches!(l, StartList::Wide(_)));
        assert_eq!(
            l.indices().collect::<Vec<_>>(),
            [3, 17, top - 1, top, top + 5]
        );
        assert!(l.contains(top + 5) && l.contains(3) && !l.contains(top + 4));
        assert_eq!(l.len(), 5);
    }
}
