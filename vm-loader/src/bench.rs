//! `vm-loader bench`: load and snapshot each image N times, with the two
//! baselines measured in the same run on the same bytes, and report medians.
//!
//! One run of one image, in this order:
//! 1. `raw_read`: `std::fs::read` of the image file;
//! 2. `raw_read_huge`: the same bytes read, in the loader's 2 MiB pieces,
//!    into fresh memory committed as the loader commits a heap (huge pages
//!    advised): what a load at the old base cannot beat by much;
//! 3. `raw_read_warm`: the same read into memory whose pages were all
//!    faulted in first (not timed): the copy out of the page cache alone;
//! 4. `load`: [`spur_loader::load_path`] at the old base (the default), and
//!    `load_relocated`: the same with [`PlacementRequest::Relocate`], the
//!    relocated load coming before the load on even runs and after the
//!    snapshots (once the loaded heap is freed) on odd ones, so that each
//!    load follows the release of as much memory as it takes;
//! 5. `raw_write`: the bytes a snapshot writes, from the loaded heap's
//!    memory, written to a new file as `std::fs::write` writes (one
//!    `write_all` per piece: the header, each segment); then, not timed as
//!    part of it, `fsync` of that file (`raw_write_sync` adds the two);
//! 6. `snapshot`: [`spur_loader::snapshot_to_path`] of the loaded heap:
//!    written, `fsync`ed, renamed, directory synced;
//! 7. `background`: [`spur_loader::snapshot_in_background`]: the pause is what
//!    the call held this process; then the child is waited for;
//! 8. `background_thread`: the same with a writer thread of this process
//!    over the write-protected heap ([`spur_loader::BackgroundWriter::Thread`]);
//!    where the kernel does not offer write-protection, not measured, and
//!    `background_thread_writer` says why. `--background-writers fork` or
//!    `thread` measures only one of 7 and 8: a forked child's exit leaves
//!    this VM slower for a while, and a thread writer measured after it pays
//!    for it.
//!
//! Steps 5 to 8 take turns at coming first after the load (the
//! order rotates every run), so that none is always the first write after
//! the load, which on a VM that hands freed memory back to its host is
//! several times slower than the next.
//!
//! Every file written is removed right after its measurement (not timed)
//! and the folder synced, so each write makes a new file and no dirty page
//! or pending discard of one measurement is left for the next.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;
use spur_format::WordSize;
use spur_loader::{
    snapshot_in_background_by, snapshot_to_path, BackgroundWriter, LoadOptions, PlacementRequest,
    SnapshotOptions, SnapshotPlan,
};
use spur_synth::SynthSpec;

use crate::cli::{BenchArgs, BenchWriters};
use crate::out::{emit, human_bytes, shown};
use crate::plot::{self, Series};
use crate::Outcome;
use spur_loader::files::{self, OutForm};

/// The JSON of `bench`.
#[derive(Debug, Serialize)]
pub struct BenchJson {
    pub runs: usize,
    pub images: Vec<ImageJson>,
    /// The SVG written, if any.
    pub plot: Option<String>,
}

