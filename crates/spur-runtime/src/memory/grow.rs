//! Old-space allocation and growth: the room a scavenge tenures into, and
//! where an object goes when eden cannot hold it.
//!
//! An object of a small size takes a chunk of exactly its size from the
//! free list of that size, when the list has one (§3.5.1: head `i` lists
//! chunks of `i × 8` bytes, linked through slot 0). Anything else is cut
//! from an allocation buffer: the largest chunk of the free-chunk tree,
//! taken out of the tree and filled from its start; what is left when the
//! buffer is closed goes back to the free lists as one free chunk. When no
//! chunk is large enough, old space grows, as `growOldSpaceByAtLeast:`
//! does in the VMs: first by the headroom reserved after the last segment
//! ([`claim_headroom`](ObjectMemory::claim_headroom), §5.3), then by a new
//! segment mapped above the last one ([`LoadedHeap::add_segment`], linked
//! by a bridge, §2.1) whose objects are one free chunk. So tenuring fails
//! only when the machine has no memory (or, for a 32-bit heap, no address
//! space below 4 GiB) left.
//!
//! [`LoadedHeap::add_segment`]: spur_loader::LoadedHeap::add_segment

use spur_format::raw::{BRIDGE_BYTES, FREE_CHUNK_NEXT};
use spur_mem::page_ceil;

use super::{MemoryError, ObjectMemory, Oop};

/// Smallest segment old space grows by (the VMs' `growHeadroom` is 16 MiB;
/// a smaller step keeps the snapshots of small heaps small).
pub const MIN_SEGMENT_BYTES: u64 = 4 << 20;

/// Largest segment old space grows by at once: an object larger than this
/// (less its bridge) is refused ([`MemoryError::OldSpaceFull`]) rather than
/// have the machine commit and zero it (a damaged image's size field asks
/// for anything; eden used to refuse all that it could not hold).
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

/// What the scavenger and old-space growth have done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Scavenges run.
    pub scavenges: u64,
    /// Objects copied into future space, over all scavenges.
    pub survivor_objects: u64,
    /// Bytes copied into future space, over all scavenges.
    pub survivor_bytes: u64,
    /// Objects copied from new space into old space (scavenges and `tenure_all`).
    pub tenured_objects: u64,
    /// Bytes of those copies, overflow words included.
    pub tenured_bytes: u64,
    /// Weak slots a scavenge set to nil (their referents were reached by nothing strong).
    pub weak_slots_cleared: u64,
    /// Objects allocated directly in old space because eden could not hold them.
    pub old_direct_objects: u64,
    /// Bytes of those objects.
    pub old_direct_bytes: u64,
    /// Segments added to old space.
    pub segments_added: u64,
    /// Bytes old space grew by: headroom claimed for allocation and new segments.
    pub bytes_added: u64,
}

/// An allocation buffer: `[top, end)` of old space, out of the free lists.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lab {
    pub(super) top: u64,
    pub(super) end: u64,
}

impl Lab {
    /// Can `bytes` be cut from the buffer? What would be left must be
    /// nothing or a free chunk (16 bytes at least).
    fn fits(&self, bytes: u64) -> bool {
        let room = self.end - self.top;
        room == bytes || room >= bytes + 16
    }
}

impl ObjectMemory {
    /// What the scavenger and old-space growth have done so far.
    pub fn gc_stats(&self) -> GcStats {
        self.gc
    }

    /// Bytes that allocation can still have: eden's free bytes, old space's
    /// free chunks, the headroom reserved after the last segment, and the
    /// smallest segment old space grows by. The VMs' `bytesLeft` counts
    /// free space only, and a full collection makes more; with no full
    /// collection here, old space grows instead, so an image's low-space
    /// check should not fire while a segment can still be had. Walks old
    /// space.
    /// Under a growth limit, the growth counted is what the limit still
    /// allows.
    pub fn bytes_left(&self) -> u64 {
        let growth = self.heap.headroom_available() + MIN_SEGMENT_BYTES;
        let growth = match self.growth_limit {
            Some(l) => growth.min(l.saturating_sub(self.gc.bytes_added)),
            None => growth,
        };
        self.eden_free() + self.free_old_bytes() + growth
    }

    /// Limits how many bytes old space may grow by, over the memory's
    /// life (headroom claimed for allocation and new segments, as
    /// [`GcStats::bytes_added`] counts them); `None` lifts the limit. Past
    /// it, growth fails with [`MemoryError::GrowthLimit`] before anything
    /// is mapped, so a runaway image stops at a size its owner chose.
    pub fn set_growth_limit(&mut self, limit: Option<u64>) {
        self.growth_limit = limit;
    }

    /// The limit [`set_growth_limit`](Self::set_growth_limit) set.
    pub fn growth_limit(&self) -> Option<u64> {
        self.growth_limit
    }

    /// Fails when growing by `add` bytes would pass the growth limit.
    fn check_growth(&self, add: u64) -> Result<(), MemoryError> {
        match self.growth_limit {
            Some(limit) if self.gc.bytes_added.saturating_add(add) > limit => {
                Err(MemoryError::GrowthLimit {
                    needed: add,
                    grown: self.gc.bytes_added,
                    limit,
                })
            }
            _ => Ok(()),
        }
    }

