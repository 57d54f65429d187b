//! Encodings of values the builder writes into slots: immediates (§3.3),
//! object sizes (§3.4), class format words and compiled-method headers.

use spur_format::raw::{METHOD_NUM_LITERALS_MASK, OVERFLOW_SLOTS};
use spur_format::WordSize;

/// Bytes an object with `num_slots` slots occupies, its overflow word included.
pub(crate) fn object_bytes(word: WordSize, num_slots: u64) -> u64 {
    let overflow = if num_slots >= OVERFLOW_SLOTS { 8 } else { 0 };
    overflow + word.body_bytes(num_slots).expect("object size overflows")
}

/// Slots needed for `n` bytes, and the byte format (16..23) that says how
/// many bytes of the last slot are unused (§3.2). `base` is 16 for bytes or
/// 24 for compiled methods.
pub(crate) fn byte_shape(word: WordSize, base: u8, n: u64) -> (u64, u8) {
    let w = word.bytes();
    let slots = n.div_ceil(w);
    (
        slots,
        base + u8::try_from(slots * w - n).expect("the builder makes small values"),
    )
}

/// Slots and format (10/11) for `n` 32-bit units (§3.2).
pub(crate) fn word32_shape(word: WordSize, n: u64) -> (u64, u8) {
    let per = word.bytes() / 4;
    let slots = n.div_ceil(per);
    (
        slots,
        spur_format::raw::FMT_32BIT
            + u8::try_from(slots * per - n).expect("the builder makes small values"),
    )
}

/// The shape of an object that occupies exactly `bytes` bytes, if one exists.
///
/// Sizes just above the largest single-header object (2048 on 64-bit, 1032
/// on 32-bit) cannot be reached by one ordinary object; the caller then
/// splits the space.
pub(crate) fn slots_for_exact_bytes(word: WordSize, bytes: u64) -> Option<u64> {
    if bytes < 16 || !bytes.is_multiple_of(8) {
        return None;
    }
    let w = word.bytes();
    // Single header: 8 + W*n (n rounded up to even on 32-bit, which bytes%8==0 gives).
    let single = (bytes - 8) / w;
    let n = if single < OVERFLOW_SLOTS {
        single
    } else {
        let n = (bytes - 16) / w;
        if n < OVERFLOW_SLOTS {
            return None;
        }
        n
    };
    debug_assert_eq!(object_bytes(word, n), bytes);
    Some(n)
}

/// The header of a free chunk of `bytes` bytes as the VM writes it
/// (`Spur64/32BitMemoryManager>>initFreeChunkWithBytes:at:`): a double header
/// once `bytes >= 255*W + 8`, so that every multiple of 8 from 16 up is
/// representable. The one size just past the single-header range (2048 on
/// 64-bit, 1032 on 32-bit) thus gets an overflow word holding 254, as in
/// the VM. Returns the slot count and whether an overflow word precedes the
/// header.
pub(crate) fn free_chunk_shape(word: WordSize, bytes: u64) -> (u64, bool) {
    let w = word.bytes();
    debug_assert!(bytes >= 16 && bytes.is_multiple_of(8));
    if bytes >= OVERFLOW_SLOTS * w + 8 {
        ((bytes - 16) / w, true)
    } else {
        ((bytes - 8) / w, false)
    }
}

/// A Character immediate (§3.3): tag 2 on both widths.
pub(crate) fn character(word: WordSize, code: u32) -> u64 {
    match word {
        WordSize::W64 => ((code as u64) << 3) | 2,
        WordSize::W32 => ((code as u64) << 2) | 2,
    }
}

/// A SmallFloat64 immediate (§3.3), or `None` when the double's exponent is
/// outside the representable window (or it is not finite).
pub(crate) fn small_float(value: f64) -> Option<u64> {
    let bits = value.to_bits();
    if bits << 1 == 0 {
        // ±0.0: 0x4 and 0xC.
        return Some(4 | (bits >> 63) << 3);
    }
    let exp = (bits >> 52) & 0x7FF;
    if exp <= 896 || exp > 896 + 255 {
        return None;
    }
    let r = bits.rotate_left(1) - (896 << 53);
    Some((r << 3) | 4)
}

