//! Segments as a snapshot writes them into a single-file image (§2.2).
//!
//! The VMs write every non-empty segment back to back after the header, each
//! with its live bytes, except that the last 16 bytes (the bridge) are
//! re-encoded for the file: word 0 says how far the next segment starts after
//! this one ends (a short bridge header when adjacent or last, an overflow
//! word `0xFF<<56 | gap/W` otherwise), word 1 is the byte size of the next
//! segment as a 64-bit value (0 after the last), on 32-bit images too.
//! [`FileLayout::plan`] computes all of that from the segments' addresses and
//! sizes, without looking at their bytes, so a writer can stream the segments
//! straight from memory and put the 16 bridge bytes from a small buffer.

use crate::addr::OldAddr;
use crate::error::{FormatError, Result};
use crate::layout::{set_u64_at, WordSize};
use crate::objheader::{overflow_word, ObjHeader};
use crate::raw::BRIDGE_BYTES;
use crate::read::segment::FileBridge;

impl FileBridge {
    /// Encodes a bridge for the file (§2.2): word 0 says the gap, word 1 the next size.
    pub fn encode(word: WordSize, gap: u64, next_size: u64) -> [u8; 16] {
        let w0 = if gap == 0 {
            ObjHeader::short_bridge(word).0
        } else {
            overflow_word(gap / word.bytes())
        };
        let mut b = [0u8; 16];
        set_u64_at(&mut b, 0, w0);
        set_u64_at(&mut b, 8, next_size);
        b
    }
}

/// One segment of a file about to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedSegment {
    /// Position among the segments that were given (empty ones included).
    pub index: usize,
    /// The address the file will record for the segment's first byte: where
    /// it lives at the time of the snapshot.
    pub start: OldAddr,
    /// Bytes written, the 16-byte bridge included.
    pub size: u64,
    /// Offset of the segment's first byte from the start of the data (the
    /// byte after the header).
    pub data_offset: u64,
    /// Bytes between this segment's end and the next written one's start.
    pub gap_after: u64,
    /// The bridge as the file stores it: the segment's last 16 bytes.
    pub bridge: [u8; 16],
}

impl PlannedSegment {
    /// Bytes of the segment before its bridge: what is copied from memory as is.
    pub const fn body_size(&self) -> u64 {
        self.size - BRIDGE_BYTES
    }
}

/// Where each segment goes in a single-file image and what the header's
/// `dataSize` and `firstSegSize` must say (§1.3, §2.2, §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLayout {
    /// The heap's word size.
    pub word: WordSize,
    /// The non-empty segments, in address order.
    pub segments: Vec<PlannedSegment>,
    /// Sum of the written segments' sizes, bridges included.
    pub data_size: u64,
    /// Size of the first written segment, its bridge included.
    pub first_segment_size: u64,
}

