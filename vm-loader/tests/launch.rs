//! `vm-loader launch --headless --dry-run` and `vm-loader stats` end to end: builder
//! images in a temporary folder, the builder's default image, bad
//! overrides, and the real corpus when `SPUR_CORPUS` names it.

use serde_json::Value;
use spur_format::layout::to_usize;
use spur_format::WordSize;
use spur_synth::SynthSpec;

mod common;
use common::*;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not a number"))
}

/// The checks every launch JSON must pass: the keys the issue names, a
/// resume point inside its method, valid decoded bytecodes.
fn check_launch(j: &Value, what: &str) {
    for k in [
        "dialect",
        "special_objects",
        "class_table",
        "new_space",
        "stack_pages",
        "external_semaphore_table",
        "resume",
    ] {
        assert!(j.get(k).is_some(), "{what}: no {k}");
    }
    let so = &j["special_objects"];
    for k in [
        "nil",
        "false",
        "true",
        "scheduler_association",
        "external_objects_array",
    ] {
        assert!(u(&so[k]) > 0, "{what}: special_objects.{k}");
    }
    assert_eq!(u(&so["false"]), u(&so["nil"]) + 16);
    assert_eq!(u(&so["true"]), u(&so["nil"]) + 32);
    assert!(u(&j["class_table"]["pages"]) >= 1);
    assert!(u(&j["class_table"]["classes"]) > 30);
    let ns = &j["new_space"];
    for k in [
        "start",
        "eden_bytes",
        "survivor_bytes",
        "scavenge_threshold",
    ] {
        assert!(u(&ns[k]) > 0, "{what}: new_space.{k}");
    }
    assert!(u(&ns["scavenge_threshold"]) > u(&ns["start"]) + 2 * u(&ns["survivor_bytes"]));
    assert!(u(&ns["scavenge_threshold"]) < u(&ns["end"]));
    assert!(u(&j["stack_pages"]["count"]) >= 1);
    assert!(u(&j["stack_pages"]["page_bytes"]).is_power_of_two());
    assert!(u(&j["external_semaphore_table"]["size"]).is_power_of_two());
    let r = &j["resume"];
    for k in [
        "process",
        "context",
        "receiver_class",
        "method_class",
        "selector",
        "pc",
        "bytecodes",
    ] {
        assert!(r.get(k).is_some(), "{what}: no resume.{k}");
    }
    assert_ne!(r["method_class"], "?", "{what}");
    assert_ne!(r["selector"], "?", "{what}");
    let pc = u(&r["pc"]);
    assert!(
        u(&r["initial_pc"]) <= pc && pc < u(&r["end_pc"]),
        "{what}: {r}"
    );
    let bytecodes = r["bytecodes"].as_array().unwrap();
    assert!(!bytecodes.is_empty());
    let current = bytecodes[to_usize(u(&r["current"]))].as_str().unwrap();
    assert!(current.starts_with(&format!("{pc} <")), "{what}: {current}");
    for b in bytecodes {
        let b = b.as_str().unwrap();
        for bad in ["unknown bytecode", "cut off", "extension before"] {
            assert!(!b.contains(bad), "{what}: {b}");
        }
    }
}

