//! The reference interpreter: runs a wired Spur image through the
//! [`Engine`] trait of `spur-runtime`.
//!
//! Contexts are heap objects at all times (as in the Blue Book and
//! SqueakJS, with no stack frames): the active context's pc and stack
//! pointer live in registers and are written back to the context object
//! whenever the context is exposed (a send, `thisContext`, a primitive).
//! Both bytecode sets are dispatched on the one decoded table of
//! [`spur_runtime::bytecodes::decode_op`]; sends go through a method cache
//! keyed by selector and class index (it can be turned off, for
//! measurements). Primitives that are not implemented fail, so the image's
//! fallback code runs; a run that cannot go on stops with a one-line
//! [`Outcome`] naming the method, the primitive and the bytecode count.
//!
//! Contexts of sends that return without ever being exposed to the image
//! are reused, as SqueakJS does, so eden holds only the contexts the image
//! may still reference.
//!
//! What it runs: the candle image (its three lines, 284 bytecodes), the
//! vm-test image (its benchmark line in `log1.txt`), the Pharo 8 kernel's
//! first start (it saves itself through primitive 97 and quits) and the
//! image that start wrote (`printVersion`, `--version`, `--help`), and
//! codeparadise until it stops for lack of its own plugin (its fallback
//! keeps all it allocates, so it stops out of memory at the growth limit,
//! [`Options::growth_limit`], naming the plugin). Timers wait
//! parked, and signals of the runtime's external semaphore table from other
//! threads wake them. New space is scavenged at the safe point between
//! bytecodes where interrupts are checked, once allocation has passed the
//! scavenge threshold (or gone to old space for want of eden), with the
//! registers as roots (`gc.rs`); old space grows by new segments when
//! tenuring needs room, and the snapshot primitive tenures all of new
//! space through the same allocation. What it leaves to later work: a full
//! (mark-sweep) collection of old space (primitive 130 scavenges only) and
//! ephemeron firing. Processes switch synchronously on
//! wait/signal/resume/suspend/yield, on the timer (Spur has one, primitives
//! 136/242) and on external signals, preempting as the image's
//! `preemptionYields` flag says.

#![forbid(unsafe_code)]

mod external;
mod gc;
mod instances;
mod interp;
mod large_ints;
pub mod mem;
mod misc_plugin;
mod plugins;
mod prims;
mod snapshot;
#[cfg(test)]
mod test_vm;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use spur_runtime::{Engine, Runtime};

pub use interp::{Outcome, StopKind};

/// How a run is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// Stop after this many bytecodes.
    pub max_bytecodes: Option<u64>,
    /// Stop after this much time (checked every few thousand bytecodes).
    pub timeout: Option<Duration>,
    /// Print the first N sends to stderr.
    pub trace_sends: u64,
    /// Use the method cache (on by default; off for measurements).
    pub method_cache: bool,
    /// Reuse the contexts of sends that returned without ever being
    /// exposed to the image (on by default), as SqueakJS does: eden then
    /// holds only the contexts that may still be referenced.
    pub recycle_contexts: bool,
    /// The image's path as the image sees it (primitive 121).
    pub image_path: PathBuf,
    /// The VM's path (attribute 0).
    pub vm_path: PathBuf,
    /// Arguments passed to the image (attributes 2, 3, ...).
    pub args: Vec<String>,
    /// The VM's options as its command line had them (attributes -1, -2,
    /// ...): `--headless` tells Pharo it runs without a display, so that a
    /// command-line handler quits when it is done.
    pub vm_options: Vec<String>,
    /// Write what the image prints to this process's stdout as it happens.
    pub echo: bool,
    /// Let the file plugin open and delete real files, and the snapshot
    /// primitive write the image at `image_path` (off: those primitives
    /// fail, for runs of untrusted images such as the sweeps').
    pub allow_files: bool,
    /// Wait in real time for timers (Delays) when nothing else can run; off:
    /// a pending timer fires at once (for bounded runs of untrusted images).
    pub real_time_waits: bool,
    /// The most bytes old space may grow by during the run
    /// ([`DEFAULT_GROWTH_LIMIT`] unless set; `None`: as much as the
    /// machine gives). There is no full collection of old space, so an
    /// image that keeps everything it allocates would otherwise take all
    /// of memory: past the limit the run stops, out of memory, with a line
    /// saying so.
    pub growth_limit: Option<u64>,
}

/// Old space grows by at most this much during a run unless
/// [`Options::growth_limit`] says otherwise: 512 MiB.
pub const DEFAULT_GROWTH_LIMIT: u64 = 512 << 20;

impl Default for Options {
    fn default() -> Self {
        Options {
            max_bytecodes: None,
            timeout: None,
            trace_sends: 0,
            method_cache: true,
            recycle_contexts: true,
            image_path: PathBuf::from("image.image"),
            vm_path: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("vm-loader")),
            args: Vec::new(),
            vm_options: Vec::new(),
            echo: false,
            allow_files: true,
            real_time_waits: true,
            growth_limit: Some(DEFAULT_GROWTH_LIMIT),
        }
    }
}