    /// Bytes of the largest free chunk of old space (its overflow word
    /// included): the largest object old space holds without growing.
    pub fn largest_free_chunk_bytes(&self) -> u64 {
        self.largest_free_chunk().map_or(0, |(_, b)| b)
    }

    /// Asks for a scavenge at the caller's next safe point (what the
    /// garbage-collection primitives do, since a primitive is no safe point).
    pub fn request_scavenge(&mut self) {
        self.eden_overflowed = true;
    }

    /// `bytes` of old space (an object's bytes, its overflow word
    /// included), from the free list of that size, else from `lab` (opened
    /// or replaced when it has no room; see the module doc). Answers the
    /// first address; the caller writes the object there. The bytes are
    /// what the chunk held: the caller overwrites all of them.
    pub(super) fn old_bytes(
        &mut self,
        lab: &mut Option<Lab>,
        bytes: u64,
    ) -> Result<u64, MemoryError> {
        if let Some(a) = self.pop_exact(bytes)? {
            return Ok(a);
        }
        if let Some(l) = lab.as_mut().filter(|l| l.fits(bytes)) {
            let a = l.top;
            l.top += bytes;
            return Ok(a);
        }
        if let Some(l) = lab.take() {
            self.close_lab(l)?;
        }
        let mut l = self.open_lab(bytes)?;
        let a = l.top;
        l.top += bytes;
        *lab = Some(l);
        Ok(a)
    }

    /// One object's `bytes` of old space outside a scavenge: the buffer is
    /// opened and closed around it, so the free lists are whole after.
    pub(super) fn old_bytes_once(&mut self, bytes: u64) -> Result<u64, MemoryError> {
        let mut lab = None;
        let a = self.old_bytes(&mut lab, bytes)?;
        if let Some(l) = lab {
            self.close_lab(l)?;
        }
        Ok(a)
    }

    /// The head of the free list of chunks of exactly `bytes`, taken off it.
    fn pop_exact(&mut self, bytes: u64) -> Result<Option<u64>, MemoryError> {
        let lists = self.word.num_free_lists();
        if bytes >= lists * 8 || bytes < 16 {
            return Ok(None);
        }
        let fl = self.free_lists_checked()?;
        let head = self.link(fl, bytes / 8);
        if head == 0 {
            return Ok(None);
        }
        let chunk = Oop::from_bits(head);
        if self.free_chunk_bytes(chunk)? != bytes {
            return Err(MemoryError::BadFreeTree { addr: head });
        }
        let next = self.link(chunk, FREE_CHUNK_NEXT);
        self.store_raw(fl, bytes / 8, next)?;
        Ok(Some(head))
    }

    /// A buffer of at least `bytes`: the largest free chunk, once old space
    /// has grown enough for it to hold them.
    fn open_lab(&mut self, bytes: u64) -> Result<Lab, MemoryError> {
        for _ in 0..3 {
            let (chunk, largest) = self.largest_free_chunk()?;
            if let Some(chunk) = chunk {
                let l = Lab {
                    top: 0,
                    end: largest,
                };
                if l.fits(bytes) {
                    let start = self.chunk_start(chunk)?;
                    self.unlink_largest(chunk)?;
                    return Ok(Lab {
                        top: start,
                        end: start + largest,
                    });
                }
            }
            self.grow_old_space(bytes)?;
        }
        let (_, largest) = self.largest_free_chunk()?;
        Err(MemoryError::OldSpaceFull {
            needed: bytes,
            largest,
        })
    }

    /// Gives what `lab` did not use back to the free lists.
    pub(super) fn close_lab(&mut self, lab: Lab) -> Result<(), MemoryError> {
        self.make_free_chunk(lab.top, lab.end - lab.top)
    }

    /// Grows old space by a free chunk of at least `bytes` (and 16 more):
    /// the headroom after the last segment when it holds that much, else a
    /// new segment.
    fn grow_old_space(&mut self, bytes: u64) -> Result<(), MemoryError> {
        let want = bytes + 16;
        let headroom = self.heap.headroom_available();
        if headroom >= want + BRIDGE_BYTES && self.check_growth(headroom).is_ok() {
            if let Some(c) = self.claim_headroom()? {
                self.gc.bytes_added += c.bytes;
                return Ok(());
            }
        }
        let seg_bytes = page_ceil(want + BRIDGE_BYTES).max(MIN_SEGMENT_BYTES);
        if seg_bytes > MAX_SEGMENT_BYTES {
            let (_, largest) = self.largest_free_chunk()?;
            return Err(MemoryError::OldSpaceFull {
                needed: bytes,
                largest,
            });
        }
        self.check_growth(seg_bytes)?;
        let (start, len) = self.heap.add_segment(seg_bytes)?;
        self.refresh_spans();
        self.make_free_chunk(start.get(), len - BRIDGE_BYTES)?;
        self.gc.segments_added += 1;
        self.gc.bytes_added += len;
        tracing::debug!(
            start = format_args!("{:#x}", start.get()),
            len,
            "old space grew by a segment"
        );
        Ok(())
    }
}
