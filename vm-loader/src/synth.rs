//! `vm-loader synth`: write a test image with the builder.

use std::fmt::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use spur_format::WordSize;
use spur_loader::files::{self, OutForm};
use spur_loader::SnapshotError;
use spur_runtime::{class_histogram, ObjectMemory};
use spur_synth::{Like, LikeClass, SynthReport, SynthSpec};

use crate::cli::SynthArgs;
use crate::out::{emit, human_bytes, shown};
use crate::Outcome;

/// The JSON of `synth`.
#[derive(Debug, Serialize)]
pub struct SynthJson {
    pub path: String,
    pub format: u32,
    pub word_size: u64,
    pub old_base: u64,
    pub special_objects_oop: u64,
    pub data_size: u64,
    pub file_len: u64,
    pub objects: u64,
    pub free_chunks: u64,
    pub free_bytes: u64,
    pub classes: u64,
    pub segments: Vec<SynthSegmentJson>,
}

#[derive(Debug, Serialize)]
pub struct SynthSegmentJson {
    pub index: usize,
    pub old_start: u64,
    pub size: u64,
    /// Where the segment starts in the file.
    pub file_offset: u64,
}

/// The builder's spec for the command line's arguments.
pub fn spec(args: &SynthArgs) -> Result<SynthSpec> {
    let heap_bytes = match (args.heap_mib, args.heap_kib) {
        (Some(mib), _) => mib
            .checked_mul(1 << 20)
            .with_context(|| format!("--heap-mib {mib} is too large"))?,
        (None, Some(kib)) => kib
            .checked_mul(1 << 10)
            .with_context(|| format!("--heap-kib {kib} is too large"))?,
        (None, None) => anyhow::bail!("one of --heap-mib and --heap-kib is required"),
    };
    let gap_bytes = args
        .gap_mib
        .checked_mul(1 << 20)
        .with_context(|| format!("--gap-mib {} is too large", args.gap_mib))?;
    let mut spec = SynthSpec::new(args.word_size, heap_bytes);
    spec.segments = args.segments;
    spec.gap_bytes = gap_bytes;
    spec.prefix = args.prefix;
    spec.multiple_bytecode_sets = args.sista;
    spec.free_chunks = !args.no_free_chunks;
    if let Some(base) = args.base {
        spec.old_base = base;
    }
    spec.seed = args.seed;
    Ok(spec)
}

/// The mix of the image at `path`: its class histogram, each class with
/// the format its class object gives, and its free chunks.
pub fn like(path: &Path) -> Result<(WordSize, Like)> {
    let image = crate::image::Image::open(Some(path))?;
    let heap = image.load(&spur_loader::LoadOptions::default())?;
    let word = heap.word();
    let memory = ObjectMemory::new(heap);
    let h = class_histogram(&memory)
        .with_context(|| format!("counting the classes of {}", path.display()))?;
    let mut classes = Vec::with_capacity(h.rows.len());
    for r in &h.rows {
        let Some(class) = r.class else { continue };
        // Slot 2 of a class: its format, instSpec << 16 | fixed slots.
        let fmt = memory
            .fetch(class, 2)
            .ok()
            .and_then(|f| word.small_integer(f.bits()));
        let Some(fmt) = fmt else { continue };
        classes.push(LikeClass {
            name: r.name.clone(),
            inst_spec: u8::try_from((fmt >> 16) & 0x1f).unwrap_or(0),
            fixed_slots: (fmt & 0xffff).cast_unsigned(),
            instances: r.instances,
            bytes: r.bytes,
        });
    }
    Ok((
        word,
        Like {
            classes,
            free_chunks: h.free_chunks,
            free_bytes: h.free_bytes,
        },
    ))
}

