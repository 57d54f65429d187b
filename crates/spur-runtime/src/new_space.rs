//! New space (§4.4): eden and the two survivor spaces, and the scavenge
//! threshold.
//!
//! The header's `hdrEdenBytes` is the desired size of all of new space
//! (not eden alone); 0 means the default, 7 MiB on 64-bit and 4 MiB on
//! 32-bit; a command-line value overrides both. In ascending addresses new
//! space is past space, future space, then eden. Each survivor space is
//! `(total − reserve) / 7` rounded down to 8, eden the rest, and the
//! scavenge threshold is `eden.limit − edenBytes/64 − reserve`, where
//! `reserve` is the interpreter's allocation reserve for the stack pages
//! ([`StackLayout::allocation_reserve_bytes`]). The total is rounded down
//! to a multiple of 8 first.
//!
//! New space is reserved directly below old space when that range is free,
//! as OpenSmalltalk lays it out (§4.5), else wherever there is room (for a
//! 32-bit image, below 4 GiB).

use spur_format::raw::{DEFAULT_EDEN_BYTES_32, DEFAULT_EDEN_BYTES_64};
use spur_format::{NewAddr, WordSize};
use spur_mem::{page_ceil, Backing, Reservation};

use spur_loader::conv::usize_of;

use crate::error::RuntimeError;
use crate::place::{reserve_for, Placed};
use crate::stack::StackLayout;

/// `scavengerDenominator`: each survivor space is a seventh of what remains (§4.4).
pub const SCAVENGER_DENOMINATOR: u64 = 7;
/// Eden keeps a 64th of itself free below its limit (§4.4).
pub const EDEN_HEADROOM_DIVISOR: u64 = 64;
/// Largest new space accepted: 1 GiB on 32-bit, 1 TiB on 64-bit.
pub const MAX_NEW_SPACE_32: u64 = 1 << 30;
/// Largest new space accepted on a 64-bit heap, in bytes.
pub const MAX_NEW_SPACE_64: u64 = 1 << 40;

/// Where the new-space size came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdenFrom {
    /// Given as an override by the caller (`--eden`).
    CommandLine,
    /// The image header's `edenBytes` (§1.3), which is all of new space.
    Header,
    /// The VMs' default, the header asking for none.
    Default,
}

impl EdenFrom {
    /// `command-line`, `header` or `default`.
    pub const fn name(self) -> &'static str {
        match self {
            EdenFrom::CommandLine => "command-line",
            EdenFrom::Header => "header",
            EdenFrom::Default => "default",
        }
    }
}

/// The sizes of new space, as offsets from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewSpaceLayout {
    /// All of new space.
    pub total_bytes: u64,
    /// Where the size came from.
    pub from: EdenFrom,
    /// The allocation reserve below the threshold.
    pub reserve_bytes: u64,
    /// Each of the two survivor spaces.
    pub survivor_bytes: u64,
    /// Eden: after the survivor spaces, to the end.
    pub eden_bytes: u64,
    /// The scavenge threshold, from the start of new space.
    pub threshold_offset: u64,
}

impl NewSpaceLayout {
    /// The layout for `requested` bytes (command line), the header's
    /// `edenBytes`, and the stack pages whose reserve eden must hold.
    pub fn compute(
        word: WordSize,
        requested: Option<u64>,
        header_eden: u32,
        stack: &StackLayout,
    ) -> Result<Self, RuntimeError> {
        let (total, from) = match requested {
            Some(n) => (n, EdenFrom::CommandLine),
            None if header_eden != 0 => (u64::from(header_eden), EdenFrom::Header),
            None => (
                match word {
                    WordSize::W64 => DEFAULT_EDEN_BYTES_64,
                    WordSize::W32 => DEFAULT_EDEN_BYTES_32,
                },
                EdenFrom::Default,
            ),
        };
        let max = match word {
            WordSize::W64 => MAX_NEW_SPACE_64,
            WordSize::W32 => MAX_NEW_SPACE_32,
        };
        if total > max {
            return Err(RuntimeError::TooLarge {
                what: "new space",
                bytes: total,
                bits: if word == WordSize::W64 { 64 } else { 32 },
            });
        }
        // Errors give the size asked for, not the one rounded down to words.
        let requested = total;
        let total = total & !7;
        let reserve = stack.allocation_reserve_bytes();
        match Self::split(total, reserve) {
            Some((survivor, eden, threshold)) => Ok(NewSpaceLayout {
                total_bytes: total,
                from,
                reserve_bytes: reserve,
                survivor_bytes: survivor,
                eden_bytes: eden,
                threshold_offset: threshold,
            }),
            None => {
                // The smallest total that works is about 1.022 × the reserve
                // (eden ≈ (5 total + 2 reserve) / 7 must exceed 64/63 of it):
                // search up from just below that.
                let mut minimum = (reserve + reserve / 64) & !7;
                while Self::split(minimum, reserve).is_none() {
                    minimum += 8;
                }
                let eden = Self::split_unchecked(total, reserve).1;
                Err(RuntimeError::EdenTooSmall {
                    new_space_bytes: requested,
                    eden_bytes: eden,
                    reserve,
                    stack_pages: stack.count,
                    usable: eden - eden / EDEN_HEADROOM_DIVISOR,
                    minimum,
                })
            }
        }
    }

