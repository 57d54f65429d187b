//! Pharo composed images: written from a loaded heap, read back (by reading
//! the segment files, and by mapping them in place when asked), relocated
//! when asked, and bad folders refused; and what a truncated segment file
//! does to a heap mapped from it.

use spur_format::layout::to_usize;
use std::path::Path;

use spur_format::error::Chain;
use spur_format::WordSize;
use spur_loader::{
    load_path, verify, write_composed, FilesUnchanged, LoadOptions, Placement, PlacementRequest,
};
use spur_synth::SynthSpec;
use spur_tests::{address_space, assert_same_objects, corpus_dir, CORPUS};

fn synth(dir: &Path, name: &str, spec: &SynthSpec) -> std::path::PathBuf {
    let p = dir.join(name);
    spur_synth::write_image_file(spec, &p).unwrap();
    p
}

fn multi_segment(word: WordSize) -> SynthSpec {
    let mut s = SynthSpec::new(word, 2 << 20);
    s.segments = 3;
    s.gap_bytes = 1 << 20;
    s
}

/// Options that map a composed folder's segment files.
fn mapped() -> LoadOptions {
    // SAFETY: every folder these tests map is their own, in a temporary
    // folder; only `a_truncated_segment_file_kills_the_mapped_heap_with_sigbus`
    // truncates one under a mapped heap, in a child process it expects to die.
    let promise = unsafe { FilesUnchanged::assume() };
    LoadOptions {
        map_files: Some(promise),
        ..Default::default()
    }
}

/// Writes `image` as a composed folder, loads the folder at its old
/// addresses read (the default) and mapped, and relocated, and checks each
/// against the single file.
fn round_trip(image: &Path, folder: &Path) {
    let single = load_path(image, &LoadOptions::default()).unwrap();
    assert_eq!(single.placement(), Placement::OldBase);
    let written = write_composed(&single, folder, &Default::default()).unwrap();
    assert_eq!(written.segments.len(), single.segments().len());
    let objects = verify(&single).objects;
    // The folder's heap wants the same old addresses.
    drop(single);

    for (opts, map) in [(LoadOptions::default(), false), (mapped(), true)] {
        let heap = load_path(folder, &opts).unwrap();
        assert_eq!(
            heap.placement(),
            Placement::OldBase,
            "{:?}",
            heap.fallback_reason()
        );
        assert!(!heap.swizzled());
        for s in heap.segments() {
            assert_eq!(s.new_start.get(), s.old_start.get());
            assert_eq!(
                s.mapped,
                map && s.old_start.get() % spur_mem::page_size() == 0,
                "segment {}",
                s.index
            );
        }
        let v = verify(&heap);
        assert!(v.ok(), "{:#?}", &v.errors[..v.errors.len().min(5)]);
        assert_eq!(v.objects, objects);
    }

    let single = load_path(image, &LoadOptions::default()).unwrap();
    let opts = LoadOptions {
        placement: PlacementRequest::Relocate,
        ..Default::default()
    };
    let moved = load_path(folder, &opts).unwrap();
    assert!(moved.swizzled());
    assert!(moved.segments().iter().all(|s| !s.mapped));
    let v = verify(&moved);
    assert!(v.ok(), "{:#?}", &v.errors[..v.errors.len().min(5)]);
    assert_eq!(assert_same_objects(&single, &moved), objects);
}

#[test]
fn builder_images_round_trip_through_the_composed_format() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    for word in [WordSize::W64, WordSize::W32] {
        let image = synth(dir.path(), "multi.image", &multi_segment(word));
        round_trip(&image, &dir.path().join(format!("multi-{word:?}")));
        let mut one = SynthSpec::new(word, 512 << 10);
        one.old_base += 8; // not page-aligned: read, not mapped
        let image = synth(dir.path(), "one.image", &one);
        round_trip(&image, &dir.path().join(format!("one-{word:?}")));
    }
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn corpus_images_round_trip_through_the_composed_format() {
    let corpus = corpus_dir();
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    for img in CORPUS {
        round_trip(&corpus.join(img.file), &dir.path().join(img.file));
    }
}

