//! `vm-loader launch --headless`: load the heap, wire the runtime, and show
//! where the image resumes, through the same embedding API an interpreter
//! uses, with the dry-run engine.

use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use spur_interp::{Interpreter, Options, Outcome as InterpOutcome, RunReport};
use spur_runtime::{launch, DryRun, LaunchReport, Runtime, RuntimeOptions};

use crate::cli::LaunchArgs;
use crate::image::Image;
use crate::load::placement_text;
use crate::out::{emit, human_bytes};
use crate::Outcome;

/// The JSON of `launch`. Addresses are plain integers.
#[derive(Debug, Serialize)]
pub struct LaunchJson {
    /// `pharo`, `squeak`, `cuis` or `unknown`.
    pub dialect: &'static str,
    /// The clues behind the verdict.
    pub dialect_evidence: Vec<String>,
    pub image: ImageJson,
    pub special_objects: SpecialObjectsJson,
    pub class_table: ClassTableJson,
    pub new_space: NewSpaceJson,
    pub stack_pages: StackPagesJson,
    pub external_semaphore_table: SemaphoreTableJson,
    pub old_space: OldSpaceJson,
    pub settings: SettingsJson,
    pub resume: ResumeJson,
    pub timings_us: LaunchTimingsJson,
}

#[derive(Debug, Serialize)]
pub struct ImageJson {
    pub format: u32,
    pub word_size: u64,
    pub placement: &'static str,
    pub swizzled: bool,
    /// Why the heap was relocated although its old addresses were asked for
    /// (what held them), or null.
    pub fallback: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SpecialObjectsJson {
    /// The array itself and its length.
    pub array: u64,
    pub length: usize,
    pub nil: u64,
    #[serde(rename = "false")]
    pub false_: u64,
    #[serde(rename = "true")]
    pub true_: u64,
    pub scheduler_association: u64,
    pub external_objects_array: u64,
}

#[derive(Debug, Serialize)]
pub struct ClassTableJson {
    pub pages: usize,
    pub classes: u64,
    pub name_slot: u64,
    pub this_class_slot: u64,
}

#[derive(Debug, Serialize)]
pub struct NewSpaceJson {
    pub start: u64,
    pub end: u64,
    /// All of new space: survivors and eden.
    pub bytes: u64,
    /// `command-line`, `header` or `default`.
    pub from: &'static str,
    /// `below-old-space` or `elsewhere`.
    pub placed: &'static str,
    pub eden_start: u64,
    pub eden_bytes: u64,
    pub survivor_bytes: u64,
    pub reserve_bytes: u64,
    pub scavenge_threshold: u64,
}

#[derive(Debug, Serialize)]
pub struct StackPagesJson {
    pub count: u64,
    pub from: &'static str,
    pub page_bytes: u64,
    pub zone_start: u64,
    pub zone_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct SemaphoreTableJson {
    pub size: usize,
    pub from: &'static str,
    /// Slots of the ExternalObjectsArray (special object 38).
    pub objects_array_slots: u64,
}

#[derive(Debug, Serialize)]
pub struct OldSpaceJson {
    pub start: u64,
    pub end: u64,
    pub headroom: u64,
    /// The free chunk made of the headroom, if any.
    pub free_chunk: Option<u64>,
    pub free_chunk_bytes: u64,
    /// Free chunks the image carried plus that one.
    pub free_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct SettingsJson {
    pub floats_little_endian: bool,
    /// Boxed floats converted to the host's word order (`null`: none needed).
    pub floats_converted: Option<u64>,
    pub preemption_yields: bool,
    pub hash_seed: u32,
}

#[derive(Debug, Serialize)]
pub struct ResumeJson {
    pub process: u64,
    pub context: u64,
    pub method: u64,
    pub receiver: u64,
    pub receiver_class: String,
    pub method_class: String,
    pub selector: String,
    /// `Class>>selector`, or `[] in Class>>selector`.
    pub method_name: String,
    pub in_block: bool,
    pub bytecode_set: &'static str,
    pub pc: u64,
    pub initial_pc: u64,
    pub end_pc: u64,
    pub stack_pointer: u64,
    /// Decoded instructions around the pc, as text.
    pub bytecodes: Vec<String>,
    /// The same instructions as data: pc, bytes and the decoded operation.
    pub instructions: Vec<InstructionJson>,
    /// Index in `bytecodes` of the instruction at the pc.
    pub current: usize,
}

/// One decoded instruction.
#[derive(Debug, Serialize)]
pub struct InstructionJson {
    pub pc: u64,
    /// Its bytes, extension prefixes included.
    pub bytes: Vec<u8>,
    /// The operation and its fields as the decoder holds them, e.g.
    /// `StoreTemp { index: 2, pop: true }`.
    pub op: String,
    /// As in `bytecodes`, literals and special selectors resolved.
    pub text: String,
}

#[derive(Debug, Serialize)]
pub struct LaunchTimingsJson {
    pub load: u64,
    pub wire: u64,
}

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
    let fallback = heap.fallback_reason().map(str::to_owned);
    let mut rt = Runtime::wire(heap, &opts)?;
    if args.dry_run {
        let report = match launch(&mut rt, &mut DryRun) {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let mut j = to_json(&report);
        j.image.fallback = fallback;
        emit(json, &j, || text(&j))?;
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
        image_path,
        args: args.args.clone(),
        echo: !json,
        ..Default::default()
    });
    let report = launch(&mut rt, &mut engine)?;
    let j = run_json(&report);
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
        InterpOutcome::Quit(c) => Outcome::Exit(c as u8),
        InterpOutcome::Stopped { .. } => Outcome::Exit(EXIT_STOPPED),
    })
}

