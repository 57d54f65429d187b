use spur_format::raw::{
    CLASS_ARRAY, CLASS_BYTE_STRING, CLASS_FORWARDER, FMT_16BIT, FMT_32BIT, FMT_64BIT, FMT_BYTES,
    FMT_FIXED, FMT_INDEXABLE,
};
use spur_format::{Layout, Walk, WordSize, L32, L64};
use spur_loader::{LoadOptions, LoadedHeap, PlacementRequest};
use spur_synth::SynthSpec;

use super::*;
use crate::runtime::{Runtime, RuntimeOptions};

fn heap(word: WordSize) -> LoadedHeap {
    let (bytes, _) = spur_synth::image_bytes(&SynthSpec::new(word, 256 << 10)).unwrap();
    spur_loader::load(
        bytes.as_slice(),
        &LoadOptions {
            placement: PlacementRequest::Relocate,
            ..Default::default()
        },
    )
    .unwrap()
}

fn wired(word: WordSize) -> Runtime {
    Runtime::wire(
        heap(word),
        &RuntimeOptions {
            eden_bytes: Some(4 << 20),
            stack_pages: Some(4),
            ..Default::default()
        },
    )
    .unwrap()
}

/// The objects eden holds, as spur-format's decoder reads them.
fn decode_eden<L: Layout>(mem: &ObjectMemory) -> Vec<(u64, spur_format::Obj)> {
    let ns = mem.new_space().unwrap();
    let off = ix(mem.eden_start - ns.start().get());
    let bytes = &ns.bytes()[off..off + ix(mem.eden_used())];
    let mut w = Walk::<L>::without_bridge(bytes, mem.eden_start, 0);
    let objs: Vec<_> = w
        .by_ref()
        .map(|o| (mem.eden_start + o.offset as u64, o))
        .collect();
    w.finish().unwrap();
    objs
}

#[test]
fn old_objects_read_as_the_loader_reads_them() {
    for word in [WordSize::W64, WordSize::W32] {
        let h = heap(word);
        let so = h.special_objects();
        let n = h.num_slots(so).unwrap();
        let expect: Vec<u64> = (0..n).map(|i| h.slot(so, i).unwrap()).collect();
        let mem = ObjectMemory::new(h);
        let so = mem.special_objects();
        assert_eq!(mem.num_slots(so).unwrap(), n);
        for (i, &v) in expect.iter().enumerate() {
            assert_eq!(mem.fetch(so, i as u64).unwrap().bits(), v);
        }
        assert_eq!(mem.special(0), mem.nil());
        assert_eq!(mem.special(2), mem.true_object());
        assert_eq!(mem.special(10_000), mem.nil());
        assert_eq!(mem.space_of(so), Some(Space::Old));
        assert_eq!(mem.class_index_of(so).unwrap(), CLASS_ARRAY);
        let dnu = mem.special(20);
        assert_eq!(mem.string(dnu).as_deref(), Some("doesNotUnderstand:"));
        assert_eq!(mem.bytes(dnu).unwrap().len(), "doesNotUnderstand:".len());
    }
}

#[test]
fn immediates_and_missing_slots_are_errors_naming_the_object() {
    let mut rt = wired(WordSize::W64);
    let mem = rt.memory_mut();
    let three = mem.from_small_int(3).unwrap();
    assert!(matches!(
        mem.fetch(three, 0),
        Err(MemoryError::Immediate { oop: 0x19 })
    ));
    assert!(matches!(
        mem.store(three, 0, three),
        Err(MemoryError::Immediate { .. })
    ));
    assert!(matches!(
        mem.header(Oop::from_bits(8)),
        Err(MemoryError::NotAnObject { addr: 8 })
    ));
    assert_eq!(mem.class_index_of(three).unwrap(), 1);
    let so = mem.special_objects();
    let n = mem.num_slots(so).unwrap();
    let e = mem.fetch(so, n).unwrap_err();
    assert!(
        matches!(e, MemoryError::NoSuchSlot { obj, index, num_slots } if obj == so.bits() && index == n && num_slots == n)
    );
    let before = mem.fetch(so, n - 1).unwrap();
    let e = mem.store(so, n, three).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(&format!("{so:#x}")) && text.contains(&format!("slot {n}")),
        "{text}"
    );
    assert_eq!(mem.fetch(so, n - 1).unwrap(), before);
    // On 32-bit a pointer 4 bytes into an object is no object (objects are
    // 8-aligned), and a value of more than 32 bits fits no slot.
    let mut mem32 = ObjectMemory::new(heap(WordSize::W32));
    let so = mem32.special_objects();
    assert!(matches!(
        mem32.store(so, 0, Oop::from_bits(1 << 32)),
        Err(MemoryError::TooWide { value }) if value == 1 << 32
    ));
    assert_eq!(mem32.fetch(so, 0).unwrap(), mem32.nil());
    let so = mem32.special_objects();
    let inside = Oop::from_bits(so.bits() + 4);
    assert!(!inside.is_immediate(WordSize::W32));
    assert!(matches!(
        mem32.header(inside),
        Err(MemoryError::NotAnObject { addr }) if addr == inside.bits()
    ));
}

