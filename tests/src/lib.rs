//! Shared helpers of the integration tests: where the corpus is, and facts
//! about its images from `SOURCES.md`.

#![forbid(unsafe_code)]

use spur_format::layout::to_usize;
use std::path::{Path, PathBuf};

pub mod mutate;

/// A real image of the corpus and the facts `SOURCES.md` lists for it.
#[derive(Debug, Clone, Copy)]
pub struct CorpusImage {
    /// File name inside the corpus folder.
    pub file: &'static str,
    /// Its format number.
    pub format: u32,
    /// Bytes per word.
    pub word_bytes: u64,
    /// The header's oldBaseAddr.
    pub old_base: u64,
    /// The header's specialObjectsOop.
    pub special_objects_oop: u64,
    /// Objects the loader counts in it, as `SOURCES.md` lists them.
    pub objects: u64,
}

/// The Spur images of `../shared/images/SOURCES.md`.
pub const CORPUS: &[CorpusImage] = &[
    CorpusImage {
        file: "pharo-vm-test-img-64.image",
        format: 68021,
        word_bytes: 8,
        old_base: 0x804000,
        special_objects_oop: 0x8351d8,
        objects: 2472,
    },
    CorpusImage {
        file: "pharo8-kernel-empharo-64.image",
        format: 68021,
        word_bytes: 8,
        old_base: 0x804000,
        special_objects_oop: 0x870c40,
        objects: 29904,
    },
    CorpusImage {
        file: "pharo-candle-squeakjs-headless-2020-32.image",
        format: 6521,
        word_bytes: 4,
        old_base: 0x3204000,
        special_objects_oop: 0x3224618,
        objects: 2493,
    },
    CorpusImage {
        file: "pharo-tiny-codeparadise-client-32.image",
        format: 6521,
        word_bytes: 4,
        old_base: 0x3204000,
        special_objects_oop: 0x3213ea0,
        objects: 4843,
    },
];

/// The non-Spur images and the format number each must be refused with.
pub const NON_SPUR: &[(&str, u32)] = &[
    (
        "non-spur/squeak-v3-closure-rsqueak-bootstrapped-6505-32.image",
        6505,
    ),
    ("non-spur/squeak-v3-mini-bigendian-6502-32.image", 6502),
];

/// The corpus folder `SPUR_CORPUS` names, if it is set. A relative path is
/// taken from the workspace root, where `cargo test` runs (cargo runs each
/// test binary in its own package folder, so the current folder will not do).
pub fn corpus_path() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("SPUR_CORPUS")?);
    Some(if dir.is_relative() {
        workspace_root().join(dir)
    } else {
        dir
    })
}

/// The workspace root: the folder above this package's.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package lives inside the workspace")
}

/// The corpus folder, for the tests over the real images.
///
/// Those tests are `#[ignore = "needs SPUR_CORPUS"]`, so a fresh clone's
/// `cargo test` lists them as ignored; CI sets `SPUR_CORPUS` and runs them
/// with `-- --include-ignored`. Once run, a test needs the corpus: an unset
/// variable or a folder without the corpus fails it instead of passing it.
pub fn corpus_dir() -> PathBuf {
    let dir = corpus_path()
        .unwrap_or_else(|| panic!("SPUR_CORPUS is not set; this test reads the real image corpus"));
    assert!(
        dir.join("SOURCES.md").is_file(),
        "SPUR_CORPUS={} does not hold the image corpus (no SOURCES.md)",
        dir.display()
    );
    dir
}

use spur_format::{Walk, WordSize, L32, L64};
use spur_loader::LoadedHeap;

/// Checks that `moved` holds the same objects as `reference`, in the same
/// order, with every word equal except pointers, which must point to the same
/// place once each segment's delta is undone. Returns the objects compared.
pub fn assert_same_objects(reference: &LoadedHeap, moved: &LoadedHeap) -> u64 {
    assert_eq!(reference.word(), moved.word());
    assert_eq!(reference.segments().len(), moved.segments().len());
    match reference.word() {
        WordSize::W64 => compare::<L64>(reference, moved),
        WordSize::W32 => compare::<L32>(reference, moved),
    }
}