/// The exit code of a run that stopped (a limit, a timeout, an error the
/// image could not handle).
pub const EXIT_STOPPED: u8 = 3;

/// The JSON of a run.
#[derive(Debug, Serialize)]
pub struct RunJson {
    /// `quit`, `bytecode-limit`, `timeout`, `eden-full`, `idle`,
    /// `missing-primitive` or `error`.
    pub ended: &'static str,
    /// The quit code, when the image quit.
    pub exit_code: Option<i32>,
    /// One line saying how the run ended.
    pub line: String,
    /// What the image printed.
    pub output: String,
    pub bytecodes: u64,
    pub sends: u64,
    pub primitive_calls: u64,
    pub primitive_failures: u64,
    pub objects_allocated: u64,
    pub bytes_allocated: u64,
    pub method_cache_hits: u64,
    pub method_cache_misses: u64,
    /// Contexts reused instead of allocated.
    pub contexts_reused: u64,
    pub run_us: u64,
    pub bytecodes_per_second: u64,
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
        bytecodes: s.bytecodes,
        sends: s.sends,
        primitive_calls: s.primitive_calls,
        primitive_failures: s.primitive_failures,
        objects_allocated: s.objects_allocated,
        bytes_allocated: s.bytes_allocated,
        method_cache_hits: s.method_cache_hits,
        method_cache_misses: s.method_cache_misses,
        contexts_reused: s.contexts_reused,
        run_us: s.run_us,
        bytecodes_per_second: (s.bytecodes as u128 * 1_000_000 / s.run_us.max(1) as u128) as u64,
    }
}

fn run_text(j: &RunJson) -> String {
    format!(
        "run: {}\n  {} bytecodes, {} sends, {} primitive calls ({} failed)\n  \
         {} objects ({}) allocated, {} contexts reused, method cache {} hits / {} misses\n  \
         {:.3} s, {} bytecodes/s\n",
        j.line,
        j.bytecodes,
        j.sends,
        j.primitive_calls,
        j.primitive_failures,
        j.objects_allocated,
        human_bytes(j.bytes_allocated),
        j.contexts_reused,
        j.method_cache_hits,
        j.method_cache_misses,
        j.run_us as f64 / 1e6,
        j.bytecodes_per_second
    )
}

