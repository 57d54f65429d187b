//! The Spur image format, as pure code over byte slices.
//!
//! This crate knows what the bytes of a Spur image mean: the file header and
//! format numbers, object headers, segments and their bridges, free chunks,
//! and how to walk a segment object by object. It never touches memory it was
//! not handed as a slice and contains no `unsafe` code; mapping and placing a
//! heap is the memory crate's job, and deciding where it goes is the loader's.
//!
//! What it guarantees: every size, count and address it reads is checked
//! before it is used, and a bad one is a [`FormatError`] naming the field, the
//! segment or the offset. What it leaves to the caller: where the heap lives,
//! and the meaning of objects beyond their headers (classes, methods).
//!
//! Section numbers (§) refer to the project's format notes, `docs/format.md`.
//! Layout follows them: [`raw`] holds every constant, [`read`] the readers and
//! [`write`] the writers.

#![forbid(unsafe_code)]

// Offsets and lengths read as u64 index slices through `layout::to_usize`,
// which is exact only where usize is 64 bits wide.
#[cfg(not(target_pointer_width = "64"))]
compile_error!("spur-format needs a 64-bit target (usize of 64 bits)");

pub mod addr;
pub mod error;
pub mod layout;
pub mod objheader;
pub mod raw;
pub mod read;
pub mod write;

pub use addr::{NewAddr, OldAddr, Swizzle};
pub use error::FormatError;
pub use layout::{Layout, WordSize, L32, L64};
pub use objheader::ObjHeader;
pub use read::header::ImageHeader;
pub use read::segment::{FileBridge, FileSegment, SegmentTable};
pub use read::version::{ByteOrder, Version};
pub use read::walk::{Obj, Walk};
pub use write::header::HeaderOverrides;
pub use write::segment::{FileLayout, PlannedSegment};
