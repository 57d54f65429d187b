//! Segments and their bridges as a single-file image stores them (§2.2),
//! read back (the encoder is in `write::segment`), and the in-memory repair
//! of a bridge for a segment kept at its own address (§2.5).

use crate::addr::OldAddr;
use crate::error::{FormatError, Result};
use crate::layout::{set_u64_at, to_usize, u64_at, WordSize};
use crate::objheader::{is_overflow_word, ObjHeader};
use crate::raw::*;
use crate::read::header::ImageHeader;

/// One segment of a single-file image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSegment {
    /// Index of the segment, from 0.
    pub index: usize,
    /// Where the segment started when the image was saved.
    pub old_start: OldAddr,
    /// Bytes in the file, the trailing 16-byte bridge included.
    pub size: u64,
    /// File offset of the segment's first byte.
    pub file_offset: u64,
    /// Bytes between this segment's end and the next one's start.
    pub gap_after: u64,
}

impl FileSegment {
    /// One past the segment's last byte, at its old address.
    pub const fn old_end(&self) -> OldAddr {
        OldAddr::new(self.old_start.get() + self.size)
    }
    /// Does the old address `a` fall in the segment's objects (bridge excluded)?
    pub const fn holds(&self, a: OldAddr) -> bool {
        a.get() >= self.old_start.get() && a.get() < self.old_start.get() + self.size - BRIDGE_BYTES
    }
}

/// A bridge as the file stores it: where the next segment starts and how big it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileBridge {
    /// Gap between this segment's end and the next segment's start.
    pub gap: u64,
    /// Size of the next segment; 0 after the last.
    pub next_size: u64,
}

impl FileBridge {
    /// Decodes the 16 bytes at the end of a segment in the file.
    pub fn decode(
        word: WordSize,
        bytes: &[u8; 16],
        segment: usize,
        file_offset: u64,
    ) -> Result<Self> {
        let w0 = u64_at(bytes, 0);
        let w1 = u64_at(bytes, 8);
        let gap = if is_overflow_word(w0) {
            word.overflow_slots(w0)
                .checked_mul(word.bytes())
                .filter(|g| g % 8 == 0)
                .ok_or(FormatError::BadBridge {
                    segment,
                    file_offset,
                    word: w0,
                })?
        } else {
            let h = ObjHeader(w0);
            if !h.is_bridge() || h.raw_num_slots() != 0 {
                return Err(FormatError::BadBridge {
                    segment,
                    file_offset,
                    word: w0,
                });
            }
            0
        };
        Ok(FileBridge { gap, next_size: w1 })
    }
}

/// Turns the file form of a segment's trailing bridge into the in-memory form,
/// for a segment placed at its own old start with `gap` bytes to the next one
/// (§2.5). `segment` is the whole segment, bridge included.
pub fn repair_bridge_in_memory(word: WordSize, segment: &mut [u8], gap: u64) {
    let at = segment.len() - to_usize(BRIDGE_BYTES);
    if gap == 0 {
        set_u64_at(segment, at, ObjHeader::short_bridge(word).0);
        set_u64_at(segment, at + 8, 0);
    } else {
        set_u64_at(
            segment,
            at,
            crate::objheader::overflow_word(gap / word.bytes()),
        );
        set_u64_at(segment, at + 8, ObjHeader::long_bridge(word).0);
    }
}

/// The segments of a single-file image, found by following the bridges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentTable {
    /// The segments, in file (and address) order.
    pub segments: Vec<FileSegment>,
}

