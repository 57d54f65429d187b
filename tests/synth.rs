//! The loader over images the builder makes: every kind of image, placement
//! at old addresses, relocation, occupied ranges, and deliberate corruption.

use spur_format::layout::to_usize;
use std::path::{Path, PathBuf};

use spur_format::{ImageHeader, SegmentTable, Walk, WordSize, L32, L64};
use spur_loader::{
    load_path, verify, FindingKind, LoadError, LoadOptions, Placement, PlacementRequest,
};
use spur_synth::{SynthReport, SynthSpec};
use spur_tests::{address_space, assert_same_objects};

fn spec(word: WordSize, kib: u64) -> SynthSpec {
    SynthSpec::new(word, kib << 10)
}

fn write(dir: &Path, name: &str, spec: &SynthSpec) -> (PathBuf, SynthReport) {
    let path = dir.join(name);
    let report = spur_synth::write_image_file(spec, &path).unwrap();
    (path, report)
}

fn kinds() -> Vec<(&'static str, SynthSpec)> {
    spur_tests::image_kinds()
}

#[test]
fn every_kind_loads_in_place_and_relocated_intact() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    for (name, spec) in kinds() {
        let (path, report) = write(dir.path(), &format!("{name}.image"), &spec);
        let heap =
            load_path(&path, &LoadOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            heap.placement(),
            Placement::OldBase,
            "{name}: {:?}",
            heap.fallback_reason()
        );
        assert!(!heap.swizzled(), "{name}");
        assert_eq!(heap.segments().len(), spec.segments, "{name}");
        for (s, r) in heap.segments().iter().zip(&report.segments) {
            assert_eq!(s.old_start.get(), r.old_start, "{name}");
            assert_eq!(
                s.new_start.get(),
                r.old_start,
                "{name}: segment {} moved",
                s.index
            );
        }
        let v = verify(&heap);
        assert!(v.ok(), "{name}: {:#?}", &v.errors[..v.errors.len().min(5)]);
        assert_eq!(v.objects, report.objects, "{name}");
        assert_eq!(v.free_chunks, report.free_chunks, "{name}");
        assert_eq!(v.classes, report.classes, "{name}");

        for req in [
            PlacementRequest::Relocate,
            PlacementRequest::At(0x2345_6788),
        ] {
            let opts = LoadOptions {
                placement: req,
                ..Default::default()
            };
            let moved = load_path(&path, &opts).unwrap_or_else(|e| panic!("{name} {req:?}: {e}"));
            assert_eq!(moved.placement(), Placement::Relocated, "{name}");
            assert!(moved.swizzled());
            if let PlacementRequest::At(a) = req {
                assert_eq!(moved.nil().get(), a);
            }
            let v = verify(&moved);
            assert!(
                v.ok(),
                "{name} {req:?}: {:#?}",
                &v.errors[..v.errors.len().min(5)]
            );
            assert_eq!(v.objects, report.objects);
            assert_eq!(assert_same_objects(&heap, &moved), report.objects);
        }
    }
}

#[test]
fn a_taken_segment_range_makes_the_loader_relocate_and_say_why() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(WordSize::W64, 2048);
    s.segments = 3;
    s.gap_bytes = 4 << 20;
    let (path, report) = write(dir.path(), "taken.image", &s);
    let seg = &report.segments[1];
    let page = spur_mem::page_size();
    let lo = spur_mem::page_floor(seg.old_start + seg.size / 2);
    let squatter = spur_mem::Reservation::at(lo, page).unwrap();
    let heap = load_path(&path, &LoadOptions::default()).unwrap();
    assert_eq!(heap.placement(), Placement::Relocated);
    assert!(heap.swizzled());
    let why = heap.fallback_reason().expect("a reason");
    assert!(why.contains(&format!("{lo:#x}")), "{why}");
    let v = verify(&heap);
    assert!(v.ok(), "{:#?}", v.errors);
    assert_eq!(v.objects, report.objects);
    drop(heap);
    drop(squatter);
    let heap = load_path(&path, &LoadOptions::default()).unwrap();
    assert_eq!(heap.placement(), Placement::OldBase);
}

