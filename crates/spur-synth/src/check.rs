//! A test-only reader that checks a written image against §8 of the
//! reference, using only the format crate's readers.

use spur_format::layout::to_usize;
use std::collections::{BTreeMap, BTreeSet};

use spur_format::raw::*;
use spur_format::{
    FormatError, ImageHeader, ObjHeader, OldAddr, SegmentTable, Walk, WordSize, L32, L64,
};

use crate::classes::{self, *};
use crate::kernel::spl;
use crate::{SynthReport, SynthSpec};

/// One object found by the walk.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Info {
    /// File offset of the base header.
    pub(crate) file_off: usize,
    pub(crate) header: ObjHeader,
    pub(crate) num_slots: u64,
    pub(crate) segment: usize,
    /// Bytes from the first byte (overflow word included) to the next object.
    pub(crate) bytes: u64,
}

/// What the checks counted, for tests to assert on.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub(crate) objects: u64,
    pub(crate) overflow_objects: u64,
    pub(crate) big_objects: u64,
    pub(crate) pointers: u64,
    /// Pointers from a segment to an earlier one.
    pub(crate) backward_cross: u64,
    /// Pointers from segment 0 to a later one.
    pub(crate) forward_from_0: u64,
    pub(crate) page1_instances: u64,
    pub(crate) sista_methods: u64,
    pub(crate) v3_methods: u64,
    pub(crate) tree_chunks: u64,
    pub(crate) tree_chains: u64,
    pub(crate) lilliputian_chunks: u64,
    pub(crate) odd_overflow_chunks: u64,
    pub(crate) by_class: BTreeMap<u32, u64>,
}

/// A parsed image.
pub(crate) struct Image<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) header: ImageHeader,
    pub(crate) table: SegmentTable,
    pub(crate) word: WordSize,
    pub(crate) objs: BTreeMap<u64, Info>,
}

fn walk(
    word: WordSize,
    seg: &[u8],
    base: u64,
    index: usize,
) -> (Vec<spur_format::Obj>, usize, Result<(), FormatError>) {
    match word {
        WordSize::W64 => {
            let mut w = Walk::<L64>::new(seg, base, index);
            let v: Vec<_> = w.by_ref().collect();
            let p = w.position();
            (v, p, w.finish())
        }
        WordSize::W32 => {
            let mut w = Walk::<L32>::new(seg, base, index);
            let v: Vec<_> = w.by_ref().collect();
            let p = w.position();
            (v, p, w.finish())
        }
    }
}

