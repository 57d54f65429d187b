//! MiscPrimitivePlugin: the string primitives behind `compare:with:collated:`,
//! `findFirstInString:inSet:startingAt:`, `indexOfAscii:inString:startingAt:`,
//! `findSubstring:in:startingAt:matchTable:`, `translate:from:to:table:` and
//! `stringHash:initialHash:`, with the Cog VM's semantics.
//!
//! Each is a translation of Smalltalk code the image also has as the
//! primitive method's fallback, so a primitive fails, and that code runs,
//! where Cog's fails: an argument of the wrong kind (not a byte object, not
//! a SmallInteger), a start index below 1 (findSubstring takes it as 1
//! instead), a table of fewer than 256 entries, a range beyond the string,
//! an immutable string to translate. The fallback then does exactly what the
//! image would have done without the plugin, error included. The Bitmap
//! compression primitives are not here: they fail.

use crate::interp::{Prim, Vm, R};
use crate::mem::Oop;

const FAIL: R<Prim> = Ok(Prim::Fail(1));

/// `compare: s1 with: s2 collated: order`: 1, 2 or 3 as `s1` sorts before,
/// equal to or after `s2` when each byte is replaced by its entry in
/// `order`; `None` when `order` has fewer than 256 entries.
pub(crate) fn compare_collated(s1: &[u8], s2: &[u8], order: &[u8]) -> Option<i64> {
    let order: &[u8; 256] = order.get(..256)?.try_into().ok()?;
    for (&a, &b) in s1.iter().zip(s2) {
        let (c1, c2) = (order[usize::from(a)], order[usize::from(b)]);
        if c1 != c2 {
            return Some(if c1 < c2 { 1 } else { 3 });
        }
    }
    Some(match s1.len().cmp(&s2.len()) {
        std::cmp::Ordering::Less => 1,
        std::cmp::Ordering::Equal => 2,
        std::cmp::Ordering::Greater => 3,
    })
}

/// `findFirstInString: s inSet: map startingAt: start`: the 1-based index
/// of the first byte at or after `start` whose entry in `map` is not 0, or
/// 0 (also when `map` is not of 256 entries, as the fallback says); `None`
/// when `start` is below 1.
pub(crate) fn find_first_in_set(s: &[u8], map: &[u8], start: i64) -> Option<i64> {
    let from = index_from(start)?;
    if map.len() != 256 {
        return Some(0);
    }
    Some(
        s.iter()
            .enumerate()
            .skip(from)
            .find(|&(_, &b)| map[usize::from(b)] != 0)
            .map_or(0, |(i, _)| one_based(i)),
    )
}

/// `indexOfAscii: byte inString: s startingAt: start`: the 1-based index of
/// the first `byte` at or after `start`, or 0; `None` as for
/// [`find_first_in_set`].
pub(crate) fn index_of_ascii(byte: i64, s: &[u8], start: i64) -> Option<i64> {
    let from = index_from(start)?;
    let Ok(byte) = u8::try_from(byte) else {
        return Some(0);
    };
    Some(
        s.iter()
            .skip(from)
            .position(|&b| b == byte)
            .map_or(0, |i| one_based(i + from)),
    )
}

/// `findSubstring: key in: body startingAt: start matchTable: table`: the
/// 1-based index in `body` at or after `start` where `key` occurs, bytes
/// compared through `table`, or 0 (always 0 for an empty key); a `start`
/// below 1 is taken as 1. `None` when `table` has fewer than 256 entries.
pub(crate) fn find_substring(key: &[u8], body: &[u8], start: i64, table: &[u8]) -> Option<i64> {
    let table: &[u8; 256] = table.get(..256)?.try_into().ok()?;
    if key.is_empty() {
        return Some(0);
    }
    let from = usize::try_from(start.max(1) - 1).unwrap_or(usize::MAX);
    let Some(last) = body.len().checked_sub(key.len()) else {
        return Some(0);
    };
    let same = |a: u8, b: u8| table[usize::from(a)] == table[usize::from(b)];
    Some(
        (from..=last)
            .find(|&i| {
                body[i..i + key.len()]
                    .iter()
                    .zip(key)
                    .all(|(&a, &b)| same(a, b))
            })
            .map_or(0, one_based),
    )
}

