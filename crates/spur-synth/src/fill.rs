//! The bulk of the heap: a realistic mix of objects streamed segment by
//! segment up to each segment's planned size, with free chunks scattered
//! in between.
//!
//! Pointers only go to objects already written (a reservoir sample over
//! everything so far, plus a window of recent objects), which makes
//! streaming possible; the exception is a handful of slots in segment 0
//! that are written nil and patched at the end to point into later
//! segments, so relocation is exercised in both directions.

use spur_format::layout::to_usize;
use std::io::{self, Seek, Write};

use spur_format::raw::{FMT_BYTES, FMT_FIXED, FMT_INDEXABLE, OVERFLOW_SLOTS};
use spur_format::WordSize;

use crate::classes::*;
use crate::emit::Emitter;
use crate::encode::{
    byte_shape, bytecodes, character, method_header, object_bytes, slots_for_exact_bytes,
    small_float, small_integer_range, word32_shape, BytecodeSet,
};
use crate::free::FreeSpace;
use crate::kernel::{like_index, Kernel};
use crate::rng::Rng;

/// Objects remembered as uniformly chosen pointer targets.
const RESERVOIR: usize = 8192;
/// Recently written objects, for locality.
const RECENT: usize = 256;
/// Objects remembered per segment, for cross-segment pointers.
const SEGMENT_SAMPLES: usize = 64;
/// Slots of segment 0 patched to point forward at the end.
const FORWARD_SLOTS: usize = 64;
/// Below this many bytes left, a segment is closed with exact fillers.
const TAIL_BYTES: u64 = 256;
/// Room a prelude object must leave behind it.
const PRELUDE_ROOM: u64 = 4096;

/// What the filler writes, by frequency (per ten thousand objects).
#[derive(Debug, Clone, Copy)]
enum Kind {
    SmallArray,
    MediumArray,
    LargeArray,
    Huge,
    Association,
    Point,
    String,
    Symbol,
    ByteArray,
    Words,
    Float,
    LargeInt,
    Method,
    Record,
    Message,
    Semaphore,
    Free,
}

const MIX: &[(Kind, u64)] = &[
    (Kind::SmallArray, 2100),
    (Kind::MediumArray, 450),
    (Kind::LargeArray, 12),
    (Kind::Huge, 1),
    (Kind::Association, 1200),
    (Kind::Point, 800),
    (Kind::String, 1200),
    (Kind::Symbol, 500),
    (Kind::ByteArray, 600),
    (Kind::Words, 350),
    (Kind::Float, 600),
    (Kind::LargeInt, 450),
    (Kind::Method, 300),
    (Kind::Record, 300),
    (Kind::Message, 150),
    (Kind::Semaphore, 87),
    (Kind::Free, 100),
];

/// Streams the filler objects and keeps what the end of the image needs.
#[derive(Debug)]
pub(crate) struct Filler {
    word: WordSize,
    rng: Rng,
    free_chunks: bool,
    multiple_bytecode_sets: bool,
    nil: u64,
    fals: u64,
    tru: u64,
    reservoir: Vec<u64>,
    seen: u64,
    recent: Vec<u64>,
    recent_at: usize,
    classes: Vec<u64>,
    symbols: Vec<u64>,
    seg_samples: Vec<Vec<u64>>,
    forward: Vec<u64>,
    seg0_arrays: u64,
    pub(crate) free: FreeSpace,
    last_free: bool,
    segment: usize,
    buf: Vec<u8>,
    mix_total: u64,
    /// 1e-10 ..= 1e10: scales of SmallFloat64 values.
    pow10: Vec<f64>,
    /// The mix of a heap followed ([`Filler::follow`]): its kinds, the
    /// running sums of their instance counts, and the free chunks' weight.
    like: Vec<LikeKind>,
    like_sums: Vec<u64>,
    like_free: u64,
    /// Mean bytes of the followed heap's free chunks (0: the builder's own
    /// sizes).
    like_free_mean: u64,
}

/// One class of a followed heap, as the filler writes it.
#[derive(Debug, Clone, Copy)]
struct LikeKind {
    class: u32,
    /// The format of its instances: 0..=5, or the base of a raw format
    /// (9, 10, 12, 16) or 24 for compiled methods.
    format: u8,
    fixed: u64,
    /// Mean body bytes (all slots) of its instances.
    mean_body: u64,
}

/// The largest body the filler gives an object of a followed heap.
const LIKE_MAX_BODY: u64 = 16 << 20;

