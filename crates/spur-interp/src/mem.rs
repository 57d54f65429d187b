//! The object memory the interpreter runs on, shaped like the runtime's
//! object-memory API (`spur_runtime::memory`, notes in docs/embedding.md):
//! the same names and meanings, so that moving to that API is a change of
//! this one file.
//!
//! Old space is the loaded heap, read through its segments' bytes and
//! written through `LoadedHeap::bytes_at_mut`; new objects are allocated
//! in an eden of this module's own, addressed at the runtime's eden range
//! (so that oops of new objects never collide with old ones). There is no
//! scavenger: when eden is full, allocation answers
//! [`MemoryError::EdenFull`] and the interpreter stops.

use std::collections::HashMap;

use spur_format::raw::{
    CLASS_TABLE_MAJOR_SHIFT, CLASS_TABLE_PAGE_SLOTS, FMT_BYTES, FMT_COMPILED_METHOD, HASH_MASK,
    HASH_SHIFT, IMMUTABLE_SHIFT, OVERFLOW_SLOTS,
};
use spur_format::{NewAddr, ObjHeader, WordSize};
use spur_runtime::Runtime;

/// An object pointer or an immediate, as a word of this process's heap.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(transparent)]
pub struct Oop(u64);

impl Oop {
    pub const fn from_bits(bits: u64) -> Oop {
        Oop(bits)
    }
    pub const fn bits(self) -> u64 {
        self.0
    }
    /// The object's address, when this is a pointer (tag bits clear).
    pub fn addr(self, word: WordSize) -> Option<NewAddr> {
        (!word.is_immediate(self.0) && self.0 & 7 == 0).then_some(NewAddr(self.0))
    }
    pub fn is_immediate(self, word: WordSize) -> bool {
        word.is_immediate(self.0)
    }
    pub const fn from_addr(a: NewAddr) -> Oop {
        Oop(a.0)
    }
}

impl std::fmt::Debug for Oop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl std::fmt::Display for Oop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Where an object lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    Old,
    Eden,
}

/// Why a memory operation could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    #[error("{addr:#x} is not an object")]
    NotAnObject { addr: u64 },
    #[error("object {obj:#x} has {num_slots} slots; slot {index} does not exist")]
    NoSuchSlot {
        obj: u64,
        index: u64,
        num_slots: u64,
    },
    #[error("object {obj:#x} is immutable")]
    Immutable { obj: u64 },
    #[error("eden full ({needed} bytes needed, {free} free), no scavenger yet")]
    EdenFull { needed: u64, free: u64 },
    #[error("object {obj:#x} of format {format} is not {what}")]
    WrongFormat {
        obj: u64,
        format: u8,
        what: &'static str,
    },
}

/// Objects and bytes allocated so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocStats {
    pub objects: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy)]
struct Seg {
    start: u64,
    /// Where the segment's objects end (its bridge begins).
    end: u64,
    index: usize,
}

/// The interpreter's object memory over a wired runtime.
#[derive(Debug)]
pub struct ObjectMemory<'r> {
    rt: &'r mut Runtime,
    word: WordSize,
    segs: Vec<Seg>,
    eden_start: u64,
    eden: Vec<u8>,
    eden_used: usize,
    nil: Oop,
    true_object: Oop,
    false_object: Oop,
    specials: Oop,
    class_pages: Vec<Oop>,
    last_hash: u32,
    allocated: AllocStats,
    /// Identity hashes of old objects whose header could not be written
    /// (none in practice: every old object is writable).
    side_hashes: HashMap<Oop, u32>,
}