/// `translate: s from: start to: stop table: table` in place: each byte of
/// `s[start..=stop]` (1-based) replaced by its entry in `table`; `None`
/// (nothing changed) when `start` is below 1 or `stop` beyond `s` (checked
/// for an empty range too, as Cog does), or `table` has fewer than 256
/// entries. An empty range (`start > stop`) changes nothing.
pub(crate) fn translate(s: &mut [u8], start: i64, stop: i64, table: &[u8]) -> Option<()> {
    if start < 1 || usize::try_from(stop).is_ok_and(|b| b > s.len()) {
        return None;
    }
    let table: &[u8; 256] = table.get(..256)?.try_into().ok()?;
    if start > stop {
        return Some(());
    }
    let (Ok(a), Ok(b)) = (usize::try_from(start), usize::try_from(stop)) else {
        return None;
    };
    for c in &mut s[a - 1..b] {
        *c = table[usize::from(*c)];
    }
    Some(())
}

/// The 0-based index to start a scan at for a 1-based `start`; `None` when
/// `start` is below 1 (Cog fails with a bad index then).
fn index_from(start: i64) -> Option<usize> {
    usize::try_from(start)
        .ok()
        .filter(|&s| s >= 1)
        .map(|s| s - 1)
}

/// The 1-based index of 0-based `i` (an index into a byte object, so below
/// 2^61).
fn one_based(i: usize) -> i64 {
    i64::try_from(i).map_or(i64::MAX, |i| i + 1)
}

impl Vm<'_> {
    /// The bytes of `o` when it is a byte object (a String, Symbol or
    /// ByteArray, not a CompiledMethod).
    fn byte_arg(&self, o: Oop) -> Option<&[u8]> {
        let f = self.m.format(o).ok()?;
        (16..24).contains(&f).then(|| self.m.bytes(o).ok())?
    }

    /// A named primitive of MiscPrimitivePlugin; those not here fail.
    pub(crate) fn misc_primitive(&mut self, name: &str, argc: u32) -> R<Prim> {
        let n = u64::from(argc);
        let want = match name {
            "primitiveStringHash" => 2,
            "primitiveCompareString"
            | "primitiveFindFirstInString"
            | "primitiveIndexOfAsciiInString" => 3,
            "primitiveFindSubstring" | "primitiveTranslateStringWithTable" => 4,
            _ => return FAIL,
        };
        if argc != want {
            return FAIL;
        }
        let arg = |vm: &Self, k: u64| vm.stack_value(n - 1 - k);
        let int = |vm: &Self, k: u64| -> R<Option<i64>> { Ok(vm.m.small_int(arg(vm, k)?)) };
        let answer = match name {
            "primitiveStringHash" => return self.string_hash(argc),
            "primitiveCompareString" => {
                let (s1, s2, order) = (arg(self, 0)?, arg(self, 1)?, arg(self, 2)?);
                let (Some(s1), Some(s2), Some(order)) =
                    (self.byte_arg(s1), self.byte_arg(s2), self.byte_arg(order))
                else {
                    return FAIL;
                };
                compare_collated(s1, s2, order)
            }
            "primitiveFindFirstInString" => {
                let (s, map, start) = (arg(self, 0)?, arg(self, 1)?, int(self, 2)?);
                let (Some(s), Some(map), Some(start)) =
                    (self.byte_arg(s), self.byte_arg(map), start)
                else {
                    return FAIL;
                };
                find_first_in_set(s, map, start)
            }
            "primitiveIndexOfAsciiInString" => {
                let (byte, s, start) = (int(self, 0)?, arg(self, 1)?, int(self, 2)?);
                let (Some(byte), Some(s), Some(start)) = (byte, self.byte_arg(s), start) else {
                    return FAIL;
                };
                index_of_ascii(byte, s, start)
            }
            "primitiveFindSubstring" => {
                let (key, body, start, table) =
                    (arg(self, 0)?, arg(self, 1)?, int(self, 2)?, arg(self, 3)?);
                let (Some(key), Some(body), Some(start), Some(table)) = (
                    self.byte_arg(key),
                    self.byte_arg(body),
                    start,
                    self.byte_arg(table),
                ) else {
                    return FAIL;
                };
                find_substring(key, body, start, table)
            }
            _ => {
                // primitiveTranslateStringWithTable: in place, answering the receiver.
                let (s, start, stop, table) =
                    (arg(self, 0)?, int(self, 1)?, int(self, 2)?, arg(self, 3)?);
                let (Some(start), Some(stop), Some(table)) =
                    (start, stop, self.byte_arg(table).map(<[u8]>::to_vec))
                else {
                    return FAIL;
                };
                if self.byte_arg(s).is_none()
                    || s.is_immediate(self.word)
                    || self.m.header(s)?.is_immutable()
                {
                    return FAIL;
                }
                if translate(self.m.bytes_mut(s)?, start, stop, &table).is_none() {
                    return FAIL;
                }
                self.pop_n(n)?;
                return Ok(Prim::Done);
            }
        };
        match answer {
            Some(v) => {
                let v = self.int(v);
                self.pop_n_push(n + 1, v)?;
                Ok(Prim::Done)
            }
            None => FAIL,
        }
    }
}

