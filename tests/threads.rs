//! The threaded paths give the single-threaded results: relocation with
//! each half of a segment read and rewritten on its own core (from a guessed
//! start, checked), the verifier's split pointer walk and
//! the verifier's and the class histogram's walks from guessed starts,
//! over every kind of builder image (made large enough to span many read
//! chunks and several verify pieces), damaged heaps (one with a guess that
//! is no object start, one broken in the second part of its walk) and the
//! corpus.

use std::path::Path;

use spur_format::WordSize;
use spur_loader::{
    load_path, verify_in_windows, verify_in_windows_of, verify_with, LiveRecord, LoadOptions,
    LoadedHeap, Placement, PlacementRequest, Threads,
};
use spur_runtime::{class_histogram_in_parts, class_histogram_with, ObjectMemory, MIN_PART_BYTES};
use spur_tests::{address_space, assert_same_objects, corpus_dir, image_kinds, CORPUS};

fn relocated(threads: Threads) -> LoadOptions {
    LoadOptions {
        placement: PlacementRequest::Relocate,
        threads,
        ..LoadOptions::default()
    }
}

/// Loads `path` relocated on one thread and on two, and checks that both
/// heaps hold the same objects, count the same objects and verify alike.
fn same_both_ways(path: &Path, name: &str) -> u64 {
    let one = load_path(path, &relocated(Threads::One)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let two =
        load_path(path, &relocated(Threads::AtMost(2))).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(one.placement(), Placement::Relocated, "{name}");
    assert_eq!(two.placement(), Placement::Relocated, "{name}");
    let n = assert_same_objects(&one, &two);
    assert_eq!(one.count_objects().unwrap(), n, "{name}");
    assert_eq!(two.count_objects().unwrap(), n, "{name}");
    for heap in [&one, &two] {
        verify_alike(heap, name);
    }
    assert!(verify_with(&one, Threads::One).ok(), "{name}");
    let h = histogram_alike(ObjectMemory::new(one), name);
    assert_eq!(h.objects, n, "{name}");
    n
}

/// `stats`' histogram is the same on one thread and on two and three, with
/// the segments split into parts of 256 KiB (many guessed starts) and of the
/// default size.
fn histogram_alike(memory: ObjectMemory, name: &str) -> spur_runtime::Histogram {
    let one = class_histogram_with(&memory, Threads::One).unwrap_or_else(|e| panic!("{name}: {e}"));
    for (t, part) in [(2, 256 << 10), (3, 256 << 10), (2, MIN_PART_BYTES)] {
        let got = class_histogram_in_parts(&memory, Threads::AtMost(t), part)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, one, "{name}, {t} threads, parts of {part} bytes");
    }
    one
}

/// The verifier's report is the same on one, two and three threads, with
/// either record of live objects, and with that record covering a few MiB
/// of the heap at a time, or a few thousand objects (so a heap of several
/// windows is checked window by window, windows ending at a size or at an
/// object).
fn verify_alike(heap: &LoadedHeap, name: &str) -> spur_loader::Report {
    let one = verify_with(heap, Threads::One);
    for t in [2, 3] {
        assert_eq!(
            verify_with(heap, Threads::AtMost(t)),
            one,
            "{name}, {t} threads"
        );
    }
    for (window, t) in [(3 << 20, 1), (3 << 20, 2), ((16 << 20) + 512, 2)] {
        assert_eq!(
            verify_in_windows(heap, Threads::AtMost(t), window),
            one,
            "{name}, windows of {window} bytes, {t} threads"
        );
    }
    for record in [LiveRecord::Bitmap, LiveRecord::Compact] {
        for (window, objects, t) in [
            (16 << 20, 5_000, 2),
            (3 << 20, 20_000, 1),
            ((3 << 20) + 512, u64::MAX, 2),
            (spur_loader::WINDOW_BYTES, u64::MAX, 2),
        ] {
            assert_eq!(
                verify_in_windows_of(heap, Threads::AtMost(t), window, objects, record),
                one,
                "{name}, {record:?}, windows of {window} bytes or {objects} objects, {t} threads"
            );
        }
    }
    one
}

