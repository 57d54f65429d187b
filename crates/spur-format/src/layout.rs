//! Word size: the one thing that differs between 32- and 64-bit Spur heaps.
//!
//! Code that walks or rewrites a heap is generic over [`Layout`] so that each
//! width gets its own monomorphised loop; [`WordSize`] is the run-time value
//! read from the header that picks one.

use crate::raw;

/// The word size of an image, as found in its format number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WordSize {
    /// 32-bit image: 4-byte slots, 2 tag bits.
    W32,
    /// 64-bit image: 8-byte slots, 3 tag bits.
    W64,
}

impl WordSize {
    /// Bytes in a word (slot).
    #[inline]
    pub const fn bytes(self) -> u64 {
        match self {
            WordSize::W32 => 4,
            WordSize::W64 => 8,
        }
    }
    /// Header size the VMs write for this width.
    #[inline]
    pub const fn standard_header_size(self) -> u32 {
        match self {
            WordSize::W32 => raw::HEADER_SIZE_32,
            WordSize::W64 => raw::HEADER_SIZE_64,
        }
    }
    /// Number of free-list heads in the free-lists object (§3.5.1).
    #[inline]
    pub const fn num_free_lists(self) -> u64 {
        match self {
            WordSize::W32 => 32,
            WordSize::W64 => 64,
        }
    }
    /// Format of word-indexable objects: bridges, the free-lists object, stack pages.
    #[inline]
    pub const fn word_indexable_format(self) -> u8 {
        match self {
            WordSize::W32 => raw::FMT_32BIT,
            WordSize::W64 => raw::FMT_64BIT,
        }
    }
    /// Class-index pun of word objects: free-lists object and object-stack pages.
    #[inline]
    pub const fn word_array_pun(self) -> u32 {
        match self {
            WordSize::W32 => raw::CLASS_32BIT_LONGS_PUN,
            WordSize::W64 => raw::CLASS_64BIT_LONGS_PUN,
        }
    }
    /// Bytes an object with `num_slots` slots occupies from its base header
    /// (overflow word excluded), per §3.4. `None` on arithmetic overflow.
    #[inline]
    pub fn body_bytes(self, num_slots: u64) -> Option<u64> {
        let n = num_slots.max(1);
        match self {
            WordSize::W64 => n.checked_mul(8)?.checked_add(8),
            WordSize::W32 => n.checked_add(n & 1)?.checked_mul(4)?.checked_add(8),
        }
    }
    /// Is `oop` an immediate (SmallInteger, Character, SmallFloat) rather than a pointer?
    #[inline]
    pub const fn is_immediate(self, oop: u64) -> bool {
        match self {
            WordSize::W32 => oop & 3 != 0,
            WordSize::W64 => oop & 7 != 0,
        }
    }
    /// The value of a SmallInteger oop, or `None` when `oop` is not one.
    #[inline]
    pub const fn small_integer(self, oop: u64) -> Option<i64> {
        match self {
            WordSize::W32 => {
                if oop & 1 == 1 {
                    // A 32-bit oop is the low 32 bits, a signed word.
                    #[allow(clippy::cast_possible_truncation)]
                    let word = oop as u32;
                    Some((word.cast_signed() >> 1) as i64)
                } else {
                    None
                }
            }
            WordSize::W64 => {
                if oop & 7 == 1 {
                    Some(oop.cast_signed() >> 3)
                } else {
                    None
                }
            }
        }
    }
    /// Encodes `value` as a SmallInteger oop. The caller keeps it in range.
    #[inline]
    pub const fn encode_small_integer(self, value: i64) -> u64 {
        match self {
            WordSize::W32 => {
                // In range by the caller's promise: a 31-bit value fits an i32.
                #[allow(clippy::cast_possible_truncation)]
                let v = value as i32;
                ((v << 1).cast_unsigned() | 1) as u64
            }
            WordSize::W64 => ((value << 3) | 1).cast_unsigned(),
        }
    }
    /// Number of slots encoded by an overflow word (§3.1).
    #[inline]
    pub const fn overflow_slots(self, word: u64) -> u64 {
        match self {
            WordSize::W32 => word & 0xFFFF_FFFF,
            WordSize::W64 => word & 0x00FF_FFFF_FFFF_FFFF,
        }
    }
    /// Largest address a heap of this width can hold.
    #[inline]
    pub const fn address_limit(self) -> u64 {
        match self {
            WordSize::W32 => 1 << 32,
            // x86-64 and aarch64 user space: 47 bits.
            WordSize::W64 => 1 << 47,
        }
    }
}