#[cfg(test)]
mod tests {
    use spur_format::WordSize;

    use super::*;
    use crate::large_ints::test_vm::with_vm;

    /// The identity order of `compare:with:collated:` and a case-folding one.
    fn identity() -> Vec<u8> {
        (0..=255).collect()
    }
    fn folding() -> Vec<u8> {
        identity().iter().map(u8::to_ascii_lowercase).collect()
    }

    #[test]
    fn compare_answers_1_2_3_through_the_order() {
        let (id, fold) = (identity(), folding());
        assert_eq!(compare_collated(b"abc", b"abd", &id), Some(1));
        assert_eq!(compare_collated(b"abc", b"abc", &id), Some(2));
        assert_eq!(compare_collated(b"abd", b"abc", &id), Some(3));
        assert_eq!(
            compare_collated(b"ab", b"abc", &id),
            Some(1),
            "a prefix sorts first"
        );
        assert_eq!(compare_collated(b"abc", b"ab", &id), Some(3));
        assert_eq!(compare_collated(b"ABC", b"abc", &id), Some(1));
        assert_eq!(compare_collated(b"ABC", b"abc", &fold), Some(2));
        assert_eq!(
            compare_collated(b"a", b"b", &id[..255]),
            None,
            "a short order fails"
        );
    }

    #[test]
    fn find_first_in_set_and_index_of_ascii_scan_from_start() {
        let mut map = vec![0u8; 256];
        map[usize::from(b',')] = 1;
        map[usize::from(b';')] = 1;
        assert_eq!(find_first_in_set(b"a,b;c", &map, 1), Some(2));
        assert_eq!(find_first_in_set(b"a,b;c", &map, 3), Some(4));
        assert_eq!(find_first_in_set(b"a,b;c", &map, 5), Some(0));
        assert_eq!(find_first_in_set(b"a,b;c", &map, 99), Some(0));
        assert_eq!(
            find_first_in_set(b"a,b", &map[..255], 1),
            Some(0),
            "as the fallback"
        );
        assert_eq!(find_first_in_set(b"a,b", &map, 0), None);
        assert_eq!(
            find_first_in_set(b"", &map, 0),
            None,
            "in an empty string too"
        );
        assert_eq!(
            find_first_in_set(b"a,b", &map[..255], 0),
            None,
            "start is checked first"
        );
        assert_eq!(index_of_ascii(i64::from(b'c'), b"abcabc", 1), Some(3));
        assert_eq!(index_of_ascii(i64::from(b'c'), b"abcabc", 4), Some(6));
        assert_eq!(index_of_ascii(i64::from(b'z'), b"abcabc", 1), Some(0));
        assert_eq!(index_of_ascii(300, b"abc", 1), Some(0));
        assert_eq!(index_of_ascii(97, b"abc", -1), None);
        assert_eq!(index_of_ascii(97, b"", 0), None);
    }

