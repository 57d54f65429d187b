//! Object pointers and immediates (§3.3).

use std::fmt;

use spur_format::{NewAddr, WordSize};

/// An object pointer or an immediate, as a word of this process's heap.
///
/// On a 32-bit heap only the low 32 bits are used. An `Oop` is a value: it
/// says nothing about whether an object lives at the address it names until
/// [`ObjectMemory`](super::ObjectMemory) is asked.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(transparent)]
pub struct Oop(u64);

impl Oop {
    /// The oop whose word is `bits`.
    #[inline(always)]
    pub const fn from_bits(bits: u64) -> Oop {
        Oop(bits)
    }
    /// The word.
    #[inline(always)]
    pub const fn bits(self) -> u64 {
        self.0
    }
    /// The pointer to the object at `addr`.
    #[inline(always)]
    pub const fn from_addr(addr: NewAddr) -> Oop {
        Oop(addr.get())
    }
    /// The object's address, when this is a pointer (tag bits clear).
    #[inline(always)]
    pub fn addr(self, word: WordSize) -> Option<NewAddr> {
        (!self.is_immediate(word)).then(|| NewAddr::from_heap_word(self.0))
    }
    /// Is this an immediate (SmallInteger, Character, SmallFloat64)?
    #[inline(always)]
    pub const fn is_immediate(self, word: WordSize) -> bool {
        word.is_immediate(self.0)
    }
}

impl fmt::Debug for Oop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oop:{:#x}", self.0)
    }
}

impl fmt::Display for Oop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::LowerHex for Oop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

/// Smallest and largest SmallInteger of a word size: 61 bits on 64-bit, 31 on 32-bit.
pub const fn small_int_range(word: WordSize) -> (i64, i64) {
    match word {
        WordSize::W64 => (-(1 << 60), (1 << 60) - 1),
        WordSize::W32 => (-(1 << 30), (1 << 30) - 1),
    }
}

/// The value of a SmallInteger, or `None` when `oop` is not one.
#[inline(always)]
pub const fn small_int(word: WordSize, oop: Oop) -> Option<i64> {
    word.small_integer(oop.0)
}

/// The SmallInteger holding `v`, or `None` when `v` is out of range.
#[inline(always)]
pub const fn from_small_int(word: WordSize, v: i64) -> Option<Oop> {
    let (lo, hi) = small_int_range(word);
    if v < lo || v > hi {
        return None;
    }
    Some(Oop(word.encode_small_integer(v)))
}

/// The code of a Character, or `None` when `oop` is not one.
#[inline]
pub fn character(word: WordSize, oop: Oop) -> Option<u32> {
    match word {
        WordSize::W64 if oop.0 & 7 == 2 => u32::try_from(oop.0 >> 3).ok(),
        WordSize::W32 if oop.0 & 3 == 2 => u32::try_from((oop.0 & 0xFFFF_FFFF) >> 2).ok(),
        _ => None,
    }
}

/// The Character of code `c`; `None` when a 32-bit heap's 30 bits cannot hold it.
#[inline]
pub const fn from_character(word: WordSize, c: u32) -> Option<Oop> {
    match word {
        WordSize::W64 => Some(Oop(((c as u64) << 3) | 2)),
        WordSize::W32 if c < 1 << 30 => Some(Oop(((c as u64) << 2) | 2)),
        WordSize::W32 => None,
    }
}

/// The 11-bit exponent offset of SmallFloat64 (§3.3).
const SMALL_FLOAT_EXPONENT_OFFSET: u64 = 896;

/// The value of a SmallFloat64 (64-bit heaps only), decoded as §3.3 says.
#[inline]
pub fn small_float(word: WordSize, oop: Oop) -> Option<f64> {
    if word != WordSize::W64 || oop.0 & 7 != 4 {
        return None;
    }
    let mut r = oop.0 >> 3;
    if r > 1 {
        r += SMALL_FLOAT_EXPONENT_OFFSET << 53;
    }
    Some(f64::from_bits(r.rotate_right(1)))
}

