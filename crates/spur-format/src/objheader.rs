//! The 64-bit object header word (§3.1), shared by readers and writers.

use crate::layout::WordSize;
use crate::raw::*;

/// An object header word, as stored little-endian at the object's address.
///
/// On 32-bit images the header is the same 64 bits, held as two halves.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjHeader(pub u64);

impl std::fmt::Debug for ObjHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjHeader")
            .field("class_index", &self.class_index())
            .field("format", &self.format())
            .field("raw_num_slots", &self.raw_num_slots())
            .field("hash", &self.hash())
            .finish()
    }
}

impl ObjHeader {
    /// Builds a header from its fields; flags clear.
    #[inline]
    pub const fn new(class_index: u32, format: u8, raw_num_slots: u8, hash: u32) -> Self {
        ObjHeader(
            (class_index as u64 & CLASS_INDEX_MASK)
                | ((format as u64 & FORMAT_MASK) << FORMAT_SHIFT)
                | ((hash as u64 & HASH_MASK) << HASH_SHIFT)
                | ((raw_num_slots as u64) << NUM_SLOTS_SHIFT),
        )
    }
    /// The class-table index of the object's class (or a pun).
    #[inline(always)]
    pub const fn class_index(self) -> u32 {
        (self.0 & CLASS_INDEX_MASK) as u32
    }
    /// The object format (§3.2).
    #[inline(always)]
    pub const fn format(self) -> u8 {
        ((self.0 >> FORMAT_SHIFT) & FORMAT_MASK) as u8
    }
    /// The numSlots byte; 255 means the count is in the overflow word.
    #[inline(always)]
    pub const fn raw_num_slots(self) -> u64 {
        self.0 >> NUM_SLOTS_SHIFT
    }
    /// The identity hash (for a class: its class-table index).
    #[inline(always)]
    pub const fn hash(self) -> u32 {
        ((self.0 >> HASH_SHIFT) & HASH_MASK) as u32
    }
    /// The immutable bit.
    #[inline]
    pub const fn is_immutable(self) -> bool {
        self.0 >> IMMUTABLE_SHIFT & 1 == 1
    }
    /// The remembered bit (in the remembered set).
    #[inline]
    pub const fn is_remembered(self) -> bool {
        self.0 >> REMEMBERED_SHIFT & 1 == 1
    }
    /// The pinned bit (the object never moves).
    #[inline]
    pub const fn is_pinned(self) -> bool {
        self.0 >> PINNED_SHIFT & 1 == 1
    }
    /// The grey bit of incremental marking.
    #[inline]
    pub const fn is_grey(self) -> bool {
        self.0 >> GREY_SHIFT & 1 == 1
    }
    /// The mark bit.
    #[inline]
    pub const fn is_marked(self) -> bool {
        self.0 >> MARKED_SHIFT & 1 == 1
    }
    /// Returns the header with the pinned bit set.
    #[inline]
    pub const fn pinned(self) -> Self {
        ObjHeader(self.0 | 1 << PINNED_SHIFT)
    }
    /// Returns the header with the marked bit set.
    #[inline]
    pub const fn marked(self) -> Self {
        ObjHeader(self.0 | 1 << MARKED_SHIFT)
    }
    /// Returns the header with the immutable bit set.
    #[inline]
    pub const fn immutable(self) -> Self {
        ObjHeader(self.0 | 1 << IMMUTABLE_SHIFT)
    }
    /// A free chunk (class index 0).
    #[inline(always)]
    pub const fn is_free_chunk(self) -> bool {
        self.class_index() == CLASS_FREE_CHUNK
    }
    /// A segment bridge (class index 3).
    #[inline(always)]
    pub const fn is_bridge(self) -> bool {
        self.class_index() == CLASS_SEGMENT_BRIDGE
    }
    /// A forwarder (class index 8 or format 7): never valid in a saved image.
    #[inline]
    pub const fn is_forwarder(self) -> bool {
        self.class_index() == CLASS_FORWARDER || self.format() == FMT_FORWARDED
    }
    /// A hidden object: class index at most 31 (puns, free chunks, bridges included).
    #[inline]
    pub const fn is_hidden(self) -> bool {
        self.class_index() <= LAST_CLASS_INDEX_PUN
    }
    /// Pointer formats: every slot may hold an oop.
    #[inline]
    pub const fn is_pointers(self) -> bool {
        self.format() <= FMT_LAST_POINTER
    }
    /// CompiledMethod formats: slot 0 and the literals hold oops.
    #[inline]
    pub const fn is_compiled_method(self) -> bool {
        self.format() >= FMT_COMPILED_METHOD
    }

    /// The short bridge header of §2.1: numSlots 0, pinned, marked, word format, class 3.
    #[inline]
    pub const fn short_bridge(word: WordSize) -> Self {
        ObjHeader::new(CLASS_SEGMENT_BRIDGE, word.word_indexable_format(), 0, 0)
            .pinned()
            .marked()
    }
    /// The header of a long bridge, which follows its overflow word (§2.5).
    #[inline]
    pub const fn long_bridge(word: WordSize) -> Self {
        ObjHeader::new(
            CLASS_SEGMENT_BRIDGE,
            word.word_indexable_format(),
            OVERFLOW_SLOTS_BYTE,
            0,
        )
        .pinned()
        .marked()
    }
}

/// The overflow word placed before a header whose numSlots byte is 255 (§3.1).
/// 64-bit: `0xFF<<56 | n`; 32-bit: low half `n`, high half `0xFF000000`: the
/// same 64-bit value as long as `n` fits 32 bits.
#[inline]
pub const fn overflow_word(num_slots: u64) -> u64 {
    (0xFF << 56) | (num_slots & 0x00FF_FFFF_FFFF_FFFF)
}

/// Is this word an overflow word (top byte 255)?
#[inline(always)]
pub const fn is_overflow_word(word: u64) -> bool {
    word >> 56 == 0xFF
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_headers_match_the_derived_values() {
        // §2.1: 64-bit 0x0080_0000_4900_0003; 32-bit word0 0x4A000003, word1 0x00800000.
        assert_eq!(
            ObjHeader::short_bridge(WordSize::W64).0,
            0x0080_0000_4900_0003
        );
        assert_eq!(
            ObjHeader::short_bridge(WordSize::W32).0,
            0x0080_0000_4A00_0003
        );
        let long = ObjHeader::long_bridge(WordSize::W64);
        assert_eq!(long.raw_num_slots(), 255);
        assert_eq!(long.0, 0xFF80_0000_4900_0003);
    }

    #[test]
    fn fields_round_trip() {
        let h = ObjHeader::new(0x3F_FFFF, 24 + 5, 254, 0x12_3456).pinned();
        assert_eq!(h.class_index(), 0x3F_FFFF);
        assert_eq!(h.format(), 29);
        assert_eq!(h.raw_num_slots(), 254);
        assert_eq!(h.hash(), 0x12_3456);
        assert!(h.is_pinned() && !h.is_marked() && h.is_compiled_method());
    }
}