#[test]
fn the_folder_has_the_files_fields_and_order_the_pharo_vm_writes() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    let image = synth(dir.path(), "m.image", &multi_segment(WordSize::W64));
    let heap = load_path(&image, &LoadOptions::default()).unwrap();
    let folder = dir.path().join("m");
    write_composed(&heap, &folder, &Default::default()).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "header.ston",
            "seg0.data",
            "seg0.ston",
            "seg1.data",
            "seg1.ston",
            "seg2.data",
            "seg2.ston"
        ]
    );
    let header = std::fs::read_to_string(folder.join("header.ston")).unwrap();
    let fields: Vec<&str> = header
        .lines()
        .skip(1)
        .filter_map(|l| l.strip_prefix("\t#"))
        .map(|l| l.split(" : ").next().unwrap())
        .collect();
    assert_eq!(header.lines().next(), Some("SpurImageHeaderStruct {"));
    assert!(
        header.ends_with("\n}"),
        "no newline after the closing brace"
    );
    // The builder saves a window size (1024x768), as Squeak and older Pharo
    // images do: it follows the Pharo VM's fields; images without one (all
    // that the Pharo VM writes) get exactly the Pharo VM's list.
    assert_ne!(heap.header().saved_window_size, 0);
    assert_eq!(fields.last(), Some(&"savedWindowSize"));
    assert_eq!(
        fields[..fields.len() - 1],
        [
            "dataSize",
            "hdrOldSpaceSize",
            "oldBaseAddr",
            "initialSpecialObjectsOop",
            "headerFlags",
            "extraVMMemory",
            "hdrNumStackPages",
            "hdrCogCodeSize",
            "hdrEdenBytes",
            "hdrMaxExtSemTabSize",
            "firstSegSize",
            "freeOldSpaceInImage",
            "swapBytes",
            "hdrLastHash",
            "imageFormat",
            "imageHeaderSize",
            "imageVersion"
        ]
    );
    let s = &heap.segments()[1];
    assert_eq!(
        std::fs::read_to_string(folder.join("seg1.ston")).unwrap(),
        format!(
            "ComposedMetadataStruct {{\n\t#startAddress : {},\n\t#dataSize : {}\n}}",
            s.old_start.get(),
            s.size
        )
    );
    assert_eq!(
        std::fs::metadata(folder.join("seg1.data")).unwrap().len(),
        s.size
    );
    assert!(header.contains(&format!("\t#oldBaseAddr : {},", heap.nil().get())));
    assert!(header.contains("\t#imageFormat : 68021,"));
}

#[test]
fn writing_over_an_existing_folder_swaps_it_whole() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    let a = synth(
        dir.path(),
        "a.image",
        &SynthSpec::new(WordSize::W64, 512 << 10),
    );
    let b = synth(dir.path(), "b.image", &multi_segment(WordSize::W64));
    let folder = dir.path().join("img");
    write_composed(
        &load_path(&b, &LoadOptions::default()).unwrap(),
        &folder,
        &Default::default(),
    )
    .unwrap();
    write_composed(
        &load_path(&a, &LoadOptions::default()).unwrap(),
        &folder,
        &Default::default(),
    )
    .unwrap();
    // The three-segment image is gone whole, not mixed with the new one.
    assert!(!folder.join("seg1.data").exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(verify(&load_path(&folder, &LoadOptions::default()).unwrap()).ok());
}