#[test]
fn every_builder_kind_relocates_and_verifies_the_same_on_two_threads() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    for (name, mut spec) in image_kinds() {
        // Several 2 MiB read chunks and 8 MiB verify pieces per segment.
        spec.heap_bytes = (20 << 20) * spec.segments as u64;
        let path = dir.path().join(format!("{name}.image"));
        spur_synth::write_image_file(&spec, &path).unwrap();
        let n = same_both_ways(&path, name);
        assert!(n > 100_000, "{name}: only {n} objects");
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn a_heap_with_many_bad_pointers_verifies_the_same_on_two_threads() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    for word in [WordSize::W64, WordSize::W32] {
        let spec = spur_synth::SynthSpec::new(word, 40 << 20);
        let path = dir.path().join("bad.image");
        spur_synth::write_image_file(&spec, &path).unwrap();
        let mut heap = load_path(&path, &LoadOptions::default()).unwrap();
        // Point a slot of objects spread over the whole heap into the middle
        // of nil, into the middle of an object near the heap's end (in the
        // last window of a windowed verify), onto a free chunk and outside
        // the heap: more findings than a report keeps, in every verify piece.
        let w = usize::try_from(word.bytes()).unwrap();
        let start = heap.segments()[0].new_start.get();
        let (victims, free) = match word {
            WordSize::W64 => pointer_objects::<spur_format::L64>(heap.segment_bytes(0), start),
            WordSize::W32 => pointer_objects::<spur_format::L32>(heap.segment_bytes(0), start),
        };
        let last = start + u64::try_from(*victims.last().unwrap()).unwrap();
        let free = start + u64::try_from(free.unwrap()).unwrap();
        // The word after an object at a 16-byte boundary and the word before
        // one 8 bytes past it: each in the 16-byte block of an object start.
        let at = |k: u64| {
            victims
                .iter()
                .map(|&o| start + u64::try_from(o).unwrap())
                .find(|a| a % 16 == k)
                .unwrap()
        };
        let targets = [
            heap.nil().get() + 8,
            last + 8,
            free,
            start - 0x1000,
            at(0) + 8,
            at(8) - 8,
        ];
        let step = victims.len() / 500;
        assert!(step > 0, "{word:?}: {} pointer objects", victims.len());
        let bytes = heap.segment_bytes_mut(0);
        let mut hits = 0;
        for &at in victims.iter().step_by(step).take(500) {
            let target = targets[hits % targets.len()];
            bytes[at + 8..at + 8 + w].copy_from_slice(&target.to_le_bytes()[..w]);
            hits += 1;
        }
        assert_eq!(hits, 500, "{word:?}");
        let report = verify_alike(&heap, "damaged");
        assert!(!report.ok());
        for why in [
            "into the middle of an object",
            "points to a free chunk",
            "lies outside every segment",
        ] {
            assert!(
                report.errors.iter().any(|f| f.what.contains(why)),
                "{word:?}: no finding says '{why}'"
            );
        }
        assert_eq!(
            u64::try_from(report.errors.len()).unwrap() + report.errors_dropped,
            500,
            "{word:?}: {:?}",
            report.errors.first()
        );
        drop(heap);
        std::fs::remove_file(&path).unwrap();
    }
}

/// A builder image of `heap` bytes (one segment) as bytes, with the
/// segment's place in them and the offsets of its objects.
fn image_with_starts(word: WordSize, heap: u64) -> (Vec<u8>, usize, usize, Vec<usize>) {
    let spec = spur_synth::SynthSpec::new(word, heap);
    let (image, report) = spur_synth::image_bytes(&spec).unwrap();
    let seg = &report.segments[0];
    let (at, size) = (
        usize::try_from(seg.file_offset).unwrap(),
        usize::try_from(seg.size).unwrap(),
    );
    let bytes = &image[at..at + size];
    let starts = match word {
        WordSize::W64 => object_starts::<spur_format::L64>(bytes),
        WordSize::W32 => object_starts::<spur_format::L32>(bytes),
    };
    (image, at, size, starts)
}