pub fn run(args: &SynthArgs, json: bool) -> Result<Outcome> {
    let mut spec = spec(args)?;
    let like = match &args.like {
        Some(path) => {
            let (word, like) = like(path)?;
            spec.word = word;
            spec.old_base = args.base.unwrap_or(match word {
                WordSize::W64 => spur_synth::DEFAULT_BASE_64,
                WordSize::W32 => spur_synth::DEFAULT_BASE_32,
            });
            Some(like)
        }
        None => None,
    };
    let like = like.as_ref();
    let out = &args.out;
    // Before anything is written: what is at OUT, and room for the image
    // (twice over for a composed one, built as a single file first).
    let form = if args.composed {
        OutForm::Composed
    } else {
        OutForm::Single
    };
    let target = files::check_output(out, form).with_context(|| format!("{}", out.display()))?;
    let need = (spec.heap_bytes + (1 << 20)).saturating_mul(if args.composed { 2 } else { 1 });
    files::check_free_space(parent(&target.path), need, "the image")
        .with_context(|| format!("{}", out.display()))?;
    let report = if args.composed {
        write_composed(&spec, like, out)?
    } else {
        // The snapshot writer's safe steps: a locked temporary beside OUT
        // that a later run removes if this one is killed, the old file's
        // mode and owner, fsync, rename.
        spur_loader::write_atomically(out, |f| {
            spur_synth::write_image_like(&spec, like, f).map_err(|source| SnapshotError::File {
                what: "writing",
                path: out.display().to_string(),
                source,
            })
        })?
    };
    let j = to_json(&args.out, spec.word, &report);
    emit(json, &j, || text(&j))?;
    Ok(Outcome::Ok)
}

/// Builds the image as a single file beside `out`, loads it at its old
/// addresses and writes the heap as a composed folder at `out`.
fn write_composed(spec: &SynthSpec, like: Option<&Like>, out: &Path) -> Result<SynthReport> {
    let name = out.file_name().context("OUT names no file")?;
    // Named and locked like every temporary of OUT, so that the next write
    // to OUT removes it if this process is killed.
    let _ = spur_loader::remove_stale_temps(out);
    let (single, mut lock) = files::create_temp(parent(out), name, false)
        .with_context(|| format!("creating a temporary file beside {}", out.display()))?;
    let report = spur_synth::write_image_like(spec, like, &mut *lock)
        .with_context(|| format!("writing {}", single.display()));
    let result = report.and_then(|report| {
        let heap = spur_loader::load_path(&single, &spur_loader::LoadOptions::default())?;
        if let Some(why) = heap.fallback_reason() {
            anyhow::bail!("cannot place the new image at its own addresses: {why}");
        }
        spur_loader::write_composed(&heap, out, &Default::default())?;
        Ok(report)
    });
    let _ = std::fs::remove_file(&single);
    drop(lock);
    result
}

/// The folder of `path`.
fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn to_json(path: &Path, word: WordSize, r: &SynthReport) -> SynthJson {
    SynthJson {
        path: path.display().to_string(),
        format: r.format,
        word_size: word.bytes(),
        old_base: r.nil,
        special_objects_oop: r.special_objects_oop,
        data_size: r.data_size,
        file_len: r.file_len,
        objects: r.objects,
        free_chunks: r.free_chunks,
        free_bytes: r.free_bytes,
        classes: r.classes,
        segments: r
            .segments
            .iter()
            .map(|s| SynthSegmentJson {
                index: s.index,
                old_start: s.old_start,
                size: s.size,
                file_offset: s.file_offset,
            })
            .collect(),
    }
}

fn text(j: &SynthJson) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "wrote {}: format {}, {}-bit, {} of heap in {} segment{}, {} file",
        shown(j.path.as_ref()),
        j.format,
        j.word_size * 8,
        human_bytes(j.data_size),
        j.segments.len(),
        if j.segments.len() == 1 { "" } else { "s" },
        human_bytes(j.file_len)
    );
    let _ = writeln!(
        s,
        "  {} objects, {} classes, {} free chunks ({}), nil at {:#x}, special objects at {:#x}",
        j.objects,
        j.classes,
        j.free_chunks,
        human_bytes(j.free_bytes),
        j.old_base,
        j.special_objects_oop
    );
    for seg in &j.segments {
        let _ = writeln!(
            s,
            "  segment {:>3}  {:#014x}  {:>10} bytes",
            seg.index, seg.old_start, seg.size
        );
    }
    s
}