#[test]
fn launch_without_an_image_resumes_the_builders_default() {
    let j = json(&["launch", "--headless", "--dry-run", "--json"]);
    check_launch(&j, "default");
    assert_eq!(
        keys(&j["resume"]),
        [
            "bytecode_set",
            "bytecodes",
            "context",
            "current",
            "end_pc",
            "in_block",
            "initial_pc",
            "instructions",
            "method",
            "method_class",
            "method_name",
            "pc",
            "process",
            "receiver",
            "receiver_class",
            "selector",
            "stack_pointer"
        ]
    );
    assert_eq!(j["dialect"], "unknown");
    assert_eq!(j["resume"]["method_name"], "SmallInteger>>synthStep");
    assert_eq!(j["resume"]["receiver_class"], "SmallInteger");
    assert_eq!(j["image"]["placement"], "old-base");
    // Defaults by hand (§4.4): 50 pages of 4 KiB, 7 MiB of new space.
    assert_eq!(u(&j["stack_pages"]["count"]), 50);
    assert_eq!(u(&j["stack_pages"]["page_bytes"]), 4096);
    assert_eq!(u(&j["new_space"]["bytes"]), 7 << 20);
    assert_eq!(u(&j["new_space"]["survivor_bytes"]), 885_600);
    assert_eq!(u(&j["new_space"]["eden_bytes"]), 5_568_832);
    assert_eq!(
        u(&j["new_space"]["scavenge_threshold"]) - u(&j["new_space"]["start"]),
        6_112_219
    );
    assert_eq!(u(&j["external_semaphore_table"]["size"]), 256);
    // New space sits right below old space, which starts at nil.
    assert_eq!(j["new_space"]["placed"], "below-old-space");
    assert_eq!(
        u(&j["new_space"]["end"]),
        u(&j["special_objects"]["nil"]) & !4095
    );
    // And the text form names the method and marks the pc.
    let out = vm_loader(&["launch", "--headless", "--dry-run"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("resumes in SmallInteger>>synthStep at pc"),
        "{text}"
    );
    assert!(text.contains("-> 26 <76> pushConstant: 1"), "{text}");
}

#[test]
fn launch_applies_overrides_relocated_and_in_32_bits() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write(
        dir.path(),
        "w32.image",
        &SynthSpec {
            segments: 2,
            gap_bytes: 64 << 10,
            multiple_bytecode_sets: true,
            ..SynthSpec::new(WordSize::W32, 512 << 10)
        },
    );
    let j = json(&[
        "launch",
        s(&path),
        "--headless",
        "--dry-run",
        "--relocate",
        "--stack-pages",
        "12",
        "--eden-bytes",
        "0x300000",
        "--ext-sem-table",
        "300",
        "--json",
    ]);
    check_launch(&j, "w32 relocated");
    assert_eq!(j["image"]["placement"], "relocated");
    // By hand: reserve 46 * 62 * 4 * 12 = 136_896; survivors
    // floor8((3_145_728 - 136_896) / 7) = 429_832; eden 2_286_064;
    // threshold 3_145_728 - 35_719 - 136_896 = 2_973_113.
    assert_eq!(u(&j["stack_pages"]["count"]), 12);
    assert_eq!(j["stack_pages"]["from"], "command-line");
    assert_eq!(u(&j["stack_pages"]["page_bytes"]), 2048);
    assert_eq!(u(&j["new_space"]["reserve_bytes"]), 136_896);
    assert_eq!(u(&j["new_space"]["survivor_bytes"]), 429_832);
    assert_eq!(u(&j["new_space"]["eden_bytes"]), 2_286_064);
    assert_eq!(
        u(&j["new_space"]["scavenge_threshold"]) - u(&j["new_space"]["start"]),
        2_973_113
    );
    assert_eq!(u(&j["external_semaphore_table"]["size"]), 512);
    // A 32-bit image's new space stays below 4 GiB.
    assert!(u(&j["new_space"]["end"]) <= 1 << 32);
}

