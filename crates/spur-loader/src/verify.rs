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
    let _s = tracing::debug_span!("verify").entered();
    let n = threads.count();
    match heap.word() {
        WordSize::W64 => Verifier::<L64>::new(heap, n).run(),
        WordSize::W32 => Verifier::<L32>::new(heap, n).run(),
    }
}

/// One bit per 8-byte unit of the heap.
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

struct Verifier<'h, L: Layout> {
    heap: &'h LoadedHeap,
    word: WordSize,
    /// First bit of each segment in the bitmaps.
    bit_base: Vec<usize>,
    /// Headers of live objects (not free chunks, not bridges).
    live: Bitmap,
    /// Headers of free chunks.
    free: Bitmap,
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

impl<'h, L: Layout> Verifier<'h, L> {
    fn new(heap: &'h LoadedHeap, threads: usize) -> Self {
        let mut bit_base = Vec::with_capacity(heap.segments().len() + 1);
        let mut bits = 0usize;
        for s in heap.segments() {
            bit_base.push(bits);
            bits += (s.size / 8) as usize;
        }
        // Perm space's bits come last.
        bit_base.push(bits);
        bits += heap.perm_space().map_or(0, |p| (p.size / 8) as usize);
        Verifier {
            heap,
            word: heap.word(),
            bit_base,
            live: Bitmap::new(bits),
            free: Bitmap::new(bits),
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

    /// The bit of address `a`, if `a` is 8-aligned and among a segment's objects.
    #[inline(always)]
    fn bit(&self, a: u64) -> Option<usize> {
        if a & 7 != 0 {
            return None;
        }
        if let Some(p) = self.heap.perm_space().filter(|p| p.holds(a)) {
            return Some(self.bit_base[self.heap.segments().len()] + ((a - p.start) >> 3) as usize);
        }
        let i = self.heap.segment_of(NewAddr::from_heap_word(a))?;
        let s = &self.heap.segments()[i];
        Some(self.bit_base[i] + ((a - s.new_start.get()) >> 3) as usize)
    }

    fn is_live(&self, a: u64) -> bool {
        self.bit(a).is_some_and(|b| self.live.get(b))
    }

    fn is_free(&self, a: u64) -> bool {
        self.bit(a).is_some_and(|b| self.free.get(b))
    }

    fn run(mut self) -> Report {
        self.first_objects();
        self.walk();
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
        self.pointers();
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
                    self.free.set(bit);
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
                    self.live.set(bit);
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
                if !h.is_forwarder() {
                    self.live.set(base + (obj.offset >> 3));
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
    /// every [`SPLIT`] bytes; the pieces run on up to `threads` threads and
    /// their findings are merged in heap order, so the report is the one a
    /// single walk gives.
    fn pointers(&mut self) {
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
        let cap = MAX_FINDINGS.saturating_sub(self.report.errors.len());
        let threads = self.threads.min(pieces.len()).max(1);
        let results: Vec<(Vec<Finding>, u64)> = if threads == 1 {
            pieces.iter().map(|p| self.pointers_in(p, cap)).collect()
        } else {
            let next = std::sync::atomic::AtomicUsize::new(0);
            let this = &*self;
            let mut done: Vec<(usize, (Vec<Finding>, u64))> = std::thread::scope(|sc| {
                let workers: Vec<_> = (0..threads)
                    .map(|_| {
                        sc.spawn(|| {
                            let mut out = Vec::new();
                            loop {
                                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let Some(p) = pieces.get(k) else { break };
                                out.push((k, this.pointers_in(p, cap)));
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
        };
        for (found, dropped) in results {
            for f in found {
                if self.report.errors.len() < MAX_FINDINGS {
                    self.report.errors.push(f);
                } else {
                    self.report.errors_dropped += 1;
                }
            }
            self.report.errors_dropped += dropped;
        }
    }

    /// The pointer findings of one piece of the heap: at most `cap` of them
    /// described, the rest counted.
    fn pointers_in(&self, p: &Piece<'_>, cap: usize) -> (Vec<Finding>, u64) {
        let mut found = Vec::new();
        let mut dropped = 0u64;
        let mut pos = p.from;
        while pos < p.to {
            // The first walk reported any error; this one just stops there.
            let Ok((obj, next)) = spur_format::read::walk::step::<L>(p.bytes, pos, p.limit) else {
                break;
            };
            pos = next;
            let h = obj.header;
            if h.class_index() < CLASS_FORWARDER || !self.live.get(p.base + (obj.offset >> 3)) {
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
            for j in 0..count {
                let v = L::slot(p.bytes, obj.offset, j);
                if self.word.is_immediate(v) {
                    continue;
                }
                let ok = match self.bit(v) {
                    Some(b) => self.live.get(b),
                    None => false,
                };
                if ok {
                    continue;
                }
                if found.len() >= cap {
                    // Counted only: no need to say why.
                    dropped += 1;
                } else {
                    let addr = p.start + obj.offset as u64;
                    let why = self.diagnose(v);
                    found.push(Finding {
                        kind: FindingKind::Pointer,
                        addr,
                        what: format!("slot {j} holds {v:#x}, which {why}"),
                    });
                }
            }
        }
        (found, dropped)
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
