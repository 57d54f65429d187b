//! Swizzling a coalesced heap (§2.3–2.4): rewriting every pointer by the
//! delta of the segment it pointed into.
//!
//! The walk runs while the file is being read: each chunk's objects are
//! rewritten while they are still in cache, so relocation costs little more
//! than the read itself.

use crate::conv::usize_of;
use spur_format::raw::*;
use spur_format::read::walk::{step, Obj};
use spur_format::{FormatError, Layout, NewAddr, OldAddr, WordSize};

/// The per-segment deltas, looked up by old address as the VMs do: a pointer
/// belongs to the highest segment whose old start it reaches, else segment 0.
#[derive(Debug, Clone)]
pub struct Relocation {
    old_starts: Vec<u64>,
    deltas: Vec<u64>,
    word: WordSize,
    /// Perm space never moves: pointers into it are left alone (§2.4).
    perm: Option<(u64, u64)>,
}

impl Relocation {
    /// From `(old_start, new_start)` per segment, in address order.
    pub fn new(word: WordSize, segments: impl IntoIterator<Item = (OldAddr, NewAddr)>) -> Self {
        let (old_starts, deltas): (Vec<u64>, Vec<u64>) = segments
            .into_iter()
            .map(|(old, new)| (old.get(), new.get().wrapping_sub(old.get())))
            .unzip();
        debug_assert!(old_starts.is_sorted(), "segments in address order");
        Relocation {
            old_starts,
            deltas,
            word,
            perm: None,
        }
    }

    /// Leaves pointers into `start..end` (perm space) unchanged.
    pub fn with_perm_space(mut self, start: u64, end: u64) -> Self {
        self.perm = Some((start, end));
        self
    }

    /// Where the old address `old` lies now: the relocation's one crossing
    /// from the file's address space into this process's.
    #[inline]
    pub fn map(&self, old: OldAddr) -> NewAddr {
        NewAddr::from_heap_word(self.apply(old.get()))
    }

    /// Where the pointer `p` (an old address) points now, as a word.
    #[inline(always)]
    fn apply(&self, p: u64) -> u64 {
        if let Some((s, e)) = self.perm {
            if p >= s && p < e {
                return p;
            }
        }
        // The segments are in ascending order: a binary search keeps a heap
        // of many segments linear to relocate.
        let k = if self.old_starts.len() == 1 {
            0
        } else {
            self.old_starts
                .partition_point(|&s| s <= p)
                .saturating_sub(1)
        };
        self.narrow(p.wrapping_add(self.deltas[k]))
    }

    /// Rewrites the objects of one segment from `*cursor`, as far as the bytes
    /// read so far (`frontier`) allow; `limit` is where the segment's bridge
    /// starts. Returns the number of objects rewritten.
    pub fn advance<L: Layout>(
        &self,
        bytes: &mut [u8],
        cursor: &mut usize,
        frontier: usize,
        limit: usize,
        segment: usize,
        seg_start: (usize, u64),
    ) -> Result<u64, FormatError> {
        let mut n = 0;
        let done = frontier >= limit;
        while *cursor < limit {
            if !done && *cursor + 16 > frontier {
                break;
            }
            let (obj, next) = step::<L>(bytes, *cursor, limit).map_err(|(offset, what)| {
                FormatError::BadObject {
                    segment,
                    offset: (offset - seg_start.0) as u64,
                    addr: seg_start.1 + (offset - seg_start.0) as u64,
                    what,
                }
            })?;
            if next > frontier {
                break;
            }
            self.object::<L>(bytes, &obj, next);
            *cursor = next;
            n += 1;
        }
        Ok(n)
    }