#[test]
fn asking_for_a_taken_base_is_an_error_that_names_the_occupant() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write(dir.path(), "base.image", &spec(WordSize::W64, 256));
    let squatter = spur_mem::Reservation::anywhere(1 << 20, 0).unwrap();
    let opts = LoadOptions {
        placement: PlacementRequest::At(squatter.base() + 4096),
        ..Default::default()
    };
    let e = load_path(&path, &opts).unwrap_err();
    assert!(
        matches!(e, LoadError::Memory(spur_mem::MemError::Occupied { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("already in use"), "{e}");
}

// ---- deliberate corruption ----

/// The image's bytes, its header and segment table.
fn parse(bytes: &[u8]) -> (ImageHeader, SegmentTable) {
    let h = ImageHeader::parse(bytes, bytes.len() as u64).unwrap();
    let t = SegmentTable::read(&h, |off| {
        let o = to_usize(off);
        Ok::<_, spur_format::FormatError>(bytes[o..o + 16].try_into().unwrap())
    })
    .unwrap();
    (h, t)
}

/// Finds, in segment 0 of the file, the first object matching `pred`; returns
/// the file offset of its header and its address.
fn find(
    bytes: &[u8],
    word: WordSize,
    pred: impl Fn(&spur_format::Obj, &[u8]) -> bool,
) -> (usize, u64) {
    let (_, t) = parse(bytes);
    let s = &t.segments[0];
    let seg = &bytes[to_usize(s.file_offset)..to_usize(s.file_offset + s.size)];
    let found = match word {
        WordSize::W64 => Walk::<L64>::new(seg, s.old_start.get(), 0).find(|o| pred(o, seg)),
        WordSize::W32 => Walk::<L32>::new(seg, s.old_start.get(), 0).find(|o| pred(o, seg)),
    }
    .expect("an object to corrupt");
    (
        to_usize(s.file_offset) + found.offset,
        s.old_start.get() + found.offset as u64,
    )
}

fn verify_bytes(dir: &Path, name: &str, bytes: &[u8]) -> spur_loader::Report {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let heap = load_path(&path, &LoadOptions::default()).unwrap();
    verify(&heap)
}

#[test]
fn the_verifier_finds_a_pointer_into_the_middle_of_an_object() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    for word in [WordSize::W64, WordSize::W32] {
        let (mut bytes, _) = spur_synth::image_bytes(&spec(word, 512)).unwrap();
        let wb = to_usize(word.bytes());
        // An Array (class index 51) past the first objects, with a pointer in slot 0.
        let (off, addr) = find(&bytes, word, |o, seg| {
            o.header.class_index() == 51 && o.num_slots >= 2 && o.offset > 40_000 && {
                let at = o.offset + 8;
                let v = if wb == 8 {
                    u64::from_le_bytes(seg[at..at + 8].try_into().unwrap())
                } else {
                    u32::from_le_bytes(seg[at..at + 4].try_into().unwrap()) as u64
                };
                !word.is_immediate(v)
            }
        });
        let slot = off + 8;
        let old = if wb == 8 {
            u64::from_le_bytes(bytes[slot..slot + 8].try_into().unwrap())
        } else {
            u32::from_le_bytes(bytes[slot..slot + 4].try_into().unwrap()) as u64
        };
        // Point at the array's own slot 1: inside an object, not a header.
        let bad = addr + 8 + wb as u64;
        bytes[slot..slot + wb].copy_from_slice(&bad.to_le_bytes()[..wb]);
        assert_ne!(old, bad);
        let r = verify_bytes(dir.path(), "middle.image", &bytes);
        assert!(!r.ok());
        let f = r
            .errors
            .iter()
            .find(|f| f.kind == FindingKind::Pointer && f.addr == addr)
            .unwrap_or_else(|| {
                panic!("{word:?}: no pointer finding at {addr:#x}: {:#?}", r.errors)
            });
        assert!(f.what.contains("middle of an object"), "{}", f.what);
        assert!(f.what.contains("slot 0"), "{}", f.what);
    }
}

#[test]
fn the_verifier_finds_a_bad_class_index() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    let (mut bytes, _) = spur_synth::image_bytes(&spec(WordSize::W64, 512)).unwrap();
    let (off, addr) = find(&bytes, WordSize::W64, |o, _| {
        o.header.class_index() == 52 && o.offset > 40_000
    });
    let h = u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap());
    let bad = (h & !0x3F_FFFF) | 0x3F_FF00;
    bytes[off..off + 8].copy_from_slice(&bad.to_le_bytes());
    let r = verify_bytes(dir.path(), "class.image", &bytes);
    let f = r
        .errors
        .iter()
        .find(|f| f.kind == FindingKind::ClassTable && f.addr == addr)
        .unwrap_or_else(|| panic!("no class finding: {:#?}", r.errors));
    assert!(
        f.what.contains(&format!("class index {}", 0x3F_FF00)),
        "{}",
        f.what
    );
}

