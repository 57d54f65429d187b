//! The object memory: one way to reach every object of a running image,
//! wherever it lives (old-space segments, perm space, eden, the survivor
//! spaces), and every change an interpreter makes to them.
//!
//! [`ObjectMemory`] owns the loaded heap (old space and perm space, whose
//! raw bytes the loader's [`LoadedHeap`] keeps in its reservations) and new
//! space. It reads and writes objects by indexing those byte slices: no
//! `unsafe`, every access bounds checked, and every error names the object
//! or address involved ([`MemoryError`]). What it knows about objects'
//! meaning (§3 of the format reference) lives here and nowhere else: slot
//! stores with the generational write barrier, eden allocation with Spur
//! headers, identity hashes, one-way become, walks, the class table, and the
//! changes made to a loaded heap before it resumes (boxed floats in the
//! host's word order, the headroom turned into a free chunk).
//!
//! New space is collected by a scavenger ([`ObjectMemory::scavenge`]):
//! eden and past space are copied into future space (or tenured into old
//! space), starting from the caller's roots and the remembered set. Old
//! space is allocated from the free lists and grows (into the reserved
//! headroom, then by new segments) when they are spent.
//!
//! What it leaves to its caller: choosing the safe points at which objects
//! move (an allocation past the scavenge threshold still succeeds, and one
//! that eden cannot hold goes to old space; both raise
//! [`ObjectMemory::scavenge_wanted`]), and the interpreter's own
//! registers, which it passes as roots to a scavenge and re-reads through
//! [`ObjectMemory::forwarded`] (or passes as roots) after a become.

// Errors are built lazily (`ok_or_else`) even where clippy finds them
// cheap: an eagerly built `MemoryError` is dropped through its drop glue on
// every successful fetch and store, which cost the interpreter a quarter of
// its time (benches/interp.rs, measured under perf).
#![allow(clippy::unnecessary_lazy_evaluations)]

mod alloc;
mod error;
mod forward;
mod grow;
mod old_space;
mod oop;
mod scavenge;
mod tenure;
mod view;
mod walk;

use spur_format::raw::{
    CLASS_TABLE_MAJOR_SHIFT, CLASS_TABLE_PAGE_SLOTS, CLASS_TABLE_ROOT_SLOTS, FMT_BYTES,
    FMT_COMPILED_METHOD, HASH_MASK, HASH_SHIFT, OVERFLOW_SLOTS, REMEMBERED_SHIFT,
};
use spur_format::{NewAddr, ObjHeader, WordSize};
use spur_loader::LoadedHeap;

use crate::class_table::ClassLayout;
use crate::new_space::NewSpace;
use crate::settings::HashSeed;

pub use error::MemoryError;
pub use grow::GcStats;
pub use old_space::ClaimedHeadroom;
pub use oop::{
    character, from_character, from_small_float, from_small_int, small_float, small_int,
    small_int_range, Oop,
};
pub use scavenge::Scavenged;
pub use tenure::Tenured;
pub use view::ReadView;
pub use walk::Objects;

/// Where an object lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    /// A segment of old space, as loaded.
    Old,
    /// Pharo's perm space (§6): objects that never move.
    Perm,
    /// Eden: where new objects are allocated.
    Eden,
    /// One of the two survivor spaces of new space.
    Survivor,
}

/// What eden allocation has produced so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocStats {
    /// Objects allocated.
    pub objects: u64,
    /// Bytes allocated, overflow words and headers included.
    pub bytes: u64,
}

/// One old-space segment's objects, by address.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u64,
    /// Where the segment's bridge begins.
    end: u64,
    seg: usize,
}