impl Filler {
    pub(crate) fn new(
        word: WordSize,
        seed: u64,
        free_chunks: bool,
        multiple_bytecode_sets: bool,
        segments: usize,
        kernel: &Kernel,
    ) -> Self {
        let [nil, fals, tru] = kernel.nil_false_true;
        let mut reservoir = kernel.targets.clone();
        reservoir.truncate(RESERVOIR);
        Filler {
            word,
            rng: Rng::new(seed, 0x6669_6c6c),
            free_chunks,
            multiple_bytecode_sets,
            nil,
            fals,
            tru,
            seen: reservoir.len() as u64,
            reservoir,
            recent: Vec::with_capacity(RECENT),
            recent_at: 0,
            classes: kernel.class_addrs.values().copied().collect(),
            symbols: kernel.symbol_addrs.clone(),
            seg_samples: vec![Vec::new(); segments],
            forward: Vec::new(),
            seg0_arrays: 0,
            free: FreeSpace::new(word),
            last_free: false,
            segment: 0,
            buf: Vec::new(),
            mix_total: MIX.iter().map(|&(_, w)| w).sum(),
            pow10: (-10..=10).map(|e| 10f64.powi(e)).collect(),
            like: Vec::new(),
            like_sums: Vec::new(),
            like_free: 0,
            like_free_mean: 0,
        }
    }

    /// Writes `like`'s mix from now on; `extra` are the classes the kernel
    /// added for it, in order (at [`like_index`]).
    pub(crate) fn follow(&mut self, like: &crate::Like, extra: &[(&str, u8, u64)]) {
        let mut sum = 0;
        for c in &like.classes {
            let (class, spec, fixed) = match classes_for(self.word).find(|d| d.name == c.name) {
                Some(d) => (d.index, d.inst_spec, inst_size(d)),
                None => match extra.iter().position(|e| e.0 == c.name) {
                    Some(k) => (like_index(k), c.inst_spec, c.fixed_slots),
                    None => continue,
                },
            };
            // Immediates have no instances in the heap.
            if spec == 7 || matches!(class, SMALL_INTEGER | CHARACTER | SMALL_FLOAT64) {
                continue;
            }
            if c.instances == 0 {
                continue;
            }
            let format = match spec {
                10 | 11 => 10,
                12..=15 => 12,
                16..=23 => 16,
                24..=31 => 24,
                6 | 8 => continue,
                s => s,
            };
            let header = 8 * c.instances;
            let mean_body = (c.bytes.saturating_sub(header) / c.instances).max(8);
            sum += c.instances;
            self.like.push(LikeKind {
                class,
                format,
                fixed,
                mean_body,
            });
            self.like_sums.push(sum);
        }
        self.like_free = if self.free_chunks {
            like.free_chunks
        } else {
            0
        };
        self.like_free_mean = like.free_bytes.checked_div(like.free_chunks).unwrap_or(0);
    }

    /// A size drawn around `mean`: exponential, so most are near or below
    /// it and a few several times larger.
    fn around(&mut self, mean: u64) -> u64 {
        let u = self.rng.unit();
        // Non-negative (u < 1) and at most LIKE_MAX_BODY: the cast neither
        // truncates nor loses a sign.
        let v = (-(1.0 - u).ln() * mean as f64).clamp(0.0, LIKE_MAX_BODY as f64);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let v = v as u64;
        v
    }

    /// One object of the followed mix (or a free chunk), within `cap` bytes.
    fn like_object<W: Write + Seek>(
        &mut self,
        em: &mut Emitter<'_, W>,
        cap: u64,
    ) -> io::Result<()> {
        let total = self.like_sums.last().copied().unwrap_or(0);
        let pick = self.rng.below(total + self.like_free);
        if pick >= total {
            if !self.last_free {
                let bytes = self.like_free_size().min(cap / 8 * 8);
                return self.free_chunk(em, bytes);
            }
            return self.like_object(em, cap);
        }
        let k = self.like[self.like_sums.partition_point(|&s| s <= pick)];
        let w = self.word.bytes();
        // Room for the body within `cap`, less a header and an overflow word.
        let room = cap.saturating_sub(16);
        let done = match k.format {
            0 => {
                let h = self.hash();
                let a = em.begin(k.class, 0, h, 0);
                em.end()?;
                self.note(a);
                true
            }
            1 | 5 => self
                .pointers(em, k.class, k.format, k.fixed, cap)?
                .is_some(),
            2..=4 => {
                let var = k.mean_body.div_ceil(w).saturating_sub(k.fixed) * w;
                let n = k.fixed + (self.around(var).min(room) / w);
                self.pointers(em, k.class, k.format, n, cap)?.is_some()
            }
            24 => {
                let body = self.around(k.mean_body).clamp(3 * w, room.max(3 * w));
                self.like_method(em, k.class, body, cap)?
            }
            base => {
                let unit = match base {
                    9 => 8,
                    10 => 4,
                    12 => 2,
                    _ => 1,
                };
                let bytes = self.around(k.mean_body).min(room) / unit * unit;
                self.raw_object(em, k.class, base, unit, bytes, cap)?
            }
        };
        if !done {
            let key = self.value();
            let value = self.value();
            self.fixed(em, ASSOCIATION, &[key, value])?;
        }
        Ok(())
    }

