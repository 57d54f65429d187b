//! Builds valid single-file Spur images from scratch.
//!
//! [`write_image`] streams an image described by a [`SynthSpec`] (word size,
//! heap size, number of segments and the gaps between them, a 512-byte
//! prefix, the format number, free chunks, base address, seed) to any
//! `Write + Seek`; [`write_image_file`] writes a file atomically and
//! [`image_bytes`] returns a small image in memory. [`write_image_like`]
//! fills the heap after another heap's mix of classes and sizes ([`Like`])
//! instead of the builder's own.
//!
//! # What an image guarantees
//!
//! Every image passes the checks of §8 of the format notes
//! (`docs/format.md`), as far as a file without a running VM can:
//!
//! * header: format 68021/6521 (68533/7033 with multiple bytecode sets),
//!   header size 128/64, flags 2 (floats little-endian), a non-zero
//!   `lastHash`, `firstSegSize` and `dataSize` matching the bytes written,
//!   `freeOldSpaceInImage` equal to the bytes in free chunks; the file is
//!   exactly prefix + header + data long;
//! * segments: each walks object by object exactly to its 16-byte bridge,
//!   which is in file encoding (short bridge header, or overflow word for a
//!   gap; next segment's size, 0 after the last);
//! * nil, false, true, the free-lists object and the hidden-roots object
//!   are the first five objects, at `base`, `+16`, `+32`, `+48` and `+576`
//!   (`+192` on 32-bit);
//! * the class table has [`classes`]' indices, with more than one page;
//!   every entry's identity hash is its index, and every visible object's
//!   class index names a class; classes have the Squeak layout and are
//!   instances of their metaclasses, which are instances of Metaclass;
//! * the special objects array holds what the VMs check at load
//!   (`splObj(7) == classAt(51)` and the other compact-class checks), a
//!   scheduler whose active process has a suspended context in a real
//!   method at a valid pc, and an idle process waiting in its list;
//! * every pointer slot (all slots of pointer objects, the literals of
//!   methods) holds an immediate or the address of an object header: never
//!   a free chunk, a bridge or an overflow word. Pointers cross segments in
//!   both directions when there are several;
//! * every free chunk is on exactly one free list (or in the size-ordered
//!   tree of head 0), with the VM's own header encoding;
//! * no forwarders; no remembered, grey or marked bits (bridges excepted);
//! * the same spec always produces the same bytes.
//!
//! What it does not pretend: the heap is not a working Smalltalk system.
//! Apart from the few methods the processes run, objects are random data
//! of the right shapes, and the resumable process has not gone through the
//! snapshot primitive (its stack top is not `true`).
//!
//! # Cost
//!
//! The image is streamed through a large buffer in address order; only the
//! fixed structure (about 70 KiB on 64-bit, 38 KiB on 32-bit) is built in memory first. A few words
//! are patched at the end by seeking back: the header, the free-list heads,
//! the links of the free tree, and up to 64 forward pointers out of segment
//! 0. Memory use stays at a few MiB whatever the heap size.

#![forbid(unsafe_code)]

pub mod classes;
mod emit;
mod encode;
mod fill;
mod free;
mod kernel;
mod kinds;
mod plan;
mod rng;

pub use kinds::small_kinds;

#[cfg(test)]
mod check;
#[cfg(test)]
mod tests;

use spur_format::layout::to_usize;
use std::fs;
use std::io::{self, Cursor, Seek, Write};
use std::path::Path;

use spur_format::raw::{
    FORMAT_SPUR32, FORMAT_SPUR32_SISTA, FORMAT_SPUR64, FORMAT_SPUR64_SISTA, PREFIX_BYTES,
};
use spur_format::{ImageHeader, OldAddr, WordSize};

use emit::Emitter;
use fill::Filler;
use kernel::Kernel;

/// Default `oldBaseAddr` of 64-bit images: where PVM puts old space.
pub const DEFAULT_BASE_64: u64 = 0x100_0000_0000;
/// Default `oldBaseAddr` of 32-bit images: where PVM puts old space.
pub const DEFAULT_BASE_32: u64 = 0x4000_0000;

/// The text at the start of the 512-byte prefix (the rest is zeros): what
/// a Unix `exec` line in front of an image looks like.
pub const PREFIX_TEXT: &[u8] = b"#!/usr/bin/env spur-vm\n";

