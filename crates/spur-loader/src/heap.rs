//! A loaded heap: the segments in this process's memory, and read access to
//! them by address.

use crate::conv::usize_of;
use spur_format::objheader::overflow_word;
use spur_format::raw::BRIDGE_BYTES;
use spur_format::{
    ImageHeader, Layout, NewAddr, ObjHeader, OldAddr, Swizzle, Walk, WordSize, L32, L64,
};
use spur_mem::{page_ceil, Backing, MemError, Reservation};

/// Attempts at placing a new segment above the last one before giving up.
const SEGMENT_PLACEMENT_TRIES: usize = 64;

/// Why a raw access to a loaded heap's memory could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HeapAccessError {
    /// The range does not lie inside one segment (bridge included) or perm space.
    #[error("{len} bytes at {addr:#x} do not lie inside one segment of the heap")]
    OutOfHeap {
        /// Address of the first byte asked for.
        addr: u64,
        /// Bytes asked for.
        len: u64,
    },
    /// A segment cannot grow by more than the headroom reserved after it.
    #[error("the last segment cannot grow by {bytes} bytes: {available} bytes of headroom are reserved after it")]
    NoHeadroom {
        /// Bytes the segment was asked to grow by.
        bytes: u64,
        /// Bytes of headroom reserved after the last segment.
        available: u64,
    },
    /// No free range of address space above the last segment could take a new segment.
    #[error("no free range of {bytes} bytes above {after:#x} (below {limit:#x}) for a new segment; the last one tried was {tried:#x}")]
    NoRoomForSegment {
        /// Bytes the new segment needed.
        bytes: u64,
        /// Where the last segment ends: a new one must start above.
        after: u64,
        /// The highest address a segment of this heap may reach.
        limit: u64,
        /// The last address asked for.
        tried: u64,
    },
    /// The last segment's bridge is not in memory (it was coalesced), so no segment can follow it.
    #[error("segment {index} does not keep its own bridge, so no segment can be added after it")]
    NoOwnBridge {
        /// The segment.
        index: usize,
    },
    /// The reserved headroom could not be made accessible.
    #[error(transparent)]
    Memory(#[from] MemError),
}

/// Where the heap ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Every segment at the address it had when the image was saved.
    OldBase,
    /// Segments moved (coalesced into one range) and pointers swizzled.
    Relocated,
}

impl Placement {
    /// The name scripts see (`"old-base"` or `"relocated"`).
    pub const fn name(self) -> &'static str {
        match self {
            Placement::OldBase => "old-base",
            Placement::Relocated => "relocated",
        }
    }
}

/// One segment of a loaded heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapSegment {
    /// Position of the segment in the image, 0 first.
    pub index: usize,
    /// Where the segment lived when the image was saved.
    pub old_start: OldAddr,
    /// Where it lives now.
    pub new_start: NewAddr,
    /// Bytes of the segment, its 16-byte bridge included.
    pub size: u64,
    /// Which reservation of the heap holds it, and at what offset.
    pub(crate) region: usize,
    pub(crate) offset: usize,
    /// Is the segment's own bridge in memory (segments kept apart), or was it
    /// overwritten by the next segment (coalesced)?
    pub own_bridge: bool,
    /// Was the segment mapped from a file rather than read?
    pub mapped: bool,
}

impl HeapSegment {
    /// How far the segment moved.
    pub const fn swizzle(&self) -> Swizzle {
        Swizzle::between(self.old_start, self.new_start)
    }
    /// Address where the segment's bridge starts: its objects end there.
    pub const fn objects_end(&self) -> NewAddr {
        self.new_start.plus(self.size - BRIDGE_BYTES)
    }
    /// Does `a` fall among the segment's objects?
    pub const fn holds(&self, a: NewAddr) -> bool {
        a.get() >= self.new_start.get() && a.get() < self.objects_end().get()
    }
}

/// Pharo's perm space (§6): objects that never move, at a fixed address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermSpace {
    /// Address of perm space's first byte; it is loaded there and nowhere else.
    pub start: u64,
    /// Bytes of perm space.
    pub size: u64,
    /// Mapped from `permSpace.data` rather than read.
    pub mapped: bool,
    pub(crate) region: usize,
    pub(crate) offset: usize,
}

