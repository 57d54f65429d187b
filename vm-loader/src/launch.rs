//! `vm-loader launch --headless`: load the heap, wire the runtime, and show
//! where the image resumes, through the same embedding API an interpreter
//! uses, with the dry-run engine.

use std::fmt::Write;

use anyhow::Result;
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
    let image = Image::open(args.image.as_deref())?;
    let load = args.place.load_options();
    let heap = image.load(&load)?;
    let mut rt = Runtime::wire(heap, &opts)?;
    let report = match launch(&mut rt, &mut DryRun) {
        Ok(r) => r,
        Err(never) => match never {},
    };
    emit(json, &report, || text(&report))?;
    Ok(Outcome::Ok)
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
