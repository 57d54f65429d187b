//! Errors of the format crate: each carries the numbers that explain it.

use crate::read::version::ByteOrder;

/// What is wrong with an image's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The file ends before a whole header.
    #[error("file is {found} byte{} long, too short for an image header ({needed} bytes needed)", if *found == 1 { "" } else { "s" })]
    TooShort {
        /// Bytes a header needs.
        needed: u64,
        /// Bytes the file holds.
        found: u64,
    },

    /// A pre-Spur (V3) image, which no Spur VM loads (§1.1).
    #[error("format {number} is a pre-Spur V3 image ({bits}-bit, {closures}, {order}-endian, header at offset {offset}); only Spur formats 6521, 7033, 68021 and 68533 are loaded", bits = if *word64 { 64 } else { 32 }, closures = if *closures { "closures" } else { "no closures" }, order = order.name())]
    PreSpur {
        /// The format number.
        number: u32,
        /// A 64-bit image.
        word64: bool,
        /// The format has closures.
        closures: bool,
        /// The byte order the number was found in.
        order: ByteOrder,
        /// Where the format word is (0, or 512 after a prefix).
        offset: u64,
    },

    /// The first 64-bit Spur format, 68019 (§1.1).
    #[error("format {number} is the obsolete first 64-bit Spur format (old SmallFloat tag); re-save the image with a current VM")]
    ObsoleteSpur {
        /// The format number.
        number: u32,
    },

    /// A Spur format number found byte-swapped: a big-endian image (§1.2).
    #[error("format {number} found byte-swapped at offset {offset}: this is a big-endian Spur image, and only little-endian images are loaded (every current VM writes little-endian)")]
    ByteSwapped {
        /// The format number, once swapped.
        number: u32,
        /// Where the format word is.
        offset: u64,
    },

    /// No image format at offset 0 or 512.
    #[error("not a Smalltalk image: format word {at0:#010x} at offset 0{at512} is no known image format")]
    UnknownFormat {
        /// The word at offset 0.
        at0: u32,
        /// The word at offset 512, described for the message (empty when the file is shorter).
        at512: String,
    },

    /// imageHeaderSize cannot be a header's size (§1.3).
    #[error("header field imageHeaderSize is {found} at offset {offset}; it must be a multiple of 8 between {min} and {max}")]
    BadHeaderSize {
        /// The size the header gives.
        found: u64,
        /// The smallest size that holds every field.
        min: u64,
        /// The largest size accepted.
        max: u64,
        /// File offset of the field.
        offset: u64,
    },

    /// dataSize claims more bytes than the file holds after the header.
    #[error("header field dataSize says {data_size} bytes of heap from file offset {data_offset}, but the file holds only {available} bytes there")]
    DataBeyondFile {
        /// The header's dataSize.
        data_size: u64,
        /// File offset of the heap data.
        data_offset: u64,
        /// Bytes the file holds from there.
        available: u64,
    },

    /// dataSize cannot be a heap's size.
    #[error("header field dataSize is {data_size}: {why}")]
    BadDataSize {
        /// The header's dataSize.
        data_size: u64,
        /// What is wrong with it.
        why: &'static str,
    },

    /// firstSegSize cannot be segment 0's size (§8).
    #[error("header field firstSegSize is {size}, but it must be a multiple of 8, at least 32 and at most dataSize ({data_size})")]
    BadFirstSegmentSize {
        /// The header's firstSegSize.
        size: u64,
        /// The header's dataSize.
        data_size: u64,
    },

    /// oldBaseAddr cannot be where a heap started.
    #[error("header field oldBaseAddr is {base:#x}: {why}")]
    BadBaseAddress {
        /// The header's oldBaseAddr.
        base: u64,
        /// What is wrong with it.
        why: &'static str,
    },

    /// The special objects oop points outside every segment.
    #[error("header field specialObjectsOop is {oop:#x}, which lies in no segment of the heap")]
    SpecialObjectsOutside {
        /// The header's specialObjectsOop.
        oop: u64,
    },

    /// A segment's file bridge is neither form of §2.2.
    #[error("segment {segment} bridge at file offset {file_offset}: word {word:#018x} is neither a short bridge header nor an overflow word")]
    BadBridge {
        /// Index of the segment the bridge ends.
        segment: usize,
        /// File offset of the bridge.
        file_offset: u64,
        /// The bridge's first word.
        word: u64,
    },

    /// A segment claims more bytes than dataSize leaves.
    #[error("segment {segment} at file offset {file_offset} claims {size} bytes, but only {remaining} bytes of dataSize remain")]
    SegmentPastData {
        /// Index of the segment.
        segment: usize,
        /// File offset where it starts.
        file_offset: u64,
        /// The size its predecessor's bridge (or the header) gives.
        size: u64,
        /// Bytes of dataSize left there.
        remaining: u64,
    },

    /// A segment size that cannot hold an object and a bridge, or is not a multiple of 8.
    #[error("segment {segment} at file offset {file_offset} has size {size}: a segment must be a multiple of 8 and hold at least one object and its bridge (32 bytes)")]
    BadSegmentSize {
        /// Index of the segment.
        segment: usize,
        /// File offset where it starts.
        file_offset: u64,
        /// The size given for it.
        size: u64,
    },

    /// A segment would reach past the word size's address limit.
    #[error("segment {segment} would start at {start:#x} and end at {end:#x}, beyond the {limit:#x} address limit of this word size")]
    SegmentAddressOverflow {
        /// Index of the segment.
        segment: usize,
        /// Where it would start.
        start: u64,
        /// Where it would end.
        end: u64,
        /// The address limit.
        limit: u64,
    },

    /// The last bridge says no segment follows, but dataSize goes on.
    #[error("the segments end at data offset {end}, but the last bridge is followed by {left} more bytes of dataSize")]
    DataAfterLastSegment {
        /// Data offset where the segments end.
        end: u64,
        /// Bytes of dataSize after that.
        left: u64,
    },

    /// The object walk of §3.6 met something that is not an object.
    #[error("segment {segment}: object at {addr:#x} (segment offset {offset}) {what}")]
    BadObject {
        /// Index of the segment.
        segment: usize,
        /// Offset of the object in the segment.
        offset: u64,
        /// Its address.
        addr: u64,
        /// What is wrong with it.
        what: String,
    },

    /// A segment of a heap that cannot be written as an image (§2.2).
    #[error("cannot write segment {segment} ({size} bytes at {start:#x}) into an image: {why}")]
    BadSnapshotSegment {
        /// Index of the segment.
        segment: usize,
        /// Its start.
        start: u64,
        /// Its size.
        size: u64,
        /// What is wrong with it.
        why: &'static str,
    },

    /// A snapshot of a heap whose segments are all empty.
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
