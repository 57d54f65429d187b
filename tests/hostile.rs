//! Images made by hand to lie in one particular way, each a regression test
//! for a weakness found by the fuzz targets, the mutation sweep or review.
//! Every one must end in a typed error or a heap the verifier judges, and
//! quickly.

use spur_format::error::Chain;
use spur_format::objheader::ObjHeader;
use spur_format::{FileBridge, ImageHeader, OldAddr, WordSize};
use spur_loader::{load, verify, Backing, LoadOptions, PlacementRequest};

/// A 64-bit header for `data_size` bytes of heap at `old_base`.
fn header64(data_size: u64, old_base: u64, first_segment_size: u64) -> ImageHeader {
    ImageHeader {
        last_hash: 1,
        first_segment_size,
        ..ImageHeader::new(WordSize::W64, OldAddr::new(old_base), data_size)
    }
}

fn opts(placement: PlacementRequest) -> LoadOptions {
    LoadOptions {
        placement,
        backing: Backing::Pages,
        map_files: None,
        threads: spur_loader::Threads::default(),
    }
}

/// A million 32-byte segments, adjacent, each one Array whose only slot
/// points at its own segment's bridge. Relocating looked up each pointer's
/// segment by a linear scan and the verifier explained each bad pointer by
/// another: both quadratic in the number of segments, a hang for a file of
/// 32 MiB. Both are binary searches now, and the verifier explains only the
/// findings it keeps.
#[test]
fn a_million_segments_load_and_verify_in_linear_time() {
    let n: u64 = 1 << 20;
    let base = 0x40_0000_0000u64;
    let mut image = header64(n * 32, base, 32).encode();
    for i in 0..n {
        let start = base + i * 32;
        image.extend_from_slice(&ObjHeader::new(51, 2, 1, 0).0.to_le_bytes());
        image.extend_from_slice(&(start + 16).to_le_bytes());
        let next = if i + 1 == n { 0 } else { 32 };
        image.extend_from_slice(&FileBridge::encode(WordSize::W64, 0, next));
    }
    // What is checked is what the work finds; a return to quadratic work
    // shows as a hang that CI's time limit stops, not as a timed assertion.
    // Relocated, every pointer is swizzled, then the roots are looked for
    // after nil, false, true and the free lists, and not found.
    let e = load(&image[..], &opts(PlacementRequest::Relocate)).unwrap_err();
    assert!(Chain(&e).to_string().contains("segment 3"), "{}", Chain(&e));
    // In place it loads, and the verifier walks every segment and finds
    // each Array's pointer at a bridge (and nil and the others no such
    // objects): the first MAX_FINDINGS kept, the rest counted.
    let heap = load(&image[..], &opts(PlacementRequest::OldBase)).unwrap();
    assert_eq!(heap.segments().len() as u64, n);
    let r = verify(&heap);
    assert_eq!(r.objects, n);
    assert_eq!(r.errors.len(), spur_loader::verify::MAX_FINDINGS);
    let found = r.errors.len() as u64 + r.errors_dropped;
    assert!(found >= n, "{found} errors, first {}", r.errors[0]);
}

/// Bytes this thread has read through `read` and its kin (`rchar` of its
/// `/proc` I/O counters: other test threads' reads are not counted).
fn bytes_read_by_this_thread() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// A small composed folder written from a builder image, relocated (one segment).
fn composed_folder(dir: &std::path::Path, word: WordSize) -> std::path::PathBuf {
    let (image, _) = spur_synth::image_bytes(&spur_synth::SynthSpec::new(word, 0)).unwrap();
    let heap = load(&image[..], &opts(PlacementRequest::Relocate)).unwrap();
    let folder = dir.join("composed");
    spur_loader::write_composed(&heap, &folder, &Default::default()).unwrap();
    folder
}

/// A `.ston` file is a few hundred bytes; one of a gigabyte (sparse here)
/// was read whole into memory before it was parsed. Now no more than the
/// parser accepts is read, and the error says so.
#[test]
fn a_huge_ston_file_is_refused_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let folder = composed_folder(dir.path(), WordSize::W64);
    for name in ["header.ston", "seg0.ston"] {
        let p = folder.join(name);
        let good = std::fs::read(&p).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        let before = bytes_read_by_this_thread();
        let e = spur_loader::load_path(&folder, &LoadOptions::default()).unwrap_err();
        let read = bytes_read_by_this_thread() - before;
        assert!(read < 1 << 20, "{read} bytes read of a {name} of 1 GiB");
        assert!(e.is_bad_input(), "{e}");
        assert!(
            Chain(&e).to_string().contains(&format!("{name} line 1")),
            "{e}"
        );
        assert!(
            Chain(&e).to_string().contains("longer than any struct"),
            "{e}"
        );
        std::fs::write(&p, good).unwrap();
    }
    assert!(verify(&spur_loader::load_path(&folder, &LoadOptions::default()).unwrap()).ok());
}

