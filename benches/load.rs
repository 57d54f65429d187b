//! Load, relocation and verification of a 256 MiB builder image, each against
//! `std::fs::read` of the same file measured in the same run.
//!
//! `cargo bench -p spur-benches --bench load`; the ratios are printed at the end
//! and recorded in `docs/benchmarks.md`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use spur_benches::{bench_image, iter_untimed_drop, median_ns};
use spur_loader::{load_path, verify, LoadOptions, PlacementRequest};

const GROUP: &str = "load-256MiB";

fn benches(c: &mut Criterion) {
    let path = bench_image(256, 1);
    let bytes = std::fs::metadata(&path).unwrap().len();
    let mut g = c.benchmark_group(GROUP);
    g.sample_size(15)
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Bytes(bytes));
    g.bench_function("fs_read", |b| {
        iter_untimed_drop(b, || std::fs::read(&path).unwrap())
    });
    g.bench_function("load_in_place", |b| {
        iter_untimed_drop(b, || load_path(&path, &LoadOptions::default()).unwrap())
    });
    let relocate = LoadOptions {
        placement: PlacementRequest::Relocate,
        ..Default::default()
    };
    g.bench_function("load_relocated", |b| {
        iter_untimed_drop(b, || load_path(&path, &relocate).unwrap())
    });
    // The same with ordinary 4 KiB pages, to show what huge pages buy.
    let small = LoadOptions {
        backing: spur_loader::Backing::Pages,
        ..Default::default()
    };
    g.bench_function("load_in_place_4k", |b| {
        iter_untimed_drop(b, || load_path(&path, &small).unwrap())
    });
    let small_reloc = LoadOptions {
        placement: PlacementRequest::Relocate,
        backing: spur_loader::Backing::Pages,
        ..Default::default()
    };
    g.bench_function("load_relocated_4k", |b| {
        iter_untimed_drop(b, || load_path(&path, &small_reloc).unwrap())
    });
    let heap = load_path(&path, &LoadOptions::default()).unwrap();
    assert!(verify(&heap).ok());
    g.bench_function("verify", |b| b.iter(|| black_box(verify(&heap))));
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    let base = median_ns(GROUP, "fs_read");
    println!("\nmedians and ratios against fs_read (same run):");
    for name in [
        "fs_read",
        "load_in_place",
        "load_relocated",
        "load_in_place_4k",
        "load_relocated_4k",
        "verify",
    ] {
        if let (Some(t), Some(b)) = (median_ns(GROUP, name), base) {
            let gib_s = (256u64 << 20) as f64 / t; // bytes per ns = GB/s
            println!(
                "  {name:16} {:9.2} ms  {:5.2}x  {:5.2} GiB/s",
                t / 1e6,
                t / b,
                gib_s * 1e9 / (1u64 << 30) as f64
            );
        }
    }
}