impl<'r> ObjectMemory<'r> {
    /// The memory of `rt`, with an eden of the runtime's eden size.
    pub fn new(rt: &'r mut Runtime) -> Self {
        let word = rt.heap().word();
        let segs = rt
            .heap()
            .segments()
            .iter()
            .enumerate()
            .map(|(index, s)| Seg {
                start: s.new_start.0,
                end: s.objects_end().0,
                index,
            })
            .collect();
        let eden = rt.new_space().eden();
        let so = rt.special_objects();
        let nil = Oop(so.nil().0);
        let true_object = Oop(so.true_object().0);
        let false_object = Oop(so.false_object().0);
        let specials = Oop(so.addr().0);
        let hidden = rt.class_table().hidden_roots();
        let seed = rt.hash_seed().seed;
        let mut m = ObjectMemory {
            rt,
            word,
            segs,
            eden_start: eden.start,
            eden: vec![0; (eden.end - eden.start) as usize],
            eden_used: 0,
            nil,
            true_object,
            false_object,
            specials,
            class_pages: Vec::new(),
            last_hash: seed.max(1),
            allocated: AllocStats::default(),
            side_hashes: HashMap::new(),
        };
        let hidden = Oop(hidden.0);
        let n = m.num_slots(hidden).unwrap_or(0).min(4096);
        for i in 0..n {
            match m.fetch(hidden, i) {
                Ok(p) if p != nil && m.header(p).is_ok() => m.class_pages.push(p),
                _ => break,
            }
        }
        m
    }

    /// The runtime this memory runs on.
    pub fn runtime(&self) -> &Runtime {
        self.rt
    }

    #[inline]
    pub fn word(&self) -> WordSize {
        self.word
    }
    #[inline]
    pub fn nil(&self) -> Oop {
        self.nil
    }
    #[inline]
    pub fn true_object(&self) -> Oop {
        self.true_object
    }
    #[inline]
    pub fn false_object(&self) -> Oop {
        self.false_object
    }
    pub fn special_objects(&self) -> Oop {
        self.specials
    }
    /// Slot `index` of the special objects array (nil if short).
    pub fn special(&self, index: usize) -> Oop {
        self.fetch(self.specials, index as u64).unwrap_or(self.nil)
    }

    /// The bytes holding `a..a+len` and the offset of `a` in them.
    #[inline]
    fn locate(&self, a: u64, len: u64) -> Option<(&[u8], usize)> {
        if a >= self.eden_start {
            let off = (a - self.eden_start) as usize;
            if off + len as usize <= self.eden_used {
                return Some((&self.eden, off));
            }
            // Past eden: maybe a segment above it.
        }
        let s = self.seg(a)?;
        if a + len > s.end {
            return None;
        }
        Some((
            self.rt.heap().segment_bytes(s.index),
            (a - s.start) as usize,
        ))
    }

    #[inline]
    fn seg(&self, a: u64) -> Option<Seg> {
        if self.segs.len() == 1 {
            let s = self.segs[0];
            return (a >= s.start && a < s.end).then_some(s);
        }
        let i = self.segs.partition_point(|s| s.start <= a).checked_sub(1)?;
        let s = self.segs[i];
        (a < s.end).then_some(s)
    }

    #[inline]
    fn locate_mut(&mut self, a: u64, len: u64) -> Option<&mut [u8]> {
        if a >= self.eden_start {
            let off = (a - self.eden_start) as usize;
            if off + len as usize <= self.eden_used {
                return self.eden.get_mut(off..off + len as usize);
            }
        }
        let s = self.seg(a)?;
        if a + len > s.end {
            return None;
        }
        self.rt.heap_mut().bytes_at_mut(a, len)
    }

    #[inline]
    fn u64_at(&self, a: u64) -> Option<u64> {
        let (b, off) = self.locate(a, 8)?;
        Some(u64::from_le_bytes(b[off..off + 8].try_into().ok()?))
    }

    /// Where an object lives.
    pub fn space_of(&self, oop: Oop) -> Option<Space> {
        self.header(oop).ok()?;
        Some(if self.is_young(oop) {
            Space::Eden
        } else {
            Space::Old
        })
    }
    pub fn is_young(&self, oop: Oop) -> bool {
        oop.0 >= self.eden_start && ((oop.0 - self.eden_start) as usize) < self.eden_used
    }

