//! Enumerating the objects of a segment (§3.6).

use std::marker::PhantomData;

use crate::error::FormatError;
use crate::layout::{to_usize, u64_at, Layout};
use crate::objheader::{is_overflow_word, ObjHeader};
use crate::raw::BRIDGE_BYTES;

/// An object found by a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Obj {
    /// Offset of the base header in the segment.
    pub offset: usize,
    /// The object's header.
    pub header: ObjHeader,
    /// Slot count, from the overflow word when the header says 255.
    pub num_slots: u64,
}

impl Obj {
    /// Does the object carry an overflow word before its header?
    pub const fn has_overflow(&self) -> bool {
        self.header.raw_num_slots() == 255
    }
    /// Offset of the object's first byte (its overflow word, if any).
    pub const fn start(&self) -> usize {
        if self.has_overflow() {
            self.offset - 8
        } else {
            self.offset
        }
    }
}

/// Walks the objects of one segment, from its first byte to its bridge.
///
/// The segment is given whole, bridge included; the walk stops where the
/// bridge begins and checks that the last object ends exactly there. An
/// object whose size runs past the bridge ends the walk with an error, read
/// with [`Walk::finish`].
#[derive(Debug)]
pub struct Walk<'a, L: Layout> {
    bytes: &'a [u8],
    pos: usize,
    limit: usize,
    base: u64,
    segment: usize,
    error: Option<FormatError>,
    _layout: PhantomData<L>,
}

impl<'a, L: Layout> Walk<'a, L> {
    /// Walks `bytes`, a segment that lives at address `base` (used in errors).
    pub fn new(bytes: &'a [u8], base: u64, segment: usize) -> Self {
        let limit = bytes.len().saturating_sub(to_usize(BRIDGE_BYTES));
        Walk {
            bytes,
            pos: 0,
            limit,
            base,
            segment,
            error: None,
            _layout: PhantomData,
        }
    }

    /// Walks a run of objects with no bridge after it (Pharo's perm space):
    /// the last object must end exactly at the end of `bytes`.
    pub fn without_bridge(bytes: &'a [u8], base: u64, segment: usize) -> Self {
        Walk {
            limit: bytes.len(),
            ..Walk::new(bytes, base, segment)
        }
    }

    /// Where the walk has reached (segment offset).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Ends the walk: `Ok` when it reached the bridge exactly.
    pub fn finish(self) -> Result<(), FormatError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    #[cold]
    fn fail(&mut self, offset: usize, what: String) -> Option<Obj> {
        self.error = Some(FormatError::BadObject {
            segment: self.segment,
            offset: offset as u64,
            addr: self.base.wrapping_add(offset as u64),
            what,
        });
        self.pos = self.limit;
        None
    }
}

/// Steps over one object: reads the entity starting at `pos` (its overflow
/// word or its header) and returns it with the offset just after it, or a
/// description of what is wrong. Everything read lies in `bytes[..limit]`.
#[inline(always)]
pub fn step<L: Layout>(
    bytes: &[u8],
    pos: usize,
    limit: usize,
) -> Result<(Obj, usize), (usize, String)> {
    let a = pos;
    if a + 8 > limit {
        return Err((a, "starts too close to the bridge to hold a header".into()));
    }
    let w = u64_at(bytes, a);
    let (offset, header, num_slots) = if is_overflow_word(w) {
        if a + 16 > limit {
            return Err((
                a,
                "is an overflow word with no header before the bridge".into(),
            ));
        }
        let h = ObjHeader(u64_at(bytes, a + 8));
        if h.raw_num_slots() != 255 {
            return Err((
                a + 8,
                format!(
                    "follows an overflow word but its numSlots byte is {}, not 255",
                    h.raw_num_slots()
                ),
            ));
        }
        (a + 8, h, L::WORD.overflow_slots(w))
    } else {
        let h = ObjHeader(w);
        (a, h, h.raw_num_slots())
    };
    match L::WORD
        .body_bytes(num_slots)
        .and_then(|b| b.checked_add(offset as u64))
    {
        Some(n) if n <= limit as u64 => Ok((
            Obj {
                offset,
                header,
                num_slots,
            },
            to_usize(n),
        )),
        _ => Err((
            offset,
            format!("has {num_slots} slots and runs past the segment's bridge at offset {limit}"),
        )),
    }
}

/// How many headers in a row must look like objects for a guessed object
/// start (see [`plausible_run`]).
pub const GUESS_STEPS: usize = 16;