impl SegmentTable {
    /// Follows the bridges from `firstSegSize` to the end of the data.
    ///
    /// `read_bridge` is given the file offset of a segment's last 16 bytes and
    /// returns them; it may read a file (`pread`) or slice a buffer. Every size
    /// and address is checked before the next bridge is read, so a lying file
    /// ends in an error, never in a read past the data.
    pub fn read<E: From<FormatError>>(
        header: &ImageHeader,
        mut read_bridge: impl FnMut(u64) -> Result<[u8; 16], E>,
    ) -> Result<SegmentTable, E> {
        let word = header.word;
        let data_offset = header.data_offset();
        let mut segments = Vec::new();
        let mut consumed = 0u64;
        let mut size = header.first_segment_size;
        let mut start = header.old_base.get();
        loop {
            let index = segments.len();
            let file_offset = data_offset + consumed;
            let remaining = header.data_size - consumed;
            if size > remaining {
                return Err(FormatError::SegmentPastData {
                    segment: index,
                    file_offset,
                    size,
                    remaining,
                }
                .into());
            }
            if !size.is_multiple_of(8) || size < 32 {
                return Err(FormatError::BadSegmentSize {
                    segment: index,
                    file_offset,
                    size,
                }
                .into());
            }
            let end = start.saturating_add(size);
            if end > word.address_limit() {
                return Err(FormatError::SegmentAddressOverflow {
                    segment: index,
                    start,
                    end,
                    limit: word.address_limit(),
                }
                .into());
            }
            let bridge_offset = file_offset + size - BRIDGE_BYTES;
            let bridge =
                FileBridge::decode(word, &read_bridge(bridge_offset)?, index, bridge_offset)?;
            consumed += size;
            let last = bridge.next_size == 0;
            segments.push(FileSegment {
                index,
                old_start: OldAddr::new(start),
                size,
                file_offset,
                gap_after: if last { 0 } else { bridge.gap },
            });
            if last {
                if consumed != header.data_size {
                    return Err(FormatError::DataAfterLastSegment {
                        end: consumed,
                        left: header.data_size - consumed,
                    }
                    .into());
                }
                break;
            }
            start = end.saturating_add(bridge.gap);
            size = bridge.next_size;
        }
        let table = SegmentTable { segments };
        let so = header.special_objects_oop;
        if table.segment_of(so).is_none() || !so.get().is_multiple_of(8) {
            return Err(FormatError::SpecialObjectsOutside { oop: so.get() }.into());
        }
        Ok(table)
    }

    /// The segment holding the old address `a`, if any.
    pub fn segment_of(&self, a: OldAddr) -> Option<&FileSegment> {
        let i = self.segments.partition_point(|s| s.old_start <= a);
        let s = self.segments.get(i.checked_sub(1)?)?;
        s.holds(a).then_some(s)
    }

    /// One past the last byte of the last segment, at old addresses.
    pub fn old_end(&self) -> OldAddr {
        self.segments
            .last()
            .map(|s| s.old_end())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridges_round_trip() {
        for word in [WordSize::W32, WordSize::W64] {
            for (gap, next) in [(0, 0), (0, 4096), (1 << 20, 64), (8, 32)] {
                let b = FileBridge::encode(word, gap, next);
                assert_eq!(
                    FileBridge::decode(word, &b, 0, 0).unwrap(),
                    FileBridge {
                        gap,
                        next_size: next
                    }
                );
            }
        }
    }

    #[test]
    fn a_bridge_that_is_neither_form_is_refused() {
        let mut b = [0u8; 16];
        set_u64_at(&mut b, 0, ObjHeader::new(52, 16, 3, 0).0);
        let e = FileBridge::decode(WordSize::W64, &b, 2, 999).unwrap_err();
        assert_eq!(
            e,
            FormatError::BadBridge {
                segment: 2,
                file_offset: 999,
                word: ObjHeader::new(52, 16, 3, 0).0
            }
        );
    }

    #[test]
    fn a_repaired_long_bridge_spans_the_gap() {
        let mut seg = vec![0u8; 64];
        repair_bridge_in_memory(WordSize::W64, &mut seg, 4096);
        let w0 = u64_at(&seg, 48);
        assert!(is_overflow_word(w0));
        assert_eq!(WordSize::W64.overflow_slots(w0) * 8, 4096);
        let h = ObjHeader(u64_at(&seg, 56));
        assert!(h.is_bridge() && h.raw_num_slots() == 255);
        // header at 56, body 8 + 8*512 => ends at 64 + 4096: the next segment.
        assert_eq!(56 + WordSize::W64.body_bytes(512).unwrap(), 64 + 4096);
    }
}