/// What image to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSpec {
    /// Word size: [`WordSize::W32`] or [`WordSize::W64`].
    pub word: WordSize,
    /// Target `dataSize` in bytes, rounded up to 8. It is a lower bound:
    /// segment 0 always has room for the fixed structure plus 4 KiB, and
    /// every later segment is at least 4 KiB.
    pub heap_bytes: u64,
    /// Number of segments, at least 1.
    pub segments: usize,
    /// Bytes between one segment's end and the next one's start (a multiple of 8).
    pub gap_bytes: u64,
    /// Put the 512-byte prefix ([`PREFIX_TEXT`] then zeros) before the header.
    pub prefix: bool,
    /// Format 68533/7033 (multiple bytecode sets) instead of 68021/6521;
    /// some methods are then written in the SistaV1 set.
    pub multiple_bytecode_sets: bool,
    /// Scatter free chunks through the heap, linked in the free lists.
    pub free_chunks: bool,
    /// `oldBaseAddr`: the address of nil (a non-zero multiple of 8).
    pub old_base: u64,
    /// Seed of the generator: the same spec gives the same bytes.
    pub seed: u64,
    /// What the resumable process computes when an interpreter runs it.
    pub work: KernelWork,
}

/// The work of the builder's resumable process. `SmallInteger>>synthStep`
/// answers `41 + 1`; its caller `UndefinedObject>>synthRun` then sends
/// `42 synthWork: n` (or `synthLoop: n`) and quits (primitive 113) with the
/// answer as the exit code:
///
/// ```text
/// sum := 0. i := 1.
/// [i <= n] whileTrue: [sum := sum + (i synthSquare \\ self). i := i + 1].
/// arr := {sum. i}.
/// ^(arr at: 1) + (arr at: 2) \\ 256
/// ```
///
/// `synthLoop:` computes `i * i` inline instead of sending `synthSquare`
/// (`Object>>synthSquare`, `^self * self`, found through SmallInteger and
/// Integer). Both answer [`KernelWork::expected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelWork {
    /// `n`, the loop's iterations.
    pub iterations: u32,
    /// Send `synthSquare` in the loop (`synthWork:`) or not (`synthLoop:`).
    pub sends: bool,
}

impl Default for KernelWork {
    fn default() -> Self {
        KernelWork {
            iterations: 100,
            sends: true,
        }
    }
}

impl KernelWork {
    /// The exit code the run ends with, computed here independently.
    pub fn expected(&self) -> i64 {
        let n = self.iterations as i64;
        let sum: i64 = (1..=n).map(|i| i * i % 42).sum();
        (sum + n + 1) % 256
    }
}

impl SynthSpec {
    /// A one-segment image of about `heap_bytes`: no gap, no prefix, format
    /// 68021/6521, free chunks on, the default base for the word size, seed 1.
    pub fn new(word: WordSize, heap_bytes: u64) -> Self {
        SynthSpec {
            word,
            heap_bytes,
            segments: 1,
            gap_bytes: 0,
            prefix: false,
            multiple_bytecode_sets: false,
            free_chunks: true,
            old_base: match word {
                WordSize::W64 => DEFAULT_BASE_64,
                WordSize::W32 => DEFAULT_BASE_32,
            },
            seed: 1,
            work: KernelWork::default(),
        }
    }

    /// The image format number this spec produces.
    pub fn format(&self) -> u32 {
        match (self.word, self.multiple_bytecode_sets) {
            (WordSize::W64, false) => FORMAT_SPUR64,
            (WordSize::W64, true) => FORMAT_SPUR64_SISTA,
            (WordSize::W32, false) => FORMAT_SPUR32,
            (WordSize::W32, true) => FORMAT_SPUR32_SISTA,
        }
    }

    /// Checks the fields that do not depend on the layout.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.segments == 0 {
            return Err(SpecError::NoSegments);
        }
        if !self.gap_bytes.is_multiple_of(8) {
            return Err(SpecError::GapNotAligned {
                gap: self.gap_bytes,
            });
        }
        if self.old_base == 0 || !self.old_base.is_multiple_of(8) {
            return Err(SpecError::BadBase {
                base: self.old_base,
            });
        }
        Ok(())
    }
}