    /// The header of the object at `obj`.
    #[inline]
    pub fn header(&self, obj: Oop) -> Result<ObjHeader, MemoryError> {
        if obj.0 & 7 != 0 {
            return Err(MemoryError::NotAnObject { addr: obj.0 });
        }
        self.u64_at(obj.0)
            .map(ObjHeader)
            .ok_or(MemoryError::NotAnObject { addr: obj.0 })
    }

    /// The class index of any oop: immediates answer their tag's (§3.3).
    #[inline]
    pub fn class_index_of(&self, oop: Oop) -> Result<u32, MemoryError> {
        match self.word {
            WordSize::W64 => match oop.0 & 7 {
                0 => Ok(self.header(oop)?.class_index()),
                t @ (1 | 2 | 4) => Ok(t as u32),
                _ => Err(MemoryError::NotAnObject { addr: oop.0 }),
            },
            WordSize::W32 => match oop.0 & 3 {
                0 => Ok(self.header(oop)?.class_index()),
                2 => Ok(2),
                _ => Ok(1),
            },
        }
    }

    pub fn format(&self, obj: Oop) -> Result<u8, MemoryError> {
        Ok(self.header(obj)?.format())
    }

    /// Slot count of `obj`, the overflow word included.
    #[inline]
    pub fn num_slots(&self, obj: Oop) -> Result<u64, MemoryError> {
        let h = self.header(obj)?;
        if h.raw_num_slots() == OVERFLOW_SLOTS {
            let w = obj
                .0
                .checked_sub(8)
                .and_then(|a| self.u64_at(a))
                .ok_or(MemoryError::NotAnObject { addr: obj.0 })?;
            Ok(self.word.overflow_slots(w))
        } else {
            Ok(h.raw_num_slots())
        }
    }

    /// Pointer slot `i` of `obj` (also the words of a CompiledMethod).
    #[inline]
    pub fn fetch(&self, obj: Oop, i: u64) -> Result<Oop, MemoryError> {
        let n = self.num_slots(obj)?;
        if i >= n {
            return Err(MemoryError::NoSuchSlot {
                obj: obj.0,
                index: i,
                num_slots: n,
            });
        }
        let w = self.word.bytes();
        let at = obj.0 + 8 + i * w;
        let (b, off) = self
            .locate(at, w)
            .ok_or(MemoryError::NotAnObject { addr: obj.0 })?;
        Ok(Oop(match self.word {
            WordSize::W64 => u64::from_le_bytes(b[off..off + 8].try_into().unwrap_or([0; 8])),
            WordSize::W32 => {
                u32::from_le_bytes(b[off..off + 4].try_into().unwrap_or([0; 4])) as u64
            }
        }))
    }

    /// The byte length of a byte object or compiled method; the whole body
    /// for other formats.
    fn byte_len(&self, obj: Oop) -> Result<u64, MemoryError> {
        let h = self.header(obj)?;
        let n = self.num_slots(obj)? * self.word.bytes();
        let f = h.format();
        Ok(match f {
            FMT_BYTES.. => n.saturating_sub((f & 7) as u64),
            12..=15 => n.saturating_sub(2 * (f & 3) as u64),
            10 | 11 => n.saturating_sub(4 * (f & 1) as u64),
            _ => n,
        })
    }

    /// The bytes of `obj`: exact for byte, short, word and method formats,
    /// the whole body otherwise.
    pub fn bytes(&self, obj: Oop) -> Result<&[u8], MemoryError> {
        let len = self.byte_len(obj)?;
        let (b, off) = self
            .locate(obj.0 + 8, len)
            .ok_or(MemoryError::NotAnObject { addr: obj.0 })?;
        Ok(&b[off..off + len as usize])
    }

    pub fn bytes_mut(&mut self, obj: Oop) -> Result<&mut [u8], MemoryError> {
        let h = self.header(obj)?;
        if h.is_immutable() {
            return Err(MemoryError::Immutable { obj: obj.0 });
        }
        let len = self.byte_len(obj)?;
        self.locate_mut(obj.0 + 8, len)
            .ok_or(MemoryError::NotAnObject { addr: obj.0 })
    }

