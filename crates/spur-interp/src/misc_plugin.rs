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
//! run-length coding (`compress:toByteArray:`, `decompress:fromByteArray:at:`)
//! is here too, in the same byte format as Cog's.

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

/// Appends `n` in the coding of Bitmap sizes and run headers: 0–223 as
/// one byte, up to 7935 as two (224 + n / 256, n % 256), else 255 and four
/// bytes, most significant first.
fn encode_int(n: u32, out: &mut Vec<u8>) {
    match u8::try_from(n) {
        Ok(b) if b <= 223 => out.push(b),
        _ if n <= 7935 => out.extend_from_slice(&[
            u8::try_from(n / 256 + 224).unwrap_or(u8::MAX),
            u8::try_from(n % 256).unwrap_or(0),
        ]),
        _ => {
            out.push(255);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

/// `Bitmap compress: bm toByteArray: ba` as bytes: the size, then runs,
/// each a header `n * 4 + code` and its data: code 1, n words whose four
/// bytes are all the one byte that follows; code 2, n copies of the word
/// that follows; code 3, n words that follow. Words are written most
/// significant byte first. `None` when a count does not fit 32 bits.
pub(crate) fn compress_bitmap(bm: &[u32]) -> Option<Vec<u8>> {
    let size = bm.len();
    let count = |n: usize, code: u32| Some(u32::try_from(n).ok()?.checked_mul(4)? + code);
    let mut out = Vec::with_capacity(size * 4 + 8);
    encode_int(u32::try_from(size).ok()?, &mut out);
    let mut k = 0;
    while k < size {
        let word = bm[k];
        let low = word.to_le_bytes()[0];
        let same_bytes = word.to_le_bytes() == [low; 4];
        // j: the last of the words equal to bm[k] from k on.
        let mut j = k;
        while j + 1 < size && bm[j + 1] == word {
            j += 1;
        }
        if j > k || same_bytes {
            let n = j - k + 1;
            if same_bytes {
                encode_int(count(n, 1)?, &mut out);
                out.push(low);
            } else {
                encode_int(count(n, 2)?, &mut out);
                out.extend_from_slice(&word.to_be_bytes());
            }
            k = j + 1;
        } else {
            // Words as they are, up to the first of two equal ones (or the end).
            while j + 1 < size && bm[j] != bm[j + 1] {
                j += 1;
            }
            if j + 1 == size {
                j += 1;
            }
            encode_int(count(j - k, 3)?, &mut out);
            for w in &bm[k..j] {
                out.extend_from_slice(&w.to_be_bytes());
            }
            k = j;
        }
    }
    Some(out)
}

/// The longest coding [`compress_bitmap`] can give for `words` words, as
/// Cog bounds it (a destination shorter than this fails the primitive).
pub(crate) fn compressed_bound(words: usize) -> usize {
    words * 4 + 7 + words / 1984 * 3
}

/// `Bitmap decompress: bm fromByteArray: ba at: index`: decodes the runs of
/// `ba` from 1-based `index` (just past the size) into `bm`, from its first
/// word on. A header of code 0 stores nothing, as in Cog. `None`, and `bm`
/// unchanged, when `index` is below 1, a run would go past the end of `bm`,
/// or `ba` ends inside a run.
pub(crate) fn decompress_bitmap(ba: &[u8], index: i64, bm: &mut [u32]) -> Option<()> {
    let mut i = index_from(index)?;
    let mut out = bm.to_vec();
    let mut k = 0usize;
    let byte = |i: &mut usize| -> Option<u8> {
        let b = *ba.get(*i)?;
        *i += 1;
        Some(b)
    };
    let word = |i: &mut usize| -> Option<u32> {
        let w = u32::from_be_bytes(ba.get(*i..*i + 4)?.try_into().ok()?);
        *i += 4;
        Some(w)
    };
    while i < ba.len() {
        let mut header = u32::from(byte(&mut i)?);
        if header > 223 {
            header = if header <= 254 {
                (header - 224) * 256 + u32::from(byte(&mut i)?)
            } else {
                word(&mut i)?
            };
        }
        let n = usize::try_from(header >> 2).ok()?;
        let run = out.get_mut(k..k.checked_add(n)?)?;
        match header & 3 {
            1 => run.fill(u32::from_le_bytes([byte(&mut i)?; 4])),
            2 => run.fill(word(&mut i)?),
            3 => {
                for w in run {
                    *w = word(&mut i)?;
                }
            }
            _ => continue,
        }
        k += n;
    }
    bm.copy_from_slice(&out);
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

    /// The 32-bit words of `o` when it is a words object (a Bitmap).
    fn words_arg(&self, o: Oop) -> Option<Vec<u32>> {
        let f = self.m.format(o).ok()?;
        if !(10..12).contains(&f) {
            return None;
        }
        let b = self.m.bytes(o).ok()?;
        // Format 11: the last 32 bits of the last slot are not a word (§3.2).
        let n = (b.len() / 4).checked_sub(usize::from(f & 1))?;
        Some(
            b.chunks_exact(4)
                .take(n)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    }

    /// Whether `o` is a heap object that may be changed.
    fn mutable(&self, o: Oop) -> R<bool> {
        Ok(!o.is_immediate(self.word) && !self.m.header(o)?.is_immutable())
    }

    /// `compress: bm toByteArray: ba` (2 arguments) and `decompress: bm
    /// fromByteArray: ba at: index` (3).
    fn bitmap_coding(&mut self, compress: bool) -> R<Prim> {
        if compress {
            let (bm, ba) = (self.stack_value(1)?, self.stack_value(0)?);
            let Some(words) = self.words_arg(bm) else {
                return FAIL;
            };
            let Some(dest) = self.byte_arg(ba).map(<[u8]>::len) else {
                return FAIL;
            };
            if !self.mutable(ba)? || dest < compressed_bound(words.len()) {
                return FAIL;
            }
            let Some(code) = compress_bitmap(&words).filter(|c| c.len() <= dest) else {
                return FAIL;
            };
            self.m.bytes_mut(ba)?[..code.len()].copy_from_slice(&code);
            let v = self.positive_int(code.len() as u64)?;
            self.pop_n_push(3, v)?;
            return Ok(Prim::Done);
        }
        let (bm, ba, index) = (
            self.stack_value(2)?,
            self.stack_value(1)?,
            self.stack_value(0)?,
        );
        let (Some(mut words), Some(code), Some(index)) = (
            self.words_arg(bm),
            self.byte_arg(ba).map(<[u8]>::to_vec),
            self.m.small_int(index),
        ) else {
            return FAIL;
        };
        if !self.mutable(bm)? || decompress_bitmap(&code, index, &mut words).is_none() {
            return FAIL;
        }
        for (c, w) in self.m.bytes_mut(bm)?.chunks_exact_mut(4).zip(words) {
            c.copy_from_slice(&w.to_le_bytes());
        }
        self.pop_n(3)?;
        Ok(Prim::Done)
    }

    /// A named primitive of MiscPrimitivePlugin; those not here fail.
    pub(crate) fn misc_primitive(&mut self, name: &str, argc: u32) -> R<Prim> {
        let n = u64::from(argc);
        let want = match name {
            "primitiveStringHash" | "primitiveCompressToByteArray" => 2,
            "primitiveCompareString"
            | "primitiveFindFirstInString"
            | "primitiveIndexOfAsciiInString"
            | "primitiveDecompressFromByteArray" => 3,
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
            "primitiveCompressToByteArray" => return self.bitmap_coding(true),
            "primitiveDecompressFromByteArray" => return self.bitmap_coding(false),
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
    use crate::test_vm::with_vm;

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
    fn bitmap_coding_has_cogs_byte_format() {
        // Size 5; a run of 3 words of one byte; one literal word, then the
        // last word as a literal run of 1 (the end).
        let bm = [
            0x0707_0707,
            0x0707_0707,
            0x0707_0707,
            0x0102_0304,
            0x0A0B_0C0D,
        ];
        let code = compress_bitmap(&bm).unwrap();
        assert_eq!(
            code,
            [5, 3 * 4 + 1, 7, 2 * 4 + 3, 1, 2, 3, 4, 10, 11, 12, 13],
            "{code:?}"
        );
        // A run of equal words whose bytes differ; sizes of two and five bytes.
        let code = compress_bitmap(&[0x0102_0304; 300]).unwrap();
        assert_eq!(code, [225, 44, 0xE4, 0xB2, 1, 2, 3, 4]);
        let code = compress_bitmap(&[9; 8000]).unwrap();
        assert_eq!(code[..5], [255, 0, 0, 0x1F, 0x40]);
        let mut out = [0u32; 5];
        assert_eq!(
            decompress_bitmap(
                &[3 * 4 + 1, 7, 2 * 4 + 3, 1, 2, 3, 4, 10, 11, 12, 13],
                1,
                &mut out
            ),
            Some(())
        );
        assert_eq!(out, bm);
    }

    #[test]
    fn bitmap_decoding_fails_whole_on_bad_input() {
        let mut out = [1u32; 2];
        // A run longer than the bitmap, a run cut short, an index below 1.
        assert_eq!(decompress_bitmap(&[3 * 4 + 1, 0], 1, &mut out), None);
        assert_eq!(decompress_bitmap(&[4 + 2, 1, 2], 1, &mut out), None);
        assert_eq!(decompress_bitmap(&[4 + 1, 0, 4 + 3, 9], 1, &mut out), None);
        assert_eq!(decompress_bitmap(&[4 + 1, 0], 0, &mut out), None);
        assert_eq!(out, [1, 1], "nothing stored");
        // Code 0 stores nothing and moves nothing, as Cog's.
        assert_eq!(decompress_bitmap(&[2 * 4, 4 + 1, 5], 1, &mut out), Some(()));
        assert_eq!(out, [0x0505_0505, 1]);
    }

    proptest::proptest! {
        #[test]
        fn bitmap_coding_round_trips_within_cogs_bound(
            runs in proptest::collection::vec((0u32..4, 1usize..40, proptest::prelude::any::<u32>()), 0..30)
        ) {
            // Runs of repeated, byte-filled and random words.
            let mut bm = Vec::new();
            for (kind, n, w) in runs {
                match kind {
                    0 => bm.extend(std::iter::repeat_n(w, n)),
                    1 => bm.extend(std::iter::repeat_n(u32::from_le_bytes([w.to_le_bytes()[0]; 4]), n)),
                    _ => bm.extend((0..n).map(|i| w.wrapping_mul(2_654_435_761).rotate_left(u32::try_from(i).unwrap()))),
                }
            }
            let code = compress_bitmap(&bm).unwrap();
            proptest::prop_assert!(code.len() <= compressed_bound(bm.len()));
            // The size first, then the runs from the index just past it.
            let skip = if bm.len() <= 223 { 1 } else if bm.len() <= 7935 { 2 } else { 5 };
            let mut out = vec![0u32; bm.len()];
            proptest::prop_assert_eq!(decompress_bitmap(&code, skip + 1, &mut out), Some(()));
            proptest::prop_assert_eq!(out, bm);
        }
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
            // A Bitmap coded into a ByteArray and decoded into another Bitmap.
            let words = [0x0707_0707u32, 0x0707_0707, 0x0102_0304];
            let ci = vm.ci_string;
            let bm = vm.m.allocate_words(ci, 10, 3).unwrap();
            for (c, w) in vm.m.bytes_mut(bm).unwrap().chunks_exact_mut(4).zip(words) {
                c.copy_from_slice(&w.to_le_bytes());
            }
            let ba = vm.new_string(&[0; 32]).unwrap();
            for o in [bm, bm, ba] {
                vm.push(o).unwrap();
            }
            let r = vm.misc_primitive("primitiveCompressToByteArray", 2);
            assert!(matches!(r, Ok(Prim::Done)));
            let n = vm.m.small_int(vm.stack_value(0).unwrap()).unwrap();
            vm.pop_n(1).unwrap();
            assert_eq!(
                &vm.m.bytes(ba).unwrap()[..usize::try_from(n).unwrap()],
                [3, 9, 7, 7, 1, 2, 3, 4]
            );
            let copy = vm.m.allocate_words(ci, 10, 3).unwrap();
            let two = vm.int(2);
            for o in [copy, copy, ba, two] {
                vm.push(o).unwrap();
            }
            let r = vm.misc_primitive("primitiveDecompressFromByteArray", 3);
            assert!(matches!(r, Ok(Prim::Done)));
            assert_eq!(vm.stack_value(0).unwrap(), copy, "answers the receiver");
            vm.pop_n(1).unwrap();
            assert_eq!(vm.m.bytes(copy).unwrap(), vm.m.bytes(bm).unwrap());
            // A destination below Cog's bound fails.
            let short = vm.new_string(&[0; 8]).unwrap();
            for o in [bm, bm, short] {
                vm.push(o).unwrap();
            }
            let r = vm.misc_primitive("primitiveCompressToByteArray", 2);
            assert!(matches!(r, Ok(Prim::Fail(_))));
            vm.pop_n(3).unwrap();
            // The wrong argument count fails.
            vm.push(class).unwrap();
            vm.push(a).unwrap();
            let r = vm.misc_primitive("primitiveFindSubstring", 1);
            assert!(matches!(r, Ok(Prim::Fail(_))));
        });
    }
}