/// Why a spec cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// `segments` is 0.
    #[error("an image needs at least one segment")]
    NoSegments,
    /// The gap is not a multiple of 8.
    #[error("the gap between segments is {gap} bytes; it must be a multiple of 8")]
    GapNotAligned {
        /// The requested gap.
        gap: u64,
    },
    /// The base is 0 or unaligned.
    #[error("oldBaseAddr {base:#x} must be a non-zero multiple of 8")]
    BadBase {
        /// The requested base.
        base: u64,
    },
    /// The segments and gaps would not fit the address space of the word size.
    #[error("the heap would span {base:#x}..{end:#x}, past the {limit:#x} address limit of this word size{}",
            room_hint(*.base, *.end, *.limit))]
    PastAddressLimit {
        /// The requested base.
        base: u64,
        /// Where the last segment would end.
        end: u64,
        /// The limit of the word size.
        limit: u64,
    },
}

/// What base would fit a heap of `end - base` bytes below `limit`.
fn room_hint(base: u64, end: u64, limit: u64) -> String {
    match limit.checked_sub(end.saturating_sub(base)) {
        Some(top) if top >= 8 => format!(" (a base at or below {:#x} fits it)", top / 8 * 8),
        _ => " (no base fits it)".to_owned(),
    }
}

impl From<SpecError> for io::Error {
    fn from(e: SpecError) -> Self {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// One segment as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthSegment {
    /// Its position in the file, from 0.
    pub index: usize,
    /// Old address of its first byte.
    pub old_start: u64,
    /// Bytes, the 16-byte bridge included.
    pub size: u64,
    /// File offset of its first byte.
    pub file_offset: u64,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthReport {
    /// Entities a heap walk visits in all segments before each bridge:
    /// objects, free chunks and hidden objects; bridges excluded.
    pub objects: u64,
    /// Free chunks in the heap.
    pub free_chunks: u64,
    /// Bytes in those free chunks (= `freeOldSpaceInImage`).
    pub free_bytes: u64,
    /// Non-nil class-table entries (classes and metaclasses).
    pub classes: u64,
    /// The segments, in file order.
    pub segments: Vec<SynthSegment>,
    /// Address of nil (= `oldBaseAddr`).
    pub nil: u64,
    /// Address of the special objects array.
    pub special_objects_oop: u64,
    /// `dataSize`: the sum of the segment sizes.
    pub data_size: u64,
    /// Length of the image: prefix + header + data.
    pub file_len: u64,
    /// The format number.
    pub format: u32,
}

/// Writes the image described by `spec` to `out`, starting at its current
/// position, and leaves `out` positioned after the image.
pub fn write_image<W: Write + Seek>(spec: &SynthSpec, out: &mut W) -> io::Result<SynthReport> {
    write_image_like(spec, None, out)
}

/// One class of a heap whose mix an image is to follow (see [`Like`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LikeClass {
    /// The class name. A name the builder defines ([`classes::CLASSES`])
    /// is that class; any other becomes a class of its own, a subclass of
    /// Object with an empty method dictionary.
    pub name: String,
    /// The instance specification of the class's format (§3.2): 0 to 5
    /// pointers, 9 to 23 raw data, 24 and above compiled methods.
    pub inst_spec: u8,
    /// Fixed (named) slots of its instances.
    pub fixed_slots: u64,
    /// Instances in the heap followed.
    pub instances: u64,
    /// Bytes of those instances, headers included.
    pub bytes: u64,
}

/// A heap's mix of classes and sizes, for [`write_image_like`]: the filler
/// then writes objects of these classes in proportion to their instance
/// counts, each of about its class's mean size (variable-sized ones drawn
/// around that mean, so a few are large), instead of the builder's own mix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Like {
    /// The classes, each named once.
    pub classes: Vec<LikeClass>,
    /// Free chunks in the heap followed.
    pub free_chunks: u64,
    /// Their bytes, headers included: the chunks written follow their mean
    /// size (0: the builder's own sizes).
    pub free_bytes: u64,
}

/// The builder's class of this name in an image of this word size.
fn builder_class(word: WordSize, name: &str) -> Option<&'static classes::ClassDef> {
    classes::classes_for(word).find(|c| c.name == name)
}

/// Class-table index of the first class a [`Like`] adds (its metaclass
/// follows it; the next class is two further on).
pub const FIRST_LIKE_INDEX: u32 = 2048;

