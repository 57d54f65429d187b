//! The mutation sweep: every builder image and every corpus image, damaged
//! in thousands of systematic ways (see `spur_tests::mutate`), goes through
//! the loader, relocated and at its old addresses, and every heap that
//! loads goes through the verifier and the later [`STEPS`]. Each run must
//! end in a clean heap, a heap with findings, or a typed error: a panic, or
//! a run slower than [`SLOW`], fails the test; a run that never ends is
//! caught by a watchdog that aborts the process and names the mutation.
//!
//! This test has its binary to itself: its loads at fixed addresses could
//! otherwise take the ranges of tests that check placement.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use spur_format::WordSize;
use spur_loader::{load, verify, Backing, LoadOptions, LoadedHeap, PlacementRequest};
use spur_synth::SynthSpec;
use spur_tests::mutate::{plan, Budget};
use spur_tests::{corpus_dir, CORPUS};

/// A stage a loaded heap goes through: its name and what it runs.
type Step = (&'static str, fn(&LoadedHeap));

/// What runs on every heap that loads from a damaged image, after the
/// verifier. One line per step: a new stage of the pipeline is added here.
const STEPS: &[Step] = &[("count objects", |h| {
    let _ = h.count_objects();
})];

/// Slowest a single damaged image may be (both loads, verification, steps).
const SLOW: Duration = Duration::from_secs(5);
/// A run this long is a hang: the watchdog aborts the whole test process.
const HANG: Duration = Duration::from_secs(60);
/// Worker threads per image.
const THREADS: usize = 2;

/// How one damaged image ended.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// Loaded (in at least one placement) and verified intact.
    clean: u64,
    /// Loaded, and the verifier found corruption.
    findings: u64,
    /// Refused by the loader with a typed error, in both placements.
    refused: u64,
}

impl Tally {
    fn add(&mut self, o: Tally) {
        self.clean += o.clean;
        self.findings += o.findings;
        self.refused += o.refused;
    }
    fn total(&self) -> u64 {
        self.clean + self.findings + self.refused
    }
}

/// Loads `bytes` relocated and at its old addresses, verifies and runs the
/// steps on each heap that loads.
fn run(bytes: &[u8]) -> Tally {
    let mut loaded = None;
    for placement in [PlacementRequest::Relocate, PlacementRequest::OldBase] {
        let opts = LoadOptions {
            placement,
            backing: Backing::Pages,
            map_files: false,
        };
        match load(bytes, &opts) {
            Ok(heap) => {
                let ok = verify(&heap).ok();
                for (_, step) in STEPS {
                    step(&heap);
                }
                loaded = Some(loaded.unwrap_or(true) && ok);
            }
            Err(e) => assert!(!e.to_string().is_empty(), "an error without a message"),
        }
    }
    match loaded {
        Some(true) => Tally {
            clean: 1,
            ..Tally::default()
        },
        Some(false) => Tally {
            findings: 1,
            ..Tally::default()
        },
        None => Tally {
            refused: 1,
            ..Tally::default()
        },
    }
}

/// What each worker is running, and since when: the watchdog's view.
static RUNNING: Mutex<Vec<Option<(String, Instant)>>> = Mutex::new(Vec::new());

fn watchdog() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_secs(1));
            let running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
            for (what, since) in running.iter().flatten() {
                if since.elapsed() > HANG {
                    eprintln!("HANG: {what} has run for {:?}", since.elapsed());
                    std::process::abort();
                }
            }
        });
    });
}

fn slot() -> usize {
    let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    running.push(None);
    running.len() - 1
}

fn set_running(slot: usize, what: Option<String>) {
    let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    running[slot] = what.map(|w| (w, Instant::now()));
}

/// Runs every mutation of `image` and returns the tally; panics listing the
/// mutations that panicked or were too slow.
fn sweep(name: &str, image: &[u8], budget: Budget) -> Tally {
    watchdog();
    let t0 = Instant::now();
    assert_eq!(
        run(image).clean,
        1,
        "{name}: the undamaged image must load and verify intact"
    );
    let damages = plan(image, budget, 1).unwrap_or_else(|e| panic!("{name}: {e}"));
    let failures = Mutex::new(Vec::<String>::new());
    let tally = Mutex::new(Tally::default());
    std::thread::scope(|s| {
        for part in damages.chunks(damages.len().div_ceil(THREADS)) {
            let failures = &failures;
            let tally = &tally;
            s.spawn(move || {
                let me = slot();
                let mut buf = image.to_vec();
                let mut mine = Tally::default();
                for d in part {
                    let what = format!("{name}: {d}");
                    set_running(me, Some(what.clone()));
                    let t = Instant::now();
                    let r = d.with(&mut buf, |b| catch_unwind(AssertUnwindSafe(|| run(b))));
                    let took = t.elapsed();
                    match r {
                        Ok(o) => mine.add(o),
                        Err(p) => {
                            let msg = p
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("{what}: panicked: {msg}"));
                        }
                    }
                    if took > SLOW {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{what}: took {took:?}"));
                    }
                }
                set_running(me, None);
                tally.lock().unwrap().add(mine);
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    let tally = tally.into_inner().unwrap();
    eprintln!(
        "{name}: {} mutations in {:.1?}: {} clean, {} with findings, {} refused, {} failed",
        damages.len(),
        t0.elapsed(),
        tally.clean,
        tally.findings,
        tally.refused,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{name}: {} of {} mutations failed; the first:\n{}",
        failures.len(),
        damages.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    assert_eq!(tally.total(), damages.len() as u64);
    tally
}

/// The builder's images of every kind, as small as it makes them.
fn builder_kinds() -> Vec<(&'static str, SynthSpec)> {
    let small = |word| SynthSpec::new(word, 0);
    let mut v = vec![("w64", small(WordSize::W64)), ("w32", small(WordSize::W32))];
    let mut s = small(WordSize::W64);
    s.segments = 3;
    s.gap_bytes = 64 << 10;
    v.push(("w64-3seg-gaps", s));
    let mut s = small(WordSize::W32);
    s.segments = 2;
    s.gap_bytes = 8;
    v.push(("w32-2seg-gap8", s));
    let mut s = small(WordSize::W64);
    s.segments = 2;
    v.push(("w64-2seg-adjacent", s));
    let mut s = small(WordSize::W64);
    s.prefix = true;
    s.multiple_bytecode_sets = true;
    v.push(("w64-68533-prefix", s));
    let mut s = small(WordSize::W32);
    s.prefix = true;
    s.multiple_bytecode_sets = true;
    s.old_base = 0x3204000;
    v.push(("w32-7033-prefix", s));
    let mut s = small(WordSize::W64);
    s.free_chunks = false;
    s.old_base = 0x804008;
    v.push(("w64-no-free-unaligned-base", s));
    v
}

#[test]
fn builder_images_survive_every_mutation() {
    let mut all = Tally::default();
    for (name, spec) in builder_kinds() {
        let (image, _) = spur_synth::image_bytes(&spec).unwrap();
        all.add(sweep(name, &image, Budget::FULL));
    }
    assert!(all.refused > 0 && all.findings > 0, "{all:?}");
}

#[test]
fn corpus_images_survive_every_mutation() {
    let Some(dir) = corpus_dir() else { return };
    for img in CORPUS {
        let image = std::fs::read(dir.join(img.file)).unwrap();
        let budget = if image.len() > 1 << 20 {
            Budget::LIGHT
        } else {
            Budget::FULL
        };
        sweep(img.file, &image, budget);
    }
}