    /// A raw-data object of `bytes` bytes in units of `unit` bytes, of
    /// format `base` plus the unused units of its last slot; `false` if it
    /// does not fit in `cap`.
    fn raw_object<W: Write + Seek>(
        &mut self,
        em: &mut Emitter<'_, W>,
        class: u32,
        base: u8,
        unit: u64,
        bytes: u64,
        cap: u64,
    ) -> io::Result<bool> {
        let w = self.word.bytes();
        // 64-bit units need two slots each on 32-bit: none left unused.
        let n = bytes.div_ceil(w);
        if object_bytes(self.word, n) > cap {
            return Ok(false);
        }
        let unused = (n * w - bytes) / unit;
        let fmt = base + u8::try_from(unused).expect("fewer units than a slot holds");
        self.fill_random_bytes(to_usize(bytes));
        let h = self.hash();
        let a = em.begin(class, fmt, h, n);
        em.bytes(&self.buf);
        em.end()?;
        self.note(a);
        Ok(true)
    }

    /// A CompiledMethod of class `class` with about `body` bytes: a header,
    /// literals (the last a pointer, as a method's class binding is) and a
    /// bytecode that returns self; `false` if it does not fit in `cap`.
    fn like_method<W: Write + Seek>(
        &mut self,
        em: &mut Emitter<'_, W>,
        class: u32,
        body: u64,
        cap: u64,
    ) -> io::Result<bool> {
        let w = self.word.bytes();
        let n_lit = (body / (3 * w)).clamp(1, 200);
        let code = body.saturating_sub((n_lit + 1) * w).max(2);
        let mut literals: Vec<u64> = (1..n_lit).map(|_| self.value()).collect();
        literals.push(self.pointer());
        self.fill_random_bytes(to_usize(code));
        self.buf[0] = bytecodes::v3::RETURN_SELF;
        let last = self.buf.len() - 1;
        self.buf[last] = 0; // trailer
        let (n, fmt) = byte_shape(
            self.word,
            spur_format::raw::FMT_COMPILED_METHOD,
            (n_lit + 1) * w + code,
        );
        if object_bytes(self.word, n) > cap {
            return Ok(false);
        }
        let header = method_header(self.word, BytecodeSet::V3, n_lit, 0, 0);
        let h = self.hash();
        let a = em.begin(class, fmt, h, n);
        em.slot(self.word.encode_small_integer(header));
        for &l in &literals {
            em.slot(l);
        }
        em.bytes(&self.buf);
        em.end()?;
        self.note(a);
        Ok(true)
    }

    /// Fills the current segment of `em` exactly up to its bridge.
    pub(crate) fn fill_segment<W: Write + Seek>(
        &mut self,
        em: &mut Emitter<'_, W>,
        segment: usize,
    ) -> io::Result<()> {
        self.segment = segment;
        self.prelude(em)?;
        while em.remaining() > TAIL_BYTES {
            let cap = em.remaining() - 16;
            self.random_object(em, cap)?;
        }
        self.tail(em)
    }

    /// Writes the patches known only now: forward pointers out of segment 0,
    /// the free-list heads (into the free-lists object, whose slot 0 is at
    /// `free_lists_slot0`) and the free tree's links.
    pub(crate) fn finish<W: Write + Seek>(
        &mut self,
        em: &mut Emitter<'_, W>,
        free_lists_slot0: u64,
    ) {
        let later: Vec<usize> = (1..self.seg_samples.len())
            .filter(|&s| !self.seg_samples[s].is_empty())
            .collect();
        for i in 0..self.forward.len() {
            let off = self.forward[i];
            let target = if later.is_empty() {
                let s = &self.seg_samples[0];
                if s.is_empty() {
                    self.nil
                } else {
                    s[to_usize(self.rng.below(s.len() as u64))]
                }
            } else {
                let seg = later[i % later.len()];
                let s = &self.seg_samples[seg];
                s[to_usize(self.rng.below(s.len() as u64))]
            };
            em.patch_words(off, &[target]);
        }
        let (heads, links) = self.free.finish();
        em.patch_words(free_lists_slot0, &heads);
        for (slot0, l) in links {
            em.patch_words(slot0, &l);
        }
    }

