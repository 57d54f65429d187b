//! Tenuring: every new-space object that old space, perm space or the
//! caller's roots reach is copied into one free chunk of old space, the
//! references to it are rewritten, and new space is left empty. A snapshot
//! writes old space only (§7), so the snapshot primitive tenures first.
//!
//! The copy is Cheney's: the objects of old and perm space (and the roots)
//! are the roots; each young object they reach is copied to the next free
//! address of the chunk and its original becomes a forwarder to the copy
//! (class index 8, format 7, slot 0 the copy, §3.2); then the copies are
//! scanned in address order the same way, until the scan meets the copying.
//! Every pointer slot of old space is scanned rather than the remembered
//! set alone, so a young reference the barrier missed is still found.
//! Weak slots are kept (a tenuring pass clears nothing); what the chunk
//! does not use is linked back into the free lists as one free chunk.

use spur_format::objheader::overflow_word;
use spur_format::raw::{
    CLASS_FORWARDER, CLASS_FREE_CHUNK, CLASS_INDEX_MASK, CLASS_SEGMENT_BRIDGE, FMT_FORWARDED,
    FMT_LAST_POINTER, FORMAT_MASK, FORMAT_SHIFT, FREE_CHUNK_LARGER, FREE_CHUNK_NEXT,
    FREE_CHUNK_PARENT, FREE_CHUNK_SMALLER, METHOD_NUM_LITERALS_MASK, OVERFLOW_SLOTS,
    REMEMBERED_SHIFT,
};
use spur_format::{NewAddr, ObjHeader};

use super::{ix, MemoryError, ObjectMemory, Oop};

/// What a tenuring pass moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tenured {
    /// Objects copied into old space.
    pub objects: u64,
    /// Bytes they take there, overflow words included.
    pub bytes: u64,
}

/// The free chunk a pass copies into: `[start, start + bytes)`.
#[derive(Debug, Clone, Copy)]
struct Dest {
    start: u64,
    bytes: u64,
    top: u64,
}

