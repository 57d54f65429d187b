//! `vm-loader launch --headless`: load the heap, wire the runtime, and show
//! where the image resumes, through the same embedding API an interpreter
//! uses, with the dry-run engine.

use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use spur_interp::{Interpreter, Options, Outcome as InterpOutcome, RunReport, Stats};
use spur_runtime::{launch, DryRun, LaunchReport, Runtime, RuntimeOptions};

use crate::cli::LaunchArgs;
use crate::image::Image;
use crate::load::placement_text;
use crate::out::{emit, human_bytes};
use crate::Outcome;

pub fn run(args: &LaunchArgs, json: bool) -> Result<Outcome> {
    let opts = RuntimeOptions {
        eden_bytes: args.eden_bytes,
        stack_pages: args.stack_pages,
        ext_sem_table: args.ext_sem_table,
        ..Default::default()
    };
    // Refuse what can be refused before any image is opened.
    opts.check()?;
    if let Some(t) = args.timeout {
        if !(t.is_finite() && t > 0.0) {
            anyhow::bail!("--timeout {t}: give a positive number of seconds");
        }
    }
    let image = Image::open(args.image.as_deref())?;
    let load = args.place.load_options();
    let heap = image.load(&load)?;
    let mut rt = Runtime::wire(heap, &opts)?;
    let load_us = rt.heap().timings().total_us + rt.timings().total_us;
    if args.dry_run {
        let report = match launch(&mut rt, &mut DryRun) {
            Ok(r) => r,
            Err(never) => match never {},
        };
        emit(json, &report, || text(&report))?;
        return Ok(Outcome::Ok);
    }
    let image_path = match &args.image {
        Some(p) => std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()),
        None => PathBuf::from("builder.image"),
    };
    let mut engine = Interpreter::new(Options {
        max_bytecodes: args.max_bytecodes,
        timeout: args.timeout.map(Duration::from_secs_f64),
        trace_sends: args.trace_sends,
        method_cache: !args.no_method_cache,
        recycle_contexts: !args.no_context_reuse,
        growth_limit: match args.max_growth_mib {
            0 => None,
            mib => Some(mib.saturating_mul(1 << 20)),
        },
        image_path,
        args: args.args.clone(),
        vm_options: if args.headless {
            vec!["--headless".to_string()]
        } else {
            Vec::new()
        },
        echo: !json,
        ..Default::default()
    });
    let report = launch(&mut rt, &mut engine)?;
    let mut j = run_json(&report);
    j.load_us = load_us;
    if json {
        emit(true, &j, String::new)?;
    } else {
        if args.stats {
            eprint!("{}", run_text(&j));
        }
        if let InterpOutcome::Stopped { line, .. } = &report.outcome {
            eprintln!("vm-loader: {line}");
        }
    }
    Ok(match report.outcome {
        // With no IMAGE the run is a self-check: the builder's kernel quits
        // with its answer, which the builder computed on its own.
        InterpOutcome::Quit(c) if args.image.is_none() => {
            let expected = crate::image::default_spec().work.expected();
            if i64::from(c) == expected {
                eprintln!(
                    "note: the builder's kernel quit with {c}, the answer the builder computed"
                );
                Outcome::Ok
            } else {
                eprintln!(
                    "vm-loader: the builder's kernel quit with {c}, but its answer is {expected}"
                );
                Outcome::Exit(1)
            }
        }
        // The low byte, as exit(3) passes a status to the parent.
        InterpOutcome::Quit(c) => Outcome::Exit(u8::try_from(c & 0xff).unwrap_or(u8::MAX)),
        InterpOutcome::Stopped { .. } => Outcome::Exit(EXIT_STOPPED),
    })
}

/// The exit code of a run that stopped (a limit, a timeout, an error the
/// image could not handle).
pub const EXIT_STOPPED: u8 = 3;

/// The JSON of a run.
#[derive(Debug, Serialize)]
pub struct RunJson {
    /// `quit`, `bytecode-limit`, `timeout`, `out-of-memory`, `eden-full`, `idle`,
    /// `missing-primitive` or `error`.
    pub ended: &'static str,
    /// The quit code, when the image quit.
    pub exit_code: Option<i32>,
    /// One line saying how the run ended.
    pub line: String,
    /// What the image printed.
    pub output: String,
    /// The interpreter's counters, as fields of this object.
    #[serde(flatten)]
    pub stats: Stats,
    /// Bytecodes per second of the run's time.
    pub bytecodes_per_second: u64,
    /// Loading the heap and wiring the runtime, before the run.
    pub load_us: u64,
}

pub fn run_json(r: &RunReport) -> RunJson {
    let s = &r.stats;
    RunJson {
        ended: r.outcome.name(),
        exit_code: match r.outcome {
            InterpOutcome::Quit(c) => Some(c),
            _ => None,
        },
        line: r.outcome.line(),
        output: r.output_text(),
        stats: s.clone(),
        bytecodes_per_second: u64::try_from(
            u128::from(s.bytecodes) * 1_000_000 / u128::from(s.run_us.max(1)),
        )
        .unwrap_or(u64::MAX),
        load_us: 0,
    }
}