#[test]
fn a_broken_bridge_is_refused_with_its_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(WordSize::W64, 1024);
    s.segments = 3;
    s.gap_bytes = 1 << 20;
    let (mut bytes, _) = spur_synth::image_bytes(&s).unwrap();
    let (_, t) = parse(&bytes);
    let seg = &t.segments[1];
    let at = to_usize(seg.file_offset + seg.size - 16);
    // A word that is neither a short bridge header nor an overflow word.
    bytes[at..at + 8].copy_from_slice(&0x0300_0000_1000_0034u64.to_le_bytes());
    let path = dir.path().join("bridge.image");
    std::fs::write(&path, &bytes).unwrap();
    let e = load_path(&path, &LoadOptions::default()).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("segment 1 bridge") && text.contains(&format!("file offset {at}")),
        "{text}"
    );
}

#[test]
fn a_truncated_segment_is_refused_or_found() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    for word in [WordSize::W64, WordSize::W32] {
        let (bytes, _) = spur_synth::image_bytes(&spec(word, 512)).unwrap();
        // The file cut short: refused before anything is mapped.
        let path = dir.path().join("short.image");
        std::fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
        let e = load_path(&path, &LoadOptions::default()).unwrap_err();
        assert!(e.to_string().contains("dataSize"), "{e}");
        assert!(e.is_bad_input());

        // The segment cut short by its header: the walk runs over the bridge.
        // Cutting 8 bytes always splits the segment's last object (every object
        // is at least 16 bytes), so the walk must run over the new bridge.
        let mut cut = bytes.clone();
        let (h, _) = parse(&bytes);
        let (wb, first_seg_field) = match word {
            WordSize::W64 => (8, 72),
            WordSize::W32 => (4, 48),
        };
        let hs = to_usize(h.prefix_bytes);
        let fs = h.first_segment_size - 8;
        cut[hs + first_seg_field..hs + first_seg_field + wb]
            .copy_from_slice(&fs.to_le_bytes()[..wb]);
        cut[hs + 8..hs + 8 + wb].copy_from_slice(&(h.data_size - 8).to_le_bytes()[..wb]);
        let at = to_usize(h.data_offset() + fs - 16);
        cut[at..at + 16].copy_from_slice(&spur_format::FileBridge::encode(word, 0, 0));
        let r = verify_bytes(dir.path(), "cut.image", &cut);
        assert!(!r.ok());
        assert!(
            r.errors.iter().any(|f| f.kind == FindingKind::Segment),
            "{word:?}: {:#?}",
            r.errors
        );
    }
}

#[test]
fn byte_swapped_and_unknown_formats_are_refused_by_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, report) = spur_synth::image_bytes(&spec(WordSize::W32, 256)).unwrap();
    // The format word as a big-endian writer would store it.
    let mut swapped = bytes.clone();
    swapped[0..4].copy_from_slice(&report.format.to_be_bytes());
    let path = dir.path().join("swapped.image");
    std::fs::write(&path, &swapped).unwrap();
    let e = load_path(&path, &LoadOptions::default()).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("format 6521 found byte-swapped") && text.contains("big-endian Spur image"),
        "{text}"
    );

    let mut unknown = bytes;
    unknown[0..4].copy_from_slice(&0x1234_5678u32.to_le_bytes());
    std::fs::write(&path, &unknown).unwrap();
    let text = load_path(&path, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("0x12345678") && text.contains("no known image format"),
        "{text}"
    );
}
