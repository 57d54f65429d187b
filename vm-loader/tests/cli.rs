//! The `vm-loader` binary over images the builder writes into a temporary
//! folder, over bad input of every kind, and over the real corpus when
//! `SPUR_CORPUS` names it.

use spur_format::layout::to_usize;
use std::path::Path;

use serde_json::Value;
use spur_format::raw::{CLASS_ARRAY, FIRST_VALID_CLASS_INDEX, FMT_FIXED, FMT_INDEXABLE};
use spur_format::{Walk, WordSize, L32, L64};
use spur_synth::SynthSpec;

mod common;
use common::*;

/// Bad input under --json: exit code 2, the one line on stderr, and the
/// same message as one JSON object on stdout.
fn assert_refused_in_json(args: &[&str], needle: &str) {
    let out = vm_loader(args);
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err:?}");
    let j: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(j["exit_code"], 2);
    let msg = j["error"].as_str().unwrap();
    assert_eq!(format!("vm-loader: {msg}\n"), err);
    assert!(
        msg.contains(needle),
        "{args:?}: {msg:?} does not name {needle:?}"
    );
}

fn sorted(mut k: Vec<&str>) -> Vec<&str> {
    k.sort_unstable();
    k
}

/// A 64-bit image of three segments 1 MiB apart, after a prefix, with the
/// multiple-bytecode-sets bit.
fn three_segments_with_gaps() -> SynthSpec {
    SynthSpec {
        segments: 3,
        gap_bytes: 1 << 20,
        prefix: true,
        multiple_bytecode_sets: true,
        ..SynthSpec::new(WordSize::W64, 1536 << 10)
    }
}

#[test]
fn info_json_has_every_header_field_with_the_builders_values() {
    let dir = tempfile::tempdir().unwrap();
    let spec = three_segments_with_gaps();
    let (path, r) = write(dir.path(), "three.image", &spec);
    let j = json(&["info", s(&path), "--json"]);
    assert_eq!(
        keys(&j),
        sorted(vec![
            "format",
            "word_size",
            "byte_order",
            "multiple_bytecode_sets",
            "prefix_bytes",
            "header_size",
            "data_size",
            "old_base",
            "special_objects_oop",
            "last_hash",
            "flags",
            "first_segment_size",
            "free_old_space",
            "eden_bytes",
            "stack_pages",
            "cog_code_size",
            "max_ext_sem_table",
            "image_version",
            "extra_vm_memory",
            "saved_window",
            "input",
            "trailing_bytes",
            "segments",
        ])
    );
    assert_eq!(j["format"], 68533);
    assert_eq!(j["format"], r.format);
    assert_eq!(j["word_size"], 8);
    assert_eq!(j["byte_order"], "little");
    assert_eq!(j["multiple_bytecode_sets"], true);
    assert_eq!(j["prefix_bytes"], 512);
    assert_eq!(j["header_size"], 128);
    assert_eq!(j["data_size"], r.data_size);
    assert_eq!(j["old_base"], spec.old_base);
    assert_eq!(j["old_base"], r.nil);
    assert_eq!(j["special_objects_oop"], r.special_objects_oop);
    assert_ne!(j["last_hash"], 0);
    assert_eq!(
        j["flags"],
        serde_json::json!({"value": 2, "names": ["floats_little_endian"]})
    );
    assert_eq!(j["first_segment_size"], r.segments[0].size);
    assert_eq!(j["free_old_space"], r.free_bytes);
    for zero in [
        "eden_bytes",
        "stack_pages",
        "cog_code_size",
        "max_ext_sem_table",
        "image_version",
    ] {
        assert_eq!(j[zero], 0, "{zero}");
    }
    let segs = j["segments"].as_array().unwrap();
    assert_eq!(segs.len(), 3);
    for (i, (seg, want)) in segs.iter().zip(&r.segments).enumerate() {
        assert_eq!(keys(seg), ["file_offset", "index", "old_start", "size"]);
        assert_eq!(seg["file_offset"], want.file_offset);
        assert_eq!(seg["index"], i);
        assert_eq!(seg["old_start"], want.old_start);
        assert_eq!(seg["size"], want.size);
        if i > 0 {
            let prev = &r.segments[i - 1];
            assert_eq!(
                want.old_start,
                prev.old_start + prev.size + spec.gap_bytes,
                "segment {i} starts a gap after the previous one"
            );
        }
    }
}