#[test]
fn allocation_writes_headers_the_decoder_reads() {
    for word in [WordSize::W64, WordSize::W32] {
        let mut rt = wired(word);
        let mem = rt.memory_mut();
        let nil = mem.nil();
        let a = mem.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 3).unwrap();
        let big = mem.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 300).unwrap();
        let empty = mem.allocate_slots(40, FMT_FIXED, 0).unwrap();
        let s = mem.allocate_bytes(CLASS_BYTE_STRING, 5).unwrap();
        let w16 = mem.allocate_words(45, FMT_16BIT, 3).unwrap();
        let w32 = mem.allocate_words(46, FMT_32BIT, 3).unwrap();
        let w64 = mem.allocate_words(47, FMT_64BIT, 2).unwrap();
        for o in [a, big, empty, s, w16, w32, w64] {
            assert_eq!(mem.space_of(o), Some(Space::Eden));
            assert!(mem.is_young(o));
            assert_eq!(mem.header(o).unwrap().hash(), 0);
        }
        assert_eq!(mem.num_slots(big).unwrap(), 300);
        assert!((0..300).all(|i| mem.fetch(big, i).unwrap() == nil));
        assert_eq!(mem.fetch(a, 2).unwrap(), nil);
        assert!(mem.fetch(a, 3).is_err());
        assert_eq!(mem.bytes(s).unwrap(), &[0; 5]);
        let wb = word.bytes();
        let fmt = |units: u64, unit: u64, base: u8| {
            let slots = (units * unit).div_ceil(wb);
            base + u8::try_from((slots * wb - units * unit) / unit).unwrap()
        };
        assert_eq!(mem.format(s).unwrap(), fmt(5, 1, FMT_BYTES));
        assert_eq!(mem.format(w16).unwrap(), fmt(3, 2, FMT_16BIT));
        assert_eq!(mem.format(w32).unwrap(), fmt(3, 4, FMT_32BIT));
        assert_eq!(mem.format(w64).unwrap(), FMT_64BIT);
        assert_eq!(mem.num_slots(w64).unwrap(), 2 * 8 / wb);
        // The decoder of spur-format reads the same objects back.
        let decoded = match word {
            WordSize::W64 => decode_eden::<L64>(mem),
            WordSize::W32 => decode_eden::<L32>(mem),
        };
        let got: Vec<(u64, u32, u8, u64)> = decoded
            .iter()
            .map(|(addr, o)| {
                (
                    *addr,
                    o.header.class_index(),
                    o.header.format(),
                    o.num_slots,
                )
            })
            .collect();
        let want: Vec<(u64, u32, u8, u64)> = [a, big, empty, s, w16, w32, w64]
            .iter()
            .map(|&o| {
                let h = mem.header(o).unwrap();
                (
                    o.bits(),
                    h.class_index(),
                    h.format(),
                    mem.num_slots(o).unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want);
        assert!(decoded[1].1.has_overflow());
        assert_eq!(mem.allocated().objects, 7);
        assert_eq!(mem.allocated().bytes, mem.eden_used());
        // Allocation wrote nothing outside eden: old space still verifies.
        let report = spur_loader::verify(mem.heap());
        assert!(report.ok(), "{:?}", report.errors);
        // Slots written and read back, whatever the word size.
        let seven = mem.from_small_int(-7).unwrap();
        mem.store(big, 299, seven).unwrap();
        mem.store(a, 0, big).unwrap();
        assert_eq!(mem.fetch(big, 299).unwrap(), seven);
        assert_eq!(mem.fetch(a, 0).unwrap(), big);
        assert_eq!(mem.fetch(big, 298).unwrap(), nil);
    }
}

