//! Stack pages (§4.4): how many, how big, and the zone that holds them.
//!
//! The count comes from the command line if given, else from the header's
//! `hdrNumStackPages` if non-zero, else the default 50. The page size is
//! `stackPageFrameBytes + stackLimitOffset + headroom`, rounded to a power
//! of two: down when that loses at most an eighth, else up
//! (`SI>>stackPageByteSize`). §4.4 leaves the frame size and the headroom
//! to the platform; this runtime, which has no JIT, fixes them here:
//!
//! * [`FRAME_SLOTS`] = 7: the StackInterpreter's interpreter frame (caller's
//!   saved ip, saved fp, method, frame flags, thisContext, saved ip,
//!   receiver; `FrameSlots` in `initializeFrameIndices`, as we read it).
//!   It also stands for the VMs' `MFrameSlots` in the reserve, as
//!   no machine-code frames exist.
//! * [`STACK_PAGE_HEADROOM_BYTES`] = 0: the headroom is for machine code
//!   running on the page (signal delivery); an interpreter needs none.
//!
//! So a page is 4096 bytes on 64-bit (2048 + 71×8 = 2616, rounded up) and
//! 2048 bytes on 32-bit (1024 + 71×4 = 1308, rounded up).

use spur_format::WordSize;
use spur_mem::{page_ceil, Backing, Reservation};

use spur_loader::conv::usize_of;

use crate::error::RuntimeError;
use crate::place::{reserve_for, Placed};

/// Slots of a page left to frames: `stackPageFrameBytes = 256 × W` (§4.4).
pub const STACK_PAGE_FRAME_SLOTS: u64 = 256;
/// Slots of the smallest frame (see the module documentation).
pub const FRAME_SLOTS: u64 = 7;
/// `stackLimitOffset = (frame slots + 64) × W` (§4.4).
pub const STACK_LIMIT_EXTRA_SLOTS: u64 = 64;
/// Platform headroom of a page: none without a JIT.
pub const STACK_PAGE_HEADROOM_BYTES: u64 = 0;
/// Slots of a large context (`LargeContextSlots`, §4.4).
pub const LARGE_CONTEXT_SLOTS: u64 = 62;
/// Stack pages when neither the command line nor the header says (§4.4).
pub const DEFAULT_STACK_PAGES: u64 = 50;
/// Most stack pages accepted: what the header's 16-bit field can record.
pub const MAX_STACK_PAGES: u64 = u16::MAX as u64;
/// Words of a page's bookkeeping record (OpenSmalltalk's `StackPage`:
/// stackLimit, headSP, headFP, baseFP, baseAddress, realStackLimit,
/// lastAddress, trace, nextPage, prevPage), kept after the pages as
/// `computeStackZoneSize` counts it.
pub const STACK_PAGE_RECORD_WORDS: u64 = 10;

/// Where the page count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagesFrom {
    /// Given as an override by the caller (`--stack-pages`).
    CommandLine,
    /// The image header's `numStackPages` (§1.3).
    Header,
    /// The VMs' default, the header asking for none.
    Default,
}

impl PagesFrom {
    /// `command-line`, `header` or `default`.
    pub const fn name(self) -> &'static str {
        match self {
            PagesFrom::CommandLine => "command-line",
            PagesFrom::Header => "header",
            PagesFrom::Default => "default",
        }
    }
}

/// The sizes of the stack zone (§4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackLayout {
    /// The heap's word size, which sets the frame sizes.
    pub word: WordSize,
    /// Stack pages.
    pub count: u64,
    /// Where the page count came from.
    pub from: PagesFrom,
    /// `stackPageFrameBytes`.
    pub frame_bytes: u64,
    /// `stackLimitOffset`.
    pub limit_offset: u64,
    /// Bytes of one page, a power of two.
    pub page_bytes: u64,
    /// `maxFramesPerPage` of the allocation reserve.
    pub max_frames_per_page: u64,
    /// Pages plus their records plus one word (`computeStackZoneSize`).
    pub zone_bytes: u64,
}

/// `pageBytes` rounded to a power of two as `stackPageByteSize` does.
pub const fn round_page_bytes(bytes: u64) -> u64 {
    if bytes.is_power_of_two() {
        return bytes;
    }
    let large = bytes.next_power_of_two();
    let small = large / 2;
    if bytes - small <= small / 8 {
        small
    } else {
        large
    }
}

impl StackLayout {
    /// The layout for `requested` pages (command line), the header's count, and the word size.
    pub fn compute(
        word: WordSize,
        requested: Option<u64>,
        header_pages: u16,
    ) -> Result<Self, RuntimeError> {
        let (count, from) = match requested {
            Some(n) if n == 0 || n > MAX_STACK_PAGES => {
                return Err(RuntimeError::BadStackPages {
                    requested: n,
                    max: MAX_STACK_PAGES,
                })
            }
            Some(n) => (n, PagesFrom::CommandLine),
            None if header_pages != 0 => (u64::from(header_pages), PagesFrom::Header),
            None => (DEFAULT_STACK_PAGES, PagesFrom::Default),
        };
        let w = word.bytes();
        let frame_bytes = STACK_PAGE_FRAME_SLOTS * w;
        let limit_offset = (FRAME_SLOTS + STACK_LIMIT_EXTRA_SLOTS) * w;
        let page_bytes = round_page_bytes(frame_bytes + limit_offset + STACK_PAGE_HEADROOM_BYTES);
        let max_frames_per_page = (frame_bytes + limit_offset) / w / FRAME_SLOTS;
        let zone_bytes = count * (STACK_PAGE_RECORD_WORDS * w + page_bytes) + w;
        Ok(StackLayout {
            word,
            count,
            from,
            frame_bytes,
            limit_offset,
            page_bytes,
            max_frames_per_page,
            zone_bytes,
        })
    }