impl FileLayout {
    /// Plans the file for segments given as `(start, size)`, in address
    /// order, each size counting the segment's 16-byte bridge.
    ///
    /// Segments of 16 bytes or less hold nothing but a bridge and are left
    /// out, as the VMs leave them out (§2.2). Every other segment must be a
    /// multiple of 8 and hold at least one object (32 bytes), start on an
    /// 8-byte boundary, end within the word size's address limit, and end at
    /// or before the next one's start.
    pub fn plan(
        word: WordSize,
        segments: impl IntoIterator<Item = (OldAddr, u64)>,
    ) -> Result<FileLayout> {
        let bad = |index: usize, start: u64, size: u64, why: &'static str| {
            FormatError::BadSnapshotSegment {
                segment: index,
                start,
                size,
                why,
            }
        };
        let mut kept: Vec<(usize, u64, u64)> = Vec::new();
        for (index, (start, size)) in segments.into_iter().enumerate() {
            let start = start.get();
            if size <= BRIDGE_BYTES {
                continue;
            }
            if !size.is_multiple_of(8) || size < 32 {
                return Err(bad(
                    index,
                    start,
                    size,
                    "a segment must be a multiple of 8 bytes and hold an object and its bridge (32 bytes)",
                ));
            }
            if !start.is_multiple_of(8) || start == 0 {
                return Err(bad(
                    index,
                    start,
                    size,
                    "a segment must start at a non-zero multiple of 8",
                ));
            }
            if start
                .checked_add(size)
                .is_none_or(|end| end > word.address_limit())
            {
                return Err(bad(
                    index,
                    start,
                    size,
                    "the segment ends past the address limit of its word size",
                ));
            }
            if let Some(&(_, prev_start, prev_size)) = kept.last() {
                if start < prev_start + prev_size {
                    return Err(bad(
                        index,
                        start,
                        size,
                        "the segment starts before the previous one ends",
                    ));
                }
            }
            kept.push((index, start, size));
        }
        if kept.is_empty() {
            return Err(FormatError::NothingToWrite);
        }
        let mut planned = Vec::with_capacity(kept.len());
        let mut offset = 0u64;
        for (k, &(index, start, size)) in kept.iter().enumerate() {
            let (gap, next_size) = match kept.get(k + 1) {
                Some(&(_, next_start, next_size)) => (next_start - (start + size), next_size),
                None => (0, 0),
            };
            planned.push(PlannedSegment {
                index,
                start: OldAddr::new(start),
                size,
                data_offset: offset,
                gap_after: gap,
                bridge: FileBridge::encode(word, gap, next_size),
            });
            offset += size;
        }
        Ok(FileLayout {
            word,
            first_segment_size: planned[0].size,
            data_size: offset,
            segments: planned,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::u64_at;
    use crate::read::header::ImageHeader;
    use crate::read::segment::SegmentTable;

    #[test]
    fn bridges_say_the_gap_and_the_next_size() {
        for word in [WordSize::W32, WordSize::W64] {
            let l = FileLayout::plan(
                word,
                [
                    (OldAddr::new(0x10_0000), 4096),
                    (OldAddr::new(0x10_1000), 8192),
                    (OldAddr::new(0x20_0000), 64),
                ],
            )
            .unwrap();
            assert_eq!(l.data_size, 4096 + 8192 + 64);
            assert_eq!(l.first_segment_size, 4096);
            let s = &l.segments;
            assert_eq!(
                s.iter().map(|p| p.data_offset).collect::<Vec<_>>(),
                [0, 4096, 12288]
            );
            // Adjacent: a short bridge header; word 1 is the next size.
            assert_eq!(u64_at(&s[0].bridge, 0), ObjHeader::short_bridge(word).0);
            assert_eq!(u64_at(&s[0].bridge, 8), 8192);
            // A gap: an overflow word counting words of gap.
            let gap = 0x20_0000 - 0x10_3000;
            assert_eq!(s[1].gap_after, gap);
            assert_eq!(
                FileBridge::decode(word, &s[1].bridge, 1, 0).unwrap(),
                FileBridge { gap, next_size: 64 }
            );
            // The last: a short bridge and next size 0.
            assert_eq!(s[2].bridge, FileBridge::encode(word, 0, 0));
        }
    }

    #[test]
    fn empty_segments_are_left_out_and_bad_ones_refused() {
        let l = FileLayout::plan(
            WordSize::W64,
            [
                (OldAddr::new(0x1000), 64),
                (OldAddr::new(0x2000), 16),
                (OldAddr::new(0x3000), 64),
            ],
        )
        .unwrap();
        assert_eq!(
            l.segments.iter().map(|s| s.index).collect::<Vec<_>>(),
            [0, 2]
        );
        assert_eq!(l.segments[0].gap_after, 0x3000 - 0x1040);
        let e = |segs: &[(u64, u64)]| {
            FileLayout::plan(
                WordSize::W64,
                segs.iter().map(|&(a, s)| (OldAddr::new(a), s)),
            )
            .unwrap_err()
        };
        assert!(matches!(
            e(&[(0x1000, 64), (0x1020, 64)]),
            FormatError::BadSnapshotSegment { segment: 1, .. }
        ));
        assert!(matches!(
            e(&[(0x1000, 60)]),
            FormatError::BadSnapshotSegment { segment: 0, .. }
        ));
        assert!(matches!(
            e(&[(0x1004, 64)]),
            FormatError::BadSnapshotSegment { .. }
        ));
        assert!(matches!(
            FileLayout::plan(WordSize::W32, [(OldAddr::new(0xFFFF_FFF0), 64)]).unwrap_err(),
            FormatError::BadSnapshotSegment { .. }
        ));
        assert_eq!(e(&[(0x1000, 16)]), FormatError::NothingToWrite);
    }

    #[test]
    fn a_planned_file_reads_back_as_the_same_segments() {
        let word = WordSize::W64;
        let segs = [
            (OldAddr::new(0x4000_0000), 1 << 16),
            (OldAddr::new(0x4100_0000), 4096),
            (OldAddr::new(0x4100_1000), 4096),
        ];
        let l = FileLayout::plan(word, segs).unwrap();
        let header = ImageHeader {
            special_objects_oop: OldAddr::new(0x4000_0040),
            first_segment_size: l.first_segment_size,
            ..ImageHeader::new(word, OldAddr::new(0x4000_0000), l.data_size)
        };
        let t = SegmentTable::read(&header, |off| {
            let d = off - 128;
            let s = l
                .segments
                .iter()
                .find(|s| s.data_offset + s.size - 16 == d)
                .expect("a bridge offset");
            Ok::<_, FormatError>(s.bridge)
        })
        .unwrap();
        let read: Vec<_> = t.segments.iter().map(|s| (s.old_start, s.size)).collect();
        assert_eq!(read, segs);
    }
}