/// Does the walk from `pos` meet [`GUESS_STEPS`] headers in a row that look
/// like objects of a heap whose class table has `classes` entries (no unused
/// format 6 or 8, no class index past the table except on a free chunk, no
/// word of zeros: a stretch of zeros, as in an empty array, would otherwise
/// read as a row of empty free chunks)?
/// Returns where those steps ended, which is `limit` or past it when the
/// walk reached `limit` first; `None` when a header does not fit.
///
/// A walk split into parts starts each later part at such a guess; the
/// guess is a hint only, and the walk of the part before must check it.
pub fn plausible_run<L: Layout>(
    bytes: &[u8],
    mut pos: usize,
    limit: usize,
    classes: usize,
) -> Option<usize> {
    for _ in 0..GUESS_STEPS {
        if pos >= limit {
            return Some(pos);
        }
        if u64_at(bytes, pos) == 0 {
            return None;
        }
        let (obj, next) = step::<L>(bytes, pos, limit).ok()?;
        let h = obj.header;
        let fmt = h.format();
        let ci = to_usize(u64::from(h.class_index()));
        if fmt == 6 || fmt == 8 || (ci >= classes && !h.is_free_chunk()) {
            return None;
        }
        pos = next;
    }
    Some(pos)
}

impl<L: Layout> Iterator for Walk<'_, L> {
    type Item = Obj;

    #[inline]
    fn next(&mut self) -> Option<Obj> {
        if self.pos >= self.limit {
            return None;
        }
        match step::<L>(self.bytes, self.pos, self.limit) {
            Ok((obj, next)) => {
                self.pos = next;
                Some(obj)
            }
            Err((offset, what)) => self.fail(offset, what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{set_u64_at, L32, L64};
    use crate::objheader::overflow_word;

    #[test]
    fn walks_small_and_overflow_objects_to_the_bridge() {
        // 64-bit: one 0-slot object (16 bytes), one 300-slot object (8 + 8 + 2400).
        let mut seg = vec![0u8; 16 + 8 + 8 + 2400 + 16];
        set_u64_at(&mut seg, 0, ObjHeader::new(40, 0, 0, 0).0);
        set_u64_at(&mut seg, 16, overflow_word(300));
        set_u64_at(&mut seg, 24, ObjHeader::new(51, 2, 255, 0).0);
        let objs: Vec<_> = Walk::<L64>::new(&seg, 0x1000, 0).collect();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1].offset, 24);
        assert_eq!(objs[1].num_slots, 300);
        assert_eq!(objs[1].start(), 16);
    }

    #[test]
    fn a_plausible_run_is_sixteen_headers_of_this_heap() {
        // 20 one-slot objects of class 40 (16 bytes each), then zeros.
        let mut seg = vec![0u8; 20 * 16 + 512];
        for k in 0..20 {
            set_u64_at(&mut seg, k * 16, ObjHeader::new(40, 1, 1, 7).0);
        }
        let limit = seg.len();
        assert_eq!(plausible_run::<L64>(&seg, 0, limit, 64), Some(256));
        // Inside the run, as long as 16 headers follow.
        assert_eq!(plausible_run::<L64>(&seg, 64, limit, 64), Some(320));
        // Class 40 past a table of 32 entries.
        assert_eq!(plausible_run::<L64>(&seg, 0, limit, 32), None);
        // Into the zeros, and on a slot (a word of zeros) of an object.
        assert_eq!(plausible_run::<L64>(&seg, 16 * 8, limit, 64), None);
        assert_eq!(plausible_run::<L64>(&seg, 8, limit, 64), None);
        // The limit reached first.
        assert_eq!(plausible_run::<L64>(&seg, 0, 48, 64), Some(48));
        // An unused format.
        set_u64_at(&mut seg, 32, ObjHeader::new(40, 6, 1, 7).0);
        assert_eq!(plausible_run::<L64>(&seg, 0, limit, 64), None);
    }

    #[test]
    fn a_32_bit_object_rounds_to_even_slots() {
        let mut seg = vec![0u8; 24 + 16 + 16];
        set_u64_at(&mut seg, 0, ObjHeader::new(40, 1, 3, 0).0);
        set_u64_at(&mut seg, 24, ObjHeader::new(40, 0, 0, 0).0);
        let mut w = Walk::<L32>::new(&seg, 0, 0);
        assert_eq!(w.by_ref().count(), 2);
        w.finish().unwrap();
    }

    #[test]
    fn an_object_running_over_the_bridge_is_an_error() {
        let mut seg = vec![0u8; 48];
        set_u64_at(&mut seg, 0, ObjHeader::new(40, 1, 4, 0).0);
        let mut w = Walk::<L64>::new(&seg, 0x2000, 3);
        assert_eq!(w.by_ref().count(), 0);
        let e = w.finish().unwrap_err();
        assert!(
            matches!(
                e,
                FormatError::BadObject {
                    segment: 3,
                    addr: 0x2000,
                    ..
                }
            ),
            "{e}"
        );
    }
}
