//! The reference interpreter's speed on the builder's kernel: a send-heavy
//! method (`synthWork:`, one send of `synthSquare` per iteration) and a
//! loop-heavy one (`synthLoop:`, the same loop with `i * i` inline), each
//! with the method cache on and off. Every iteration boots the image
//! outside the timing and runs it to its quit.
//!
//! `cargo bench -p spur-benches --bench interp`. At the end, one
//! interleaved run per configuration prints bytecodes and sends per second
//! and the cache-on / cache-off ratio, measured in the same run.

use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use spur_format::WordSize;
use spur_interp::{Interpreter, Options, Outcome, RunReport};
use spur_loader::LoadOptions;
use spur_runtime::{boot, launch, Runtime, RuntimeOptions};
use spur_synth::{KernelWork, SynthSpec};

const GROUP: &str = "interp";
const ITERATIONS: u32 = 200_000;

fn image(sends: bool) -> (Vec<u8>, KernelWork) {
    let work = KernelWork {
        iterations: ITERATIONS,
        sends,
    };
    let spec = SynthSpec {
        work,
        ..SynthSpec::new(WordSize::W64, 256 << 10)
    };
    (
        spur_synth::image_bytes(&spec).expect("builder image").0,
        work,
    )
}

fn runtime(bytes: &[u8]) -> Runtime {
    // Room for every context even with reuse off.
    let opts = RuntimeOptions {
        eden_bytes: Some(256 << 20),
        ..Default::default()
    };
    boot(bytes, &LoadOptions::default(), &opts).expect("boot")
}

fn run(rt: &mut Runtime, cache: bool) -> RunReport {
    let mut e = Interpreter::new(Options {
        method_cache: cache,
        max_bytecodes: Some(100_000_000),
        ..Default::default()
    });
    launch(rt, &mut e).expect("run")
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let images = [("send_heavy", image(true)), ("loop_heavy", image(false))];
    {
        let mut g = c.benchmark_group(GROUP);
        g.sample_size(10).measurement_time(Duration::from_secs(5));
        for (name, (bytes, work)) in &images {
            for cache in [true, false] {
                let id = format!("{name}/cache_{}", if cache { "on" } else { "off" });
                g.bench_function(id, |b| {
                    b.iter_batched_ref(
                        || runtime(bytes),
                        |rt| {
                            let r = run(rt, cache);
                            assert_eq!(
                                r.outcome,
                                Outcome::Quit(
                                    i32::try_from(work.expected()).expect("a small answer")
                                )
                            );
                            r
                        },
                        BatchSize::PerIteration,
                    )
                });
            }
        }
        g.finish();
    }
    println!("\ninterpreter speed, one interleaved run of each (boot excluded):");
    for (name, (bytes, _)) in &images {
        let mut rates = Vec::new();
        for cache in [true, false] {
            let mut rt = runtime(bytes);
            let t = Instant::now();
            let r = run(&mut rt, cache);
            let s = t.elapsed().as_secs_f64();
            let (bps, sps) = (r.stats.bytecodes as f64 / s, r.stats.sends as f64 / s);
            println!(
                "  {name:10} cache {:3}: {:>6.1} M bytecodes/s, {:>6.2} M sends/s ({} bytecodes, {} sends)",
                if cache { "on" } else { "off" },
                bps / 1e6,
                sps / 1e6,
                r.stats.bytecodes,
                r.stats.sends
            );
            rates.push(bps);
        }
        println!("  {name:10} cache on / off: {:.2}x", rates[0] / rates[1]);
    }
    c.final_summary();
}