/// What a run did. With the `serde` feature it serialises as an object of
/// these fields, by these names (`vm-loader launch --json` flattens it into
/// the run's JSON).
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Stats {
    /// Bytecodes executed.
    pub bytecodes: u64,
    /// Methods run through a send (bytecode sends, `perform:` and
    /// `executeMethod:`), whether a primitive answered or a context ran.
    pub sends: u64,
    /// Primitives run (numbered, named and quick).
    pub primitive_calls: u64,
    /// Primitives that failed, so their method's fallback code ran.
    pub primitive_failures: u64,
    /// Objects the image allocated during the run.
    pub objects_allocated: u64,
    /// Bytes of those objects, headers included.
    pub bytes_allocated: u64,
    /// Sends whose method the method cache held.
    pub method_cache_hits: u64,
    /// Sends that looked the method up in the class's method dictionaries.
    pub method_cache_misses: u64,
    /// Contexts reused instead of allocated.
    pub contexts_reused: u64,
    /// Wall-clock time of the run, in microseconds.
    pub run_us: u64,
    /// Snapshots written (primitive 97).
    pub snapshots: u64,
    /// Their time inside the run: tenuring, writing, syncing.
    pub snapshot_us: u64,
    /// Objects and bytes moved from new space into old space (by
    /// scavenges and by the snapshot primitive's tenuring).
    pub tenured_objects: u64,
    /// Bytes of the objects moved from new space into old space.
    pub tenured_bytes: u64,
    /// Scavenges of new space.
    pub scavenges: u64,
    /// Their time, refreshing the interpreter's caches included.
    pub scavenge_us: u64,
    /// Bytes scavenges copied into future space, over all of them.
    pub survivor_bytes: u64,
    /// Weak slots scavenges set to nil.
    pub weak_slots_cleared: u64,
    /// Objects allocated straight in old space because eden could not hold them.
    pub old_direct_objects: u64,
    /// Segments old space grew by for allocation.
    pub old_segments_added: u64,
    /// Bytes old space grew by for allocation: headroom claimed and new segments.
    pub old_bytes_added: u64,
    /// Process switches (a transfer from one process to another).
    pub process_switches: u64,
    /// Bytes old space's segments grew by during the run, beyond what
    /// wiring claimed: 0 while the headroom holds what is tenured.
    pub old_space_growth: u64,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// How the run ended.
    pub outcome: Outcome,
    /// What the run did.
    pub stats: Stats,
    /// Everything the image wrote to the console (stdout and stderr
    /// handles, and the console plugin), in order.
    pub output: Vec<u8>,
}

impl RunReport {
    /// The process exit code for this run: the image's quit code, or 1
    /// when the run stopped.
    pub fn exit_code(&self) -> i32 {
        match self.outcome {
            Outcome::Quit(c) => c,
            _ => 1,
        }
    }
    /// The output as text (lossy).
    pub fn output_text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    /// The image's active context (through its active process) is not a
    /// context the interpreter can resume.
    #[error("the resume context {context:#x} cannot be run: {why}")]
    BadResume {
        /// The context's oop (its address in this process).
        context: u64,
        /// What is wrong with it.
        why: String,
    },
}

/// Bytes of old space's segments.
fn old_space_bytes(runtime: &Runtime) -> u64 {
    runtime.heap().segments().iter().map(|s| s.size).sum()
}

/// The reference interpreter as an [`Engine`].
#[derive(Debug, Clone, Default)]
pub struct Interpreter {
    /// How runs of this interpreter behave.
    pub options: Options,
}

impl Interpreter {
    /// An interpreter that runs with `options`.
    pub fn new(options: Options) -> Self {
        Interpreter { options }
    }
}

impl Engine for Interpreter {
    type Output = RunReport;
    type Error = InterpError;

    fn name(&self) -> &str {
        "spur-interp"
    }

    fn run(&mut self, runtime: &mut Runtime) -> Result<RunReport, InterpError> {
        let t0 = std::time::Instant::now();
        let old_before = old_space_bytes(runtime);
        let gc_before = runtime.memory().gc_stats();
        let mut vm = interp::Vm::new(runtime, &self.options)?;
        let outcome = vm.run();
        let _ = std::io::stdout().flush();
        let mut stats = vm.stats.clone();
        let a = vm.m.allocated();
        stats.objects_allocated = a.objects;
        stats.bytes_allocated = a.bytes;
        let g = vm.m.gc_stats();
        stats.tenured_objects = g.tenured_objects - gc_before.tenured_objects;
        stats.tenured_bytes = g.tenured_bytes - gc_before.tenured_bytes;
        stats.scavenges = g.scavenges - gc_before.scavenges;
        stats.survivor_bytes = g.survivor_bytes - gc_before.survivor_bytes;
        stats.weak_slots_cleared = g.weak_slots_cleared - gc_before.weak_slots_cleared;
        stats.old_direct_objects = g.old_direct_objects - gc_before.old_direct_objects;
        stats.old_segments_added = g.segments_added - gc_before.segments_added;
        stats.old_bytes_added = g.bytes_added - gc_before.bytes_added;
        stats.run_us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
        let output = std::mem::take(&mut vm.output);
        vm.signals.wake_on_signal(None);
        drop(vm);
        stats.old_space_growth = old_space_bytes(runtime).saturating_sub(old_before);
        Ok(RunReport {
            outcome,
            stats,
            output,
        })
    }
}
