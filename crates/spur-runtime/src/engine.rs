//! The embedding API: an interpreter implements [`Engine`] and is handed a
//! wired [`Runtime`]. The command line's `launch` uses the same API with
//! [`DryRun`], which reports where the image would resume and stops.

use spur_loader::{ImageSource, LoadError, LoadOptions};

use crate::dialect::Dialect;
use crate::error::RuntimeError;
use crate::runtime::{Runtime, RuntimeOptions};
use crate::special_objects::{index, SpecialObjects};

/// An interpreter (or anything else) that runs a wired image.
///
/// `run` gets the runtime mutably: the heap, new space and the stack zone
/// are its to use; special objects, the class table, the semaphore table
/// and the resume point are ready. The runtime stays owned by the caller,
/// which releases all memory when it is dropped.
pub trait Engine {
    /// What a run produces (an exit code, a report).
    type Output;
    /// Why a run failed.
    type Error: std::error::Error + Send + Sync + 'static;
    /// A short name, for logs.
    fn name(&self) -> &str;
    /// Runs the image from its resume point.
    fn run(&mut self, runtime: &mut Runtime) -> Result<Self::Output, Self::Error>;
}

/// Hands `runtime` to `engine`.
pub fn launch<E: Engine>(runtime: &mut Runtime, engine: &mut E) -> Result<E::Output, E::Error> {
    let _span = tracing::debug_span!("engine", name = engine.name()).entered();
    engine.run(runtime)
}

/// Why an image could not be booted.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The image could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The loaded heap could not be wired into a runtime.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl BootError {
    /// Is the input (image or options) at fault, rather than the machine?
    pub fn is_bad_input(&self) -> bool {
        match self {
            BootError::Load(e) => e.is_bad_input(),
            BootError::Runtime(e) => e.is_bad_input(),
        }
    }
}

/// Loads an image and wires it.
pub fn boot<S: ImageSource + ?Sized>(
    src: &S,
    load: &LoadOptions,
    opts: &RuntimeOptions,
) -> Result<Runtime, BootError> {
    let heap = spur_loader::load(src, load)?;
    Ok(Runtime::wire(heap, opts)?)
}

/// The engine of `vm-loader launch`: it runs nothing, and reports the
/// resume point and the runtime's layout.
#[derive(Debug, Clone, Copy, Default)]
pub struct DryRun;

/// What [`DryRun`] reports: plain data, detached from the runtime, in the
/// shape `vm-loader launch --json` prints it (with the `serde` feature,
/// it serialises to that JSON). Addresses are plain integers.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LaunchReport {
    /// `pharo`, `squeak`, `cuis` or `unknown`.
    #[cfg_attr(feature = "serde", serde(serialize_with = "dialect_name"))]
    pub dialect: Dialect,
    /// The clues behind the verdict.
    pub dialect_evidence: Vec<String>,
    /// The image and how it was placed.
    pub image: LaunchImage,
    /// The special objects array and the objects the runtime names.
    pub special_objects: LaunchSpecialObjects,
    /// The class table.
    pub class_table: LaunchClassTable,
    /// New space (§4.4).
    pub new_space: LaunchNewSpace,
    /// The stack zone (§4.4).
    pub stack_pages: LaunchStackPages,
    /// The external semaphore table (§4.4).
    pub external_semaphore_table: LaunchSemaphoreTable,
    /// Old space after wiring (§5.3).
    pub old_space: LaunchOldSpace,
    /// Settings taken from the header and the host.
    pub settings: LaunchSettings,
    /// Where the image resumes.
    pub resume: LaunchResume,
    /// Time spent, in microseconds.
    pub timings_us: LaunchTimings,
}

#[cfg(feature = "serde")]
fn dialect_name<S: serde::Serializer>(d: &Dialect, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(d.name())
}

/// The image of a [`LaunchReport`].
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LaunchImage {
    /// The format number.
    pub format: u32,
    /// Bytes per word.
    pub word_size: u64,
    /// `old-base` or `relocated`.
    pub placement: &'static str,
    /// Whether pointers were rewritten.
    pub swizzled: bool,
    /// Why the heap was relocated although its old addresses were asked for
    /// (what held them), or `None`.
    pub fallback: Option<String>,
}