#[test]
fn bad_allocations_are_refused_and_a_full_eden_sends_them_to_old_space() {
    let mut rt = wired(WordSize::W64);
    let mem = rt.memory_mut();
    assert!(matches!(
        mem.allocate_slots(CLASS_ARRAY, 7, 1),
        Err(MemoryError::BadAllocation { format: 7, .. })
    ));
    assert!(mem.allocate_slots(CLASS_FORWARDER, FMT_FIXED, 1).is_err());
    assert!(mem.allocate_slots(0, FMT_FIXED, 1).is_err());
    assert!(mem.allocate_words(CLASS_ARRAY, FMT_BYTES, 1).is_err());
    let used = mem.eden_used();
    let free = mem.eden_free();
    let big = mem.allocate_bytes(CLASS_BYTE_STRING, free).unwrap();
    assert_eq!(mem.space_of(big), Some(Space::Old));
    assert_eq!(mem.eden_used(), used);
    // Exactly filling eden works.
    mem.allocate_bytes(CLASS_BYTE_STRING, free - 16).unwrap();
    assert_eq!(mem.eden_free(), 0);
}

#[test]
fn a_young_object_stored_into_an_old_one_is_remembered_once() {
    for word in [WordSize::W64, WordSize::W32] {
        remembered_once(word);
    }
}

fn remembered_once(word: WordSize) {
    let mut rt = wired(word);
    let mem = rt.memory_mut();
    let young = mem.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 2).unwrap();
    let so = mem.special_objects();
    let last = mem.num_slots(so).unwrap() - 1;
    assert!(mem.remembered_set().is_empty());
    assert!(!mem.header(so).unwrap().is_remembered());
    mem.store(so, last, young).unwrap();
    mem.store(so, last, young).unwrap();
    mem.store(so, last - 1, young).unwrap();
    assert_eq!(mem.remembered_set(), &[so]);
    assert!(mem.header(so).unwrap().is_remembered());
    assert_eq!(mem.fetch(so, last).unwrap(), young);
    // Young into young and old into old remember nothing.
    let nil = mem.nil();
    mem.store(young, 0, young).unwrap();
    mem.store(young, 1, nil).unwrap();
    mem.store(so, last - 2, nil).unwrap();
    assert_eq!(mem.remembered_set().len(), 1);
}

#[test]
fn an_immutable_object_refuses_stores() {
    let mut rt = wired(WordSize::W64);
    let mem = rt.memory_mut();
    let o = mem.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 1).unwrap();
    let h = mem.header(o).unwrap();
    mem.set_header(o, h.immutable()).unwrap();
    let nil = mem.nil();
    assert!(matches!(
        mem.store(o, 0, mem.true_object()),
        Err(MemoryError::Immutable { index: 0, .. })
    ));
    assert_eq!(mem.fetch(o, 0).unwrap(), nil);
}

#[test]
fn identity_hashes_are_assigned_once_and_classes_keep_their_index() {
    let mut rt = wired(WordSize::W32);
    let mem = rt.memory_mut();
    let a = mem.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 1).unwrap();
    let b = mem.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 1).unwrap();
    let ha = mem.identity_hash(a).unwrap();
    assert_ne!(ha, 0);
    assert!(ha <= 0x3F_FFFF);
    assert_eq!(mem.identity_hash(a).unwrap(), ha);
    assert_eq!(mem.header(a).unwrap().hash(), ha);
    assert_ne!(mem.identity_hash(b).unwrap(), ha);
    let array = mem.class_at(CLASS_ARRAY).unwrap();
    assert_eq!(mem.identity_hash(array).unwrap(), CLASS_ARRAY);
    assert_eq!(mem.class_index_of_class(array), Some(CLASS_ARRAY));
    assert_eq!(mem.class_of(a), Some(array));
    assert_eq!(mem.class_name(array).as_deref(), Some("Array"));
    let meta = mem.class_of(array).unwrap();
    assert_eq!(mem.class_name(meta).as_deref(), Some("Array class"));
    assert!(mem.identity_hash(mem.from_small_int(1).unwrap()).is_err());
}

