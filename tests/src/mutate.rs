//! Systematic damage to an image file: the mutations of the sweep test and
//! of the outside sweep's damaged copies.
//!
//! [`plan`] looks at a valid image (its header, its segments and bridges,
//! its objects and their pointer slots) and lists [`Damage`]s: truncation at
//! every structural boundary and at random points, every bit of the header
//! and of each bridge, chosen bits of object headers and overflow words,
//! pointers bent in chosen ways, and random words. The same image and seed
//! always give the same list.

use spur_format::layout::to_usize;
use spur_format::layout::u64_at;
use spur_format::raw::BRIDGE_BYTES;
use spur_format::read::header::{min_header_size, HEADER_PROBE_BYTES};
use spur_format::{FormatError, ImageHeader, Layout, SegmentTable, Walk, WordSize, L32, L64};

/// splitmix64: a tiny deterministic generator, the same on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5EED_0FDA_3A6E)
    }
    /// The next value (splitmix64).
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// One way to damage an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// Keep only the first `len` bytes.
    Truncate {
        /// Bytes kept.
        len: usize,
        /// Which boundary the cut is at.
        why: &'static str,
    },
    /// Flip bit `bit` of the byte at `offset`.
    Flip {
        /// File offset of the byte.
        offset: usize,
        /// The bit, 0 to 7.
        bit: u8,
        /// What the byte is.
        why: &'static str,
    },
    /// Overwrite `width` bytes (4 or 8) at `offset` with `value`, little-endian.
    Set {
        /// File offset.
        offset: usize,
        /// Bytes written, 4 or 8.
        width: u8,
        /// The value written.
        value: u64,
        /// What the bytes are.
        why: &'static str,
    },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Truncate { len, why } => write!(f, "truncate to {len} bytes ({why})"),
            Damage::Flip { offset, bit, why } => {
                write!(f, "flip bit {bit} of byte {offset:#x} ({why})")
            }
            Damage::Set {
                offset,
                width,
                value,
                why,
            } => write!(
                f,
                "set the u{} at {offset:#x} to {value:#x} ({why})",
                width * 8
            ),
        }
    }
}

impl Damage {
    /// Runs `f` on the damaged image, then undoes the damage: `image` is
    /// the same afterwards, so one buffer serves every mutation. Damage
    /// past the end of `image` (after a truncation) does nothing.
    pub fn with<R>(&self, image: &mut [u8], f: impl FnOnce(&[u8]) -> R) -> R {
        match *self {
            Damage::Truncate { len, .. } => f(&image[..len.min(image.len())]),
            Damage::Flip { offset, .. } if offset >= image.len() => f(image),
            Damage::Set { offset, width, .. } if offset + width as usize > image.len() => f(image),
            Damage::Flip { offset, bit, .. } => {
                image[offset] ^= 1 << bit;
                let r = f(image);
                image[offset] ^= 1 << bit;
                r
            }
            Damage::Set {
                offset,
                width,
                value,
                ..
            } => {
                let w = width as usize;
                let mut saved = [0u8; 8];
                saved[..w].copy_from_slice(&image[offset..offset + w]);
                image[offset..offset + w].copy_from_slice(&value.to_le_bytes()[..w]);
                let r = f(image);
                image[offset..offset + w].copy_from_slice(&saved[..w]);
                r
            }
        }
    }

    /// What the damage is aimed at: "truncation", "header", "bridge",
    /// "object", "pointer" or "random word".
    pub fn kind(&self) -> &'static str {
        match self {
            Damage::Truncate { .. } => "truncation",
            Damage::Flip { why, .. } | Damage::Set { why, .. } => match *why {
                w if w.starts_with("bridge") => "bridge",
                "object header" | "overflow word" => "object",
                "pointer" | "random word" => why,
                _ => "header",
            },
        }
    }

    /// A damaged copy of `image`.
    pub fn apply(&self, image: &[u8]) -> Vec<u8> {
        let mut copy = image.to_vec();
        self.with(&mut copy, |b| b.to_vec())
    }
}

/// How much of each kind of damage to plan.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Objects whose header (and overflow word) get bit flips.
    pub objects: usize,
    /// Pointer slots bent in each of the ways [`plan`] knows.
    pub pointers: usize,
    /// Truncations at random points.
    pub random_cuts: usize,
    /// Random words written at random places in the data.
    pub random_words: usize,
}

