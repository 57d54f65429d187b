//! What an image handle holds, and the operations behind the calls, in
//! safe Rust over the loader's and the runtime's own APIs.

use std::error::Error;
use std::path::Path;

use spur_format::{HeaderOverrides, ImageHeader};
use spur_loader::{
    load_composed, read_prefix, read_trailer, snapshot_in_background_by, snapshot_to_path,
    write_composed, BackgroundSnapshot, BackgroundWriter, ComposedSource, FileSource, LoadOptions,
    LoadedHeap, Report, SnapshotOptions,
};
use spur_runtime::{Histogram, ObjectMemory, Runtime, RuntimeOptions};

use crate::boundary::{Failure, Outcome};
use crate::types::*;

/// A loaded image, wired or not.
#[derive(Debug)]
pub struct Image {
    pub composed: bool,
    pub header: ImageHeader,
    /// The single file's prefix and the bytes after its data, written back
    /// by a snapshot as `vm-loader snapshot` does.
    prefix: Option<Vec<u8>>,
    trailer: Vec<u8>,
    stage: Stage,
    /// The last `spur_verify`'s report.
    pub report: Option<Report>,
    /// The last `spur_histogram`'s rows.
    pub histogram: Option<Histogram>,
}

#[derive(Debug)]
enum Stage {
    /// Loaded, not wired: the object memory has no new space yet.
    Loaded(Box<ObjectMemory>),
    Wired(Box<Runtime>),
    /// Wiring failed after it had taken the heap, which was released.
    Gone(String),
}

/// The error and its causes on one line (`context: outer: inner`), each
/// error saying its own part, control characters escaped: the line
/// `vm-loader` prints after `vm-loader: ` (anyhow's `{:#}`).
pub fn one_line(context: Option<&str>, e: &dyn Error) -> String {
    let mut texts: Vec<String> = context.map(str::to_owned).into_iter().collect();
    let mut cause: Option<&dyn Error> = Some(e);
    while let Some(c) = cause {
        texts.push(c.to_string());
        cause = c.source();
    }
    escaped(&texts.join(": "))
}