/// Medians for one image, in microseconds, and their ratios.
#[derive(Debug, Serialize, Clone)]
pub struct ImageJson {
    pub path: String,
    pub heap_bytes: u64,
    pub file_bytes: u64,
    pub load_us: u64,
    /// Growth of this process's resident memory over the load (median): the
    /// whole heap for a single file, next to nothing for a mapped folder.
    pub rss_after_load_bytes: u64,
    /// Written, synced and in place.
    pub snapshot_us: u64,
    /// The parts of `snapshot_us`: writing, then sync and rename.
    pub snapshot_write_us: u64,
    pub snapshot_sync_us: u64,
    pub background_pause_us: u64,
    /// From the fork until the child had the image synced and in place.
    pub background_child_us: u64,
    /// The pause of a background snapshot written by a thread (step 8).
    pub background_thread_pause_us: u64,
    /// From the thread's start until it had the image synced and in place.
    pub background_thread_us: u64,
    /// "thread", or why the thread writer could not run here.
    pub background_thread_writer: String,
    pub raw_read_us: u64,
    /// The read into fresh huge-page memory (step 3).
    pub raw_read_huge_us: u64,
    /// The read into memory already faulted in (step 4).
    pub raw_read_warm_us: u64,
    /// The relocated load (step 5).
    pub load_relocated_us: u64,
    /// 90th percentiles (nearest rank) of the loads and snapshots and of
    /// the reads and writes they are held against.
    pub p90_us: P90Json,
    /// The same ratios as the medians', of the 90th percentiles, and each
    /// load's 90th percentile against its median: how steady it is.
    pub p90_ratios: P90RatiosJson,
    pub raw_write_us: u64,
    /// `std::fs::write` and then `fsync` of the same file.
    pub raw_write_sync_us: u64,
    /// `load_us / snapshot_us`.
    pub load_vs_snapshot: f64,
    /// `load_us / raw_read_us`.
    pub load_vs_raw_read: f64,
    /// `load_us / raw_read_huge_us`.
    pub load_vs_raw_read_huge: f64,
    /// `load_relocated_us / load_us`.
    pub relocated_vs_load: f64,
    /// `snapshot_us / raw_write_us`.
    pub snapshot_vs_raw_write: f64,
    /// `snapshot_us / raw_write_sync_us`: the like-for-like comparison, as
    /// both then leave the bytes on disk.
    pub snapshot_vs_raw_write_sync: f64,
    /// The fastest of the runs, for the same measurements: on a shared,
    /// noisy machine the noise only ever adds time.
    pub best_us: BestJson,
}

/// 90th percentiles, in microseconds.
#[derive(Debug, Serialize, Clone)]
pub struct P90Json {
    pub load: u64,
    pub load_relocated: u64,
    pub raw_read_huge: u64,
    pub snapshot: u64,
    pub raw_write_sync: u64,
    pub background_pause: u64,
    pub background_thread_pause: u64,
}

/// Ratios of 90th percentiles, and of a 90th percentile to its median.
#[derive(Debug, Serialize, Clone)]
pub struct P90RatiosJson {
    /// `p90(load) / p90(raw_read_huge)`.
    pub load_vs_raw_read_huge: f64,
    /// `p90(load_relocated) / p90(load)`.
    pub relocated_vs_load: f64,
    /// `p90(snapshot) / p90(raw_write_sync)`.
    pub snapshot_vs_raw_write_sync: f64,
    /// `p90(load) / median(load)`.
    pub load_vs_median: f64,
    /// `p90(load_relocated) / median(load_relocated)`.
    pub relocated_vs_median: f64,
}

/// The fastest run of each measurement, in microseconds.
#[derive(Debug, Serialize, Clone)]
pub struct BestJson {
    pub load: u64,
    pub snapshot: u64,
    pub background_pause: u64,
    pub background_child: u64,
    pub background_thread_pause: u64,
    pub raw_read: u64,
    pub raw_read_huge: u64,
    pub raw_read_warm: u64,
    pub load_relocated: u64,
    pub raw_write: u64,
    pub raw_write_sync: u64,
}

#[derive(Debug, Default)]
struct Samples {
    load: Vec<u64>,
    snapshot: Vec<u64>,
    snapshot_write: Vec<u64>,
    snapshot_sync: Vec<u64>,
    pause: Vec<u64>,
    child: Vec<u64>,
    thread_pause: Vec<u64>,
    thread: Vec<u64>,
    raw_read: Vec<u64>,
    raw_read_huge: Vec<u64>,
    raw_read_warm: Vec<u64>,
    load_relocated: Vec<u64>,
    raw_write: Vec<u64>,
    raw_write_sync: Vec<u64>,
    rss: Vec<u64>,
}

/// The median (the mean of the middle two for an even count).
pub fn median(v: &[u64]) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2
    }
}

/// The 90th percentile, nearest rank (0 for no samples).
pub fn p90(v: &[u64]) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    s[(s.len() * 9).div_ceil(10) - 1]
}