#[test]
fn instances_of_finds_old_and_new_instances() {
    let mut rt = wired(WordSize::W64);
    let mem = rt.memory_mut();
    let old: Vec<Oop> = mem.instances_of(CLASS_ARRAY).collect();
    assert!(old.contains(&mem.special_objects()));
    let young = mem.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 1).unwrap();
    let all: Vec<Oop> = mem.instances_of(CLASS_ARRAY).collect();
    assert_eq!(all.len(), old.len() + 1);
    assert_eq!(all.last(), Some(&young));
    // Every object the walk yields is a visible object of some space.
    let n = mem.objects().count();
    assert!(mem
        .objects()
        .all(|o| mem.header(o).unwrap().class_index() > 31));
    assert_eq!(mem.objects().next(), Some(mem.nil()));
    assert!(n > all.len());
}

#[test]
fn become_rewrites_old_space_new_space_and_the_class_table() {
    let mut rt = wired(WordSize::W64);
    let mem = rt.memory_mut();
    // from: an old Array (the special objects array's last slot holds it), to: a young one.
    let holder_old = mem.special_objects();
    let from = mem.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 1).unwrap();
    let to = mem.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 2).unwrap();
    let holder_young = mem.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 1).unwrap();
    let last = mem.num_slots(holder_old).unwrap() - 1;
    mem.store(holder_old, last, from).unwrap();
    mem.store(holder_young, 0, from).unwrap();
    let hash = mem.identity_hash(from).unwrap();
    // A class too: a young copy of class Array's metaclass takes its place in the table.
    let point = mem.class_at(CLASS_ARRAY).unwrap();
    let slots = mem.num_slots(point).unwrap();
    let fmt = mem.format(point).unwrap();
    let class_index = mem.class_index_of(point).unwrap();
    let copy = mem.allocate_slots(class_index, fmt, slots).unwrap();
    for i in 0..slots {
        let v = mem.fetch(point, i).unwrap();
        mem.store(copy, i, v).unwrap();
    }
    let mut roots = [from, point, mem.nil()];
    mem.become_forward(&[(from, to), (point, copy)], true, &mut roots)
        .unwrap();
    assert_eq!(roots, [to, copy, mem.nil()]);
    assert_eq!(mem.fetch(holder_old, last).unwrap(), to);
    assert_eq!(mem.fetch(holder_young, 0).unwrap(), to);
    assert_eq!(mem.class_at(CLASS_ARRAY), Some(copy));
    assert_eq!(mem.class_index_of_class(copy), Some(CLASS_ARRAY));
    assert_eq!(mem.header(to).unwrap().hash(), hash);
    assert_eq!(mem.forwarded(from), to);
    assert_eq!(mem.header(from).unwrap().class_index(), CLASS_FORWARDER);
    assert_eq!(mem.forwarded(to), to);
    // The old holder now refers to a young object: remembered.
    assert!(mem.remembered_set().contains(&holder_old));
    // Forwarders are hidden from walks.
    assert!(!mem.objects().any(|o| o == from || o == point));
    assert_eq!(mem.class_name(copy).as_deref(), Some("Array"));
}

#[test]
fn become_refuses_what_it_cannot_do_and_changes_nothing() {
    let mut rt = wired(WordSize::W64);
    let mem = rt.memory_mut();
    let a = mem.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 1).unwrap();
    let b = mem.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 1).unwrap();
    let c = mem.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 1).unwrap();
    mem.store(c, 0, a).unwrap();
    let one = mem.from_small_int(1).unwrap();
    let nil = mem.nil();
    assert!(matches!(
        mem.become_forward(&[(one, a)], false, &mut []),
        Err(MemoryError::Immediate { .. })
    ));
    assert!(matches!(
        mem.become_forward(&[(nil, a)], false, &mut []),
        Err(MemoryError::Become { .. })
    ));
    assert!(matches!(
        mem.become_forward(&[(a, b), (b, a)], false, &mut []),
        Err(MemoryError::Become { .. })
    ));
    assert!(matches!(
        mem.become_forward(&[(a, b), (a, c)], false, &mut []),
        Err(MemoryError::Become { .. })
    ));
    assert_eq!(mem.fetch(c, 0).unwrap(), a);
    assert_eq!(mem.forwarded(a), a);
}