/// [`write_image`], its objects following `like`'s mix when given.
pub fn write_image_like<W: Write + Seek>(
    spec: &SynthSpec,
    like: Option<&Like>,
    out: &mut W,
) -> io::Result<SynthReport> {
    spec.validate()?;
    let word = spec.word;
    let extra: Vec<(&str, u8, u64)> = like.map_or(Vec::new(), |l| {
        l.classes
            .iter()
            .filter(|c| builder_class(word, &c.name).is_none())
            .map(|c| (c.name.as_str(), c.inst_spec, c.fixed_slots))
            .collect()
    });
    let mut kernel = Kernel::build(
        word,
        spec.old_base,
        spec.multiple_bytecode_sets,
        spec.seed,
        spec.work,
        &extra,
    );
    let plan = plan::plan(spec, kernel.bytes())?;
    let prefix_bytes = if spec.prefix { PREFIX_BYTES } else { 0 };
    let header_size = word.standard_header_size() as u64;
    let data_offset = prefix_bytes + header_size;

    let mut em = Emitter::new(out, word)?;
    if spec.prefix {
        let mut prefix = vec![0u8; to_usize(PREFIX_BYTES)];
        prefix[..PREFIX_TEXT.len()].copy_from_slice(PREFIX_TEXT);
        em.raw(&prefix)?;
    }
    em.raw(&vec![0u8; to_usize(header_size)])?;

    let mut filler = Filler::new(
        word,
        spec.seed,
        spec.free_chunks,
        spec.multiple_bytecode_sets,
        plan.len(),
        &kernel,
    );
    if let Some(l) = like {
        filler.follow(l, &extra);
    }
    let mut segments = Vec::with_capacity(plan.len());
    for (i, seg) in plan.iter().enumerate() {
        segments.push(SynthSegment {
            index: i,
            old_start: seg.start,
            size: seg.size,
            file_offset: em.file_len(),
        });
        em.start_segment(seg.start, seg.size);
        if i == 0 {
            kernel.emit(&mut em)?;
        }
        filler.fill_segment(&mut em, i)?;
        let (gap, next) = match plan.get(i + 1) {
            Some(n) => (n.start - (seg.start + seg.size), n.size),
            None => (0, 0),
        };
        em.bridge(gap, next)?;
    }
    filler.finish(&mut em, kernel.free_lists_slot0);

    let data_size: u64 = plan.iter().map(|s| s.size).sum();
    let file_len = em.file_len();
    debug_assert_eq!(file_len, data_offset + data_size);
    let header = ImageHeader {
        format: spec.format(),
        multiple_bytecode_sets: spec.multiple_bytecode_sets,
        prefix_bytes,
        header_size,
        special_objects_oop: OldAddr::new(kernel.special_objects),
        // Non-zero, within the 22 bits the VM keeps.
        last_hash: 1 + (spec.seed.wrapping_mul(0x9E37_79B9) & 0x3F_FFFE),
        // 1024x768, as a VM would have saved its window.
        saved_window_size: (1024 << 16) | 768,
        first_segment_size: plan[0].size,
        free_old_space: filler.free.bytes,
        ..ImageHeader::new(word, OldAddr::new(spec.old_base), data_size)
    };
    em.patch(prefix_bytes, header.encode());
    let objects = em.objects();
    em.finish()?;
    Ok(SynthReport {
        objects,
        free_chunks: filler.free.count,
        free_bytes: filler.free.bytes,
        classes: kernel.classes(),
        segments,
        nil: spec.old_base,
        special_objects_oop: kernel.special_objects,
        data_size,
        file_len,
        format: spec.format(),
    })
}

/// Writes the image to `path` atomically: into a temporary file beside it,
/// synced, then renamed over `path`. On error the temporary file is removed.
///
/// A small helper for tests and examples: it checks nothing about `path`,
/// and a process killed while writing leaves `.NAME.PID.synth-tmp` behind.
/// `vm-loader synth` writes through `spur_loader::write_atomically` instead
/// (checked target, locked temporary cleaned up by the next write, the old
/// file's mode and owner).
pub fn write_image_file(spec: &SynthSpec, path: &Path) -> io::Result<SynthReport> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => Path::new(".").to_path_buf(),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let tmp = dir.join(format!(
        ".{}.{}.synth-tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        let report = write_image(spec, &mut f)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        Ok(report)
    })();
    match result {
        Ok(report) => {
            // Make the rename durable; not all platforms can sync a directory.
            if let Ok(d) = fs::File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(report)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Builds the image in memory: for small test images.
pub fn image_bytes(spec: &SynthSpec) -> io::Result<(Vec<u8>, SynthReport)> {
    let mut cur = Cursor::new(Vec::with_capacity(
        to_usize(spec.heap_bytes)
            .saturating_add(1 << 20)
            .min(1 << 30),
    ));
    let report = write_image(spec, &mut cur)?;
    Ok((cur.into_inner(), report))
}
