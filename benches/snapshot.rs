//! Load and snapshot of a 256 MiB builder image, against `std::fs::read` and
//! `std::fs::write` of the same bytes measured in the same run.
//!
//! `cargo bench -p spur-benches --bench snapshot`; the ratios are printed at
//! the end. `SPUR_BENCH_MIB=1024` measures a 1 GiB image instead. Each write makes a new file: the file of the previous iteration is
//! removed outside the timed part. `vm-loader bench` measures the same things
//! across heap sizes (see `docs/benchmarks.md`).

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use spur_benches::{bench_image, iter_untimed_drop, median_ns};
use spur_loader::{
    load_path, snapshot_in_background, snapshot_to_path, LoadOptions, PlacementRequest,
    SnapshotOptions,
};

/// Heap size of the image, in MiB: `SPUR_BENCH_MIB`, 256 by default.
fn mib() -> u64 {
    std::env::var("SPUR_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Removes a written file and commits the removal, outside the timed part.
fn remove(p: &Path) {
    let _ = std::fs::remove_file(p);
    if let Some(d) = p.parent() {
        let _ = std::fs::File::open(d).and_then(|d| d.sync_all());
    }
}

/// Times `iters` runs of `f`, removing `out` after each (not timed).
fn timed(iters: u64, out: &Path, mut f: impl FnMut() -> Duration) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        total += f();
        remove(out);
    }
    total
}

fn benches(c: &mut Criterion, group: &str) {
    let path = bench_image(mib(), 1);
    let dir = path.parent().unwrap().to_path_buf();
    let out = dir.join("snapshot-bench-out.image");
    let bytes = std::fs::read(&path).unwrap();
    let mut g = c.benchmark_group(group);
    g.sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("fs_read", |b| {
        iter_untimed_drop(b, || std::fs::read(&path).unwrap())
    });
    g.bench_function("fs_write", |b| {
        b.iter_custom(|n| {
            timed(n, &out, || {
                let t = Instant::now();
                std::fs::write(&out, &bytes).unwrap();
                let d = t.elapsed();
                // Not timed: leave nothing dirty for the next iteration.
                std::fs::File::open(&out).unwrap().sync_all().unwrap();
                d
            })
        })
    });
    g.bench_function("fs_write_fsync", |b| {
        b.iter_custom(|n| {
            timed(n, &out, || {
                let t = Instant::now();
                std::fs::write(&out, &bytes).unwrap();
                std::fs::File::open(&out).unwrap().sync_all().unwrap();
                t.elapsed()
            })
        })
    });
    // The baselines' bytes go before the heap is measured: `fork` copies the
    // page tables of the whole process, and 256 MiB in 4 KiB pages would add
    // their copy to the background pause.
    drop(bytes);
    g.bench_function("load_in_place", |b| {
        iter_untimed_drop(b, || load_path(&path, &LoadOptions::default()).unwrap())
    });
    let opts = SnapshotOptions::default();
    let heap = load_path(&path, &LoadOptions::default()).unwrap();
    g.bench_function("snapshot_in_place", |b| {
        b.iter_custom(|n| {
            timed(n, &out, || {
                let t = Instant::now();
                snapshot_to_path(&heap, &out, &opts, &mut |_| {}).unwrap();
                t.elapsed()
            })
        })
    });
    g.bench_function("background_pause", |b| {
        b.iter_custom(|n| {
            timed(n, &out, || {
                let job = snapshot_in_background(&heap, &out, &opts).unwrap();
                let pause = job.pause();
                job.wait().unwrap();
                pause
            })
        })
    });
    drop(heap);
    let moved = load_path(
        &path,
        &LoadOptions {
            placement: PlacementRequest::Relocate,
            ..Default::default()
        },
    )
    .unwrap();
    g.bench_function("snapshot_relocated", |b| {
        b.iter_custom(|n| {
            timed(n, &out, || {
                let t = Instant::now();
                snapshot_to_path(&moved, &out, &opts, &mut |_| {}).unwrap();
                t.elapsed()
            })
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let group = format!("snapshot-{}MiB", mib());
    let group = group.as_str();
    benches(&mut c, group);
    c.final_summary();
    let read = median_ns(group, "fs_read");
    let write = median_ns(group, "fs_write");
    let write_sync = median_ns(group, "fs_write_fsync");
    println!("\nmedians and ratios (same run):");
    for (name, base, base_name) in [
        ("fs_read", read, "fs_read"),
        ("load_in_place", read, "fs_read"),
        ("fs_write", write, "fs_write"),
        ("fs_write_fsync", write, "fs_write"),
        ("snapshot_in_place", write, "fs_write"),
        ("snapshot_in_place", write_sync, "fs_write_fsync"),
        ("snapshot_relocated", write_sync, "fs_write_fsync"),
        ("background_pause", write, "fs_write"),
    ] {
        if let (Some(t), Some(b)) = (median_ns(group, name), base) {
            println!("  {name:20} {:9.2} ms  {:6.3}x {base_name}", t / 1e6, t / b);
        }
    }
}