#[test]
fn bad_overrides_and_bad_images_exit_2_with_one_line() {
    assert_refused(
        &["launch", "--headless", "--stack-pages", "0"],
        "0 stack pages requested",
    );
    assert_refused(
        &["launch", "--headless", "--ext-sem-table", "0"],
        "external semaphore table of 0 entries",
    );
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write(
        dir.path(),
        "small.image",
        &SynthSpec::new(WordSize::W64, 256 << 10),
    );
    // 64 KiB of new space against 50 pages' reserve of 1_140_800 bytes.
    assert_refused(
        &["launch", s(&path), "--headless", "--eden-bytes", "65536"],
        "1140800 bytes of reserve",
    );
    assert_refused(
        &["launch", s(&path), "--headless", "--stack-pages", "70000"],
        "70000 stack pages requested",
    );
    let junk = dir.path().join("junk.image");
    std::fs::write(&junk, b"not an image at all, just some bytes of text").unwrap();
    assert_refused(&["launch", s(&junk), "--headless"], "not a Smalltalk image");
    assert_refused(&["stats", s(&junk)], "not a Smalltalk image");
    // --headless is required: a usage error from the argument parser.
    let out = vm_loader(&["launch", s(&junk)]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--headless"));
}

/// `stats --json` rows, and the totals of `verify --json` and of the
/// text form's last line.
fn stats_of(args: &[&str]) -> (Vec<Value>, u64, u64, u64) {
    let mut a = vec!["stats"];
    a.extend_from_slice(args);
    let mut aj = a.clone();
    aj.push("--json");
    let j = json(&aj);
    let rows = j["classes"].as_array().unwrap().clone();
    let sum = |k: &str| rows.iter().map(|r| u(&r[k])).sum::<u64>();
    assert_eq!(u(&j["total"]["instances"]), sum("instances"));
    assert_eq!(u(&j["total"]["bytes"]), sum("bytes"));
    let out = vm_loader(&a);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    // "not counted: F free chunks (B bytes), H hidden objects (B bytes)"
    let last = text.lines().last().unwrap();
    let nums: Vec<u64> = last
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect();
    let mut v = vec!["verify"];
    v.extend_from_slice(args);
    v.push("--json");
    let verified = json(&v);
    (rows, u(&verified["objects"]), nums[0], nums[2])
}

fn check_stats(rows: &[Value], objects: u64, free: u64, hidden: u64, what: &str) {
    let instances: u64 = rows.iter().map(|r| u(&r["instances"])).sum();
    assert_eq!(instances, objects - free - hidden, "{what}");
    assert!(rows
        .windows(2)
        .all(|w| u(&w[0]["bytes"]) >= u(&w[1]["bytes"])));
    for r in rows {
        assert_eq!(keys(r), ["bytes", "class", "instances"]);
    }
    for class in ["UndefinedObject", "True", "False"] {
        let row = rows
            .iter()
            .find(|r| r["class"].as_str().unwrap().ends_with(class))
            .unwrap_or_else(|| panic!("{what}: no {class}"));
        assert_eq!(u(&row["instances"]), 1, "{what}: {class}");
    }
}

#[test]
fn stats_counts_every_object_but_free_chunks_and_hidden_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (path, built) = write(
        dir.path(),
        "three.image",
        &SynthSpec {
            segments: 3,
            gap_bytes: 1 << 20,
            ..SynthSpec::new(WordSize::W64, 1 << 20)
        },
    );
    let (rows, objects, free, hidden) = stats_of(&[s(&path)]);
    assert_eq!(objects, built.objects);
    assert_eq!(free, built.free_chunks);
    check_stats(&rows, objects, free, hidden, "three segments");
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn corpus_images_launch_in_place_and_relocated_and_tally() {
    let dir = spur_tests::corpus_dir();
    for file in spur_tests::CORPUS.iter().map(|c| c.file) {
        let path = dir.join(file);
        for extra in [&[][..], &["--relocate"][..]] {
            let mut args = vec!["launch", s(&path), "--headless", "--dry-run", "--json"];
            args.extend_from_slice(extra);
            let j = json(&args);
            let what = format!("{file} {extra:?}");
            check_launch(&j, &what);
            assert_eq!(j["dialect"], "pharo", "{what}");
        }
        let (rows, objects, free, hidden) = stats_of(&[s(&path)]);
        check_stats(&rows, objects, free, hidden, file);
    }
}

#[test]
fn launch_runs_the_builders_image_to_its_quit_code_and_stops_at_limits() {
    // The default image's kernel answers (Σ i² mod 42 for i ≤ 100) + 101, mod 256.
    let expected = i32::try_from(spur_synth::KernelWork::default().expected()).expect("a byte");
    // With no IMAGE the run checks itself: exit 0 when the kernel quits with
    // the answer the builder computed on its own.
    let out = vm_loader(&["launch", "--headless", "--stats"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("run: quit with exit code {expected}")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "the builder's kernel quit with {expected}, the answer"
        )),
        "{err}"
    );
    let out = vm_loader(&[
        "launch",
        "--headless",
        "--max-bytecodes",
        "1000000",
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["ended"], "quit");
    assert_eq!(j["exit_code"], expected);
    // Every field the README names, and the rest of the run's figures.
    assert_eq!(
        keys(&j),
        [
            "bytecodes",
            "bytecodes_per_second",
            "bytes_allocated",
            "contexts_reused",
            "ended",
            "exit_code",
            "line",
            "load_us",
            "method_cache_hits",
            "method_cache_misses",
            "objects_allocated",
            "old_bytes_added",
            "old_direct_objects",
            "old_segments_added",
            "old_space_growth",
            "output",
            "primitive_calls",
            "primitive_failures",
            "process_switches",
            "run_us",
            "scavenge_us",
            "scavenges",
            "sends",
            "snapshot_us",
            "snapshots",
            "survivor_bytes",
            "tenured_bytes",
            "tenured_objects",
            "weak_slots_cleared",
        ],
        "{j}"
    );
    // The first sends, traced: synthStep is resumed, so synthWork: comes first.
    let out = vm_loader(&["launch", "--headless", "--trace-sends", "3"]);
    assert_eq!(code(&out), 0);
    let err = stderr(&out);
    let sends: Vec<&str> = err.lines().filter(|l| l.starts_with("send ")).collect();
    assert_eq!(sends.len(), 3, "{err}");
    assert!(
        sends[0].starts_with("send 1: #synthWork: to SmallInteger"),
        "{err}"
    );
    // A builder image given as a file is an image like any other: the
    // process exits with the image's quit code.
    let dir = tempfile::tempdir().unwrap();
    let (kernel, _) = write(
        dir.path(),
        "kernel.image",
        &spur_synth::SynthSpec::new(WordSize::W64, 256 << 10),
    );
    let out = vm_loader(&["launch", s(&kernel), "--headless"]);
    assert_eq!(code(&out), expected, "{}", stderr(&out));
    assert!(u(&j["sends"]) > 100 && u(&j["bytecodes"]) > 1000);
    let (path, _) = write(
        dir.path(),
        "w64.image",
        &SynthSpec::new(WordSize::W64, 256 << 10),
    );
    let out = vm_loader(&[
        "launch",
        s(&path),
        "--headless",
        "--max-bytecodes",
        "50",
        "an-arg",
        "--",
        "--another",
    ]);
    assert_eq!(code(&out), 3);
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.starts_with("vm-loader: stopped (bytecode-limit)")
                && l.contains("after 50 bytecodes")),
        "{err}"
    );
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn launch_runs_the_candle_image() {
    let dir = spur_tests::corpus_dir();
    let path = dir.join("pharo-candle-squeakjs-headless-2020-32.image");
    for extra in [&[][..], &["--relocate"][..]] {
        let mut args = vec!["launch", s(&path), "--headless"];
        args.extend_from_slice(extra);
        let out = vm_loader(&args);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "Smalltalk image fired up!\nFixing the world\n3 + 4 = 7\n"
        );
        assert!(out.stderr.is_empty(), "{}", stderr(&out));
    }
}