    /// The bytes of a byte object, as Latin-1 text.
    pub fn string(&self, obj: Oop) -> Option<String> {
        let f = self.format(obj).ok()?;
        if !(FMT_BYTES..FMT_COMPILED_METHOD).contains(&f) {
            return None;
        }
        Some(self.bytes(obj).ok()?.iter().map(|&b| b as char).collect())
    }

    /// Stores `value` into slot `i` of `obj`. There is no scavenger yet, so
    /// the remembered set stays empty.
    #[inline]
    pub fn store(&mut self, obj: Oop, i: u64, value: Oop) -> Result<(), MemoryError> {
        let h = self.header(obj)?;
        if h.is_immutable() {
            return Err(MemoryError::Immutable { obj: obj.0 });
        }
        let n = self.num_slots(obj)?;
        if i >= n {
            return Err(MemoryError::NoSuchSlot {
                obj: obj.0,
                index: i,
                num_slots: n,
            });
        }
        let w = self.word.bytes();
        let word = self.word;
        let b = self
            .locate_mut(obj.0 + 8 + i * w, w)
            .ok_or(MemoryError::NotAnObject { addr: obj.0 })?;
        match word {
            WordSize::W64 => b.copy_from_slice(&value.0.to_le_bytes()),
            WordSize::W32 => b.copy_from_slice(&(value.0 as u32).to_le_bytes()),
        }
        Ok(())
    }

    fn put_header(&mut self, obj: Oop, h: ObjHeader) -> Result<(), MemoryError> {
        let b = self
            .locate_mut(obj.0, 8)
            .ok_or(MemoryError::NotAnObject { addr: obj.0 })?;
        b.copy_from_slice(&h.0.to_le_bytes());
        Ok(())
    }

    /// Sets or clears the immutability bit.
    pub fn set_immutable(&mut self, obj: Oop, on: bool) -> Result<(), MemoryError> {
        let h = self.header(obj)?;
        let bit = 1u64 << IMMUTABLE_SHIFT;
        let v = if on { h.0 | bit } else { h.0 & !bit };
        self.put_header(obj, ObjHeader(v))
    }

    /// Allocates an object of `num_slots` slots in eden: pointer formats are
    /// filled with nil, others zeroed.
    pub fn allocate_slots(
        &mut self,
        class_index: u32,
        format: u8,
        num_slots: u64,
    ) -> Result<Oop, MemoryError> {
        let w = self.word.bytes();
        let body_slots = match self.word {
            WordSize::W64 => num_slots.max(1),
            WordSize::W32 => (num_slots.max(1) + 1) & !1,
        };
        let overflow = num_slots >= OVERFLOW_SLOTS;
        let total = 8 + body_slots * w + if overflow { 8 } else { 0 };
        let free = (self.eden.len() - self.eden_used) as u64;
        if total > free {
            return Err(MemoryError::EdenFull {
                needed: total,
                free,
            });
        }
        let mut at = self.eden_used;
        self.eden_used += total as usize;
        let region = &mut self.eden[at..self.eden_used];
        region.fill(0);
        if overflow {
            let ow = spur_format::objheader::overflow_word(num_slots);
            let ow = match self.word {
                WordSize::W64 => ow,
                WordSize::W32 => 0xFF00_0000u64 << 32 | num_slots,
            };
            self.eden[at..at + 8].copy_from_slice(&ow.to_le_bytes());
            at += 8;
        }
        let raw = if overflow { 255 } else { num_slots as u8 };
        let h = ObjHeader::new(class_index, format, raw, 0);
        self.eden[at..at + 8].copy_from_slice(&h.0.to_le_bytes());
        if format <= 5 {
            let nil = self.nil.0;
            let body = &mut self.eden[at + 8..at + 8 + (num_slots * w) as usize];
            match self.word {
                WordSize::W64 => body
                    .chunks_exact_mut(8)
                    .for_each(|c| c.copy_from_slice(&nil.to_le_bytes())),
                WordSize::W32 => body
                    .chunks_exact_mut(4)
                    .for_each(|c| c.copy_from_slice(&(nil as u32).to_le_bytes())),
            }
        }
        self.allocated.objects += 1;
        self.allocated.bytes += total;
        Ok(Oop(self.eden_start + at as u64))
    }

