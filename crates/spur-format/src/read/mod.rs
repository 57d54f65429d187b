//! Readers: pure code over byte slices.

pub mod header;
pub mod segment;
pub mod version;
pub mod walk;
