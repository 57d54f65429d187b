//! Changes made to old space before a VM resumes it: converting boxed
//! floats to the host's word order (§1.2), and turning the reserved
//! headroom into free space at the end of the last segment (§5.3), linked
//! into the free lists (§3.5.1).
//!
//! A change that cannot be made is a [`MemoryError`] naming the address and
//! the numbers involved, and leaves the heap as it was: everything that can
//! fail is checked (and every write planned) before the first write.

use spur_format::objheader::overflow_word;
use spur_format::raw::{
    BRIDGE_BYTES, CLASS_FLOAT, CLASS_FREE_CHUNK, FREE_CHUNK_LARGER, FREE_CHUNK_NEXT,
    FREE_CHUNK_PARENT, FREE_CHUNK_SMALLER, OVERFLOW_SLOTS,
};
use spur_format::{Layout, NewAddr, ObjHeader, Walk, WordSize, L32, L64};

use super::{MemoryError, ObjectMemory, Oop};

/// The free chunk made from the headroom (§5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimedHeadroom {
    /// The chunk (its base header; an overflow word precedes it when it is large).
    pub chunk: NewAddr,
    /// Bytes of the chunk, its overflow word included: what became free.
    pub bytes: u64,
    /// The terminating bridge after it: the new end of the last segment's objects.
    pub bridge: NewAddr,
    /// Which free list took it: 0 is the tree of large chunks (§3.5.1).
    pub list: u64,
}

/// A slot write planned while nothing has changed yet.
#[derive(Debug, Clone, Copy)]
pub(super) struct SlotWrite {
    pub(super) obj: Oop,
    pub(super) index: u64,
    pub(super) value: u64,
}

impl ObjectMemory {
    /// Swaps the two 32-bit halves of every boxed Float (class index 34), as
    /// the VMs do when an image's float word order is not the host's (§1.2).
    /// One walk over every segment; returns the number of floats converted.
    /// A malformed segment is an error before any float of it is changed.
    pub fn swap_boxed_float_words(&mut self) -> Result<u64, MemoryError> {
        match self.word {
            WordSize::W64 => self.swap_floats_with::<L64>(),
            WordSize::W32 => self.swap_floats_with::<L32>(),
        }
    }

    fn swap_floats_with<L: Layout>(&mut self) -> Result<u64, MemoryError> {
        let mut converted = 0;
        for i in 0..self.heap.segments().len() {
            let start = self.heap.segments()[i].new_start.get();
            let floats = {
                let bytes = self.heap.segment_bytes(i);
                let mut floats = Vec::new();
                let mut w = Walk::<L>::new(bytes, start, i);
                for obj in w.by_ref() {
                    if obj.header.class_index() == CLASS_FLOAT && obj.num_slots * L::W as u64 >= 8 {
                        floats.push(obj.offset + 8);
                    }
                }
                w.finish()?;
                floats
            };
            let bytes = self.heap.segment_bytes_mut(i);
            for at in floats {
                let body = &mut bytes[at..at + 8];
                let (lo, hi) = body.split_at_mut(4);
                lo.swap_with_slice(hi);
                converted += 1;
            }
        }
        Ok(converted)
    }

    /// Bytes of reserved headroom after the last segment that
    /// [`claim_headroom`](Self::claim_headroom) would turn into free space.
    pub fn headroom_available(&self) -> u64 {
        self.heap.headroom_available()
    }

    /// Turns the reserved headroom after the last segment into one free chunk
    /// with a terminating bridge after it, and links the chunk into the free
    /// lists (a small list, or the size-ordered tree at head 0, §3.5.1), as
    /// `initializeOldSpaceFirstFree:` does after loading (§5.3). The last
    /// segment grows by the headroom; the heap stays a valid heap for the
    /// verifier and for a snapshot writer.
    ///
    /// Returns `None` when there is no headroom (less than 32 bytes). The
    /// headroom never needs splitting: `extraVMMemory` is a 32-bit field, so
    /// it is below the 4 GiB at which the VMs split. The final bridge, the
    /// free-lists object and the free-chunk tree are checked, and every
    /// write planned, before anything changes: an error leaves the heap
    /// byte for byte as it was.
    pub fn claim_headroom(&mut self) -> Result<Option<ClaimedHeadroom>, MemoryError> {
        let word = self.word;
        let avail = self.heap.headroom_available() & !7;
        if avail < 2 * BRIDGE_BYTES {
            return Ok(None);
        }
        let s = *self.heap.segments().last().expect("a heap has a segment");
        let bridge_at = s.objects_end();
        let old_bridge = self.heap.read_u64(bridge_at);
        if !s.own_bridge || !old_bridge.is_some_and(|w| ObjHeader(w).is_bridge()) {
            return Err(MemoryError::NoFinalBridge {
                addr: bridge_at.get(),
            });
        }
        let free_lists = self.free_lists_checked()?;
        let bytes = avail;
        let chunk_start = bridge_at.get();
        let w = word.bytes();
        let (chunk, num_slots) = if bytes >= OVERFLOW_SLOTS * w + 8 {
            (chunk_start + 8, (bytes - 16) / w)
        } else {
            (chunk_start, (bytes - 8) / w)
        };
        let chunk = Oop::from_bits(chunk);
        let new_bridge = chunk_start + bytes;
        let fixed = if bytes >= word.num_free_lists() * 8 {
            5
        } else {
            2
        };
        let (list, links) = self.plan_link(free_lists, chunk, bytes)?;

        // Nothing has changed so far. Grow the segment (the only step left
        // that can fail for want of memory), then write.
        self.heap.grow_last_segment(avail)?;
        self.refresh_spans();
        // With an overflow word the header's byte says 255; without one it is the count.
        let overflow = chunk.bits() != chunk_start;
        let raw = if overflow {
            u8::MAX
        } else {
            u8::try_from(num_slots).unwrap_or(u8::MAX)
        };
        if overflow {
            self.heap.write_u64(
                NewAddr::from_heap_word(chunk_start),
                overflow_word(num_slots),
            )?;
        }
        self.heap.write_u64(
            NewAddr::from_heap_word(chunk.bits()),
            ObjHeader::new(CLASS_FREE_CHUNK, 0, raw, 0).0,
        )?;
        self.heap.write_u64(
            NewAddr::from_heap_word(new_bridge),
            ObjHeader::short_bridge(word).0,
        )?;
        self.heap
            .write_u64(NewAddr::from_heap_word(new_bridge + 8), 0)?;
        for i in 0..fixed.min(num_slots) {
            self.store_raw(chunk, i, 0)?;
        }
        for l in links {
            self.store_raw(l.obj, l.index, l.value)?;
        }
        tracing::debug!(
            chunk = format_args!("{chunk:#x}"),
            bytes,
            list,
            "headroom claimed as free space"
        );
        Ok(Some(ClaimedHeadroom {
            chunk: NewAddr::from_heap_word(chunk.bits()),
            bytes,
            bridge: NewAddr::from_heap_word(new_bridge),
            list,
        }))
    }