    /// A byte object (format 16 + unused bytes) of `byte_len` bytes.
    pub fn allocate_bytes(&mut self, class_index: u32, byte_len: u64) -> Result<Oop, MemoryError> {
        let w = self.word.bytes();
        let slots = byte_len.div_ceil(w);
        let fmt = FMT_BYTES + (slots * w - byte_len) as u8;
        self.allocate_slots(class_index, fmt, slots)
    }

    /// A 64-, 32- or 16-bit indexable object of `units` elements (`format`
    /// is 9, 10 or 12; the unused-unit bits are added here).
    pub fn allocate_words(
        &mut self,
        class_index: u32,
        format: u8,
        units: u64,
    ) -> Result<Oop, MemoryError> {
        let w = self.word.bytes();
        let unit = match format {
            9 => 8,
            10 | 11 => 4,
            _ => 2,
        };
        let bytes = units * unit;
        let slots = bytes.div_ceil(w);
        let spare = ((slots * w - bytes) / unit) as u8;
        let fmt = match format {
            9 => 9,
            10 | 11 => 10 + spare,
            _ => 12 + spare,
        };
        self.allocate_slots(class_index, fmt, slots)
    }

    pub fn eden_used(&self) -> u64 {
        self.eden_used as u64
    }
    pub fn eden_free(&self) -> u64 {
        (self.eden.len() - self.eden_used) as u64
    }
    pub fn allocated(&self) -> AllocStats {
        self.allocated
    }

    /// The identity hash of `obj`, assigned on first request.
    pub fn identity_hash(&mut self, obj: Oop) -> Result<u32, MemoryError> {
        let h = self.header(obj)?;
        if h.hash() != 0 {
            return Ok(h.hash());
        }
        if let Some(&v) = self.side_hashes.get(&obj) {
            return Ok(v);
        }
        let hash = loop {
            // Park and Miller's minimal standard generator, as the VMs use.
            self.last_hash = ((self.last_hash as u64 * 16807) % 0x7FFF_FFFF) as u32;
            let v = (self.last_hash as u64 & HASH_MASK) as u32;
            if v != 0 {
                break v;
            }
        };
        let v = h.0 & !(HASH_MASK << HASH_SHIFT) | (hash as u64) << HASH_SHIFT;
        if self.put_header(obj, ObjHeader(v)).is_err() {
            self.side_hashes.insert(obj, hash);
        }
        Ok(hash)
    }

    /// Copies the slots (or bytes) of `obj` into a new object of eden.
    pub fn shallow_copy(&mut self, obj: Oop) -> Result<Oop, MemoryError> {
        let h = self.header(obj)?;
        let n = self.num_slots(obj)?;
        let copy = self.allocate_slots(h.class_index(), h.format(), n)?;
        let w = self.word.bytes();
        let body: Vec<u8> = {
            let (b, off) = self
                .locate(obj.0 + 8, n * w)
                .ok_or(MemoryError::NotAnObject { addr: obj.0 })?;
            b[off..off + (n * w) as usize].to_vec()
        };
        let at = (copy.0 - self.eden_start) as usize + 8;
        self.eden[at..at + body.len()].copy_from_slice(&body);
        Ok(copy)
    }