/// `text` with its control characters (a newline) escaped as Rust writes them.
fn escaped(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A path as `vm-loader` shows it in a line: control characters escaped.
pub fn shown(p: &Path) -> String {
    escaped(&p.to_string_lossy())
}

fn fail(status: SpurStatus, context: Option<&str>, e: &dyn Error) -> Failure {
    Failure::new(status, one_line(context, e))
}

/// A failure of the object memory, named by the call.
pub fn memory_failure(call: &str, e: &dyn Error) -> Failure {
    fail(SPUR_E_MEMORY, Some(call), e)
}

impl Image {
    /// Loads `path`, a single file or a composed folder, with the errors
    /// worded as `vm-loader` words them.
    pub fn load(path: &Path, opts: &LoadOptions) -> Outcome<Image> {
        let bad = |e: &dyn Error| fail(SPUR_E_IMAGE, None, e);
        if path.is_dir() {
            let src = ComposedSource::open(path).map_err(|e| bad(&e))?;
            let heap = load_composed(&src, opts).map_err(|e| bad(&e))?;
            return Ok(Image::new(true, heap, None, Vec::new()));
        }
        let src = FileSource::open(path).map_err(|e| bad(&e))?;
        // A message that does not name the file is prefixed with it.
        let named = |e: &dyn Error| {
            let name = shown(path);
            let context = (!e.to_string().contains(&*path.to_string_lossy())).then_some(&*name);
            fail(SPUR_E_IMAGE, context, e)
        };
        let heap = spur_loader::load(&src, opts).map_err(|e| named(&e))?;
        let prefix = read_prefix(&src, heap.header()).map_err(|e| named(&e))?;
        let trailer = read_trailer(&src, heap.header())
            .map_err(|e| named(&e))?
            .unwrap_or_default();
        Ok(Image::new(false, heap, prefix, trailer))
    }

    fn new(composed: bool, heap: LoadedHeap, prefix: Option<Vec<u8>>, trailer: Vec<u8>) -> Image {
        Image {
            composed,
            header: heap.header().clone(),
            prefix,
            trailer,
            stage: Stage::Loaded(Box::new(ObjectMemory::new(heap))),
            report: None,
            histogram: None,
        }
    }

    fn gone(call: &str, why: &str) -> Failure {
        Failure::new(
            SPUR_E_STATE,
            format!("{call}: the heap was released when wiring failed ({why}); release the handle"),
        )
    }

    pub fn memory(&self, call: &str) -> Outcome<&ObjectMemory> {
        match &self.stage {
            Stage::Loaded(m) => Ok(m),
            Stage::Wired(rt) => Ok(rt.memory()),
            Stage::Gone(why) => Err(Self::gone(call, why)),
        }
    }

    pub fn memory_mut(&mut self, call: &str) -> Outcome<&mut ObjectMemory> {
        match &mut self.stage {
            Stage::Loaded(m) => Ok(m),
            Stage::Wired(rt) => Ok(rt.memory_mut()),
            Stage::Gone(why) => Err(Self::gone(call, why)),
        }
    }

    pub fn heap(&self, call: &str) -> Outcome<&LoadedHeap> {
        Ok(self.memory(call)?.heap())
    }

    /// The runtime: only after `spur_wire`.
    pub fn runtime(&self, call: &str) -> Outcome<&Runtime> {
        match &self.stage {
            Stage::Wired(rt) => Ok(rt),
            Stage::Loaded(_) => Err(Failure::new(
                SPUR_E_STATE,
                format!("{call}: the image is not wired yet (call spur_wire first)"),
            )),
            Stage::Gone(why) => Err(Self::gone(call, why)),
        }
    }

    pub fn is_wired(&self) -> bool {
        matches!(self.stage, Stage::Wired(_))
    }

    /// Wires the runtime. The options are checked first, so a refused
    /// option leaves the image loaded; a heap that wiring refuses later is
    /// released with it (wiring takes the heap).
    pub fn wire(&mut self, call: &str, opts: &RuntimeOptions) -> Outcome<()> {
        opts.check().map_err(|e| fail(SPUR_E_ARGUMENT, None, &e))?;
        match &self.stage {
            Stage::Loaded(_) => {}
            Stage::Wired(_) => {
                return Err(Failure::new(
                    SPUR_E_STATE,
                    format!("{call}: the image is already wired"),
                ))
            }
            Stage::Gone(why) => return Err(Self::gone(call, why)),
        }
        let Stage::Loaded(memory) = std::mem::replace(&mut self.stage, Stage::Gone(String::new()))
        else {
            return Err(Failure::new(
                SPUR_E_INTERNAL,
                format!("{call}: lost the heap"),
            ));
        };
        match Runtime::wire_memory(*memory, opts) {
            Ok(rt) => {
                self.stage = Stage::Wired(Box::new(rt));
                Ok(())
            }
            Err(e) => {
                let f = fail(SPUR_E_RUNTIME, None, &e);
                self.stage = Stage::Gone(f.line.clone());
                Err(f)
            }
        }
    }

    fn snapshot_options(&self, o: &SpurSnapshotOptions) -> SnapshotOptions {
        let nonzero32 = |v: u32| (v != 0).then_some(v);
        let nonzero16 = |v: u16| (v != 0).then_some(v);
        SnapshotOptions {
            prefix: self.prefix.clone(),
            trailer: self.trailer.clone(),
            overrides: HeaderOverrides {
                eden_bytes: nonzero32(o.eden_bytes),
                num_stack_pages: nonzero16(o.stack_pages),
                max_ext_sem_table: nonzero16(o.ext_sem_table),
                ..Default::default()
            },
        }
    }

    /// Whether `out` is written as a composed folder, as `vm-loader
    /// snapshot` chooses: the format asked for, else a name ending in
    /// `.image` is a single file and an existing composed folder a
    /// composed image, else the input's format.
    fn composed_out(&self, call: &str, out: &Path, format: u32) -> Outcome<bool> {
        match format {
            SPUR_WRITE_SINGLE => Ok(false),
            SPUR_WRITE_COMPOSED => Ok(true),
            SPUR_WRITE_AUTO => {
                if out.extension().is_some_and(|e| e == "image") {
                    return Ok(false);
                }
                let folder = std::fs::metadata(out).is_ok_and(|m| m.is_dir())
                    && out.join("header.ston").exists();
                Ok(folder || self.composed)
            }
            other => Err(Failure::new(
                SPUR_E_ARGUMENT,
                format!("{call}: format {other} is not SPUR_WRITE_AUTO, SPUR_WRITE_SINGLE or SPUR_WRITE_COMPOSED"),
            )),
        }
    }

    /// Writes a snapshot of the heap as it is now, in the foreground.
    pub fn snapshot(
        &self,
        call: &str,
        out: &Path,
        o: &SpurSnapshotOptions,
    ) -> Outcome<SpurSnapshotResult> {
        let heap = self.heap(call)?;
        let opts = self.snapshot_options(o);
        let context = format!("snapshot to {}", shown(out));
        let werr = |e: &dyn Error| fail(SPUR_E_WRITE, Some(&context), e);
        let t0 = std::time::Instant::now();
        let (header, segments, bytes, composed) = if self.composed_out(call, out, o.format)? {
            let w = write_composed(heap, out, &opts.overrides).map_err(|e| werr(&e))?;
            (w.header, w.segments.len(), w.bytes_written, true)
        } else {
            let r = snapshot_to_path(heap, out, &opts, &mut |_| {}).map_err(|e| werr(&e))?;
            (r.header, r.segments, r.bytes_written, false)
        };
        Ok(SpurSnapshotResult {
            bytes_written: bytes,
            segments: segments as u64,
            composed: composed.into(),
            format: header.format,
            old_base: header.old_base.get(),
            special_objects_oop: header.special_objects_oop.get(),
            data_size: header.data_size,
            pause_us: u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX),
            child_us: 0,
        })
    }

    /// Starts writing a single-file snapshot from a forked child, or from a
    /// thread over the write-protected heap.
    pub fn snapshot_background(
        &self,
        call: &str,
        out: &Path,
        o: &SpurSnapshotOptions,
        by: BackgroundWriter,
    ) -> Outcome<BackgroundSnapshot> {
        if self.composed_out(call, out, o.format)? {
            return Err(Failure::new(
                SPUR_E_ARGUMENT,
                format!("{call}: a background snapshot writes single files only; a composed folder is written in the foreground"),
            ));
        }
        let heap = self.heap(call)?;
        let opts = self.snapshot_options(o);
        let context = format!("snapshot to {}", shown(out));
        snapshot_in_background_by(heap, out, &opts, by)
            .map_err(|e| fail(SPUR_E_WRITE, Some(&context), &e))
    }
}