impl Budget {
    /// About five thousand mutations: for the builder's small images.
    pub const FULL: Budget = Budget {
        objects: 200,
        pointers: 150,
        random_cuts: 200,
        random_words: 500,
    };
    /// About two thousand: for large real images, whose loads take longer.
    pub const LIGHT: Budget = Budget {
        objects: 60,
        pointers: 40,
        random_cuts: 60,
        random_words: 150,
    };
}

/// What [`plan`] needs to know of an image.
#[derive(Debug)]
struct Shape {
    header: ImageHeader,
    table: SegmentTable,
    /// File offsets of object starts (overflow word or header) and of headers.
    objects: Vec<(usize, usize)>,
    /// File offsets of slots holding pointers.
    pointers: Vec<usize>,
}

fn shape(image: &[u8]) -> Result<Shape, FormatError> {
    let probe = &image[..image.len().min(HEADER_PROBE_BYTES)];
    let header = ImageHeader::parse(probe, image.len() as u64)?;
    let table = SegmentTable::read(&header, |off| {
        let at = to_usize(off);
        Ok::<_, FormatError>(image[at..at + 16].try_into().unwrap())
    })?;
    let mut s = Shape {
        header,
        table,
        objects: Vec::new(),
        pointers: Vec::new(),
    };
    match s.header.word {
        WordSize::W64 => objects::<L64>(image, &mut s),
        WordSize::W32 => objects::<L32>(image, &mut s),
    }
    Ok(s)
}

fn objects<L: Layout>(image: &[u8], s: &mut Shape) {
    for seg in &s.table.segments {
        let at = to_usize(seg.file_offset);
        let bytes = &image[at..at + to_usize(seg.size)];
        for o in Walk::<L>::new(bytes, seg.old_start.get(), seg.index) {
            s.objects.push((at + o.start(), at + o.offset));
            let h = o.header;
            if h.class_index() >= 8 && h.is_pointers() {
                for i in 0..to_usize(o.num_slots) {
                    let v = L::slot(bytes, o.offset, i);
                    if v != 0 && !L::WORD.is_immediate(v) {
                        s.pointers.push(at + o.offset + 8 + i * L::W);
                    }
                }
            }
        }
    }
}

/// Picks `n` items spread evenly over `items` (all of them when there are fewer).
fn spread<T: Copy>(items: &[T], n: usize) -> Vec<T> {
    if items.len() <= n {
        return items.to_vec();
    }
    (0..n).map(|i| items[i * items.len() / n]).collect()
}