#[test]
fn a_failed_claim_leaves_the_heap_byte_for_byte_as_it_was() {
    let mut mem = ObjectMemory::new(heap(WordSize::W64));
    assert!(mem.headroom_available() > 0);
    // Damage the free-chunk tree: its root (head 0) now leads to nil, no free chunk.
    let fl = mem.free_lists();
    let nil = mem.nil();
    mem.store_raw(fl, 0, nil.bits()).unwrap();
    let snapshot = |m: &ObjectMemory| -> Vec<Vec<u8>> {
        (0..m.heap().segments().len())
            .map(|i| m.heap().segment_bytes(i).to_vec())
            .collect()
    };
    let before = snapshot(&mem);
    let headroom = mem.headroom_available();
    let e = mem.claim_headroom().unwrap_err();
    assert!(
        matches!(e, MemoryError::BadFreeTree { addr } if addr == nil.bits()),
        "{e}"
    );
    assert_eq!(snapshot(&mem), before);
    assert_eq!(mem.headroom_available(), headroom);

    // A damaged free-lists object is refused before anything changes, too.
    let mut mem = ObjectMemory::new(heap(WordSize::W32));
    let fl = mem.free_lists();
    let h = mem.header(fl).unwrap();
    mem.set_header(fl, ObjHeader(h.0 & !0x3F_FFFF | 40))
        .unwrap();
    let before = snapshot(&mem);
    let e = mem.claim_headroom().unwrap_err();
    assert!(
        matches!(
            e,
            MemoryError::BadFreeLists {
                class_index: 40,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(snapshot(&mem), before);
}

#[test]
fn a_claim_makes_a_free_chunk_the_verifier_accepts() {
    let mut mem = ObjectMemory::new(heap(WordSize::W64));
    let c = mem.claim_headroom().unwrap().unwrap();
    assert_eq!(mem.headroom_available(), 0);
    assert!(mem.claim_headroom().unwrap().is_none());
    let chunk = Oop::from_addr(c.chunk);
    assert!(mem.header(chunk).unwrap().is_free_chunk());
    let report = spur_loader::verify(mem.heap());
    assert!(report.ok(), "{:?}", report.errors);
}

#[test]
fn a_young_objects_slots_are_reached_through_its_new_space_offset() {
    let mut rt = wired(WordSize::W64);
    let mem = rt.memory_mut();
    let (tru, seven) = (mem.true_object(), mem.from_small_int(7).unwrap());
    // 300 slots need an overflow word before the header.
    for n in [3u64, 300] {
        let o = mem.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, n).unwrap();
        let (base, slots) = mem.young_slots(o).unwrap();
        assert_eq!(slots, n);
        let last = base + 8 * (ix(n) - 1);
        assert!(mem.set_young_word(last, seven));
        assert_eq!(mem.fetch(o, n - 1).unwrap(), seven);
        mem.store(o, 0, tru).unwrap();
        assert_eq!(mem.young_word(base), Some(tru));
        assert_eq!(
            mem.young_bytes_mut().unwrap()[last..last + 8],
            seven.bits().to_le_bytes()
        );
        let h = mem.header(o).unwrap();
        assert_eq!(mem.young_header(o).map(|y| y.0), Some(h.0));
        let (yh, ybase, yslots) = mem.young_object(o).unwrap();
        assert_eq!((yh.0, ybase, yslots), (h.0, base, n));
    }
    // Old objects and immediates have no view; an immutable one is not writable.
    let so = mem.special_objects();
    assert!(mem.young_slots(so).is_none() && mem.young_header(so).is_none());
    assert!(mem.young_object(seven).is_none() && mem.young_header(seven).is_none());
    let o = mem.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 1).unwrap();
    let h = mem.header(o).unwrap();
    mem.set_header(o, h.immutable()).unwrap();
    assert!(mem.young_slots(o).is_none());
    assert!(mem
        .young_object(o)
        .is_some_and(|(h, _, n)| h.is_immutable() && n == 1));
    // Past the end of new space nothing is read or written.
    let end = mem.young_bytes_mut().unwrap().len();
    assert_eq!(mem.young_word(end - 4), None);
    assert!(!mem.set_young_word(end - 4, seven));
    assert!(!mem.set_young_word(usize::MAX - 3, seven));
}

#[test]
fn a_32_bit_heap_has_no_young_views() {
    let mut rt = wired(WordSize::W32);
    let mem = rt.memory_mut();
    let o = mem.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 2).unwrap();
    assert!(mem.young_slots(o).is_none() && mem.young_object(o).is_none());
    assert_eq!(
        mem.young_header(o).map(|h| h.class_index()),
        Some(CLASS_ARRAY)
    );
}
