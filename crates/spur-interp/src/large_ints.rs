//! LargeInteger arithmetic: the `LargeIntegers` plugin's digit primitives
//! and the numbered primitives 21–37, with the semantics of the Cog VM's.
//!
//! A LargePositiveInteger or LargeNegativeInteger is a byte object holding
//! its magnitude little-endian; its class gives the sign. The plugin's
//! primitives take SmallIntegers wherever Cog's do (as a large integer of
//! the same value) and answer normalised results: a SmallInteger when the
//! value fits one, else a large integer with no leading zero bytes. (Cog
//! leaves the answers of primDigitDivNegative and of a left
//! primDigitBitShiftMagnitude as they come; the image normalises them
//! itself, so normalising here changes no result.) The numbered primitives
//! work on a SmallInteger or a large integer of at most 8 bytes, as Cog's
//! `magnitude64BitValueOf:` reads them, and fail when an operand or the
//! result does not fit ([`prim64`]), so the image's Smalltalk code runs
//! instead.

use num_bigint::BigUint;

use crate::interp::{Prim, Vm, R};
use crate::mem::Oop;

const FAIL: R<Prim> = Ok(Prim::Fail(1));

/// The plugin's answer to `primGetModuleName`.
pub(crate) const MODULE_NAME: &str = "LargeIntegers (spur-interp)";

/// An integer as sign and magnitude, as a large integer object holds it
/// (a negative zero is possible: a LargeNegativeInteger of zero bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Int {
    /// The class is LargeNegativeInteger (or the SmallInteger is negative).
    pub neg: bool,
    /// The magnitude.
    pub mag: BigUint,
}

impl Int {
    /// The integer of value `v`.
    pub fn from_i128(v: i128) -> Int {
        Int {
            neg: v < 0,
            mag: BigUint::from(v.unsigned_abs()),
        }
    }

    /// Its value, when it fits an i128.
    pub fn to_i128(&self) -> Option<i128> {
        let m = i128::try_from(u128::try_from(&self.mag).ok()?).ok();
        match (self.neg, m) {
            (false, m) => m,
            (true, Some(m)) => Some(-m),
            // -2^127, the one value whose magnitude is not an i128.
            (true, None) => (self.mag == BigUint::from(1u128 << 127)).then_some(i128::MIN),
        }
    }

    fn signed(neg: bool, mag: BigUint) -> Int {
        Int { neg, mag }
    }
}

/// `a + b` (primDigitAdd).
pub(crate) fn add(a: &Int, b: &Int) -> Int {
    if a.neg == b.neg {
        return Int::signed(a.neg, &a.mag + &b.mag);
    }
    // Opposite signs: the larger magnitude gives the sign.
    if a.mag >= b.mag {
        Int::signed(a.neg, &a.mag - &b.mag)
    } else {
        Int::signed(b.neg, &b.mag - &a.mag)
    }
}

/// `a - b` (primDigitSubtract).
pub(crate) fn subtract(a: &Int, b: &Int) -> Int {
    add(
        a,
        &Int {
            neg: !b.neg,
            mag: b.mag.clone(),
        },
    )
}

/// `|a| * |b|`, negative when `neg` (primDigitMultiplyNegative).
pub(crate) fn multiply(a: &Int, b: &Int, neg: bool) -> Int {
    Int::signed(neg, &a.mag * &b.mag)
}

/// The quotient `|a| // |b|`, negative when `neg`, and the remainder
/// `|a| \\ |b|` with `a`'s sign (primDigitDivNegative); `None` when `b` is
/// zero.
pub(crate) fn divide(a: &Int, b: &Int, neg: bool) -> Option<(Int, Int)> {
    if b.mag == BigUint::ZERO {
        return None;
    }
    let q = &a.mag / &b.mag;
    let r = &a.mag % &b.mag;
    Some((Int::signed(neg, q), Int::signed(a.neg, r)))
}

/// -1, 0 or 1 as `|a|` is below, equal to or above `|b|`.
pub(crate) fn compare_magnitudes(a: &Int, b: &Int) -> i64 {
    match a.mag.cmp(&b.mag) {
        std::cmp::Ordering::Less => -1,
        std::cmp::Ordering::Equal => 0,
        std::cmp::Ordering::Greater => 1,
    }
}

/// An operand of the digit primitives: its value, and what Cog looks at
/// beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Operand {
    /// The value.
    pub v: Int,
    /// A SmallInteger (else a large integer object).
    pub small: bool,
    /// The object's byte length (0 for a SmallInteger).
    pub bytes: usize,
    /// A SmallInteger, or a large integer whose last byte is not 0 (Cog's
    /// `isNormalized:`, which does not ask whether the value fits a
    /// SmallInteger).
    pub minimal: bool,
}

