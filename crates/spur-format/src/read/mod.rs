//! Readers: pure code over byte slices.

pub mod composed;
pub mod header;
pub mod segment;
pub mod ston;
pub mod version;
pub mod walk;