impl<'a> Image<'a> {
    /// Parses the header and segment table, and walks every segment.
    pub(crate) fn parse(bytes: &'a [u8]) -> Image<'a> {
        let header = ImageHeader::parse(bytes, bytes.len() as u64).expect("header parses");
        let table = SegmentTable::read(&header, |off| {
            let o = to_usize(off);
            Ok::<_, FormatError>(bytes[o..o + 16].try_into().unwrap())
        })
        .expect("segment table reads");
        let word = header.word;
        let mut objs = BTreeMap::new();
        for s in &table.segments {
            let seg = &bytes[to_usize(s.file_offset)..to_usize(s.file_offset + s.size)];
            let (list, pos, end) = walk(word, seg, s.old_start.get(), s.index);
            end.unwrap_or_else(|e| panic!("segment {} walk: {e}", s.index));
            assert_eq!(pos as u64, s.size - BRIDGE_BYTES, "walk ends at the bridge");
            for o in list {
                let bytes_total =
                    word.body_bytes(o.num_slots).unwrap() + if o.has_overflow() { 8 } else { 0 };
                objs.insert(
                    s.old_start.get() + o.offset as u64,
                    Info {
                        file_off: to_usize(s.file_offset) + o.offset,
                        header: o.header,
                        num_slots: o.num_slots,
                        segment: s.index,
                        bytes: bytes_total,
                    },
                );
            }
        }
        Image {
            bytes,
            header,
            table,
            word,
            objs,
        }
    }

    pub(crate) fn obj(&self, addr: u64) -> &Info {
        self.objs
            .get(&addr)
            .unwrap_or_else(|| panic!("{addr:#x} is no object start"))
    }

    pub(crate) fn slot(&self, addr: u64, i: u64) -> u64 {
        let o = self.obj(addr);
        assert!(
            i < o.num_slots || (i == 0 && o.num_slots == 0),
            "slot {i} of {addr:#x}"
        );
        let at = o.file_off + 8 + to_usize(i * self.word.bytes());
        match self.word {
            WordSize::W64 => u64::from_le_bytes(self.bytes[at..at + 8].try_into().unwrap()),
            WordSize::W32 => u32::from_le_bytes(self.bytes[at..at + 4].try_into().unwrap()) as u64,
        }
    }

    /// The bytes of a byte object (format 16..23), trailing padding excluded.
    pub(crate) fn byte_data(&self, addr: u64) -> &[u8] {
        let o = self.obj(addr);
        let f = o.header.format();
        assert!((16..24).contains(&f), "{addr:#x} has format {f}");
        let n = to_usize(o.num_slots * self.word.bytes()) - (f & 7) as usize;
        &self.bytes[o.file_off + 8..o.file_off + 8 + n]
    }

    pub(crate) fn int(&self, oop: u64) -> i64 {
        self.word
            .small_integer(oop)
            .unwrap_or_else(|| panic!("{oop:#x} is not a SmallInteger"))
    }

    fn class_at(&self, index: u32) -> u64 {
        let hidden = self.hidden_roots();
        let page = self.slot(hidden, (index >> CLASS_TABLE_MAJOR_SHIFT) as u64);
        if page == self.nil() {
            return page;
        }
        self.slot(page, index as u64 & (CLASS_TABLE_PAGE_SLOTS - 1))
    }

    fn nil(&self) -> u64 {
        self.header.old_base.get()
    }

    fn hidden_roots(&self) -> u64 {
        *self.objs.keys().nth(4).unwrap()
    }

    fn is_class(&self, addr: u64, index: u32) -> bool {
        !self.word.is_immediate(addr)
            && self.objs.contains_key(&addr)
            && self.obj(addr).header.class_index() == index
    }

    fn symbol(&self, addr: u64) -> String {
        assert!(
            self.is_class(addr, BYTE_SYMBOL),
            "{addr:#x} is not a ByteSymbol"
        );
        String::from_utf8(self.byte_data(addr).to_vec()).unwrap()
    }

    fn class_name(&self, class: u64) -> String {
        self.symbol(self.slot(class, NAME_INDEX as u64))
    }
}

/// Runs every check; panics with a message on the first failure.
pub(crate) fn check(bytes: &[u8], spec: &SynthSpec, report: &SynthReport) -> Summary {
    let img = Image::parse(bytes);
    let word = img.word;
    let w = word.bytes();
    let h = &img.header;
    let mut sum = Summary::default();

    // Header and file (§8 "Header and file").
    assert_eq!(h.format, spec.format());
    assert_eq!(h.format, report.format);
    assert_eq!(h.word, spec.word);
    assert_eq!(h.prefix_bytes, if spec.prefix { PREFIX_BYTES } else { 0 });
    assert_eq!(h.header_size, word.standard_header_size() as u64);
    assert_eq!(h.data_size, report.data_size);
    assert_eq!(bytes.len() as u64, report.file_len);
    assert_eq!(
        report.file_len,
        h.prefix_bytes + h.header_size + h.data_size
    );
    assert_eq!(h.flags, FLAG_FLOATS_LITTLE_ENDIAN);
    assert!(h.last_hash != 0 && h.last_hash <= 0x3F_FFFF);
    assert_eq!(h.old_base.get(), spec.old_base);
    assert_eq!(h.old_base.get(), report.nil);
    assert_eq!(h.special_objects_oop.get(), report.special_objects_oop);
    assert_eq!(h.free_old_space, report.free_bytes);
    assert!(h.data_size >= spec.heap_bytes.div_ceil(8) * 8);

    // Segments.
    let segs = &img.table.segments;
    assert_eq!(segs.len(), spec.segments);
    assert_eq!(segs.len(), report.segments.len());
    for (s, r) in segs.iter().zip(&report.segments) {
        assert_eq!(
            (s.index, s.old_start.get(), s.size, s.file_offset),
            (r.index, r.old_start, r.size, r.file_offset)
        );
        if s.index + 1 < segs.len() {
            assert_eq!(s.gap_after, spec.gap_bytes);
        }
    }
    assert_eq!(h.first_segment_size, segs[0].size);
    let total: u64 = segs.iter().map(|s| s.size).sum();
    assert_eq!(total, h.data_size);
    let per = spec.heap_bytes / spec.segments as u64 / 8 * 8;
    if segs[0].size == per {
        // Roughly equal sizes, unless segment 0 had to grow to hold the kernel.
        for s in &segs[1..] {
            assert!(
                s.size >= per && s.size < per + 8 * spec.segments as u64,
                "segment {} is {} bytes",
                s.index,
                s.size
            );
        }
    }

    // Objects: counts and header bits.
    assert_eq!(img.objs.len() as u64, report.objects);
    sum.objects = img.objs.len() as u64;
    for (&a, o) in &img.objs {
        assert_eq!(a % 8, 0);
        let hd = o.header;
        assert!(!hd.is_forwarder(), "forwarder at {a:#x}");
        assert!(
            !hd.is_remembered() && !hd.is_grey() && !hd.is_marked(),
            "flag bits at {a:#x}"
        );
        assert!(!hd.is_bridge(), "bridge inside a segment at {a:#x}");
        if hd.raw_num_slots() == 255 {
            sum.overflow_objects += 1;
        }
        if o.bytes > 64 * 1024 && !hd.is_free_chunk() {
            sum.big_objects += 1;
        }
        *sum.by_class.entry(hd.class_index()).or_default() += 1;
    }

    // First five objects (§4.1).
    let first: Vec<(u64, Info)> = img.objs.iter().take(6).map(|(&a, &o)| (a, o)).collect();
    let nil = spec.old_base;
    for (i, cls) in [UNDEFINED_OBJECT, FALSE, TRUE].into_iter().enumerate() {
        let (a, o) = first[i];
        assert_eq!(a, nil + 16 * i as u64);
        assert_eq!(
            (o.header.class_index(), o.header.format(), o.num_slots),
            (cls, 0, 0)
        );
    }
    let (fl, flo) = first[3];
    assert_eq!(fl, nil + 48);
    assert_eq!(
        (flo.header.class_index(), flo.header.format(), flo.num_slots),
        (
            word.word_array_pun(),
            word.word_indexable_format(),
            word.num_free_lists()
        )
    );
    let (hr, hro) = first[4];
    assert_eq!(hr, nil + if word == WordSize::W64 { 576 } else { 192 });
    assert_eq!(
        (hro.header.class_index(), hro.header.format(), hro.num_slots),
        (CLASS_ARRAY_PUN, FMT_INDEXABLE, HIDDEN_ROOTS_SLOTS)
    );
    assert_eq!(
        first[5].1.header.class_index(),
        CLASS_ARRAY_PUN,
        "page 0 follows the hidden roots"
    );

    // Class table (§4.2).
    let mut pages = 0;
    while img.slot(hr, pages) != nil {
        pages += 1;
    }
    assert!(pages > 1, "more than one class-table page");
    for i in pages..HIDDEN_ROOTS_SLOTS {
        assert_eq!(img.slot(hr, i), nil, "hidden root {i}");
    }
    let mut class_entries = 0;
    for p in 0..pages {
        let page = img.slot(hr, p);
        let po = img.obj(page);
        assert_eq!(
            (po.header.class_index(), po.header.format(), po.num_slots),
            (CLASS_ARRAY_PUN, FMT_INDEXABLE, 1024)
        );
        for j in 0..1024 {
            let c = img.slot(page, j);
            if c == nil {
                continue;
            }
            let index = u32::try_from(p * 1024 + j).expect("the builder makes small values");
            let co = img.obj(c);
            assert_eq!(
                co.header.hash(),
                index,
                "class at {index} has hash {}",
                co.header.hash()
            );
            assert_eq!(img.class_at(co.header.hash()), c);
            class_entries += 1;
            // Squeak layout: a class's class is its metaclass, whose thisClass is it;
            // a metaclass's class is Metaclass.
            let meta = img.class_at(co.header.class_index());
            assert_ne!(meta, nil);
            let metaclass = img.class_at(METACLASS);
            if meta == metaclass {
                assert_eq!(co.num_slots, METACLASS_SLOTS);
                let this = img.slot(c, THIS_CLASS_INDEX as u64);
                assert_eq!(img.class_at(img.obj(this).header.class_index()), c);
            } else {
                assert_eq!(co.num_slots, CLASS_SLOTS);
                assert_eq!(img.slot(meta, THIS_CLASS_INDEX as u64), c);
                assert_eq!(img.class_at(img.obj(meta).header.class_index()), metaclass);
                let name = img.class_name(c);
                let def =
                    classes::class_named(&name).unwrap_or_else(|| panic!("unknown class {name}"));
                assert_eq!(def.index, index, "{name}");
                let fmt = img.int(img.slot(c, FORMAT_INDEX as u64));
                assert_eq!(
                    fmt,
                    (def.inst_spec as i64) << 16 | (inst_size(def)).cast_signed(),
                    "{name} format"
                );
            }
        }
    }
    assert_eq!(class_entries, report.classes);
    assert!(img.class_at(1) != nil && img.class_at(2) != nil);
    assert_eq!(img.class_at(3), nil);
    assert_eq!(img.class_at(4) != nil, word == WordSize::W64);
    assert_eq!(img.class_name(img.class_at(BYTE_ARRAY)), "ByteArray");
    assert_eq!(img.class_name(img.class_at(BYTE_STRING)), "ByteString");
    assert_eq!(img.class_name(img.class_at(SYNTH_RECORD)), "SynthRecord");

    // Every object: class, pointers, methods (§8 "Class table", "Pointers", "Methods").
    let free_set: BTreeSet<u64> = img
        .objs
        .iter()
        .filter(|(_, o)| o.header.is_free_chunk())
        .map(|(&a, _)| a)
        .collect();
    for (&a, o) in &img.objs {
        let hd = o.header;
        let ci = hd.class_index();
        if hd.is_free_chunk() {
            assert_eq!(hd.format(), 0);
            continue;
        }
        if ci <= LAST_CLASS_INDEX_PUN {
            assert!(
                [CLASS_ARRAY_PUN, word.word_array_pun()].contains(&ci),
                "hidden object of class {ci} at {a:#x}"
            );
        } else {
            assert_ne!(
                img.class_at(ci),
                nil,
                "class index {ci} of {a:#x} names no class"
            );
        }
        if ci == SYNTH_RECORD {
            sum.page1_instances += 1;
        }
        let pointer_slots = if hd.is_pointers() {
            o.num_slots
        } else if hd.is_compiled_method() {
            let mh = img.int(img.slot(a, 0));
            let nl = (mh & METHOD_NUM_LITERALS_MASK).cast_unsigned();
            assert!(nl < o.num_slots, "numLiterals + 1 <= numSlots");
            if mh < 0 {
                sum.sista_methods += 1;
                assert!(
                    spec.multiple_bytecode_sets,
                    "Sista method in a single-set image"
                );
            } else {
                sum.v3_methods += 1;
            }
            assert!(nl >= 2);
            let binding = img.slot(a, nl);
            assert!(img.is_class(binding, ASSOCIATION));
            let cls = img.slot(binding, 1);
            assert_eq!(
                img.class_at(img.obj(cls).header.hash()),
                cls,
                "method class"
            );
            img.symbol(img.slot(a, nl - 1));
            nl + 1
        } else {
            0
        };
        for i in 0..pointer_slots {
            let v = img.slot(a, i);
            if word.is_immediate(v) {
                continue;
            }
            sum.pointers += 1;
            let t = img
                .objs
                .get(&v)
                .unwrap_or_else(|| panic!("slot {i} of {a:#x} holds {v:#x}, no object start"));
            assert!(
                !free_set.contains(&v),
                "slot {i} of {a:#x} points at a free chunk"
            );
            assert!(!t.header.is_bridge());
            assert!(img.table.segment_of(OldAddr::new(v)).is_some());
            if t.segment < o.segment {
                sum.backward_cross += 1;
            }
            if o.segment == 0 && t.segment > 0 {
                sum.forward_from_0 += 1;
            }
        }
    }

    // Free lists (§3.5.1, §8 "Free space").
    let heads: Vec<u64> = (0..word.num_free_lists())
        .map(|i| img.slot(fl, i))
        .collect();
    let chunk = |a: u64| -> &Info {
        let o = img.obj(a);
        assert!(
            o.header.is_free_chunk(),
            "{a:#x} on a free list is no free chunk"
        );
        o
    };
    let mut visited = BTreeSet::new();
    let tree_min = word.num_free_lists() * 8;
    assert_eq!(heads[1], 0);
    for (i, &head) in heads.iter().enumerate().skip(1) {
        let mut c = head;
        while c != 0 {
            let o = chunk(c);
            assert_eq!(o.bytes, 8 * i as u64, "chunk {c:#x} on list {i}");
            assert!(visited.insert(c), "chunk {c:#x} reached twice");
            if o.bytes == 16 && word == WordSize::W64 {
                sum.lilliputian_chunks += 1;
            }
            c = img.slot(c, FREE_CHUNK_NEXT);
        }
    }
    // The tree: sizes ordered, parents consistent, equal sizes chained on next.
    let mut stack = vec![(heads[0], 0u64, tree_min, u64::MAX)];
    while let Some((node, parent, lo, hi)) = stack.pop() {
        if node == 0 {
            continue;
        }
        let o = chunk(node);
        let size = o.bytes;
        assert!(
            size >= lo && size < hi && size >= tree_min,
            "tree node {node:#x} of {size} outside {lo}..{hi}"
        );
        assert_eq!(img.slot(node, FREE_CHUNK_PARENT), parent);
        sum.tree_chunks += 1;
        assert!(visited.insert(node));
        let mut c = img.slot(node, FREE_CHUNK_NEXT);
        if c != 0 {
            sum.tree_chains += 1;
        }
        while c != 0 {
            assert_eq!(chunk(c).bytes, size);
            assert!(visited.insert(c), "chunk {c:#x} reached twice");
            for s in [FREE_CHUNK_PARENT, FREE_CHUNK_SMALLER, FREE_CHUNK_LARGER] {
                assert_eq!(img.slot(c, s), 0);
            }
            sum.tree_chunks += 1;
            c = img.slot(c, FREE_CHUNK_NEXT);
        }
        stack.push((img.slot(node, FREE_CHUNK_SMALLER), node, lo, size));
        stack.push((img.slot(node, FREE_CHUNK_LARGER), node, size + 1, hi));
    }
    assert_eq!(visited, free_set, "every free chunk on exactly one list");
    let free_bytes: u64 = free_set.iter().map(|a| img.obj(*a).bytes).sum();
    assert_eq!(free_bytes, report.free_bytes);
    assert_eq!(free_set.len() as u64, report.free_chunks);
    for &a in &free_set {
        let o = img.obj(a);
        // The VM's encoding: a double header from 255*W + 8 bytes on.
        assert_eq!(
            o.header.raw_num_slots() == 255,
            o.bytes >= 255 * w + 8,
            "chunk {a:#x} of {}",
            o.bytes
        );
        if o.header.raw_num_slots() == 255 && o.num_slots < 255 {
            sum.odd_overflow_chunks += 1;
        }
    }

    // Special objects (§4.3) and the load-time compact-class checks.
    let so = h.special_objects_oop.get();
    let soo = img.obj(so);
    assert_eq!(
        (soo.header.class_index(), soo.header.format(), soo.num_slots),
        (ARRAY, FMT_INDEXABLE, spl::SIZE)
    );
    let splo = |i: usize| img.slot(so, i as u64);
    assert_eq!([splo(0), splo(1), splo(2)], [nil, nil + 16, nil + 32]);
    for (slot, index, name) in spl::COMPACT_CLASS_CHECKS {
        assert_eq!(splo(slot), img.class_at(index), "{name}");
    }
    assert_eq!(
        splo(spl::CLASS_BLOCK_CLOSURE),
        img.class_at(CLASS_BLOCK_CLOSURE)
    );
    assert_eq!(
        splo(spl::CLASS_FULL_BLOCK_CLOSURE),
        img.class_at(CLASS_FULL_BLOCK_CLOSURE)
    );
    assert_eq!(splo(spl::CLASS_BYTE_ARRAY), img.class_at(BYTE_ARRAY));
    assert_eq!(splo(spl::CLASS_BYTE_STRING), img.class_at(BYTE_STRING));
    assert_eq!(splo(spl::CLASS_SMALL_INTEGER), img.class_at(SMALL_INTEGER));
    assert_eq!(splo(spl::CLASS_CHARACTER), img.class_at(CHARACTER));
    for (i, name) in [
        (spl::CLASS_BITMAP, "Bitmap"),
        (spl::CLASS_POINT, "Point"),
        (spl::CLASS_MESSAGE, "Message"),
        (spl::CLASS_COMPILED_METHOD, "CompiledMethod"),
        (spl::CLASS_SEMAPHORE, "Semaphore"),
        (spl::CLASS_PROCESS, "Process"),
    ] {
        assert_eq!(img.class_name(splo(i)), name);
    }
    assert_eq!(
        img.symbol(splo(spl::SELECTOR_DOES_NOT_UNDERSTAND)),
        "doesNotUnderstand:"
    );
    assert_eq!(
        img.symbol(splo(spl::SELECTOR_CANNOT_RETURN)),
        "cannotReturn:"
    );
    assert_eq!(
        img.symbol(splo(spl::SELECTOR_MUST_BE_BOOLEAN)),
        "mustBeBoolean"
    );
    let ss = splo(spl::SPECIAL_SELECTORS);
    assert_eq!(img.obj(ss).num_slots, 64);
    assert_eq!(img.symbol(img.slot(ss, 0)), "+");
    assert_eq!(img.int(img.slot(ss, 35)), 2, "at:put: takes 2 arguments");
    assert!(img.is_class(splo(spl::EXTERNAL_OBJECTS_ARRAY), ARRAY));
    assert!(img.is_class(splo(spl::SMALLTALK_DICTIONARY), SYSTEM_DICTIONARY));
    for i in 1..to_usize(spl::SIZE) {
        let known = [
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 15, 16, 18, 19, 20, 21, 23, 25, 26, 27, 36,
            37, 38, 42,
        ];
        assert_eq!(known.contains(&i), splo(i) != nil, "special object {i}");
    }

    // The resumable process.
    let assoc = splo(spl::SCHEDULER_ASSOCIATION);
    assert!(img.is_class(assoc, ASSOCIATION));
    assert_eq!(img.symbol(img.slot(assoc, 0)), "Processor");
    let sched = img.slot(assoc, 1);
    assert!(img.is_class(sched, PROCESSOR_SCHEDULER));
    let lists = img.slot(sched, 0);
    assert!(img.is_class(lists, ARRAY));
    let active = img.slot(sched, 1);
    assert!(img.is_class(active, PROCESS));
    assert_eq!(img.slot(active, 3), nil, "the active process is on no list");
    assert!(img.int(img.slot(active, 2)) > 0);
    let mut ctx = img.slot(active, 1);
    let mut depth = 0;
    while ctx != nil {
        check_context(&img, ctx);
        depth += 1;
        ctx = img.slot(ctx, 0);
    }
    assert_eq!(depth, 2);
    let top = img.slot(active, 1);
    let m = img.slot(top, 3);
    assert_eq!(img.symbol(img.slot(m, 1)), "synthStep");
    // The idle process waits in the list of its priority.
    let mut waiting = 0;
    for p in 0..img.obj(lists).num_slots {
        let list = img.slot(lists, p);
        assert!(img.is_class(list, LINKED_LIST));
        let mut proc_ = img.slot(list, 0);
        while proc_ != nil {
            assert!(img.is_class(proc_, PROCESS));
            assert_eq!(img.slot(proc_, 3), list);
            assert_eq!(img.int(img.slot(proc_, 2)), p.cast_signed() + 1);
            check_context(&img, img.slot(proc_, 1));
            waiting += 1;
            proc_ = img.slot(proc_, 0);
        }
    }
    assert_eq!(waiting, 1);
    sum
}

/// A suspended context: class 36, a method, a pc inside its bytecodes and
/// a stack pointer within its slots; slots above the stack pointer nil.
fn check_context(img: &Image<'_>, ctx: u64) {
    let w = img.word.bytes();
    let o = img.obj(ctx);
    assert_eq!(
        (o.header.class_index(), o.header.format()),
        (CONTEXT, FMT_INDEXABLE_WITH_FIXED)
    );
    let method = img.slot(ctx, 3);
    let mo = img.obj(method);
    assert!(mo.header.is_compiled_method() && mo.header.class_index() == COMPILED_METHOD);
    let nl = (img.int(img.slot(method, 0)) & METHOD_NUM_LITERALS_MASK).cast_unsigned();
    let method_bytes = mo.num_slots * w - (mo.header.format() & 7) as u64;
    let pc = (img.int(img.slot(ctx, 1))).cast_unsigned();
    let initial = (nl + 1) * w + 1;
    // Before the trailer byte.
    assert!(
        pc >= initial && pc < method_bytes,
        "pc {pc} outside {initial}..{method_bytes}"
    );
    let sp = (img.int(img.slot(ctx, 2))).cast_unsigned();
    assert!(CONTEXT_FIXED_SLOTS + sp <= o.num_slots);
    for i in CONTEXT_FIXED_SLOTS + sp..o.num_slots {
        assert_eq!(img.slot(ctx, i), img.nil());
    }
    // The receiver's class owns the method.
    let binding = img.slot(method, nl);
    let cls = img.slot(binding, 1);
    let rcvr = img.slot(ctx, 5);
    let rcvr_class = match img.word.small_integer(rcvr) {
        Some(_) => img.class_at(SMALL_INTEGER),
        None => img.class_at(img.obj(rcvr).header.class_index()),
    };
    let mut c = rcvr_class;
    while c != cls {
        c = img.slot(c, SUPERCLASS_INDEX as u64);
        assert_ne!(
            c,
            img.nil(),
            "the method's class is no superclass of the receiver's class"
        );
    }
}