    #[test]
    fn find_substring_matches_through_the_table() {
        let (id, fold) = (identity(), folding());
        assert_eq!(find_substring(b"lo", b"hello lo", 1, &id), Some(4));
        assert_eq!(find_substring(b"lo", b"hello lo", 5, &id), Some(7));
        assert_eq!(find_substring(b"LO", b"hello", 1, &id), Some(0));
        assert_eq!(find_substring(b"LO", b"hello", 1, &fold), Some(4));
        assert_eq!(find_substring(b"", b"hello", 1, &id), Some(0));
        assert_eq!(find_substring(b"hello!", b"hello", 1, &id), Some(0));
        assert_eq!(find_substring(b"o", b"hello", 6, &id), Some(0));
        assert_eq!(
            find_substring(b"o", b"hello", 0, &id),
            Some(5),
            "start 0 is 1"
        );
        assert_eq!(find_substring(b"h", b"hello", -9, &id), Some(1));
        assert_eq!(find_substring(b"o", b"hello", 1, &id[..10]), None);
    }

    #[test]
    fn translate_maps_the_range_in_place_or_changes_nothing() {
        let up: Vec<u8> = identity().iter().map(u8::to_ascii_uppercase).collect();
        let mut s = *b"hello";
        assert_eq!(translate(&mut s, 2, 4, &up), Some(()));
        assert_eq!(&s, b"hELLo");
        assert_eq!(translate(&mut s, 4, 6, &up), None);
        assert_eq!(translate(&mut s, 0, 2, &up), None);
        assert_eq!(translate(&mut s, 1, 5, &up[..100]), None);
        assert_eq!(&s, b"hELLo", "a failure changes nothing");
        assert_eq!(translate(&mut s, 3, 2, &up), Some(()));
        assert_eq!(
            translate(&mut s, 0, -1, &up),
            None,
            "an empty range is checked too"
        );
        assert_eq!(translate(&mut s, 7, 6, &up), None);
        assert_eq!(&s, b"hELLo");
    }

    #[test]
    fn the_primitives_read_the_stack_and_fail_on_wrong_kinds() {
        with_vm(WordSize::W64, |vm| {
            let depth = vm.sp;
            let class = vm.nil;
            let a = vm.new_string(b"abc").unwrap();
            let b = vm.new_string(b"abd").unwrap();
            let order = vm.new_string(&identity()).unwrap();
            for o in [class, a, b, order] {
                vm.push(o).unwrap();
            }
            assert!(matches!(
                vm.misc_primitive("primitiveCompareString", 3),
                Ok(Prim::Done)
            ));
            assert_eq!(vm.m.small_int(vm.stack_value(0).unwrap()), Some(1));
            vm.pop_n(1).unwrap();
            // A SmallInteger where a string goes: fails, the stack as it was.
            let three = vm.int(3);
            for o in [class, a, three, order] {
                vm.push(o).unwrap();
            }
            assert!(matches!(
                vm.misc_primitive("primitiveCompareString", 3),
                Ok(Prim::Fail(_))
            ));
            vm.pop_n(4).unwrap();
            assert_eq!(vm.sp, depth);
            // translate:from:to:table: changes the string and answers the receiver.
            let up: Vec<u8> = identity().iter().map(u8::to_ascii_uppercase).collect();
            let table = vm.new_string(&up).unwrap();
            let (one, two) = (vm.int(1), vm.int(2));
            for o in [class, a, one, two, table] {
                vm.push(o).unwrap();
            }
            let r = vm.misc_primitive("primitiveTranslateStringWithTable", 4);
            assert!(matches!(r, Ok(Prim::Done)));
            assert_eq!(vm.stack_value(0).unwrap(), class);
            assert_eq!(vm.m.bytes(a).unwrap(), b"ABc");
            vm.pop_n(1).unwrap();
            // The wrong argument count fails.
            vm.push(class).unwrap();
            vm.push(a).unwrap();
            let r = vm.misc_primitive("primitiveFindSubstring", 1);
            assert!(matches!(r, Ok(Prim::Fail(_))));
        });
    }
}