impl PermSpace {
    /// Does `a` fall in perm space?
    pub const fn holds(&self, a: u64) -> bool {
        a >= self.start && a < self.start + self.size
    }
}

/// Per-phase load times, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Reserving (and placing) the address space.
    pub reserve_us: u64,
    /// Reading or mapping the segments into place.
    pub read_us: u64,
    /// Repairing bridges or relocating pointers (0 when nothing moved).
    pub swizzle_us: u64,
    /// The whole load, from opening the image to the checked heap.
    pub total_us: u64,
}

/// A heap in memory, ready to be verified or handed to a runtime.
///
/// It owns the reservations that hold it: dropping it unmaps everything.
#[derive(Debug)]
pub struct LoadedHeap {
    pub(crate) header: ImageHeader,
    pub(crate) regions: Vec<Reservation>,
    pub(crate) segments: Vec<HeapSegment>,
    pub(crate) placement: Placement,
    pub(crate) swizzled: bool,
    pub(crate) special_objects: NewAddr,
    pub(crate) timings: Timings,
    pub(crate) fallback: Option<String>,
    pub(crate) headroom: u64,
    pub(crate) objects_seen: Option<u64>,
    pub(crate) perm: Option<PermSpace>,
}

impl LoadedHeap {
    /// The image header as read from the file.
    pub fn header(&self) -> &ImageHeader {
        &self.header
    }
    /// Word size of the heap (a 32-bit heap stays 32-bit in memory).
    pub fn word(&self) -> WordSize {
        self.header.word
    }
    /// The segments, in address order.
    pub fn segments(&self) -> &[HeapSegment] {
        &self.segments
    }
    /// Where the heap ended up.
    pub fn placement(&self) -> Placement {
        self.placement
    }
    /// Were pointers rewritten?
    pub fn swizzled(&self) -> bool {
        self.swizzled
    }
    /// Why the old addresses could not be used, when the loader fell back to relocation.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }
    /// Per-phase times of the load.
    pub fn timings(&self) -> Timings {
        self.timings
    }
    /// Address-space headroom reserved after the last segment: what the
    /// image asks for (§5.3), less what did not fit.
    pub fn headroom(&self) -> u64 {
        self.headroom
    }
    /// Perm space, when the image has one (Pharo composed images only).
    pub fn perm_space(&self) -> Option<&PermSpace> {
        self.perm.as_ref()
    }

    /// The bytes of perm space.
    pub fn perm_bytes(&self) -> Option<&[u8]> {
        let p = self.perm.as_ref()?;
        Some(&self.regions[p.region].bytes()[p.offset..p.offset + usize_of(p.size)])
    }

    /// The bytes of perm space, writable.
    pub fn perm_bytes_mut(&mut self) -> Option<&mut [u8]> {
        let p = *self.perm.as_ref()?;
        Some(&mut self.regions[p.region].bytes_mut()[p.offset..p.offset + usize_of(p.size)])
    }

    /// The first object: nil.
    pub fn nil(&self) -> NewAddr {
        self.segments[0].new_start
    }
    /// The special objects array, at its current address.
    pub fn special_objects(&self) -> NewAddr {
        self.special_objects
    }
    /// Makes `a` the special objects array a snapshot names (after a
    /// running image replaced its array by another, with a become).
    pub fn set_special_objects(&mut self, a: NewAddr) {
        self.special_objects = a;
    }
    /// Bytes of heap (segments, bridges included).
    pub fn heap_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// The bytes of segment `i`, its bridge included. In a coalesced heap the
    /// last 16 bytes of every segment but the last are the next one's start.
    #[inline]
    pub fn segment_bytes(&self, i: usize) -> &[u8] {
        let s = &self.segments[i];
        &self.regions[s.region].bytes()[s.offset..s.offset + usize_of(s.size)]
    }

