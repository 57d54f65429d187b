//! The mutation sweep: every builder image and every corpus image, damaged
//! in thousands of systematic ways (see `spur_tests::mutate`), goes through
//! the loader, relocated and at its old addresses, and every heap that
//! loads goes through the verifier and the later [`STEPS`]. Each run must
//! end in a clean heap, a heap with findings, or a typed error: a panic, or
//! a run slower than [`slow`], fails the test; a run that never ends is
//! caught by a watchdog that aborts the process and names the mutation.
//!
//! This test has its binary to itself: its loads at fixed addresses could
//! otherwise take the ranges of tests that check placement.

use spur_format::layout::to_usize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use spur_format::WordSize;
use spur_loader::{load, verify, Backing, LoadOptions, LoadedHeap, PlacementRequest};
use spur_runtime::ObjectMemory;
use spur_synth::SynthSpec;
use spur_tests::mutate::{plan, Budget};
use spur_tests::{corpus_dir, CORPUS};

/// A stage a loaded heap goes through, read through the object memory:
/// its name and what it runs.
type Step = (&'static str, fn(&ObjectMemory));

/// What runs on every heap that loads from a damaged image, after the
/// verifier. One line per step: a new stage of the pipeline is added here.
const STEPS: &[Step] = &[
    ("count objects", |m| {
        let _ = m.heap().count_objects();
    }),
    ("stats", |h| {
        if let Err(e) = spur_runtime::class_histogram(h) {
            assert!(!e.to_string().is_empty(), "an error without a message");
        }
    }),
];

/// The last stage, which takes the heap: `launch` (wire the runtime, find
/// and decode the resume point, run the dry-run engine), then the
/// interpreter for at most [`RUN_BYTECODES`] bytecodes, with no real files.
fn launch(heap: LoadedHeap) {
    match spur_runtime::Runtime::wire(heap, &Default::default()) {
        Ok(mut rt) => {
            if let Err(e) = spur_runtime::launch(&mut rt, &mut spur_runtime::DryRun) {
                assert!(!e.to_string().is_empty(), "an error without a message");
            }
            let mut engine = spur_interp::Interpreter::new(spur_interp::Options {
                max_bytecodes: Some(RUN_BYTECODES),
                timeout: Some(Duration::from_secs(2)),
                allow_files: false,
                real_time_waits: false,
                // A damaged image may ask for anything: a little growth is enough.
                growth_limit: Some(64 << 20),
                ..Default::default()
            });
            match spur_runtime::launch(&mut rt, &mut engine) {
                Ok(r) => assert!(!r.outcome.line().is_empty()),
                Err(e) => assert!(!e.to_string().is_empty(), "an error without a message"),
            }
        }
        Err(e) => assert!(!e.to_string().is_empty(), "an error without a message"),
    }
}

/// Bytecodes the interpreter runs on each damaged image.
const RUN_BYTECODES: u64 = 20_000;

/// Slowest a single damaged image may be (both loads, verification, steps):
/// 5 s, or `SPUR_SWEEP_SLOW` seconds (valgrind runs everything some thirty
/// times slower).
fn slow() -> Duration {
    let secs = std::env::var("SPUR_SWEEP_SLOW")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    Duration::from_secs(secs)
}

/// A run this long is a hang: the watchdog aborts the whole test process.
fn hang() -> Duration {
    (slow() * 4).max(Duration::from_secs(60))
}
/// Worker threads per image.
const THREADS: usize = 2;

/// `SPUR_SWEEP_LIMIT=N` keeps N mutations of each image, spread over its
/// list: for runs under valgrind, which are some thirty times slower.
fn limit() -> Option<usize> {
    std::env::var("SPUR_SWEEP_LIMIT").ok()?.parse().ok()
}

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
            map_files: None,
            threads: spur_loader::Threads::default(),
        };
        match load(bytes, &opts) {
            Ok(heap) => {
                let ok = verify(&heap).ok();
                let memory = ObjectMemory::new(heap);
                for (_, step) in STEPS {
                    step(&memory);
                }
                launch(memory.into_heap());
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
                if since.elapsed() > hang() {
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
    let mut damages = plan(image, budget, 1).unwrap_or_else(|e| panic!("{name}: {e}"));
    if let Some(n) = limit() {
        damages = (0..n.min(damages.len()))
            .map(|i| damages[i * damages.len() / n.min(damages.len())].clone())
            .collect();
    }
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
                    if took > slow() {
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

#[test]
fn builder_images_survive_every_mutation() {
    let mut all = Tally::default();
    for (name, spec) in spur_synth::small_kinds() {
        let (image, _) = spur_synth::image_bytes(&spec).unwrap();
        all.add(sweep(name, &image, Budget::FULL));
    }
    assert!(all.refused > 0 && all.findings > 0, "{all:?}");
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn corpus_images_survive_every_mutation() {
    let dir = corpus_dir();
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

/// One way to damage a composed folder: a change to one of its files.
#[derive(Debug, Clone)]
enum FolderDamage {
    /// Replace `field`'s value in a `.ston` file (or drop the field's line).
    Field {
        file: String,
        field: String,
        value: Option<i128>,
    },
    /// A line that is no field.
    Garbage {
        file: String,
        line: &'static str,
    },
    Remove {
        file: String,
    },
    /// Cut a file to `len` bytes, or grow it.
    Resize {
        file: String,
        len: u64,
    },
    /// Flip one bit of a `.data` file.
    Flip {
        file: String,
        offset: u64,
        bit: u8,
    },
    /// A perm space beside old space, where and as large as it says.
    Perm {
        start: i128,
        size: u64,
    },
}

impl std::fmt::Display for FolderDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// `#field : value` pairs of a `.ston` file.
fn ston_fields(text: &str) -> Vec<(String, i128)> {
    text.lines()
        .filter_map(|l| {
            let (name, value) = l.trim().strip_prefix('#')?.split_once(':')?;
            let value = value.trim().trim_end_matches(',').parse().ok()?;
            Some((name.trim().to_string(), value))
        })
        .collect()
}

fn folder_damages(folder: &std::path::Path) -> Vec<FolderDamage> {
    let mut out = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for file in &names {
        out.push(FolderDamage::Remove { file: file.clone() });
        out.push(FolderDamage::Resize {
            file: file.clone(),
            len: 0,
        });
        let path = folder.join(file);
        if file.ends_with(".ston") {
            let text = std::fs::read_to_string(&path).unwrap();
            for (field, v) in ston_fields(&text) {
                out.push(FolderDamage::Field {
                    file: file.clone(),
                    field: field.clone(),
                    value: None,
                });
                for value in [
                    0,
                    -1,
                    -8,
                    8,
                    32,
                    v + 8,
                    v - 8,
                    v + 4096,
                    v * 2,
                    1 << 40,
                    1 << 47,
                    i64::MAX as i128,
                    i64::MIN as i128,
                    i64::MAX as i128 + 1,
                ] {
                    out.push(FolderDamage::Field {
                        file: file.clone(),
                        field: field.clone(),
                        value: Some(value),
                    });
                }
            }
            for line in ["#", "}", "{", "#a : b", "\u{0}", "Other {"] {
                out.push(FolderDamage::Garbage {
                    file: file.clone(),
                    line,
                });
            }
        } else {
            let len = std::fs::metadata(&path).unwrap().len();
            for cut in [len - 8, len - 16, len / 2, 8, len + 8] {
                out.push(FolderDamage::Resize {
                    file: file.clone(),
                    len: cut,
                });
            }
            // The bridge, and the first objects' headers.
            for offset in (len - 16..len).chain((0..64).step_by(8)) {
                for bit in [0u8, 3, 5, 7] {
                    out.push(FolderDamage::Flip {
                        file: file.clone(),
                        offset,
                        bit,
                    });
                }
            }
        }
    }
    for start in [0x200_0000_0000i128, 0x8000_0000, 0, -8, 0x200_0000_0008] {
        for size in [0, 16, 24, 4096] {
            out.push(FolderDamage::Perm { start, size });
        }
    }
    out
}

fn damage_folder(dir: &std::path::Path, d: &FolderDamage) {
    let edit_ston = |file: &str, f: &dyn Fn(&str) -> String| {
        let p = dir.join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, f(&text)).unwrap();
    };
    match d {
        FolderDamage::Field { file, field, value } => edit_ston(file, &|text| {
            text.lines()
                .filter_map(|l| {
                    if !l.trim().starts_with(&format!("#{field} :")) {
                        return Some(l.to_string());
                    }
                    let comma = if l.ends_with(',') { "," } else { "" };
                    value.map(|v| format!("\t#{field} : {v}{comma}"))
                })
                .collect::<Vec<_>>()
                .join("\n")
        }),
        FolderDamage::Garbage { file, line } => edit_ston(file, &|text| {
            let mut lines: Vec<&str> = text.lines().collect();
            lines.insert(lines.len() / 2, line);
            lines.join("\n")
        }),
        FolderDamage::Remove { file } => std::fs::remove_file(dir.join(file)).unwrap(),
        FolderDamage::Resize { file, len } => std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join(file))
            .unwrap()
            .set_len(*len)
            .unwrap(),
        FolderDamage::Flip { file, offset, bit } => {
            let p = dir.join(file);
            let mut bytes = std::fs::read(&p).unwrap();
            bytes[to_usize(*offset)] ^= 1 << bit;
            std::fs::write(&p, bytes).unwrap();
        }
        FolderDamage::Perm { start, size } => {
            std::fs::write(
                dir.join("permSpace.ston"),
                format!("ComposedMetadataStruct {{\n\t#startAddress : {start},\n\t#dataSize : {size}\n}}"),
            )
            .unwrap();
            std::fs::write(dir.join("permSpace.data"), vec![0u8; to_usize(*size)]).unwrap();
        }
    }
}

/// Loads a composed folder in place (segment files mapped where they can
/// be) and relocated, and verifies each heap that loads.
fn run_folder(folder: &std::path::Path) -> Tally {
    let mut loaded = None;
    for placement in [PlacementRequest::OldBase, PlacementRequest::Relocate] {
        // SAFETY: the folder is the sweep's own, written before the load and
        // not changed until the heap is dropped.
        let promise = unsafe { spur_loader::FilesUnchanged::assume() };
        let opts = LoadOptions {
            placement,
            map_files: Some(promise),
            ..Default::default()
        };
        match spur_loader::load_path(folder, &opts) {
            Ok(heap) => {
                let ok = verify(&heap).ok();
                let memory = ObjectMemory::new(heap);
                for (_, step) in STEPS {
                    step(&memory);
                }
                launch(memory.into_heap());
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

/// Composed folders (one segment file, several with gaps, 32-bit): every
/// field of every `.ston` file bent, every file removed or cut, bits of the
/// `.data` files flipped, perm spaces added where they cannot be.
#[test]
fn composed_folders_survive_every_mutation() {
    watchdog();
    let me = slot();
    let dir = tempfile::tempdir().unwrap();
    let mut specs = vec![];
    // Bases no other test of this binary uses, so that the segments are
    // placed apart and written as one file each; the next one along when a
    // range is taken (under valgrind, its own mappings move about).
    let mut s = SynthSpec::new(WordSize::W64, 0);
    s.segments = 3;
    s.gap_bytes = 64 << 10;
    specs.push(("w64-3seg", s, 0x5000_0000_0000u64, 1u64 << 40));
    let s = SynthSpec::new(WordSize::W32, 0);
    specs.push(("w32", s, 0x5000_0000, 0x0800_0000));
    let mut failures = Vec::new();
    for (name, mut spec, base, step) in specs {
        let heap = (0..6)
            .find_map(|k| {
                spec.old_base = base + k * step;
                let (image, _) = spur_synth::image_bytes(&spec).unwrap();
                let heap = load(&image[..], &LoadOptions::default()).unwrap();
                (!heap.swizzled()).then_some(heap)
            })
            .unwrap_or_else(|| panic!("{name}: no free old range to load it in place"));
        assert_eq!(heap.segments().len(), spec.segments);
        let good = dir.path().join(name);
        spur_loader::write_composed(&heap, &good, &Default::default()).unwrap();
        drop(heap);
        assert_eq!(run_folder(&good).clean, 1, "{name}");
        let mut damages = folder_damages(&good);
        if let Some(n) = limit() {
            damages = (0..n.min(damages.len()))
                .map(|i| damages[i * damages.len() / n.min(damages.len())].clone())
                .collect();
        }
        let t0 = Instant::now();
        let mut tally = Tally::default();
        for d in &damages {
            let what = format!("{name}: {d}");
            let copy = dir.path().join("damaged");
            let _ = std::fs::remove_dir_all(&copy);
            std::fs::create_dir(&copy).unwrap();
            for e in std::fs::read_dir(&good).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
            }
            damage_folder(&copy, d);
            set_running(me, Some(what.clone()));
            let t = Instant::now();
            match catch_unwind(AssertUnwindSafe(|| run_folder(&copy))) {
                Ok(o) => tally.add(o),
                Err(_) => failures.push(format!("{what}: panicked")),
            }
            if t.elapsed() > slow() {
                failures.push(format!("{what}: took {:?}", t.elapsed()));
            }
        }
        set_running(me, None);
        eprintln!(
            "{name} (composed): {} mutations in {:.1?}: {} clean, {} with findings, {} refused",
            damages.len(),
            t0.elapsed(),
            tally.clean,
            tally.findings,
            tally.refused
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