/// The smallest sample.
fn best(v: &[u64]) -> u64 {
    v.iter().copied().min().unwrap_or(0)
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        (a as f64 / b as f64 * 1000.0).round() / 1000.0
    }
}

fn us(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Removes a file written by a measurement and commits the removal (the
/// folder's `fsync`), so that the journal commit, and with it the discard of
/// the freed blocks on `discard` mounts, does not land inside the next
/// measurement's `fsync`. Not timed. No pause follows: on a VM that hands
/// free memory back to its host (free page reporting), an idle second makes
/// the next large write fault its page cache back in from the host.
fn remove(p: &Path) {
    let _ = std::fs::remove_file(p);
    let _ = std::fs::remove_dir_all(p);
    if let Some(dir) = p.parent() {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
}

/// The bytes of an image: the file, or a composed folder's files one after
/// the other (what a reader of the folder reads).
fn read_image_bytes(path: &Path) -> std::io::Result<Vec<u8>> {
    if !path.is_dir() {
        return std::fs::read(path);
    }
    let mut names: Vec<_> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    let mut all = Vec::new();
    for n in names {
        all.extend(std::fs::read(n)?);
    }
    Ok(all)
}

/// The files an image's bytes come from, in the order a reader reads them.
fn image_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut names: Vec<_> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    Ok(names)
}

/// Bytes per read, as the loader reads.
const READ_PIECE: usize = 2 << 20;

/// Reads an image's bytes into a new reservation committed with huge pages
/// advised, as the loader commits a heap; with `warm`, every page is written
/// once first (not timed), so that only the copy is timed. Returns the time
/// in microseconds.
fn read_into_reservation(path: &Path, warm: bool) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let files = image_files(path)?;
    let len: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()))
        .sum::<std::io::Result<u64>>()?;
    let t = Instant::now();
    let size = spur_mem::page_ceil(len.max(1)).next_multiple_of(2 << 20);
    let mut r = spur_mem::Reservation::anywhere(size, 2 << 20)?;
    r.commit(size, spur_mem::Backing::HugePages)?;
    let t = if warm {
        for b in r.bytes_mut().iter_mut().step_by(4096) {
            *b = 1;
        }
        Instant::now()
    } else {
        t
    };
    let bytes = r.bytes_mut();
    let mut at = 0usize;
    for f in &files {
        let file = std::fs::File::open(f).with_context(|| format!("reading {}", f.display()))?;
        let n = usize::try_from(file.metadata()?.len())?;
        for (k, piece) in bytes[at..at + n].chunks_mut(READ_PIECE).enumerate() {
            file.read_exact_at(piece, (k * READ_PIECE) as u64)
                .with_context(|| format!("reading {}", f.display()))?;
        }
        at += n;
    }
    Ok(us(t))
}

