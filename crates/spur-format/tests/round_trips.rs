//! Property tests: what the writers encode, the readers decode to the same
//! values. Headers (single file and `header.ston`), bridges, STON structs,
//! and the segment layout of a snapshot followed back through its bridges.

use proptest::prelude::*;

use spur_format::layout::to_usize;
use spur_format::read::composed::{header_from_ston, SegmentMeta};
use spur_format::read::header::{min_header_size, HEADER_PROBE_BYTES};
use spur_format::read::ston;
use spur_format::write::composed::{header_ston, segment_ston};
use spur_format::{
    ByteOrder, FileBridge, FileLayout, FormatError, ImageHeader, OldAddr, SegmentTable, WordSize,
};

/// The four loadable formats: number, word size, Sista bytecodes.
const FORMATS: [(u32, WordSize, bool); 4] = [
    (6521, WordSize::W32, false),
    (7033, WordSize::W32, true),
    (68021, WordSize::W64, false),
    (68533, WordSize::W64, true),
];

/// The values a word-sized header field of `word` can hold.
fn word_mask(word: WordSize) -> u64 {
    match word {
        WordSize::W32 => u32::MAX as u64,
        WordSize::W64 => u64::MAX,
    }
}

prop_compose! {
    /// A header that passes every check of `ImageHeader::parse`, with its
    /// free fields (hash, flags, the VM's sizes) anything their width holds.
    fn valid_header()(
        format in 0usize..4,
        extra_words in 0u64..24,
        first_slots in 4u64..2048,
        more_slots in 0u64..2048,
        base_pages in 1u64..(1 << 19),
        special_slot in any::<u64>(),
        words in any::<[u64; 5]>(),
        extra_vm_memory in any::<u32>(),
        num_stack_pages in any::<u16>(),
        cog_code_size_kib in any::<u16>(),
        eden_bytes in any::<u32>(),
        max_ext_sem_table in any::<u16>(),
        image_version in any::<u16>(),
    ) -> ImageHeader {
        let (format, word, sista) = FORMATS[format];
        let mask = word_mask(word);
        let first_segment_size = first_slots * 8;
        let data_size = first_segment_size + more_slots * 8;
        let old_base = base_pages * 4096;
        ImageHeader {
            format,
            word,
            multiple_bytecode_sets: sista,
            byte_order: ByteOrder::Little,
            prefix_bytes: 0,
            header_size: min_header_size(word) + 8 * extra_words,
            data_size,
            old_base: OldAddr::new(old_base),
            special_objects_oop: OldAddr::new(old_base + special_slot % (data_size / 8) * 8),
            last_hash: words[0] & mask,
            saved_window_size: words[1] & mask,
            flags: words[2] & mask,
            extra_vm_memory,
            num_stack_pages,
            cog_code_size_kib,
            eden_bytes,
            max_ext_sem_table,
            image_version,
            first_segment_size,
            free_old_space: words[3] & mask,
        }
    }
}

/// Segments in address order for a snapshot: `(start, size)` with sizes of
/// at least 32 bytes, multiples of 8, and gaps (possibly none) between them.
fn segments() -> impl Strategy<Value = (WordSize, Vec<(OldAddr, u64)>)> {
    (
        any::<bool>(),
        1u64..(1 << 16),
        prop::collection::vec((4u64..512, 0u64..(1 << 20)), 1..6),
    )
        .prop_map(|(w64, base_pages, parts)| {
            let word = if w64 { WordSize::W64 } else { WordSize::W32 };
            let mut at = base_pages * 4096;
            let segs = parts
                .into_iter()
                .map(|(slots, gap_slots)| {
                    let s = (OldAddr::new(at), slots * 8);
                    at += slots * 8 + gap_slots * 8;
                    s
                })
                .collect();
            (word, segs)
        })
}

/// A STON struct name or field name: a letter, then letters and digits.
fn identifier() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9]{0,20}"
}

