//! The reference interpreter end to end: builder images whose kernel does
//! real work (a loop, sends, arithmetic, an allocation) and quits with the
//! answer, in both word sizes, both placements, with and without the method
//! cache; bytecode limits; and the corpus images when `SPUR_CORPUS` is set:
//! the candle image's three lines, the vm-test image's benchmark line in
//! `log1.txt` beside a copy, and codeparadise stopping on its missing
//! plugin; and heaps corrupted in memory (random slots of pointer objects)
//! run without a panic. Every run is bounded by a bytecode count, never by
//! time.

// The casts here are on the test's own small numbers (seeds, indices into
// a few thousand objects, a kernel answer below 256), never on file input.
#![allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]

use std::path::Path;

use spur_format::WordSize;
use spur_interp::{Interpreter, Options, Outcome, RunReport, StopKind};
use spur_loader::{FileSource, LoadOptions, PlacementRequest};
use spur_runtime::{boot, launch, RuntimeOptions};
use spur_synth::{KernelWork, SynthSpec};
use spur_tests::corpus_dir;

fn run_bytes(bytes: &[u8], placement: PlacementRequest, opts: Options) -> RunReport {
    run_bytes_with(bytes, placement, opts, &RuntimeOptions::default())
}

fn run_bytes_with(
    bytes: &[u8],
    placement: PlacementRequest,
    opts: Options,
    rt_opts: &RuntimeOptions,
) -> RunReport {
    let load = LoadOptions {
        placement,
        ..Default::default()
    };
    let mut rt = boot(bytes, &load, rt_opts).expect("boot");
    launch(&mut rt, &mut Interpreter::new(opts)).expect("run")
}

fn run_file(path: &Path, placement: PlacementRequest, opts: Options) -> RunReport {
    run_file_with(path, placement, opts, &RuntimeOptions::default())
}

fn run_file_with(
    path: &Path,
    placement: PlacementRequest,
    opts: Options,
    rt_opts: &RuntimeOptions,
) -> RunReport {
    let src = FileSource::open(path).expect("open image");
    let load = LoadOptions {
        placement,
        ..Default::default()
    };
    let mut rt = boot(&src, &load, rt_opts).expect("boot");
    launch(&mut rt, &mut Interpreter::new(opts)).expect("run")
}

/// A new space of `bytes` with one stack page: a tiny eden that fills
/// after a few hundred contexts.
fn tiny_eden(bytes: u64) -> RuntimeOptions {
    RuntimeOptions {
        eden_bytes: Some(bytes),
        stack_pages: Some(1),
        ..Default::default()
    }
}

fn bounded(n: u64) -> Options {
    Options {
        max_bytecodes: Some(n),
        ..Default::default()
    }
}

const PLACEMENTS: [PlacementRequest; 2] = [PlacementRequest::OldBase, PlacementRequest::Relocate];

