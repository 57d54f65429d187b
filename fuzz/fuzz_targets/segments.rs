//! The segment table and the object walk over an image held in a buffer.
//!
//! Follows the bridges from the header as the loader does, asking only for
//! bridges inside the data the header promises, then walks every segment
//! object by object to its bridge. A walk must always advance and never
//! report an object outside its segment.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spur_format::read::header::HEADER_PROBE_BYTES;
use spur_format::read::segment::repair_bridge_in_memory;
use spur_format::{FormatError, ImageHeader, Layout, SegmentTable, Walk, WordSize, L32, L64};

fn walk<L: Layout>(bytes: &[u8], base: u64, index: usize) {
    let mut w = Walk::<L>::new(bytes, base, index);
    let mut last = None;
    for obj in w.by_ref() {
        assert!(last.is_none_or(|l| obj.start() > l), "the walk went back");
        assert!(
            obj.start() + 16 <= bytes.len() - 16,
            "object past the bridge"
        );
        last = Some(obj.start());
    }
    let _ = w.finish();
}

fuzz_target!(|data: &[u8]| {
    let probe = &data[..data.len().min(HEADER_PROBE_BYTES)];
    let Ok(h) = ImageHeader::parse(probe, data.len() as u64) else {
        return;
    };
    let data_range = h.data_offset()..h.data_offset() + h.data_size;
    let table = SegmentTable::read(&h, |off| {
        assert!(
            data_range.contains(&off) && data_range.contains(&(off + 15)),
            "bridge at {off} outside the data {data_range:?}"
        );
        let at = off as usize;
        Ok::<_, FormatError>(data[at..at + 16].try_into().unwrap())
    });
    let Ok(table) = table else {
        return;
    };
    let _ = table.segment_of(h.special_objects_oop);
    for s in &table.segments {
        let at = s.file_offset as usize;
        let bytes = &data[at..at + s.size as usize];
        match h.word {
            WordSize::W64 => walk::<L64>(bytes, s.old_start.get(), s.index),
            WordSize::W32 => walk::<L32>(bytes, s.old_start.get(), s.index),
        }
        let mut copy = bytes.to_vec();
        repair_bridge_in_memory(h.word, &mut copy, s.gap_after);
    }
});
