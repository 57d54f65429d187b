//! Tenuring's bookkeeping: what a pass moved, the forwarders it leaves, the
//! free-chunk tree it takes room from and gives the rest back to, and the
//! forwarders a become left, freed before a snapshot.
//! [`ObjectMemory::tenure_all`] itself is the scavenger with everything
//! tenured (see `scavenge.rs`).

use spur_format::objheader::overflow_word;
use spur_format::raw::{
    CLASS_FORWARDER, CLASS_FREE_CHUNK, FMT_LAST_POINTER, FREE_CHUNK_LARGER, FREE_CHUNK_NEXT,
    FREE_CHUNK_PARENT, FREE_CHUNK_SMALLER, METHOD_NUM_LITERALS_MASK, OVERFLOW_SLOTS,
    REMEMBERED_SHIFT,
};
use spur_format::ObjHeader;

use super::{MemoryError, ObjectMemory, Oop};

/// What a tenuring pass moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tenured {
    /// Objects copied into old space.
    pub objects: u64,
    /// Bytes they take there, overflow words included.
    pub bytes: u64,
}

impl ObjectMemory {
    /// Clears the remembered bit of every remembered object and empties the set.
    pub(super) fn forget_remembered(&mut self) {
        for o in std::mem::take(&mut self.remembered) {
            if let Ok(h) = self.header(o) {
                let _ = self.set_header(o, ObjHeader(h.0 & !(1 << REMEMBERED_SHIFT)));
            }
        }
    }

    /// How many leading slots of `obj` hold oops.
    pub(super) fn pointer_fields(&self, obj: Oop) -> Result<u64, MemoryError> {
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

    /// Writes slot 0 of the forwarder `obj` (see [`forwardee`](Self::forwardee)).
    pub(super) fn put_forwardee(&mut self, obj: Oop, to: Oop) -> Result<(), MemoryError> {
        let word = self.word;
        let a = obj.bits();
        let (b, off) = self
            .locate_mut(a)
            .ok_or(MemoryError::NotAnObject { addr: a })?;
        Self::put_word(word, b, off + 8, to.bits()).ok_or(MemoryError::NotAnObject { addr: a })
    }

    /// Slot 0 of the forwarder `obj`, read past its slot count (a
    /// forwarder of an object of no slots has the room, not the count).
    pub(super) fn forwardee(&self, obj: Oop) -> Result<Oop, MemoryError> {
        let a = obj.bits();
        let (b, off) = self.locate(a).ok_or(MemoryError::NotAnObject { addr: a })?;
        self.read_word(b, off + 8)
            .map(Oop::from_bits)
            .ok_or(MemoryError::NotAnObject { addr: a })
    }

    /// Where the free chunk `chunk` begins: its overflow word, if it has one.
    pub(super) fn chunk_start(&self, chunk: Oop) -> Result<u64, MemoryError> {
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
    pub(super) fn largest_free_chunk(&self) -> Result<(Option<Oop>, u64), MemoryError> {
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
    pub(super) fn unlink_largest(&mut self, chunk: Oop) -> Result<(), MemoryError> {
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
    pub(super) fn make_free_chunk(&mut self, start: u64, bytes: u64) -> Result<(), MemoryError> {
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
}