    /// The bytes of segment `i`, writable: the raw memory a runtime's object
    /// layer changes. The slice is exactly the segment (its bridge included),
    /// so no write through it leaves the heap.
    ///
    /// # Panics
    ///
    /// When `i` is not the index of a segment (`i >= segments().len()`).
    #[inline]
    pub fn segment_bytes_mut(&mut self, i: usize) -> &mut [u8] {
        let s = self.segments[i];
        &mut self.regions[s.region].bytes_mut()[s.offset..s.offset + usize_of(s.size)]
    }

    /// The segment holding `a..a+len` (its bridge included) and the offset of `a` in it.
    fn segment_range(&self, a: NewAddr, len: u64) -> Option<(usize, usize)> {
        let i = self
            .segments
            .partition_point(|s| s.new_start <= a)
            .checked_sub(1)?;
        let s = &self.segments[i];
        let off = a.get() - s.new_start.get();
        (off.checked_add(len)? <= s.size).then_some((i, usize_of(off)))
    }

    /// The u64 at `a` anywhere in a segment, its bridge included.
    pub fn read_u64(&self, a: NewAddr) -> Option<u64> {
        let (i, off) = self.segment_range(a, 8)?;
        let b = self.segment_bytes(i).get(off..off + 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    /// Writes the u64 at `a`, which must lie inside one segment (its bridge included).
    pub fn write_u64(&mut self, a: NewAddr, value: u64) -> Result<(), HeapAccessError> {
        let (i, off) = self.segment_range(a, 8).ok_or(HeapAccessError::OutOfHeap {
            addr: a.get(),
            len: 8,
        })?;
        self.segment_bytes_mut(i)[off..off + 8].copy_from_slice(&value.to_le_bytes());
        Ok(())
    }

    /// Bytes of reserved headroom after the last segment, which
    /// [`grow_last_segment`](Self::grow_last_segment) can add to it.
    pub fn headroom_available(&self) -> u64 {
        let Some(s) = self.segments.last() else {
            return 0;
        };
        let end = s.offset as u64 + s.size;
        (self.regions[s.region].len() as u64).saturating_sub(end)
    }

    /// Makes `bytes` of the headroom after the last segment accessible and
    /// adds them to that segment, which then ends `bytes` later. The new
    /// bytes read as zero; the caller writes the objects and the bridge
    /// that make them part of a valid heap. Returns where the segment ended
    /// before. Nothing changes when it fails.
    pub fn grow_last_segment(&mut self, bytes: u64) -> Result<NewAddr, HeapAccessError> {
        let available = self.headroom_available();
        if bytes > available || !bytes.is_multiple_of(8) {
            return Err(HeapAccessError::NoHeadroom { bytes, available });
        }
        let last = self.segments.len() - 1;
        let s = self.segments[last];
        let end_off = s.offset as u64 + s.size + bytes;
        self.regions[s.region].commit(end_off, Backing::Pages)?;
        self.segments[last].size += bytes;
        // The cached count no longer holds: the caller adds objects.
        self.objects_seen = None;
        Ok(s.new_start.plus(s.size))
    }

    /// Gives the last `bytes` of the last segment back to the headroom
    /// after it (the reverse of [`grow_last_segment`](Self::grow_last_segment);
    /// the memory stays reserved and accessible). The caller has written the
    /// bridge that ends the shorter segment. Returns where it now ends.
    /// Nothing changes when it fails (more bytes than the segment's objects).
    pub fn shrink_last_segment(&mut self, bytes: u64) -> Result<NewAddr, HeapAccessError> {
        let last = self.segments.len() - 1;
        let s = self.segments[last];
        if !bytes.is_multiple_of(8) || bytes > s.size.saturating_sub(BRIDGE_BYTES) {
            return Err(HeapAccessError::NoHeadroom {
                bytes,
                available: s.size.saturating_sub(BRIDGE_BYTES),
            });
        }
        self.segments[last].size -= bytes;
        self.objects_seen = None;
        Ok(s.new_start.plus(s.size - bytes))
    }

    /// Adds a segment of at least `bytes` bytes (its bridge included;
    /// rounded up to whole pages) after the last one, in a new range of
    /// address space reserved with `MAP_FIXED_NOREPLACE` above the last
    /// segment (never over a mapping: a range found taken is skipped past
    /// its occupants), below the word size's address limit (4 GiB for a
    /// 32-bit heap). The last segment's bridge is re-encoded to span the gap
    /// to the new segment (a short bridge when adjacent, else a long one
    /// whose overflow word counts the gap, §2.1), and the new segment ends in
    /// a terminating short bridge. Its objects (all but its last 16 bytes)
    /// read as zero: the caller makes them a free chunk. Returns the new
    /// segment's start and size. Nothing changes when it fails.
    pub fn add_segment(&mut self, bytes: u64) -> Result<(NewAddr, u64), HeapAccessError> {
        let word = self.word();
        let last = *self.segments.last().ok_or(HeapAccessError::OutOfHeap {
            addr: 0,
            len: bytes,
        })?;
        let li = self.segments.len() - 1;
        if !last.own_bridge {
            return Err(HeapAccessError::NoOwnBridge { index: li });
        }
        let len = page_ceil(bytes.max(2 * BRIDGE_BYTES));
        let after = last.new_start.get() + last.size;
        // Past the last segment's reservation too: its headroom is not ours to map over.
        let region = &self.regions[last.region];
        let region_end = region.base() + region.len() as u64;
        let limit = word.address_limit();
        let mut at = page_ceil(after.max(region_end));
        let mut tried = at;
        let mut found = None;
        for _ in 0..SEGMENT_PLACEMENT_TRIES {
            if at.checked_add(len).is_none_or(|e| e > limit) {
                break;
            }
            tried = at;
            match Reservation::at(at, len) {
                Ok(r) => {
                    found = Some(r);
                    break;
                }
                Err(MemError::Occupied { occupants, end, .. }) => {
                    let past = occupants.iter().map(|o| o.end).max().unwrap_or(end);
                    at = page_ceil(past.max(at + spur_mem::page_size()));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mut r = found.ok_or(HeapAccessError::NoRoomForSegment {
            bytes: len,
            after,
            limit,
            tried,
        })?;
        r.commit(len, Backing::Pages)?;
        let start = NewAddr::from_heap_word(r.base());
        // The last segment's bridge now spans the gap to the new segment.
        let bridge = last.objects_end().get();
        let gap = start.get() - bridge;
        let (w0, w1) = if gap == BRIDGE_BYTES {
            (ObjHeader::short_bridge(word).0, 0)
        } else {
            (
                overflow_word((gap - BRIDGE_BYTES) / word.bytes()),
                ObjHeader::long_bridge(word).0,
            )
        };
        self.regions.push(r);
        let index = self.segments.len();
        self.segments.push(HeapSegment {
            index,
            old_start: start.as_saved(),
            new_start: start,
            size: len,
            region: self.regions.len() - 1,
            offset: 0,
            own_bridge: true,
            mapped: false,
        });
        let b = self.segment_bytes_mut(li);
        let o = b.len() - usize_of(BRIDGE_BYTES);
        b[o..o + 8].copy_from_slice(&w0.to_le_bytes());
        b[o + 8..o + 16].copy_from_slice(&w1.to_le_bytes());
        let nb = self.segment_bytes_mut(index);
        let o = nb.len() - usize_of(BRIDGE_BYTES);
        nb[o..o + 8].copy_from_slice(&ObjHeader::short_bridge(word).0.to_le_bytes());
        self.objects_seen = None;
        tracing::debug!(
            start = format_args!("{:#x}", start.get()),
            len,
            gap,
            "old space grew by a segment"
        );
        Ok((start, len))
    }

    /// The segment whose objects contain `a`.
    #[inline]
    pub fn segment_of(&self, a: NewAddr) -> Option<usize> {
        let i = self.segments.partition_point(|s| s.new_start <= a);
        let i = i.checked_sub(1)?;
        self.segments[i].holds(a).then_some(i)
    }

    /// The object bytes holding `a` (a segment's objects, or perm space) and
    /// the offset of `a` in them.
    fn objects_holding(&self, a: NewAddr) -> Option<(&[u8], usize)> {
        if let Some(p) = self.perm.as_ref().filter(|p| p.holds(a.get())) {
            return Some((self.perm_bytes()?, usize_of(a.get() - p.start)));
        }
        let i = self.segment_of(a)?;
        let s = &self.segments[i];
        let bytes = self.segment_bytes(i);
        Some((
            &bytes[..bytes.len() - usize_of(BRIDGE_BYTES)],
            usize_of(a.get() - s.new_start.get()),
        ))
    }

    /// Asks for the memory at `a` to be brought into the cache, if `a` lies
    /// among a segment's objects or in perm space; a hint, which changes
    /// nothing the heap holds.
    pub fn prefetch(&self, a: NewAddr) {
        if let Some((bytes, off)) = self.objects_holding(a) {
            if let Some(b) = bytes.get(off) {
                spur_mem::hint::prefetch(b);
            }
        }
    }

    /// The u64 at `a` (little-endian), if `a..a+8` lies among a segment's
    /// objects or in perm space.
    pub fn u64_at(&self, a: NewAddr) -> Option<u64> {
        let (bytes, off) = self.objects_holding(a)?;
        Some(u64::from_le_bytes(
            bytes.get(off..off + 8)?.try_into().unwrap(),
        ))
    }

    /// The header of the object at `obj`.
    pub fn header_at(&self, obj: NewAddr) -> Option<ObjHeader> {
        self.u64_at(obj).map(ObjHeader)
    }

    /// Slot count of the object at `obj` (from the overflow word when needed).
    pub fn num_slots(&self, obj: NewAddr) -> Option<u64> {
        let h = self.header_at(obj)?;
        if h.raw_num_slots() == 255 {
            let w = self.u64_at(NewAddr::from_heap_word(obj.get().checked_sub(8)?))?;
            Some(self.word().overflow_slots(w))
        } else {
            Some(h.raw_num_slots())
        }
    }

    /// Slot `i` of the object at `obj`, if the object has that many slots.
    pub fn slot(&self, obj: NewAddr, i: u64) -> Option<u64> {
        if i >= self.num_slots(obj)? {
            return None;
        }
        let wb = self.word().bytes();
        let (bytes, off) = self.objects_holding(obj.plus(8 + i * wb))?;
        Some(match self.word() {
            WordSize::W64 => u64::from_le_bytes(bytes.get(off..off + 8)?.try_into().unwrap()),
            WordSize::W32 => u64::from(u32::from_le_bytes(
                bytes.get(off..off + 4)?.try_into().unwrap(),
            )),
        })
    }

    /// The object following `obj` in its segment (skipping to the header past
    /// any overflow word), or `None` at the segment's bridge.
    pub fn object_after(&self, obj: NewAddr) -> Option<NewAddr> {
        let seg = self.segment_of(obj)?;
        let n = self.num_slots(obj)?;
        let next = obj.get() + self.word().body_bytes(n)?;
        if next >= self.segments[seg].objects_end().get() {
            return None;
        }
        let w = self.u64_at(NewAddr::from_heap_word(next))?;
        Some(NewAddr::from_heap_word(if w >> 56 == 0xFF {
            next + 8
        } else {
            next
        }))
    }

    /// Counts the objects of every segment (free chunks and hidden objects
    /// included, bridges excluded): the count `SOURCES.md` lists.
    pub fn count_objects(&self) -> Result<u64, spur_format::FormatError> {
        if let Some(n) = self.objects_seen {
            return Ok(n);
        }
        match self.word() {
            WordSize::W64 => self.count_with::<L64>(),
            WordSize::W32 => self.count_with::<L32>(),
        }
    }

    fn count_with<L: Layout>(&self) -> Result<u64, spur_format::FormatError> {
        let mut n = 0;
        for (i, s) in self.segments.iter().enumerate() {
            let mut w = Walk::<L>::new(self.segment_bytes(i), s.new_start.get(), i);
            n += w.by_ref().count() as u64;
            w.finish()?;
        }
        Ok(n)
    }
}