/// Measures one image `runs` times.
fn measure(
    path: &Path,
    scratch: &Path,
    runs: usize,
    load: &LoadOptions,
    writers: BenchWriters,
) -> Result<ImageJson> {
    let relocated = LoadOptions {
        placement: PlacementRequest::Relocate,
        ..*load
    };
    let out = scratch.join("bench-out.image");
    let raw = scratch.join("bench-raw.bin");
    let mut s = Samples::default();
    let mut heap_bytes = 0;
    let mut file_bytes = 0;
    let mut thread_writer = String::from("thread");
    if path.is_dir() {
        thread_writer = "not measured: a composed folder is written in the foreground".into();
    } else if writers == BenchWriters::Fork {
        thread_writer = "not measured (--background-writers fork)".into();
    }
    for run in 0..runs {
        let t = Instant::now();
        let bytes =
            read_image_bytes(path).with_context(|| format!("reading {}", path.display()))?;
        s.raw_read.push(us(t));
        file_bytes = bytes.len() as u64;
        drop(bytes);

        s.raw_read_huge.push(read_into_reservation(path, false)?);
        s.raw_read_warm.push(read_into_reservation(path, true)?);

        // The relocated load and the load at the old base take turns at
        // coming first; the heap kept for the snapshots is the latter. Each
        // load comes right after a heap-sized stretch of memory was freed
        // (the warm read's, or the kept heap's after the snapshots): on a
        // VM that hands free memory back to its host, memory touched for
        // the first time costs several times more to fault in, and a load
        // made while the other heap is still held would pay that alone.
        if run % 2 == 0 {
            let t = Instant::now();
            drop(spur_loader::load_path(path, &relocated)?);
            s.load_relocated.push(us(t));
        }
        let rss = spur_mem::resident_bytes().unwrap_or(0);
        let t = Instant::now();
        let heap = spur_loader::load_path(path, load)?;
        s.load.push(us(t));
        s.rss
            .push(spur_mem::resident_bytes().unwrap_or(0).saturating_sub(rss));
        heap_bytes = heap.heap_bytes();

        // The raw write and the three snapshots take turns at coming first
        // after the load: the first large write after a load is the slow
        // one on a VM whose host takes back freed memory, so each of the
        // four is first in a quarter of the runs.
        let mut order = [2, 0, 1, 3];
        order.rotate_left(run % 4);
        for which in order {
            // Not asked for: skipped, the turns of the others unchanged.
            if (which == 1 && writers == BenchWriters::Thread)
                || (which == 3 && writers == BenchWriters::Fork)
            {
                continue;
            }
            if which == 2 {
                // The snapshot's bytes, from the heap's memory (the pieces
                // a snapshot writes), one `write_all` each into a new file:
                // what `std::fs::write` of them does.
                let plan = SnapshotPlan::new(&heap, &SnapshotOptions::default())
                    .context("planning the raw write")?;
                let t = Instant::now();
                std::fs::File::create(&raw)
                    .and_then(|mut f| plan.pieces().iter().try_for_each(|p| f.write_all(p)))
                    .with_context(|| format!("writing {}", raw.display()))?;
                let w = us(t);
                let t = Instant::now();
                std::fs::File::open(&raw)
                    .and_then(|f| f.sync_all())
                    .with_context(|| format!("syncing {}", raw.display()))?;
                s.raw_write.push(w);
                s.raw_write_sync.push(w + us(t));
                remove(&raw);
                continue;
            }
            if which == 0 && path.is_dir() {
                // A folder is snapshotted as a folder (the default keeps the format).
                let t = Instant::now();
                spur_loader::write_composed(&heap, &out, &Default::default())
                    .with_context(|| format!("snapshot to {}", out.display()))?;
                s.snapshot.push(us(t));
            } else if which == 0 {
                let t = Instant::now();
                let r = snapshot_to_path(&heap, &out, &SnapshotOptions::default(), &mut |_| {})
                    .with_context(|| format!("snapshot to {}", out.display()))?;
                s.snapshot.push(us(t));
                s.snapshot_write.push(r.write_us);
                s.snapshot_sync.push(r.sync_us);
            } else {
                // 1: the forked child; 3: the writer thread.
                let by = if which == 3 {
                    BackgroundWriter::Thread
                } else {
                    BackgroundWriter::Fork
                };
                if by == BackgroundWriter::Thread && path.is_dir() {
                    continue;
                }
                let job = snapshot_in_background_by(&heap, &out, &SnapshotOptions::default(), by)
                    .with_context(|| format!("background snapshot to {}", out.display()))?;
                let pause = u64::try_from(job.pause().as_micros()).unwrap_or(u64::MAX);
                let fell_back = job.fell_back().map(str::to_owned);
                let r = job
                    .wait()
                    .with_context(|| format!("background snapshot to {}", out.display()))?;
                match (by, fell_back) {
                    (BackgroundWriter::Fork, _) => {
                        s.pause.push(pause);
                        s.child.push(r.child_us);
                    }
                    (BackgroundWriter::Thread, Some(why)) => thread_writer = why,
                    (BackgroundWriter::Thread, None) => {
                        s.thread_pause.push(pause);
                        s.thread.push(r.child_us);
                    }
                }
            }
            remove(&out);
        }
        drop(heap);
        if run % 2 == 1 {
            let t = Instant::now();
            drop(spur_loader::load_path(path, &relocated)?);
            s.load_relocated.push(us(t));
        }
        let last = |v: &[u64]| v.last().copied().unwrap_or(0);
        tracing::info!(
            run,
            path = %path.display(),
            raw_read = last(&s.raw_read),
            raw_read_huge = last(&s.raw_read_huge),
            raw_read_warm = last(&s.raw_read_warm),
            load_relocated = last(&s.load_relocated),
            raw_write = last(&s.raw_write),
            raw_write_sync = last(&s.raw_write_sync),
            load = last(&s.load),
            snapshot = last(&s.snapshot),
            snapshot_write = last(&s.snapshot_write),
            snapshot_sync = last(&s.snapshot_sync),
            pause = last(&s.pause),
            child = last(&s.child),
            thread_pause = last(&s.thread_pause),
            thread = last(&s.thread),
            "measured (us)"
        );
    }
    let m = |v: &[u64]| median(v);
    let (load, snap) = (m(&s.load), m(&s.snapshot));
    Ok(ImageJson {
        path: path.display().to_string(),
        heap_bytes,
        file_bytes,
        load_us: load,
        rss_after_load_bytes: m(&s.rss),
        snapshot_us: snap,
        snapshot_write_us: m(&s.snapshot_write),
        snapshot_sync_us: m(&s.snapshot_sync),
        background_pause_us: m(&s.pause),
        background_child_us: m(&s.child),
        background_thread_pause_us: m(&s.thread_pause),
        background_thread_us: m(&s.thread),
        background_thread_writer: thread_writer,
        raw_read_us: m(&s.raw_read),
        raw_read_huge_us: m(&s.raw_read_huge),
        raw_read_warm_us: m(&s.raw_read_warm),
        load_relocated_us: m(&s.load_relocated),
        p90_us: P90Json {
            load: p90(&s.load),
            load_relocated: p90(&s.load_relocated),
            raw_read_huge: p90(&s.raw_read_huge),
            snapshot: p90(&s.snapshot),
            raw_write_sync: p90(&s.raw_write_sync),
            background_pause: p90(&s.pause),
            background_thread_pause: p90(&s.thread_pause),
        },
        p90_ratios: P90RatiosJson {
            load_vs_raw_read_huge: ratio(p90(&s.load), p90(&s.raw_read_huge)),
            relocated_vs_load: ratio(p90(&s.load_relocated), p90(&s.load)),
            snapshot_vs_raw_write_sync: ratio(p90(&s.snapshot), p90(&s.raw_write_sync)),
            load_vs_median: ratio(p90(&s.load), load),
            relocated_vs_median: ratio(p90(&s.load_relocated), m(&s.load_relocated)),
        },
        raw_write_us: m(&s.raw_write),
        raw_write_sync_us: m(&s.raw_write_sync),
        load_vs_snapshot: ratio(load, snap),
        load_vs_raw_read: ratio(load, m(&s.raw_read)),
        load_vs_raw_read_huge: ratio(load, m(&s.raw_read_huge)),
        relocated_vs_load: ratio(m(&s.load_relocated), load),
        snapshot_vs_raw_write: ratio(snap, m(&s.raw_write)),
        snapshot_vs_raw_write_sync: ratio(snap, m(&s.raw_write_sync)),
        best_us: BestJson {
            load: best(&s.load),
            snapshot: best(&s.snapshot),
            background_pause: best(&s.pause),
            background_child: best(&s.child),
            background_thread_pause: best(&s.thread_pause),
            raw_read: best(&s.raw_read),
            raw_read_huge: best(&s.raw_read_huge),
            raw_read_warm: best(&s.raw_read_warm),
            load_relocated: best(&s.load_relocated),
            raw_write: best(&s.raw_write),
            raw_write_sync: best(&s.raw_write_sync),
        },
    })
}

