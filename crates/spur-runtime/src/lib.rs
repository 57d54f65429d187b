//! The runtime stub: turns a loaded Spur heap into what an interpreter
//! needs to resume it, and says where it resumes.
//!
//! [`Runtime::wire`] takes a [`LoadedHeap`](spur_loader::LoadedHeap) and
//! builds, in this order: the header's settings ([`settings`], §1.4); boxed
//! floats in the host's word order when the image's differs (§1.2); the
//! headroom turned into free space at the end of old space (§5.3); the
//! special objects array with named accessors in both numberings
//! ([`special_objects`], §4.3) and the compact-class checks of the VMs; the
//! class table with class names for every layout ([`class_table`], §4.2);
//! the dialect, from evidence in the heap ([`dialect`]); the external
//! semaphore table ([`semaphores`], §4.4); the resume point: process,
//! context, method, receiver, pc and the decoded bytecodes around it
//! ([`resume`], [`bytecodes`]); and new space and the stack zone, placed in
//! memory reserved through the memory crate ([`new_space`], [`stack`],
//! §4.4). An interpreter implements [`Engine`] and is handed the result;
//! [`DryRun`] is the engine of `vm-loader launch`. [`stats`] counts
//! instances per class.
//!
//! What it guarantees:
//! - no `unsafe` here: memory comes from `spur-mem` reservations, owned by
//!   the runtime and released when it is dropped; every object of every
//!   space is read and changed through one API, [`ObjectMemory`]
//!   ([`memory`]), which indexes the spaces' byte slices with bounds checks;
//! - wiring reads the class table and a handful of objects; it walks the
//!   heap only when boxed floats must be converted;
//! - a heap that is not fit to resume (broken special objects or class
//!   table, a compact class out of place, no resumable context, a pc
//!   outside its method) and bad overrides (`0` stack pages, an eden too
//!   small for its reserve) are [`RuntimeError`]s naming the address or the
//!   numbers involved, and nothing is left mapped;
//! - after wiring the heap still passes `spur_loader::verify`, and a
//!   snapshot of it is a valid image (with one large free chunk at the end).
//!
//! What it leaves to the caller: executing bytecodes, garbage collection,
//! primitives, and writing snapshots. Stack pages are reserved and
//! committed but never touched: an interpreter lays out its own frames in
//! them. New objects are allocated in eden through [`ObjectMemory`]; a
//! full eden is an error the interpreter (its scavenger) answers.
//!
//! Section numbers (§) refer to the format notes, `docs/format.md`.

#![forbid(unsafe_code)]

pub mod bytecodes;
pub mod class_table;
pub mod dialect;
pub mod engine;
pub mod error;
pub mod memory;
pub mod method;
pub mod new_space;
pub mod place;
pub mod resume;
pub mod runtime;
pub mod semaphores;
pub mod settings;
pub mod special_objects;
pub mod stack;
pub mod stats;

pub use bytecodes::{BytecodeSet, Instruction, Op};
pub use class_table::ClassTable;
pub use dialect::{Dialect, DialectReport};
pub use engine::{boot, launch, BootError, DryRun, Engine, LaunchReport, LaunchSpecialObjects};
pub use error::RuntimeError;
pub use memory::{
    AllocStats, ClaimedHeadroom, MemoryError, ObjectMemory, Objects, Oop, ReadView, Space,
};
pub use new_space::{NewSpace, NewSpaceLayout};
pub use resume::ResumePoint;
pub use runtime::{OldSpace, Runtime, RuntimeOptions, WireTimings};
pub use semaphores::{ExternalSemaphoreTable, Signaller};
pub use settings::{HashSeed, ImageSettings};
pub use special_objects::SpecialObjects;
pub use stack::{StackLayout, StackZone};
pub use stats::{
    class_histogram, class_histogram_in_parts, class_histogram_with, Histogram, MIN_PART_BYTES,
};
