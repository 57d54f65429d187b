//! The scavenger: Ungar's generation scavenging as Spur does it
//! (`SpurGenerationScavenger` in VMMaker; this is a fresh implementation of
//! its rules, not a translation).
//!
//! * **Roots.** The caller's roots (the interpreter's registers and
//!   whatever else it keeps outside the heap), the special objects array,
//!   and the remembered set: the old (and perm) objects the write barrier
//!   marked as holding young references (`rememberedSet`). Old space is not
//!   scanned otherwise.
//! * **Copying.** Each young object reached (in eden or past space) is
//!   copied to the next free address of future space and its original
//!   becomes a forwarder to the copy (class index 8, format 7, slot 0 the
//!   copy, §3.2); the copies are then scanned in address order (Cheney),
//!   together with the objects tenured on the way, until none is left.
//! * **Tenuring by age** (`copyAndForward:`, `shouldBeTenured:`,
//!   `computeTenuringThreshold`). Survivors are copied in order, so the
//!   older ones lie lower in past space. When a scavenge leaves future
//!   space more than 90% full, the next one tenures every survivor of past
//!   space below `pastSpace.start + (1 − tenuringProportion) × size`, with
//!   `tenuringProportion` = 0.9; and a survivor that future space cannot
//!   hold is tenured too. A tenured copy that holds young references is
//!   remembered.
//! * **Weak objects** (format 4). Their fixed fields (instance variables)
//!   are strong; their indexable slots are weak: they are not followed, and
//!   once every strongly reachable object has been copied, each weak slot
//!   that reaches an object that was copied is updated to the copy, and
//!   each that reaches a young object that was not is set to nil, as the
//!   scavenger's weak-array processing does. Weak objects in old space are
//!   found through the remembered set like any other.
//! * **Contexts** are scanned up to their stack pointer only; the slots
//!   above it are dead and set to nil.
//! * **Ephemerons** (format 5) are treated as strong objects: their keys
//!   are kept alive and no ephemeron fires. A simplification of Spur's
//!   ephemeron processing, which the interpreter has no finalization
//!   process for.
//! * **Afterwards** the survivor spaces are swapped (`exchangeSurvivorSpaces`),
//!   eden is empty, and the remembered set holds exactly the old objects
//!   that still reach new space.

use spur_format::raw::{
    CLASS_FORWARDER, CLASS_FREE_CHUNK, CLASS_INDEX_MASK, CLASS_SEGMENT_BRIDGE, FMT_FORWARDED,
    FMT_WEAK, FORMAT_MASK, FORMAT_SHIFT, OVERFLOW_SLOTS, REMEMBERED_SHIFT,
};
use spur_format::{NewAddr, ObjHeader};

use super::grow::Lab;
use super::{ix, MemoryError, ObjectMemory, Oop, Tenured};

/// The proportion of past space that is not tenured when tenuring starts
/// (`tenuringProportion`), in tenths.
const TENURING_PROPORTION_TENTHS: u64 = 9;
/// A context's stack pointer slot, and the slot its first temporary is in.
const CONTEXT_STACKP: u64 = 2;
const CONTEXT_TEMP0: u64 = 6;
/// Slot 2 of a class: its format word, whose low 16 bits count its
/// instance variables.
const CLASS_FORMAT_SLOT: u64 = 2;

/// What one scavenge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scavenged {
    /// Objects copied into future space (now past space).
    pub survivor_objects: u64,
    /// Bytes they take there.
    pub survivor_bytes: u64,
    /// Objects copied into old space.
    pub tenured: Tenured,
    /// Weak slots set to nil.
    pub weak_slots_cleared: u64,
    /// Old objects remembered afterwards.
    pub remembered: u64,
}

/// The state of one pass.
struct Pass {
    /// Everything is tenured (for a snapshot), nothing copied to future space.
    tenure_all: bool,
    lab: Option<Lab>,
    future_top: u64,
    /// The class index of contexts (`MethodContext`/`Context`).
    context: Option<u32>,
    /// Tenured copies not scanned yet.
    tenured: Vec<Oop>,
    /// Weak objects whose weak slots wait until the end.
    weak: Vec<Oop>,
    remembered: Vec<Oop>,
    out: Scavenged,
}

impl ObjectMemory {
    /// A pass that copies survivors into future space, or (`tenure_all`)
    /// every one into old space.
    fn new_pass(&self, tenure_all: bool) -> Pass {
        Pass {
            tenure_all,
            lab: None,
            context: self.class_index_of_class(
                self.special(crate::special_objects::index::CLASS_METHOD_CONTEXT),
            ),
            future_top: self.future.0,
            tenured: Vec::new(),
            weak: Vec::new(),
            remembered: Vec::new(),
            out: Scavenged::default(),
        }
    }

    /// Has allocation passed the scavenge threshold (or gone to old space
    /// for want of eden) since the last scavenge? The caller should then
    /// [`scavenge`](Self::scavenge) at its next safe point.
    #[inline]
    pub fn scavenge_wanted(&self) -> bool {
        self.new_space.is_some() && (self.eden_top >= self.threshold || self.eden_overflowed)
    }