/// primDigitCompare as Cog answers it: magnitudes of two SmallIntegers
/// compared; a SmallInteger is taken as below any large integer (true of
/// normalised ones); two large integers compare by their count of 32-bit
/// digits first, then by magnitude.
pub(crate) fn digit_compare(a: &Operand, b: &Operand) -> i64 {
    match (a.small, b.small) {
        (true, false) => -1,
        (false, true) => 1,
        (true, true) => compare_magnitudes(&a.v, &b.v),
        (false, false) => {
            let (da, db) = (a.bytes.div_ceil(4), b.bytes.div_ceil(4));
            match da.cmp(&db) {
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Greater => 1,
                std::cmp::Ordering::Equal => compare_magnitudes(&a.v, &b.v),
            }
        }
    }
}

/// A bitwise operation of the digit primitives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BitOp {
    /// primDigitBitAnd.
    And,
    /// primDigitBitOr.
    Or,
    /// primDigitBitXor.
    Xor,
}

/// `a op b` of two non-negative integers; `None` when either is negative
/// (as in Cog, where the image's code handles negative operands).
pub(crate) fn bit_op(a: &Int, b: &Int, op: BitOp) -> Option<Int> {
    if a.neg || b.neg {
        return None;
    }
    let mag = match op {
        BitOp::And => &a.mag & &b.mag,
        BitOp::Or => &a.mag | &b.mag,
        BitOp::Xor => &a.mag ^ &b.mag,
    };
    Some(Int::signed(false, mag))
}

/// Whether any of bits `start..=stop` (counted from 1) of the magnitude is
/// set (primAnyBitFromTo); `None` when either bound is below 1, where Cog
/// fails. Bits past the highest set one are all clear.
pub(crate) fn any_bit(a: &Int, start: i64, stop: i64) -> Option<bool> {
    let start = u64::try_from(start).ok().filter(|&s| s >= 1)?;
    let stop = u64::try_from(stop).ok().filter(|&s| s >= 1)?;
    let stop = stop.min(a.mag.bits());
    Some((start..=stop).any(|i| a.mag.bit(i - 1)))
}

/// The magnitude shifted left by `shift` bits (right when negative), the
/// sign kept (primDigitBitShiftMagnitude); `None` when the result would
/// have more than `max_bits` bits.
pub(crate) fn shift_magnitude(a: &Int, shift: i64, max_bits: u64) -> Option<Int> {
    let mag = if shift >= 0 {
        let s = u64::try_from(shift).ok()?;
        if a.mag != BigUint::ZERO && a.mag.bits().checked_add(s)? > max_bits {
            return None;
        }
        &a.mag << s
    } else {
        &a.mag >> shift.unsigned_abs()
    };
    Some(Int::signed(a.neg, mag))
}

/// The result of one of the numbered primitives 21–37.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer64 {
    /// An integer result (its magnitude below 2^64).
    Int(i128),
    /// A comparison's result.
    Bool(bool),
}

/// The largest magnitude of the numbered primitives' operands and results.
const MAG64: i128 = u64::MAX as i128;

/// Primitive `p` (21–37) on `x` and `y`, as Cog's `primitiveAddLargeIntegers`
/// and kin compute it: operands and results of the arithmetic are a sign
/// and a 64-bit magnitude (so `x` and `y` are within ±(2^64 − 1)),
/// comparisons take signed 64-bit values, bitwise operations unsigned
/// 64-bit ones, and `bitShift:` (37) a SmallInteger count. `None` when it
/// fails: an operand out of its range, a zero divisor, an inexact `/`, a
/// result beyond 64 bits of magnitude, or a left shift that loses bits.
pub(crate) fn prim64(p: u16, x: i128, y: i128) -> Option<Answer64> {
    use Answer64::{Bool, Int as I};
    let mag = |v: i128| (-MAG64..=MAG64).contains(&v);
    let signed = |v: i128| i64::try_from(v).is_ok();
    let unsigned = |v: i128| u64::try_from(v).is_ok();
    if !mag(x) || (p != 37 && !mag(y)) {
        return None;
    }
    let result = match p {
        21 => x + y,
        22 => x - y,
        23..=28 => {
            if !signed(x) || !signed(y) {
                return None;
            }
            return Some(Bool(match p {
                23 => x < y,
                24 => x > y,
                25 => x <= y,
                26 => x >= y,
                27 => x == y,
                _ => x != y,
            }));
        }
        29 => x.checked_mul(y)?,
        30 => {
            if y == 0 || x % y != 0 {
                return None;
            }
            x / y
        }
        // \\ and //: the remainder and quotient of flooring division.
        31 => x.checked_rem_euclid(y)? + if y < 0 && x.rem_euclid(y) != 0 { y } else { 0 },
        32 => {
            let q = x.checked_div(y)?;
            if x % y != 0 && (x < 0) != (y < 0) {
                q - 1
            } else {
                q
            }
        }
        33 => x.checked_div(y)?,
        34..=36 => {
            if !unsigned(x) || !unsigned(y) {
                return None;
            }
            match p {
                34 => x & y,
                35 => x | y,
                _ => x ^ y,
            }
        }
        37 => {
            // The magnitude shifted, the sign kept; a right shift of a
            // negative value rounds toward negative infinity.
            let m = x.unsigned_abs();
            if y >= 0 {
                let s = u32::try_from(y).ok().filter(|&s| s < 64)?;
                if m > u128::from(u64::MAX >> s) {
                    return None;
                }
                x << s
            } else {
                let s = u32::try_from(y.unsigned_abs()).map_or(127, |s| s.min(127));
                x >> s
            }
        }
        _ => return None,
    };
    mag(result).then_some(I(result))
}

