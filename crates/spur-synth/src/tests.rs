//! Images of every shape, read back and checked with the format crate.

use spur_format::WordSize;

use crate::check::{check, Summary};
use crate::{image_bytes, write_image_file, SynthSpec};

fn build(spec: &SynthSpec) -> (Vec<u8>, Summary) {
    let (bytes, report) = image_bytes(spec).expect("image builds");
    let sum = check(&bytes, spec, &report);
    assert!(report.objects > 100);
    assert_eq!(report.segments.len(), spec.segments);
    (bytes, sum)
}

fn spec(word: WordSize, heap: u64, segments: usize, gap: u64) -> SynthSpec {
    let mut s = SynthSpec::new(word, heap);
    s.segments = segments;
    s.gap_bytes = gap;
    s
}

const BOTH: [WordSize; 2] = [WordSize::W32, WordSize::W64];

#[test]
fn one_segment_images_are_valid() {
    for word in BOTH {
        let (_, sum) = build(&spec(word, 512 << 10, 1, 0));
        assert!(sum.overflow_objects >= 2, "{sum:?}");
        assert!(sum.page1_instances > 0);
        assert!(sum.v3_methods > 3);
        assert_eq!(sum.sista_methods, 0);
        assert!(sum.tree_chunks >= 3 && sum.tree_chains >= 1, "{sum:?}");
        assert_eq!(sum.odd_overflow_chunks, 1, "the 2048/1032-byte chunk");
        assert!(sum.forward_from_0 == 0 && sum.backward_cross == 0);
        if word == WordSize::W64 {
            assert!(sum.lilliputian_chunks >= 1);
        }
    }
}

#[test]
fn four_segments_with_gaps_point_both_ways() {
    for word in BOTH {
        for gap in [0, 8, 1 << 20] {
            let (_, sum) = build(&spec(word, 1 << 20, 4, gap));
            assert!(sum.backward_cross >= 6, "{word:?} gap {gap}: {sum:?}");
            assert!(sum.forward_from_0 >= 3, "{word:?} gap {gap}: {sum:?}");
        }
    }
}

#[test]
fn big_images_hold_big_objects() {
    for word in BOTH {
        let (_, sum) = build(&spec(word, 4 << 20, 2, 4096));
        assert!(sum.big_objects >= 2, "{word:?} {sum:?}");
        assert!(sum.objects > 15_000, "{word:?} {sum:?}");
    }
}

#[test]
fn prefix_and_multiple_bytecode_sets() {
    for word in BOTH {
        let mut s = spec(word, 300 << 10, 3, 64);
        s.prefix = true;
        s.multiple_bytecode_sets = true;
        let (bytes, sum) = build(&s);
        assert_eq!(&bytes[..crate::PREFIX_TEXT.len()], crate::PREFIX_TEXT);
        let format = u32::from_le_bytes(bytes[512..516].try_into().unwrap());
        assert_eq!(format, if word == WordSize::W64 { 68533 } else { 7033 });
        assert!(sum.sista_methods >= 2 && sum.v3_methods >= 2, "{sum:?}");
    }
}

#[test]
fn without_free_chunks_and_at_other_bases() {
    for word in BOTH {
        let mut s = spec(word, 200 << 10, 2, 0);
        s.free_chunks = false;
        s.old_base = 0x3204_0008;
        let (_, report) = image_bytes(&s).unwrap();
        assert_eq!((report.free_chunks, report.free_bytes), (0, 0));
        check(&image_bytes(&s).unwrap().0, &s, &report);
    }
}

#[test]
fn small_heaps_still_build() {
    for word in BOTH {
        for segments in [1, 4] {
            let s = spec(word, 100 << 10, segments, 16);
            let (bytes, report) = image_bytes(&s).unwrap();
            check(&bytes, &s, &report);
        }
        // Below the fixed structure's size: the heap grows to hold it.
        let s = spec(word, 1, 1, 0);
        let (bytes, report) = image_bytes(&s).unwrap();
        check(&bytes, &s, &report);
    }
}

#[test]
fn the_same_spec_gives_the_same_bytes() {
    for word in BOTH {
        let s = spec(word, 600 << 10, 3, 4096);
        let (a, ra) = image_bytes(&s).unwrap();
        let (b, rb) = image_bytes(&s).unwrap();
        assert!(a == b, "bytes differ");
        assert_eq!(ra, rb);
        let mut other = s.clone();
        other.seed = 2;
        assert!(image_bytes(&other).unwrap().0 != a);
    }
}

#[test]
fn bad_specs_are_refused() {
    let mut s = spec(WordSize::W64, 1 << 20, 0, 0);
    let e = image_bytes(&s).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    s.segments = 2;
    s.gap_bytes = 12;
    assert!(image_bytes(&s)
        .unwrap_err()
        .to_string()
        .contains("multiple of 8"));
    s.gap_bytes = 0;
    s.old_base = 0x1001;
    assert!(image_bytes(&s).is_err());
    let mut s = spec(WordSize::W32, 1 << 20, 2, 3 << 30);
    s.old_base = 0x4000_0000;
    assert!(image_bytes(&s)
        .unwrap_err()
        .to_string()
        .contains("address limit"));
}

#[test]
fn files_are_written_whole_and_match_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("synth.image");
    let s = spec(WordSize::W64, 256 << 10, 2, 0);
    let report = write_image_file(&s, &path).unwrap();
    let on_disk = std::fs::read(&path).unwrap();
    let (in_memory, r2) = image_bytes(&s).unwrap();
    assert_eq!(report, r2);
    assert!(on_disk == in_memory);
    check(&on_disk, &s, &report);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left behind");
}

#[test]
fn writing_starts_at_the_stream_position() {
    use std::io::{Cursor, Write};
    let s = spec(WordSize::W32, 128 << 10, 1, 0);
    let mut cur = Cursor::new(Vec::new());
    cur.write_all(b"junk").unwrap();
    let report = crate::write_image(&s, &mut cur).unwrap();
    assert_eq!(cur.position(), 4 + report.file_len);
    let bytes = cur.into_inner();
    check(&bytes[4..], &s, &report);
}