/// A `u64` index or length as a `usize`: exact on 64-bit hosts; on a
/// narrower host a value that does not fit becomes `usize::MAX`, which no
/// slice holds, so the access that uses it fails its bounds check.
#[inline(always)]
fn ix(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

#[inline(always)]
fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

#[inline(always)]
fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

/// The object memory of a running image: old space, perm space, new space,
/// the remembered set, the identity-hash generator and allocation counters.
#[derive(Debug)]
pub struct ObjectMemory {
    heap: LoadedHeap,
    word: WordSize,
    spans: Vec<Span>,
    perm: Option<(u64, u64)>,
    new_space: Option<NewSpace>,
    young_start: u64,
    young_len: u64,
    past: (u64, u64),
    /// Where past space's survivors end.
    past_top: u64,
    future: (u64, u64),
    /// Eden allocation past this address asks for a scavenge.
    threshold: u64,
    /// Survivors of past space below this address are tenured (0: none), §4.4.
    tenure_threshold: u64,
    /// An allocation went to old space for want of eden: scavenge soon.
    eden_overflowed: bool,
    gc: GcStats,
    /// The most bytes old space may grow by (`None`: as much as the machine gives).
    growth_limit: Option<u64>,
    eden_start: u64,
    eden_end: u64,
    eden_top: u64,
    remembered: Vec<Oop>,
    last_hash: u64,
    allocated: AllocStats,
    nil: Oop,
    false_object: Oop,
    true_object: Oop,
    special_objects: Oop,
    hidden_roots: Option<Oop>,
    class_layout: Option<ClassLayout>,
}

impl ObjectMemory {
    /// The object memory of a loaded heap, with no new space yet (eden
    /// holds nothing until [`Runtime::wire`](crate::Runtime::wire) attaches
    /// one). Nothing is checked or changed: reading a broken heap answers
    /// errors, not panics.
    pub fn new(heap: LoadedHeap) -> Self {
        let word = heap.word();
        let nil = Oop::from_addr(heap.nil());
        let special_objects = Oop::from_addr(heap.special_objects());
        let seed = HashSeed::from_header(heap.header()).seed;
        let mut mem = ObjectMemory {
            word,
            spans: Vec::new(),
            perm: heap.perm_space().map(|p| (p.start, p.start + p.size)),
            new_space: None,
            young_start: 0,
            young_len: 0,
            past: (0, 0),
            past_top: 0,
            future: (0, 0),
            threshold: 0,
            tenure_threshold: 0,
            eden_overflowed: false,
            gc: GcStats::default(),
            growth_limit: None,
            eden_start: 0,
            eden_end: 0,
            eden_top: 0,
            remembered: Vec::new(),
            last_hash: u64::from(seed.max(1)),
            allocated: AllocStats::default(),
            nil,
            false_object: Oop::from_bits(nil.bits() + 16),
            true_object: Oop::from_bits(nil.bits() + 32),
            special_objects,
            hidden_roots: None,
            class_layout: None,
            heap,
        };
        mem.refresh_spans();
        // The free lists are the 4th object (nil + 48), the hidden roots the 5th (§4.1).
        mem.hidden_roots = mem.object_after(Oop::from_bits(nil.bits() + 48));
        mem
    }

    /// Re-reads the segments' extents from the heap (after one grew).
    fn refresh_spans(&mut self) {
        self.spans = self
            .heap
            .segments()
            .iter()
            .enumerate()
            .map(|(seg, s)| Span {
                start: s.new_start.get(),
                end: s.objects_end().get(),
                seg,
            })
            .collect();
    }

    /// Takes `new_space` as this memory's new space. Eden starts empty.
    pub(crate) fn attach_new_space(&mut self, new_space: NewSpace) {
        self.young_start = new_space.start().get();
        self.young_len = new_space.end().get() - self.young_start;
        let p = new_space.past_space();
        let f = new_space.future_space();
        let e = new_space.eden();
        self.past = (p.start, p.end);
        self.past_top = p.start;
        self.future = (f.start, f.end);
        self.threshold = new_space.scavenge_threshold().get();
        self.eden_start = e.start;
        self.eden_end = e.end;
        self.eden_top = e.start;
        self.new_space = Some(new_space);
    }

    /// The loaded heap (old space and perm space), for what the loader
    /// reports: header, segments, placement, timings.
    pub fn heap(&self) -> &LoadedHeap {
        &self.heap
    }
    /// Gives the heap back, releasing new space.
    pub fn into_heap(self) -> LoadedHeap {
        self.heap
    }
    /// New space, once attached.
    pub fn new_space(&self) -> Option<&NewSpace> {
        self.new_space.as_ref()
    }

    /// The heap's word size.
    #[inline(always)]
    pub fn word(&self) -> WordSize {
        self.word
    }
    /// nil: the first object of old space.
    #[inline(always)]
    pub fn nil(&self) -> Oop {
        self.nil
    }
    /// true, at nil + 32.
    #[inline(always)]
    pub fn true_object(&self) -> Oop {
        self.true_object
    }
    /// false, at nil + 16.
    #[inline(always)]
    pub fn false_object(&self) -> Oop {
        self.false_object
    }
    /// The special objects array (re-read it after a become).
    pub fn special_objects(&self) -> Oop {
        self.special_objects
    }
    /// Slot `index` of the special objects array; nil when the array is shorter.
    pub fn special(&self, index: usize) -> Oop {
        self.fetch(self.special_objects, index as u64)
            .unwrap_or(self.nil)
    }
    /// The hidden-roots object (the 5th object, §4.2), when the heap has one.
    pub fn hidden_roots(&self) -> Option<Oop> {
        self.hidden_roots
    }
    /// The free-lists object (the 4th object, §4.1).
    pub fn free_lists(&self) -> Oop {
        Oop::from_bits(self.nil.bits() + 48)
    }
    /// The identity-hash generator's state (`lastHash`, written back by a snapshot).
    pub fn last_hash(&self) -> u64 {
        self.last_hash
    }

    // ---- locating -------------------------------------------------------

    #[inline(always)]
    fn in_young(&self, a: u64) -> bool {
        a.wrapping_sub(self.young_start) < self.young_len
    }

    /// The bytes of the space holding `a` (a segment's objects, perm space or
    /// new space) and the offset of `a` in them.
    #[inline(always)]
    fn locate(&self, a: u64) -> Option<(&[u8], usize)> {
        let y = a.wrapping_sub(self.young_start);
        if y < self.young_len {
            return Some((self.new_space.as_ref()?.bytes(), ix(y)));
        }
        if let Some(s) = self.span_of(a) {
            let b = self.heap.segment_bytes(s.seg);
            return Some((b.get(..ix(s.end - s.start))?, ix(a - s.start)));
        }
        let (ps, pe) = self.perm?;
        if a >= ps && a < pe {
            return Some((self.heap.perm_bytes()?, ix(a - ps)));
        }
        None
    }

    #[inline(always)]
    fn locate_mut(&mut self, a: u64) -> Option<(&mut [u8], usize)> {
        let y = a.wrapping_sub(self.young_start);
        if y < self.young_len {
            return Some((self.new_space.as_mut()?.bytes_mut(), ix(y)));
        }
        if let Some(s) = self.span_of(a) {
            let b = self.heap.segment_bytes_mut(s.seg);
            return Some((b.get_mut(..ix(s.end - s.start))?, ix(a - s.start)));
        }
        let (ps, pe) = self.perm?;
        if a >= ps && a < pe {
            return Some((self.heap.perm_bytes_mut()?, ix(a - ps)));
        }
        None
    }

    #[inline(always)]
    fn span_of(&self, a: u64) -> Option<Span> {
        let s = if let [s] = self.spans.as_slice() {
            *s
        } else {
            let i = self
                .spans
                .partition_point(|s| s.start <= a)
                .checked_sub(1)?;
            self.spans[i]
        };
        (a >= s.start && a < s.end).then_some(s)
    }

    /// Checks `obj` is a pointer to an 8-aligned address of a space.
    #[inline(always)]
    fn pointer(&self, obj: Oop) -> Result<u64, MemoryError> {
        let a = obj.bits();
        if self.word.is_immediate(a) {
            return Err(MemoryError::Immediate { oop: a });
        }
        if a & 7 != 0 {
            return Err(MemoryError::NotAnObject { addr: a });
        }
        Ok(a)
    }

    /// The bytes holding `obj`, its offset in them and its header.
    #[inline(always)]
    fn object(&self, obj: Oop) -> Result<(&[u8], usize, ObjHeader), MemoryError> {
        let a = self.pointer(obj)?;
        let (b, off) = self
            .locate(a)
            .ok_or_else(|| MemoryError::NotAnObject { addr: a })?;
        let h = le_u64(b, off).ok_or_else(|| MemoryError::NotAnObject { addr: a })?;
        Ok((b, off, ObjHeader(h)))
    }

    /// Slot count from the header, or from the overflow word before it.
    #[inline(always)]
    fn slots_of(&self, b: &[u8], off: usize, h: ObjHeader, a: u64) -> Result<u64, MemoryError> {
        let raw = h.raw_num_slots();
        if raw != OVERFLOW_SLOTS {
            return Ok(raw);
        }
        let w = off
            .checked_sub(8)
            .and_then(|o| le_u64(b, o))
            .ok_or_else(|| MemoryError::NotAnObject { addr: a })?;
        Ok(self.word.overflow_slots(w))
    }

    #[inline(always)]
    fn read_word(&self, b: &[u8], at: usize) -> Option<u64> {
        match self.word {
            WordSize::W64 => le_u64(b, at),
            WordSize::W32 => le_u32(b, at).map(u64::from),
        }
    }

    /// Writes the word `v` at `at` of `b`; the caller checked the range.
    #[inline(always)]
    fn put_word(word: WordSize, b: &mut [u8], at: usize, v: u64) -> Option<()> {
        match word {
            WordSize::W64 => b
                .get_mut(at..at.checked_add(8)?)?
                .copy_from_slice(&v.to_le_bytes()),
            WordSize::W32 => b
                .get_mut(at..at.checked_add(4)?)?
                .copy_from_slice(&u32::try_from(v).ok()?.to_le_bytes()),
        }
        Some(())
    }

    // ---- where objects live -----------------------------------------------

    /// Where the object `oop` points at lives; `None` for immediates and
    /// addresses outside every space.
    pub fn space_of(&self, oop: Oop) -> Option<Space> {
        let a = self.pointer(oop).ok()?;
        if self.in_young(a) {
            let within = |r: (u64, u64)| a >= r.0 && a < r.1;
            if within(self.past) || within(self.future) {
                return Some(Space::Survivor);
            }
            return Some(Space::Eden);
        }
        if self.span_of(a).is_some() {
            return Some(Space::Old);
        }
        self.perm
            .filter(|&(s, e)| a >= s && a < e)
            .map(|_| Space::Perm)
    }

    /// Is `oop` a pointer into new space?
    #[inline(always)]
    pub fn is_young(&self, oop: Oop) -> bool {
        !oop.is_immediate(self.word) && self.in_young(oop.bits())
    }

    // ---- reading ----------------------------------------------------------

    /// The header of `obj`.
    #[inline]
    pub fn header(&self, obj: Oop) -> Result<ObjHeader, MemoryError> {
        self.object(obj).map(|(_, _, h)| h)
    }

    /// The class index of `oop`: its header's, or for an immediate the one
    /// its tag names (§3.3: 1, 2, 4 on 64-bit; 1 and 2 on 32-bit).
    #[inline]
    pub fn class_index_of(&self, oop: Oop) -> Result<u32, MemoryError> {
        let v = oop.bits();
        match self.word {
            WordSize::W64 => match v & 7 {
                0 => self.header(oop).map(|h| h.class_index()),
                1 => Ok(1),
                2 => Ok(2),
                4 => Ok(4),
                _ => Err(MemoryError::NotAnObject { addr: v }),
            },
            WordSize::W32 => match v & 3 {
                0 => self.header(oop).map(|h| h.class_index()),
                2 => Ok(2),
                _ => Ok(1),
            },
        }
    }

    /// The format of `obj` (§3.2).
    #[inline]
    pub fn format(&self, obj: Oop) -> Result<u8, MemoryError> {
        self.header(obj).map(|h| h.format())
    }

    /// The slot count of `obj`, from the overflow word when it has one.
    #[inline]
    pub fn num_slots(&self, obj: Oop) -> Result<u64, MemoryError> {
        let (b, off, h) = self.object(obj)?;
        self.slots_of(b, off, h, obj.bits())
    }

    /// Slot `i` of `obj`: a pointer slot, or one of the words of any other
    /// format (slot 0 and the literals of a CompiledMethod are oops).
    #[inline]
    pub fn fetch(&self, obj: Oop, i: u64) -> Result<Oop, MemoryError> {
        match self.fetch_fast(obj, i) {
            Some(v) => Ok(v),
            None => self.fetch_checked(obj, i),
        }
    }

    /// [`fetch`](Self::fetch) small enough to inline into the interpreter's
    /// loop: `None` whenever [`fetch_checked`](Self::fetch_checked) must
    /// answer (an immediate, an address outside the spaces, a slot out of
    /// range).
    #[inline(always)]
    fn fetch_fast(&self, obj: Oop, i: u64) -> Option<Oop> {
        let a = obj.bits();
        // Objects are 8-aligned: this also rules out the immediates of both widths.
        if a & 7 != 0 {
            return None;
        }
        let (b, off) = self.locate(a)?;
        let n = Self::fast_slots(self.word, b, off)?;
        if i >= n {
            return None;
        }
        let at = ix(i)
            .checked_mul(ix(self.word.bytes()))?
            .checked_add(off + 8)?;
        self.read_word(b, at).map(Oop::from_bits)
    }

    /// The header and slot count of the object whose header is at `off`
    /// of `b` (the overflow word before it read when it has one).
    #[inline(always)]
    fn fast_header(word: WordSize, b: &[u8], off: usize) -> Option<(ObjHeader, u64)> {
        let h = ObjHeader(le_u64(b, off)?);
        let raw = h.raw_num_slots();
        if raw != OVERFLOW_SLOTS {
            return Some((h, raw));
        }
        Some((h, word.overflow_slots(le_u64(b, off.checked_sub(8)?)?)))
    }

    #[inline(always)]
    fn fast_slots(word: WordSize, b: &[u8], off: usize) -> Option<u64> {
        Self::fast_header(word, b, off).map(|(_, n)| n)
    }

    /// [`fetch`](Self::fetch) with every check and its error.
    #[inline(never)]
    fn fetch_checked(&self, obj: Oop, i: u64) -> Result<Oop, MemoryError> {
        let (b, off, h) = self.object(obj)?;
        let n = self.slots_of(b, off, h, obj.bits())?;
        if i >= n {
            return Err(MemoryError::NoSuchSlot {
                obj: obj.bits(),
                index: i,
                num_slots: n,
            });
        }
        let at = off
            .checked_add(8)
            .and_then(|o| o.checked_add(ix(i).checked_mul(ix(self.word.bytes()))?));
        at.and_then(|at| self.read_word(b, at))
            .map(Oop::from_bits)
            .ok_or_else(|| MemoryError::NotAnObject { addr: obj.bits() })
    }

    // ---- an interpreter's frame ------------------------------------------

    /// Where the slots of `obj` begin in new space, and how many it has,
    /// when `obj` is a young, mutable object of a 64-bit heap whose whole
    /// body lies in new space: the byte offset of slot 0, which
    /// [`young_word`](Self::young_word) and
    /// [`set_young_word`](Self::set_young_word) take (slot `i` is at
    /// `offset + 8 * i`). An interpreter reaches its active context's slots
    /// through them without the locating and header checks of
    /// [`fetch`](Self::fetch) and [`store`](Self::store); no write barrier
    /// is needed since only old objects are remembered. The offset holds
    /// while `obj` stays where it is with the same header: whoever moves
    /// objects (a scavenge, a become, a tenuring) or changes a header must
    /// make its users ask again.
    #[inline]
    pub fn young_slots(&self, obj: Oop) -> Option<(usize, u64)> {
        let (h, base, n) = self.young_object(obj)?;
        (!h.is_immutable()).then_some((base, n))
    }

    /// [`young_slots`](Self::young_slots) with the header, for a young
    /// object of a 64-bit heap whether mutable or not: its header, the
    /// offset of its slot 0 and its slot count. Only an object that is not
    /// immutable may be written through
    /// [`set_young_word`](Self::set_young_word).
    #[inline]
    pub fn young_object(&self, obj: Oop) -> Option<(ObjHeader, usize, u64)> {
        if self.word != WordSize::W64 {
            return None;
        }
        let a = obj.bits();
        if a & 7 != 0 || !self.in_young(a) {
            return None;
        }
        let off = ix(a - self.young_start);
        let b = self.new_space.as_ref()?.bytes();
        let (h, n) = Self::fast_header(self.word, b, off)?;
        let base = off.checked_add(8)?;
        let end = base.checked_add(ix(n).checked_mul(8)?)?;
        (end <= b.len()).then_some((h, base, n))
    }

    /// New space's bytes, writable, from its start: offset `o` is the
    /// byte at the address `start + o`, as the offsets
    /// [`young_slots`](Self::young_slots) answers are. For several word
    /// accesses to bodies it answered, while they hold, through one slice:
    /// no barrier, no header check.
    #[inline(always)]
    pub fn young_bytes_mut(&mut self) -> Option<&mut [u8]> {
        self.new_space.as_mut().map(NewSpace::bytes_mut)
    }

    /// The header of `oop` when it is a young object (of either word
    /// size); `None` for anything else, which [`header`](Self::header)
    /// then answers.
    #[inline(always)]
    pub fn young_header(&self, oop: Oop) -> Option<ObjHeader> {
        let a = oop.bits();
        if a & 7 != 0 || !self.in_young(a) {
            return None;
        }
        let off = ix(a - self.young_start);
        le_u64(self.new_space.as_ref()?.bytes(), off).map(ObjHeader)
    }

    /// The word at byte offset `at` of new space, read as an oop; `None`
    /// past its end. Meant for offsets inside a body that
    /// [`young_slots`](Self::young_slots) answered.
    #[inline(always)]
    pub fn young_word(&self, at: usize) -> Option<Oop> {
        le_u64(self.new_space.as_ref()?.bytes(), at).map(Oop::from_bits)
    }

    /// Writes `value` as the word at byte offset `at` of new space, with no
    /// barrier and no header check; false, with nothing written, past its
    /// end. Meant only for offsets inside a body that
    /// [`young_slots`](Self::young_slots) answered, while it holds.
    #[inline(always)]
    pub fn set_young_word(&mut self, at: usize, value: Oop) -> bool {
        match self.new_space.as_mut() {
            Some(ns) => Self::put_word(WordSize::W64, ns.bytes_mut(), at, value.bits()).is_some(),
            None => false,
        }
    }

    /// Offset and length of the bytes of `obj` that [`bytes`](Self::bytes) answers.
    #[inline]
    fn byte_range(
        &self,
        b: &[u8],
        off: usize,
        h: ObjHeader,
        a: u64,
    ) -> Result<(usize, usize), MemoryError> {
        let n = self.slots_of(b, off, h, a)?;
        let body = n
            .checked_mul(self.word.bytes())
            .ok_or_else(|| MemoryError::NotAnObject { addr: a })?;
        let fmt = h.format();
        let len = if fmt >= FMT_BYTES {
            body.checked_sub(u64::from(fmt & 7))
                .ok_or_else(|| MemoryError::WrongFormat {
                    obj: a,
                    format: fmt,
                    why: "its unused-byte count is larger than its body",
                })?
        } else {
            body
        };
        let start = off + 8;
        let len = ix(len);
        if start.checked_add(len).is_none_or(|e| e > b.len()) {
            return Err(MemoryError::NotAnObject { addr: a });
        }
        Ok((start, len))
    }

    /// The bytes of `obj`: exactly its bytes for byte formats and compiled
    /// methods (the unused bytes of the last word cut, §3.2), its whole body
    /// (every slot) otherwise.
    pub fn bytes(&self, obj: Oop) -> Result<&[u8], MemoryError> {
        let (b, off, h) = self.object(obj)?;
        let (start, len) = self.byte_range(b, off, h, obj.bits())?;
        Ok(&b[start..start + len])
    }

    /// The bytes of `obj`, writable (as [`bytes`](Self::bytes)). Refused for
    /// an immutable object.
    pub fn bytes_mut(&mut self, obj: Oop) -> Result<&mut [u8], MemoryError> {
        let (start, len) = {
            let (b, off, h) = self.object(obj)?;
            if h.is_immutable() {
                return Err(MemoryError::Immutable {
                    obj: obj.bits(),
                    index: 0,
                });
            }
            self.byte_range(b, off, h, obj.bits())?
        };
        let a = obj.bits();
        let (b, _) = self
            .locate_mut(a)
            .ok_or_else(|| MemoryError::NotAnObject { addr: a })?;
        Ok(&mut b[start..start + len])
    }

    /// The text of a byte object (format 16..23: a String, a Symbol), each
    /// byte read as a Latin-1 character.
    pub fn string(&self, obj: Oop) -> Option<String> {
        let f = self.format(obj).ok()?;
        if !(FMT_BYTES..FMT_COMPILED_METHOD).contains(&f) {
            return None;
        }
        Some(
            self.bytes(obj)
                .ok()?
                .iter()
                .map(|&b| char::from(b))
                .collect(),
        )
    }

    /// The object following `obj` in its space (past any overflow word), or
    /// `None` at the end of the space's objects.
    pub fn object_after(&self, obj: Oop) -> Option<Oop> {
        let (b, off, h) = self.object(obj).ok()?;
        let n = self.slots_of(b, off, h, obj.bits()).ok()?;
        let next = off.checked_add(ix(self.word.body_bytes(n)?))?;
        let w = le_u64(b, next)?;
        let skip = if w >> 56 == 0xFF { 8 } else { 0 };
        // The header must lie inside the space.
        le_u64(b, next + skip)?;
        Some(Oop::from_bits(obj.bits() + (next - off + skip) as u64))
    }

    // ---- writing ----------------------------------------------------------

    /// Stores `value` into slot `i` of `obj`, with the generational write
    /// barrier: an old (or perm) object that gets a young value is marked
    /// remembered (its header bit) and pushed on the remembered set, once.
    /// Refuses an immutable object, a slot out of range, and on a 32-bit
    /// heap a value wider than 32 bits. Nothing changes when it fails.
    #[inline]
    pub fn store(&mut self, obj: Oop, i: u64, value: Oop) -> Result<(), MemoryError> {
        if self.store_fast(obj, i, value) {
            return Ok(());
        }
        self.store_checked(obj, i, value)
    }

    /// [`store`](Self::store) into a young, mutable object (no barrier is
    /// needed: only old objects are remembered), small enough to inline
    /// into the interpreter's loop. False, with nothing
    /// written, whenever [`store_checked`](Self::store_checked) must do it.
    #[inline(always)]
    fn store_fast(&mut self, obj: Oop, i: u64, value: Oop) -> bool {
        let a = obj.bits();
        if a & 7 != 0 || !self.in_young(a) {
            return false;
        }
        let word = self.word;
        let off = ix(a - self.young_start);
        let Some(ns) = self.new_space.as_mut() else {
            return false;
        };
        let b = ns.bytes_mut();
        let Some((h, n)) = Self::fast_header(word, b, off) else {
            return false;
        };
        if h.is_immutable() || i >= n {
            return false;
        }
        let Some(at) = ix(i)
            .checked_mul(ix(word.bytes()))
            .and_then(|d| d.checked_add(off + 8))
        else {
            return false;
        };
        // A value too wide for a 32-bit heap is refused before anything is written.
        Self::put_word(word, b, at, value.bits()).is_some()
    }

    /// [`store`](Self::store) with every check, its error and the barrier.
    #[inline(never)]
    fn store_checked(&mut self, obj: Oop, i: u64, value: Oop) -> Result<(), MemoryError> {
        let word = self.word;
        let a = self.pointer(obj)?;
        let young_value = !value.is_immediate(word) && self.in_young(value.bits());
        let old_obj = !self.in_young(a);
        let remember = {
            let (b, off) = self
                .locate_mut(a)
                .ok_or_else(|| MemoryError::NotAnObject { addr: a })?;
            let h = ObjHeader(le_u64(b, off).ok_or_else(|| MemoryError::NotAnObject { addr: a })?);
            if h.is_immutable() {
                return Err(MemoryError::Immutable { obj: a, index: i });
            }
            let raw = h.raw_num_slots();
            let n = if raw == OVERFLOW_SLOTS {
                let w = off
                    .checked_sub(8)
                    .and_then(|o| le_u64(b, o))
                    .ok_or_else(|| MemoryError::NotAnObject { addr: a })?;
                word.overflow_slots(w)
            } else {
                raw
            };
            if i >= n {
                return Err(MemoryError::NoSuchSlot {
                    obj: a,
                    index: i,
                    num_slots: n,
                });
            }
            if word == WordSize::W32 && value.bits() > u64::from(u32::MAX) {
                return Err(MemoryError::TooWide {
                    value: value.bits(),
                });
            }
            let at = off
                .checked_add(8)
                .and_then(|o| o.checked_add(ix(i).checked_mul(ix(word.bytes()))?))
                .ok_or_else(|| MemoryError::NotAnObject { addr: a })?;
            Self::put_word(word, b, at, value.bits())
                .ok_or_else(|| MemoryError::NotAnObject { addr: a })?;
            let remember = young_value && old_obj && !h.is_remembered();
            if remember {
                let marked = h.0 | 1 << REMEMBERED_SHIFT;
                b[off..off + 8].copy_from_slice(&marked.to_le_bytes());
            }
            remember
        };
        if remember {
            self.remembered.push(obj);
        }
        Ok(())
    }

    /// Stores without the barrier or the immutability check: for the
    /// memory's own bookkeeping (free chunks, forwarders, hidden objects).
    fn store_raw(&mut self, obj: Oop, i: u64, value: u64) -> Result<(), MemoryError> {
        let word = self.word;
        let a = obj.bits();
        let n = self.num_slots(obj)?;
        if i >= n {
            return Err(MemoryError::NoSuchSlot {
                obj: a,
                index: i,
                num_slots: n,
            });
        }
        let (b, off) = self
            .locate_mut(a)
            .ok_or_else(|| MemoryError::NotAnObject { addr: a })?;
        let at = off + 8 + ix(i) * ix(word.bytes());
        Self::put_word(word, b, at, value).ok_or_else(|| MemoryError::NotAnObject { addr: a })
    }

    /// Replaces the header of `obj`.
    fn set_header(&mut self, obj: Oop, h: ObjHeader) -> Result<(), MemoryError> {
        let a = self.pointer(obj)?;
        let (b, off) = self
            .locate_mut(a)
            .ok_or_else(|| MemoryError::NotAnObject { addr: a })?;
        b.get_mut(off..off + 8)
            .ok_or_else(|| MemoryError::NotAnObject { addr: a })?
            .copy_from_slice(&h.0.to_le_bytes());
        Ok(())
    }

    /// The objects remembered by the write barrier: old objects that may
    /// hold young ones, each once, in the order they were remembered.
    pub fn remembered_set(&self) -> &[Oop] {
        &self.remembered
    }

    // ---- identity hashes --------------------------------------------------

    /// The identity hash of `obj`, assigned on first request: 22 bits, never
    /// 0, written into its header. A class's hash is its class-table index,
    /// already set. New hashes come from a Park–Miller generator seeded from
    /// the image's `lastHash` as the VMs seed theirs (§1.3: masked to 22
    /// bits, re-seeded from the clock when 0), masked to the 22 bits of the
    /// hash field. Whether the sequence is the VMs' own is not checked (the
    /// format reference does not give their generator); no image depends on
    /// it, only on hashes being stable and nonzero.
    pub fn identity_hash(&mut self, obj: Oop) -> Result<u32, MemoryError> {
        let h = self.header(obj)?;
        if h.hash() != 0 {
            return Ok(h.hash());
        }
        let hash = self.next_hash();
        self.set_header(
            obj,
            ObjHeader(h.0 | (u64::from(hash) & HASH_MASK) << HASH_SHIFT),
        )?;
        Ok(hash)
    }

    fn next_hash(&mut self) -> u32 {
        loop {
            // Park–Miller "minimal standard": 16807 × x mod (2^31 − 1), never 0 from a nonzero seed.
            self.last_hash = (self.last_hash.max(1) * 16807) % 0x7FFF_FFFF;
            let h = (self.last_hash & HASH_MASK) as u32;
            if h != 0 {
                return h;
            }
        }
    }

    // ---- classes ----------------------------------------------------------

    /// The class at `index` of the class table (§4.2), or `None` when the
    /// entry is nil or past the table's pages.
    pub fn class_at(&self, index: u32) -> Option<Oop> {
        let hidden = self.hidden_roots?;
        let major = u64::from(index >> CLASS_TABLE_MAJOR_SHIFT);
        if major >= CLASS_TABLE_ROOT_SLOTS {
            return None;
        }
        let page = self.fetch(hidden, major).ok()?;
        if page == self.nil || page.is_immediate(self.word) {
            return None;
        }
        let c = self
            .fetch(page, u64::from(index) & (CLASS_TABLE_PAGE_SLOTS - 1))
            .ok()?;
        (c != self.nil && !c.is_immediate(self.word)).then_some(c)
    }

    /// The class of any oop, immediates included.
    pub fn class_of(&self, oop: Oop) -> Option<Oop> {
        self.class_at(self.class_index_of(oop).ok()?)
    }

    /// The class-table index of `class` (its identity hash), when `class`
    /// is a class of the table: `classAt(hash(class)) == class`.
    pub fn class_index_of_class(&self, class: Oop) -> Option<u32> {
        let hash = self.header(class).ok()?.hash();
        (hash != 0 && self.class_at(hash) == Some(class)).then_some(hash)
    }

    /// Where classes keep their names, once the runtime has found it.
    pub fn class_layout(&self) -> Option<ClassLayout> {
        self.class_layout
    }

    pub(crate) fn set_class_layout(&mut self, layout: ClassLayout) {
        self.class_layout = Some(layout);
    }

    /// The name of `class` (`Foo`, or `Foo class` for a metaclass), when it
    /// is a class of the table and the class layout is known.
    pub fn class_name(&self, class: Oop) -> Option<String> {
        self.class_index_of_class(class)?;
        let layout = self.class_layout?;
        let meta = self.class_of(class) == Some(layout.metaclass);
        let named = if meta {
            self.fetch(class, layout.this_class_slot).ok()?
        } else {
            class
        };
        let name = self.string(self.fetch(named, layout.name_slot).ok()?)?;
        Some(if meta { format!("{name} class") } else { name })
    }

    // ---- immediates -------------------------------------------------------

    /// The value of a SmallInteger; `None` when `oop` is not one.
    #[inline(always)]
    pub fn small_int(&self, oop: Oop) -> Option<i64> {
        small_int(self.word, oop)
    }
    /// The SmallInteger of `v`; `None` when out of range (61 or 31 bits).
    #[inline(always)]
    pub fn from_small_int(&self, v: i64) -> Option<Oop> {
        from_small_int(self.word, v)
    }
    /// The code of a Character; `None` when `oop` is not one.
    #[inline(always)]
    pub fn character(&self, oop: Oop) -> Option<u32> {
        character(self.word, oop)
    }
    /// The Character of code `c`; `None` when a 32-bit heap cannot hold it (2^30 and up).
    #[inline(always)]
    pub fn from_character(&self, c: u32) -> Option<Oop> {
        from_character(self.word, c)
    }
    /// The value of a SmallFloat64 (64-bit heaps only).
    #[inline(always)]
    pub fn small_float(&self, oop: Oop) -> Option<f64> {
        small_float(self.word, oop)
    }
    /// The SmallFloat64 of `f`; `None` when its exponent is out of range.
    #[inline(always)]
    pub fn from_small_float(&self, f: f64) -> Option<Oop> {
        from_small_float(self.word, f)
    }

    /// The Option-answering read view, for code that treats what is not
    /// there as absent.
    pub fn view(&self) -> ReadView<'_> {
        ReadView::new(self)
    }

    /// The address of `oop`, when it is a pointer into one of the spaces.
    pub fn addr_of(&self, oop: Oop) -> Option<NewAddr> {
        self.space_of(oop)?;
        oop.addr(self.word)
    }
}

#[cfg(test)]
mod tests;
