//! The runtime over builder images and the real corpus: wiring in place and
//! relocated, the resume point, the layout numbers against hand-computed
//! values, float conversion, the claimed headroom under the verifier, and
//! the class histogram against the verifier's counts.

use spur_format::raw::{CLASS_FLOAT, LAST_CLASS_INDEX_PUN};
use spur_format::{Layout, Walk, WordSize, L32, L64};
use spur_loader::{load, verify, LoadOptions, LoadedHeap, PlacementRequest};
use spur_runtime::special_objects::index;
use spur_runtime::{
    class_histogram, BytecodeSet, Dialect, ObjectMemory, Oop, Op, Runtime, RuntimeError,
    RuntimeOptions,
};
use spur_synth::SynthSpec;
use spur_tests::{address_space, corpus_dir, CORPUS};

fn spec(word: WordSize, kib: u64) -> SynthSpec {
    SynthSpec::new(word, kib << 10)
}

fn load_bytes(bytes: &[u8], placement: PlacementRequest) -> LoadedHeap {
    load(
        bytes,
        &LoadOptions {
            placement,
            ..Default::default()
        },
    )
    .unwrap()
}

fn wire(heap: LoadedHeap) -> Runtime {
    Runtime::wire(heap, &RuntimeOptions::default()).unwrap()
}

fn wire_memory(mem: ObjectMemory) -> Result<Runtime, RuntimeError> {
    Runtime::wire_memory(mem, &RuntimeOptions::default())
}

/// Builder images of every shape the runtime must handle.
fn kinds() -> Vec<(&'static str, SynthSpec)> {
    let mut v = vec![
        ("w64", spec(WordSize::W64, 256)),
        ("w32", spec(WordSize::W32, 256)),
    ];
    let mut s = spec(WordSize::W64, 1024);
    s.segments = 3;
    s.gap_bytes = 1 << 20;
    v.push(("w64-three-gaps", s));
    let mut s = spec(WordSize::W32, 512);
    s.segments = 2;
    s.multiple_bytecode_sets = true;
    s.prefix = true;
    v.push(("w32-7033-two", s));
    let mut s = spec(WordSize::W64, 256);
    s.free_chunks = false;
    s.old_base = 0x804008;
    v.push(("w64-unaligned-no-free", s));
    v
}

/// Counts objects of class index ≤ 31 that are not free chunks.
fn hidden_objects(heap: &LoadedHeap) -> u64 {
    fn walk<L: Layout>(heap: &LoadedHeap) -> u64 {
        let mut n = 0;
        for (i, s) in heap.segments().iter().enumerate() {
            for o in Walk::<L>::new(heap.segment_bytes(i), s.new_start.get(), i) {
                let ci = o.header.class_index();
                n += (ci != 0 && ci <= LAST_CLASS_INDEX_PUN) as u64;
            }
        }
        n
    }
    match heap.word() {
        WordSize::W64 => walk::<L64>(heap),
        WordSize::W32 => walk::<L32>(heap),
    }
}