/// The special objects of a [`LaunchReport`] (§4.3).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LaunchSpecialObjects {
    /// The array itself.
    pub array: u64,
    /// Its length.
    pub length: usize,
    /// nil.
    pub nil: u64,
    /// false.
    #[cfg_attr(feature = "serde", serde(rename = "false"))]
    pub false_: u64,
    /// true.
    #[cfg_attr(feature = "serde", serde(rename = "true"))]
    pub true_: u64,
    /// Special object 3 as stored (nil's address when nil).
    pub scheduler_association: u64,
    /// Special object 38 as stored (nil's address when nil).
    pub external_objects_array: u64,
}

impl LaunchSpecialObjects {
    /// The special objects of a wired runtime, as a report gives them.
    pub fn of(so: &SpecialObjects) -> Self {
        let stored = |i| so.at(i).unwrap_or(so.nil_oop()).bits();
        LaunchSpecialObjects {
            array: so.addr().get(),
            length: so.len(),
            nil: so.nil().get(),
            false_: so.false_object().get(),
            true_: so.true_object().get(),
            scheduler_association: stored(index::SCHEDULER_ASSOCIATION),
            external_objects_array: stored(index::EXTERNAL_OBJECTS_ARRAY),
        }
    }
}

/// The class table of a [`LaunchReport`] (§4.2).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LaunchClassTable {
    /// Pages in use.
    pub pages: usize,
    /// Classes in the table.
    pub classes: u64,
    /// The slot of a class that holds its name.
    pub name_slot: u64,
    /// The slot of a metaclass that holds its class.
    pub this_class_slot: u64,
}

/// New space of a [`LaunchReport`] (§4.4).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LaunchNewSpace {
    /// Start of new space.
    pub start: u64,
    /// Its end.
    pub end: u64,
    /// All of new space: survivors and eden.
    pub bytes: u64,
    /// `command-line`, `header` or `default`.
    pub from: &'static str,
    /// `below-old-space` or `elsewhere`.
    pub placed: &'static str,
    /// Start of eden.
    pub eden_start: u64,
    /// Bytes of eden.
    pub eden_bytes: u64,
    /// Bytes of each survivor space.
    pub survivor_bytes: u64,
    /// The interpreter's allocation reserve.
    pub reserve_bytes: u64,
    /// Where a scavenge is due.
    pub scavenge_threshold: u64,
}

/// The stack zone of a [`LaunchReport`] (§4.4).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LaunchStackPages {
    /// Stack pages.
    pub count: u64,
    /// `command-line`, `header` or `default`.
    pub from: &'static str,
    /// Bytes of a page.
    pub page_bytes: u64,
    /// Start of the zone.
    pub zone_start: u64,
    /// Bytes of the zone.
    pub zone_bytes: u64,
}

/// The external semaphore table of a [`LaunchReport`] (§4.4).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LaunchSemaphoreTable {
    /// Entries.
    pub size: usize,
    /// `command-line`, `header` or `default`.
    pub from: &'static str,
    /// Slots of the ExternalObjectsArray (special object 38).
    pub objects_array_slots: u64,
}

/// Old space of a [`LaunchReport`] (§5.3).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LaunchOldSpace {
    /// nil: the first object.
    pub start: u64,
    /// Where the last segment's objects end.
    pub end: u64,
    /// Headroom reserved after the last segment.
    pub headroom: u64,
    /// The free chunk made of the headroom, if any.
    pub free_chunk: Option<u64>,
    /// Its bytes (0 when none).
    pub free_chunk_bytes: u64,
    /// Free chunks the image carried plus that one.
    pub free_bytes: u64,
}

/// Settings of a [`LaunchReport`].
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LaunchSettings {
    /// Header flag 2 (§1.4).
    pub floats_little_endian: bool,
    /// Boxed floats converted to the host's word order (`None`: none needed).
    pub floats_converted: Option<u64>,
    /// Whether preemption yields (header flag 16 clear).
    pub preemption_yields: bool,
    /// The identity-hash seed.
    pub hash_seed: u32,
}