    // ----- values -------------------------------------------------------

    fn hash(&mut self) -> u32 {
        if self.rng.chance(1, 16) {
            0
        } else {
            1 + u32::try_from(self.rng.below(0x3F_FFFF)).expect("the builder makes small values")
        }
    }

    fn note(&mut self, addr: u64) {
        self.seen += 1;
        if self.reservoir.len() < RESERVOIR {
            self.reservoir.push(addr);
        } else {
            let j = self.rng.below(self.seen);
            if to_usize(j) < RESERVOIR {
                self.reservoir[to_usize(j)] = addr;
            }
        }
        if self.recent.len() < RECENT {
            self.recent.push(addr);
        } else {
            self.recent[self.recent_at] = addr;
            self.recent_at = (self.recent_at + 1) % RECENT;
        }
        let s = &mut self.seg_samples[self.segment];
        if s.len() < SEGMENT_SAMPLES {
            s.push(addr);
        }
        self.last_free = false;
    }

    fn pointer(&mut self) -> u64 {
        if !self.recent.is_empty() && self.rng.chance(1, 2) {
            self.recent[to_usize(self.rng.below(self.recent.len() as u64))]
        } else {
            self.reservoir[to_usize(self.rng.below(self.reservoir.len() as u64))]
        }
    }

    fn small_int(&mut self) -> u64 {
        let v = if self.rng.chance(7, 10) {
            (self.rng.range(0, 2000)).cast_signed() - 1000
        } else {
            let (lo, hi) = small_integer_range(self.word);
            lo + (self.rng.below((hi - lo).cast_unsigned() + 1)).cast_signed()
        };
        self.word.encode_small_integer(v)
    }

    fn float_value(&mut self) -> u64 {
        if self.word == WordSize::W32 {
            return self.small_int();
        }
        let scale = self.pow10[to_usize(self.rng.below(self.pow10.len() as u64))];
        let v = (self.rng.unit() * 2.0 - 1.0) * scale;
        small_float(v).unwrap_or(4)
    }

    /// Any slot value: a pointer to an earlier object or an immediate.
    ///
    /// This runs for every slot of the heap, so the common cases take what
    /// they need from a single 64-bit draw: 16 bits choose the case, the
    /// other 48 are its payload.
    #[inline]
    fn value(&mut self) -> u64 {
        let r = self.rng.next_u64();
        let case = ((r & 0xFFFF) * 100) >> 16;
        let p = r >> 16;
        // An index below `len` from 32 payload bits.
        let pick = |len: usize, bits: u64| (((bits & 0xFFFF_FFFF) * len as u64) >> 32) as usize;
        match case {
            0..=19 if !self.recent.is_empty() => self.recent[pick(self.recent.len(), p)],
            0..=39 => self.reservoir[pick(self.reservoir.len(), p)],
            40..=43 => self.nil,
            44..=46 => self.tru,
            47..=49 => self.fals,
            50..=66 => {
                let v =
                    i64::try_from(pick(2001, p)).expect("the builder makes small values") - 1000;
                self.word.encode_small_integer(v)
            }
            67..=71 => self.small_int(),
            72..=81 => {
                let code = if p >> 40 < 205 {
                    32 + u32::try_from(pick(95, p)).expect("the builder makes small values")
                } else {
                    u32::try_from(pick(0x11_0000, p)).expect("the builder makes small values")
                };
                character(self.word, code)
            }
            82..=91 => match self.word {
                WordSize::W32 => self.word.encode_small_integer(
                    i64::try_from(pick(1 << 20, p)).expect("the builder makes small values"),
                ),
                WordSize::W64 => {
                    let mantissa = (p & 0xFFFF_FFFF) as f64 / (1u64 << 31) as f64 - 1.0;
                    let scale = self.pow10[(((p >> 32) * self.pow10.len() as u64) >> 16) as usize];
                    small_float(mantissa * scale).unwrap_or(4)
                }
            },
            _ => self.classes[pick(self.classes.len(), p)],
        }
    }

    fn class_pointer(&mut self) -> u64 {
        self.classes[to_usize(self.rng.below(self.classes.len() as u64))]
    }

