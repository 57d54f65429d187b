//! Loads Spur images into live memory and proves the heap intact.
//!
//! The pipeline ([`load`]): parse the header and follow the bridges
//! ([`read_layout`]); reserve address space ([`placement`]) at the image's old addresses,
//! each segment at its own old start ([`PlacementRequest::OldBase`]), and
//! only when a range is taken, or the caller asks, reserve elsewhere and
//! coalesce; stream each segment from the file straight into its final place
//! (the heap is never held twice); then either repair the bridges in memory
//! (nothing moved, no pointer changes) or swizzle every pointer by its
//! segment's delta, chunk by chunk while the bytes are still in cache.
//!
//! What it guarantees: a [`LoadedHeap`] owns every mapping it uses and
//! releases them on drop; relocation only writes inside the objects of the
//! heap, whatever the file says; bad input is a [`LoadError`] naming the
//! field, segment or offset. [`verify`] checks the loaded heap as the VMs'
//! own integrity checks do (§8 of `docs/format.md`) and reports findings
//! rather than failing on the first.
//!
//! [`snapshot`] writes a loaded heap back as a single-file image (§2.2, §7),
//! in place or relocated, streamed from memory into a temporary file that
//! replaces the target only once it is complete and synced, or from a forked
//! child while the caller goes on.
//!
//! [`files`] says what an input or output path is before anything is read
//! or written: inputs are opened without blocking and must be regular
//! files; an output is replaced only when it is a regular file (or, for a
//! composed image, a folder holding one), a symbolic link being written
//! through; temporaries are locked while their writer lives.
//!
//! A loaded heap offers its caller raw, bounds-checked access only: the
//! bytes of each segment and of perm space, u64 reads and writes at a
//! [`NewAddr`](spur_format::NewAddr), and growing the last segment into the
//! reserved headroom ([`LoadedHeap::grow_last_segment`]).
//!
//! What it leaves to its caller: what objects mean to a running VM (slot
//! stores, allocation, free lists, the write barrier: `spur-runtime`'s
//! object memory), new space, stack pages and everything else a running VM
//! needs beyond old space; and, when it asks for a composed
//! image's segment files to be mapped instead of read
//! ([`LoadOptions::map_files`]), the promise that nobody writes to or
//! truncates them while the heap lives.
//!
//! Section numbers (§) refer to the format notes, `docs/format.md`.

#![forbid(unsafe_code)]

pub mod composed_write;
pub mod conv;
pub mod error;
pub mod files;
pub mod heap;
pub mod load;
pub mod parallel;
pub mod placement;
pub mod relocate;
pub mod snapshot;
pub mod source;
pub mod verify;

pub use composed_write::{write_composed, ComposedWritten};
pub use error::LoadError;
pub use heap::{HeapAccessError, HeapSegment, LoadedHeap, Placement, Timings};
pub use load::{load, load_composed, load_path, read_layout, read_layout_path, LoadOptions};
pub use parallel::Threads;
pub use placement::{initial_headroom, reserve_below_4g, PlacementRequest};
pub use snapshot::{
    read_prefix, read_trailer, remove_stale_temps, snapshot_in_background,
    snapshot_in_background_by, snapshot_to_path, trailing_len, write_atomically, BackgroundReport,
    BackgroundSnapshot, BackgroundWriter, SnapshotError, SnapshotOptions, SnapshotPlan,
    SnapshotReport,
};
pub use source::{ComposedSource, FileSource, ImageSource, SegmentReader};
pub use spur_mem::{Backing, FilesUnchanged};
pub use verify::{
    verify, verify_in_windows, verify_in_windows_of, verify_with, Finding, FindingKind, LiveRecord,
    Report, BITMAP_UP_TO, WINDOW_BYTES,
};