impl ObjectMemory {
    /// Moves every young object that old space, perm space or `roots`
    /// reach into old space, and empties new space (eden and the
    /// remembered set). Each oop of `roots` is updated to its copy; any
    /// other young oop the caller keeps is stale afterwards, and must be
    /// dropped or passed in `roots`.
    ///
    /// The copies go into the largest free chunk of old space, which must
    /// hold all of new space's used bytes and 16 more
    /// ([`MemoryError::OldSpaceFull`] otherwise, before anything changes).
    /// What the copies leave of it becomes a free chunk again; when the
    /// chunk was the last thing in old space (the claimed headroom), the last
    /// segment ends after the copies instead and the rest is headroom again,
    /// which [`claim_headroom`](Self::claim_headroom) turns back into free
    /// space: a snapshot written in between holds no empty tail.
    pub fn tenure_all(&mut self, roots: &mut [Oop]) -> Result<Tenured, MemoryError> {
        let young_bytes = (self.eden_top - self.eden_start) + (self.past_used().1 - self.past.0);
        if young_bytes == 0 {
            self.forget_remembered();
            return Ok(Tenured::default());
        }
        // The chunk must leave room for a free chunk of the rest (16 bytes at least).
        let needed = young_bytes + 16;
        let (chunk, largest) = self.largest_free_chunk()?;
        let Some(chunk) = chunk.filter(|_| largest >= needed) else {
            return Err(MemoryError::OldSpaceFull { needed, largest });
        };
        let start = self.chunk_start(chunk)?;
        self.unlink_largest(chunk)?;
        let mut dest = Dest {
            start,
            bytes: largest,
            top: start,
        };
        let mut moved = Tenured::default();

        // Old and perm space, except the chunk being filled.
        let mut regions: Vec<(u64, u64)> = Vec::new();
        for s in &self.spans {
            if start >= s.start && start < s.end {
                regions.push((s.start, start));
                regions.push((start + largest, s.end));
            } else {
                regions.push((s.start, s.end));
            }
        }
        regions.extend(self.perm);
        for (from, end) in regions {
            let mut cursor = from;
            while let Some((obj, next, class_index)) = self.step(cursor, end) {
                cursor = next;
                match class_index {
                    CLASS_FREE_CHUNK | CLASS_SEGMENT_BRIDGE => {}
                    // An old forwarder left by a become may point to a young object.
                    CLASS_FORWARDER => {
                        let to = self.forwardee(obj)?;
                        if self.is_young(to) {
                            let to = self.tenure_one(to, &mut dest, &mut moved)?;
                            self.put_forwardee(obj, to)?;
                        }
                    }
                    _ => self.tenure_fields(obj, &mut dest, &mut moved)?,
                }
            }
        }
        for r in roots.iter_mut() {
            if self.is_young(*r) {
                *r = self.tenure_one(*r, &mut dest, &mut moved)?;
            }
        }
        // The copies, in the order they were made, until none is left to scan.
        let mut scan = dest.start;
        while scan < dest.top {
            let Some((obj, next, class_index)) = self.step(scan, dest.top) else {
                return Err(MemoryError::NotAnObject { addr: scan });
            };
            scan = next;
            if class_index != CLASS_FORWARDER {
                self.tenure_fields(obj, &mut dest, &mut moved)?;
            }
        }
        if self.is_young(self.special_objects) {
            self.special_objects = self.tenure_one(self.special_objects, &mut dest, &mut moved)?;
        }
        // The heap names the array a snapshot writes into its header.
        self.heap
            .set_special_objects(NewAddr::from_heap_word(self.special_objects.bits()));
        // What the chunk did not take goes back to the headroom when the
        // chunk ended the last segment (so that a snapshot does not write
        // it; claim_headroom makes it free space again), else to the free lists.
        let rest = dest.start + dest.bytes - dest.top;
        let ends_old_space = self
            .spans
            .last()
            .is_some_and(|s| s.end == dest.start + dest.bytes);
        if ends_old_space {
            self.heap.write_u64(
                NewAddr::from_heap_word(dest.top),
                ObjHeader::short_bridge(self.word).0,
            )?;
            self.heap
                .write_u64(NewAddr::from_heap_word(dest.top + 8), 0)?;
            self.heap.shrink_last_segment(rest)?;
            self.refresh_spans();
        } else {
            self.make_free_chunk(dest.top, rest)?;
        }
        self.forget_remembered();
        self.eden_top = self.eden_start;
        Ok(moved)
    }

    /// Clears the remembered bit of every remembered object and empties the set.
    fn forget_remembered(&mut self) {
        for o in std::mem::take(&mut self.remembered) {
            if let Ok(h) = self.header(o) {
                let _ = self.set_header(o, ObjHeader(h.0 & !(1 << REMEMBERED_SHIFT)));
            }
        }
    }

    /// How many leading slots of `obj` hold oops.
    fn pointer_fields(&self, obj: Oop) -> Result<u64, MemoryError> {
        let h = self.header(obj)?;
        let n = self.num_slots(obj)?;
        Ok(if h.format() <= FMT_LAST_POINTER {
            n
        } else if h.is_compiled_method() && n > 0 {
            match self.small_int(self.fetch(obj, 0)?) {
                Some(hdr) => ((hdr & METHOD_NUM_LITERALS_MASK).cast_unsigned() + 1).min(n),
                None => 0,
            }
        } else {
            0
        })
    }

    /// Rewrites each young oop of `obj`'s pointer slots to its old copy.
    fn tenure_fields(
        &mut self,
        obj: Oop,
        dest: &mut Dest,
        moved: &mut Tenured,
    ) -> Result<(), MemoryError> {
        for i in 0..self.pointer_fields(obj)? {
            let v = self.fetch(obj, i)?;
            if self.is_young(v) {
                let to = self.tenure_one(v, dest, moved)?;
                self.store_raw(obj, i, to.bits())?;
            }
        }
        Ok(())
    }