#[test]
fn bad_folders_are_refused_with_a_clear_error() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    let image = synth(dir.path(), "m.image", &multi_segment(WordSize::W64));
    let heap = load_path(&image, &LoadOptions::default()).unwrap();
    let good = dir.path().join("good");
    write_composed(&heap, &good, &Default::default()).unwrap();
    drop(heap);
    let copy = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir(&d).unwrap();
        for e in std::fs::read_dir(&good).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
        }
        d
    };
    let expect = |d: &Path, needle: &str| {
        let e = load_path(d, &LoadOptions::default()).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        let text = Chain(&e).to_string();
        assert!(text.contains(needle), "expected `{needle}` in: {text}");
    };

    let d = copy("no-seg0");
    std::fs::remove_file(d.join("seg0.data")).unwrap();
    expect(&d, "no seg0.ston and seg0.data");

    let d = copy("short");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(d.join("seg1.data"))
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - 8).unwrap();
    expect(
        &d,
        &format!(
            "seg1.data holds {} bytes, but seg1.ston says dataSize {len}",
            len - 8
        ),
    );

    let d = copy("overlap");
    let s0 = std::fs::read_to_string(d.join("seg0.ston")).unwrap();
    let start0: u64 = s0
        .split("#startAddress : ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let s1 = std::fs::read_to_string(d.join("seg1.ston")).unwrap();
    let size1 = s1
        .split("#dataSize : ")
        .nth(1)
        .unwrap()
        .split('\n')
        .next()
        .unwrap();
    std::fs::write(
        d.join("seg1.ston"),
        format!(
            "ComposedMetadataStruct {{\n\t#startAddress : {},\n\t#dataSize : {size1}\n}}",
            start0 + 4096
        ),
    )
    .unwrap();
    expect(&d, "segment 1 starts at");

    let d = copy("broken-header");
    let h = std::fs::read_to_string(d.join("header.ston")).unwrap();
    std::fs::write(
        d.join("header.ston"),
        h.replace("#oldBaseAddr : ", "#oldBaseAddr : x"),
    )
    .unwrap();
    expect(&d, "header.ston line 4");

    let d = copy("not-spur");
    let h = std::fs::read_to_string(d.join("header.ston")).unwrap();
    std::fs::write(
        d.join("header.ston"),
        h.replace("#imageFormat : 68021", "#imageFormat : 6505"),
    )
    .unwrap();
    expect(&d, "format 6505 is a pre-Spur V3 image");
}

#[test]
fn perm_space_lands_at_its_own_address_and_never_moves() {
    use spur_format::{ObjHeader, Walk, L64};
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    let image = synth(
        dir.path(),
        "p.image",
        &SynthSpec::new(WordSize::W64, 1 << 20),
    );
    let single = load_path(&image, &LoadOptions::default()).unwrap();
    let objects = verify(&single).objects;
    let nil = single.nil().get();
    let folder = dir.path().join("p");
    write_composed(&single, &folder, &Default::default()).unwrap();
    drop(single);

    // Perm space: one Array [nil, true, 5] at Pharo's perm base.
    let perm = spur_format::read::composed::perm_space_base(WordSize::W64);
    let mut data = ObjHeader::new(51, 2, 3, 0).0.to_le_bytes().to_vec();
    for v in [nil, nil + 32, (5 << 3) | 1] {
        data.extend_from_slice(&u64::to_le_bytes(v));
    }
    std::fs::write(folder.join("permSpace.data"), &data).unwrap();
    std::fs::write(
        folder.join("permSpace.ston"),
        spur_format::write::composed::segment_ston(perm, data.len() as u64),
    )
    .unwrap();
    let h = std::fs::read_to_string(folder.join("header.ston")).unwrap();
    let size: u64 = h
        .split("#dataSize : ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    std::fs::write(
        folder.join("header.ston"),
        h.replacen(
            &format!("#dataSize : {size},"),
            &format!("#dataSize : {},", size + 32),
            1,
        ),
    )
    .unwrap();
    // An old-space Array whose slot 0 now points into perm space.
    let mut seg = std::fs::read(folder.join("seg0.data")).unwrap();
    let arr = Walk::<L64>::new(&seg, nil, 0)
        .find(|o| o.header.class_index() == 51 && o.num_slots >= 1 && o.offset > 40_000)
        .unwrap();
    seg[arr.offset + 8..arr.offset + 16].copy_from_slice(&perm.to_le_bytes());
    std::fs::write(folder.join("seg0.data"), &seg).unwrap();
    let arr_addr = nil + arr.offset as u64;

    for (opts, map) in [(LoadOptions::default(), false), (mapped(), true)] {
        let heap = load_path(&folder, &opts).unwrap();
        let p = heap.perm_space().expect("perm space loaded");
        assert_eq!((p.start, p.size, p.mapped), (perm, 32, map));
        let v = verify(&heap);
        assert!(v.ok(), "{:#?}", v.errors);
        assert_eq!(v.objects, objects + 1);
    }

    let opts = LoadOptions {
        placement: PlacementRequest::Relocate,
        ..Default::default()
    };
    let moved = load_path(&folder, &opts).unwrap();
    let v = verify(&moved);
    assert!(v.ok(), "{:#?}", v.errors);
    let new_nil = moved.nil().get();
    assert_ne!(new_nil, nil);
    let perm_obj = spur_format::NewAddr::from_heap_word(perm);
    assert_eq!(
        moved.slot(perm_obj, 0),
        Some(new_nil),
        "perm -> old pointers follow old space"
    );
    assert_eq!(moved.slot(perm_obj, 1), Some(new_nil + 32));
    assert_eq!(moved.slot(perm_obj, 2), Some((5 << 3) | 1));
    let moved_arr = spur_format::NewAddr::from_heap_word(arr_addr - nil + new_nil);
    assert_eq!(
        moved.slot(moved_arr, 0),
        Some(perm),
        "old -> perm pointers never change"
    );

    // Written back, perm space comes along.
    let again = dir.path().join("p2");
    write_composed(&moved, &again, &Default::default()).unwrap();
    drop(moved);
    assert_eq!(
        std::fs::read(again.join("permSpace.data")).unwrap().len(),
        32
    );
    let back = load_path(&again, &LoadOptions::default()).unwrap();
    assert!(verify(&back).ok());
    assert_eq!(back.nil().get(), new_nil);
}