pub fn run(args: &BenchArgs, json: bool) -> Result<Outcome> {
    // The plot's file is checked before anything is measured.
    if let Some(p) = &args.plot {
        check_plot(p)?;
    }
    let temp;
    let scratch: PathBuf = match &args.dir {
        Some(d) => {
            // An existing folder only: a mistyped --dir is not created.
            if !d.is_dir() {
                anyhow::bail!(
                    "--dir {}: {}",
                    shown(d),
                    match std::fs::metadata(d) {
                        Ok(m) => format!("{}, not a folder", files::kind_name(&m.file_type())),
                        Err(e) => e.to_string(),
                    }
                );
            }
            d.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("vm-loader-bench-")
                .tempdir()
                .context("creating a scratch folder")?;
            temp.path().to_path_buf()
        }
    };
    let mut images = args.images.clone();
    for &mib in &args.synth {
        let path = scratch.join(format!("synth-{mib}mib-64.image"));
        if !path.is_file() {
            if !json {
                eprintln!("building a {mib} MiB image: {}", path.display());
            }
            let spec = SynthSpec::new(
                WordSize::W64,
                mib.checked_mul(1 << 20)
                    .with_context(|| format!("--synth {mib} is too large"))?,
            );
            // Through the snapshot writer's steps, so that a killed bench
            // leaves only a temporary the next write removes.
            spur_loader::write_atomically(&path, |f| {
                spur_synth::write_image(&spec, f).map_err(|source| {
                    spur_loader::SnapshotError::File {
                        what: "writing",
                        path: path.display().to_string(),
                        source,
                    }
                })
            })?;
        }
        images.push(path);
    }
    let load = crate::cli::load_options(PlacementRequest::OldBase, args.map_files);
    let mut results = Vec::new();
    for path in &images {
        if !json {
            eprintln!("measuring {} ({} runs)", path.display(), args.runs);
        }
        results.push(measure(
            path,
            &scratch,
            args.runs,
            &load,
            args.background_writers,
        )?);
    }
    let plot = match &args.plot {
        Some(p) => {
            let svg = plot::svg(
                &format!(
                    "Load and snapshot time against heap size (medians of {} runs)",
                    args.runs
                ),
                &series(&results),
            );
            std::fs::write(p, svg).with_context(|| format!("writing {}", p.display()))?;
            Some(p.display().to_string())
        }
        None => None,
    };
    let j = BenchJson {
        runs: args.runs,
        images: results,
        plot,
    };
    emit(json, &j, || text(&j))?;
    Ok(Outcome::Ok)
}

