//! The integer conversions the loader and the runtime rely on, each named
//! and documented once instead of an `as` at every use.
//!
//! The crates build for 64-bit hosts only (a compile error says so
//! elsewhere): heaps, reservations and file offsets are `u64`, and on a
//! 64-bit host every such value fits a `usize`.

use std::time::Duration;

#[cfg(not(target_pointer_width = "64"))]
compile_error!(
    "spur-loader needs a 64-bit host: heap offsets and sizes are u64 and index memory as usize"
);

/// A byte count or offset (`u64`) as a `usize`, to index memory: exact on
/// the 64-bit hosts this crate builds for.
#[inline(always)]
#[allow(clippy::cast_possible_truncation)]
pub const fn usize_of(v: u64) -> usize {
    v as usize
}

/// A `usize` (a slice length or index) as a `u64`: exact on every host Rust
/// supports, whose pointers are at most 64 bits wide.
#[inline(always)]
pub const fn u64_of(v: usize) -> u64 {
    v as u64
}

/// Whole microseconds of a duration, saturating at `u64::MAX` (585 000 years).
pub trait Micros {
    /// The whole microseconds in `self`, or `u64::MAX` past that.
    fn micros(self) -> u64;
}

impl Micros for Duration {
    #[inline]
    fn micros(self) -> u64 {
        u64::try_from(self.as_micros()).unwrap_or(u64::MAX)
    }
}