/// What every wired heap must satisfy, whatever made it.
fn check_runtime(rt: &Runtime, what: &str, candle: bool) {
    let heap = rt.heap();
    let v = rt.view();
    let ct = rt.class_table();
    let so = rt.special_objects();
    // The heap is still intact, the claimed headroom included.
    let report = verify(heap);
    assert!(
        report.ok(),
        "{what}: {:#?}",
        &report.errors[..report.errors.len().min(5)]
    );
    // The resume point names a real method: class name and selector are Symbols.
    let r = rt.resume_point();
    let symbol_class = ct
        .class_of(&v, so.common().selector_does_not_understand().unwrap())
        .unwrap();
    let selector = r.selector.expect("a selector");
    assert_eq!(ct.class_of(&v, selector), Some(symbol_class), "{what}");
    // Class names are Symbols, except in the Pharo Candle kernels (two of
    // the corpus), whose classes are named by Strings (special object 6).
    let string_class = so.common().class_byte_string();
    let class = r.method_class.expect("a method class");
    let name = ct.name_oop(&v, class).expect("a class name");
    let name_class = ct.class_of(&v, name);
    assert!(
        name_class == Some(symbol_class) || name_class == string_class.filter(|_| candle),
        "{what}: the class name {name:#x} is neither a Symbol nor a Candle String"
    );
    let bare_name = r.method_class_name.trim_end_matches(" class");
    assert_eq!(v.string(name).unwrap(), bare_name);
    assert_eq!(v.string(selector).unwrap(), r.selector_name);
    // The pc lies inside the method's bytecodes, on an instruction of its set.
    assert!(r.initial_pc <= r.pc && r.pc < r.end_pc, "{what}: {r:?}");
    assert_eq!(r.window[r.current].pc, r.pc);
    for i in &r.window {
        assert!(i.is_valid(), "{what}: {i:?}");
    }
    let method = v.slot(r.method, 0).unwrap();
    let negative = rt.memory().small_int(method).unwrap() < 0;
    assert_eq!(r.bytecode_set() == BytecodeSet::SistaV1, negative, "{what}");
    // The histogram counts every object but free chunks and hidden ones.
    let h = class_histogram(rt.memory()).unwrap();
    assert_eq!(
        h.instances(),
        report.objects - report.free_chunks - hidden_objects(heap),
        "{what}"
    );
    assert_eq!(h.objects, report.objects);
    // nil, true and false are the only instances of their classes.
    for (obj, suffix) in [
        (so.nil(), "UndefinedObject"),
        (so.true_object(), "True"),
        (so.false_object(), "False"),
    ] {
        let c = ct.class_of(&v, Oop::from_addr(obj)).unwrap();
        let row = h.row(c).unwrap();
        assert!(row.name.ends_with(suffix), "{what}: {}", row.name);
        assert_eq!(row.instances, 1, "{what}: {}", row.name);
    }
    // The classes of the special objects array have the expected names
    // (the Pharo VM's test kernel prefixes every class name with PC).
    let named = |slot: usize| ct.class_name(&v, so.at(slot).unwrap()).unwrap();
    let bare = |n: String| n.strip_prefix("PC").map(str::to_owned).unwrap_or(n);
    assert_eq!(bare(named(index::CLASS_SMALL_INTEGER)), "SmallInteger");
    assert_eq!(bare(named(index::CLASS_ARRAY)), "Array");
    assert!(matches!(
        bare(named(index::CLASS_BYTE_STRING)).as_str(),
        "ByteString" | "String"
    ));
    // Metaclasses are named after their class.
    let array = so.common().class_array().unwrap();
    assert_eq!(
        ct.class_name_of(&v, array),
        Some(format!("{} class", named(index::CLASS_ARRAY)))
    );
    // New space lies below old space or elsewhere, never over it; a
    // 32-bit image's memory stays below 4 GiB.
    let ns = rt.new_space();
    assert!(ns.end().get() <= heap.nil().get() || ns.start().get() >= rt.old_space().end.get());
    if heap.word() == WordSize::W32 {
        assert!(ns.end().get() <= 1 << 32);
        assert!(rt.stack_zone().start() + rt.stack_zone().layout().zone_bytes <= 1 << 32);
    }
}

