//! Composed images mapped in place (`LoadOptions::map_files`): load time
//! against heap size (64 MiB and 1 GiB), against loading the same 1 GiB heap
//! from a single file and from the folder read (the default) in the same
//! run, and the memory resident after the load.
//!
//! `cargo bench -p spur-benches --bench composed`

use std::time::Duration;

use criterion::Criterion;
use spur_benches::{bench_composed, bench_image, iter_untimed_drop, median_ns};
use spur_loader::{load_path, verify, FilesUnchanged, LoadOptions};

const GROUP: &str = "composed";

/// Options that map the segment files.
fn mapped() -> LoadOptions {
    // SAFETY: the benchmark's folders live in `target/bench-images`, are
    // written once before any load and never changed while mapped.
    let promise = unsafe { FilesUnchanged::assume() };
    LoadOptions {
        map_files: Some(promise),
        ..Default::default()
    }
}

fn benches(c: &mut Criterion) {
    let c64 = bench_composed(64);
    let c1g = bench_composed(1024);
    let s1g = bench_image(1024, 1);
    let opts = mapped();
    let mut g = c.benchmark_group(GROUP);
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    g.bench_function("composed_64MiB", |b| {
        iter_untimed_drop(b, || load_path(&c64, &opts).unwrap())
    });
    g.bench_function("composed_1GiB", |b| {
        iter_untimed_drop(b, || load_path(&c1g, &opts).unwrap())
    });
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("single_file_1GiB", |b| {
        iter_untimed_drop(b, || load_path(&s1g, &opts).unwrap())
    });
    g.bench_function("composed_1GiB_read", |b| {
        iter_untimed_drop(b, || load_path(&c1g, &LoadOptions::default()).unwrap())
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();

    // Resident memory: after a mapped load, and after verification has
    // touched every page.
    let before = spur_mem::resident_bytes().unwrap_or(0);
    let heap = load_path(&bench_composed(1024), &mapped()).unwrap();
    let after_load = spur_mem::resident_bytes().unwrap_or(0);
    assert!(verify(&heap).ok());
    let after_verify = spur_mem::resident_bytes().unwrap_or(0);
    drop(heap);

    let m = |n| median_ns(GROUP, n);
    println!("\nmedians (same run):");
    if let (Some(a), Some(b), Some(s), Some(r)) = (
        m("composed_64MiB"),
        m("composed_1GiB"),
        m("single_file_1GiB"),
        m("composed_1GiB_read"),
    ) {
        println!("  composed 64 MiB   {:10.1} us", a / 1e3);
        println!(
            "  composed 1 GiB    {:10.1} us   {:.2}x the 64 MiB load",
            b / 1e3,
            b / a
        );
        println!(
            "  single file 1 GiB {:10.1} us   {:.0}x the composed load",
            s / 1e3,
            s / b
        );
        println!(
            "  composed 1 GiB, read {:7.1} us   {:.0}x the mapped load",
            r / 1e3,
            r / b
        );
    }
    let mib = |x: u64| x as f64 / (1 << 20) as f64;
    println!(
        "  resident: {:.1} MiB before, +{:.1} MiB after loading 1 GiB mapped, +{:.1} MiB after verifying it",
        mib(before),
        mib(after_load.saturating_sub(before)),
        mib(after_verify.saturating_sub(before))
    );
}
