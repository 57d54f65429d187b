//! The cost of wiring: loading the 2.4 MiB Pharo 8 kernel of the corpus
//! against loading it and wiring the runtime, measured in the same run.
//!
//! `SPUR_CORPUS=/path/to/images cargo bench -p spur-benches --bench wire`;
//! without `SPUR_CORPUS` the bench prints a note and measures nothing. The
//! medians and their ratios are printed at the end and recorded in
//! `docs/benchmarks.md`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use spur_benches::median_ns;
use spur_loader::{load_path, LoadOptions};
use spur_runtime::{Runtime, RuntimeOptions};

const GROUP: &str = "wire-pharo8";
const IMAGE: &str = "pharo8-kernel-empharo-64.image";

fn image() -> Option<PathBuf> {
    let path = spur_tests::corpus_path()?.join(IMAGE);
    path.is_file().then_some(path)
}

fn benches(c: &mut Criterion, path: &Path) {
    let opts = LoadOptions::default();
    let wire = RuntimeOptions::default();
    // Every one loads in place at the image's old base; each iteration drops
    // what it made (unmapping included) before the next reserves it again.
    let mut g = c.benchmark_group(GROUP);
    g.sample_size(60).measurement_time(Duration::from_secs(6));
    g.bench_function("load", |b| {
        b.iter(|| black_box(load_path(path, &opts).unwrap()))
    });
    g.bench_function("load_and_wire", |b| {
        b.iter(|| black_box(Runtime::wire(load_path(path, &opts).unwrap(), &wire).unwrap()))
    });
    // Wiring alone: the load is set-up and the drop happens outside the
    // timing, so this figure does not move with the noise of the load.
    g.bench_function("wire_only", |b| {
        b.iter_batched(
            || load_path(path, &opts).unwrap(),
            |heap| Runtime::wire(heap, &wire).unwrap(),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// Loads alone and loads followed by wiring, alternated `pairs` times so
/// that both see the same machine (the criterion groups run one after the
/// other, minutes apart on a shared machine). Returns the two medians in
/// microseconds.
fn interleaved(path: &Path, pairs: usize) -> (f64, f64) {
    let opts = LoadOptions::default();
    let wire = RuntimeOptions::default();
    let (mut a, mut b) = (Vec::with_capacity(pairs), Vec::with_capacity(pairs));
    for _ in 0..pairs {
        let t = Instant::now();
        drop(black_box(load_path(path, &opts).unwrap()));
        a.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        drop(black_box(
            Runtime::wire(load_path(path, &opts).unwrap(), &wire).unwrap(),
        ));
        b.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(&mut a), median(&mut b))
}

fn main() {
    let Some(path) = image() else {
        println!("note: SPUR_CORPUS is not set (or has no {IMAGE}); the wiring bench is skipped");
        return;
    };
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &path);
    c.final_summary();
    if let (Some(load), Some(both), Some(wire)) = (
        median_ns(GROUP, "load"),
        median_ns(GROUP, "load_and_wire"),
        median_ns(GROUP, "wire_only"),
    ) {
        println!("\nmedians (same run):");
        println!("  load           {:8.1} us", load / 1e3);
        println!(
            "  load_and_wire  {:8.1} us  ({:.3}x the load)",
            both / 1e3,
            both / load
        );
        println!(
            "  wire_only      {:8.1} us  ({:.1}% of the load)",
            wire / 1e3,
            wire * 100.0 / load
        );
    }
    let (load, both) = interleaved(&path, 1000);
    println!("interleaved, 1000 pairs, medians:");
    println!("  load + drop          {load:8.1} us");
    println!(
        "  load + wire + drop   {both:8.1} us  ({:.3}x, +{:.1}%)",
        both / load,
        (both - load) * 100.0 / load
    );
}