    /// Scavenges new space (see the module doc). Each oop of `roots` is
    /// updated to where its object now lives; every other young oop the
    /// caller holds is stale afterwards (it must drop it, or pass it in
    /// `roots`), and so is anything it derived from one (caches keyed by
    /// oops). Old objects do not move.
    ///
    /// An error (a malformed object, or old space unable to grow for want
    /// of memory) leaves the heap in the middle of a scavenge: the caller
    /// cannot go on with it.
    pub fn scavenge(&mut self, roots: &mut [Oop]) -> Result<Scavenged, MemoryError> {
        if self.new_space.is_none() {
            return Ok(Scavenged::default());
        }
        let mut pass = self.new_pass(false);
        self.run_pass(&mut pass, roots)?;
        if let Some(l) = pass.lab.take() {
            self.close_lab(l)?;
        }
        // exchangeSurvivorSpaces; eden starts again.
        let size = self.future.1 - self.future.0;
        let used = pass.future_top - self.future.0;
        std::mem::swap(&mut self.past, &mut self.future);
        self.past_top = pass.future_top;
        self.eden_top = self.eden_start;
        self.eden_overflowed = false;
        // computeTenuringThreshold: tenure the oldest tenth once survivors fill 90%.
        self.tenure_threshold = if used * 10 > size * TENURING_PROPORTION_TENTHS {
            self.past.0 + ((size * (10 - TENURING_PROPORTION_TENTHS) / 10) & !7)
        } else {
            0
        };
        self.remembered = std::mem::take(&mut pass.remembered);
        pass.out.remembered = self.remembered.len() as u64;
        let g = &mut self.gc;
        g.scavenges += 1;
        g.survivor_objects += pass.out.survivor_objects;
        g.survivor_bytes += pass.out.survivor_bytes;
        g.tenured_objects += pass.out.tenured.objects;
        g.tenured_bytes += pass.out.tenured.bytes;
        g.weak_slots_cleared += pass.out.weak_slots_cleared;
        tracing::debug!(
            survivors = pass.out.survivor_objects,
            survivor_bytes = pass.out.survivor_bytes,
            tenured = pass.out.tenured.bytes,
            remembered = pass.out.remembered,
            "scavenged"
        );
        Ok(pass.out)
    }

    /// Moves every young object that the remembered set, the special
    /// objects or `roots` reach into old space, and empties new space (eden,
    /// past space and the remembered set): the scavenger with everything
    /// tenured. A snapshot writes old space only (§7), so the snapshot
    /// primitive tenures first. Each oop of `roots` is updated to its copy;
    /// any other young oop the caller keeps is stale afterwards. Weak slots
    /// are kept (treated as strong: a tenuring pass clears nothing).
    ///
    /// The copies go where old-space allocation puts them (the free lists,
    /// the largest free chunk; old space grows when they are spent). When
    /// the last buffer filled was the end of old space (the claimed
    /// headroom), what it did not use goes back to the headroom, which
    /// [`claim_headroom`](Self::claim_headroom) turns back into free space:
    /// a snapshot written in between holds no empty tail.
    pub fn tenure_all(&mut self, roots: &mut [Oop]) -> Result<Tenured, MemoryError> {
        let young_bytes = (self.eden_top - self.eden_start) + (self.past_top - self.past.0);
        if young_bytes == 0 {
            self.forget_remembered();
            return Ok(Tenured::default());
        }
        let mut pass = self.new_pass(true);
        self.run_pass(&mut pass, roots)?;
        if let Some(l) = pass.lab.take() {
            let ends_old_space = self.spans.last().is_some_and(|s| s.end == l.end);
            if ends_old_space {
                self.heap.write_u64(
                    NewAddr::from_heap_word(l.top),
                    ObjHeader::short_bridge(self.word).0,
                )?;
                self.heap.write_u64(NewAddr::from_heap_word(l.top + 8), 0)?;
                self.heap.shrink_last_segment(l.end - l.top)?;
                self.refresh_spans();
            } else {
                self.close_lab(l)?;
            }
        }
        // Nothing young is left, so nothing old is remembered.
        for o in std::mem::take(&mut pass.remembered) {
            self.set_remembered(o, false)?;
        }
        self.forget_remembered();
        self.eden_top = self.eden_start;
        self.past_top = self.past.0;
        self.eden_overflowed = false;
        self.tenure_threshold = 0;
        self.gc.tenured_objects += pass.out.tenured.objects;
        self.gc.tenured_bytes += pass.out.tenured.bytes;
        Ok(pass.out.tenured)
    }