/// Fails unless `p` can be written: its folder exists and it is a regular
/// file or nothing.
fn check_plot(p: &Path) -> Result<()> {
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        anyhow::bail!(
            "--plot {}: the folder {} does not exist",
            shown(p),
            shown(dir)
        );
    }
    files::check_output(p, OutForm::Single).with_context(|| format!("--plot {}", shown(p)))?;
    Ok(())
}

/// The plot's lines: load and snapshot, with the two baselines dashed.
fn series(results: &[ImageJson]) -> Vec<Series> {
    let line = |name: &str, colour, dashed, f: fn(&ImageJson) -> u64| Series {
        name: name.to_string(),
        colour,
        dashed,
        points: results
            .iter()
            .map(|r| (r.heap_bytes, f(r) as f64 / 1000.0))
            .collect(),
    };
    vec![
        line("load", "#1f6fb4", false, |r| r.load_us),
        line("snapshot (synced)", "#d2691e", false, |r| r.snapshot_us),
        line("std::fs::read", "#1f6fb4", true, |r| r.raw_read_us),
        line("std::fs::write", "#d2691e", true, |r| r.raw_write_us),
        line("std::fs::write + fsync", "#8b4513", true, |r| {
            r.raw_write_sync_us
        }),
        line("background pause", "#2e8b57", false, |r| {
            r.background_pause_us
        }),
    ]
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

fn text(j: &BenchJson) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "medians of {} runs, in ms:", j.runs);
    let _ = writeln!(
        s,
        "{:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  {:>9} {:>9} {:>9}  image",
        "heap",
        "load",
        "snapshot",
        "bg pause",
        "fs::read",
        "fs::write",
        "+fsync",
        "bg child",
        "load/snap",
        "snap/wr",
        "snap/wr+s"
    );
    for r in &j.images {
        let _ = writeln!(
            s,
            "{:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  {:>8.2}x {:>8.2}x {:>8.2}x  {}",
            human_bytes(r.heap_bytes),
            ms(r.load_us),
            ms(r.snapshot_us),
            ms(r.background_pause_us),
            ms(r.raw_read_us),
            ms(r.raw_write_us),
            ms(r.raw_write_sync_us),
            ms(r.background_child_us),
            r.load_vs_snapshot,
            r.snapshot_vs_raw_write,
            r.snapshot_vs_raw_write_sync,
            Path::new(&r.path)
                .file_name()
                .map_or_else(|| r.path.clone(), |n| shown(n.as_ref()))
        );
    }
    let _ = writeln!(
        s,
        "loads against the reads they cannot beat (median / p90, ms):\n{:>9} {:>15} {:>15} {:>15} {:>9}  {:>9} {:>9}",
        "heap", "load", "relocated", "read→huge", "read→warm", "load/huge", "reloc/load"
    );
    for r in &j.images {
        let pair = |a: u64, b: u64| format!("{} / {}", ms(a), ms(b));
        let _ = writeln!(
            s,
            "{:>9} {:>15} {:>15} {:>15} {:>9}  {:>8.2}x {:>8.2}x",
            human_bytes(r.heap_bytes),
            pair(r.load_us, r.p90_us.load),
            pair(r.load_relocated_us, r.p90_us.load_relocated),
            pair(r.raw_read_huge_us, r.p90_us.raw_read_huge),
            ms(r.raw_read_warm_us),
            r.load_vs_raw_read_huge,
            r.relocated_vs_load,
        );
    }
    let _ = writeln!(
        s,
        "the same ratios of the p90s, and each load's p90 against its median:\n{:>9} {:>9} {:>9} {:>9}  {:>9} {:>9}",
        "heap", "load/huge", "reloc/load", "snap/wr+s", "load", "relocated"
    );
    for r in &j.images {
        let q = &r.p90_ratios;
        let _ = writeln!(
            s,
            "{:>9} {:>8.2}x {:>8.2}x {:>8.2}x  {:>8.2}x {:>8.2}x",
            human_bytes(r.heap_bytes),
            q.load_vs_raw_read_huge,
            q.relocated_vs_load,
            q.snapshot_vs_raw_write_sync,
            q.load_vs_median,
            q.relocated_vs_median,
        );
    }
    let _ = writeln!(
        s,
        "background pauses (median / p90, ms): forked child, writer thread over the write-protected heap"
    );
    for r in &j.images {
        let thread = if r.background_thread_writer == "thread" {
            format!(
                "{} / {} (thread done after {})",
                ms(r.background_thread_pause_us),
                ms(r.p90_us.background_thread_pause),
                ms(r.background_thread_us)
            )
        } else {
            r.background_thread_writer.clone()
        };
        let _ = writeln!(
            s,
            "{:>9} {:>15}  {}",
            human_bytes(r.heap_bytes),
            if r.background_pause_us == 0 {
                "not measured".to_owned()
            } else {
                format!(
                    "{} / {}",
                    ms(r.background_pause_us),
                    ms(r.p90_us.background_pause)
                )
            },
            thread
        );
    }
    for r in &j.images {
        let _ = writeln!(
            s,
            "resident memory after loading {} ({} of heap): +{}",
            r.path,
            human_bytes(r.heap_bytes),
            human_bytes(r.rss_after_load_bytes)
        );
    }
    if let Some(p) = &j.plot {
        let _ = writeln!(s, "plot: {p}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&[5, 1, 3]), 3);
        assert_eq!(median(&[4, 1, 3, 2]), 2);
        assert_eq!(median(&[]), 0);
        assert_eq!(p90(&[5, 1, 3]), 5);
        assert_eq!(p90(&(1..=20).collect::<Vec<_>>()), 18);
        assert_eq!(p90(&[]), 0);
        assert_eq!(ratio(1, 3), 0.333);
        assert_eq!(ratio(1, 0), 0.0);
    }
}