    /// `interpreterAllocationReserveBytes` (§4.4): room in eden for the
    /// contexts every frame of every page may need when it is married.
    pub const fn allocation_reserve_bytes(&self) -> u64 {
        self.max_frames_per_page * LARGE_CONTEXT_SLOTS * self.word.bytes() * self.count
    }
}

/// The stack zone: `count` pages, then their records, in memory owned here.
#[derive(Debug)]
pub struct StackZone {
    layout: StackLayout,
    start: u64,
    placed: Placed,
    memory: Reservation,
}

impl StackZone {
    /// Reserves and commits the zone (it is not touched: pages read as
    /// zero until used). A 32-bit image's zone lies below 4 GiB.
    pub fn allocate(layout: StackLayout) -> Result<Self, RuntimeError> {
        let len = page_ceil(layout.zone_bytes);
        let (mut memory, placed) = reserve_for(layout.word, len, None)?;
        memory.commit(len, Backing::Pages)?;
        Ok(StackZone {
            layout,
            start: memory.base(),
            placed,
            memory,
        })
    }
    /// The sizes the stack zone was laid out with.
    pub fn layout(&self) -> &StackLayout {
        &self.layout
    }
    /// First byte of the zone.
    pub fn start(&self) -> u64 {
        self.start
    }
    /// How the zone was placed.
    pub fn placed(&self) -> Placed {
        self.placed
    }
    /// The address range of page `i`.
    pub fn page(&self, i: u64) -> Option<std::ops::Range<u64>> {
        (i < self.layout.count).then(|| {
            let lo = self.start + i * self.layout.page_bytes;
            lo..lo + self.layout.page_bytes
        })
    }
    /// The zone's memory, for the interpreter that owns it.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let n = usize_of(self.layout.zone_bytes);
        &mut self.memory.bytes_mut()[..n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_by_hand() {
        // 64-bit: 256*8 + (7+64)*8 = 2616 -> 4096 (2616 - 2048 = 568 > 256).
        let l = StackLayout::compute(WordSize::W64, None, 0).unwrap();
        assert_eq!((l.count, l.from), (50, PagesFrom::Default));
        assert_eq!(
            (l.frame_bytes, l.limit_offset, l.page_bytes),
            (2048, 568, 4096)
        );
        // (2048 + 568) / 8 / 7 = 327 / 7 = 46 frames.
        assert_eq!(l.max_frames_per_page, 46);
        // 46 * 62 * 8 * 50.
        assert_eq!(l.allocation_reserve_bytes(), 1_140_800);
        assert_eq!(l.zone_bytes, 50 * (80 + 4096) + 8);
        // 32-bit: 1024 + 284 = 1308 -> 2048; 46 frames; reserve 46*62*4*50.
        let l = StackLayout::compute(WordSize::W32, None, 8).unwrap();
        assert_eq!((l.count, l.from), (8, PagesFrom::Header));
        assert_eq!(l.page_bytes, 2048);
        assert_eq!(l.allocation_reserve_bytes(), 46 * 62 * 4 * 8);
        let l = StackLayout::compute(WordSize::W64, Some(16), 8).unwrap();
        assert_eq!((l.count, l.from), (16, PagesFrom::CommandLine));
    }

    #[test]
    fn rounding_goes_down_only_when_it_loses_an_eighth_or_less() {
        assert_eq!(round_page_bytes(4096), 4096);
        assert_eq!(round_page_bytes(4096 + 512), 4096);
        assert_eq!(round_page_bytes(4096 + 520), 8192);
        assert_eq!(round_page_bytes(2616), 4096);
    }

    #[test]
    fn zero_pages_are_refused() {
        let e = StackLayout::compute(WordSize::W64, Some(0), 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "0 stack pages requested; a VM needs at least 1 (and at most 65535)"
        );
        assert!(StackLayout::compute(WordSize::W64, Some(70_000), 0).is_err());
    }

    #[test]
    fn the_zone_is_allocated_and_its_pages_tile_it() {
        let l = StackLayout::compute(WordSize::W32, Some(3), 0).unwrap();
        let mut z = StackZone::allocate(l).unwrap();
        assert!(z.start() + l.zone_bytes <= 1 << 32);
        assert_eq!(z.page(1).unwrap().start, z.start() + 2048);
        assert_eq!(z.page(3), None);
        assert_eq!(z.bytes_mut().len() as u64, l.zone_bytes);
        assert!(z.bytes_mut().iter().all(|&b| b == 0));
    }
}
