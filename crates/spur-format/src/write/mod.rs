//! Writers: the inverse of the readers.

pub mod composed;
pub mod header;
pub mod segment;