/// What a finished background snapshot reports.
pub fn background_result(r: &spur_loader::BackgroundReport) -> SpurSnapshotResult {
    SpurSnapshotResult {
        bytes_written: r.bytes_written,
        segments: r.segments as u64,
        composed: 0,
        format: r.header.format,
        old_base: r.header.old_base.get(),
        special_objects_oop: r.header.special_objects_oop.get(),
        data_size: r.header.data_size,
        pause_us: r.pause_us,
        child_us: r.child_us,
    }
}

/// A background snapshot's failure.
pub fn job_failure(e: &dyn Error) -> Failure {
    fail(SPUR_E_WRITE, None, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that says its own part and reports its cause as its source.
    #[derive(Debug)]
    struct Open(std::io::Error);
    impl std::fmt::Display for Open {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "opening x")
        }
    }
    impl Error for Open {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn the_chain_is_said_on_one_line() {
        let e = Open(std::io::Error::other("disk\non fire"));
        assert_eq!(
            one_line(Some("loading"), &e),
            "loading: opening x: disk\\non fire"
        );
        assert_eq!(one_line(None, &std::io::Error::other("inner")), "inner");
    }

    #[test]
    fn control_characters_in_paths_are_escaped() {
        assert_eq!(shown("a\nb.image".as_ref()), "a\\nb.image");
    }
}
