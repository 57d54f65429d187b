//! The STON reader of composed images, and the checks of their header and
//! segment metadata.
//!
//! The input is `header.ston`, then any number of `segN.ston`, separated by
//! NUL bytes. Whatever parses must write back to the same struct; a header
//! and segments that pass the checks must describe a heap the loader can
//! place.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spur_format::read::composed::{self, SegmentMeta};
use spur_format::read::ston;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let header = ston::parse(parts.next().unwrap_or(""), "header.ston");
    let mut metas = Vec::new();
    for (i, part) in parts.enumerate() {
        let name = format!("seg{i}.ston");
        let Ok(s) = ston::parse(part, &name) else {
            return;
        };
        let Ok(m) = SegmentMeta::from_ston(&s, &name) else {
            return;
        };
        metas.push(m);
    }
    let Ok(header) = header else {
        return;
    };
    let fields: Vec<(&str, i64)> = header
        .fields
        .iter()
        .map(|(f, v)| (f.as_str(), *v))
        .collect();
    let again = ston::write(&header.name, &fields);
    assert_eq!(ston::parse(&again, "again").as_ref(), Ok(&header));
    // With no perm space, and with the last segment taken as perm space.
    let perm = metas.last().map_or(0, |m| m.size);
    for perm_bytes in [0, perm] {
        let Ok(h) = composed::header_from_ston(&header, perm_bytes) else {
            continue;
        };
        let _ = h.encode();
        if let Ok(table) = composed::segment_table(&h, &metas) {
            assert_eq!(table.segments.len(), metas.len());
            let total: u64 = table.segments.iter().map(|s| s.size).sum();
            assert_eq!(total, h.data_size);
        }
    }
});