fn run_text(j: &RunJson) -> String {
    let st = &j.stats;
    format!(
        "run: {}\n  {} bytecodes, {} sends, {} primitive calls ({} failed)\n  \
         {} objects ({}) allocated, {} contexts reused, method cache {} hits / {} misses\n  \
         {:.3} s, {} bytecodes/s\n  \
         loaded in {:.3} s; {} snapshots in {:.3} s, {} objects ({}) tenured, old space grew {}\n  \
         {} scavenges in {:.3} s, {} survived, {} weak slots cleared; old space grew by {} segments ({}) for allocation\n  \
         {} process switches\n",
        j.line,
        st.bytecodes,
        st.sends,
        st.primitive_calls,
        st.primitive_failures,
        st.objects_allocated,
        human_bytes(st.bytes_allocated),
        st.contexts_reused,
        st.method_cache_hits,
        st.method_cache_misses,
        st.run_us as f64 / 1e6,
        j.bytecodes_per_second,
        j.load_us as f64 / 1e6,
        st.snapshots,
        st.snapshot_us as f64 / 1e6,
        st.tenured_objects,
        human_bytes(st.tenured_bytes),
        human_bytes(st.old_space_growth),
        st.scavenges,
        st.scavenge_us as f64 / 1e6,
        human_bytes(st.survivor_bytes),
        st.weak_slots_cleared,
        st.old_segments_added,
        human_bytes(st.old_bytes_added),
        st.process_switches
    )
}

fn text(j: &LaunchReport) -> String {
    let mut s = String::new();
    let r = &j.resume;
    let _ = writeln!(
        s,
        "dry run of a {}-bit {} image ({}), loaded {}",
        j.image.word_size * 8,
        match j.dialect.name() {
            "pharo" => "Pharo",
            "squeak" => "Squeak",
            "cuis" => "Cuis",
            _ => "Smalltalk (dialect unknown)",
        },
        j.image.format,
        placement_text(j.image.placement, j.image.swizzled)
    );
    let _ = writeln!(
        s,
        "resumes in {} at pc {} ({}), receiver {:#x} ({})",
        r.method_name, r.pc, r.bytecode_set, r.receiver, r.receiver_class
    );
    let _ = writeln!(
        s,
        "  process {:#x}, context {:#x}, method {:#x}",
        r.process, r.context, r.method
    );
    for (i, b) in r.bytecodes.iter().enumerate() {
        let mark = if i == r.current { "->" } else { "  " };
        let _ = writeln!(s, "  {mark} {b}");
    }
    let so = &j.special_objects;
    let _ = writeln!(
        s,
        "special objects {:#x} ({} slots): nil {:#x}, false {:#x}, true {:#x}, scheduler association {:#x}, external objects {:#x}",
        so.array, so.length, so.nil, so.false_, so.true_, so.scheduler_association, so.external_objects_array
    );
    let ct = &j.class_table;
    let _ = writeln!(
        s,
        "class table: {} pages, {} classes (names in slot {}, thisClass in slot {})",
        ct.pages, ct.classes, ct.name_slot, ct.this_class_slot
    );
    let ns = &j.new_space;
    let _ = writeln!(
        s,
        "new space {:#x}..{:#x} ({}, {}, {}): survivors 2 x {}, eden {} from {:#x}, scavenge threshold {:#x} (reserve {})",
        ns.start,
        ns.end,
        human_bytes(ns.bytes),
        ns.from,
        ns.placed.replace('-', " "),
        human_bytes(ns.survivor_bytes),
        human_bytes(ns.eden_bytes),
        ns.eden_start,
        ns.scavenge_threshold,
        human_bytes(ns.reserve_bytes)
    );
    let st = &j.stack_pages;
    let _ = writeln!(
        s,
        "stack: {} pages of {} ({}), zone {:#x} ({})",
        st.count,
        human_bytes(st.page_bytes),
        st.from,
        st.zone_start,
        human_bytes(st.zone_bytes)
    );
    let sem = &j.external_semaphore_table;
    let _ = writeln!(
        s,
        "external semaphore table: {} entries ({}); the ExternalObjectsArray has {} slots",
        sem.size, sem.from, sem.objects_array_slots
    );
    let o = &j.old_space;
    let _ = writeln!(
        s,
        "old space {:#x}..{:#x}: {}, {} free",
        o.start,
        o.end,
        match o.free_chunk {
            Some(c) => format!(
                "{} of headroom made a free chunk at {c:#x}",
                human_bytes(o.free_chunk_bytes)
            ),
            None => "no headroom".to_string(),
        },
        human_bytes(o.free_bytes)
    );
    let se = &j.settings;
    let _ = writeln!(
        s,
        "settings: floats {}-endian ({}), preemption {}, identity-hash seed {:#x}",
        if se.floats_little_endian {
            "little"
        } else {
            "big"
        },
        match se.floats_converted {
            Some(n) => format!("{n} converted"),
            None => "as the host".to_string(),
        },
        if se.preemption_yields {
            "yields"
        } else {
            "does not yield"
        },
        se.hash_seed
    );
    let _ = writeln!(
        s,
        "dialect {}: {}",
        j.dialect.name(),
        j.dialect_evidence.join("; ")
    );
    let _ = writeln!(
        s,
        "time: load {} us, wire {} us",
        j.timings_us.load, j.timings_us.wire
    );
    s
}