/// Converts `image` to a folder and back to a single file through the
/// library, and returns the bytes written back.
fn single_to_composed_and_back(image: &Path, dir: &Path) -> Vec<u8> {
    let folder = dir.join("c");
    let heap = load_path(image, &LoadOptions::default()).unwrap();
    write_composed(&heap, &folder, &Default::default()).unwrap();
    drop(heap);
    let back = dir.join("back.image");
    let heap = load_path(&folder, &LoadOptions::default()).unwrap();
    assert!(!heap.swizzled());
    spur_loader::snapshot_to_path(&heap, &back, &Default::default(), &mut |_| {}).unwrap();
    std::fs::read(back).unwrap()
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn every_corpus_image_converts_to_composed_and_back_byte_identical() {
    let corpus = corpus_dir();
    let _lock = address_space();
    for img in CORPUS {
        let dir = tempfile::tempdir().unwrap();
        let original = std::fs::read(corpus.join(img.file)).unwrap();
        let back = single_to_composed_and_back(&corpus.join(img.file), dir.path());
        assert!(back.len() <= original.len(), "{}", img.file);
        assert!(
            back == original[..back.len()],
            "{}: the file written back differs",
            img.file
        );
    }
}

#[test]
fn builder_images_convert_to_composed_and_back_byte_identical() {
    let _lock = address_space();
    for word in [WordSize::W64, WordSize::W32] {
        let dir = tempfile::tempdir().unwrap();
        let image = synth(dir.path(), "m.image", &multi_segment(word));
        let original = std::fs::read(&image).unwrap();
        assert_eq!(single_to_composed_and_back(&image, dir.path()), original);
    }
}

#[test]
fn the_composed_form_launches_to_the_same_resume_point() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    let image = synth(dir.path(), "m.image", &multi_segment(WordSize::W64));
    composed_resumes_like_single(&[image], dir.path());
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn corpus_images_composed_launch_to_the_same_resume_point() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus_dir();
    let images: Vec<_> = CORPUS.iter().map(|i| corpus.join(i.file)).collect();
    composed_resumes_like_single(&images, dir.path());
}