proptest! {
    // Failures are printed with their minimal input; nothing is written
    // beside the sources.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_header_parses_back_as_encoded(h in valid_header(), prefixed in any::<bool>()) {
        let prefix = if prefixed { 512 } else { 0 };
        let mut file = vec![0u8; prefix];
        let encoded = h.encode();
        prop_assert_eq!(encoded.len() as u64, h.header_size);
        file.extend_from_slice(&encoded);
        file.resize(prefix + to_usize(h.header_size + h.data_size), 0);
        let probe = &file[..file.len().min(HEADER_PROBE_BYTES)];
        let back = ImageHeader::parse(probe, file.len() as u64).unwrap();
        prop_assert_eq!(back, ImageHeader { prefix_bytes: prefix as u64, ..h });
    }

    #[test]
    fn a_header_reads_back_from_header_ston(h in valid_header(), perm in 0u64..(1 << 20)) {
        // STON integers are signed: the free 64-bit fields stop at 2^63.
        let h = ImageHeader {
            last_hash: h.last_hash >> 1,
            saved_window_size: h.saved_window_size >> 1,
            flags: h.flags >> 1,
            free_old_space: h.free_old_space >> 1,
            ..h
        };
        let perm = perm * 8;
        let text = header_ston(&h, perm);
        let parsed = ston::parse(&text, "header.ston").unwrap();
        prop_assert_eq!(header_from_ston(&parsed, perm).unwrap(), h);
    }

    #[test]
    fn a_bridge_decodes_as_encoded(
        w64 in any::<bool>(),
        gap_slots in 0u64..(1 << 50),
        next_size in any::<u64>(),
    ) {
        let word = if w64 { WordSize::W64 } else { WordSize::W32 };
        // A gap lies below the address limit of the word size.
        let gap = gap_slots * 8 % word.address_limit();
        let bytes = FileBridge::encode(word, gap, next_size);
        prop_assert_eq!(
            FileBridge::decode(word, &bytes, 0, 0).unwrap(),
            FileBridge { gap, next_size }
        );
    }

    #[test]
    fn a_ston_struct_parses_back_as_written(
        name in identifier(),
        fields in prop::collection::btree_map(identifier(), any::<i64>(), 1..24),
        crlf in any::<bool>(),
    ) {
        // Distinct names: the reader refuses a field that appears twice.
        let fields: Vec<(String, i64)> = fields.into_iter().collect();
        let refs: Vec<(&str, i64)> = fields.iter().map(|(f, v)| (f.as_str(), *v)).collect();
        let mut text = ston::write(&name, &refs);
        if crlf {
            text = text.replace('\n', "\r\n");
        }
        let back = ston::parse(&text, "x.ston").unwrap();
        prop_assert_eq!(back.name, name);
        prop_assert_eq!(back.fields, fields);
    }

    #[test]
    fn segment_metadata_reads_back_from_its_ston(start in 0u64..(1 << 60), size in 0u64..(1 << 60)) {
        let (start, size) = (start & !7, size & !7);
        let parsed = ston::parse(&segment_ston(start, size), "seg0.ston").unwrap();
        prop_assert_eq!(
            SegmentMeta::from_ston(&parsed, "seg0.ston").unwrap(),
            SegmentMeta { start, size }
        );
    }

    /// A snapshot's layout, written as a file's header and bridges, is
    /// followed back by the segment table reader to the same segments.
    #[test]
    fn a_snapshot_layout_reads_back_as_its_segments((word, segs) in segments()) {
        let layout = FileLayout::plan(word, segs.iter().copied()).unwrap();
        prop_assert_eq!(layout.segments.len(), segs.len());
        prop_assert_eq!(layout.data_size, segs.iter().map(|s| s.1).sum::<u64>());
        prop_assert_eq!(layout.first_segment_size, segs[0].1);
        let header = ImageHeader {
            first_segment_size: layout.first_segment_size,
            ..ImageHeader::new(word, segs[0].0, layout.data_size)
        };
        let data_offset = header.data_offset();
        let table = SegmentTable::read(&header, |off| {
            let rel = off - data_offset;
            let seg = layout
                .segments
                .iter()
                .find(|p| p.data_offset + p.size - 16 == rel)
                .expect("the reader asks only for bridges");
            Ok::<_, FormatError>(seg.bridge)
        })
        .unwrap();
        let back: Vec<(OldAddr, u64)> =
            table.segments.iter().map(|s| (s.old_start, s.size)).collect();
        prop_assert_eq!(back, segs);
        for (s, p) in table.segments.iter().zip(&layout.segments) {
            prop_assert_eq!(s.file_offset, data_offset + p.data_offset);
            prop_assert_eq!(s.gap_after, p.gap_after);
        }
    }
}