    fn symbol_pointer(&mut self) -> u64 {
        self.symbols[to_usize(self.rng.below(self.symbols.len() as u64))]
    }

    // ----- objects -------------------------------------------------------

    /// A pointer object of `n` slots with random values; `None` if it does
    /// not fit in `cap` bytes.
    fn pointers<W: Write + Seek>(
        &mut self,
        em: &mut Emitter<'_, W>,
        class: u32,
        format: u8,
        n: u64,
        cap: u64,
    ) -> io::Result<Option<u64>> {
        if object_bytes(self.word, n) > cap {
            return Ok(None);
        }
        let forward = class == ARRAY
            && n > 0
            && self.segment == 0
            && self.forward.len() < FORWARD_SLOTS
            && (self.seg0_arrays < 16 || self.rng.chance(1, 500));
        if class == ARRAY && self.segment == 0 {
            self.seg0_arrays += 1;
        }
        let h = self.hash();
        let a = em.begin(class, format, h, n);
        for i in 0..n {
            if forward && i == 0 {
                self.forward.push(em.next_slot_offset());
                em.slot(self.nil);
            } else {
                let v = self.value();
                em.slot(v);
            }
        }
        em.end()?;
        self.note(a);
        Ok(Some(a))
    }

    /// A fixed-slot object whose slots are given.
    fn fixed<W: Write + Seek>(
        &mut self,
        em: &mut Emitter<'_, W>,
        class: u32,
        slots: &[u64],
    ) -> io::Result<u64> {
        let h = self.hash();
        let a = em.begin(class, FMT_FIXED, h, slots.len() as u64);
        for &s in slots {
            em.slot(s);
        }
        em.end()?;
        self.note(a);
        Ok(a)
    }

    /// A byte-format object holding `self.buf`.
    fn byte_object<W: Write + Seek>(
        &mut self,
        em: &mut Emitter<'_, W>,
        class: u32,
        cap: u64,
    ) -> io::Result<Option<u64>> {
        let (n, fmt) = byte_shape(self.word, FMT_BYTES, self.buf.len() as u64);
        if object_bytes(self.word, n) > cap {
            return Ok(None);
        }
        let h = if class == BYTE_SYMBOL {
            1 + u32::try_from(self.rng.below(0x3F_FFFF)).expect("the builder makes small values")
        } else {
            self.hash()
        };
        let a = em.begin(class, fmt, h, n);
        em.bytes(&self.buf);
        em.end()?;
        self.note(a);
        Ok(Some(a))
    }

    fn fill_random_bytes(&mut self, n: usize) {
        self.buf.clear();
        while self.buf.len() < n {
            let r = self.rng.next_u64().to_le_bytes();
            let take = (n - self.buf.len()).min(8);
            self.buf.extend_from_slice(&r[..take]);
        }
    }

    fn fill_text(&mut self, n: usize, symbol: bool) {
        self.buf.clear();
        for i in 0..n {
            let c = if !symbol && self.rng.chance(1, 6) && i > 0 {
                b' '
            } else {
                b'a' + u8::try_from(self.rng.below(26)).expect("the builder makes small values")
            };
            self.buf.push(c);
        }
        if symbol && n > 2 && self.rng.chance(1, 3) {
            *self.buf.last_mut().unwrap() = b':';
        }
    }

    fn string<W: Write + Seek>(
        &mut self,
        em: &mut Emitter<'_, W>,
        symbol: bool,
        cap: u64,
    ) -> io::Result<Option<u64>> {
        let n = if symbol {
            self.rng.range(1, 24)
        } else if self.rng.chance(1, 20) {
            self.rng.range(48, 400)
        } else {
            self.rng.range(0, 48)
        };
        self.fill_text(to_usize(n), symbol);
        let class = if symbol { BYTE_SYMBOL } else { BYTE_STRING };
        self.byte_object(em, class, cap)
    }

    fn byte_array<W: Write + Seek>(
        &mut self,
        em: &mut Emitter<'_, W>,
        n: u64,
        cap: u64,
    ) -> io::Result<Option<u64>> {
        self.fill_random_bytes(to_usize(n));
        self.byte_object(em, BYTE_ARRAY, cap)
    }

    fn words<W: Write + Seek>(
        &mut self,
        em: &mut Emitter<'_, W>,
        units: u64,
        cap: u64,
    ) -> io::Result<Option<u64>> {
        let (n, fmt) = word32_shape(self.word, units);
        if object_bytes(self.word, n) > cap {
            return Ok(None);
        }
        let class = if self.rng.chance(1, 2) {
            WORD_ARRAY
        } else {
            BITMAP
        };
        self.fill_random_bytes(to_usize(units) * 4);
        let h = self.hash();
        let a = em.begin(class, fmt, h, n);
        em.bytes(&self.buf);
        em.end()?;
        self.note(a);
        Ok(Some(a))
    }