impl Vm<'_> {
    /// The integer `o` as an operand; `None` when it is neither a
    /// SmallInteger nor a large integer.
    fn integer_operand(&self, o: Oop) -> Option<Operand> {
        if let Some(v) = self.m.small_int(o) {
            return Some(Operand {
                v: Int::from_i128(i128::from(v)),
                small: true,
                bytes: 0,
                minimal: true,
            });
        }
        let ci = self.m.class_index_of(o).ok()?;
        if ci != self.ci_large_pos && ci != self.ci_large_neg {
            return None;
        }
        let f = self.m.format(o).ok()?;
        if !(16..24).contains(&f) {
            return None;
        }
        let b = self.m.bytes(o).ok()?;
        let v = Int {
            neg: ci == self.ci_large_neg,
            mag: BigUint::from_bytes_le(b),
        };
        Some(Operand {
            v,
            small: false,
            bytes: b.len(),
            minimal: b.last().is_some_and(|&x| x != 0),
        })
    }

    /// Whether `v` is the value of a SmallInteger.
    fn fits_small(&self, v: &Int) -> bool {
        v.to_i128()
            .and_then(|x| i64::try_from(x).ok())
            .and_then(|x| self.m.from_small_int(x))
            .is_some()
    }

    /// `v` normalised: a SmallInteger when it fits one, else a new large
    /// integer of the least bytes; `None` when eden could not hold it.
    fn integer_result(&mut self, v: &Int) -> R<Option<Oop>> {
        if let Some(x) = v.to_i128().and_then(|x| i64::try_from(x).ok()) {
            if let Some(o) = self.m.from_small_int(x) {
                return Ok(Some(o));
            }
        }
        let bytes = v.mag.to_bytes_le();
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        // A result eden cannot hold fails the primitive rather than the run.
        if len.saturating_add(64) > self.m.eden_free() {
            return Ok(None);
        }
        let ci = if v.neg {
            self.ci_large_neg
        } else {
            self.ci_large_pos
        };
        let o = self.m.allocate_bytes(ci, len)?;
        self.m.bytes_mut(o)?.copy_from_slice(&bytes);
        Ok(Some(o))
    }

    /// Answers `v` (popping `argc` + 1), or fails when eden cannot hold it.
    fn answer_integer(&mut self, argc: u32, v: &Int) -> R<Prim> {
        match self.integer_result(v)? {
            Some(o) => {
                self.pop_n_push(u64::from(argc) + 1, o)?;
                Ok(Prim::Done)
            }
            None => FAIL,
        }
    }

    /// A named primitive of the `LargeIntegers` module; those not here
    /// fail, and the image's Smalltalk code runs.
    pub(crate) fn large_integers_primitive(&mut self, name: &str, argc: u32) -> R<Prim> {
        let want = match name {
            "primGetModuleName" | "primNormalizePositive" | "primNormalizeNegative" => 0,
            "primDigitMultiplyNegative" | "primDigitDivNegative" | "primAnyBitFromTo" => 2,
            "primDigitAdd"
            | "primDigitSubtract"
            | "primDigitCompare"
            | "primDigitBitAnd"
            | "primDigitBitOr"
            | "primDigitBitXor"
            | "primDigitBitShiftMagnitude" => 1,
            _ => return FAIL,
        };
        if argc != want {
            return FAIL;
        }
        let n = u64::from(argc);
        if name == "primGetModuleName" {
            let s = self.new_string(MODULE_NAME.as_bytes())?;
            self.pop_n_push(1, s)?;
            return Ok(Prim::Done);
        }
        let Some(a_op) = self.integer_operand(self.stack_value(n)?) else {
            return FAIL;
        };
        let a = &a_op.v;
        match name {
            "primNormalizePositive" | "primNormalizeNegative" => {
                let rcvr = self.stack_value(0)?;
                let ci = if name == "primNormalizePositive" {
                    self.ci_large_pos
                } else {
                    self.ci_large_neg
                };
                if self.m.small_int(rcvr).is_some() || self.m.class_index_of(rcvr)? != ci {
                    return FAIL;
                }
                // A receiver of the least bytes and beyond SmallInteger's
                // range is answered itself, as in Cog.
                if a_op.minimal && !self.fits_small(a) {
                    return Ok(Prim::Done);
                }
                self.answer_integer(0, a)
            }
            "primDigitBitShiftMagnitude" => {
                let Some(shift) = self.m.small_int(self.stack_value(0)?) else {
                    return FAIL;
                };
                let max_bits = self.m.eden_free().saturating_mul(4);
                match shift_magnitude(a, shift, max_bits) {
                    Some(v) => self.answer_integer(1, &v),
                    None => FAIL,
                }
            }
            "primAnyBitFromTo" => {
                let (from, to) = (self.stack_value(1)?, self.stack_value(0)?);
                let (Some(from), Some(to)) = (self.m.small_int(from), self.m.small_int(to)) else {
                    return FAIL;
                };
                match any_bit(a, from, to) {
                    Some(b) => {
                        let b = self.boolean(b);
                        self.pop_n_push(3, b)?;
                        Ok(Prim::Done)
                    }
                    None => FAIL,
                }
            }
            "primDigitMultiplyNegative" | "primDigitDivNegative" => {
                let (b, neg) = (self.stack_value(1)?, self.stack_value(0)?);
                let Some(b_op) = self.integer_operand(b) else {
                    return FAIL;
                };
                let b = &b_op.v;
                let neg = match neg {
                    x if x == self.tru => true,
                    x if x == self.fls => false,
                    _ => return FAIL,
                };
                if name == "primDigitMultiplyNegative" {
                    return self.answer_integer(2, &multiply(a, b, neg));
                }
                // Cog refuses large operands with a leading zero byte here.
                if !a_op.minimal || !b_op.minimal {
                    return FAIL;
                }
                let Some((q, r)) = divide(a, b, neg) else {
                    return FAIL;
                };
                let (Some(q), Some(r)) = (self.integer_result(&q)?, self.integer_result(&r)?)
                else {
                    return FAIL;
                };
                let pair = self.new_array(2)?;
                self.m.store(pair, 0, q)?;
                self.m.store(pair, 1, r)?;
                self.pop_n_push(3, pair)?;
                Ok(Prim::Done)
            }
            _ => {
                let Some(b_op) = self.integer_operand(self.stack_value(0)?) else {
                    return FAIL;
                };
                let b = &b_op.v;
                let v = match name {
                    "primDigitAdd" => add(a, b),
                    "primDigitSubtract" => subtract(a, b),
                    "primDigitCompare" => {
                        let c = self.int(digit_compare(&a_op, &b_op));
                        self.pop_n_push(2, c)?;
                        return Ok(Prim::Done);
                    }
                    _ => {
                        let op = match name {
                            "primDigitBitAnd" => BitOp::And,
                            "primDigitBitOr" => BitOp::Or,
                            _ => BitOp::Xor,
                        };
                        match bit_op(a, b, op) {
                            Some(v) => v,
                            None => return FAIL,
                        }
                    }
                };
                self.answer_integer(1, &v)
            }
        }
    }

    /// An integer of at most 8 bytes as Cog's `magnitude64BitValueOf:`
    /// reads it (a SmallInteger, or a large integer of at most 8 bytes,
    /// signed by its class); `None` for anything else.
    fn integer64(&self, o: Oop) -> Option<i128> {
        if let Some(v) = self.m.small_int(o) {
            return Some(i128::from(v));
        }
        let ci = self.m.class_index_of(o).ok()?;
        if ci != self.ci_large_pos && ci != self.ci_large_neg {
            return None;
        }
        let b = self.m.bytes(o).ok()?;
        let mut buf = [0u8; 8];
        buf.get_mut(..b.len())?.copy_from_slice(b);
        let m = i128::from(u64::from_le_bytes(buf));
        Some(if ci == self.ci_large_neg { -m } else { m })
    }

    /// Primitives 21–37: LargeInteger arithmetic, comparisons and bit
    /// operations on operands and results of 64 bits ([`prim64`]).
    pub(crate) fn large_int_prim64(&mut self, p: u16, argc: u32) -> R<Prim> {
        if argc != 1 {
            return FAIL;
        }
        let (x, y) = (self.stack_value(1)?, self.stack_value(0)?);
        // The shift count is a SmallInteger.
        let y = if p == 37 {
            self.m.small_int(y).map(i128::from)
        } else {
            self.integer64(y)
        };
        let (Some(x), Some(y)) = (self.integer64(x), y) else {
            return FAIL;
        };
        let v = match prim64(p, x, y) {
            Some(Answer64::Int(v)) => match self.integer_result(&Int::from_i128(v))? {
                Some(o) => o,
                None => return FAIL,
            },
            Some(Answer64::Bool(b)) => self.boolean(b),
            None => return FAIL,
        };
        self.pop_n_push(2, v)?;
        Ok(Prim::Done)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use spur_format::WordSize;

    use super::*;
    use crate::test_vm::with_vm;

    fn i(v: i128) -> Int {
        Int::from_i128(v)
    }

    /// Runs LargeIntegers primitive `name` on `operands` (the receiver
    /// first); the answer, or `None` when it failed (the stack checked to
    /// be as it was).
    fn run(vm: &mut Vm<'_>, name: &str, operands: &[Oop]) -> Option<Oop> {
        let depth = vm.sp;
        for &o in operands {
            vm.push(o).unwrap();
        }
        let argc = u32::try_from(operands.len() - 1).unwrap();
        match vm.large_integers_primitive(name, argc).unwrap() {
            Prim::Done => {
                assert_eq!(vm.sp, depth + 1, "{name} leaves one answer");
                let v = vm.stack_value(0).unwrap();
                vm.pop_n(1).unwrap();
                Some(v)
            }
            Prim::Fail(_) => {
                assert_eq!(
                    vm.sp,
                    depth + operands.len() as u64,
                    "{name} failed in place"
                );
                vm.pop_n(operands.len() as u64).unwrap();
                None
            }
        }
    }

    fn obj(vm: &mut Vm<'_>, v: i128) -> Oop {
        vm.integer_result(&i(v)).unwrap().unwrap()
    }

    fn val(vm: &Vm<'_>, o: Oop) -> i128 {
        let op = vm.integer_operand(o).expect("an integer");
        assert!(op.minimal, "answers have no leading zero byte");
        assert!(op.small == vm.fits_small(&op.v), "answers are normalised");
        op.v.to_i128().unwrap()
    }

    /// A large integer of class `neg` with the bytes given (maybe not normalised).
    fn raw(vm: &mut Vm<'_>, neg: bool, bytes: &[u8]) -> Oop {
        let ci = if neg {
            vm.ci_large_neg
        } else {
            vm.ci_large_pos
        };
        let o = vm.m.allocate_bytes(ci, bytes.len() as u64).unwrap();
        vm.m.bytes_mut(o).unwrap().copy_from_slice(bytes);
        o
    }

    const BIG: i128 = 1 << 100;
    const SMALL_MAX: i128 = (1 << 60) - 1;

    #[test]
    fn digit_add_and_subtract_take_small_and_large_operands_and_normalise() {
        with_vm(WordSize::W64, |vm| {
            for (a, b) in [
                (BIG, 1),
                (3, -BIG),
                (-BIG, -BIG),
                (SMALL_MAX, 1),
                (BIG, -BIG),
            ] {
                let (x, y) = (obj(vm, a), obj(vm, b));
                let s = run(vm, "primDigitAdd", &[x, y]).unwrap();
                assert_eq!(val(vm, s), a + b, "{a} + {b}");
                let d = run(vm, "primDigitSubtract", &[x, y]).unwrap();
                assert_eq!(val(vm, d), a - b, "{a} - {b}");
            }
            // BIG - BIG is the SmallInteger 0, not a large zero.
            let (x, y) = (obj(vm, BIG), obj(vm, BIG));
            let z = run(vm, "primDigitSubtract", &[x, y]).unwrap();
            assert_eq!(vm.m.small_int(z), Some(0));
            // Not an integer: fails.
            let nil = vm.nil;
            assert_eq!(run(vm, "primDigitAdd", &[x, nil]), None);
        });
    }

    #[test]
    fn any_bit_looks_at_the_magnitude_between_two_bit_numbers() {
        with_vm(WordSize::W64, |vm| {
            let int = |vm: &mut Vm<'_>, v: i64| vm.int(v);
            // 2^100 + 0b1010_0000: bits 6, 8 and 101 are set.
            let x = obj(vm, BIG + 0xA0);
            let neg = obj(vm, -(BIG + 0xA0));
            for rcvr in [x, neg] {
                for (from, to, want) in [
                    (1, 5, false),
                    (1, 6, true),
                    (7, 7, false),
                    (8, 8, true),
                    (9, 100, false),
                    (9, 101, true),
                    (102, 5000, false),
                    (7, 6, false),
                ] {
                    let (f, t) = (int(vm, from), int(vm, to));
                    let got = run(vm, "primAnyBitFromTo", &[rcvr, f, t]);
                    assert_eq!(got, Some(vm.boolean(want)), "{from}..{to}");
                }
            }
            // A SmallInteger receiver: -12 has magnitude 0b1100.
            let small = int(vm, -12);
            let (f, t) = (int(vm, 3), int(vm, 3));
            assert_eq!(run(vm, "primAnyBitFromTo", &[small, f, t]), Some(vm.tru));
            // Bounds below 1, or not SmallIntegers, fail.
            let (zero, one, nil) = (int(vm, 0), int(vm, 1), vm.nil);
            assert_eq!(run(vm, "primAnyBitFromTo", &[x, zero, one]), None);
            assert_eq!(run(vm, "primAnyBitFromTo", &[x, one, zero]), None);
            assert_eq!(run(vm, "primAnyBitFromTo", &[x, nil, one]), None);
        });
    }

    #[test]
    fn digit_multiply_and_divide_take_the_sign_they_are_given() {
        with_vm(WordSize::W64, |vm| {
            let (t, f) = (vm.tru, vm.fls);
            let (x, y) = (obj(vm, -BIG), obj(vm, 12345));
            let p = run(vm, "primDigitMultiplyNegative", &[x, y, f]).unwrap();
            assert_eq!(val(vm, p), BIG * 12345, "magnitudes multiplied, positive");
            let p = run(vm, "primDigitMultiplyNegative", &[x, y, t]).unwrap();
            assert_eq!(val(vm, p), -BIG * 12345);
            let q = run(vm, "primDigitDivNegative", &[x, y, t]).unwrap();
            let (quo, rem) = (vm.m.fetch(q, 0).unwrap(), vm.m.fetch(q, 1).unwrap());
            assert_eq!(val(vm, quo), -(BIG / 12345));
            assert_eq!(
                val(vm, rem),
                -(BIG % 12345),
                "the remainder has the receiver's sign"
            );
            // A zero divisor, a non-Boolean, an unnormalised operand: fail.
            let zero = obj(vm, 0);
            assert_eq!(run(vm, "primDigitDivNegative", &[x, zero, f]), None);
            assert_eq!(run(vm, "primDigitMultiplyNegative", &[x, y, zero]), None);
            let five = raw(vm, false, &[5, 0, 0]);
            assert_eq!(run(vm, "primDigitDivNegative", &[x, five, f]), None);
            assert!(run(vm, "primDigitMultiplyNegative", &[x, five, f]).is_some());
            // A large integer of a SmallInteger's value but no leading zero
            // byte is accepted, as Cog's isNormalized: has it.
            let five = raw(vm, false, &[5]);
            let q = run(vm, "primDigitDivNegative", &[x, five, f]).unwrap();
            let quo = vm.m.fetch(q, 0).unwrap();
            assert_eq!(val(vm, quo), BIG / 5);
        });
    }

    #[test]
    fn digit_compare_compares_magnitudes() {
        with_vm(WordSize::W64, |vm| {
            for (a, b, want) in [
                (-BIG, 5, 1),
                (3, -7, -1),
                (-BIG, BIG, 0),
                (BIG, BIG * 2, -1),
            ] {
                let (x, y) = (obj(vm, a), obj(vm, b));
                let c = run(vm, "primDigitCompare", &[x, y]).unwrap();
                assert_eq!(vm.m.small_int(c), Some(want), "{a} vs {b}");
            }
            // Cog's shortcuts on objects that are not normalised: a
            // SmallInteger is below any large integer, and a large integer
            // of more 32-bit digits is above one of fewer.
            let (nine, five) = (obj(vm, 9), raw(vm, false, &[5, 0]));
            let c = run(vm, "primDigitCompare", &[nine, five]).unwrap();
            assert_eq!(vm.m.small_int(c), Some(-1));
            let (long, short) = (raw(vm, false, &[1, 0, 0, 0, 0]), raw(vm, false, &[2]));
            let c = run(vm, "primDigitCompare", &[long, short]).unwrap();
            assert_eq!(vm.m.small_int(c), Some(1));
        });
    }

    #[test]
    fn digit_bit_operations_refuse_negative_operands() {
        with_vm(WordSize::W64, |vm| {
            let (a, b) = (BIG | 0xF0F0, (BIG << 3) | 0xFF);
            let (x, y) = (obj(vm, a), obj(vm, b));
            for (name, want) in [
                ("primDigitBitAnd", a & b),
                ("primDigitBitOr", a | b),
                ("primDigitBitXor", a ^ b),
            ] {
                let r = run(vm, name, &[x, y]).unwrap();
                assert_eq!(val(vm, r), want, "{name}");
                let neg = obj(vm, -1);
                assert_eq!(run(vm, name, &[x, neg]), None, "{name} of a negative");
            }
        });
    }

    #[test]
    fn digit_shift_shifts_the_magnitude_and_keeps_the_sign() {
        with_vm(WordSize::W64, |vm| {
            let x = obj(vm, -BIG);
            for (s, want) in [(5, -(BIG << 5)), (-90, -(1 << 10)), (-200, 0)] {
                let c = obj(vm, s);
                let r = run(vm, "primDigitBitShiftMagnitude", &[x, c]).unwrap();
                assert_eq!(val(vm, r), want, "shift {s}");
            }
            let one = obj(vm, 1);
            let big = obj(vm, BIG);
            assert_eq!(run(vm, "primDigitBitShiftMagnitude", &[one, big]), None);
        });
    }

    #[test]
    fn normalize_answers_the_least_form_and_checks_the_receiver_class() {
        with_vm(WordSize::W64, |vm| {
            let five = raw(vm, false, &[5, 0, 0, 0]);
            let r = run(vm, "primNormalizePositive", &[five]).unwrap();
            assert_eq!(vm.m.small_int(r), Some(5));
            let m = raw(vm, true, &[0, 0, 0, 0, 0, 0, 0, 0x10]);
            let r = run(vm, "primNormalizeNegative", &[m]).unwrap();
            assert_eq!(
                vm.m.small_int(r),
                Some(-(1 << 60)),
                "SmallInteger's least value"
            );
            let wide = raw(vm, false, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0]);
            let r = run(vm, "primNormalizePositive", &[wide]).unwrap();
            assert_eq!(vm.m.bytes(r).unwrap(), &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
            let done = obj(vm, BIG);
            assert_eq!(
                run(vm, "primNormalizePositive", &[done]),
                Some(done),
                "itself"
            );
            assert_eq!(
                run(vm, "primNormalizeNegative", &[done]),
                None,
                "wrong class"
            );
            let s = obj(vm, 3);
            assert_eq!(run(vm, "primNormalizePositive", &[s]), None);
            let nil = vm.nil;
            let name = run(vm, "primGetModuleName", &[nil]).unwrap();
            assert_eq!(vm.m.string(name).as_deref(), Some(MODULE_NAME));
        });
    }

    /// Runs numbered primitive `p` on `x` and `y`.
    fn run64(vm: &mut Vm<'_>, p: u16, x: Oop, y: Oop) -> Option<Oop> {
        let depth = vm.sp;
        vm.push(x).unwrap();
        vm.push(y).unwrap();
        match vm.large_int_prim64(p, 1).unwrap() {
            Prim::Done => {
                let v = vm.stack_value(0).unwrap();
                vm.pop_n(1).unwrap();
                assert_eq!(vm.sp, depth);
                Some(v)
            }
            Prim::Fail(_) => {
                vm.pop_n(2).unwrap();
                assert_eq!(vm.sp, depth);
                None
            }
        }
    }

    #[test]
    fn numbered_primitives_work_on_64_bits_and_fail_beyond() {
        with_vm(WordSize::W64, |vm| {
            const U64: i128 = u64::MAX as i128;
            // A sign and a 64-bit magnitude: beyond i64, within u64.
            let (a, b) = (obj(vm, i128::from(i64::MAX)), obj(vm, 1));
            let r = run64(vm, 21, a, b).unwrap();
            assert_eq!(val(vm, r), i128::from(i64::MAX) + 1);
            let (m, neg_m) = (obj(vm, U64), obj(vm, -U64));
            assert_eq!(
                run64(vm, 21, m, b),
                None,
                "the sum's magnitude is beyond 64 bits"
            );
            let r = run64(vm, 22, b, m).unwrap();
            assert_eq!(val(vm, r), 1 - U64);
            let r = run64(vm, 29, neg_m, b).unwrap();
            assert_eq!(val(vm, r), -U64);
            // Comparisons take signed 64-bit values only.
            let t = run64(vm, 24, a, b).unwrap();
            assert_eq!(t, vm.tru);
            assert_eq!(run64(vm, 24, m, b), None, "beyond i64");
            let big = obj(vm, BIG);
            assert_eq!(run64(vm, 21, big, b), None, "an operand beyond 64 bits");
            // A large integer of more than 8 bytes fails even when its value is small.
            let wide = raw(vm, false, &[1, 0, 0, 0, 0, 0, 0, 0, 0]);
            assert_eq!(run64(vm, 21, wide, b), None);
            let (x, y) = (obj(vm, -(1 << 62)), obj(vm, 3));
            let r = run64(vm, 32, x, y).unwrap();
            assert_eq!(val(vm, r), (-(1i128 << 62)).div_euclid(3));
            assert_eq!(run64(vm, 30, x, y), None, "inexact /");
            assert_eq!(run64(vm, 34, x, y), None, "bitAnd: of a negative");
            let r = run64(vm, 35, m, b).unwrap();
            assert_eq!(val(vm, r), U64, "bitOr: of unsigned 64-bit values");
            let s = obj(vm, 1);
            assert_eq!(run64(vm, 37, m, s), None, "a shift that loses a bit");
            let s = obj(vm, -1);
            let r = run64(vm, 37, neg_m, s).unwrap();
            assert_eq!(val(vm, r), (-U64).div_euclid(2), "rounded toward -infinity");
        });
    }

    fn to_int(v: &Int) -> i128 {
        v.to_i128().unwrap()
    }

    proptest! {
        #[test]
        fn digit_arithmetic_agrees_with_i128(a in -(1i128 << 120)..(1i128 << 120),
                                             b in -(1i128 << 120)..(1i128 << 120),
                                             neg: bool, s in -130i64..6) {
            let (x, y) = (i(a), i(b));
            prop_assert_eq!(to_int(&add(&x, &y)), a + b);
            prop_assert_eq!(to_int(&subtract(&x, &y)), a - b);
            prop_assert_eq!(compare_magnitudes(&x, &y), a.unsigned_abs().cmp(&b.unsigned_abs()) as i64);
            let (sa, sb) = (a >> 64, b >> 64);
            let p = to_int(&multiply(&i(sa), &i(sb), neg));
            prop_assert_eq!(p, if neg { -(sa * sb).abs() } else { (sa * sb).abs() });
            if b != 0 {
                let (q, r) = divide(&x, &y, neg).unwrap();
                let (mq, mr) = (a.unsigned_abs() / b.unsigned_abs(), a.unsigned_abs() % b.unsigned_abs());
                prop_assert_eq!(to_int(&q), if neg { -i128::try_from(mq).unwrap() } else { i128::try_from(mq).unwrap() });
                prop_assert_eq!(to_int(&r), if a < 0 { -i128::try_from(mr).unwrap() } else { i128::try_from(mr).unwrap() });
            }
            let (pa, pb) = (a.abs(), b.abs());
            prop_assert_eq!(to_int(&bit_op(&i(pa), &i(pb), BitOp::And).unwrap()), pa & pb);
            prop_assert_eq!(to_int(&bit_op(&i(pa), &i(pb), BitOp::Or).unwrap()), pa | pb);
            prop_assert_eq!(to_int(&bit_op(&i(pa), &i(pb), BitOp::Xor).unwrap()), pa ^ pb);
            let m = a.unsigned_abs();
            let shifted = if s >= 0 { m << s } else { m >> (-s).min(127) };
            let want = if a < 0 { -i128::try_from(shifted).unwrap() } else { i128::try_from(shifted).unwrap() };
            prop_assert_eq!(to_int(&shift_magnitude(&x, s, 1 << 20).unwrap()), want);
        }

        #[test]
        fn numbered_primitives_agree_with_i128(
            x in -(1i128 << 65)..(1i128 << 65),
            y in -(1i128 << 65)..(1i128 << 65),
            s in -140i128..70,
        ) {
            const M: i128 = u64::MAX as i128;
            let fits = |v: i128| (v.abs() <= M).then_some(Answer64::Int(v));
            let ops = x.abs() <= M && y.abs() <= M;
            let sixty_four = i64::try_from(x).is_ok() && i64::try_from(y).is_ok();
            let when = |ok: bool, v: Option<Answer64>| if ok { v } else { None };
            prop_assert_eq!(prim64(21, x, y), when(ops, fits(x + y)));
            prop_assert_eq!(prim64(22, x, y), when(ops, fits(x - y)));
            prop_assert_eq!(prim64(29, x, y), when(ops, x.checked_mul(y).and_then(fits)));
            prop_assert_eq!(prim64(23, x, y), when(ops && sixty_four, Some(Answer64::Bool(x < y))));
            prop_assert_eq!(prim64(28, x, y), when(ops && sixty_four, Some(Answer64::Bool(x != y))));
            match (prim64(32, x, y), prim64(31, x, y)) {
                (Some(Answer64::Int(q)), Some(Answer64::Int(r))) => {
                    // Flooring division: x = q*y + r, r of y's sign, |r| < |y|.
                    prop_assert!(ops && y != 0);
                    prop_assert_eq!(q * y + r, x);
                    prop_assert!(r == 0 || ((r < 0) == (y < 0) && r.abs() < y.abs()));
                }
                (q, r) => {
                    prop_assert!(!ops || y == 0, "{:?} {:?}", q, r);
                    prop_assert_eq!((q, r), (None, None));
                }
            }
            let exact = ops && y != 0 && x % y == 0;
            prop_assert_eq!(prim64(30, x, y), when(exact, Some(Answer64::Int(x / y))));
            prop_assert_eq!(prim64(33, x, y), when(ops && y != 0, Some(Answer64::Int(x / y))));
            let unsigned = (0..=M).contains(&x) && (0..=M).contains(&y);
            prop_assert_eq!(prim64(34, x, y), when(unsigned, Some(Answer64::Int(x & y))));
            prop_assert_eq!(prim64(36, x, y), when(unsigned, Some(Answer64::Int(x ^ y))));
            // Left shifts of 64 bits and more fail; right shifts floor.
            let shifted = if s >= 0 {
                if s < 64 { fits(x << s) } else { None }
            } else {
                Some(Answer64::Int(x >> (-s).min(127)))
            };
            prop_assert_eq!(prim64(37, x, s), when(x.abs() <= M, shifted));
        }
    }
}