    /// Rewrites the pointer fields of one object (§2.4).
    #[inline(always)]
    fn object<L: Layout>(&self, bytes: &mut [u8], obj: &Obj, end: usize) {
        let h = obj.header;
        let ci = h.class_index();
        let n = usize_of(obj.num_slots);
        if ci >= CLASS_FORWARDER {
            let fmt = h.format();
            let count = if fmt <= FMT_LAST_POINTER {
                n
            } else if fmt >= FMT_COMPILED_METHOD && n > 0 {
                // Slot 0 is the method header, a SmallInteger; then the literals.
                match L::WORD.small_integer(L::slot(bytes, obj.offset, 0)) {
                    Some(hdr) => {
                        (usize_of((hdr & METHOD_NUM_LITERALS_MASK).cast_unsigned()) + 1).min(n)
                    }
                    None => 0,
                }
            } else {
                0
            };
            let body = &mut bytes[obj.offset + 8..obj.offset + 8 + count * L::W];
            if self.old_starts.len() == 1 && self.perm.is_none() {
                rewrite_by::<L>(body, self.deltas[0]);
            } else {
                rewrite::<L>(body, |v| self.apply(v));
            }
        } else if ci == CLASS_FREE_CHUNK {
            if n > 0 {
                self.nonzero_field::<L>(bytes, obj.offset, usize_of(FREE_CHUNK_NEXT));
            }
            let chunk_bytes = (end - obj.start()) as u64;
            if chunk_bytes >= L::WORD.num_free_lists() * 8 && n > usize_of(FREE_CHUNK_LARGER) {
                for i in FREE_CHUNK_PARENT..=FREE_CHUNK_LARGER {
                    self.nonzero_field::<L>(bytes, obj.offset, usize_of(i));
                }
            }
        }
    }

    #[inline(always)]
    fn narrow(&self, v: u64) -> u64 {
        match self.word {
            WordSize::W32 => v & 0xFFFF_FFFF,
            WordSize::W64 => v,
        }
    }

    #[inline(always)]
    fn nonzero_field<L: Layout>(&self, bytes: &mut [u8], obj: usize, i: usize) {
        let v = L::slot(bytes, obj, i);
        if v != 0 {
            L::set_slot(bytes, obj, i, self.apply(v));
        }
    }
}

/// Adds `delta` to every non-immediate word of `body` (a run of pointer
/// slots), without a branch per word: an immediate adds zero. A 32-bit slot
/// keeps the low half of the sum, as [`Relocation::narrow`] does.
#[inline(always)]
fn rewrite_by<L: Layout>(body: &mut [u8], delta: u64) {
    let tags = match L::WORD {
        WordSize::W32 => 3,
        WordSize::W64 => 7,
    };
    for chunk in body.chunks_exact_mut(L::W) {
        let v = L::get(chunk);
        // All ones for a pointer (no tag bits), zero for an immediate.
        let pointer = u64::from(v & tags == 0).wrapping_neg();
        L::put(chunk, v.wrapping_add(delta & pointer));
    }
}

/// Applies `f` to every non-immediate word of `body` (a run of pointer slots).
#[inline(always)]
fn rewrite<L: Layout>(body: &mut [u8], f: impl Fn(u64) -> u64) {
    for chunk in body.chunks_exact_mut(L::W) {
        let v = L::get(chunk);
        if !L::WORD.is_immediate(v) {
            L::put(chunk, f(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_take_the_delta_of_their_segment() {
        // Two segments: old 0x1000.. and 0x9000.., coalesced to 0x50000 and 0x50000+0x1000-16.
        let seg = |old, new| (OldAddr::new(old), NewAddr::in_reservation(new, 0));
        let r = Relocation::new(
            WordSize::W64,
            [seg(0x1000, 0x50000), seg(0x9000, 0x50000 + 0x1000 - 16)],
        );
        assert_eq!(r.apply(0x1010), 0x50010);
        assert_eq!(r.apply(0x9000), 0x50ff0);
        assert_eq!(r.apply(0x9100), 0x510f0);
        // Below every segment: segment 0's delta, as the VMs do.
        assert_eq!(r.apply(0x800), 0x4f800);
    }

    #[test]
    fn the_branch_free_rewrite_moves_pointers_only() {
        let words: [u64; 4] = [0x1000, 0x1001, 0x2008, 0x0];
        let mut body: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        rewrite_by::<spur_format::L64>(&mut body, 0x10);
        let got: Vec<u64> = body
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(got, [0x1010, 0x1001, 0x2018, 0x10]);
        let mut body: Vec<u8> = [0xFFFF_FFF0u32, 0x3, 0x2]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        rewrite_by::<spur_format::L32>(&mut body, 0x20);
        let got: Vec<u32> = body
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(got, [0x10, 0x3, 0x2]);
    }

    #[test]
    fn thirty_two_bit_pointers_stay_thirty_two_bit() {
        let r = Relocation::new(
            WordSize::W32,
            [(
                OldAddr::new(0x3204000),
                NewAddr::in_reservation(0x1000_0000, 0),
            )],
        );
        assert_eq!(r.map(OldAddr::new(0x3204010)).get(), 0x1000_0010);
    }
}
