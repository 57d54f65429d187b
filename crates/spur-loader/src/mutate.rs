//! Changes a runtime makes to a loaded heap before a VM resumes it: writing
//! slots, converting boxed floats to the host's word order (§1.2), and
//! turning the reserved headroom into free space at the end of the last
//! segment (§5.3).
//!
//! Every write stays inside the heap's own reservations and is bounds
//! checked; a change that cannot be made is a [`MutateError`] naming the
//! address and the numbers involved, and leaves the heap as it was.

use spur_format::objheader::overflow_word;
use spur_format::raw::*;
use spur_format::{FormatError, Layout, NewAddr, ObjHeader, Walk, WordSize, L32, L64};
use spur_mem::Backing;

use crate::heap::LoadedHeap;

/// Why a change to the heap could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MutateError {
    #[error("object {obj:#x} has {num_slots} slots; slot {index} does not exist")]
    NoSuchSlot {
        obj: u64,
        index: u64,
        num_slots: u64,
    },
    #[error("{addr:#x} is not the address of an object of the heap")]
    NotAnObject { addr: u64 },
    #[error("the free-lists object at {addr:#x} is not one (class {class_index}, format {format}, {num_slots} slots)")]
    BadFreeLists {
        addr: u64,
        class_index: u32,
        format: u8,
        num_slots: u64,
    },
    #[error("the free-chunk tree leads to {addr:#x}, which is not a free chunk")]
    BadFreeTree { addr: u64 },
    #[error("the free-chunk tree is deeper than {limit} nodes; it must loop")]
    FreeTreeLoops { limit: u64 },
    #[error("the last segment has no bridge of its own at {addr:#x}")]
    NoFinalBridge { addr: u64 },
    #[error(transparent)]
    Walk(#[from] FormatError),
    #[error(transparent)]
    Memory(#[from] spur_mem::MemError),
}

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

impl LoadedHeap {
    /// The mutable bytes `addr..addr+len`, if they lie inside one segment
    /// (its bridge included).
    pub fn bytes_at_mut(&mut self, addr: u64, len: u64) -> Option<&mut [u8]> {
        let i = self
            .segments
            .partition_point(|s| s.new_start.0 <= addr)
            .checked_sub(1)?;
        let s = self.segments[i];
        let end = addr.checked_add(len)?;
        if end > s.new_start.0 + s.size {
            return None;
        }
        let off = s.offset + (addr - s.new_start.0) as usize;
        self.regions[s.region]
            .bytes_mut()
            .get_mut(off..off + len as usize)
    }

    /// Writes the 8-byte word at `addr`, which must lie inside a segment.
    fn put_u64(&mut self, addr: u64, value: u64) -> Result<(), MutateError> {
        let b = self
            .bytes_at_mut(addr, 8)
            .ok_or(MutateError::NotAnObject { addr })?;
        b.copy_from_slice(&value.to_le_bytes());
        Ok(())
    }

    /// Writes slot `index` of the object at `obj`.
    pub fn write_slot(&mut self, obj: NewAddr, index: u64, value: u64) -> Result<(), MutateError> {
        let n = self
            .num_slots(obj)
            .ok_or(MutateError::NotAnObject { addr: obj.0 })?;
        if index >= n {
            return Err(MutateError::NoSuchSlot {
                obj: obj.0,
                index,
                num_slots: n,
            });
        }
        let w = self.word().bytes();
        let at = obj.0 + 8 + index * w;
        let b = self
            .bytes_at_mut(at, w)
            .ok_or(MutateError::NotAnObject { addr: obj.0 })?;
        match w {
            8 => b.copy_from_slice(&value.to_le_bytes()),
            _ => b.copy_from_slice(&(value as u32).to_le_bytes()),
        }
        Ok(())
    }

    /// Swaps the two 32-bit halves of every boxed Float (class index 34), as
    /// the VMs do when an image's float word order is not the host's (§1.2).
    /// One walk over every segment; returns the number of floats converted.
    pub fn swap_boxed_float_words(&mut self) -> Result<u64, MutateError> {
        match self.word() {
            WordSize::W64 => self.swap_floats_with::<L64>(),
            WordSize::W32 => self.swap_floats_with::<L32>(),
        }
    }

    fn swap_floats_with<L: Layout>(&mut self) -> Result<u64, MutateError> {
        let mut converted = 0;
        for i in 0..self.segments.len() {
            let s = self.segments[i];
            let bytes =
                &mut self.regions[s.region].bytes_mut()[s.offset..s.offset + s.size as usize];
            let mut floats = Vec::new();
            let mut w = Walk::<L>::new(bytes, s.new_start.0, i);
            for obj in w.by_ref() {
                if obj.header.class_index() == CLASS_FLOAT && obj.num_slots * L::W as u64 >= 8 {
                    floats.push(obj.offset + 8);
                }
            }
            w.finish()?;
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
        let Some(s) = self.segments.last() else {
            return 0;
        };
        let end = s.offset as u64 + s.size;
        (self.regions[s.region].len() as u64).saturating_sub(end)
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
    /// it is below the 4 GiB at which the VMs split.
    pub fn claim_headroom(&mut self) -> Result<Option<ClaimedHeadroom>, MutateError> {
        let word = self.word();
        let avail = self.headroom_available() & !7;
        if avail < 2 * BRIDGE_BYTES {
            return Ok(None);
        }
        let last = self.segments.len() - 1;
        let s = self.segments[last];
        let bridge_at = s.new_start.0 + s.size - BRIDGE_BYTES;
        let old_bridge = self.u64_at_any(bridge_at);
        if !s.own_bridge || !old_bridge.is_some_and(|w| ObjHeader(w).is_bridge()) {
            return Err(MutateError::NoFinalBridge { addr: bridge_at });
        }
        let free_lists = self.free_lists_checked()?;
        // Make the headroom accessible; it is only touched where the chunk's
        // header and the new bridge are written.
        let end_off = s.offset as u64 + s.size + avail;
        self.regions[s.region].commit(end_off, Backing::Pages)?;
        let bytes = avail;
        let chunk_start = bridge_at;
        let w = word.bytes();
        let (chunk, num_slots) = if bytes >= OVERFLOW_SLOTS * w + 8 {
            (chunk_start + 8, (bytes - 16) / w)
        } else {
            (chunk_start, (bytes - 8) / w)
        };
        let new_bridge = chunk_start + bytes;
        // Grow the segment first so that every write below lands inside it.
        self.segments[last].size += avail;
        let raw = if chunk != chunk_start {
            self.put_u64(chunk_start, overflow_word(num_slots))?;
            OVERFLOW_SLOTS as u8
        } else {
            num_slots as u8
        };
        self.put_u64(chunk, ObjHeader::new(CLASS_FREE_CHUNK, 0, raw, 0).0)?;
        self.put_u64(new_bridge, ObjHeader::short_bridge(word).0)?;
        self.put_u64(new_bridge + 8, 0)?;
        let fixed = if bytes >= word.num_free_lists() * 8 {
            5
        } else {
            2
        };
        for i in 0..fixed.min(num_slots) {
            self.write_slot(NewAddr(chunk), i, 0)?;
        }
        let list = self.link_free_chunk(free_lists, NewAddr(chunk), bytes)?;
        if let Some(n) = self.objects_seen.as_mut() {
            *n += 1;
        }
        tracing::debug!(
            chunk = format_args!("{chunk:#x}"),
            bytes,
            list,
            "headroom claimed as free space"
        );
        Ok(Some(ClaimedHeadroom {
            chunk: NewAddr(chunk),
            bytes,
            bridge: NewAddr(new_bridge),
            list,
        }))
    }

    /// The u64 at `a` anywhere in a segment, its bridge included.
    fn u64_at_any(&self, a: u64) -> Option<u64> {
        let i = self
            .segments
            .partition_point(|s| s.new_start.0 <= a)
            .checked_sub(1)?;
        let s = &self.segments[i];
        let off = (a.checked_sub(s.new_start.0)?) as usize;
        let b = self.segment_bytes(i).get(off..off + 8)?;
        Some(u64::from_le_bytes(b.try_into().unwrap()))
    }

    /// The free-lists object (the 4th object, §4.1), checked.
    fn free_lists_checked(&self) -> Result<NewAddr, MutateError> {
        let word = self.word();
        let fl = NewAddr(self.nil().0 + 48);
        let h = self
            .header_at(fl)
            .ok_or(MutateError::NotAnObject { addr: fl.0 })?;
        let n = self.num_slots(fl).unwrap_or(0);
        if h.class_index() != word.word_array_pun()
            || h.format() != word.word_indexable_format()
            || n != word.num_free_lists()
        {
            return Err(MutateError::BadFreeLists {
                addr: fl.0,
                class_index: h.class_index(),
                format: h.format(),
                num_slots: n,
            });
        }
        Ok(fl)
    }

    /// Bytes of the free chunk at `a` (its overflow word included).
    fn free_chunk_bytes(&self, a: u64) -> Result<u64, MutateError> {
        let bad = MutateError::BadFreeTree { addr: a };
        let h = self.header_at(NewAddr(a)).ok_or(bad)?;
        if !h.is_free_chunk() {
            return Err(MutateError::BadFreeTree { addr: a });
        }
        let n = self
            .num_slots(NewAddr(a))
            .ok_or(MutateError::BadFreeTree { addr: a })?;
        let over = if h.raw_num_slots() == OVERFLOW_SLOTS {
            8
        } else {
            0
        };
        Ok(self.word().body_bytes(n).unwrap_or(0) + over)
    }

    /// Links the free chunk `chunk` of `bytes` bytes into the free lists:
    /// list `bytes/8` for small chunks, else the tree at head 0 (a binary
    /// tree by size, equal sizes chained through `next` off the tree node).
    fn link_free_chunk(
        &mut self,
        free_lists: NewAddr,
        chunk: NewAddr,
        bytes: u64,
    ) -> Result<u64, MutateError> {
        let lists = self.word().num_free_lists();
        if bytes < lists * 8 {
            let i = bytes / 8;
            let head = self.slot(free_lists, i).unwrap_or(0);
            self.write_slot(chunk, FREE_CHUNK_NEXT, head)?;
            self.write_slot(free_lists, i, chunk.0)?;
            return Ok(i);
        }
        let mut node = self.slot(free_lists, 0).unwrap_or(0);
        if node == 0 {
            self.write_slot(free_lists, 0, chunk.0)?;
            return Ok(0);
        }
        // A tree of free chunks cannot have more nodes than the heap has 16-byte units.
        let limit = self.heap_bytes() / 16 + 1;
        for _ in 0..limit {
            let size = self.free_chunk_bytes(node)?;
            let n = NewAddr(node);
            if size == bytes {
                let next = self.slot(n, FREE_CHUNK_NEXT).unwrap_or(0);
                self.write_slot(chunk, FREE_CHUNK_NEXT, next)?;
                self.write_slot(n, FREE_CHUNK_NEXT, chunk.0)?;
                return Ok(0);
            }
            let side = if bytes < size {
                FREE_CHUNK_SMALLER
            } else {
                FREE_CHUNK_LARGER
            };
            let child = self.slot(n, side).unwrap_or(0);
            if child == 0 {
                self.write_slot(n, side, chunk.0)?;
                self.write_slot(chunk, FREE_CHUNK_PARENT, node)?;
                return Ok(0);
            }
            node = child;
        }
        Err(MutateError::FreeTreeLoops { limit })
    }
}