#[test]
fn builder_images_wire_in_place_and_relocated() {
    let _lock = address_space();
    for (name, spec) in kinds() {
        let (bytes, built) = spur_synth::image_bytes(&spec).unwrap();
        for placement in [PlacementRequest::OldBase, PlacementRequest::Relocate] {
            let what = format!("{name} {placement:?}");
            let rt = wire(load_bytes(&bytes, placement));
            check_runtime(&rt, &what, false);
            let r = rt.resume_point();
            // The builder's process is suspended in SmallInteger>>synthStep after `push self`.
            assert_eq!(r.method_name(), "SmallInteger>>synthStep", "{what}");
            assert_eq!(r.receiver_class, "SmallInteger");
            assert_eq!(r.pc, r.initial_pc + 1);
            assert_eq!(r.window[r.current].op, Op::PushInteger(1));
            assert!(!r.in_block);
            assert_eq!(rt.dialect().dialect, Dialect::Unknown, "{what}");
            assert_eq!(rt.class_table().classes(), built.classes);
            assert_eq!(rt.floats_converted(), None);
            // The headroom became one free chunk on top of what the image had.
            let o = rt.old_space();
            let claimed = o.claimed.expect("headroom claimed");
            assert!(claimed.bytes >= o.headroom, "{what}");
            assert_eq!(o.free_bytes, built.free_bytes + claimed.bytes);
            let report = verify(rt.heap());
            // The verifier's only new remark: the header's freeOldSpaceInImage
            // no longer counts every free byte.
            assert_eq!(report.warnings.len(), 1, "{what}: {:?}", report.warnings);
            assert_eq!(report.warnings[0].kind, spur_loader::FindingKind::FreeSpace);
            assert_eq!(report.free_chunks, built.free_chunks + 1, "{what}");
            assert_eq!(report.free_bytes, o.free_bytes, "{what}");
            assert_eq!(report.objects, built.objects + 1);
        }
    }
}