/// The first byte (overflow word included) of every object of a segment.
fn object_starts<L: spur_format::Layout>(bytes: &[u8]) -> Vec<usize> {
    spur_format::Walk::<L>::new(bytes, 0, 0)
        .map(|o| o.start())
        .collect()
}

/// The first object start at or past `permille` thousandths of the segment.
fn start_past(starts: &[usize], size: usize, permille: usize) -> usize {
    let at = size / 1000 * permille;
    *starts.iter().find(|&&s| s >= at).unwrap()
}

/// Replaces the objects from 40 % to 60 % of the segment by one byte
/// object whose contents are a copy of real objects from near the heap's
/// start: headers that look like objects, right where a load on two
/// threads guesses the start of the segment's second half. Returns the
/// byte object's first and last byte (segment offsets).
fn with_a_byte_object_of_headers(
    word: WordSize,
    image: &mut [u8],
    at: usize,
    size: usize,
    starts: &[usize],
) -> (usize, usize) {
    let (s, e) = (start_past(starts, size, 400), start_past(starts, size, 600));
    let from = start_past(starts, size, 20);
    let body = e - s - 16;
    assert!(from + body < s);
    let w = usize::try_from(word.bytes()).unwrap();
    let seg = &mut image[at..at + size];
    // A byte class from the heap: that of the first byte object.
    let class = starts
        .iter()
        .map(|&o| spur_format::ObjHeader(u64::from_le_bytes(seg[o..o + 8].try_into().unwrap())))
        .find(|h| h.format() >= 16 && h.class_index() > 31)
        .unwrap()
        .class_index();
    let slots = u64::try_from(body / w).unwrap();
    seg[s..s + 8].copy_from_slice(&spur_format::objheader::overflow_word(slots).to_le_bytes());
    seg[s + 8..s + 16].copy_from_slice(
        &spur_format::ObjHeader::new(class, 16, 255, 0x1234)
            .0
            .to_le_bytes(),
    );
    seg.copy_within(from..from + body, s + 16);
    (s, e)
}

/// Loads `path` relocated on one, two and three threads and checks that
/// the heaps hold the same objects (without verifying: the test heaps here
/// point into objects they replaced).
fn same_objects_relocated(path: &Path, name: &str) -> u64 {
    let one = load_path(path, &relocated(Threads::One)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let n = one.count_objects().unwrap();
    for t in [2, 3] {
        let more = load_path(path, &relocated(Threads::AtMost(t)))
            .unwrap_or_else(|e| panic!("{name}, {t} threads: {e}"));
        assert_eq!(assert_same_objects(&one, &more), n, "{name}, {t} threads");
        assert_eq!(more.count_objects().unwrap(), n, "{name}, {t} threads");
    }
    n
}

/// The load on one thread fails, and on two and three with the same error
/// (compared whole, with the offset, address and reason it carries).
fn fails_alike(path: &Path, name: &str) -> String {
    let one = load_path(path, &relocated(Threads::One))
        .err()
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|| panic!("{name}: loaded"));
    for t in [2, 3] {
        let more = load_path(path, &relocated(Threads::AtMost(t)))
            .err()
            .map(|e| format!("{e:?}"))
            .unwrap_or_else(|| panic!("{name}, {t} threads: loaded"));
        assert_eq!(more, one, "{name}, {t} threads");
    }
    one
}