    /// Checks the invariants a scavenge relies on and leaves, over every
    /// object: each pointer slot leads to an object (not a forwarder, not
    /// past eden's top, not into future space), and each old object that
    /// holds a young one is remembered. Answers up to `limit` findings, each
    /// naming the object, the slot and the value. For tests and debugging:
    /// it walks the whole heap.
    pub fn check_young_refs(&self, limit: usize) -> Vec<String> {
        let mut found = Vec::new();
        for obj in self.all_objects() {
            if found.len() >= limit {
                break;
            }
            let Ok(h) = self.header(obj) else { continue };
            if matches!(
                h.class_index(),
                CLASS_FREE_CHUNK | CLASS_SEGMENT_BRIDGE | CLASS_FORWARDER
            ) {
                continue;
            }
            let old = !self.is_young(obj);
            let Ok(n) = self.pointer_fields(obj) else {
                continue;
            };
            for i in 0..n {
                let Ok(v) = self.fetch(obj, i) else { continue };
                if v.is_immediate(self.word) {
                    continue;
                }
                let a = v.bits();
                let why = if self.in_young(a)
                    && (self.in_future(a)
                        || (a >= self.eden_top && a >= self.eden_start)
                        || (a >= self.past_top && a < self.past.1))
                {
                    Some("points into free new space")
                } else {
                    match self.header(v) {
                        Err(_) => Some("points to no object"),
                        Ok(vh) if vh.class_index() == CLASS_FORWARDER => {
                            Some("points to a forwarder")
                        }
                        Ok(vh) if vh.class_index() == CLASS_FREE_CHUNK => {
                            Some("points to a free chunk")
                        }
                        Ok(_) if old && self.is_young(v) && !h.is_remembered() => {
                            Some("is old, holds a young object and is not remembered")
                        }
                        Ok(_) => None,
                    }
                };
                if let Some(why) = why {
                    found.push(format!(
                        "{obj} (class {}) slot {i} = {v}: {why}",
                        h.class_index()
                    ));
                    if found.len() >= limit {
                        break;
                    }
                }
            }
        }
        found
    }

    /// Copies what the roots, the special objects and the remembered set
    /// reach, then what the copies reach; then the weak slots.
    fn run_pass(&mut self, pass: &mut Pass, roots: &mut [Oop]) -> Result<(), MemoryError> {
        for o in std::mem::take(&mut self.remembered) {
            self.set_remembered(o, false)?;
            self.scan(pass, o)?;
        }
        for r in roots.iter_mut() {
            if self.is_young(*r) {
                *r = self.copy(pass, *r)?;
            }
        }
        if self.is_young(self.special_objects) {
            self.special_objects = self.copy(pass, self.special_objects)?;
            self.heap
                .set_special_objects(NewAddr::from_heap_word(self.special_objects.bits()));
        }
        let mut scan = self.future.0;
        loop {
            if scan < pass.future_top {
                let Some((obj, next, _)) = self.step(scan, pass.future_top) else {
                    return Err(MemoryError::NotAnObject { addr: scan });
                };
                scan = next;
                self.scan(pass, obj)?;
            } else if let Some(o) = pass.tenured.pop() {
                self.scan(pass, o)?;
            } else {
                break;
            }
        }
        for w in std::mem::take(&mut pass.weak) {
            self.settle_weak(pass, w)?;
        }
        Ok(())
    }

    /// Copies the young objects `obj` reaches (its strong slots) and
    /// rewrites the slots; remembers `obj` when it is old and still reaches
    /// new space. A weak object's weak slots wait (see the module doc).
    fn scan(&mut self, pass: &mut Pass, obj: Oop) -> Result<(), MemoryError> {
        let h = self.header(obj)?;
        let old = !self.is_young(obj);
        match h.class_index() {
            CLASS_FREE_CHUNK | CLASS_SEGMENT_BRIDGE => return Ok(()),
            // A become's forwarder in old space may lead to a young object.
            CLASS_FORWARDER => {
                let to = self.forwardee(obj)?;
                if self.is_young(to) {
                    let to = self.copy(pass, to)?;
                    self.put_forwardee(obj, to)?;
                    if old && self.is_young(to) {
                        self.remember_in(pass, obj)?;
                    }
                }
                return Ok(());
            }
            _ => {}
        }
        let mut n = self.pointer_fields(obj)?;
        if pass.context == Some(h.class_index()) {
            n = self.live_context_slots(obj, n)?;
        }
        let strong = if h.format() == FMT_WEAK && !pass.tenure_all {
            pass.weak.push(obj);
            self.fixed_fields(h.class_index()).min(n)
        } else {
            n
        };
        let mut reaches_young = false;
        for i in 0..strong {
            let v = self.fetch(obj, i)?;
            if self.is_young(v) {
                let to = self.copy(pass, v)?;
                self.store_raw(obj, i, to.bits())?;
                reaches_young |= self.is_young(to);
            }
        }
        if old && reaches_young {
            self.remember_in(pass, obj)?;
        }
        Ok(())
    }

    /// A context's slots up to its stack pointer: the others are dead (no
    /// bytecode reads above the stack top), so they are not followed, as
    /// the VMs scan a context only up to its stack pointer; they are set to
    /// nil, so that no slot is left leading to an object that did not
    /// survive.
    fn live_context_slots(&mut self, ctx: Oop, n: u64) -> Result<u64, MemoryError> {
        let sp = self.fetch(ctx, CONTEXT_STACKP)?;
        let live = self
            .small_int(sp)
            .map_or(CONTEXT_TEMP0, |sp| {
                CONTEXT_TEMP0 + sp.max(0).cast_unsigned()
            })
            .min(n);
        for i in live..n {
            if !self.fetch(ctx, i)?.is_immediate(self.word) {
                self.store_raw(ctx, i, self.nil.bits())?;
            }
        }
        Ok(live)
    }