#[test]
fn headroom_is_claimed_once_or_not_at_all() {
    let _lock = address_space();
    let (bytes, built) = spur_synth::image_bytes(&spec(WordSize::W64, 256)).unwrap();
    let heap = load_bytes(&bytes, PlacementRequest::Relocate);
    let rt = Runtime::wire(
        heap,
        &RuntimeOptions {
            claim_headroom: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(rt.old_space().claimed, None);
    assert_eq!(rt.old_space().free_bytes, built.free_bytes);
    assert_eq!(verify(rt.heap()).free_chunks, built.free_chunks);
    // Claiming twice finds no headroom the second time.
    let mut mem = ObjectMemory::new(rt.into_heap());
    assert!(mem.claim_headroom().unwrap().is_some());
    assert_eq!(mem.headroom_available(), 0);
    assert!(mem.claim_headroom().unwrap().is_none());
    assert!(verify(mem.heap()).ok());
}

#[test]
fn a_small_tail_goes_to_its_free_list_and_a_large_one_into_the_tree() {
    let _lock = address_space();
    // No free chunks, and a requested headroom of 8 bytes (extraVMMemory at
    // offset 56): the tail left is the page's slack after the heap. A
    // dataSize of 4000 mod 4096 leaves 96 bytes: free list 12.
    let mut s = spec(WordSize::W64, 0);
    s.free_chunks = false;
    s.heap_bytes = (256 << 10) + 4000;
    let (mut bytes, built) = spur_synth::image_bytes(&s).unwrap();
    assert_eq!(
        built.data_size % 4096,
        4000,
        "the builder kept the size asked for"
    );
    patch(&mut bytes, 56, &8u32.to_le_bytes());
    let mut mem = ObjectMemory::new(load_bytes(&bytes, PlacementRequest::Relocate));
    let c = mem.claim_headroom().unwrap().expect("a tail of 96 bytes");
    assert_eq!((c.bytes, c.list), (96, 12));
    let fl = mem.free_lists();
    assert_eq!(mem.fetch(fl, 12).unwrap(), Oop::from_addr(c.chunk));
    assert!(verify(mem.heap()).ok());
    // The builder's image with free chunks: the 16 MiB tail joins the tree.
    let (bytes, built) = spur_synth::image_bytes(&spec(WordSize::W32, 512)).unwrap();
    let mut mem = ObjectMemory::new(load_bytes(&bytes, PlacementRequest::Relocate));
    let c = mem.claim_headroom().unwrap().unwrap();
    assert_eq!(c.list, 0);
    let report = verify(mem.heap());
    assert!(report.ok(), "{:?}", report.errors);
    assert_eq!(report.free_chunks, built.free_chunks + 1);
}

/// Writes a little-endian value into the header of an image in memory.
fn patch(bytes: &mut [u8], at: usize, value: &[u8]) {
    bytes[at..at + value.len()].copy_from_slice(value);
}

#[test]
fn layout_numbers_follow_the_header_as_computed_by_hand() {
    let _lock = address_space();
    // 64-bit header (offsets §1.3): 8 stack pages at 60, 16 MiB of new space
    // at 64, an external semaphore table of 1000 at 68.
    let (mut bytes, _) = spur_synth::image_bytes(&spec(WordSize::W64, 256)).unwrap();
    patch(&mut bytes, 60, &8u16.to_le_bytes());
    patch(&mut bytes, 64, &(16u32 << 20).to_le_bytes());
    patch(&mut bytes, 68, &1000u16.to_le_bytes());
    let rt = wire(load_bytes(&bytes, PlacementRequest::Relocate));
    let st = rt.stack_zone().layout();
    assert_eq!((st.count, st.page_bytes), (8, 4096));
    // reserve = 46 frames * 62 slots * 8 bytes * 8 pages = 182_528;
    // survivors = floor8((16_777_216 - 182_528) / 7) = 2_370_664;
    // eden = 16_777_216 - 2 * 2_370_664 = 12_035_888;
    // threshold = 16_777_216 - 12_035_888 / 64 - 182_528 = 16_406_628.
    let ns = rt.new_space();
    let l = ns.layout();
    assert_eq!(l.total_bytes, 16 << 20);
    assert_eq!(l.reserve_bytes, 182_528);
    assert_eq!(l.survivor_bytes, 2_370_664);
    assert_eq!(l.eden_bytes, 12_035_888);
    assert_eq!(ns.scavenge_threshold().get() - ns.start().get(), 16_406_628);
    assert_eq!(ns.eden().start - ns.start().get(), 2 * 2_370_664);
    // 1000 rounds up to 1024.
    assert_eq!(rt.semaphores().size(), 1024);

    // 32-bit header: pages at 36, new space at 40, semaphores at 44.
    let (mut bytes, _) = spur_synth::image_bytes(&spec(WordSize::W32, 256)).unwrap();
    patch(&mut bytes, 36, &12u16.to_le_bytes());
    patch(&mut bytes, 40, &(3u32 << 20).to_le_bytes());
    patch(&mut bytes, 44, &16u16.to_le_bytes());
    let rt = wire(load_bytes(&bytes, PlacementRequest::Relocate));
    let st = rt.stack_zone().layout();
    // 256*4 + (7+64)*4 = 1308 -> 2048.
    assert_eq!((st.count, st.page_bytes), (12, 2048));
    // reserve = 46 * 62 * 4 * 12 = 136_896;
    // survivors = floor8((3_145_728 - 136_896) / 7 = 429_833.1) = 429_832;
    // eden = 3_145_728 - 859_664 = 2_286_064;
    // threshold = 3_145_728 - 35_719 - 136_896 = 2_973_113.
    let l = rt.new_space().layout();
    assert_eq!(l.reserve_bytes, 136_896);
    assert_eq!(l.survivor_bytes, 429_832);
    assert_eq!(l.eden_bytes, 2_286_064);
    assert_eq!(l.threshold_offset, 2_973_113);
    // 16 never shrinks the default 256.
    assert_eq!(rt.semaphores().size(), 256);
    assert!(rt.new_space().end().get() <= 1 << 32);

    // The command line overrides the header.
    let heap = load_bytes(&bytes, PlacementRequest::Relocate);
    let rt = Runtime::wire(
        heap,
        &RuntimeOptions {
            stack_pages: Some(1),
            eden_bytes: Some(2 << 20),
            ext_sem_table: Some(300),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(rt.stack_zone().layout().count, 1);
    assert_eq!(rt.new_space().layout().threshold_offset, 2_062_288);
    assert_eq!(rt.semaphores().size(), 512);
}

#[test]
fn bad_overrides_are_refused_with_their_numbers() {
    let _lock = address_space();
    let (bytes, _) = spur_synth::image_bytes(&spec(WordSize::W64, 256)).unwrap();
    let try_wire = |o: RuntimeOptions| {
        Runtime::wire(load_bytes(&bytes, PlacementRequest::Relocate), &o).unwrap_err()
    };
    let e = try_wire(RuntimeOptions {
        stack_pages: Some(0),
        ..Default::default()
    });
    assert!(
        matches!(e, RuntimeError::BadStackPages { requested: 0, .. }),
        "{e}"
    );
    let e = try_wire(RuntimeOptions {
        eden_bytes: Some(1 << 20),
        ..Default::default()
    });
    assert!(e.to_string().contains("1140800 bytes of reserve"), "{e}");
    let e = try_wire(RuntimeOptions {
        ext_sem_table: Some(0),
        ..Default::default()
    });
    assert!(matches!(e, RuntimeError::BadSemaphoreTable { .. }), "{e}");
}

#[test]
fn boxed_floats_are_converted_when_the_image_says_big_endian_word_order() {
    let _lock = address_space();
    for word in [WordSize::W64, WordSize::W32] {
        let (bytes, _) = spur_synth::image_bytes(&spec(word, 512)).unwrap();
        // Clear header flag 2 (floats little-endian): offset 48 / 28 (§1.3, §1.4).
        let mut swapped = bytes.clone();
        let at = if word == WordSize::W64 { 48 } else { 28 };
        patch(&mut swapped, at, &0u32.to_le_bytes());
        let plain = wire(load_bytes(&bytes, PlacementRequest::Relocate));
        let converted = wire(load_bytes(&swapped, PlacementRequest::Relocate));
        assert!(!converted.settings().floats_little_endian);
        let n = converted.floats_converted().expect("a conversion pass");
        let (a, b) = (plain.heap(), converted.heap());
        let mut floats = 0;
        for i in 0..a.segments().len() {
            let (sa, sb) = (a.segment_bytes(i), b.segment_bytes(i));
            let objs = match word {
                WordSize::W64 => Walk::<L64>::new(sa, 0, i).collect::<Vec<_>>(),
                WordSize::W32 => Walk::<L32>::new(sa, 0, i).collect::<Vec<_>>(),
            };
            for o in objs {
                let body = o.offset + 8..o.offset + 16;
                if o.header.class_index() == CLASS_FLOAT {
                    floats += 1;
                    let (x, y) = (&sa[body.clone()], &sb[body]);
                    assert_eq!(x[..4], y[4..]);
                    assert_eq!(x[4..], y[..4]);
                }
            }
        }
        assert!(floats > 10, "{word:?}: {floats} floats");
        assert_eq!(n, floats);
        assert!(verify(b).ok());
    }
}

/// The first CompiledMethod of the heap other than `not`.
fn some_other_method(mem: &ObjectMemory, not: Oop) -> Oop {
    mem.objects()
        .find(|&a| {
            mem.header(a).unwrap().is_compiled_method() && a != not && mem.num_slots(a).unwrap() > 3
        })
        .expect("a method")
}

#[test]
fn a_block_is_named_after_its_home_method() {
    let _lock = address_space();
    let (bytes, _) = spur_synth::image_bytes(&spec(WordSize::W64, 512)).unwrap();
    let rt = wire(load_bytes(&bytes, PlacementRequest::Relocate));
    let r = rt.resume_point().clone();
    let mut mem = ObjectMemory::new(rt.into_heap());

    // A V3 block: the context has a closure; its method stays the home method.
    let closure = mem.special_objects();
    mem.store(r.context, 4, closure).unwrap();
    let rt = wire_memory(mem).unwrap();
    let b = rt.resume_point();
    assert!(b.in_block);
    assert_eq!(b.method_name(), "[] in SmallInteger>>synthStep");
    assert_eq!(b.home_method, b.method);

    // A full block: the context runs a CompiledBlock whose last literal is
    // its outer code, the home method.
    let mut mem = ObjectMemory::new(rt.into_heap());
    let block = some_other_method(&mem, r.method);
    let lits = spur_runtime::method::MethodHeader::decode(mem.word(), mem.fetch(block, 0).unwrap())
        .unwrap()
        .num_literals;
    let initial = (lits + 1) * 8 + 1;
    mem.store(block, lits, r.method).unwrap();
    mem.store(r.context, 3, block).unwrap();
    let pc = mem.from_small_int(initial.cast_signed()).unwrap();
    mem.store(r.context, 1, pc).unwrap();
    let rt = wire_memory(mem).unwrap();
    let b = rt.resume_point();
    assert!(b.in_block);
    assert_eq!(b.method, block);
    assert_eq!(b.home_method, r.method);
    assert_eq!(b.method_name(), "[] in SmallInteger>>synthStep");
    assert_eq!(b.pc, initial);
}

#[test]
fn a_heap_unfit_to_resume_is_refused_with_the_address() {
    let _lock = address_space();
    let (bytes, _) = spur_synth::image_bytes(&spec(WordSize::W32, 256)).unwrap();
    let fresh = || load_bytes(&bytes, PlacementRequest::Relocate);
    let r = wire(fresh()).resume_point().clone();

    // A pc before the method's first bytecode.
    let mut mem = ObjectMemory::new(fresh());
    let three = mem.from_small_int(3).unwrap();
    mem.store(r.context, 1, three).unwrap();
    let e = wire_memory(mem).unwrap_err();
    assert!(
        matches!(e, RuntimeError::PcOutsideMethod { pc: 3, .. }),
        "{e}"
    );
    // No active process.
    let mut mem = ObjectMemory::new(fresh());
    let nil = mem.nil();
    mem.store(r.scheduler, 1, nil).unwrap();
    let e = wire_memory(mem).unwrap_err();
    assert!(e.to_string().contains("has no active process"), "{e}");
    assert!(
        e.to_string().contains(&format!("{:#x}", r.scheduler)),
        "{e}"
    );
    // Array and Float swapped in the special objects array: the VMs refuse it.
    let mut mem = ObjectMemory::new(fresh());
    let so = mem.special_objects();
    let (ia, if_) = (index::CLASS_ARRAY as u64, index::CLASS_FLOAT as u64);
    let (array, float) = (mem.fetch(so, ia).unwrap(), mem.fetch(so, if_).unwrap());
    mem.store(so, ia, float).unwrap();
    mem.store(so, if_, array).unwrap();
    let e = wire_memory(mem).unwrap_err();
    assert!(
        matches!(
            e,
            RuntimeError::CompactClass {
                slot: 7,
                index: 51,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn every_corpus_image_resumes_in_a_real_method_in_place_and_relocated() {
    let dir = corpus_dir();
    let _lock = address_space();
    for img in CORPUS {
        for placement in [
            PlacementRequest::OldBase,
            PlacementRequest::Relocate,
            PlacementRequest::At(0x2000_0008),
        ] {
            let what = format!("{} {placement:?}", img.file);
            let heap = spur_loader::load_path(
                &dir.join(img.file),
                &LoadOptions {
                    placement,
                    ..Default::default()
                },
            )
            .unwrap();
            let rt = wire(heap);
            check_runtime(
                &rt,
                &what,
                img.file.contains("candle") || img.file.contains("vm-test"),
            );
            assert_eq!(rt.dialect().dialect, Dialect::Pharo, "{what}");
            let r = rt.resume_point();
            assert!(!r.method_class_name.is_empty() && r.method_class_name != "?");
            eprintln!(
                "{what}: {} at pc {} ({}), {} free",
                r.method_name(),
                r.pc,
                r.bytecode_set().name(),
                rt.old_space().free_bytes
            );
        }
    }
}