/// The SmallFloat64 holding `f`, or `None` when its exponent is outside the
/// 8-bit range an immediate float holds (or on a 32-bit heap, which has none).
#[inline]
pub fn from_small_float(word: WordSize, f: f64) -> Option<Oop> {
    if word != WordSize::W64 {
        return None;
    }
    let bits = f.to_bits();
    let r = bits.rotate_left(1);
    if r <= 1 {
        // ±0.0.
        return Some(Oop((r << 3) | 4));
    }
    let exponent = (bits >> 52) & 0x7FF;
    // Exponents 897..=1151 leave a nonzero 8-bit exponent after the offset.
    if exponent <= SMALL_FLOAT_EXPONENT_OFFSET || exponent > SMALL_FLOAT_EXPONENT_OFFSET + 255 {
        return None;
    }
    let r = r - (SMALL_FLOAT_EXPONENT_OFFSET << 53);
    Some(Oop((r << 3) | 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_integers_keep_their_range() {
        for word in [WordSize::W64, WordSize::W32] {
            let (lo, hi) = small_int_range(word);
            for v in [0, 1, -1, 42, lo, hi] {
                let o = from_small_int(word, v).unwrap();
                assert!(o.is_immediate(word));
                assert_eq!(small_int(word, o), Some(v), "{word:?} {v}");
                assert_eq!(character(word, o), None);
            }
            assert_eq!(from_small_int(word, hi + 1), None);
            assert_eq!(from_small_int(word, lo - 1), None);
        }
        assert_eq!(from_small_int(WordSize::W64, 3), Some(Oop(0x19)));
        assert_eq!(from_small_int(WordSize::W32, -1), Some(Oop(0xFFFF_FFFF)));
    }

    #[test]
    fn characters_round_trip_and_refuse_what_does_not_fit() {
        assert_eq!(from_character(WordSize::W64, 'a' as u32), Some(Oop(0x30A)));
        assert_eq!(from_character(WordSize::W32, 'a' as u32), Some(Oop(0x186)));
        for word in [WordSize::W64, WordSize::W32] {
            let o = from_character(word, 0x10_FFFF).unwrap();
            assert_eq!(character(word, o), Some(0x10_FFFF));
            assert_eq!(small_int(word, o), None);
        }
        assert_eq!(from_character(WordSize::W32, 1 << 30), None);
    }

    #[test]
    fn small_floats_round_trip_where_the_exponent_fits() {
        for f in [1.0, -2.5, 0.0, -0.0, 3.0e38, 1.0e-37, std::f64::consts::PI] {
            let o = from_small_float(WordSize::W64, f).unwrap();
            assert_eq!(o.bits() & 7, 4);
            let back = small_float(WordSize::W64, o).unwrap();
            assert_eq!(back.to_bits(), f.to_bits(), "{f}");
        }
        // +0.0 is the bare tag, -0.0 the tag with the sign bit (§3.3).
        assert_eq!(from_small_float(WordSize::W64, 0.0), Some(Oop(4)));
        assert_eq!(from_small_float(WordSize::W64, -0.0), Some(Oop(0xC)));
        for f in [1.0e300, 1.0e-300, f64::INFINITY, f64::NAN] {
            assert_eq!(from_small_float(WordSize::W64, f), None, "{f}");
        }
        assert_eq!(from_small_float(WordSize::W32, 1.0), None);
        assert_eq!(small_float(WordSize::W64, Oop(0x19)), None);
    }

    #[test]
    fn pointers_have_addresses_and_immediates_do_not() {
        let p = Oop::from_bits(0x1000);
        assert_eq!(p.addr(WordSize::W64).map(NewAddr::get), Some(0x1000));
        assert_eq!(Oop::from_bits(0x1001).addr(WordSize::W64), None);
        assert_eq!(
            Oop::from_bits(0x1004).addr(WordSize::W32),
            Some(NewAddr::from_heap_word(0x1004))
        );
        assert_eq!(format!("{p:?} {p}"), "oop:0x1000 0x1000");
    }
}