/// A perm space must lie at Pharo's perm base, below the address limit,
/// and apart from old space.
#[test]
fn a_perm_space_past_the_address_limit_or_over_old_space_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // 32-bit, so that the sparse perm space file fits the file system.
    let folder = composed_folder(dir.path(), WordSize::W32);
    let base = spur_format::read::composed::perm_space_base(WordSize::W32);
    let seg0 = std::fs::read_to_string(folder.join("seg0.ston")).unwrap();
    let header = std::fs::read_to_string(folder.join("header.ston")).unwrap();
    let field = |text: &str, name: &str| -> u64 {
        text.split(&format!("#{name} : "))
            .nth(1)
            .unwrap()
            .split([',', '\n'])
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let old_size = field(&header, "dataSize");
    // A perm space that ends one word past 4 GiB (a sparse file).
    let size = WordSize::W32.address_limit() - base + 8;
    std::fs::write(
        folder.join("permSpace.ston"),
        spur_format::write::composed::segment_ston(base, size),
    )
    .unwrap();
    std::fs::File::create(folder.join("permSpace.data"))
        .unwrap()
        .set_len(size)
        .unwrap();
    std::fs::write(
        folder.join("header.ston"),
        header.replacen(
            &format!("#dataSize : {old_size},"),
            &format!("#dataSize : {},", old_size + size),
            1,
        ),
    )
    .unwrap();
    let e = spur_loader::load_path(&folder, &LoadOptions::default()).unwrap_err();
    assert!(
        Chain(&e).to_string().contains("past the address limit"),
        "{e}"
    );

    // Old space moved onto perm space.
    std::fs::write(
        folder.join("permSpace.ston"),
        spur_format::write::composed::segment_ston(base, 64),
    )
    .unwrap();
    std::fs::File::create(folder.join("permSpace.data"))
        .unwrap()
        .set_len(64)
        .unwrap();
    let start = field(&seg0, "startAddress");
    let special = field(&header, "initialSpecialObjectsOop");
    let moved = base - 32;
    std::fs::write(
        folder.join("seg0.ston"),
        seg0.replace(&start.to_string(), &moved.to_string()),
    )
    .unwrap();
    std::fs::write(
        folder.join("header.ston"),
        header
            .replacen(
                &format!("#dataSize : {old_size},"),
                &format!("#dataSize : {},", old_size + 64),
                1,
            )
            .replace(&start.to_string(), &moved.to_string())
            .replace(&special.to_string(), &(special - start + moved).to_string()),
    )
    .unwrap();
    let e = spur_loader::load_path(&folder, &LoadOptions::default()).unwrap_err();
    assert!(e.is_bad_input(), "{e}");
    assert!(
        Chain(&e)
            .to_string()
            .contains("overlaps an old-space segment"),
        "{e}"
    );
}

/// A 32-bit image may ask for almost 4 GiB of headroom (extraVMMemory is a
/// u32): relocating it looked for a heap plus 4 GiB below 4 GiB and gave
/// up. Headroom is a wish; the heap alone is placed when it does not fit.
#[test]
fn a_32_bit_image_asking_for_4_gib_of_headroom_still_relocates() {
    let (mut image, _) =
        spur_synth::image_bytes(&spur_synth::SynthSpec::new(WordSize::W32, 0)).unwrap();
    // extraVMMemory: the u32 after the six header words (§1.3).
    image[32..36].copy_from_slice(&0xFFFF_FFF8u32.to_le_bytes());
    let heap = load(&image[..], &opts(PlacementRequest::Relocate)).unwrap();
    assert!(heap.nil().get() < 1 << 32);
    assert_eq!(heap.headroom(), 0);
    assert!(verify(&heap).ok());
    drop(heap);
    let heap = load(&image[..], &opts(PlacementRequest::OldBase)).unwrap();
    if heap.placement() == spur_loader::Placement::OldBase {
        let end = heap.segments().last().unwrap();
        assert_eq!(
            heap.headroom(),
            (1 << 32) - (end.new_start.get() + end.size),
            "in place: the headroom up to 4 GiB"
        );
    }
}

/// A header claiming a terabyte of heap in a file of a few kilobytes is
/// refused before anything is reserved, with the numbers.
#[test]
fn a_terabyte_claimed_by_a_short_file_is_refused_before_reserving() {
    let mut image = header64(1 << 40, 0x10_0000_0000, 1 << 40).encode();
    image.resize(4096, 0);
    let e = load(&image[..], &opts(PlacementRequest::Relocate)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "header field dataSize says 1099511627776 bytes of heap from file offset 128, \
         but the file holds only 3968 bytes there"
    );
}

/// A hidden root (the mark stack, slot 4096 of the hidden roots) that leads
/// to `false` instead of an object-stack page: relocating refuses it, and
/// the error names `false`'s real address, segment and offset (it named
/// address 0 once).
#[test]
fn a_bad_object_stack_root_is_reported_at_its_real_address() {
    use spur_format::raw::MARK_STACK_ROOT_INDEX;
    use spur_format::FormatError;
    use spur_loader::LoadError;
    let (mut bytes, _) =
        spur_synth::image_bytes(&spur_synth::SynthSpec::new(WordSize::W64, 256 << 10)).unwrap();
    let header = ImageHeader::parse(&bytes, bytes.len() as u64).unwrap();
    let old_base = header.old_base.get();
    // Where the hidden roots lie, from a first load (offsets from nil are
    // the same in the file).
    let heap = load(bytes.as_slice(), &opts(PlacementRequest::Relocate)).unwrap();
    let nil = heap.nil();
    let free_lists = nil.plus(48);
    let hidden = heap.object_after(free_lists).unwrap();
    let slot = hidden.offset_from(nil).unwrap() + 8 + MARK_STACK_ROOT_INDEX * 8;
    drop(heap);
    let at = usize::try_from(header.header_size + slot).unwrap();
    bytes[at..at + 8].copy_from_slice(&(old_base + 16).to_le_bytes());
    let e = load(bytes.as_slice(), &opts(PlacementRequest::Relocate)).unwrap_err();
    let LoadError::Relocate(FormatError::BadObject {
        segment,
        offset,
        addr,
        ..
    }) = &e
    else {
        panic!("{e}");
    };
    assert_eq!((*segment, *offset), (0, 16), "{e}");
    assert_ne!(*addr, 0, "{e}");
    assert!(Chain(&e).to_string().contains(&format!("{addr:#x}")), "{e}");
    assert!(Chain(&e).to_string().contains("hidden root 4096"), "{e}");
}