#[test]
fn info_json_of_a_32_bit_image() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SynthSpec::new(WordSize::W32, 256 << 10);
    let (path, r) = write(dir.path(), "w32.image", &spec);
    let j = json(&["info", "--json", s(&path)]);
    assert_eq!(j["format"], 6521);
    assert_eq!(j["word_size"], 4);
    assert_eq!(j["multiple_bytecode_sets"], false);
    assert_eq!(j["prefix_bytes"], 0);
    assert_eq!(j["header_size"], 64);
    assert_eq!(j["data_size"], r.data_size);
    assert_eq!(j["segments"].as_array().unwrap().len(), 1);
}

#[test]
fn info_prints_text_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write(dir.path(), "three.image", &three_segments_with_gaps());
    let out = vm_loader(&["info", s(&path)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("68533"), "{text}");
    assert!(text.contains("old base        0x10000000000"), "{text}");
    assert!(text.contains("then a gap of 1 MiB"), "{text}");
}

#[test]
fn load_at_the_old_base_and_relocated_finds_the_same_objects() {
    let dir = tempfile::tempdir().unwrap();
    let spec = three_segments_with_gaps();
    let (path, r) = write(dir.path(), "three.image", &spec);

    let at_old = json(&["load", s(&path), "--json"]);
    assert_eq!(
        keys(&at_old),
        sorted(vec![
            "placement",
            "swizzled",
            "fallback",
            "objects",
            "heap_bytes",
            "headroom",
            "segments",
            "timings_us",
        ])
    );
    assert_eq!(at_old["placement"], "old-base");
    assert_eq!(at_old["swizzled"], false);
    assert_eq!(at_old["fallback"], Value::Null);
    assert_eq!(at_old["objects"], r.objects);
    assert_eq!(at_old["heap_bytes"], r.data_size);
    assert_eq!(
        keys(&at_old["timings_us"]),
        ["read", "reserve", "swizzle", "total"]
    );
    let segs = at_old["segments"].as_array().unwrap();
    assert_eq!(segs.len(), 3);
    for (seg, want) in segs.iter().zip(&r.segments) {
        assert_eq!(
            keys(seg),
            ["delta", "index", "mapped", "new_start", "old_start", "size"]
        );
        assert_eq!(seg["old_start"], want.old_start);
        assert_eq!(seg["new_start"], want.old_start);
        assert_eq!(seg["delta"], 0);
        assert_eq!(seg["size"], want.size);
    }

    let moved = json(&["load", s(&path), "--relocate", "--json"]);
    assert_eq!(moved["placement"], "relocated");
    assert_eq!(moved["swizzled"], true);
    assert_eq!(moved["objects"], at_old["objects"]);
    let segs = moved["segments"].as_array().unwrap();
    // Coalesced: each segment starts where the previous one's bridge was.
    for pair in segs.windows(2) {
        let end = pair[0]["new_start"].as_u64().unwrap() + pair[0]["size"].as_u64().unwrap();
        assert_eq!(pair[1]["new_start"].as_u64().unwrap(), end - 16);
    }
    for seg in segs {
        let delta = seg["new_start"].as_i64().unwrap() - seg["old_start"].as_i64().unwrap();
        assert_eq!(seg["delta"].as_i64().unwrap(), delta);
        assert_ne!(delta, 0);
    }
}

#[test]
fn load_with_base_puts_nil_exactly_there() {
    let dir = tempfile::tempdir().unwrap();
    let (path, r) = write(dir.path(), "three.image", &three_segments_with_gaps());
    for (arg, addr) in [("0x23456788", 0x2345_6788u64), ("805306368", 0x3000_0000)] {
        let j = json(&["load", s(&path), "--base", arg, "--json"]);
        assert_eq!(j["placement"], "relocated");
        assert_eq!(j["swizzled"], true);
        assert_eq!(j["segments"][0]["new_start"], addr);
        assert_eq!(
            j["segments"][0]["delta"].as_i64().unwrap(),
            addr.cast_signed() - r.nil.cast_signed()
        );
        assert_eq!(j["objects"], r.objects);
    }
}

