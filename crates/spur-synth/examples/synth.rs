//! Writes one synthetic image and prints what was written and how long it took.
//!
//! `cargo run --release -p spur-synth --example synth -- OUT HEAP_MIB [SEGMENTS] [GAP_MIB] [WORD]`

use spur_format::layout::to_usize;
use std::path::PathBuf;
use std::time::Instant;

use spur_format::WordSize;
use spur_synth::{write_image_file, SynthSpec};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: synth OUT HEAP_MIB [SEGMENTS] [GAP_MIB] [32|64]");
        std::process::exit(2);
    }
    let arg = |i: usize, default: u64| -> u64 {
        args.get(i).map_or(default, |a| {
            a.parse().unwrap_or_else(|_| {
                eprintln!("not a number: {a}");
                std::process::exit(2)
            })
        })
    };
    let out = PathBuf::from(&args[0]);
    let word = if arg(4, 64) == 32 {
        WordSize::W32
    } else {
        WordSize::W64
    };
    let mut spec = SynthSpec::new(word, arg(1, 64) << 20);
    spec.segments = to_usize(arg(2, 1));
    spec.gap_bytes = arg(3, 0) << 20;
    let t = Instant::now();
    match write_image_file(&spec, &out) {
        Ok(r) => {
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{}: {} bytes, {} objects ({} bytes each on average), {} free chunks ({:.2}% of the heap), {} classes, format {}",
                out.display(),
                r.file_len,
                r.objects,
                r.data_size / r.objects.max(1),
                r.free_chunks,
                100.0 * r.free_bytes as f64 / r.data_size as f64,
                r.classes,
                r.format
            );
            for s in &r.segments {
                println!(
                    "  segment {}: {:#x} + {} bytes at file offset {}",
                    s.index, s.old_start, s.size, s.file_offset
                );
            }
            println!(
                "written in {secs:.2} s ({:.0} MiB/s)",
                r.file_len as f64 / secs / (1 << 20) as f64
            );
        }
        Err(e) => {
            eprintln!("synth: {e}");
            std::process::exit(1);
        }
    }
}