    /// The weak slots of the weak object `w`, once every strongly reachable
    /// object has been copied: a copied referent's copy, else nil.
    fn settle_weak(&mut self, pass: &mut Pass, w: Oop) -> Result<(), MemoryError> {
        let h = self.header(w)?;
        let n = self.pointer_fields(w)?;
        let mut reaches_young = false;
        for i in self.fixed_fields(h.class_index()).min(n)..n {
            let v = self.fetch(w, i)?;
            if !self.is_young(v) {
                continue;
            }
            let to = self.survivor(v);
            match to {
                Some(to) => {
                    self.store_raw(w, i, to.bits())?;
                    reaches_young |= self.is_young(to);
                }
                None => {
                    self.store_raw(w, i, self.nil.bits())?;
                    pass.out.weak_slots_cleared += 1;
                }
            }
        }
        if !self.is_young(w) && reaches_young {
            self.remember_in(pass, w)?;
        }
        Ok(())
    }

    /// Where the young `v` survived (`isScavengeSurvivor:`): the end of its
    /// forwarders when that is old or in future space; `None` when it was
    /// not copied.
    fn survivor(&self, v: Oop) -> Option<Oop> {
        let mut o = v;
        for _ in 0..64 {
            if !self.is_young(o) || self.in_future(o.bits()) {
                return Some(o);
            }
            match self.header(o) {
                Ok(h) if h.class_index() == CLASS_FORWARDER => o = self.forwardee(o).ok()?,
                _ => return None,
            }
        }
        None
    }

    fn in_future(&self, a: u64) -> bool {
        a >= self.future.0 && a < self.future.1
    }

    /// Instance variables of instances of the class at `class_index` (the
    /// low 16 bits of its format word); 0 when the class cannot be read.
    fn fixed_fields(&self, class_index: u32) -> u64 {
        self.class_at(class_index)
            .map(|c| self.forwarded(c))
            .and_then(|c| self.fetch(c, CLASS_FORMAT_SLOT).ok())
            .and_then(|f| self.small_int(f))
            .map_or(0, |f| (f & 0xFFFF).cast_unsigned())
    }

    /// Sets or clears the remembered bit of `obj`.
    fn set_remembered(&mut self, obj: Oop, on: bool) -> Result<(), MemoryError> {
        let h = self.header(obj)?;
        let bit = 1 << REMEMBERED_SHIFT;
        self.set_header(obj, ObjHeader(if on { h.0 | bit } else { h.0 & !bit }))
    }

    /// Remembers the old object `obj` once (`remember:`).
    fn remember_in(&mut self, pass: &mut Pass, obj: Oop) -> Result<(), MemoryError> {
        if !self.header(obj)?.is_remembered() {
            self.set_remembered(obj, true)?;
            pass.remembered.push(obj);
        }
        Ok(())
    }

