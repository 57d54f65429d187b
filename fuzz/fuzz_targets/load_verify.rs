//! A whole load and verification of an image held in a byte buffer.
//!
//! An input of even length is loaded relocated (coalesced and swizzled,
//! wherever the kernel puts it); one of odd length at its old addresses,
//! which keeps the segments apart and repairs their bridges when the old
//! ranges are free, and falls back to relocation when they are not (the
//! loader reserves only with `MAP_FIXED_NOREPLACE`, so it can never map over
//! the fuzzer's own memory). One load per input, chosen by the input alone,
//! keeps a run reproducible. Every heap that loads is verified and its
//! objects counted.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spur_loader::{verify, Backing, LoadOptions, PlacementRequest};

fuzz_target!(|data: &[u8]| {
    let placement = if data.len().is_multiple_of(2) {
        PlacementRequest::Relocate
    } else {
        PlacementRequest::OldBase
    };
    let opts = LoadOptions {
        placement,
        backing: Backing::Pages,
        map_files: None,
        // The default: relocation reads and swizzles on two threads.
        threads: spur_loader::Threads::default(),
    };
    match spur_loader::load(data, &opts) {
        Ok(heap) => {
            let report = verify(&heap);
            let _ = report.ok();
            let _ = heap.count_objects();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