#[test]
fn a_wrong_guess_in_the_middle_of_a_segment_is_caught() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    for word in [WordSize::W64, WordSize::W32] {
        let (mut image, at, size, starts) = image_with_starts(word, 40 << 20);
        let path = dir.path().join("guess.image");
        std::fs::write(&path, &image).unwrap();
        let before = same_objects_relocated(&path, "intact");
        let (s, e) = with_a_byte_object_of_headers(word, &mut image, at, size, &starts);
        // The middle, and a good way around it, is inside the byte object.
        assert!(s < size * 45 / 100 && e > size * 55 / 100, "{word:?}");
        std::fs::write(&path, &image).unwrap();
        let inside = starts.iter().filter(|&&o| o >= s && o < e).count();
        let n = same_objects_relocated(&path, "byte object in the middle");
        assert_eq!(n + u64::try_from(inside).unwrap() - 1, before, "{word:?}");
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn a_damaged_heap_fails_alike_on_one_two_and_three_threads() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    for word in [WordSize::W64, WordSize::W32] {
        let (image, at, size, starts) = image_with_starts(word, 40 << 20);
        let mut with_bytes = image.clone();
        with_a_byte_object_of_headers(word, &mut with_bytes, at, size, &starts);
        // An overflow word before a header that does not say 255 slots, at
        // an object start: in the first half, just past the middle (near
        // the guessed start), and late in the second half. In the heap with
        // the byte object, the middle ones fall in its contents: there they
        // are no damage, but they change what the guess meets.
        let mut errors = Vec::new();
        for (base, name) in [(&image, "intact"), (&with_bytes, "byte object")] {
            for frac in [250, 500, 501, 750] {
                let mut damaged = base.clone();
                let o = at + start_past(&starts, size, frac);
                let w = spur_format::objheader::overflow_word(3).to_le_bytes();
                damaged[o..o + 8].copy_from_slice(&w);
                let path = dir.path().join("damaged.image");
                std::fs::write(&path, &damaged).unwrap();
                let what = format!("{word:?}, {name}, at {frac}/1000");
                if name == "byte object" && (frac == 500 || frac == 501) {
                    same_objects_relocated(&path, &what);
                } else {
                    errors.push(fails_alike(&path, &what));
                }
            }
        }
        // The damage is found where it is, not at one place for all.
        errors.sort();
        errors.dedup();
        assert!(errors.len() >= 3, "{word:?}: {errors:?}");
    }
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn every_corpus_image_relocates_and_verifies_the_same_on_two_threads() {
    let dir = corpus_dir();
    let _lock = address_space();
    for img in CORPUS {
        let n = same_both_ways(&dir.join(img.file), img.file);
        assert_eq!(n, img.objects, "{}", img.file);
    }
}

/// Offsets of the pointer objects with at least one slot, past the first
/// objects (nil, the free lists, the hidden roots and the class table), and
/// of the first free chunk.
fn pointer_objects<L: spur_format::Layout>(
    bytes: &[u8],
    start: u64,
) -> (Vec<usize>, Option<usize>) {
    let mut free = None;
    let objects = spur_format::Walk::<L>::new(bytes, start, 0)
        .filter(|o| {
            if o.header.is_free_chunk() && free.is_none() {
                free = Some(o.offset);
            }
            o.offset > 1 << 16
                && o.header.class_index() > 31
                && o.header.format() <= 5
                && o.num_slots > 0
        })
        .map(|o| o.offset)
        .collect();
    (objects, free)
}

/// Rewrites the objects of segment 0 around its middle, where the first
/// walk of a two-part verify guesses the second part's start, into one
/// word object (more than 256 KiB of it past the middle) whose words look
/// like 0-slot objects: the guess lands in that object, and its walk, of
/// objects that are not there, is not the walk from the segment's start.
/// Pointers of objects spread over the heap are aimed at those false
/// headers. With `broken`, an object a quarter of the segment before its
/// end gets an overflow word for a header, so the walk from the start
/// fails in the second part. Returns the false headers' range.
fn mislead<L: spur_format::Layout>(heap: &mut LoadedHeap, broken: bool) -> (u64, u64) {
    use spur_format::objheader::overflow_word;
    use spur_format::ObjHeader;
    let start = heap.segments()[0].new_start.get();
    let bytes = heap.segment_bytes_mut(0);
    let limit = bytes.len() - 16;
    let mid = limit / 2;
    let objs: Vec<_> = spur_format::Walk::<L>::new(bytes, start, 0).collect();
    let x = objs
        .iter()
        .rfind(|o| o.start() + 4096 <= mid && o.header.class_index() > 31)
        .unwrap();
    let (x_at, ci) = (x.start(), x.header.class_index());
    let y_at = objs
        .iter()
        .find(|o| o.start() >= mid + (256 << 10) && (o.start() - x_at) % 16 == 0)
        .unwrap()
        .start();
    let slots = u64::try_from((y_at - x_at - 16) / L::W).unwrap();
    let fmt = if L::W == 8 { 9 } else { 10 };
    bytes[x_at..x_at + 8].copy_from_slice(&overflow_word(slots).to_le_bytes());
    bytes[x_at + 8..x_at + 16].copy_from_slice(&ObjHeader::new(ci, fmt, 255, 0).0.to_le_bytes());
    for at in (x_at + 16..y_at).step_by(16) {
        bytes[at..at + 8].copy_from_slice(&ObjHeader::new(ci, 0, 0, 0).0.to_le_bytes());
        bytes[at + 8..at + 16].fill(0);
    }
    let (lo, hi) = (
        start + u64::try_from(x_at + 16).unwrap(),
        start + u64::try_from(y_at).unwrap(),
    );
    // The verifier's guess for the second part: in the word object, and
    // its prefix ends there too.
    let g = spur_loader::parallel::guesses::<L>(bytes, limit, 2, 1 << 22);
    let g = g[0].as_ref().unwrap();
    assert!(
        g.at >= x_at + 16 && g.count_from < y_at,
        "guess at {}",
        g.at
    );
    let (victims, _) = pointer_objects::<L>(bytes, start);
    let outside: Vec<usize> = victims
        .into_iter()
        .filter(|&o| o < x_at || o > y_at)
        .collect();
    let step = outside.len() / 300;
    for (k, &at) in outside.iter().step_by(step).take(300).enumerate() {
        // A false header (every other one), or the word after it.
        let target = lo + 32 * u64::try_from(k).unwrap() + 8 * u64::try_from(k % 3 / 2).unwrap();
        bytes[at + 8..at + 8 + L::W].copy_from_slice(&target.to_le_bytes()[..L::W]);
    }
    if broken {
        let z = outside
            .iter()
            .copied()
            .find(|&o| o >= limit / 4 * 3 && bytes[o - 1] != 0xFF && bytes[o + 15] != 0xFF)
            .unwrap();
        bytes[z..z + 8].copy_from_slice(&overflow_word(3).to_le_bytes());
    }
    (lo, hi)
}

/// A guessed start that is no object start, with the walk from the
/// segment's start ending in the second part or not: the same report on
/// every path, which finds the pointers into the false headers.
#[test]
fn a_wrong_guess_and_a_broken_second_part_verify_the_same() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    for word in [WordSize::W64, WordSize::W32] {
        let spec = spur_synth::SynthSpec::new(word, 40 << 20);
        let path = dir.path().join("misled.image");
        spur_synth::write_image_file(&spec, &path).unwrap();
        for broken in [false, true] {
            let mut heap = load_path(&path, &LoadOptions::default()).unwrap();
            let (lo, hi) = match word {
                WordSize::W64 => mislead::<spur_format::L64>(&mut heap, broken),
                WordSize::W32 => mislead::<spur_format::L32>(&mut heap, broken),
            };
            let name = format!("{word:?}, misled, broken {broken}");
            let report = verify_alike(&heap, &name);
            let into = |f: &&spur_loader::Finding| {
                f.what.contains("into the middle of an object")
                    && f.what
                        .rsplit("holds 0x")
                        .next()
                        .and_then(|t| u64::from_str_radix(t.split(',').next()?, 16).ok())
                        .is_some_and(|v| (lo..hi).contains(&v))
            };
            assert!(report.errors.iter().any(|f| into(&f)), "{name}");
            let failed = report.errors.iter().any(|f| {
                f.kind == spur_loader::FindingKind::Segment && f.what.contains("overflow word")
            });
            assert_eq!(failed, broken, "{name}: {:?}", report.errors.last());
        }
        std::fs::remove_file(&path).unwrap();
    }
}