    /// The old copy of the young object `obj`: the one made before (its
    /// forwarder says where), or a new one.
    fn tenure_one(
        &mut self,
        obj: Oop,
        dest: &mut Dest,
        moved: &mut Tenured,
    ) -> Result<Oop, MemoryError> {
        // A become may have left forwarders in new space too: follow them.
        let mut o = obj;
        for _ in 0..64 {
            let h = self.header(o)?;
            if h.class_index() != CLASS_FORWARDER {
                break;
            }
            o = self.forwardee(o)?;
            if !self.is_young(o) {
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
        if dest.top + total > dest.start + dest.bytes {
            return Err(MemoryError::OldSpaceFull {
                needed: total,
                largest: dest.start + dest.bytes - dest.top,
            });
        }
        let bytes = {
            let (b, off) = self
                .locate(from)
                .ok_or(MemoryError::NotAnObject { addr: from })?;
            b.get(off..off + ix(total))
                .ok_or(MemoryError::NotAnObject { addr: from })?
                .to_vec()
        };
        let at = dest.top;
        {
            let (b, off) = self
                .locate_mut(at)
                .ok_or(MemoryError::NotAnObject { addr: at })?;
            b.get_mut(off..off + ix(total))
                .ok_or(MemoryError::NotAnObject { addr: at })?
                .copy_from_slice(&bytes);
        }
        dest.top += total;
        moved.objects += 1;
        moved.bytes += total;
        let copy = Oop::from_bits(at + over);
        // The original becomes a forwarder to its copy; every object has
        // room for slot 0, even one of no slots.
        let keep = h.0 & !(CLASS_INDEX_MASK | FORMAT_MASK << FORMAT_SHIFT);
        let forwarder =
            keep | u64::from(CLASS_FORWARDER) | u64::from(FMT_FORWARDED) << FORMAT_SHIFT;
        self.set_header(o, ObjHeader(forwarder))?;
        self.put_forwardee(o, copy)?;
        Ok(copy)
    }

    /// Writes slot 0 of the forwarder `obj` (see [`forwardee`](Self::forwardee)).
    fn put_forwardee(&mut self, obj: Oop, to: Oop) -> Result<(), MemoryError> {
        let word = self.word;
        let a = obj.bits();
        let (b, off) = self
            .locate_mut(a)
            .ok_or(MemoryError::NotAnObject { addr: a })?;
        Self::put_word(word, b, off + 8, to.bits()).ok_or(MemoryError::NotAnObject { addr: a })
    }

    /// Slot 0 of the forwarder `obj`, read past its slot count (a
    /// forwarder of an object of no slots has the room, not the count).
    fn forwardee(&self, obj: Oop) -> Result<Oop, MemoryError> {
        let a = obj.bits();
        let (b, off) = self.locate(a).ok_or(MemoryError::NotAnObject { addr: a })?;
        self.read_word(b, off + 8)
            .map(Oop::from_bits)
            .ok_or(MemoryError::NotAnObject { addr: a })
    }

    /// Where the free chunk `chunk` begins: its overflow word, if it has one.
    fn chunk_start(&self, chunk: Oop) -> Result<u64, MemoryError> {
        let h = self.header(chunk)?;
        Ok(chunk.bits()
            - if h.raw_num_slots() == OVERFLOW_SLOTS {
                8
            } else {
                0
            })
    }

    /// The largest chunk of the free-chunk tree (its rightmost node; a
    /// chunk of the same size chained after it when there is one) and its
    /// bytes; `(None, 0)` when the tree is empty.
    fn largest_free_chunk(&self) -> Result<(Option<Oop>, u64), MemoryError> {
        let fl = self.free_lists_checked()?;
        let mut node = self.link(fl, 0);
        if node == 0 {
            return Ok((None, 0));
        }
        let limit = self.heap.heap_bytes() / 16 + 1;
        for _ in 0..limit {
            let larger = self.link(Oop::from_bits(node), FREE_CHUNK_LARGER);
            if larger == 0 {
                let n = Oop::from_bits(node);
                let next = self.link(n, FREE_CHUNK_NEXT);
                let pick = if next == 0 { n } else { Oop::from_bits(next) };
                return Ok((Some(pick), self.free_chunk_bytes(pick)?));
            }
            node = larger;
        }
        Err(MemoryError::FreeTreeLoops { limit })
    }

    /// Takes the chunk [`largest_free_chunk`](Self::largest_free_chunk)
    /// answered out of the tree: the second of a chain of equal sizes is
    /// cut out of the chain; a rightmost node has no larger child, so its
    /// smaller child takes its place.
    fn unlink_largest(&mut self, chunk: Oop) -> Result<(), MemoryError> {
        let fl = self.free_lists_checked()?;
        let mut node = self.link(fl, 0);
        loop {
            let larger = self.link(Oop::from_bits(node), FREE_CHUNK_LARGER);
            if larger == 0 {
                break;
            }
            node = larger;
        }
        let n = Oop::from_bits(node);
        if n != chunk {
            // `chunk` is the second of the node's chain.
            let after = self.link(chunk, FREE_CHUNK_NEXT);
            return self.store_raw(n, FREE_CHUNK_NEXT, after);
        }
        let parent = self.link(n, FREE_CHUNK_PARENT);
        let smaller = self.link(n, FREE_CHUNK_SMALLER);
        if parent == 0 {
            self.store_raw(fl, 0, smaller)?;
        } else {
            self.store_raw(Oop::from_bits(parent), FREE_CHUNK_LARGER, smaller)?;
        }
        if smaller != 0 {
            self.store_raw(Oop::from_bits(smaller), FREE_CHUNK_PARENT, parent)?;
        }
        Ok(())
    }

    /// Makes `[start, start + bytes)` of old space one free chunk (an
    /// overflow word first when it is large) and links it into the free
    /// lists. `bytes` is 0 (nothing to do) or at least 16.
    fn make_free_chunk(&mut self, start: u64, bytes: u64) -> Result<(), MemoryError> {
        if bytes == 0 {
            return Ok(());
        }
        let word = self.word;
        let w = word.bytes();
        let (chunk, num_slots) = if bytes >= OVERFLOW_SLOTS * w + 8 {
            (start + 8, (bytes - 16) / w)
        } else {
            (start, (bytes - 8) / w)
        };
        let fl = self.free_lists_checked()?;
        let chunk = Oop::from_bits(chunk);
        let (_, links) = self.plan_link(fl, chunk, bytes)?;
        let raw = if chunk.bits() != start {
            let (b, off) = self
                .locate_mut(start)
                .ok_or(MemoryError::NotAnObject { addr: start })?;
            b.get_mut(off..off + 8)
                .ok_or(MemoryError::NotAnObject { addr: start })?
                .copy_from_slice(&overflow_word(num_slots).to_le_bytes());
            u8::MAX
        } else {
            u8::try_from(num_slots).unwrap_or(u8::MAX)
        };
        self.set_header(chunk, ObjHeader::new(CLASS_FREE_CHUNK, 0, raw, 0))?;
        let fixed = if bytes >= word.num_free_lists() * 8 {
            5
        } else {
            2
        };
        for i in 0..fixed.min(num_slots) {
            self.store_raw(chunk, i, 0)?;
        }
        for l in links {
            self.store_raw(l.obj, l.index, l.value)?;
        }
        Ok(())
    }

    /// Turns every forwarder of old space (what a one-way become leaves,
    /// once every reference to it was rewritten) into a free chunk linked
    /// into the free lists, as a full collection would, so that a snapshot
    /// holds none. The caller must keep no oop of a forwarder (the
    /// interpreter re-reads its registers after a become). Returns how many
    /// were freed.
    pub fn free_forwarders(&mut self) -> Result<u64, MemoryError> {
        let mut found = Vec::new();
        for s in &self.spans {
            let mut cursor = s.start;
            while let Some((obj, next, class_index)) = self.step(cursor, s.end) {
                if class_index == CLASS_FORWARDER {
                    let start = self.chunk_start(obj)?;
                    found.push((start, next - start));
                }
                cursor = next;
            }
        }
        for &(start, bytes) in &found {
            self.make_free_chunk(start, bytes)?;
        }
        Ok(found.len() as u64)
    }

    /// Bytes held by the free chunks of old space (overflow words included):
    /// the header's `freeOldSpaceInImage` of a snapshot.
    pub fn free_old_bytes(&self) -> u64 {
        let mut free = 0;
        for s in &self.spans {
            let mut cursor = s.start;
            while let Some((obj, next, class_index)) = self.step(cursor, s.end) {
                if class_index == CLASS_FREE_CHUNK {
                    let over = self.header(obj).map_or(0, |h| {
                        if h.raw_num_slots() == OVERFLOW_SLOTS {
                            8
                        } else {
                            0
                        }
                    });
                    free += next - obj.bits() + over;
                }
                cursor = next;
            }
        }
        free
    }
}

#[cfg(test)]
mod tests {
    use spur_format::raw::{CLASS_ARRAY, CLASS_BYTE_STRING, FMT_INDEXABLE};
    use spur_format::WordSize;
    use spur_loader::{LoadOptions, PlacementRequest};
    use spur_synth::SynthSpec;

    use super::*;
    use crate::runtime::{Runtime, RuntimeOptions};

    fn wired(word: WordSize) -> Runtime {
        let (bytes, _) = spur_synth::image_bytes(&SynthSpec::new(word, 256 << 10)).unwrap();
        let heap = spur_loader::load(
            bytes.as_slice(),
            &LoadOptions {
                placement: PlacementRequest::Relocate,
                ..Default::default()
            },
        )
        .unwrap();
        Runtime::wire(
            heap,
            &RuntimeOptions {
                eden_bytes: Some(4 << 20),
                stack_pages: Some(4),
                ..Default::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn tenuring_moves_what_old_space_and_the_roots_reach_and_nothing_else() {
        for word in [WordSize::W32, WordSize::W64] {
            let mut rt = wired(word);
            let m = rt.memory_mut();
            let objects_before = m.objects().count();
            let old = m
                .instances_of(CLASS_ARRAY)
                .find(|&o| !m.is_young(o) && m.num_slots(o).is_ok_and(|n| n > 0))
                .unwrap();
            let old_value = m.fetch(old, 0).unwrap();
            // a: an array (reached from old space) holding a string b, an
            // empty array z twice and a SmallInteger; d: reached from a root
            // only; c: reached from nothing.
            let a = m.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 4).unwrap();
            let b = m.allocate_bytes(CLASS_BYTE_STRING, 5).unwrap();
            m.bytes_mut(b).unwrap().copy_from_slice(b"hello");
            let z = m.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 0).unwrap();
            let c = m.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 1).unwrap();
            let d = m.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 1).unwrap();
            let seven = m.from_small_int(7).unwrap();
            m.store(a, 0, b).unwrap();
            m.store(a, 1, z).unwrap();
            m.store(a, 2, z).unwrap();
            m.store(a, 3, seven).unwrap();
            m.store(d, 0, a).unwrap();
            m.store(c, 0, b).unwrap();
            m.store(old, 0, a).unwrap();
            assert_eq!(m.remembered_set(), &[old]);

            let mut roots = [d, m.nil()];
            let moved = m.tenure_all(&mut roots).unwrap();
            assert_eq!(moved.objects, 4, "{word:?}: a, b, z and d, not c");
            assert_eq!(m.eden_used(), 0);
            assert!(m.remembered_set().is_empty());
            assert!(!m.header(old).unwrap().is_remembered());
            let (d2, a2) = (roots[0], m.fetch(old, 0).unwrap());
            assert_eq!(roots[1], m.nil());
            for o in [d2, a2] {
                assert_eq!(m.space_of(o), Some(crate::memory::Space::Old), "{word:?}");
            }
            assert_eq!(m.fetch(d2, 0).unwrap(), a2);
            let b2 = m.fetch(a2, 0).unwrap();
            assert_eq!(m.string(b2).as_deref(), Some("hello"));
            let z2 = m.fetch(a2, 1).unwrap();
            assert_eq!(m.fetch(a2, 2).unwrap(), z2);
            assert_eq!(m.num_slots(z2).unwrap(), 0);
            assert_eq!(m.fetch(a2, 3).unwrap(), seven);
            assert_eq!(m.objects().count(), objects_before + 4);
            // The heap is whole: what the copies left went back to the
            // headroom, and claiming it makes it free space again.
            let report = spur_loader::verify(m.heap());
            assert!(report.ok(), "{word:?}: {:?}", report.errors);
            assert!(m.claim_headroom().unwrap().is_some());
            let report = spur_loader::verify(m.heap());
            assert!(report.ok(), "{word:?}: {:?}", report.errors);
            m.store(old, 0, old_value).unwrap();
        }
    }

    #[test]
    fn forwarders_a_become_left_in_old_space_become_free_chunks() {
        for word in [WordSize::W32, WordSize::W64] {
            let mut rt = wired(word);
            let m = rt.memory_mut();
            let arrays: Vec<Oop> = m
                .instances_of(CLASS_ARRAY)
                .filter(|&o| !m.is_young(o) && m.num_slots(o).is_ok_and(|n| n > 0))
                .take(2)
                .collect();
            let report = spur_loader::verify(m.heap());
            let (chunks, bytes) = (report.free_chunks, report.free_bytes);
            m.become_forward(&[(arrays[0], arrays[1])], false, &mut [])
                .unwrap();
            assert_eq!(m.free_forwarders().unwrap(), 1, "{word:?}");
            assert!(m.header(arrays[0]).unwrap().is_free_chunk());
            let report = spur_loader::verify(m.heap());
            assert!(report.ok(), "{word:?}: {:?}", report.errors);
            assert_eq!(report.free_chunks, chunks + 1);
            assert!(report.free_bytes > bytes);
            assert_eq!(m.free_forwarders().unwrap(), 0);
        }
    }

    #[test]
    fn tenuring_an_empty_new_space_moves_nothing() {
        let mut rt = wired(WordSize::W64);
        let m = rt.memory_mut();
        assert_eq!(m.tenure_all(&mut []).unwrap(), Tenured::default());
    }

    #[test]
    fn without_a_free_chunk_large_enough_nothing_moves() {
        let (bytes, _) =
            spur_synth::image_bytes(&SynthSpec::new(WordSize::W64, 256 << 10)).unwrap();
        let heap = spur_loader::load(bytes.as_slice(), &LoadOptions::default()).unwrap();
        let mut rt = Runtime::wire(
            heap,
            &RuntimeOptions {
                claim_headroom: false,
                ..Default::default()
            },
        )
        .unwrap();
        let m = rt.memory_mut();
        // More than the builder's whole heap of 256 KiB, so more than any free chunk.
        let a = m
            .allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 64 << 10)
            .unwrap();
        let mut roots = [a];
        let err = m.tenure_all(&mut roots).unwrap_err();
        assert!(matches!(err, MemoryError::OldSpaceFull { .. }), "{err}");
        assert_eq!(roots[0], a);
        assert!(m.is_young(a));
        assert_eq!(m.header(a).unwrap().class_index(), CLASS_ARRAY);
    }
}