#[test]
fn base_and_relocate_are_a_usage_error() {
    let out = vm_loader(&["load", "x.image", "--base", "0x1000", "--relocate"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_bad_base_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write(
        dir.path(),
        "small.image",
        &SynthSpec::new(WordSize::W64, 128 << 10),
    );
    assert_refused(&["load", s(&path), "--base", "0x1004"], "multiple of 8");
    assert_refused(&["load", s(&path), "--base", "0"], "--base 0x0");
}

/// A 32-bit heap whose old range covers nearly all of the low 4 GiB (two
/// small segments 4079 MiB apart) loads at its old base, and relocated it
/// is refused in one line that names the old range, since a 32-bit heap
/// must stay below 4 GiB.
#[test]
fn a_32_bit_heap_with_no_room_left_below_4_gib_is_refused_when_relocated() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SynthSpec {
        segments: 2,
        gap_bytes: 4079 << 20,
        old_base: 0x100_0000,
        ..SynthSpec::new(WordSize::W32, 1 << 20)
    };
    let (path, _) = write(dir.path(), "spread.image", &spec);
    let j = json(&["load", "--json", s(&path)]);
    assert_eq!(j["placement"], "old-base", "{j}");
    assert_refused(
        &["load", "--relocate", s(&path)],
        "below 4 GiB away from its old addresses 0x1000000..",
    );
}

#[test]
fn verify_passes_good_images_in_place_and_relocated() {
    let dir = tempfile::tempdir().unwrap();
    let images = [
        ("three.image", three_segments_with_gaps()),
        ("w32.image", {
            SynthSpec {
                segments: 2,
                gap_bytes: 64 << 10,
                ..SynthSpec::new(WordSize::W32, 512 << 10)
            }
        }),
    ];
    for (name, spec) in images {
        let (path, r) = write(dir.path(), name, &spec);
        for extra in [&[][..], &["--relocate"][..]] {
            let mut args = vec!["verify", s(&path), "--json"];
            args.extend_from_slice(extra);
            let j = json(&args);
            assert_eq!(
                keys(&j),
                sorted(vec![
                    "ok",
                    "placement",
                    "swizzled",
                    "fallback",
                    "objects",
                    "free_chunks",
                    "classes",
                    "errors",
                    "warnings",
                    "errors_dropped",
                    "warnings_dropped",
                    "verify_us",
                ])
            );
            assert_eq!(j["ok"], true, "{name} {extra:?}: {j:#}");
            assert_eq!(j["errors"], serde_json::json!([]), "{name}");
            assert_eq!(j["objects"], r.objects, "{name}");
            assert_eq!(j["free_chunks"], r.free_chunks, "{name}");
            assert_eq!(j["classes"], r.classes, "{name}");
            let relocated = !extra.is_empty();
            assert_eq!(j["swizzled"], relocated, "{name}");
        }
        let out = vm_loader(&["verify", s(&path)]);
        assert_eq!(code(&out), 0);
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.starts_with("intact: "), "{text}");
    }
}

#[test]
fn bad_input_exits_2_with_one_line_and_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = write(
        dir.path(),
        "good.image",
        &SynthSpec::new(WordSize::W64, 256 << 10),
    );
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.image");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let header_only = dir.path().join("header-only.image");
    std::fs::write(&header_only, &bytes[..100]).unwrap();
    let random = dir.path().join("random.image");
    // A fixed xorshift stream: no format word it starts with is an image format.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..64 << 10)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    std::fs::write(&random, noise).unwrap();
    let empty = dir.path().join("empty.image");
    std::fs::write(&empty, b"").unwrap();
    let one_byte = dir.path().join("one.image");
    std::fs::write(&one_byte, b"x").unwrap();
    let missing = dir.path().join("missing.image");
    let folder = dir.path().join("folder.image");
    std::fs::create_dir(&folder).unwrap();

    let short = format!("holds only {} bytes", bytes.len() / 2 - 128);
    let cases: [(&Path, &str); 7] = [
        (&truncated, &short),
        (&header_only, "too short"),
        (&random, "not a Smalltalk image"),
        (&empty, "0 bytes long"),
        (&one_byte, "is 1 byte long"),
        (&missing, "missing.image"),
        (&folder, "not a composed image"),
    ];
    for (path, needle) in cases {
        for cmd in ["info", "load", "verify"] {
            assert_refused(&[cmd, s(path)], needle);
            assert_refused_in_json(&[cmd, s(path), "--json"], needle);
        }
        assert_refused(&["load", s(path), "--relocate"], needle);
    }

    // The cause is said once, and a newline in a file name is shown escaped.
    let odd = dir.path().join("two\nlines.image");
    assert_refused(&["info", s(&odd)], "two\\nlines.image: No such file");
    let err = stderr(&vm_loader(&["info", s(&missing)]));
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}