/// Writes `value` into slot `i` of the object at `obj` in segment 0.
fn poke(heap: &mut LoadedHeap, obj: u64, i: u64, value: u64) {
    let w = heap.word().bytes();
    let start = heap.segments()[0].new_start.get();
    let at = usize::try_from(obj - start + 8 + i * w).unwrap();
    let w = usize::try_from(w).unwrap();
    heap.segment_bytes_mut(0)[at..at + w].copy_from_slice(&value.to_le_bytes()[..w]);
}

/// The free lists' chains are walked side by side when nothing is wrong
/// with them; one that leads to an object that is no free chunk, one that
/// loops and one that holds a chunk of another size are still each named,
/// with the count of chunks the lists reach, on one thread and on two.
#[test]
fn broken_free_lists_are_each_named() {
    use spur_format::raw::FREE_CHUNK_NEXT;
    use spur_format::NewAddr;
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    for word in [WordSize::W64, WordSize::W32] {
        let spec = spur_synth::SynthSpec::new(word, 24 << 20);
        let path = dir.path().join("free.image");
        spur_synth::write_image_file(&spec, &path).unwrap();
        let heap = load_path(&path, &LoadOptions::default()).unwrap();
        let clean = verify_with(&heap, Threads::AtMost(2));
        assert!(clean.ok(), "{word:?}: {:?}", clean.errors.first());
        let fl = NewAddr::from_heap_word(heap.nil().get() + 48);
        let chain = |heap: &LoadedHeap, i: u64| {
            let mut v = Vec::new();
            let mut p = heap.slot(fl, i).unwrap();
            while p != 0 {
                v.push(p);
                p = heap
                    .slot(NewAddr::from_heap_word(p), FREE_CHUNK_NEXT)
                    .unwrap();
            }
            v
        };
        let lists: Vec<(u64, Vec<u64>)> = (1..word.num_free_lists())
            .map(|i| (i, chain(&heap, i)))
            .filter(|(_, c)| c.len() >= 3)
            .collect();
        assert!(
            lists.len() >= 3,
            "{word:?}: {} lists of 3 or more",
            lists.len()
        );
        let (a, b, c) = (&lists[0], &lists[1], &lists[2]);
        let nil = heap.nil().get();
        // Each damage on a heap of its own, so that no other hides it, at
        // the same addresses once this one is gone.
        drop(heap);
        let damages = [
            (
                (a.1[0], nil),
                format!(
                    "free list {} leads to {nil:#x}, which is not a free chunk",
                    a.0
                ),
            ),
            ((b.1[1], b.1[0]), format!("free list {} loops", b.0)),
            (
                (c.1[0], *a.1.last().unwrap()),
                format!(
                    "free list {} holds a chunk of {} bytes, not {}",
                    c.0,
                    a.0 * 8,
                    c.0 * 8
                ),
            ),
        ];
        for ((chunk, next), want) in damages {
            let mut heap = load_path(&path, &LoadOptions::default()).unwrap();
            assert_eq!(heap.nil().get(), nil, "{word:?}");
            poke(&mut heap, chunk, FREE_CHUNK_NEXT, next);
            let one = verify_with(&heap, Threads::One);
            let two = verify_with(&heap, Threads::AtMost(2));
            assert_eq!(one, two, "{word:?}");
            let said: Vec<&str> = one.errors.iter().map(|f| f.what.as_str()).collect();
            assert!(
                said.contains(&want.as_str()),
                "{word:?}: {want:?} not in {said:?}"
            );
            assert!(
                said.iter().any(|s| s.starts_with("the free lists reach")),
                "{word:?}: {said:?}"
            );
        }
    }
}