/// Compile-time word size, for the hot loops.
pub trait Layout: Copy + Send + Sync + 'static {
    /// The run-time value this layout stands for.
    const WORD: WordSize;
    /// Bytes in a slot.
    const W: usize;
    /// Reads slot `i` of the object whose base header is at `obj` in `bytes`.
    fn slot(bytes: &[u8], obj: usize, i: usize) -> u64;
    /// Writes slot `i` of the object whose base header is at `obj` in `bytes`.
    fn set_slot(bytes: &mut [u8], obj: usize, i: usize, value: u64);
    /// Reads one word from a `W`-byte chunk.
    fn get(chunk: &[u8]) -> u64;
    /// Writes one word into a `W`-byte chunk.
    fn put(chunk: &mut [u8], value: u64);
}

/// The 32-bit layout.
#[derive(Debug, Clone, Copy)]
pub struct L32;
/// The 64-bit layout.
#[derive(Debug, Clone, Copy)]
pub struct L64;

impl Layout for L32 {
    const WORD: WordSize = WordSize::W32;
    const W: usize = 4;
    #[inline(always)]
    fn slot(bytes: &[u8], obj: usize, i: usize) -> u64 {
        let at = obj + 8 + 4 * i;
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as u64
    }
    #[inline(always)]
    fn set_slot(bytes: &mut [u8], obj: usize, i: usize, value: u64) {
        let at = obj + 8 + 4 * i;
        // A 32-bit heap's slots hold 32-bit words (its oops lie below the
        // 4 GiB address limit): the high half of `value` is zero.
        #[allow(clippy::cast_possible_truncation)]
        let v = value as u32;
        bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    #[inline(always)]
    fn get(chunk: &[u8]) -> u64 {
        u32::from_le_bytes(chunk.try_into().unwrap()) as u64
    }
    #[inline(always)]
    fn put(chunk: &mut [u8], value: u64) {
        // As `set_slot`: a 32-bit heap's words fit 32 bits.
        #[allow(clippy::cast_possible_truncation)]
        let v = value as u32;
        chunk.copy_from_slice(&v.to_le_bytes());
    }
}

impl Layout for L64 {
    const WORD: WordSize = WordSize::W64;
    const W: usize = 8;
    #[inline(always)]
    fn slot(bytes: &[u8], obj: usize, i: usize) -> u64 {
        let at = obj + 8 + 8 * i;
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    }
    #[inline(always)]
    fn set_slot(bytes: &mut [u8], obj: usize, i: usize, value: u64) {
        let at = obj + 8 + 8 * i;
        bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
    #[inline(always)]
    fn get(chunk: &[u8]) -> u64 {
        u64::from_le_bytes(chunk.try_into().unwrap())
    }
    #[inline(always)]
    fn put(chunk: &mut [u8], value: u64) {
        chunk.copy_from_slice(&value.to_le_bytes());
    }
}

/// `x` as a `usize`, for offsets and lengths that index a slice.
///
/// The workspace builds for 64-bit targets only (`spur-format` and
/// `spur-mem` refuse others with `compile_error!`), where `usize` is 64 bits
/// wide, so this never truncates. Values read from a file are checked
/// against the slice they index, as before.
#[inline(always)]
pub const fn to_usize(x: u64) -> usize {
    // 64-bit targets only (see above): a u64 always fits a usize.
    #[allow(clippy::cast_possible_truncation)]
    let n = x as usize;
    n
}

/// Reads the little-endian u64 at `at`.
#[inline(always)]
pub fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// Writes the little-endian u64 at `at`.
#[inline(always)]
pub fn set_u64_at(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_sizes_follow_the_reference() {
        // §3.4: minimum object is 16 bytes, 32-bit rounds slots up to even.
        assert_eq!(WordSize::W64.body_bytes(0), Some(16));
        assert_eq!(WordSize::W64.body_bytes(3), Some(32));
        assert_eq!(WordSize::W32.body_bytes(0), Some(16));
        assert_eq!(WordSize::W32.body_bytes(1), Some(16));
        assert_eq!(WordSize::W32.body_bytes(3), Some(24));
        assert_eq!(WordSize::W64.body_bytes(u64::MAX / 4), None);
    }

    #[test]
    fn small_integers_round_trip() {
        for w in [WordSize::W32, WordSize::W64] {
            for v in [0i64, 1, -1, 12345, -(1 << 29)] {
                assert_eq!(w.small_integer(w.encode_small_integer(v)), Some(v));
            }
        }
        assert_eq!(WordSize::W32.small_integer(0x3204000), None);
        assert!(WordSize::W64.is_immediate(0x11));
        assert!(!WordSize::W64.is_immediate(0x804000));
    }
}