#[test]
fn without_an_image_the_builders_default_is_used() {
    let out = vm_loader(&["load", "--json"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert!(
        err.starts_with("note: no IMAGE given; using a 4 MiB"),
        "{err}"
    );
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["placement"], "old-base");
    assert_eq!(j["segments"].as_array().unwrap().len(), 2);
    assert!(j["objects"].as_u64().unwrap() > 1000);

    let info = json(&["info", "--json"]);
    assert_eq!(info["word_size"], 8);
    let segs = info["segments"].as_array().unwrap();
    let end0 = segs[0]["old_start"].as_u64().unwrap() + segs[0]["size"].as_u64().unwrap();
    assert!(segs[1]["old_start"].as_u64().unwrap() > end0, "a gap");

    let v = json(&["verify", "--relocate", "--json"]);
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(v["objects"], j["objects"]);
}

#[test]
fn synth_writes_the_image_it_describes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("made.image");
    let j = json(&[
        "synth",
        s(&out),
        "--heap-mib",
        "2",
        "--segments",
        "2",
        "--gap-mib",
        "1",
        "--prefix",
        "--sista",
        "--seed",
        "7",
        "--json",
    ]);
    for k in [
        "path",
        "format",
        "word_size",
        "data_size",
        "file_len",
        "objects",
        "free_chunks",
        "segments",
    ] {
        assert!(j.get(k).is_some(), "synth --json has no {k}: {j:#}");
    }
    assert_eq!(j["path"], s(&out));
    assert_eq!(j["format"], 68533);
    assert_eq!(j["word_size"], 8);
    assert_eq!(
        j["file_len"].as_u64().unwrap(),
        std::fs::metadata(&out).unwrap().len()
    );
    assert!(j["free_chunks"].as_u64().unwrap() > 0);
    let segs = j["segments"].as_array().unwrap();
    assert_eq!(segs.len(), 2);
    assert_eq!(
        keys(&segs[0]),
        ["file_offset", "index", "old_start", "size"]
    );

    let info = json(&["info", s(&out), "--json"]);
    assert_eq!(info["prefix_bytes"], 512);
    assert_eq!(info["data_size"], j["data_size"]);
    assert_eq!(info["segments"], j["segments"]);
    let gap = segs[1]["old_start"].as_u64().unwrap()
        - segs[0]["old_start"].as_u64().unwrap()
        - segs[0]["size"].as_u64().unwrap();
    assert_eq!(gap, 1 << 20);

    let v = json(&["verify", s(&out), "--json"]);
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(v["objects"], j["objects"]);
    assert_eq!(v["free_chunks"], j["free_chunks"]);

    // The same arguments give the same bytes.
    let again = dir.path().join("again.image");
    let args = |p: &Path| {
        vec![
            "synth".to_string(),
            s(p).to_string(),
            "--heap-kib".into(),
            "200".into(),
            "--word-size".into(),
            "4".into(),
            "--no-free-chunks".into(),
            "--base".into(),
            "0x20000000".into(),
        ]
    };
    let first = dir.path().join("first.image");
    for p in [&first, &again] {
        let a = args(p);
        let out = vm_loader(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.starts_with("wrote "), "{text}");
    }
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&again).unwrap()
    );
    let info = json(&["info", s(&first), "--json"]);
    assert_eq!(info["format"], 6521);
    assert_eq!(info["old_base"], 0x2000_0000);
    assert_eq!(info["free_old_space"], 0);
}

#[test]
fn synth_needs_exactly_one_heap_size_and_sane_values() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.image");
    for bad in [
        &["synth", s(&out)][..],
        &["synth", s(&out), "--heap-mib", "1", "--heap-kib", "64"][..],
        &["synth", s(&out), "--heap-kib", "64", "--word-size", "6"][..],
        &["synth", s(&out), "--heap-kib", "64", "--segments", "0"][..],
    ] {
        let o = vm_loader(bad);
        assert_eq!(code(&o), 2, "{bad:?}");
    }
    assert_refused(
        &["synth", s(&out), "--heap-kib", "64", "--base", "0x1001"],
        "multiple of 8",
    );
    let nowhere = dir.path().join("no/such/folder/x.image");
    assert_refused(
        &["synth", s(&nowhere), "--heap-kib", "64"],
        "no/such/folder",
    );
    assert!(!out.exists());
}

