//! The header parser: both word sizes, both byte orders, the 512-byte prefix.
//!
//! The input is the start of an image file. It is parsed as the loader does
//! (the first bytes of a file that long), and again as the start of a file
//! that claims to be as long as can be, which takes every header past the
//! length checks. A header that parses must encode back to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spur_format::read::header::HEADER_PROBE_BYTES;
use spur_format::ImageHeader;

fuzz_target!(|data: &[u8]| {
    let probe = &data[..data.len().min(HEADER_PROBE_BYTES)];
    let _ = ImageHeader::parse(probe, u64::MAX);
    let Ok(h) = ImageHeader::parse(probe, data.len() as u64) else {
        return;
    };
    // The data the header promises lies inside the input.
    let data_end = h.data_offset() + h.data_size;
    assert!(data_end <= data.len() as u64, "{h:?}");
    // Encoding is the inverse of parsing.
    let mut file = data[..h.prefix_bytes as usize].to_vec();
    file.extend_from_slice(&h.encode());
    file.extend_from_slice(&data[h.data_offset() as usize..]);
    let probe = &file[..file.len().min(HEADER_PROBE_BYTES)];
    assert_eq!(
        ImageHeader::parse(probe, file.len() as u64).as_ref(),
        Ok(&h)
    );
});