/// Each image and its composed form (written into `dir`) resume in the same
/// method at the same pc, in place and relocated.
fn composed_resumes_like_single(images: &[std::path::PathBuf], dir: &Path) {
    for (n, image) in images.iter().enumerate() {
        let folder = dir.join(format!("f{n}"));
        let resume = |heap| {
            let rt = spur_runtime::Runtime::wire(heap, &Default::default()).unwrap();
            let r = rt.resume_point();
            (
                r.method_class_name.clone(),
                r.selector_name.clone(),
                r.pc,
                r.context.bits(),
            )
        };
        let single = load_path(image, &LoadOptions::default()).unwrap();
        write_composed(&single, &folder, &Default::default()).unwrap();
        let a = resume(single);
        let b = resume(load_path(&folder, &LoadOptions::default()).unwrap());
        assert_eq!(a, b, "{}", image.display());
        // And relocated: the same method and pc, the context moved.
        let opts = LoadOptions {
            placement: PlacementRequest::Relocate,
            ..Default::default()
        };
        let c = resume(load_path(&folder, &opts).unwrap());
        assert_eq!((&a.0, &a.1, a.2), (&c.0, &c.1, c.2));
        assert_ne!(a.3, c.3);
    }
}

/// Set in the child process of the truncation test: the folder to load.
const TRUNCATE_CHILD: &str = "SPUR_TESTS_TRUNCATE_CHILD";

/// Why mapping is opt-in: a segment file truncated under a heap mapped from
/// it kills the process with `SIGBUS` at the first touch of a page past its
/// new end. The load and the touch run in a child (this test binary run
/// again, for this test only), so the signal kills only the child.
#[test]
fn a_truncated_segment_file_kills_the_mapped_heap_with_sigbus() {
    use std::io::Write;
    use std::os::unix::process::ExitStatusExt;

    let page = to_usize(spur_mem::page_size());
    if let Some(folder) = std::env::var_os(TRUNCATE_CHILD) {
        let folder = Path::new(&folder);
        let heap = load_path(folder, &mapped()).unwrap();
        assert!(heap.segments()[0].mapped);
        let original = std::fs::read(folder.join("seg0.data")).unwrap();
        let seg = heap.segment_bytes(0);
        assert_eq!(&seg[5 * page..6 * page], &original[5 * page..6 * page]);
        std::fs::File::options()
            .write(true)
            .open(folder.join("seg0.data"))
            .unwrap()
            .set_len(2 * page as u64)
            .unwrap();
        // Below the new end the heap still reads the file.
        assert_eq!(&seg[page..2 * page], &original[page..2 * page]);
        println!("below the new end: readable");
        std::io::stdout().flush().unwrap();
        let past = std::hint::black_box(seg[5 * page]);
        println!("past the new end: read {past} (no signal)");
        std::process::exit(3);
    }

    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("folder");
    {
        let _lock = address_space();
        let image = synth(dir.path(), "multi.image", &multi_segment(WordSize::W64));
        let single = load_path(&image, &LoadOptions::default()).unwrap();
        write_composed(&single, &folder, &Default::default()).unwrap();
    }
    let len = std::fs::metadata(folder.join("seg0.data")).unwrap().len();
    assert!(len > 8 * page as u64, "seg0.data holds {len} bytes");
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_truncated_segment_file_kills_the_mapped_heap_with_sigbus",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(TRUNCATE_CHILD, &folder)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&child.stdout);
    let why = format!(
        "{:?}\n{out}\n{}",
        child.status,
        String::from_utf8_lossy(&child.stderr)
    );
    assert!(out.contains("below the new end: readable"), "{why}");
    assert!(!out.contains("past the new end"), "{why}");
    assert_eq!(child.status.signal(), Some(SIGBUS), "{why}");
}

/// `SIGBUS` on Linux (x86, Arm, RISC-V).
const SIGBUS: i32 = 7;

/// Two writers creating the same composed folder at once: both succeed
/// (the second to rename exchanges instead), and the folder is whole.
#[test]
fn two_writers_creating_the_same_folder_both_succeed() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    let image = synth(
        dir.path(),
        "a.image",
        &SynthSpec::new(WordSize::W64, 256 << 10),
    );
    let heap = load_path(&image, &LoadOptions::default()).unwrap();
    for round in 0..30 {
        let out = dir.path().join(format!("out-{round}"));
        let barrier = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            let writers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        write_composed(&heap, &out, &Default::default())
                    })
                })
                .collect();
            for w in writers {
                let r = w.join().unwrap();
                if let Err(e) = r {
                    panic!("round {round}: {}", Chain(&e));
                }
            }
        });
        let back = load_path(&out, &LoadOptions::default()).unwrap();
        assert!(verify(&back).ok());
    }
}
