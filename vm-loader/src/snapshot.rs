//! `vm-loader snapshot`: load an image, write the loaded heap back.

use std::fmt::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use spur_format::HeaderOverrides;
use spur_loader::{
    read_prefix, read_trailer, snapshot_in_background_by, snapshot_to_path, trailing_len,
    BackgroundWriter, LoadedHeap, SnapshotOptions, SnapshotPlan,
};

use crate::cli::{ConvertArgs, ImageFormat, PlaceArgs, SnapshotArgs, WriterArg};
use crate::image::Image;
use crate::load::placement_text;
use crate::out::{emit, human_bytes, shown};
use crate::{progress, Outcome};

/// The JSON of `snapshot`.
#[derive(Debug, Serialize)]
pub struct SnapshotJson {
    pub path: String,
    pub format: u32,
    /// `"old-base"` or `"relocated"`: where the heap was loaded, and so
    /// where the written image says it lives.
    pub placement: &'static str,
    pub swizzled: bool,
    pub heap_bytes: u64,
    /// Segments in the written file (a relocated heap is written as one).
    pub segments_written: usize,
    /// `oldBaseAddr` and `specialObjectsOop` of the written image.
    pub old_base: u64,
    pub special_objects_oop: u64,
    pub data_size: u64,
    /// Did the written image keep the 512-byte prefix of the source?
    pub prefix: bool,
    /// What was written: `"single"` (one file) or `"composed"` (a folder).
    pub written: &'static str,
    /// Bytes written after the data: those the source file carried past
    /// its header and data, kept so that an image written back in place is
    /// byte-identical.
    pub trailing_bytes: u64,
    /// Bytes after the source's data that were not written (a composed
    /// image has no place for them, or there were too many to keep).
    #[serde(skip_serializing_if = "is_zero")]
    pub trailing_bytes_dropped: u64,
    pub bytes_written: u64,
    pub load_us: u64,
    /// Foreground: until the image was synced and in place. Background:
    /// from the fork until the child had done the same.
    pub snapshot_us: u64,
    /// Foreground only: writing, then syncing and renaming.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_us: Option<u64>,
    /// Background only: how long this process was held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_us: Option<u64>,
    /// A background snapshot's writer: "fork" or "thread".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer: Option<&'static str>,
    /// Why a writer thread was asked for and a child wrote instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fell_back: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The options for writing `heap`, loaded from `image`: keep the prefix of a
/// single file and the bytes after its data, and record the header values
/// given on the command line.
pub fn options(args: &SnapshotArgs, image: &Image, heap: &LoadedHeap) -> Result<SnapshotOptions> {
    let (prefix, trailer) = match image {
        Image::File(src, _) => (
            read_prefix(src, heap.header())?,
            read_trailer(src, heap.header())?.unwrap_or_default(),
        ),
        _ => (None, Vec::new()),
    };
    Ok(SnapshotOptions {
        prefix,
        trailer,
        overrides: HeaderOverrides {
            eden_bytes: args.eden_bytes,
            num_stack_pages: args.stack_pages,
            max_ext_sem_table: args.ext_sem_table,
            ..Default::default()
        },
    })
}

/// The format to write: `--format`, else what OUT says (a name ending in
/// `.image` is a single file, an existing composed folder a composed
/// image), else the input's.
pub fn chosen_format(args: &SnapshotArgs, input: ImageFormat) -> ImageFormat {
    if let Some(f) = args.format {
        return f;
    }
    if args.out.extension().is_some_and(|e| e == "image") {
        return ImageFormat::Single;
    }
    let is_composed_folder = std::fs::metadata(&args.out).is_ok_and(|m| m.is_dir())
        && args.out.join("header.ston").exists();
    if is_composed_folder {
        return ImageFormat::Composed;
    }
    input
}

pub fn run(args: &SnapshotArgs, json: bool) -> Result<Outcome> {
    run_as(args, json, "snapshot")
}

/// `verb` names the command in errors ("snapshot to X", "convert to X").
fn run_as(args: &SnapshotArgs, json: bool, verb: &str) -> Result<Outcome> {
    let image = Image::open(Some(&args.image))?;
    let t0 = Instant::now();
    let heap = image.load(&args.place.load_options())?;
    let load_us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
    let opts = options(args, &image, &heap)?;
    let out = &args.out;
    let input_format = match image {
        Image::Folder(_) => ImageFormat::Composed,
        _ => ImageFormat::Single,
    };
    let format = chosen_format(args, input_format);
    let source_trailing = match &image {
        Image::File(src, _) => trailing_len(src, heap.header()),
        _ => 0,
    };
    let context = || format!("{verb} to {}", shown(out));
    let (mut writer, mut fell_back) = (None, None);
    let (header, segments, bytes, timing) = if format == ImageFormat::Composed {
        if args.background {
            anyhow::bail!("--background writes single files only; a composed folder is written in the foreground");
        }
        let t = Instant::now();
        let w = spur_loader::write_composed(&heap, out, &opts.overrides).with_context(context)?;
        let total_us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
        (
            w.header,
            w.segments.len(),
            w.bytes_written,
            Timing::Foreground {
                write_us: w.write_us,
                sync_us: w.sync_us,
                total_us,
            },
        )
    } else if args.background {
        let by = match args.writer {
            WriterArg::Fork => BackgroundWriter::Fork,
            WriterArg::Thread => BackgroundWriter::Thread,
        };
        let job = snapshot_in_background_by(&heap, out, &opts, by).with_context(context)?;
        if let Some(why) = job.fell_back() {
            tracing::warn!("no writer thread, a forked child writes: {why}");
            fell_back = Some(why.to_owned());
        }
        writer = Some(match job.writer() {
            BackgroundWriter::Fork => "fork",
            BackgroundWriter::Thread => "thread",
        });
        let pause_us = u64::try_from(job.pause().as_micros()).unwrap_or(u64::MAX);
        let bar = progress::bar(job.file_len(), json, "writing (child)");
        let r = if bar.is_hidden() {
            job.wait().with_context(context)?
        } else {
            // The child's progress is the size of the file it writes.
            let mut job = job;
            loop {
                if let Some(r) = job.try_wait().with_context(context)? {
                    break r;
                }
                if let Ok(m) = std::fs::metadata(job.temp_path()) {
                    bar.set_position(m.len());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        bar.finish_and_clear();
        (
            r.header,
            r.segments,
            r.bytes_written,
            Timing::Background {
                pause_us,
                child_us: r.child_us,
            },
        )
    } else {
        let total = SnapshotPlan::new(&heap, &opts)?.file_len();
        let bar = progress::bar(total, json, "writing");
        let r = snapshot_to_path(&heap, out, &opts, &mut |done| bar.set_position(done))
            .with_context(context)?;
        bar.finish_and_clear();
        (
            r.header,
            r.segments,
            r.bytes_written,
            Timing::Foreground {
                write_us: r.write_us,
                sync_us: r.sync_us,
                total_us: r.total_us,
            },
        )
    };
    let (snapshot_us, write_us, sync_us, pause_us) = match timing {
        Timing::Foreground {
            write_us,
            sync_us,
            total_us,
        } => (total_us, Some(write_us), Some(sync_us), None),
        Timing::Background { pause_us, child_us } => (child_us, None, None, Some(pause_us)),
    };
    let j = SnapshotJson {
        path: out.display().to_string(),
        format: header.format,
        placement: heap.placement().name(),
        swizzled: heap.swizzled(),
        heap_bytes: heap.heap_bytes(),
        segments_written: segments,
        old_base: header.old_base.get(),
        special_objects_oop: header.special_objects_oop.get(),
        data_size: header.data_size,
        prefix: header.prefix_bytes > 0,
        written: match format {
            ImageFormat::Single => "single",
            ImageFormat::Composed => "composed",
        },
        trailing_bytes: if format == ImageFormat::Single {
            opts.trailer.len() as u64
        } else {
            0
        },
        trailing_bytes_dropped: 0,
        bytes_written: bytes,
        load_us,
        snapshot_us,
        write_us,
        sync_us,
        pause_us,
        writer,
        fell_back,
    };
    let j = SnapshotJson {
        trailing_bytes_dropped: source_trailing - j.trailing_bytes,
        ..j
    };
    emit(json, &j, || text(&j, &args.image))?;
    Ok(Outcome::Ok)
}

/// `vm-loader convert`: load (at the old addresses when free) and write the
/// heap back in the other format.
pub fn convert(args: &ConvertArgs, json: bool) -> Result<Outcome> {
    let snap = SnapshotArgs {
        image: args.input.clone(),
        out: args.out.clone(),
        place: PlaceArgs::default(),
        background: false,
        writer: WriterArg::Fork,
        eden_bytes: None,
        stack_pages: None,
        ext_sem_table: None,
        format: Some(args.to),
    };
    run_as(&snap, json, "convert")
}

enum Timing {
    Foreground {
        write_us: u64,
        sync_us: u64,
        total_us: u64,
    },
    Background {
        pause_us: u64,
        child_us: u64,
    },
}

fn text(j: &SnapshotJson, image: &Path) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "loaded {} ({} of heap, {}) in {} us",
        shown(image),
        human_bytes(j.heap_bytes),
        placement_text(j.placement, j.swizzled),
        j.load_us
    );
    let _ = writeln!(
        s,
        "wrote {} as {}: format {}, {} in {} segment{}{}, nil at {:#x}, special objects at {:#x}",
        shown(j.path.as_ref()),
        match j.written {
            "composed" => "a composed folder",
            _ => "a single file",
        },
        j.format,
        human_bytes(j.bytes_written),
        j.segments_written,
        if j.segments_written == 1 { "" } else { "s" },
        if j.prefix {
            ", after a 512-byte prefix"
        } else {
            ""
        },
        j.old_base,
        j.special_objects_oop
    );
    if j.trailing_bytes > 0 {
        let _ = writeln!(
            s,
            "kept the {} bytes after the data of {}",
            j.trailing_bytes,
            shown(image)
        );
    }
    if j.trailing_bytes_dropped > 0 {
        let _ = writeln!(
            s,
            "note: the {} bytes after the data of {} are not written ({})",
            j.trailing_bytes_dropped,
            shown(image),
            if j.written == "composed" {
                "a composed image has no place for them"
            } else {
                "too many to keep"
            }
        );
    }
    match (j.pause_us, j.write_us, j.sync_us) {
        (Some(p), _, _) => {
            let _ = writeln!(
                s,
                "background: paused this process {} us; the {} finished after {} us",
                p,
                if j.writer == Some("thread") {
                    "writer thread"
                } else {
                    "child"
                },
                j.snapshot_us
            );
        }
        (None, Some(w), Some(y)) => {
            let _ = writeln!(
                s,
                "snapshot: {} us (write {} us, sync and rename {} us)",
                j.snapshot_us, w, y
            );
        }
        _ => {}
    }
    s
}