/// Where the first slot of the last Array of the heap (not the special
/// objects array) is in the file, and the address of slot 1 of an object in
/// the last segment: writing the second into the first makes a pointer into
/// the middle of an object.
fn find_corruption(bytes: &[u8]) -> (usize, u64) {
    let (header, table) = spur_loader::read_layout(bytes).unwrap();
    let wb = to_usize(header.word.bytes());
    let mut slot = None;
    let mut target = None;
    for seg in &table.segments {
        let start = to_usize(seg.file_offset);
        let seg_bytes = &bytes[start..start + to_usize(seg.size)];
        let objs: Vec<_> = match header.word {
            WordSize::W64 => Walk::<L64>::new(seg_bytes, seg.old_start.get(), seg.index).collect(),
            WordSize::W32 => Walk::<L32>::new(seg_bytes, seg.old_start.get(), seg.index).collect(),
        };
        for o in objs {
            let h = o.header;
            let ordinary = h.class_index() >= FIRST_VALID_CLASS_INDEX;
            let addr = seg.old_start.get() + o.offset as u64;
            if ordinary
                && h.class_index() == CLASS_ARRAY
                && h.format() == FMT_INDEXABLE
                && o.num_slots >= 1
                && addr != header.special_objects_oop.get()
            {
                slot = Some(start + o.offset + 8);
            }
            if target.is_none()
                && ordinary
                && (h.format() == FMT_FIXED || h.format() == FMT_INDEXABLE)
                && o.num_slots >= 2
                && seg.index == table.segments.len() - 1
            {
                target = Some(addr + 8 + wb as u64);
            }
        }
    }
    (
        slot.expect("the image holds an Array"),
        target.expect("the image holds an object with two slots"),
    )
}

fn put_word(bytes: &mut [u8], at: usize, word: WordSize, value: u64) {
    match word {
        WordSize::W64 => bytes[at..at + 8].copy_from_slice(&value.to_le_bytes()),
        WordSize::W32 => bytes[at..at + 4]
            .copy_from_slice(&u32::try_from(value).expect("a 32-bit word").to_le_bytes()),
    }
}

#[test]
fn verify_exits_1_on_a_pointer_into_the_middle_of_an_object() {
    let dir = tempfile::tempdir().unwrap();
    for (name, word) in [("w64.image", WordSize::W64), ("w32.image", WordSize::W32)] {
        let spec = SynthSpec {
            segments: 2,
            gap_bytes: 1 << 20,
            ..SynthSpec::new(word, 512 << 10)
        };
        let (path, _) = write(dir.path(), name, &spec);
        let mut bytes = std::fs::read(&path).unwrap();
        let (at, into) = find_corruption(&bytes);
        put_word(&mut bytes, at, word, into);
        // The header and the bridges are untouched: the file still reads as an image.
        spur_loader::read_layout(&bytes[..]).unwrap();
        std::fs::write(&path, &bytes).unwrap();

        for extra in [&[][..], &["--relocate"][..]] {
            let mut args = vec!["verify", s(&path), "--json"];
            args.extend_from_slice(extra);
            let j = json_with(&args, 1);
            assert_eq!(j["ok"], false, "{name} {extra:?}");
            let errors = j["errors"].as_array().unwrap();
            assert!(!errors.is_empty());
            assert!(
                errors.iter().any(|e| e["kind"] == "pointer"),
                "{name} {extra:?}: {errors:#?}"
            );
            for e in errors {
                assert_eq!(keys(e), ["addr", "kind", "what"]);
            }
        }
        let out = vm_loader(&["verify", s(&path)]);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        assert!(lines.next().unwrap().starts_with("CORRUPT ("), "{text}");
        assert!(
            lines.any(|l| l.starts_with("error: [pointer] 0x")),
            "{text}"
        );
    }
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn corpus_info_and_non_spur_refusals() {
    let dir = spur_tests::corpus_dir();
    for c in spur_tests::CORPUS {
        let img = dir.join(c.file);
        let j = json(&["info", s(&img), "--json"]);
        assert_eq!(j["format"], c.format, "{}", c.file);
        assert_eq!(j["old_base"], c.old_base, "{}", c.file);
        assert_eq!(
            j["special_objects_oop"], c.special_objects_oop,
            "{}",
            c.file
        );
        let l = json(&["load", s(&img), "--json"]);
        assert_eq!(l["objects"], c.objects, "{}", c.file);
    }
    for (file, number) in spur_tests::NON_SPUR {
        let path = dir.join(file);
        for cmd in ["info", "load", "verify"] {
            assert_refused(&[cmd, s(&path)], &format!("format {number} "));
        }
    }
}
