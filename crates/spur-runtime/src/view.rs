//! Fast read access to the objects of a loaded heap, by address.
//!
//! [`LoadedHeap`]'s own accessors look the segment up on every call; the
//! runtime reads thousands of words while wiring (the class table, class
//! names), so it takes the segments' byte slices once and reads through them.

use spur_format::raw::{FMT_BYTES, FMT_COMPILED_METHOD, OVERFLOW_SLOTS};
use spur_format::{NewAddr, ObjHeader, WordSize};
use spur_loader::LoadedHeap;

/// An object pointer or an immediate, in this process's address space.
pub type Oop = u64;

#[derive(Debug, Clone, Copy)]
struct Seg<'h> {
    start: u64,
    /// Where the segment's bridge begins: objects lie below.
    end: u64,
    bytes: &'h [u8],
}

/// Read-only view of a heap's objects.
#[derive(Debug, Clone)]
pub struct HeapView<'h> {
    word: WordSize,
    segs: Vec<Seg<'h>>,
}

impl<'h> HeapView<'h> {
    /// A view of every segment of `heap`.
    pub fn new(heap: &'h LoadedHeap) -> Self {
        let segs = heap
            .segments()
            .iter()
            .enumerate()
            .map(|(i, s)| Seg {
                start: s.new_start.0,
                end: s.objects_end().0,
                bytes: heap.segment_bytes(i),
            })
            .collect();
        HeapView {
            word: heap.word(),
            segs,
        }
    }

    /// The heap's word size.
    pub fn word(&self) -> WordSize {
        self.word
    }