/// The resume point of a [`LaunchReport`].
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LaunchResume {
    /// The active process.
    pub process: u64,
    /// Its suspended context.
    pub context: u64,
    /// The context's method.
    pub method: u64,
    /// The context's receiver.
    pub receiver: u64,
    /// Name of the receiver's class.
    pub receiver_class: String,
    /// Name of the method's class.
    pub method_class: String,
    /// The method's selector.
    pub selector: String,
    /// `Class>>selector`, or `[] in Class>>selector`.
    pub method_name: String,
    /// Whether the context is a block's.
    pub in_block: bool,
    /// `V3PlusClosures` or `SistaV1`.
    pub bytecode_set: &'static str,
    /// The pc.
    pub pc: u64,
    /// The method's first bytecode.
    pub initial_pc: u64,
    /// Past its last bytecode.
    pub end_pc: u64,
    /// The context's stack pointer.
    pub stack_pointer: u64,
    /// Decoded instructions around the pc, as text.
    pub bytecodes: Vec<String>,
    /// The same instructions as data: pc, bytes and the decoded operation.
    pub instructions: Vec<LaunchInstruction>,
    /// Index in `bytecodes` of the instruction at the pc.
    pub current: usize,
}

/// One decoded instruction of a [`LaunchResume`].
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LaunchInstruction {
    /// Its pc.
    pub pc: u64,
    /// Its bytes, extension prefixes included.
    pub bytes: Vec<u8>,
    /// The operation and its fields as the decoder holds them, e.g.
    /// `StoreTemp { index: 2, pop: true }`.
    pub op: String,
    /// As in `bytecodes`, literals and special selectors resolved.
    pub text: String,
}

/// Times of a [`LaunchReport`], in microseconds.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LaunchTimings {
    /// Loading the heap.
    pub load: u64,
    /// Wiring the runtime.
    pub wire: u64,
}

impl Engine for DryRun {
    type Output = LaunchReport;
    type Error = std::convert::Infallible;

    fn name(&self) -> &str {
        "dry-run"
    }

    fn run(&mut self, rt: &mut Runtime) -> Result<LaunchReport, Self::Error> {
        let heap = rt.heap();
        let so = rt.special_objects();
        let ct = rt.class_table();
        let ns = rt.new_space();
        let nl = ns.layout();
        let st = rt.stack_zone();
        let sl = st.layout();
        let sem = rt.semaphores();
        let d = rt.dialect();
        let o = rt.old_space();
        let p = rt.resume_point();
        Ok(LaunchReport {
            dialect: d.dialect,
            dialect_evidence: d.clues.iter().map(|c| c.what.clone()).collect(),
            image: LaunchImage {
                format: heap.header().format,
                word_size: heap.word().bytes(),
                placement: heap.placement().name(),
                swizzled: heap.swizzled(),
                fallback: heap.fallback_reason().map(str::to_owned),
            },
            special_objects: LaunchSpecialObjects::of(so),
            class_table: LaunchClassTable {
                pages: ct.pages(),
                classes: ct.classes(),
                name_slot: ct.layout().name_slot,
                this_class_slot: ct.layout().this_class_slot,
            },
            new_space: LaunchNewSpace {
                start: ns.start().get(),
                end: ns.end().get(),
                bytes: nl.total_bytes,
                from: nl.from.name(),
                placed: ns.placed().name(),
                eden_start: ns.eden().start,
                eden_bytes: nl.eden_bytes,
                survivor_bytes: nl.survivor_bytes,
                reserve_bytes: nl.reserve_bytes,
                scavenge_threshold: ns.scavenge_threshold().get(),
            },
            stack_pages: LaunchStackPages {
                count: sl.count,
                from: sl.from.name(),
                page_bytes: sl.page_bytes,
                zone_start: st.start(),
                zone_bytes: sl.zone_bytes,
            },
            external_semaphore_table: LaunchSemaphoreTable {
                size: sem.size(),
                from: sem.size_from().name(),
                objects_array_slots: sem.objects_len(),
            },
            old_space: LaunchOldSpace {
                start: o.start.get(),
                end: o.end.get(),
                headroom: o.headroom,
                free_chunk: o.claimed.map(|c| c.chunk.get()),
                free_chunk_bytes: o.claimed.map_or(0, |c| c.bytes),
                free_bytes: o.free_bytes,
            },
            settings: LaunchSettings {
                floats_little_endian: rt.settings().floats_little_endian,
                floats_converted: rt.floats_converted(),
                preemption_yields: rt.settings().preemption_yields,
                hash_seed: rt.hash_seed().seed,
            },
            resume: LaunchResume {
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
                    .map(|(i, text)| LaunchInstruction {
                        pc: i.pc,
                        bytes: i.bytes.clone(),
                        op: format!("{:?}", i.op),
                        text: text.clone(),
                    })
                    .collect(),
                current: p.current,
            },
            timings_us: LaunchTimings {
                load: heap.timings().total_us,
                wire: rt.timings().total_us,
            },
        })
    }
}
