//! `vm-loader load`: put the heap in memory and say where it went.

use std::fmt::Write;

use anyhow::{Context, Result};
use serde::Serialize;
use spur_loader::LoadedHeap;

use crate::cli::LoadArgs;
use crate::image::Image;
use crate::out::{emit, human_bytes};
use crate::Outcome;

/// The JSON of `load`.
#[derive(Debug, Serialize)]
pub struct LoadJson {
    /// `"old-base"` or `"relocated"`.
    pub placement: &'static str,
    pub swizzled: bool,
    /// Why the old addresses could not be used, when the loader fell back.
    pub fallback: Option<String>,
    pub objects: u64,
    pub heap_bytes: u64,
    pub headroom: u64,
    pub segments: Vec<LoadedSegmentJson>,
    pub timings_us: TimingsJson,
}

#[derive(Debug, Serialize)]
pub struct LoadedSegmentJson {
    pub index: usize,
    pub old_start: u64,
    pub new_start: u64,
    pub size: u64,
    /// `new_start - old_start`.
    pub delta: i64,
    /// Mapped in place from a composed image's segment file (no read, no copy).
    pub mapped: bool,
}

#[derive(Debug, Serialize)]
pub struct TimingsJson {
    pub reserve: u64,
    pub read: u64,
    pub swizzle: u64,
    pub total: u64,
}

/// Opens the image named by `args` (or the builder's default) and loads it
/// where `args` asks.
pub fn load_image(args: &LoadArgs) -> Result<LoadedHeap> {
    let image = Image::open(args.image.as_deref())?;
    let opts = args.place.load_options();
    image.load(&opts)
}

pub fn run(args: &LoadArgs, json: bool) -> Result<Outcome> {
    let heap = load_image(args)?;
    let objects = heap
        .count_objects()
        .context("counting the objects of the loaded heap")?;
    let t = heap.timings();
    let j = LoadJson {
        placement: heap.placement().name(),
        swizzled: heap.swizzled(),
        fallback: heap.fallback_reason().map(str::to_owned),
        objects,
        heap_bytes: heap.heap_bytes(),
        headroom: heap.headroom(),
        segments: heap
            .segments()
            .iter()
            .map(|s| LoadedSegmentJson {
                index: s.index,
                old_start: s.old_start.get(),
                new_start: s.new_start.get(),
                size: s.size,
                delta: s.swizzle().delta,
                mapped: s.mapped,
            })
            .collect(),
        timings_us: TimingsJson {
            reserve: t.reserve_us,
            read: t.read_us,
            swizzle: t.swizzle_us,
            total: t.total_us,
        },
    };
    emit(json, &j, || text(&j))?;
    Ok(Outcome::Ok)
}

fn text(j: &LoadJson) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "loaded {} objects, {} of heap, {}{}",
        j.objects,
        human_bytes(j.heap_bytes),
        placement_text(j.placement, j.swizzled),
        if j.headroom > 0 {
            format!(", {} headroom", human_bytes(j.headroom))
        } else {
            String::new()
        }
    );
    if let Some(why) = &j.fallback {
        let _ = writeln!(s, "old addresses unavailable: {why}");
    }
    for seg in &j.segments {
        let _ = writeln!(
            s,
            "  segment {:>3}  {:#014x} -> {:#014x}  {:>10} bytes  delta {}{}",
            seg.index,
            seg.old_start,
            seg.new_start,
            seg.size,
            signed_hex(seg.delta),
            if seg.mapped { "  (mapped)" } else { "" }
        );
    }
    let t = &j.timings_us;
    let _ = writeln!(
        s,
        "time: reserve {} us, read {} us, swizzle {} us, total {} us",
        t.reserve, t.read, t.swizzle, t.total
    );
    s
}

/// `"at the old base, not swizzled"` or `"relocated, swizzled"`.
pub fn placement_text(placement: &str, swizzled: bool) -> String {
    let place = match placement {
        "old-base" => "at the old base",
        other => other,
    };
    let sw = if swizzled { "swizzled" } else { "not swizzled" };
    format!("{place}, {sw}")
}

/// A signed distance in hex: `+0x1000`, `-0x804000`, `0`.
fn signed_hex(d: i64) -> String {
    match d {
        0 => "0".to_string(),
        d if d > 0 => format!("+{d:#x}"),
        d => format!("-{:#x}", d.unsigned_abs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_print_with_their_sign() {
        assert_eq!(signed_hex(0), "0");
        assert_eq!(signed_hex(0x1000), "+0x1000");
        assert_eq!(signed_hex(-0x804000), "-0x804000");
        assert_eq!(signed_hex(i64::MIN), "-0x8000000000000000");
    }
}
