//! The embedding API: an interpreter implements [`Engine`] and is handed a
//! wired [`Runtime`]. The command line's `launch` uses the same API with
//! [`DryRun`], which reports where the image would resume and stops.

use spur_format::NewAddr;
use spur_loader::{ImageSource, LoadError, LoadOptions};

use crate::dialect::Dialect;
use crate::error::RuntimeError;
use crate::memory::Oop;
use crate::resume::ResumePoint;
use crate::runtime::{OldSpace, Runtime, RuntimeOptions, WireTimings};
use crate::special_objects::index;

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
    #[error(transparent)]
    Load(#[from] LoadError),
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

/// What [`DryRun`] reports: plain data, detached from the runtime.
#[derive(Debug, Clone)]
pub struct LaunchReport {
    pub dialect: Dialect,
    pub dialect_clues: Vec<String>,
    pub word_bytes: u64,
    pub format: u32,
    pub placement: &'static str,
    pub swizzled: bool,
    pub nil: NewAddr,
    pub false_object: NewAddr,
    pub true_object: NewAddr,
    pub special_objects_array: NewAddr,
    pub special_objects_len: usize,
    /// Special objects 3 and 38 as stored (nil's address when nil).
    pub scheduler_association: Oop,
    pub external_objects_array: Oop,
    pub class_table_pages: usize,
    pub classes: u64,
    pub name_slot: u64,
    pub this_class_slot: u64,
    pub new_space_start: NewAddr,
    pub new_space_end: NewAddr,
    pub new_space_bytes: u64,
    pub new_space_from: &'static str,
    pub new_space_placed: &'static str,
    pub eden_start: u64,
    pub eden_bytes: u64,
    pub survivor_bytes: u64,
    pub reserve_bytes: u64,
    pub scavenge_threshold: NewAddr,
    pub stack_pages: u64,
    pub stack_pages_from: &'static str,
    pub stack_page_bytes: u64,
    pub stack_zone_start: u64,
    pub stack_zone_bytes: u64,
    pub semaphore_table_size: usize,
    pub semaphore_table_from: &'static str,
    pub external_objects_len: u64,
    pub old_space: OldSpace,
    pub floats_little_endian: bool,
    pub floats_converted: Option<u64>,
    pub preemption_yields: bool,
    pub hash_seed: u32,
    pub resume: ResumePoint,
    pub load_us: u64,
    pub wire: WireTimings,
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
        Ok(LaunchReport {
            dialect: d.dialect,
            dialect_clues: d.clues.iter().map(|c| c.what.clone()).collect(),
            word_bytes: heap.word().bytes(),
            format: heap.header().format,
            placement: heap.placement().name(),
            swizzled: heap.swizzled(),
            nil: so.nil(),
            false_object: so.false_object(),
            true_object: so.true_object(),
            special_objects_array: so.addr(),
            special_objects_len: so.len(),
            scheduler_association: so.at(index::SCHEDULER_ASSOCIATION).unwrap_or(so.nil_oop()),
            external_objects_array: so.at(index::EXTERNAL_OBJECTS_ARRAY).unwrap_or(so.nil_oop()),
            class_table_pages: ct.pages(),
            classes: ct.classes(),
            name_slot: ct.layout().name_slot,
            this_class_slot: ct.layout().this_class_slot,
            new_space_start: ns.start(),
            new_space_end: ns.end(),
            new_space_bytes: nl.total_bytes,
            new_space_from: nl.from.name(),
            new_space_placed: ns.placed().name(),
            eden_start: ns.eden().start,
            eden_bytes: nl.eden_bytes,
            survivor_bytes: nl.survivor_bytes,
            reserve_bytes: nl.reserve_bytes,
            scavenge_threshold: ns.scavenge_threshold(),
            stack_pages: sl.count,
            stack_pages_from: sl.from.name(),
            stack_page_bytes: sl.page_bytes,
            stack_zone_start: st.start(),
            stack_zone_bytes: sl.zone_bytes,
            semaphore_table_size: sem.size(),
            semaphore_table_from: sem.size_from().name(),
            external_objects_len: sem.objects_len(),
            old_space: *rt.old_space(),
            floats_little_endian: rt.settings().floats_little_endian,
            floats_converted: rt.floats_converted(),
            preemption_yields: rt.settings().preemption_yields,
            hash_seed: rt.hash_seed().seed,
            resume: rt.resume_point().clone(),
            load_us: heap.timings().total_us,
            wire: rt.timings(),
        })
    }
}