    /// A boxed Float (class 34): 64-bit doubles outside the SmallFloat range.
    fn boxed_float<W: Write + Seek>(&mut self, em: &mut Emitter<'_, W>) -> io::Result<u64> {
        let v = match self.word {
            WordSize::W64 => {
                let e = if self.rng.chance(1, 2) { 200 } else { -200 };
                (self.rng.unit() + 0.5)
                    * 10f64.powi(
                        e + i32::try_from(self.rng.below(50))
                            .expect("the builder makes small values"),
                    )
            }
            WordSize::W32 => (self.rng.unit() - 0.5) * 1e6,
        };
        let (n, fmt) = word32_shape(self.word, 2);
        let h = self.hash();
        let a = em.begin(BOXED_FLOAT64, fmt, h, n);
        // Header flag 2 (floats little-endian): the native order.
        em.bytes(&v.to_bits().to_le_bytes());
        em.end()?;
        self.note(a);
        Ok(a)
    }

    /// A normalised large integer: no high zero byte, magnitude beyond SmallInteger.
    fn large_int<W: Write + Seek>(&mut self, em: &mut Emitter<'_, W>) -> io::Result<u64> {
        let min = self.word.bytes();
        let len = to_usize(self.rng.range(min, 3 * min));
        self.fill_random_bytes(len);
        let top = self.buf[len - 1];
        self.buf[len - 1] = if len as u64 == min {
            top | 0x80
        } else {
            top.max(1)
        };
        let class = if self.rng.chance(1, 5) {
            LARGE_NEGATIVE_INTEGER
        } else {
            LARGE_POSITIVE_INTEGER
        };
        Ok(self.byte_object(em, class, u64::MAX)?.expect("uncapped"))
    }

    /// A CompiledMethod preceded by its selector and its class binding.
    fn method<W: Write + Seek>(&mut self, em: &mut Emitter<'_, W>) -> io::Result<u64> {
        let n = self.rng.range(3, 18);
        self.fill_text(to_usize(n), true);
        let sel = self
            .byte_object(em, BYTE_SYMBOL, u64::MAX)?
            .expect("uncapped");
        let class = self.class_pointer();
        let binding = self.fixed(em, ASSOCIATION, &[self.nil, class])?;
        let extra = self.rng.below(7);
        let mut literals: Vec<u64> = (0..extra).map(|_| self.value()).collect();
        literals.push(sel);
        literals.push(binding);
        let set = if self.multiple_bytecode_sets && self.rng.chance(1, 2) {
            BytecodeSet::Sista
        } else {
            BytecodeSet::V3
        };
        self.buf.clear();
        for i in 0..u8::try_from(extra).expect("the builder makes small values") {
            match set {
                BytecodeSet::V3 => self
                    .buf
                    .extend_from_slice(&[bytecodes::v3::PUSH_LITERAL + i, bytecodes::v3::POP]),
                BytecodeSet::Sista => self.buf.extend_from_slice(&[
                    bytecodes::sista::PUSH_LITERAL + i,
                    bytecodes::sista::POP,
                ]),
            }
        }
        let ret_self = self.rng.chance(1, 2);
        match (set, ret_self) {
            (BytecodeSet::V3, true) => self.buf.push(bytecodes::v3::RETURN_SELF),
            (BytecodeSet::V3, false) => self
                .buf
                .extend_from_slice(&[bytecodes::v3::PUSH_SELF, bytecodes::v3::RETURN_TOP]),
            (BytecodeSet::Sista, true) => self.buf.push(bytecodes::sista::RETURN_SELF),
            (BytecodeSet::Sista, false) => self
                .buf
                .extend_from_slice(&[bytecodes::sista::PUSH_SELF, bytecodes::sista::RETURN_TOP]),
        }
        self.buf.push(0); // trailer
        let w = self.word.bytes();
        let n_lit = literals.len() as u64;
        let (n, fmt) = byte_shape(
            self.word,
            spur_format::raw::FMT_COMPILED_METHOD,
            (n_lit + 1) * w + self.buf.len() as u64,
        );
        let header = method_header(self.word, set, n_lit, 0, 0);
        let h = self.hash();
        let a = em.begin(COMPILED_METHOD, fmt, h, n);
        em.slot(self.word.encode_small_integer(header));
        for &l in &literals {
            em.slot(l);
        }
        em.bytes(&self.buf);
        em.end()?;
        self.note(a);
        Ok(a)
    }

