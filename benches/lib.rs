//! Shared pieces of the benchmarks: where the builder's images are cached,
//! and reading criterion's estimates back to print ratios.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use spur_format::WordSize;
use spur_synth::SynthSpec;

/// A builder image of `mib` MiB in `segments` segments, written once into
/// `target/bench-images` and reused by later runs.
pub fn bench_image(mib: u64, segments: usize) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-images");
    std::fs::create_dir_all(&dir).expect("create target/bench-images");
    let path = dir.join(format!("synth-{mib}mib-{segments}seg-64.image"));
    if !path.is_file() {
        let mut spec = SynthSpec::new(WordSize::W64, mib << 20);
        spec.segments = segments;
        spur_synth::write_image_file(&spec, &path).expect("write bench image");
    }
    path
}

/// The median criterion measured for `group/bench`, in nanoseconds.
pub fn median_ns(group: &str, bench: &str) -> Option<f64> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/criterion")
        .join(group)
        .join(bench)
        .join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

/// A builder image of `mib` MiB written as a composed folder into
/// `target/bench-images`, reused by later runs.
pub fn bench_composed(mib: u64) -> PathBuf {
    let single = bench_image(mib, 1);
    let dir = single.with_extension("composed");
    if !dir.join("header.ston").is_file() {
        let heap = spur_loader::load_path(&single, &spur_loader::LoadOptions::default())
            .expect("load bench image");
        spur_loader::write_composed(&heap, &dir, &Default::default())
            .expect("write composed bench image");
    }
    dir
}

/// Times `routine` alone, once per sample: what it returns is dropped after
/// the clock stops, so unmapping a loaded heap (or freeing a read buffer) is
/// not counted, and only one result is alive at a time, so a heap loaded at
/// its old addresses finds them free again in the next iteration.
pub fn iter_untimed_drop<O>(b: &mut criterion::Bencher<'_>, mut routine: impl FnMut() -> O) {
    b.iter_batched(|| (), |()| routine(), criterion::BatchSize::PerIteration);
}
