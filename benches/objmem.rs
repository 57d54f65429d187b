//! The object memory's hot operations on a builder image: `fetch` of an old
//! slot, `store` of a young object into an old one (the write barrier's
//! path) and into a young one, and eden allocation of a small Array.
//!
//! `cargo bench -p spur-benches --bench objmem`. Small and quick: a 1 MiB
//! 64-bit image, a few seconds per function.

use std::time::Duration;

use std::hint::black_box;

use criterion::Criterion;
use spur_format::raw::{CLASS_ARRAY, FMT_INDEXABLE};
use spur_format::WordSize;
use spur_loader::{load, LoadOptions, PlacementRequest};
use spur_runtime::{Runtime, RuntimeOptions};
use spur_synth::SynthSpec;

fn runtime() -> Runtime {
    let (bytes, _) = spur_synth::image_bytes(&SynthSpec::new(WordSize::W64, 1 << 20)).unwrap();
    let heap = load(
        bytes.as_slice(),
        &LoadOptions {
            placement: PlacementRequest::Relocate,
            ..Default::default()
        },
    )
    .unwrap();
    Runtime::wire(heap, &RuntimeOptions::default()).unwrap()
}

fn benches(c: &mut Criterion) {
    let mut rt = runtime();
    let mut g = c.benchmark_group("objmem");
    g.sample_size(50).measurement_time(Duration::from_secs(3));
    let mem = rt.memory_mut();
    let so = mem.special_objects();
    let n = mem.num_slots(so).unwrap();
    g.bench_function("fetch_old", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % n;
            black_box(mem.fetch(black_box(so), i).unwrap())
        })
    });
    let young = mem.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 4).unwrap();
    let other = mem.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 4).unwrap();
    g.bench_function("store_young_into_old", |b| {
        b.iter(|| mem.store(black_box(so), n - 1, black_box(young)).unwrap())
    });
    g.bench_function("store_young_into_young", |b| {
        b.iter(|| mem.store(black_box(other), 3, black_box(young)).unwrap())
    });
    g.bench_function("allocate_array_4", |b| {
        b.iter_batched_ref(
            runtime,
            |rt| {
                let m = rt.memory_mut();
                for _ in 0..1000 {
                    black_box(m.allocate_slots(CLASS_ARRAY, FMT_INDEXABLE, 4).unwrap());
                }
            },
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
