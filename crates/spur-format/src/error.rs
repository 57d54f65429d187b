//! Errors of the format crate: each carries the numbers that explain it.

use crate::read::version::ByteOrder;

/// What is wrong with an image's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("file is {found} bytes long, too short for an image header ({needed} bytes needed)")]
    TooShort { needed: u64, found: u64 },

    #[error("format {number} is a pre-Spur V3 image ({bits}-bit, {closures}, {order}-endian, header at offset {offset}); only Spur formats 6521, 7033, 68021 and 68533 are loaded", bits = if *word64 { 64 } else { 32 }, closures = if *closures { "closures" } else { "no closures" }, order = order.name())]
    PreSpur {
        number: u32,
        word64: bool,
        closures: bool,
        order: ByteOrder,
        offset: u64,
    },

    #[error("format {number} is the obsolete first 64-bit Spur format (old SmallFloat tag); re-save the image with a current VM")]
    ObsoleteSpur { number: u32 },

    #[error("format {number} found byte-swapped at offset {offset}: this is a big-endian Spur image, and only little-endian images are loaded (every current VM writes little-endian)")]
    ByteSwapped { number: u32, offset: u64 },

    #[error("not a Smalltalk image: format word {at0:#010x} at offset 0{at512} is no known image format")]
    UnknownFormat { at0: u32, at512: String },

    #[error("header field imageHeaderSize is {found} at offset {offset}; it must be a multiple of 8 between {min} and {max}")]
    BadHeaderSize {
        found: u64,
        min: u64,
        max: u64,
        offset: u64,
    },

    #[error("header field dataSize says {data_size} bytes of heap from file offset {data_offset}, but the file holds only {available} bytes there")]
    DataBeyondFile {
        data_size: u64,
        data_offset: u64,
        available: u64,
    },

    #[error("header field dataSize is {data_size}: {why}")]
    BadDataSize { data_size: u64, why: &'static str },

    #[error("header field firstSegSize is {size}, but it must be a multiple of 8, at least 32 and at most dataSize ({data_size})")]
    BadFirstSegmentSize { size: u64, data_size: u64 },

    #[error("header field oldBaseAddr is {base:#x}: {why}")]
    BadBaseAddress { base: u64, why: &'static str },

    #[error("header field specialObjectsOop is {oop:#x}, which lies in no segment of the heap")]
    SpecialObjectsOutside { oop: u64 },

    #[error("segment {segment} bridge at file offset {file_offset}: word {word:#018x} is neither a short bridge header nor an overflow word")]
    BadBridge {
        segment: usize,
        file_offset: u64,
        word: u64,
    },

    #[error("segment {segment} at file offset {file_offset} claims {size} bytes, but only {remaining} bytes of dataSize remain")]
    SegmentPastData {
        segment: usize,
        file_offset: u64,
        size: u64,
        remaining: u64,
    },

    #[error("segment {segment} at file offset {file_offset} has size {size}: a segment must be a multiple of 8 and hold at least one object and its bridge (32 bytes)")]
    BadSegmentSize {
        segment: usize,
        file_offset: u64,
        size: u64,
    },

    #[error("segment {segment} would start at {start:#x} and end at {end:#x}, beyond the {limit:#x} address limit of this word size")]
    SegmentAddressOverflow {
        segment: usize,
        start: u64,
        end: u64,
        limit: u64,
    },

    #[error("the segments end at data offset {end}, but the last bridge is followed by {left} more bytes of dataSize")]
    DataAfterLastSegment { end: u64, left: u64 },

    #[error("segment {segment}: object at {addr:#x} (segment offset {offset}) {what}")]
    BadObject {
        segment: usize,
        offset: u64,
        addr: u64,
        what: String,
    },

    #[error("cannot write segment {segment} ({size} bytes at {start:#x}) into an image: {why}")]
    BadSnapshotSegment {
        segment: usize,
        start: u64,
        size: u64,
        why: &'static str,
    },

    #[error("there is nothing to write: every segment is empty")]
    NothingToWrite,
}

/// Result alias of the format crate.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// Shows an error and its causes on one line, `outer: inner: ...`.
///
/// Every error of the workspace says only its own part and reports its cause
/// through `source()`, so a plain `{e}` shows the outermost part alone; this
/// is for the places that keep an error as text (a log line, a finding).
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading a.image")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_chain_says_each_part_once() {
        let e = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(e.to_string(), "reading a.image");
        assert_eq!(Chain(&e).to_string(), "reading a.image: disk on fire");
    }
}