#[test]
fn the_builder_kernel_computes_its_answer_and_quits_with_it() {
    for word in [WordSize::W32, WordSize::W64] {
        for mbs in [false, true] {
            for sends in [true, false] {
                let work = KernelWork {
                    iterations: 300,
                    sends,
                };
                let spec = SynthSpec {
                    multiple_bytecode_sets: mbs,
                    segments: 2,
                    gap_bytes: 64 << 10,
                    work,
                    ..SynthSpec::new(word, 512 << 10)
                };
                let (bytes, _) = spur_synth::image_bytes(&spec).unwrap();
                for placement in PLACEMENTS {
                    for (cache, recycle) in [(true, true), (false, true), (true, false)] {
                        let what = format!(
                            "{word:?} mbs {mbs} sends {sends} {placement:?} cache {cache} recycle {recycle}"
                        );
                        let r = run_bytes(
                            &bytes,
                            placement,
                            Options {
                                method_cache: cache,
                                recycle_contexts: recycle,
                                ..bounded(1_000_000)
                            },
                        );
                        assert_eq!(r.outcome, Outcome::Quit(work.expected() as i32), "{what}");
                        let s = &r.stats;
                        // synthWork:/synthLoop:, two at:, synthQuit: and one
                        // synthSquare per iteration (synthStep is resumed,
                        // not sent).
                        let sends_expected = 4 + if sends { 300 } else { 0 };
                        assert_eq!(s.sends, sends_expected, "{what}");
                        // A context per send but the three primitive ones,
                        // and the brace array; reusing returned contexts,
                        // synthSquare's first context serves every later one.
                        if recycle {
                            let square = u64::from(sends);
                            assert_eq!(s.objects_allocated, 1 + square + 1, "{what}");
                            assert_eq!(s.contexts_reused, 299 * square, "{what}");
                        } else {
                            assert_eq!(s.objects_allocated, sends_expected - 3 + 1, "{what}");
                            assert_eq!(s.contexts_reused, 0, "{what}");
                        }
                        assert!(s.bytecodes > 300 * 15, "{what}: {}", s.bytecodes);
                        if cache {
                            assert!(s.method_cache_hits >= 290 * sends as u64, "{what}");
                        } else {
                            assert_eq!(s.method_cache_hits, 0, "{what}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn the_builder_kernel_gives_the_same_answer_through_scavenges_of_a_tiny_eden() {
    for word in [WordSize::W32, WordSize::W64] {
        let work = KernelWork {
            iterations: 3000,
            sends: true,
        };
        let spec = SynthSpec {
            segments: 2,
            gap_bytes: 64 << 10,
            work,
            ..SynthSpec::new(word, 512 << 10)
        };
        let (bytes, _) = spur_synth::image_bytes(&spec).unwrap();
        for placement in PLACEMENTS {
            let what = format!("{word:?} {placement:?}");
            // Without context reuse every send allocates a context.
            let opts = Options {
                recycle_contexts: false,
                ..bounded(10_000_000)
            };
            let roomy = run_bytes(&bytes, placement, opts.clone());
            assert_eq!(roomy.stats.scavenges, 0, "{what}");
            let tiny = run_bytes_with(&bytes, placement, opts, &tiny_eden(64 << 10));
            assert_eq!(
                tiny.outcome,
                Outcome::Quit(work.expected() as i32),
                "{what}"
            );
            assert_eq!(tiny.outcome, roomy.outcome, "{what}");
            let (t, r) = (&tiny.stats, &roomy.stats);
            assert!(t.scavenges > 2, "{what}: {} scavenges", t.scavenges);
            assert_eq!(t.bytecodes, r.bytecodes, "{what}");
            assert_eq!(t.sends, r.sends, "{what}");
            assert_eq!(t.objects_allocated, r.objects_allocated, "{what}");
            assert!(t.survivor_bytes > 0, "{what}");
        }
    }
}

#[test]
fn a_bytecode_limit_stops_the_run_exactly_there() {
    let spec = SynthSpec {
        work: KernelWork {
            iterations: 1000,
            sends: true,
        },
        ..SynthSpec::new(WordSize::W64, 256 << 10)
    };
    let (bytes, _) = spur_synth::image_bytes(&spec).unwrap();
    let r = run_bytes(&bytes, PlacementRequest::Relocate, bounded(777));
    let Outcome::Stopped { kind, line } = &r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert_eq!(*kind, StopKind::BytecodeLimit);
    assert_eq!(r.stats.bytecodes, 777);
    assert!(line.contains("after 777 bytecodes"), "{line}");
    assert!(line.contains("SmallInteger>>"), "{line}");
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn the_candle_image_prints_its_three_lines_and_quits_in_place_and_relocated() {
    let dir = corpus_dir();
    let path = dir.join("pharo-candle-squeakjs-headless-2020-32.image");
    for placement in PLACEMENTS {
        let r = run_file(&path, placement, bounded(100_000));
        assert_eq!(r.outcome, Outcome::Quit(0), "{placement:?}");
        assert_eq!(
            r.output_text(),
            "Smalltalk image fired up!\nFixing the world\n3 + 4 = 7\n",
            "{placement:?}"
        );
        // SqueakJS counts 284 bytecodes for this run (docs/interpreter.md).
        assert_eq!(r.stats.bytecodes, 284, "{placement:?}");
    }
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn the_vm_test_image_appends_its_benchmark_line_to_log1_beside_a_copy() {
    let dir = corpus_dir();
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("vm-test.image");
    std::fs::copy(dir.join("pharo-vm-test-img-64.image"), &copy).unwrap();
    let log = tmp.path().join("log1.txt");
    let mut lines = 0;
    for placement in PLACEMENTS {
        let r = run_file(
            &copy,
            placement,
            Options {
                image_path: copy.clone(),
                ..bounded(20_000_000)
            },
        );
        assert_eq!(r.outcome, Outcome::Quit(0), "{placement:?}");
        assert!(r.output.is_empty(), "{}", r.output_text());
        lines += 1;
        assert_benchmark_lines(&log, lines);
    }
}

/// `log` holds `lines` lines of the vm-test image's benchmark, each
/// `N bytecodes/sec` with N > 0.
fn assert_benchmark_lines(log: &std::path::Path, lines: usize) {
    let text = std::fs::read_to_string(log).unwrap();
    let found: Vec<&str> = text.split(['\r', '\n']).filter(|l| !l.is_empty()).collect();
    assert_eq!(found.len(), lines, "{text:?}");
    for l in found {
        let (n, rest) = l.split_once(' ').unwrap_or(("", l));
        assert_eq!(rest, "bytecodes/sec", "{l:?}");
        assert!(n.parse::<u64>().is_ok_and(|n| n > 0), "{l:?}");
    }
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn the_candle_and_vm_test_images_run_as_before_with_a_tiny_eden() {
    let dir = corpus_dir();
    // The candle allocates 10 objects: with the smallest eden it prints the
    // same three lines, and nothing reaches the scavenge threshold.
    let path = dir.join("pharo-candle-squeakjs-headless-2020-32.image");
    let r = run_file_with(
        &path,
        PlacementRequest::Relocate,
        bounded(100_000),
        &tiny_eden(32 << 10),
    );
    assert_eq!(r.outcome, Outcome::Quit(0));
    assert_eq!(
        r.output_text(),
        "Smalltalk image fired up!\nFixing the world\n3 + 4 = 7\n"
    );
    assert_eq!(r.stats.bytecodes, 284);
    // vm-test allocates 64 KiB objects and contexts: its benchmark line
    // is written as with the default eden, through scavenges.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("vm-test.image");
    std::fs::copy(dir.join("pharo-vm-test-img-64.image"), &copy).unwrap();
    for placement in PLACEMENTS {
        let r = run_file_with(
            &copy,
            placement,
            Options {
                image_path: copy.clone(),
                ..bounded(20_000_000)
            },
            &tiny_eden(64 << 10),
        );
        assert_eq!(r.outcome, Outcome::Quit(0), "{placement:?}");
        assert!(r.output.is_empty(), "{}", r.output_text());
        assert!(r.stats.scavenges > 0, "{placement:?}");
        // The large object is too large for this eden: old space takes it.
        assert!(r.stats.old_direct_objects > 0, "{placement:?}");
    }
    assert_benchmark_lines(&tmp.path().join("log1.txt"), 2);
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn the_pharo8_kernel_saves_itself_into_a_grown_old_space_and_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Pharo.image");
    std::fs::copy(corpus_dir().join("pharo8-kernel-empharo-64.image"), &path).unwrap();
    let src = FileSource::open(&path).unwrap();
    let mut rt = boot(&src, &LoadOptions::default(), &tiny_eden(256 << 10)).unwrap();
    drop(src);
    let segments = rt.heap().segments().len();
    // A ByteArray taking all of the largest free chunk (the claimed
    // headroom) leaves old space no room for what the start tenures.
    let m = rt.memory_mut();
    let largest = m.largest_free_chunk_bytes();
    let byte_array = m
        .class_index_of_class(m.special(spur_runtime::special_objects::index::CLASS_BYTE_ARRAY))
        .unwrap();
    let filler = m.allocate_bytes(byte_array, largest - 16).unwrap();
    assert!(!m.is_young(filler));
    assert!(m.largest_free_chunk_bytes() < largest / 2);
    let r = launch(
        &mut rt,
        &mut Interpreter::new(Options {
            image_path: path.clone(),
            ..bounded(40_000_000)
        }),
    )
    .unwrap();
    assert_eq!(r.outcome, Outcome::Quit(0), "{}", r.outcome.line());
    assert_eq!(r.stats.snapshots, 1);
    assert!(r.stats.scavenges > 0);
    assert!(r.stats.old_segments_added >= 1, "{:?}", r.stats);
    drop(rt);
    // The saved image holds every segment, verifies, and starts again in
    // place and relocated.
    let saved = FileSource::open(&path).unwrap();
    let heap = spur_loader::load(&saved, &LoadOptions::default()).unwrap();
    assert!(heap.segments().len() > segments, "{:?}", heap.segments());
    let report = spur_loader::verify(&heap);
    assert!(report.ok(), "{:?}", report.errors);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    drop(heap);
    prints_its_version(&path);
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn codeparadise_stops_naming_its_missing_plugin() {
    let dir = corpus_dir();
    let path = dir.join("pharo-tiny-codeparadise-client-32.image");
    for placement in PLACEMENTS {
        // Without its plugin, its fallback code recurses and allocates
        // without end: it used to stop when eden filled; now the scavenger
        // tenures the growing chain of contexts and old space grows by
        // segments until the bytecode limit. The line names the plugin.
        let r = run_file(&path, placement, bounded(5_000_000));
        let Outcome::Stopped { line, .. } = &r.outcome else {
            panic!("{:?}", r.outcome)
        };
        assert!(
            line.contains("missing primitive CpSystemPlugin>>"),
            "{line}"
        );
        assert_eq!(line.lines().count(), 1);
        assert!(r.stats.scavenges > 0, "{line}");
        // Unbounded but for memory, it stops when old space would pass the
        // growth limit, out of memory, still naming the plugin: its memory
        // does not run away.
        let limit = 8 << 20;
        let r = run_file(
            &path,
            placement,
            Options {
                growth_limit: Some(limit),
                ..bounded(500_000_000)
            },
        );
        let Outcome::Stopped { kind, line } = &r.outcome else {
            panic!("{:?}", r.outcome)
        };
        assert_eq!(*kind, StopKind::OutOfMemory, "{line}");
        assert!(line.contains("past its limit of 8388608 bytes"), "{line}");
        assert!(line.contains("CpSystemPlugin>>"), "{line}");
        assert!(r.stats.old_bytes_added <= limit, "{line}");
        assert!(r.stats.old_bytes_added > 0, "{line}");
    }
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn the_pharo8_kernel_initialises_itself_saves_itself_and_quits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Pharo.image");
    std::fs::copy(corpus_dir().join("pharo8-kernel-empharo-64.image"), &path).unwrap();
    let original = FileSource::open(&path).unwrap();
    let before = boot(
        &original,
        &LoadOptions::default(),
        &RuntimeOptions::default(),
    )
    .unwrap()
    .memory()
    .objects()
    .count();
    drop(original);
    // Its first start initialises the bootstrapped kernel, saves itself
    // (primitive 97: new space tenured, the image replaced) and quits.
    // Mutexes (Semaphore>>critical: and ensure:) must balance all the way,
    // or it deadlocks; reused contexts must start with nil temps, or
    // ensure: blocks are skipped.
    let r = run_file(
        &path,
        PlacementRequest::OldBase,
        Options {
            image_path: path.clone(),
            ..bounded(40_000_000)
        },
    );
    assert_eq!(r.outcome, Outcome::Quit(0), "{}", r.outcome.line());
    assert!(r.output.is_empty(), "{}", r.output_text());
    assert!(r.stats.contexts_reused > 100_000);
    assert_eq!(r.stats.snapshots, 1);
    assert!(r.stats.tenured_objects > 0);
    // primitiveStringHash answers what the image's fallback computes (a
    // wrong hash loses Symbols and globals), and saves most of the work:
    // with the fallback the run takes 17.6 M bytecodes.
    assert!(r.stats.bytecodes < 6_000_000, "{}", r.stats.bytecodes);
    // The saved image holds what new space held, and resumes in the
    // method that called the primitive: it handles its command line.
    let saved = FileSource::open(&path).unwrap();
    let after = boot(&saved, &LoadOptions::default(), &RuntimeOptions::default())
        .unwrap()
        .memory()
        .objects()
        .count();
    assert!(after > before, "{after} objects saved, {before} loaded");
    prints_its_version(&path);
}

/// The saved Pharo image at `path`, started in place and relocated with
/// `printVersion`, prints its one version line and quits.
fn prints_its_version(path: &std::path::Path) {
    for placement in PLACEMENTS {
        let r = run_file(
            path,
            placement,
            Options {
                image_path: path.to_path_buf(),
                args: vec!["printVersion".into()],
                vm_options: vec!["--headless".into()],
                ..bounded(40_000_000)
            },
        );
        assert_eq!(r.outcome, Outcome::Quit(0), "{}", r.outcome.line());
        let text = r.output_text();
        assert!(
            text.starts_with("[version] 'Pharo8.0.0' 'Pharo-8.0.0+build.1080.sha.9f5ce2e9"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}

/// A small deterministic generator for the corruption test.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Corrupts `count` slots of the heap's pointer objects (random words,
/// other objects' oops, SmallIntegers, nil) and runs the interpreter for at
/// most 20 000 bytecodes: it must end in an outcome, never a panic.
fn run_corrupted(bytes: &[u8], seed: u64, count: usize) -> Outcome {
    let mut rt = boot(bytes, &LoadOptions::default(), &RuntimeOptions::default()).expect("boot");
    let mut rng = Lcg(seed);
    {
        let m = rt.memory_mut();
        let objects: Vec<_> = m
            .objects()
            .filter(|&o| m.format(o).is_ok_and(|f| f <= 5) && m.num_slots(o).is_ok_and(|n| n > 0))
            .collect();
        for _ in 0..count {
            let o = objects[rng.below(objects.len() as u64) as usize];
            let i = rng.below(m.num_slots(o).unwrap());
            let v = match rng.below(4) {
                0 => spur_runtime::Oop::from_bits(rng.next() << 3 | rng.below(8)),
                1 => objects[rng.below(objects.len() as u64) as usize],
                2 => m.from_small_int(rng.below(1000) as i64 - 500).unwrap(),
                _ => m.nil(),
            };
            // Immutable objects, and values a 32-bit slot cannot hold, are refused: fine.
            let _ = m.store(o, i, v);
        }
    }
    let opts = Options {
        allow_files: false,
        real_time_waits: false,
        ..bounded(20_000)
    };
    launch(&mut rt, &mut Interpreter::new(opts))
        .expect("run")
        .outcome
}

/// Runs 150 damaged copies of each image for a bounded number of bytecodes:
/// every run ends in an outcome, and some damage must be felt (the test
/// would pass vacuously otherwise).
fn corrupted_runs_end_in_outcomes(images: &[Vec<u8>]) {
    let mut stopped = 0;
    for (k, bytes) in images.iter().enumerate() {
        for seed in 0..150 {
            let out = run_corrupted(bytes, seed * 7919 + k as u64, 1 + seed as usize % 20);
            if let Outcome::Stopped { line, .. } = &out {
                assert!(!line.is_empty());
                stopped += 1;
            }
        }
    }
    assert!(stopped > 0);
}

#[test]
fn corrupted_heaps_end_in_an_outcome_not_a_panic() {
    let mut images = vec![];
    for word in [WordSize::W32, WordSize::W64] {
        let spec = SynthSpec {
            multiple_bytecode_sets: true,
            ..SynthSpec::new(word, 256 << 10)
        };
        images.push(spur_synth::image_bytes(&spec).unwrap().0);
    }
    corrupted_runs_end_in_outcomes(&images);
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn corrupted_corpus_heaps_end_in_an_outcome_not_a_panic() {
    let dir = corpus_dir();
    let images: Vec<Vec<u8>> = [
        "pharo-candle-squeakjs-headless-2020-32.image",
        "pharo-vm-test-img-64.image",
        "pharo-tiny-codeparadise-client-32.image",
    ]
    .iter()
    .map(|f| std::fs::read(dir.join(f)).unwrap())
    .collect();
    corrupted_runs_end_in_outcomes(&images);
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn a_snapshot_that_cannot_be_written_fails_primitive_97_and_leaves_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Pharo.image");
    std::fs::copy(corpus_dir().join("pharo8-kernel-empharo-64.image"), &path).unwrap();
    let original = std::fs::read(&path).unwrap();
    // The folder the image names is gone: no temporary file can be made there.
    let r = run_file(
        &path,
        PlacementRequest::OldBase,
        Options {
            image_path: dir.path().join("gone").join("Pharo.image"),
            ..bounded(40_000_000)
        },
    );
    // The image's own handling of the failure goes on to its quit.
    assert_eq!(r.outcome, Outcome::Quit(0), "{}", r.outcome.line());
    assert_eq!(r.stats.snapshots, 1);
    assert_eq!(std::fs::read(&path).unwrap(), original);
    assert!(!dir.path().join("gone").exists());
}