/// Decodes a SmallFloat64 immediate (used by tests).
#[cfg(test)]
pub(crate) fn small_float_value(oop: u64) -> f64 {
    let mut r = oop >> 3;
    if r > 1 {
        r += 896 << 53;
    }
    f64::from_bits(r.rotate_right(1))
}

/// Smallest and largest SmallInteger of a width.
pub(crate) fn small_integer_range(word: WordSize) -> (i64, i64) {
    match word {
        WordSize::W32 => (-(1 << 30), (1 << 30) - 1),
        WordSize::W64 => (-(1 << 60), (1 << 60) - 1),
    }
}

/// A class's format word: `instSpec << 16 | instSize` (Spur class format).
pub(crate) const fn class_format(inst_spec: u8, inst_size: u64) -> i64 {
    ((inst_spec as i64) << 16) | inst_size.cast_signed()
}

/// Which bytecode set a method is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BytecodeSet {
    /// The primary set, V3PlusClosures.
    V3,
    /// The alternate set, SistaV1 (header sign bit set).
    Sista,
}

/// The value of a compiled-method header (slot 0, a SmallInteger):
/// numLiterals in bits 0..14, numTemps in 18..23, numArgs in 24..27, and a
/// negative value (SmallInteger minVal added) for the alternate bytecode set.
pub(crate) fn method_header(
    word: WordSize,
    set: BytecodeSet,
    num_literals: u64,
    num_args: u64,
    num_temps: u64,
) -> i64 {
    debug_assert!(num_literals.cast_signed() <= METHOD_NUM_LITERALS_MASK);
    let v =
        num_literals.cast_signed() | num_temps.cast_signed() << 18 | num_args.cast_signed() << 24;
    match set {
        BytecodeSet::V3 => v,
        BytecodeSet::Sista => small_integer_range(word).0 + v,
    }
}

/// Short bytecode sequences of both sets.
pub(crate) mod bytecodes {
    /// V3PlusClosures.
    pub(crate) mod v3 {
        pub(crate) const PUSH_SELF: u8 = 0x70;
        pub(crate) const PUSH_NIL: u8 = 0x73;
        pub(crate) const PUSH_ONE: u8 = 0x76;
        pub(crate) const RETURN_SELF: u8 = 0x78;
        pub(crate) const RETURN_TOP: u8 = 0x7C;
        pub(crate) const POP: u8 = 0x87;
        pub(crate) const SEND_PLUS: u8 = 0xB0;
        /// Push literal constant 0..31.
        pub(crate) const PUSH_LITERAL: u8 = 0x20;
        /// Send literal selector 0..15 with no argument.
        pub(crate) const SEND_LITERAL_0: u8 = 0xD0;
        /// Send literal selector 0..15 with one argument.
        pub(crate) const SEND_LITERAL_1: u8 = 0xE0;
        pub(crate) const PUSH_ZERO: u8 = 0x75;
        pub(crate) const PUSH_TWO: u8 = 0x77;
        pub(crate) const RETURN_NIL: u8 = 0x7B;
        /// Push temp 0..15.
        pub(crate) const PUSH_TEMP: u8 = 0x10;
        /// Pop into temp 0..7.
        pub(crate) const POP_INTO_TEMP: u8 = 0x68;
        /// `Array new: n` from the stack: the next byte is `0x80 | n`.
        pub(crate) const PUSH_NEW_ARRAY: u8 = 0x8A;
        /// The primitive's index follows, low byte first.
        pub(crate) const CALL_PRIMITIVE: u8 = 0x8B;
        /// Long jump: offset `(b & 7 - 4) * 256 + next byte`.
        pub(crate) const LONG_JUMP: u8 = 0xA0;
        /// Long pop and jump if false: offset `(b & 3) * 256 + next byte`.
        pub(crate) const LONG_JUMP_IF_FALSE: u8 = 0xAC;
        pub(crate) const SEND_LE: u8 = 0xB4;
        pub(crate) const SEND_TIMES: u8 = 0xB8;
        pub(crate) const SEND_MOD: u8 = 0xBA;
        pub(crate) const SEND_AT: u8 = 0xC0;
    }
    /// SistaV1.
    pub(crate) mod sista {
        pub(crate) const PUSH_SELF: u8 = 0x4C;
        pub(crate) const PUSH_NIL: u8 = 0x4F;
        pub(crate) const PUSH_ONE: u8 = 0x51;
        pub(crate) const RETURN_SELF: u8 = 0x58;
        pub(crate) const RETURN_TOP: u8 = 0x5C;
        pub(crate) const SEND_PLUS: u8 = 0x60;
        pub(crate) const POP: u8 = 0xD8;
        /// Push literal constant 0..31.
        pub(crate) const PUSH_LITERAL: u8 = 0x20;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_floats_round_trip_and_refuse_what_does_not_fit() {
        for v in [1.0, -1.0, 0.5, 3.25, 1e10, -2.5e-30, 1.0e38, 123.456] {
            let oop = small_float(v).unwrap();
            assert_eq!(oop & 7, 4);
            assert_eq!(small_float_value(oop), v);
        }
        assert_eq!(small_float(0.0), Some(4));
        assert_eq!(small_float(-0.0), Some(0xC));
        assert_eq!(small_float(1e300), None);
        assert_eq!(small_float(1e-300), None);
        assert_eq!(small_float(f64::NAN), None);
    }