    #[inline]
    fn seg(&self, a: u64) -> Option<&Seg<'h>> {
        if self.segs.len() == 1 {
            let s = &self.segs[0];
            return (a >= s.start && a < s.end).then_some(s);
        }
        let i = self.segs.partition_point(|s| s.start <= a).checked_sub(1)?;
        let s = &self.segs[i];
        (a < s.end).then_some(s)
    }

    /// The little-endian u64 at `a`, if `a..a+8` lies among a segment's objects.
    #[inline]
    pub fn u64_at(&self, a: u64) -> Option<u64> {
        let s = self.seg(a)?;
        let off = (a - s.start) as usize;
        if a + 8 > s.end {
            return None;
        }
        Some(u64::from_le_bytes(
            s.bytes[off..off + 8].try_into().unwrap(),
        ))
    }

    /// Is `oop` an object pointer (not an immediate) that lands among the objects?
    #[inline]
    pub fn is_object(&self, oop: Oop) -> bool {
        !self.word.is_immediate(oop) && oop & 7 == 0 && self.seg(oop).is_some()
    }

    /// The header of the object at `obj`.
    #[inline]
    pub fn header(&self, obj: Oop) -> Option<ObjHeader> {
        if !self.is_object(obj) {
            return None;
        }
        self.u64_at(obj).map(ObjHeader)
    }

    /// Slot count of the object at `obj`.
    #[inline]
    pub fn num_slots(&self, obj: Oop) -> Option<u64> {
        let h = self.header(obj)?;
        if h.raw_num_slots() == OVERFLOW_SLOTS {
            Some(self.word.overflow_slots(self.u64_at(obj.checked_sub(8)?)?))
        } else {
            Some(h.raw_num_slots())
        }
    }

    /// Slot `i` of the object at `obj`, if it has that many slots.
    #[inline]
    pub fn slot(&self, obj: Oop, i: u64) -> Option<Oop> {
        if i >= self.num_slots(obj)? {
            return None;
        }
        self.raw_slot(obj, i)
    }

    /// Slot `i` without checking the slot count (still bounds checked
    /// against the segment).
    #[inline]
    fn raw_slot(&self, obj: Oop, i: u64) -> Option<Oop> {
        let w = self.word.bytes();
        let at = obj.checked_add(8 + i.checked_mul(w)?)?;
        let s = self.seg(at)?;
        let off = (at - s.start) as usize;
        let b = s.bytes.get(off..off + w as usize)?;
        Some(match self.word {
            WordSize::W64 => u64::from_le_bytes(b.try_into().unwrap()),
            WordSize::W32 => u32::from_le_bytes(b.try_into().unwrap()) as u64,
        })
    }

    /// The slots of the object at `obj` as raw bytes (`num_slots × W`).
    pub fn body(&self, obj: Oop) -> Option<&'h [u8]> {
        let n = self.num_slots(obj)?;
        let s = self.seg(obj)?;
        let off = (obj + 8 - s.start) as usize;
        let end = off.checked_add((n * self.word.bytes()) as usize)?;
        if s.start + end as u64 > s.end {
            return None;
        }
        Some(&s.bytes[off..end])
    }

    /// The slots of the object at `obj`, read one by one from its body.
    pub fn slots(&self, obj: Oop) -> impl Iterator<Item = Oop> + 'h {
        let w = self.word;
        self.body(obj)
            .unwrap_or(&[])
            .chunks_exact(w.bytes() as usize)
            .map(move |c| match w {
                WordSize::W64 => u64::from_le_bytes(c.try_into().unwrap()),
                WordSize::W32 => u32::from_le_bytes(c.try_into().unwrap()) as u64,
            })
    }

    /// The bytes of a byte-format object (16..23) or a compiled method
    /// (24..31, literals included), without its unused tail bytes.
    pub fn bytes(&self, obj: Oop) -> Option<&'h [u8]> {
        let h = self.header(obj)?;
        let fmt = h.format();
        if fmt < FMT_BYTES {
            return None;
        }
        let n = self.num_slots(obj)?;
        let len = (n * self.word.bytes()).checked_sub((fmt & 7) as u64)?;
        let s = self.seg(obj)?;
        let off = (obj + 8 - s.start) as usize;
        let end = off.checked_add(len as usize)?;
        if (s.start + end as u64) > s.end {
            return None;
        }
        Some(&s.bytes[off..end])
    }

    /// Is the object a byte object (format 16..23), such as a String or Symbol?
    pub fn is_bytes(&self, obj: Oop) -> bool {
        self.header(obj)
            .is_some_and(|h| (FMT_BYTES..FMT_COMPILED_METHOD).contains(&h.format()))
    }

    /// Is the object compiled code (format 24..31: CompiledMethod, CompiledBlock)?
    pub fn is_compiled_code(&self, obj: Oop) -> bool {
        self.header(obj).is_some_and(|h| h.is_compiled_method())
    }

    /// The text of a byte object (a String or Symbol), read as Latin-1.
    pub fn string(&self, obj: Oop) -> Option<String> {
        if !self.is_bytes(obj) {
            return None;
        }
        Some(self.bytes(obj)?.iter().map(|&b| b as char).collect())
    }

    /// The address of the object, when `oop` is one.
    pub fn addr(&self, oop: Oop) -> Option<NewAddr> {
        self.is_object(oop).then_some(NewAddr(oop))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spur_loader::{LoadOptions, PlacementRequest};
    use spur_synth::SynthSpec;

    #[test]
    fn reads_the_special_objects_array_like_the_heap_does() {
        let (bytes, _) = spur_synth::image_bytes(&SynthSpec {
            segments: 2,
            gap_bytes: 64 << 10,
            ..SynthSpec::new(WordSize::W32, 256 << 10)
        })
        .unwrap();
        let heap = spur_loader::load(
            bytes.as_slice(),
            &LoadOptions {
                placement: PlacementRequest::Relocate,
                ..Default::default()
            },
        )
        .unwrap();
        let v = HeapView::new(&heap);
        let so = heap.special_objects();
        assert_eq!(v.num_slots(so.0), heap.num_slots(so));
        for i in 0..60 {
            assert_eq!(v.slot(so.0, i), heap.slot(so, i));
        }
        assert_eq!(v.slot(so.0, 60), None);
        assert!(!v.is_object(0x11));
        assert_eq!(v.header(heap.nil().0 + 4), None);
        let dnu = v.slot(so.0, 20).unwrap();
        assert_eq!(v.string(dnu).as_deref(), Some("doesNotUnderstand:"));
    }
}