    /// Survivor and eden bytes for `total`, ignoring whether they work.
    fn split_unchecked(total: u64, reserve: u64) -> (u64, u64) {
        let survivor = (total.saturating_sub(reserve) / SCAVENGER_DENOMINATOR) & !7;
        (survivor, total - 2 * survivor)
    }

    /// Survivor bytes, eden bytes and the threshold offset, when eden holds
    /// the reserve with room to allocate before the threshold.
    fn split(total: u64, reserve: u64) -> Option<(u64, u64, u64)> {
        if total <= reserve {
            return None;
        }
        let (survivor, eden) = Self::split_unchecked(total, reserve);
        let threshold = total.checked_sub(eden / EDEN_HEADROOM_DIVISOR + reserve)?;
        (threshold > 2 * survivor).then_some((survivor, eden, threshold))
    }
}

/// New space in memory.
#[derive(Debug)]
pub struct NewSpace {
    layout: NewSpaceLayout,
    start: u64,
    placed: Placed,
    memory: Reservation,
}

impl NewSpace {
    /// Reserves and commits new space (untouched: it reads as zero), ending
    /// where old space starts (`old_start`, rounded down to its page) if
    /// that range is free.
    pub fn allocate(
        word: WordSize,
        layout: NewSpaceLayout,
        old_start: u64,
    ) -> Result<Self, RuntimeError> {
        let len = page_ceil(layout.total_bytes);
        let (mut memory, placed) = reserve_for(word, len, Some(old_start))?;
        memory.commit(len, Backing::Pages)?;
        // New space ends at the end of the reservation, next to old space.
        let start = memory.base() + len - layout.total_bytes;
        Ok(NewSpace {
            layout,
            start,
            placed,
            memory,
        })
    }
    /// The sizes new space was laid out with.
    pub fn layout(&self) -> &NewSpaceLayout {
        &self.layout
    }
    /// First byte of new space (of past space).
    pub fn start(&self) -> NewAddr {
        NewAddr::in_reservation(self.start, 0)
    }
    /// Just past the end of new space (of eden).
    pub fn end(&self) -> NewAddr {
        NewAddr::in_reservation(self.start, self.layout.total_bytes)
    }
    /// How new space was placed.
    pub fn placed(&self) -> Placed {
        self.placed
    }
    /// Past space: the survivors of the last scavenge.
    pub fn past_space(&self) -> std::ops::Range<u64> {
        self.start..self.start + self.layout.survivor_bytes
    }
    /// Future space: where the next scavenge copies survivors.
    pub fn future_space(&self) -> std::ops::Range<u64> {
        let s = self.start + self.layout.survivor_bytes;
        s..s + self.layout.survivor_bytes
    }
    /// Eden: where new objects are allocated.
    pub fn eden(&self) -> std::ops::Range<u64> {
        self.start + 2 * self.layout.survivor_bytes..self.end().get()
    }
    /// Allocation past this address triggers a scavenge.
    pub fn scavenge_threshold(&self) -> NewAddr {
        NewAddr::in_reservation(self.start, self.layout.threshold_offset)
    }
    /// New space's memory: `start()..end()`.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        let off = usize_of(self.start - self.memory.base());
        &self.memory.bytes()[off..]
    }
    /// New space's memory, writable (the object memory writes through it).
    #[inline]
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let off = usize_of(self.start - self.memory.base());
        &mut self.memory.bytes_mut()[off..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(word: WordSize, pages: u64) -> StackLayout {
        StackLayout::compute(word, Some(pages), 0).unwrap()
    }

    #[test]
    fn the_default_64_bit_layout_by_hand() {
        // reserve = 46 * 62 * 8 * 50 = 1_140_800; total 7 MiB = 7_340_032.
        // survivor = floor8((7_340_032 - 1_140_800) / 7) = floor8(885_604) = 885_600.
        // eden = 7_340_032 - 2 * 885_600 = 5_568_832.
        // threshold = 7_340_032 - 5_568_832 / 64 - 1_140_800 = 7_340_032 - 87_013 - 1_140_800.
        let l = NewSpaceLayout::compute(WordSize::W64, None, 0, &stack(WordSize::W64, 50)).unwrap();
        assert_eq!(l.from, EdenFrom::Default);
        assert_eq!(l.total_bytes, 7_340_032);
        assert_eq!(l.reserve_bytes, 1_140_800);
        assert_eq!(l.survivor_bytes, 885_600);
        assert_eq!(l.eden_bytes, 5_568_832);
        assert_eq!(l.threshold_offset, 6_112_219);
    }

    #[test]
    fn the_default_32_bit_layout_by_hand() {
        // reserve = 46 * 62 * 4 * 50 = 570_400; total 4 MiB = 4_194_304.
        // survivor = floor8(3_623_904 / 7 = 517_700) = 517_696; eden = 4_194_304 - 1_035_392.
        // threshold = 4_194_304 - 3_158_912 / 64 (= 49_358) - 570_400 = 3_574_546.
        let l = NewSpaceLayout::compute(WordSize::W32, None, 0, &stack(WordSize::W32, 50)).unwrap();
        assert_eq!(l.survivor_bytes, 517_696);
        assert_eq!(l.eden_bytes, 3_158_912);
        assert_eq!(l.threshold_offset, 3_574_546);
    }

    #[test]
    fn header_values_and_overrides_by_hand() {
        // Header: 16 MiB and 8 pages on 64-bit: reserve = 46 * 62 * 8 * 8 = 182_528.
        // survivor = floor8((16_777_216 - 182_528) / 7 = 2_370_669.7) = 2_370_664.
        // eden = 16_777_216 - 4_741_328 = 12_035_888; /64 = 188_060 (188_060.75).
        // threshold = 16_777_216 - 188_060 - 182_528 = 16_406_628.
        let st = StackLayout::compute(WordSize::W64, None, 8).unwrap();
        let l = NewSpaceLayout::compute(WordSize::W64, None, 16 << 20, &st).unwrap();
        assert_eq!(l.from, EdenFrom::Header);
        assert_eq!(l.reserve_bytes, 182_528);
        assert_eq!(l.survivor_bytes, 2_370_664);
        assert_eq!(l.eden_bytes, 12_035_888);
        assert_eq!(l.threshold_offset, 16_406_628);
        // Command line 2 MiB + 3 bytes (rounded down to 8) with 1 page on 32-bit:
        // reserve = 46 * 62 * 4 = 11_408; survivor = floor8((2_097_152 - 11_408) / 7
        // = 297_963.4) = 297_960; eden = 2_097_152 - 595_920 = 1_501_232;
        // threshold = 2_097_152 - 23_456 (1_501_232 / 64 = 23_456.75) - 11_408 = 2_062_288.
        let st = stack(WordSize::W32, 1);
        let l = NewSpaceLayout::compute(WordSize::W32, Some((2 << 20) + 3), 12345, &st).unwrap();
        assert_eq!(l.from, EdenFrom::CommandLine);
        assert_eq!(l.total_bytes, 2 << 20);
        assert_eq!(l.survivor_bytes, 297_960);
        assert_eq!(l.eden_bytes, 1_501_232);
        assert_eq!(l.threshold_offset, 2_062_288);
    }

    #[test]
    fn an_eden_too_small_for_the_reserve_is_refused_with_the_minimum() {
        let st = stack(WordSize::W64, 50);
        let e = NewSpaceLayout::compute(WordSize::W64, Some(1 << 20), 0, &st).unwrap_err();
        let RuntimeError::EdenTooSmall {
            reserve, minimum, ..
        } = e
        else {
            panic!("{e}");
        };
        assert_eq!(reserve, 1_140_800);
        assert!(NewSpaceLayout::compute(WordSize::W64, Some(minimum), 0, &st).is_ok());
        assert!(NewSpaceLayout::compute(WordSize::W64, Some(minimum - 8), 0, &st).is_err());
        assert!(NewSpaceLayout::compute(WordSize::W64, Some(0), 0, &st).is_err());
        assert!(e_text(&st).contains("give at least"));
    }

    fn e_text(st: &StackLayout) -> String {
        NewSpaceLayout::compute(WordSize::W64, Some(4096), 0, st)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn new_space_lands_below_old_space_when_free() {
        let st = stack(WordSize::W64, 4);
        let l = NewSpaceLayout::compute(WordSize::W64, Some(1 << 20), 0, &st).unwrap();
        // An old space somewhere free: reserve, note, release.
        let probe = Reservation::anywhere(64 << 20, 1 << 20).unwrap();
        let old = probe.base() + (32 << 20);
        drop(probe);
        let mut ns = NewSpace::allocate(WordSize::W64, l, old).unwrap();
        assert_eq!(ns.placed(), Placed::BelowOldSpace);
        assert_eq!(ns.end().get(), old);
        assert_eq!(ns.eden().end, old);
        assert_eq!(ns.past_space().end, ns.future_space().start);
        assert_eq!(ns.future_space().end, ns.eden().start);
        assert!(ns.scavenge_threshold().get() < ns.end().get());
        assert_eq!(ns.bytes_mut().len() as u64, 1 << 20);
    }
}