    #[test]
    fn exact_sizes_cover_everything_but_the_gap_above_single_headers() {
        for word in [WordSize::W32, WordSize::W64] {
            let gap = match word {
                WordSize::W64 => 2048,
                WordSize::W32 => 1032,
            };
            for bytes in (16..20_000).step_by(8) {
                match slots_for_exact_bytes(word, bytes) {
                    Some(n) => assert_eq!(object_bytes(word, n), bytes),
                    None => assert_eq!(bytes, gap, "{word:?}"),
                }
                let (n, overflow) = free_chunk_shape(word, bytes);
                let size = if overflow { 8 } else { 0 } + word.body_bytes(n).unwrap();
                assert_eq!(size, bytes);
                // Only the size no ordinary object can take has an overflow word below 255.
                assert_eq!(overflow && n < 255, bytes == gap, "{word:?} {bytes}");
                assert!(overflow || n < 255);
            }
        }
    }

    #[test]
    fn byte_and_word_shapes() {
        assert_eq!(byte_shape(WordSize::W64, 16, 0), (0, 16));
        assert_eq!(byte_shape(WordSize::W64, 16, 5), (1, 19));
        assert_eq!(byte_shape(WordSize::W32, 16, 5), (2, 19));
        assert_eq!(byte_shape(WordSize::W32, 24, 8), (2, 24));
        assert_eq!(word32_shape(WordSize::W64, 3), (2, 11));
        assert_eq!(word32_shape(WordSize::W32, 3), (3, 10));
        assert_eq!(word32_shape(WordSize::W64, 2), (1, 10));
    }

    #[test]
    fn method_headers() {
        let h = method_header(WordSize::W64, BytecodeSet::Sista, 3, 1, 2);
        assert!(h < 0);
        assert_eq!(h & 0x7FFF, 3);
        let oop = WordSize::W64.encode_small_integer(h);
        assert_eq!(oop.cast_signed() >> 3 & 0x7FFF, 3);
        let h32 = method_header(WordSize::W32, BytecodeSet::Sista, 5, 0, 0);
        let oop = WordSize::W32.encode_small_integer(h32);
        assert!(u32::try_from(oop).expect("a 32-bit oop").cast_signed() < 0);
        assert_eq!(WordSize::W32.small_integer(oop), Some(h32));
        assert_eq!(
            method_header(WordSize::W32, BytecodeSet::V3, 5, 1, 0),
            5 | 1 << 24
        );
    }
}