/// The old address a new address of `heap` stands for.
fn undo(heap: &LoadedHeap, v: u64) -> Option<u64> {
    let s = heap
        .segments()
        .iter()
        .rev()
        .find(|s| v >= s.new_start.get() && v < s.new_start.get() + s.size)?;
    Some(
        v.wrapping_sub(s.new_start.get())
            .wrapping_add(s.old_start.get()),
    )
}

fn compare<L: spur_format::Layout>(a: &LoadedHeap, b: &LoadedHeap) -> u64 {
    let w = L::W;
    let mut n = 0;
    for i in 0..a.segments().len() {
        let (sa, sb) = (&a.segments()[i], &b.segments()[i]);
        assert_eq!(sa.old_start, sb.old_start);
        let (ba, bb) = (a.segment_bytes(i), b.segment_bytes(i));
        let wa: Vec<_> = Walk::<L>::new(ba, sa.new_start.get(), i).collect();
        let wb: Vec<_> = Walk::<L>::new(bb, sb.new_start.get(), i).collect();
        assert_eq!(wa.len(), wb.len(), "segment {i}: object counts differ");
        for (oa, ob) in wa.iter().zip(&wb) {
            assert_eq!(oa.offset, ob.offset);
            assert_eq!(
                oa.header, ob.header,
                "header at segment {i} offset {}",
                oa.offset
            );
            let end = oa.offset + 8 + to_usize(oa.num_slots.max(1)) * w;
            let mut at = oa.offset + 8;
            while at < end {
                let read = |bytes: &[u8]| -> u64 {
                    if w == 8 {
                        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
                    } else {
                        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as u64
                    }
                };
                let (va, vb) = (read(ba), read(bb));
                if va != vb {
                    let old_a = undo(a, va);
                    let old_b = undo(b, vb);
                    assert!(
                        old_a.is_some() && old_a == old_b,
                        "segment {i} object at offset {}: word at +{} is {va:#x} in one heap and {vb:#x} in the other, which undo to {old_a:x?} and {old_b:x?}",
                        oa.offset,
                        at - oa.offset
                    );
                }
                at += w;
            }
            n += 1;
        }
    }
    n
}

/// Tests in one binary run on parallel threads of one process, and loads at
/// fixed addresses would take each other's ranges: such tests hold this lock.
pub fn address_space() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every kind of builder image the loader must handle: 32/64-bit, one and
/// several segments with and without gaps, the prefix, 68533/7033, an
/// unaligned base, no free chunks.
pub fn image_kinds() -> Vec<(&'static str, spur_synth::SynthSpec)> {
    use spur_format::WordSize;
    let spec = |word, kib: u64| spur_synth::SynthSpec::new(word, kib << 10);
    let mut v = vec![];
    v.push(("w64-one", spec(WordSize::W64, 512)));
    v.push(("w32-one", spec(WordSize::W32, 512)));
    let mut s = spec(WordSize::W64, 2048);
    s.segments = 4;
    s.gap_bytes = 1 << 20;
    v.push(("w64-four-gaps", s));
    let mut s = spec(WordSize::W32, 1536);
    s.segments = 3;
    s.gap_bytes = 64 << 10;
    v.push(("w32-three-gaps", s));
    let mut s = spec(WordSize::W64, 1024);
    s.segments = 3;
    v.push(("w64-three-adjacent", s));
    let mut s = spec(WordSize::W64, 512);
    s.prefix = true;
    v.push(("w64-prefix", s));
    let mut s = spec(WordSize::W64, 512);
    s.multiple_bytecode_sets = true;
    v.push(("w64-68533", s));
    let mut s = spec(WordSize::W32, 512);
    s.multiple_bytecode_sets = true;
    s.prefix = true;
    v.push(("w32-7033-prefix", s));
    let mut s = spec(WordSize::W64, 512);
    s.free_chunks = false;
    s.old_base = 0x804008;
    v.push(("w64-unaligned-base-no-free", s));
    v
}