    /// One-way become of pointer objects' contents is not supported by this
    /// memory; only the degenerate case the images need (no pairs) is done.
    pub fn become_forward(
        &mut self,
        pairs: &[(Oop, Oop)],
        _copy_hash: bool,
        _roots: &mut [Oop],
    ) -> Result<(), MemoryError> {
        match pairs.first() {
            None => Ok(()),
            Some(&(from, _)) => Err(MemoryError::WrongFormat {
                obj: from.0,
                format: self.format(from).unwrap_or(0),
                what: "forwardable by this memory (no become yet)",
            }),
        }
    }

    /// The class at `index` of the class table.
    pub fn class_at(&self, index: u32) -> Option<Oop> {
        let page = *self
            .class_pages
            .get((index >> CLASS_TABLE_MAJOR_SHIFT) as usize)?;
        let c = self
            .fetch(page, index as u64 & (CLASS_TABLE_PAGE_SLOTS - 1))
            .ok()?;
        (c != self.nil).then_some(c)
    }
    pub fn class_of(&self, oop: Oop) -> Option<Oop> {
        self.class_at(self.class_index_of(oop).ok()?)
    }
    /// A class's index in the table: its identity hash, when the table agrees.
    pub fn class_index_of_class(&self, class: Oop) -> Option<u32> {
        let h = self.header(class).ok()?.hash();
        (h != 0 && self.class_at(h) == Some(class)).then_some(h)
    }
    /// `Foo`, or `Foo class` for a metaclass.
    pub fn class_name(&self, class: Oop) -> Option<String> {
        let ct = self.rt.class_table();
        let layout = ct.layout();
        let meta = self.class_of(class) == Some(Oop(layout.metaclass.0));
        let c = if meta {
            self.fetch(class, layout.this_class_slot).ok()?
        } else {
            class
        };
        let name = self.string(self.fetch(c, layout.name_slot).ok()?)?;
        Some(if meta { format!("{name} class") } else { name })
    }

    // Immediates (§3.3).
    #[inline]
    pub fn small_int(&self, oop: Oop) -> Option<i64> {
        self.word.small_integer(oop.0)
    }
    /// The SmallInteger `v`, when in range (61 or 31 bits).
    #[inline]
    pub fn from_small_int(&self, v: i64) -> Option<Oop> {
        let (lo, hi) = match self.word {
            WordSize::W64 => (-(1i64 << 60), (1i64 << 60) - 1),
            WordSize::W32 => (-(1i64 << 30), (1i64 << 30) - 1),
        };
        (lo..=hi)
            .contains(&v)
            .then(|| Oop(self.word.encode_small_integer(v)))
    }
    pub fn character(&self, oop: Oop) -> Option<u32> {
        match self.word {
            WordSize::W64 => (oop.0 & 7 == 2).then_some((oop.0 >> 3) as u32),
            WordSize::W32 => (oop.0 & 3 == 2).then_some((oop.0 >> 2) as u32),
        }
    }
    pub fn from_character(&self, c: u32) -> Oop {
        match self.word {
            WordSize::W64 => Oop((c as u64) << 3 | 2),
            WordSize::W32 => Oop((c as u64) << 2 | 2),
        }
    }
    /// The value of a SmallFloat64 (64-bit only).
    pub fn small_float(&self, oop: Oop) -> Option<f64> {
        if self.word != WordSize::W64 || oop.0 & 7 != 4 {
            return None;
        }
        let mut r = oop.0 >> 3;
        if r > 1 {
            r += 896 << 53;
        }
        Some(f64::from_bits(r.rotate_right(1)))
    }
    /// `f` as a SmallFloat64, when its exponent is in range.
    pub fn from_small_float(&self, f: f64) -> Option<Oop> {
        if self.word != WordSize::W64 {
            return None;
        }
        let bits = f.to_bits();
        let exp = (bits >> 52 & 0x7FF) as i64;
        let zero = bits << 1 == 0;
        if !zero && !(897..=1151).contains(&exp) {
            return None;
        }
        let mut r = bits.rotate_left(1);
        if !zero {
            r -= 896 << 53;
        }
        Some(Oop(r << 3 | 4))
    }
}