/// The damage to do to `image`, a valid image; an error when it is not one.
pub fn plan(image: &[u8], budget: Budget, seed: u64) -> Result<Vec<Damage>, FormatError> {
    let s = shape(image)?;
    let h = &s.header;
    let w = to_usize(h.word.bytes());
    let len = image.len();
    let start = to_usize(h.prefix_bytes);
    let data = to_usize(h.data_offset());
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();

    // Truncation at every structural boundary, a little either side.
    let mut cuts = vec![(0, "empty"), (3, "inside the format word")];
    cuts.push((start + 4, "after the format word"));
    for i in 0..(to_usize(h.header_size) / w) {
        cuts.push((start + 8 + i * w, "at a header field"));
    }
    cuts.push((data, "at the end of the header"));
    for seg in &s.table.segments {
        let (a, n) = (to_usize(seg.file_offset), to_usize(seg.size));
        cuts.push((a, "at a segment start"));
        cuts.push((a + n - to_usize(BRIDGE_BYTES), "at a bridge"));
        cuts.push((a + n - 8, "inside a bridge"));
        cuts.push((a + n, "at a segment end"));
    }
    for &(obj, _) in spread(&s.objects, budget.objects).iter() {
        cuts.push((obj, "at an object"));
    }
    for (at, why) in cuts {
        for d in [0isize, -8, -1, 1, 8] {
            let cut = isize::try_from(at).expect("a test image offset") + d;
            if usize::try_from(cut).is_ok_and(|c| c < len) {
                out.push(Damage::Truncate {
                    len: usize::try_from(cut).expect("a test image offset"),
                    why,
                });
            }
        }
    }
    for _ in 0..budget.random_cuts {
        out.push(Damage::Truncate {
            len: to_usize(rng.below(len as u64)),
            why: "at a random point",
        });
    }

    // Every bit of the header, and of the format word a prefix hides.
    for offset in start..data {
        for bit in 0..8 {
            out.push(Damage::Flip {
                offset,
                bit,
                why: "header",
            });
        }
    }
    if start > 0 {
        for bit in 0..32u8 {
            out.push(Damage::Flip {
                offset: bit as usize / 8,
                bit: bit % 8,
                why: "the word at offset 0, before the prefix",
            });
        }
    }
    // Header words set to values that stress the arithmetic.
    let width = u8::try_from(w).expect("a word is 4 or 8 bytes");
    let max = if w == 8 { u64::MAX } else { u32::MAX as u64 };
    let fields = (to_usize(min_header_size(h.word)) - 8) / w;
    for i in 0..fields {
        let offset = start + 8 + i * w;
        let values = [
            0,
            8,
            16,
            32,
            max,
            max - 7,
            max / 2 + 1,
            h.data_size + 8,
            h.data_size.wrapping_sub(8),
            len as u64,
            h.word.address_limit() - 8,
        ];
        for value in values {
            out.push(Damage::Set {
                offset,
                width,
                value: value & max,
                why: "header word",
            });
        }
    }
    for (field, value) in [(4usize, 0u64), (4, 8), (4, 0xFFFF_FFF8), (4, 1 << 16)] {
        out.push(Damage::Set {
            offset: start + field,
            width: 4,
            value,
            why: "imageHeaderSize",
        });
    }

    // Every bit of every bridge, and next sizes and gaps that lie.
    for seg in &s.table.segments {
        let b = to_usize(seg.file_offset + seg.size - BRIDGE_BYTES);
        for offset in b..b + 16 {
            for bit in 0..8 {
                out.push(Damage::Flip {
                    offset,
                    bit,
                    why: "bridge",
                });
            }
        }
        let remaining = h.data_offset() + h.data_size - (seg.file_offset + seg.size);
        for next in [8, 16, 32, 40, remaining + 8, remaining, u64::MAX, 1 << 40] {
            out.push(Damage::Set {
                offset: b + 8,
                width: 8,
                value: next,
                why: "bridge: next segment size",
            });
        }
        for gap_words in [1u64, 2, 1 << 20, (1 << 56) - 1, 0xFFFF_FFFF] {
            out.push(Damage::Set {
                offset: b,
                width: 8,
                value: (0xFF << 56) | gap_words,
                why: "bridge: gap",
            });
        }
    }

    // Object headers: size, format, class index and flag bits; overflow words.
    let header_bits = [
        0u8, 1, 2, 3, 4, 5, 9, 21, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 55, 56, 57, 60, 62, 63,
    ];
    for &(obj, hdr) in spread(&s.objects, budget.objects).iter() {
        for &bit in &header_bits {
            out.push(Damage::Flip {
                offset: hdr + bit as usize / 8,
                bit: bit % 8,
                why: "object header",
            });
        }
        if obj != hdr {
            for bit in [0u8, 3, 7, 12, 20, 31, 40, 55, 56, 63] {
                out.push(Damage::Flip {
                    offset: obj + bit as usize / 8,
                    bit: bit % 8,
                    why: "overflow word",
                });
            }
        }
    }

    // Pointers bent: bits flipped, into the middle of an object, onto a
    // bridge, out of the heap, zero, all ones.
    let last = s.table.segments.last().unwrap();
    let bridge = last.old_end().get() - BRIDGE_BYTES;
    for &at in spread(&s.pointers, budget.pointers).iter() {
        let v = if w == 8 {
            u64_at(image, at)
        } else {
            u32::from_le_bytes(image[at..at + 4].try_into().unwrap()) as u64
        };
        for bit in [3u8, 4, 6, 12, 20, 30] {
            out.push(Damage::Flip {
                offset: at + bit as usize / 8,
                bit: bit % 8,
                why: "pointer",
            });
        }
        if w == 8 {
            out.push(Damage::Flip {
                offset: at + 5,
                bit: 6,
                why: "pointer",
            });
        }
        for value in [
            v.wrapping_add(8),
            v.wrapping_sub(8),
            bridge,
            h.old_base.get().wrapping_sub(16),
            last.old_end().get() + 4096,
            0,
            max & !7,
        ] {
            out.push(Damage::Set {
                offset: at,
                width,
                value: value & max,
                why: "pointer",
            });
        }
    }

    // Random words at random places in the data.
    let data_end = to_usize(h.data_offset() + h.data_size);
    for _ in 0..budget.random_words {
        let offset = data + to_usize(rng.below(((data_end - data) / w) as u64)) * w;
        out.push(Damage::Set {
            offset,
            width,
            value: rng.next_u64() & max,
            why: "random word",
        });
    }
    Ok(out)
}