    /// The free-lists object (the 4th object, §4.1), checked.
    pub(super) fn free_lists_checked(&self) -> Result<Oop, MemoryError> {
        let word = self.word;
        let fl = self.free_lists();
        let h = self.header(fl)?;
        let n = self.num_slots(fl).unwrap_or(0);
        if h.class_index() != word.word_array_pun()
            || h.format() != word.word_indexable_format()
            || n != word.num_free_lists()
        {
            return Err(MemoryError::BadFreeLists {
                addr: fl.bits(),
                class_index: h.class_index(),
                format: h.format(),
                num_slots: n,
            });
        }
        Ok(fl)
    }

    /// Bytes of the free chunk at `a` (its overflow word included).
    pub(super) fn free_chunk_bytes(&self, a: Oop) -> Result<u64, MemoryError> {
        let bad = MemoryError::BadFreeTree { addr: a.bits() };
        let h = self
            .header(a)
            .map_err(|_| MemoryError::BadFreeTree { addr: a.bits() })?;
        if !h.is_free_chunk() {
            return Err(bad);
        }
        let n = self
            .num_slots(a)
            .map_err(|_| MemoryError::BadFreeTree { addr: a.bits() })?;
        let over = if h.raw_num_slots() == OVERFLOW_SLOTS {
            8
        } else {
            0
        };
        Ok(self.word.body_bytes(n).unwrap_or(0) + over)
    }

    /// A raw slot (a free-list link, not an oop), 0 when absent.
    pub(super) fn link(&self, obj: Oop, i: u64) -> u64 {
        self.fetch(obj, i).map_or(0, Oop::bits)
    }

    /// Plans linking the free chunk `chunk` of `bytes` bytes into the free
    /// lists: list `bytes/8` for small chunks, else the tree at head 0 (a
    /// binary tree by size, equal sizes chained through `next` off the tree
    /// node). Reads only; answers the list and the slot writes to make
    /// once the chunk exists.
    pub(super) fn plan_link(
        &self,
        free_lists: Oop,
        chunk: Oop,
        bytes: u64,
    ) -> Result<(u64, Vec<SlotWrite>), MemoryError> {
        let write = |obj, index, value| SlotWrite { obj, index, value };
        let lists = self.word.num_free_lists();
        if bytes < lists * 8 {
            let i = bytes / 8;
            let head = self.link(free_lists, i);
            return Ok((
                i,
                vec![
                    write(chunk, FREE_CHUNK_NEXT, head),
                    write(free_lists, i, chunk.bits()),
                ],
            ));
        }
        let mut node = self.link(free_lists, 0);
        if node == 0 {
            return Ok((0, vec![write(free_lists, 0, chunk.bits())]));
        }
        // A tree of free chunks cannot have more nodes than the heap has 16-byte units.
        let limit = self.heap.heap_bytes() / 16 + 1;
        for _ in 0..limit {
            let n = Oop::from_bits(node);
            let size = self.free_chunk_bytes(n)?;
            if size == bytes {
                let next = self.link(n, FREE_CHUNK_NEXT);
                return Ok((
                    0,
                    vec![
                        write(chunk, FREE_CHUNK_NEXT, next),
                        write(n, FREE_CHUNK_NEXT, chunk.bits()),
                    ],
                ));
            }
            let side = if bytes < size {
                FREE_CHUNK_SMALLER
            } else {
                FREE_CHUNK_LARGER
            };
            let child = self.link(n, side);
            if child == 0 {
                // The node must have the slot the link goes into.
                let slots = self.num_slots(n)?;
                if side >= slots {
                    return Err(MemoryError::BadFreeTree { addr: node });
                }
                return Ok((
                    0,
                    vec![
                        write(n, side, chunk.bits()),
                        write(chunk, FREE_CHUNK_PARENT, node),
                    ],
                ));
            }
            node = child;
        }
        Err(MemoryError::FreeTreeLoops { limit })
    }
}