    /// A free chunk of exactly `bytes` bytes, linked into its list.
    fn free_chunk<W: Write + Seek>(
        &mut self,
        em: &mut Emitter<'_, W>,
        bytes: u64,
    ) -> io::Result<()> {
        let next = self.free.next_for(bytes);
        let (addr, slot0) = em.free_chunk(bytes, next)?;
        self.free.add(addr, bytes, slot0);
        self.last_free = true;
        Ok(())
    }

    /// A free-chunk size of a followed heap: around its chunks' mean size,
    /// or the builder's own sizes when it gives none.
    fn like_free_size(&mut self) -> u64 {
        if self.like_free_mean < 16 {
            return self.free_size();
        }
        (16 + self.around(self.like_free_mean - 16)).next_multiple_of(8)
    }

    /// A random free-chunk size: mostly list sizes, a few tree sizes (often
    /// repeated, so the tree has chains).
    fn free_size(&mut self) -> u64 {
        let tree_min = self.free.tree_min();
        if self.rng.chance(24, 25) {
            return 8 * self.rng.range(2, tree_min / 8 - 1);
        }
        let gap = OVERFLOW_SLOTS * self.word.bytes() + 8;
        let gap = gap.div_ceil(8) * 8;
        let common = [tree_min, tree_min + 8, 1024, gap, 4096, 8192, 65536];
        if self.rng.chance(3, 4) {
            common[to_usize(self.rng.below(common.len() as u64))]
        } else {
            8 * self.rng.range(tree_min / 8, 4 * 1024)
        }
    }

    fn random_object<W: Write + Seek>(
        &mut self,
        em: &mut Emitter<'_, W>,
        cap: u64,
    ) -> io::Result<()> {
        if !self.like.is_empty() {
            return self.like_object(em, cap);
        }
        let mut pick = self.rng.below(self.mix_total);
        let mut kind = Kind::Association;
        for &(k, w) in MIX {
            if pick < w {
                kind = k;
                break;
            }
            pick -= w;
        }
        let w = self.word.bytes();
        let done = match kind {
            Kind::SmallArray => {
                let n = self.rng.range(0, 12);
                self.pointers(em, ARRAY, FMT_INDEXABLE, n, cap)?.is_some()
            }
            Kind::MediumArray => {
                // Skewed towards the short end.
                let spread = self.rng.range(1, 242);
                let n = 13 + self.rng.below(spread);
                self.pointers(em, ARRAY, FMT_INDEXABLE, n, cap)?.is_some()
            }
            Kind::LargeArray => {
                let n = self.rng.range(255, 4000);
                self.pointers(em, ARRAY, FMT_INDEXABLE, n, cap)?.is_some()
            }
            Kind::Huge => self.huge(em, cap)?,
            Kind::Association => false,
            Kind::Point => {
                let (x, y) = if self.rng.chance(3, 4) {
                    (self.small_int(), self.small_int())
                } else {
                    (self.float_value(), self.float_value())
                };
                self.fixed(em, POINT, &[x, y])?;
                true
            }
            Kind::String => self.string(em, false, cap)?.is_some(),
            Kind::Symbol => self.string(em, true, cap)?.is_some(),
            Kind::ByteArray => {
                let n = if self.rng.chance(1, 30) {
                    self.rng.range(255 * w, 16 * 1024)
                } else {
                    self.rng.range(0, 100)
                };
                self.byte_array(em, n, cap)?.is_some()
            }
            Kind::Words => {
                let units = if self.rng.chance(1, 40) {
                    self.rng.range(600, 8192)
                } else {
                    self.rng.range(1, 64)
                };
                self.words(em, units, cap)?.is_some()
            }
            Kind::Float => {
                self.boxed_float(em)?;
                true
            }
            Kind::LargeInt => {
                self.large_int(em)?;
                true
            }
            Kind::Method if cap >= 1024 => {
                self.method(em)?;
                true
            }
            Kind::Method => false,
            Kind::Record => {
                let slots = [self.value(), self.value(), self.value()];
                let h = self.hash();
                let a = em.begin(SYNTH_RECORD, FMT_FIXED, h, 3);
                for s in slots {
                    em.slot(s);
                }
                em.end()?;
                self.note(a);
                true
            }
            Kind::Message => {
                let sel = self.symbol_pointer();
                let args = if self.rng.chance(1, 2) {
                    self.nil
                } else {
                    self.pointer()
                };
                let class = self.class_pointer();
                self.fixed(em, MESSAGE, &[sel, args, class])?;
                true
            }
            Kind::Semaphore => {
                let signals = self
                    .word
                    .encode_small_integer((self.rng.below(4)).cast_signed());
                self.fixed(em, SEMAPHORE, &[self.nil, self.nil, signals])?;
                true
            }
            Kind::Free if self.free_chunks && !self.last_free => {
                let bytes = self.free_size().min(cap / 8 * 8);
                self.free_chunk(em, bytes)?;
                true
            }
            Kind::Free => false,
        };
        if !done {
            let key = if self.rng.chance(1, 2) {
                self.symbol_pointer()
            } else {
                self.value()
            };
            let value = self.value();
            self.fixed(em, ASSOCIATION, &[key, value])?;
        }
        Ok(())
    }

