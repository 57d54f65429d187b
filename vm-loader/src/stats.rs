//! `vm-loader stats`: instances and bytes per class, like Smalltalk's space
//! tally, largest first. One walk over the heap, split over `--threads`.

use std::fmt::Write;

use anyhow::Result;
use serde::Serialize;
use spur_runtime::{class_histogram_with, Histogram, ObjectMemory};

use crate::cli::LoadArgs;
use crate::load::load_image;
use crate::out::emit;
use crate::Outcome;

/// The JSON of `stats`: the rows, largest first, their totals, and what
/// is not counted.
#[derive(Debug, Serialize)]
pub struct StatsJson {
    pub classes: Vec<StatsRow>,
    pub total: TotalJson,
    pub not_counted: NotCountedJson,
    /// How long the heap walk took (the load not included), in microseconds.
    pub walk_us: u64,
}

#[derive(Debug, Serialize)]
pub struct TotalJson {
    pub instances: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct NotCountedJson {
    pub free_chunks: u64,
    pub free_bytes: u64,
    pub hidden_objects: u64,
    pub hidden_bytes: u64,
}

/// One row of the `classes` list `stats` prints.
#[derive(Debug, Serialize)]
pub struct StatsRow {
    pub class: String,
    pub instances: u64,
    pub bytes: u64,
}

pub fn run(args: &LoadArgs, json: bool) -> Result<Outcome> {
    let heap = load_image(args)?;
    let memory = ObjectMemory::new(heap);
    let t = std::time::Instant::now();
    let h = class_histogram_with(&memory, args.place.threads())?;
    let walk_us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
    let rows: Vec<StatsRow> = h
        .rows
        .iter()
        .map(|r| StatsRow {
            class: r.name.clone(),
            instances: r.instances,
            bytes: r.bytes,
        })
        .collect();
    let j = StatsJson {
        classes: rows,
        total: TotalJson {
            instances: h.instances(),
            bytes: h.bytes(),
        },
        not_counted: NotCountedJson {
            free_chunks: h.free_chunks,
            free_bytes: h.free_bytes,
            hidden_objects: h.hidden,
            hidden_bytes: h.hidden_bytes,
        },
        walk_us,
    };
    emit(json, &j, || text(&h))?;
    Ok(Outcome::Ok)
}

fn text(h: &Histogram) -> String {
    let mut s = String::new();
    let total = h.bytes().max(1);
    let width = h
        .rows
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(5)
        .clamp(5, 48);
    let _ = writeln!(
        s,
        "{:<width$}  {:>10}  {:>12}  {:>6}",
        "class", "instances", "bytes", "%"
    );
    for r in &h.rows {
        let _ = writeln!(
            s,
            "{:<width$}  {:>10}  {:>12}  {:>6.2}",
            r.name,
            r.instances,
            r.bytes,
            r.bytes as f64 * 100.0 / total as f64
        );
    }
    let _ = writeln!(
        s,
        "{:<width$}  {:>10}  {:>12}  {:>6.2}",
        "total",
        h.instances(),
        h.bytes(),
        100.0
    );
    let _ = writeln!(
        s,
        "not counted: {} free chunks ({} bytes), {} hidden objects ({} bytes)",
        h.free_chunks, h.free_bytes, h.hidden, h.hidden_bytes
    );
    s
}
