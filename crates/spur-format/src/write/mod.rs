//! Writers: the inverse of the readers.

pub mod header;
pub mod segment;