pub fn to_json(r: &LaunchReport) -> LaunchJson {
    let o = &r.old_space;
    let p = &r.resume;
    LaunchJson {
        dialect: r.dialect.name(),
        dialect_evidence: r.dialect_clues.clone(),
        image: ImageJson {
            format: r.format,
            word_size: r.word_bytes,
            placement: r.placement,
            swizzled: r.swizzled,
            fallback: None,
        },
        special_objects: SpecialObjectsJson {
            array: r.special_objects_array.get(),
            length: r.special_objects_len,
            nil: r.nil.get(),
            false_: r.false_object.get(),
            true_: r.true_object.get(),
            scheduler_association: r.scheduler_association.bits(),
            external_objects_array: r.external_objects_array.bits(),
        },
        class_table: ClassTableJson {
            pages: r.class_table_pages,
            classes: r.classes,
            name_slot: r.name_slot,
            this_class_slot: r.this_class_slot,
        },
        new_space: NewSpaceJson {
            start: r.new_space_start.get(),
            end: r.new_space_end.get(),
            bytes: r.new_space_bytes,
            from: r.new_space_from,
            placed: r.new_space_placed,
            eden_start: r.eden_start,
            eden_bytes: r.eden_bytes,
            survivor_bytes: r.survivor_bytes,
            reserve_bytes: r.reserve_bytes,
            scavenge_threshold: r.scavenge_threshold.get(),
        },
        stack_pages: StackPagesJson {
            count: r.stack_pages,
            from: r.stack_pages_from,
            page_bytes: r.stack_page_bytes,
            zone_start: r.stack_zone_start,
            zone_bytes: r.stack_zone_bytes,
        },
        external_semaphore_table: SemaphoreTableJson {
            size: r.semaphore_table_size,
            from: r.semaphore_table_from,
            objects_array_slots: r.external_objects_len,
        },
        old_space: OldSpaceJson {
            start: o.start.get(),
            end: o.end.get(),
            headroom: o.headroom,
            free_chunk: o.claimed.map(|c| c.chunk.get()),
            free_chunk_bytes: o.claimed.map_or(0, |c| c.bytes),
            free_bytes: o.free_bytes,
        },
        settings: SettingsJson {
            floats_little_endian: r.floats_little_endian,
            floats_converted: r.floats_converted,
            preemption_yields: r.preemption_yields,
            hash_seed: r.hash_seed,
        },
        resume: ResumeJson {
            process: p.process.bits(),
            context: p.context.bits(),
            method: p.method.bits(),
            receiver: p.receiver.bits(),
            receiver_class: p.receiver_class.clone(),
            method_class: p.method_class_name.clone(),
            selector: p.selector_name.clone(),
            method_name: p.method_name(),
            in_block: p.in_block,
            bytecode_set: p.bytecode_set().name(),
            pc: p.pc,
            initial_pc: p.initial_pc,
            end_pc: p.end_pc,
            stack_pointer: p.stack_pointer,
            bytecodes: p.bytecodes.clone(),
            instructions: p
                .window
                .iter()
                .zip(&p.bytecodes)
                .map(|(i, text)| InstructionJson {
                    pc: i.pc,
                    bytes: i.bytes.clone(),
                    op: format!("{:?}", i.op),
                    text: text.clone(),
                })
                .collect(),
            current: p.current,
        },
        timings_us: LaunchTimingsJson {
            load: r.load_us,
            wire: r.wire.total_us,
        },
    }
}

fn text(j: &LaunchJson) -> String {
    let mut s = String::new();
    let r = &j.resume;
    let _ = writeln!(
        s,
        "dry run of a {}-bit {} image ({}), loaded {}",
        j.image.word_size * 8,
        match j.dialect {
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
        j.dialect,
        j.dialect_evidence.join("; ")
    );
    let _ = writeln!(
        s,
        "time: load {} us, wire {} us",
        j.timings_us.load, j.timings_us.wire
    );
    s
}