    /// The copy of the young object `obj`: the one made before (its
    /// forwarder says where), or a new one in future space or old space
    /// (`copyAndForward:`).
    fn copy(&mut self, pass: &mut Pass, obj: Oop) -> Result<Oop, MemoryError> {
        // A become may have left forwarders in new space too: follow them.
        let mut o = obj;
        for _ in 0..64 {
            let h = self.header(o)?;
            if h.class_index() != CLASS_FORWARDER {
                break;
            }
            o = self.forwardee(o)?;
            if !self.is_young(o) || self.in_future(o.bits()) {
                return Ok(o);
            }
        }
        let h = self.header(o)?;
        let n = self.num_slots(o)?;
        let over = if h.raw_num_slots() == OVERFLOW_SLOTS {
            8
        } else {
            0
        };
        let total = self
            .word
            .body_bytes(n)
            .ok_or(MemoryError::NotAnObject { addr: o.bits() })?
            + over;
        let from = o.bits() - over;
        let in_past = from >= self.past.0 && from < self.past.1;
        let tenure = pass.tenure_all
            || (in_past && o.bits() < self.tenure_threshold)
            || pass.future_top + total > self.future.1;
        let src = ix(from - self.young_start);
        // A malformed size is refused before old space is asked for room.
        let young_len = self.new_space.as_ref().map_or(0, |ns| ns.bytes().len());
        if src.checked_add(ix(total)).is_none_or(|e| e > young_len) {
            return Err(MemoryError::NotAnObject { addr: o.bits() });
        }
        let copy = if tenure {
            let at = self.old_bytes(&mut pass.lab, total)?;
            let span = self
                .span_of(at)
                .ok_or(MemoryError::NotAnObject { addr: at })?;
            let ns = self
                .new_space
                .as_ref()
                .ok_or(MemoryError::NotAnObject { addr: from })?;
            let bytes = ns
                .bytes()
                .get(src..src + ix(total))
                .ok_or(MemoryError::NotAnObject { addr: from })?;
            let dst = ix(at - span.start);
            self.heap
                .segment_bytes_mut(span.seg)
                .get_mut(dst..dst + ix(total))
                .ok_or(MemoryError::NotAnObject { addr: at })?
                .copy_from_slice(bytes);
            pass.out.tenured.objects += 1;
            pass.out.tenured.bytes += total;
            let copy = Oop::from_bits(at + over);
            pass.tenured.push(copy);
            copy
        } else {
            let at = pass.future_top;
            let dst = ix(at - self.young_start);
            let ns = self
                .new_space
                .as_mut()
                .ok_or(MemoryError::NotAnObject { addr: from })?;
            let b = ns.bytes_mut();
            if src + ix(total) > b.len() || dst + ix(total) > b.len() {
                return Err(MemoryError::NotAnObject { addr: from });
            }
            b.copy_within(src..src + ix(total), dst);
            pass.future_top += total;
            pass.out.survivor_objects += 1;
            pass.out.survivor_bytes += total;
            Oop::from_bits(at + over)
        };
        // The original becomes a forwarder to its copy; every object has
        // room for slot 0, even one of no slots.
        let keep = h.0 & !(CLASS_INDEX_MASK | FORMAT_MASK << FORMAT_SHIFT);
        let forwarder =
            keep | u64::from(CLASS_FORWARDER) | u64::from(FMT_FORWARDED) << FORMAT_SHIFT;
        self.set_header(o, ObjHeader(forwarder))?;
        self.put_forwardee(o, copy)?;
        Ok(copy)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use spur_format::raw::{CLASS_ARRAY, CLASS_BYTE_STRING, FMT_32BIT, FMT_INDEXABLE};
    use spur_format::WordSize;
    use spur_loader::{LoadOptions, PlacementRequest};
    use spur_synth::SynthSpec;

    use super::*;
    use crate::memory::Space;
    use crate::runtime::{Runtime, RuntimeOptions};

    fn wired(word: WordSize, claim_headroom: bool) -> Runtime {
        wired_with(word, claim_headroom, |_| 4 << 20)
    }

    /// A runtime whose new space is `eden(headroom)` bytes.
    fn wired_with(word: WordSize, claim_headroom: bool, eden: impl Fn(u64) -> u64) -> Runtime {
        let (bytes, _) = spur_synth::image_bytes(&SynthSpec::new(word, 256 << 10)).unwrap();
        let heap = spur_loader::load(
            bytes.as_slice(),
            &LoadOptions {
                placement: PlacementRequest::Relocate,
                ..Default::default()
            },
        )
        .unwrap();
        let eden_bytes = eden(heap.headroom_available());
        Runtime::wire(
            heap,
            &RuntimeOptions {
                eden_bytes: Some(eden_bytes),
                stack_pages: Some(4),
                claim_headroom,
                ..Default::default()
            },
        )
        .unwrap()
    }

    /// A slot of a dumped object: an immediate or old object as its bits,
    /// a young object as its position in the dump.
    #[derive(Debug, PartialEq, Eq)]
    enum Ref {
        Fixed(u64),
        Young(usize),
    }

    /// One dumped object: class index, format, slots, hash, slots, bytes.
    type Dumped = (u32, u8, u64, u32, Vec<Ref>, Vec<u8>);

    /// Every object `root` reaches through young objects, in the order
    /// first reached: class index, format, slot count, hash, the slots
    /// (young ones by position) and the bytes of non-pointer objects.
    fn dump(m: &ObjectMemory, root: Oop) -> Vec<Dumped> {
        let mut seen: HashMap<Oop, usize> = HashMap::new();
        let mut order = vec![root];
        seen.insert(root, 0);
        let mut out = Vec::new();
        let mut i = 0;
        while i < order.len() {
            let o = order[i];
            i += 1;
            let h = m.header(o).unwrap();
            let n = m.num_slots(o).unwrap();
            let mut refs = Vec::new();
            for s in 0..m.pointer_fields(o).unwrap() {
                let v = m.fetch(o, s).unwrap();
                if m.is_young(v) {
                    let next = seen.len();
                    let at = *seen.entry(v).or_insert_with(|| {
                        order.push(v);
                        next
                    });
                    refs.push(Ref::Young(at));
                } else {
                    refs.push(Ref::Fixed(v.bits()));
                }
            }
            let bytes = if h.format() > 5 {
                m.bytes(o).unwrap().to_vec()
            } else {
                Vec::new()
            };
            out.push((h.class_index(), h.format(), n, h.hash(), refs, bytes));
        }
        out
    }

    /// A young graph: shared objects, a cycle, strings, a 32-bit word
    /// object, an object with an overflow word, SmallIntegers.
    fn graph(m: &mut ObjectMemory) -> Oop {
        let root = m.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 8).unwrap();
        let s = m.allocate_bytes(CLASS_BYTE_STRING, 11).unwrap();
        m.bytes_mut(s).unwrap().copy_from_slice(b"hello world");
        let words = m.allocate_words(CLASS_ARRAY, FMT_32BIT, 3).unwrap();
        m.bytes_mut(words).unwrap()[..12].copy_from_slice(&[7; 12]);
        let big = m.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 300).unwrap();
        let cycle = m.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 2).unwrap();
        m.identity_hash(cycle).unwrap();
        for i in 0..300u64 {
            let v = if i % 3 == 0 {
                s
            } else {
                m.from_small_int(i.cast_signed()).unwrap()
            };
            m.store(big, i, v).unwrap();
        }
        m.store(cycle, 0, cycle).unwrap();
        m.store(cycle, 1, root).unwrap();
        for (i, v) in [s, words, big, cycle, s, m.nil(), m.true_object()]
            .into_iter()
            .enumerate()
        {
            m.store(root, i as u64, v).unwrap();
        }
        let seven = m.from_small_int(7).unwrap();
        m.store(root, 7, seven).unwrap();
        root
    }

    #[test]
    fn a_young_graph_survives_with_its_structure_and_garbage_is_gone() {
        for word in [WordSize::W32, WordSize::W64] {
            let mut rt = wired(word, true);
            let m = rt.memory_mut();
            let root = graph(m);
            for _ in 0..100 {
                let g = m.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 5).unwrap();
                m.store(g, 0, root).unwrap();
            }
            let before = dump(m, root);
            let old_objects = m.objects().filter(|&o| !m.is_young(o)).count();
            let mut roots = [root, m.nil()];
            let s = m.scavenge(&mut roots).unwrap();
            assert_ne!(roots[0], root, "{word:?}");
            assert_eq!(roots[1], m.nil());
            assert_eq!(m.space_of(roots[0]), Some(Space::Survivor), "{word:?}");
            assert_eq!(dump(m, roots[0]), before, "{word:?}");
            assert_eq!(s.survivor_objects, before.len() as u64, "{word:?}");
            assert_eq!(m.eden_used(), 0);
            assert!(!m.scavenge_wanted());
            // The garbage arrays are gone; old space is as it was.
            let young = m.objects().filter(|&o| m.is_young(o)).count();
            assert_eq!(young, before.len(), "{word:?}");
            assert_eq!(m.objects().filter(|&o| !m.is_young(o)).count(), old_objects);
            // A second scavenge moves the survivors back, still whole.
            let again = m.scavenge(&mut roots).unwrap();
            assert_eq!(again.survivor_objects, before.len() as u64);
            assert_eq!(dump(m, roots[0]), before, "{word:?}");
            assert_eq!(m.gc_stats().scavenges, 2);
            assert!(
                m.check_young_refs(5).is_empty(),
                "{:?}",
                m.check_young_refs(5)
            );
            assert_verifies(m.heap(), &format!("{word:?}"));
        }
    }

    #[test]
    fn a_young_object_reached_only_through_the_remembered_set_survives() {
        for word in [WordSize::W32, WordSize::W64] {
            let mut rt = wired(word, true);
            let m = rt.memory_mut();
            let old = m
                .instances_of(CLASS_ARRAY)
                .find(|&o| !m.is_young(o) && m.num_slots(o).is_ok_and(|n| n > 0))
                .unwrap();
            let keep = m.allocate_bytes(CLASS_BYTE_STRING, 4).unwrap();
            m.bytes_mut(keep).unwrap().copy_from_slice(b"kept");
            let lost = m.allocate_bytes(CLASS_BYTE_STRING, 4).unwrap();
            m.bytes_mut(lost).unwrap().copy_from_slice(b"lost");
            m.store(old, 0, keep).unwrap();
            assert_eq!(m.remembered_set(), &[old]);
            let s = m.scavenge(&mut []).unwrap();
            assert_eq!(s.survivor_objects, 1, "{word:?}: only the remembered one");
            let kept = m.fetch(old, 0).unwrap();
            assert_eq!(m.space_of(kept), Some(Space::Survivor));
            assert_eq!(m.string(kept).as_deref(), Some("kept"));
            // Still young, so still remembered; once the slot is old, forgotten.
            assert_eq!(m.remembered_set(), &[old]);
            assert!(m.header(old).unwrap().is_remembered());
            m.store(old, 0, m.nil()).unwrap();
            m.scavenge(&mut []).unwrap();
            assert!(m.remembered_set().is_empty(), "{word:?}");
            assert!(!m.header(old).unwrap().is_remembered());
            assert_eq!(m.objects().filter(|&o| m.is_young(o)).count(), 0);
        }
    }

    #[test]
    fn survivors_of_enough_scavenges_are_tenured() {
        for word in [WordSize::W32, WordSize::W64] {
            let mut rt = wired(word, true);
            let m = rt.memory_mut();
            let survivor = m.new_space().unwrap().layout().survivor_bytes;
            // Strings of 1 KiB (and a header) filling 95% of a survivor space.
            let count = survivor * 95 / 100 / 1032;
            let root = m.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, count).unwrap();
            for i in 0..count {
                let s = m.allocate_bytes(CLASS_BYTE_STRING, 1024).unwrap();
                m.bytes_mut(s).unwrap()[..8].copy_from_slice(&i.to_le_bytes());
                m.store(root, i, s).unwrap();
            }
            let mut roots = [root];
            let first = m.scavenge(&mut roots).unwrap();
            assert_eq!(first.tenured, Tenured::default(), "{word:?}: all fit");
            // Future space is over 90% full: the oldest tenth goes next time.
            let second = m.scavenge(&mut roots).unwrap();
            assert!(second.tenured.objects > 0, "{word:?}: {second:?}");
            assert!(second.tenured.objects < count, "{word:?}: {second:?}");
            let tenured = (0..count)
                .filter(|&i| m.space_of(m.fetch(roots[0], i).unwrap()) == Some(Space::Old))
                .count() as u64;
            let root_old = u64::from(m.space_of(roots[0]) == Some(Space::Old));
            assert_eq!(tenured + root_old, second.tenured.objects);
            for i in 0..count {
                let s = m.fetch(roots[0], i).unwrap();
                assert_eq!(m.bytes(s).unwrap()[..8], i.to_le_bytes(), "{word:?} {i}");
            }
            assert_eq!(m.gc_stats().tenured_objects, second.tenured.objects);
            // The verifier sees old space only: tenure the rest first.
            m.tenure_all(&mut roots).unwrap();
            assert_verifies(m.heap(), &format!("{word:?}"));
        }
    }

    #[test]
    fn weak_slots_to_objects_reached_by_nothing_strong_become_nil() {
        for word in [WordSize::W32, WordSize::W64] {
            let mut rt = wired(word, true);
            let m = rt.memory_mut();
            // An old weak object's weak slot is found through the remembered set.
            let mut t = [m.allocate_slots(CLASS_ARRAY, FMT_WEAK, 2).unwrap()];
            m.tenure_all(&mut t).unwrap();
            let old_weak = t[0];
            // Array has no instance variables: every slot of the weak object is weak.
            let weak = m.allocate_slots(CLASS_ARRAY, FMT_WEAK, 3).unwrap();
            let gone = m.allocate_bytes(CLASS_BYTE_STRING, 4).unwrap();
            let held = m.allocate_bytes(CLASS_BYTE_STRING, 4).unwrap();
            m.bytes_mut(held).unwrap().copy_from_slice(b"held");
            let five = m.from_small_int(5).unwrap();
            m.store(weak, 0, gone).unwrap();
            m.store(weak, 1, held).unwrap();
            m.store(weak, 2, five).unwrap();
            let gone2 = m.allocate_bytes(CLASS_BYTE_STRING, 4).unwrap();
            m.store(old_weak, 0, gone2).unwrap();
            m.store(old_weak, 1, held).unwrap();
            let mut roots = [weak, held];
            let s = m.scavenge(&mut roots).unwrap();
            let [weak, held] = roots;
            assert_eq!(s.weak_slots_cleared, 2, "{word:?}");
            assert_eq!(m.fetch(weak, 0).unwrap(), m.nil());
            assert_eq!(m.fetch(weak, 1).unwrap(), held);
            assert_eq!(m.string(held).as_deref(), Some("held"));
            assert_eq!(m.fetch(weak, 2).unwrap(), five);
            assert_eq!(m.fetch(old_weak, 0).unwrap(), m.nil());
            assert_eq!(m.fetch(old_weak, 1).unwrap(), held);
            assert!(
                m.check_young_refs(5).is_empty(),
                "{:?}",
                m.check_young_refs(5)
            );
            // The old weak object still reaches new space: still remembered.
            assert_eq!(m.remembered_set(), &[old_weak], "{word:?}");
            assert_eq!(m.objects().filter(|&o| m.is_young(o)).count(), 2);
        }
    }

    #[test]
    fn a_context_is_scanned_up_to_its_stack_pointer() {
        for word in [WordSize::W32, WordSize::W64] {
            let mut rt = wired(word, true);
            let m = rt.memory_mut();
            let ci = m
                .class_index_of_class(
                    m.special(crate::special_objects::index::CLASS_METHOD_CONTEXT),
                )
                .expect("the builder's heap has a context class");
            let ctx = m.allocate_slots(ci, 3, CONTEXT_TEMP0 + 4).unwrap();
            let live = m.allocate_bytes(CLASS_BYTE_STRING, 4).unwrap();
            m.bytes_mut(live).unwrap().copy_from_slice(b"live");
            let dead = m.allocate_bytes(CLASS_BYTE_STRING, 4).unwrap();
            let two = m.from_small_int(2).unwrap();
            m.store(ctx, CONTEXT_STACKP, two).unwrap();
            m.store(ctx, CONTEXT_TEMP0 + 1, live).unwrap();
            m.store(ctx, CONTEXT_TEMP0 + 3, dead).unwrap();
            let mut roots = [ctx];
            let s = m.scavenge(&mut roots).unwrap();
            let ctx = roots[0];
            assert_eq!(
                s.survivor_objects, 2,
                "{word:?}: the context and its live slot"
            );
            let kept = m.fetch(ctx, CONTEXT_TEMP0 + 1).unwrap();
            assert_eq!(m.string(kept).as_deref(), Some("live"));
            assert_eq!(
                m.fetch(ctx, CONTEXT_TEMP0 + 3).unwrap(),
                m.nil(),
                "{word:?}"
            );
            assert!(
                m.check_young_refs(5).is_empty(),
                "{:?}",
                m.check_young_refs(5)
            );
        }
    }

    #[test]
    fn what_eden_cannot_hold_goes_to_old_space_and_asks_for_a_scavenge() {
        let mut rt = wired(WordSize::W64, true);
        let m = rt.memory_mut();
        let free = m.eden_free();
        let used = m.eden_used();
        let big = m.allocate_bytes(CLASS_BYTE_STRING, free).unwrap();
        assert_eq!(m.space_of(big), Some(Space::Old));
        assert_eq!(m.bytes(big).unwrap().len() as u64, free);
        assert_eq!(m.eden_used(), used);
        assert!(m.scavenge_wanted());
        assert_eq!(m.gc_stats().old_direct_objects, 1);
        m.scavenge(&mut []).unwrap();
        assert!(!m.scavenge_wanted());
        assert_verifies(m.heap(), "");
    }

    #[test]
    fn tenuring_grows_old_space_by_a_segment_that_a_snapshot_keeps() {
        for word in [WordSize::W32, WordSize::W64] {
            let mut rt = wired_with(word, false, |headroom| 2 * headroom + (8 << 20));
            let m = rt.memory_mut();
            let segments = m.heap().segments().len();
            // More than the builder's whole heap of 256 KiB and its headroom,
            // so more than any free chunk or the headroom can hold.
            let n = (m.headroom_available() + (512 << 10)) / word.bytes();
            let a = m.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, n).unwrap();
            assert!(m.is_young(a), "{word:?}: eden holds it");
            let s = m.allocate_bytes(CLASS_BYTE_STRING, 5).unwrap();
            m.bytes_mut(s).unwrap().copy_from_slice(b"grown");
            m.store(a, n - 1, s).unwrap();
            let mut roots = [a];
            let moved = m.tenure_all(&mut roots).unwrap();
            assert_eq!(moved.objects, 2, "{word:?}");
            let g = m.gc_stats();
            assert_eq!(g.segments_added, 1, "{word:?}");
            assert!(g.bytes_added >= MIN_SEG, "{word:?}");
            assert_eq!(m.heap().segments().len(), segments + 1);
            let a = roots[0];
            assert_eq!(m.space_of(a), Some(Space::Old));
            assert_verifies(m.heap(), &format!("{word:?}"));
            // A snapshot writes every segment, and the loader reads them back.
            let plan =
                spur_loader::snapshot::SnapshotPlan::new(m.heap(), &Default::default()).unwrap();
            let mut file = Vec::new();
            plan.write_to(&mut file, &mut |_| {}).unwrap();
            let back = spur_loader::load(file.as_slice(), &LoadOptions::default()).unwrap();
            assert_verifies(&back, &format!("{word:?}"));
            let again = crate::memory::ObjectMemory::new(back);
            let found = again
                .instances_of(CLASS_BYTE_STRING)
                .any(|o| again.string(o).as_deref() == Some("grown"));
            assert!(found, "{word:?}");
        }
    }

    #[test]
    fn a_growth_limit_stops_old_space_before_it_maps_anything() {
        for word in [WordSize::W32, WordSize::W64] {
            let mut rt = wired_with(word, false, |headroom| 2 * headroom + (8 << 20));
            let m = rt.memory_mut();
            let segments = m.heap().segments().len();
            m.set_growth_limit(Some(MIN_SEG - 1));
            assert_eq!(m.growth_limit(), Some(MIN_SEG - 1));
            // What only a new segment could hold, as above.
            let n = (m.headroom_available() + (512 << 10)) / word.bytes();
            let a = m.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, n).unwrap();
            // What allocation may still have counts what the limit leaves
            // of the growth, not a whole segment and the headroom.
            assert_eq!(
                m.bytes_left(),
                m.eden_free() + m.free_old_bytes() + MIN_SEG - 1,
                "{word:?}"
            );
            let mut roots = [a];
            let e = m.tenure_all(&mut roots).unwrap_err();
            let MemoryError::GrowthLimit {
                needed,
                grown: 0,
                limit,
            } = e
            else {
                panic!("{word:?}: {e}")
            };
            assert_eq!(limit, MIN_SEG - 1, "{word:?}");
            assert!(needed > limit, "{word:?}");
            assert_eq!(m.gc_stats().segments_added, 0, "{word:?}");
            assert_eq!(m.heap().segments().len(), segments, "{word:?}");
            // With room for exactly that growth, the same tenuring succeeds
            // on a fresh memory.
            let mut rt = wired_with(word, false, |headroom| 2 * headroom + (8 << 20));
            let m = rt.memory_mut();
            m.set_growth_limit(Some(needed));
            let a = m.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, n).unwrap();
            m.tenure_all(&mut [a]).unwrap();
            assert_eq!(m.gc_stats().segments_added, 1, "{word:?}");
        }
    }

    /// The heap verifies intact (its first errors shown when not).
    fn assert_verifies(heap: &spur_loader::LoadedHeap, what: &str) {
        let report = spur_loader::verify(heap);
        assert!(
            report.ok(),
            "{what}: {:?}",
            &report.errors[..report.errors.len().min(3)]
        );
    }

    const MIN_SEG: u64 = super::super::grow::MIN_SEGMENT_BYTES;
}