    /// An object bigger than 64 KiB (up to 1 MiB), if it fits.
    fn huge<W: Write + Seek>(&mut self, em: &mut Emitter<'_, W>, cap: u64) -> io::Result<bool> {
        let min = 64 * 1024 + 8;
        if cap < min + 64 {
            return Ok(false);
        }
        let bytes = self.rng.range(min, (1 << 20).min(cap - 64));
        let w = self.word.bytes();
        Ok(match self.rng.below(3) {
            0 => self
                .pointers(em, ARRAY, FMT_INDEXABLE, (bytes - 16) / w, cap)?
                .is_some(),
            1 => self.byte_array(em, bytes - 16, cap)?.is_some(),
            _ => self.words(em, (bytes - 16) / 4, cap)?.is_some(),
        })
    }

    /// Objects every segment gets when there is room, so that even small
    /// images hold each case: pointers back into every earlier segment, an
    /// overflow-header object, list and tree free chunks (two of one tree
    /// size in segment 0, and the size that takes an overflow word below
    /// 255), and an object above 64 KiB.
    fn prelude<W: Write + Seek>(&mut self, em: &mut Emitter<'_, W>) -> io::Result<()> {
        let room = |em: &Emitter<'_, W>, bytes: u64| em.remaining() >= bytes + PRELUDE_ROOM;
        let w = self.word.bytes();
        if self.segment > 0 {
            let mut slots = Vec::new();
            for s in 0..self.segment {
                for _ in 0..2 {
                    let samples = &self.seg_samples[s];
                    if !samples.is_empty() {
                        slots.push(samples[to_usize(self.rng.below(samples.len() as u64))]);
                    }
                }
            }
            for _ in 0..4 {
                slots.push(self.pointer());
            }
            if room(em, object_bytes(self.word, slots.len() as u64)) {
                let h = self.hash();
                let a = em.begin(ARRAY, FMT_INDEXABLE, h, slots.len() as u64);
                for &s in &slots {
                    em.slot(s);
                }
                em.end()?;
                self.note(a);
            }
        }
        let n = self.rng.range(255, 600);
        if room(em, object_bytes(self.word, n)) {
            self.pointers(em, ARRAY, FMT_INDEXABLE, n, u64::MAX)?;
        }
        if self.free_chunks {
            let tree = 2 * self.free.tree_min();
            let gap = (OVERFLOW_SLOTS * w + 8).div_ceil(8) * 8;
            let mut sizes = vec![tree, 48, 16];
            if self.segment == 0 {
                sizes.extend([tree, gap]);
            }
            for bytes in sizes {
                if room(em, bytes + 64) {
                    self.free_chunk(em, bytes)?;
                    let v = self.value();
                    self.fixed(em, ASSOCIATION, &[self.nil, v])?;
                }
            }
        }
        if em.remaining() >= (1 << 20) {
            let bytes = 64 * 1024 + 8 * self.rng.range(1, 4096);
            self.byte_array(em, bytes, u64::MAX)?;
        }
        Ok(())
    }

    /// Closes the segment: fillers of exactly the remaining size.
    fn tail<W: Write + Seek>(&mut self, em: &mut Emitter<'_, W>) -> io::Result<()> {
        loop {
            let rem = em.remaining();
            if rem == 0 {
                return Ok(());
            }
            let n = match slots_for_exact_bytes(self.word, rem) {
                Some(n) => n,
                // Just past the single-header sizes: write 16 bytes first.
                None => slots_for_exact_bytes(self.word, 16).expect("16 bytes fit"),
            };
            self.byte_array(em, n * self.word.bytes(), u64::MAX)?;
        }
    }
}
