//! Eden allocation: a bump pointer, Spur headers (§3.1), overflow words for
//! 255 slots and more, the unused-units bits of the byte, 16- and 32-bit
//! formats (§3.2), and the sizes of §3.4.

use spur_format::objheader::overflow_word;
use spur_format::raw::{
    CLASS_FORWARDER, CLASS_FREE_CHUNK, CLASS_INDEX_MASK, CLASS_SEGMENT_BRIDGE, FMT_16BIT,
    FMT_32BIT, FMT_64BIT, FMT_BYTES, FMT_FORWARDED, FMT_LAST_POINTER, FMT_ZERO_SIZED,
    OVERFLOW_SLOTS,
};
use spur_format::ObjHeader;

use super::{ix, AllocStats, MemoryError, ObjectMemory, Oop};

/// Largest slot count an overflow word holds (56 bits).
const MAX_SLOTS: u64 = (1 << 56) - 1;

impl ObjectMemory {
    /// Allocates an object of `num_slots` slots of class `class_index` and
    /// format `format` in eden, or in old space when eden cannot hold it
    /// (then [`scavenge_wanted`](Self::scavenge_wanted) is raised; an object
    /// is never moved by allocation). Pointer formats (0..=5) get nil in every
    /// slot; other formats a zeroed body (their unused-units bits are the
    /// caller's: see [`allocate_bytes`](Self::allocate_bytes) and
    /// [`allocate_words`](Self::allocate_words)). The identity hash is 0
    /// until [`identity_hash`](Self::identity_hash) is asked.
    pub fn allocate_slots(
        &mut self,
        class_index: u32,
        format: u8,
        num_slots: u64,
    ) -> Result<Oop, MemoryError> {
        let bad = |why| MemoryError::BadAllocation {
            class_index,
            format,
            why,
        };
        match format {
            FMT_ZERO_SIZED if num_slots > 0 => return Err(bad("format 0 objects have no slots")),
            6 | FMT_FORWARDED | 8 => return Err(bad("the format is reserved or a forwarder's")),
            f if f > 31 => return Err(bad("formats are 5 bits")),
            _ => {}
        }
        let fill = if format <= FMT_LAST_POINTER {
            self.nil.bits()
        } else {
            0
        };
        self.allocate_raw(class_index, format, num_slots, fill)
    }

    /// Allocates a byte object (format 16 + unused bytes, §3.2) of exactly
    /// `byte_len` bytes, zeroed.
    pub fn allocate_bytes(&mut self, class_index: u32, byte_len: u64) -> Result<Oop, MemoryError> {
        let w = self.word.bytes();
        let slots = byte_len.div_ceil(w);
        let unused = slots * w - byte_len;
        // Fewer than a word's bytes are unused: 0..=7 fits the format's low bits.
        let unused = u8::try_from(unused).unwrap_or(0);
        self.allocate_raw(class_index, FMT_BYTES + unused, slots, 0)
    }

    /// Allocates a zeroed object of `units` 64-, 32- or 16-bit units: format
    /// 9, 10 (or 11) or 12 (to 15) names the unit size; the unused-units
    /// bits are set from `units` (§3.2).
    pub fn allocate_words(
        &mut self,
        class_index: u32,
        format: u8,
        units: u64,
    ) -> Result<Oop, MemoryError> {
        let (base, unit) = match format {
            FMT_64BIT => (FMT_64BIT, 8),
            10 | 11 => (FMT_32BIT, 4),
            12..=15 => (FMT_16BIT, 2),
            _ => {
                return Err(MemoryError::BadAllocation {
                    class_index,
                    format,
                    why: "word objects have format 9, 10 or 12",
                })
            }
        };
        let too_large = MemoryError::BadAllocation {
            class_index,
            format,
            why: "more units than an object can hold",
        };
        let bytes = units.checked_mul(unit).ok_or(too_large)?;
        let w = self.word.bytes();
        let slots = bytes.div_ceil(w);
        let unused_units = (slots * w - bytes) / unit;
        let unused_units = u8::try_from(unused_units).unwrap_or(0);
        self.allocate_raw(class_index, base + unused_units, slots, 0)
    }

    /// Bytes of eden in use.
    pub fn eden_used(&self) -> u64 {
        self.eden_top - self.eden_start
    }
    /// Bytes of eden still free.
    pub fn eden_free(&self) -> u64 {
        self.eden_end - self.eden_top
    }
    /// Objects and bytes allocated so far.
    pub fn allocated(&self) -> AllocStats {
        self.allocated
    }

    fn allocate_raw(
        &mut self,
        class_index: u32,
        format: u8,
        num_slots: u64,
        fill: u64,
    ) -> Result<Oop, MemoryError> {
        let bad = |why| MemoryError::BadAllocation {
            class_index,
            format,
            why,
        };
        if u64::from(class_index) > CLASS_INDEX_MASK {
            return Err(bad("class indices are 22 bits"));
        }
        if matches!(
            class_index,
            CLASS_FREE_CHUNK | CLASS_SEGMENT_BRIDGE | CLASS_FORWARDER
        ) {
            return Err(bad(
                "the class index is a free chunk's, a bridge's or a forwarder's",
            ));
        }
        if num_slots > MAX_SLOTS {
            return Err(bad("more slots than an overflow word holds"));
        }
        let word = self.word;
        let overflow = num_slots >= OVERFLOW_SLOTS;
        let body = word
            .body_bytes(num_slots)
            .ok_or(bad("more slots than an overflow word holds"))?;
        let needed = body
            .checked_add(if overflow { 8 } else { 0 })
            .ok_or(bad("more slots than an overflow word holds"))?;
        let free = self.eden_free();
        let in_eden = needed <= free;
        if !in_eden && self.new_space.is_none() {
            return Err(MemoryError::EdenFull { needed, free });
        }
        // What eden cannot hold goes to old space, as Cog allocates large
        // objects there; the next safe point scavenges.
        let start = if in_eden {
            self.eden_top
        } else {
            let a = self.old_bytes_once(needed)?;
            self.eden_overflowed = true;
            self.gc.old_direct_objects += 1;
            self.gc.old_direct_bytes += needed;
            a
        };
        let obj = start + if overflow { 8 } else { 0 };
        let (b, off) = self
            .locate_mut(start)
            .ok_or_else(|| MemoryError::NotAnObject { addr: start })?;
        let b = b
            .get_mut(off..off + ix(needed))
            .ok_or_else(|| MemoryError::NotAnObject { addr: start })?;
        let mut at = 0;
        // Below 255 slots the count is the header's byte; from 255 on the byte says 255.
        let raw = u8::try_from(num_slots).unwrap_or(u8::MAX);
        if overflow {
            b[..8].copy_from_slice(&overflow_word(num_slots).to_le_bytes());
            at = 8;
        }
        b[at..at + 8].copy_from_slice(&ObjHeader::new(class_index, format, raw, 0).0.to_le_bytes());
        let body = &mut b[at + 8..];
        body.fill(0);
        if fill != 0 {
            let w = ix(word.bytes());
            for chunk in body.chunks_exact_mut(w).take(ix(num_slots)) {
                match w {
                    8 => chunk.copy_from_slice(&fill.to_le_bytes()),
                    // A 32-bit heap's nil is below 4 GiB.
                    _ => chunk.copy_from_slice(&u32::try_from(fill).unwrap_or(0).to_le_bytes()),
                }
            }
        }
        if in_eden {
            self.eden_top = start + needed;
        }
        self.allocated.objects += 1;
        self.allocated.bytes += needed;
        Ok(Oop::from_bits(obj))
    }
}
