//! `vm-loader snapshot` and `vm-loader bench` end to end: JSON shapes,
//! byte-identical and relocated snapshots, OUT == IMAGE, and failures
//! injected from outside: a file-size limit (`ulimit -f`) and SIGKILL in the
//! middle of a write. After every failure the previous image is intact.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use spur_format::WordSize;
use spur_synth::SynthSpec;

mod common;
use common::*;

fn small(word: WordSize) -> SynthSpec {
    let mut sp = SynthSpec::new(word, 2 << 20);
    sp.segments = 3;
    sp.gap_bytes = 1 << 20;
    sp.prefix = true;
    sp
}

/// Snapshot temporary files left in `dir`.
fn temps(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(".snapshot-") && n.ends_with(".tmp"))
        })
        .collect()
}

#[test]
fn snapshot_writes_the_image_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    for word in [WordSize::W64, WordSize::W32] {
        let img = write(dir.path(), "in.image", &small(word)).0;
        let out = dir.path().join("out.image");
        let j = json_quiet(&["--json", "snapshot", s(&img), s(&out)]);
        assert_eq!(
            keys(&j),
            [
                "bytes_written",
                "data_size",
                "format",
                "heap_bytes",
                "load_us",
                "old_base",
                "path",
                "placement",
                "prefix",
                "segments_written",
                "snapshot_us",
                "special_objects_oop",
                "swizzled",
                "sync_us",
                "trailing_bytes",
                "write_us",
                "written"
            ]
        );
        assert_eq!(j["placement"], "old-base");
        assert_eq!(j["segments_written"], 3);
        assert_eq!(j["prefix"], true);
        let original = std::fs::read(&img).unwrap();
        assert_eq!(j["bytes_written"], original.len() as u64);
        assert!(std::fs::read(&out).unwrap() == original, "{word:?}");

        // The text form says where it went and how long it took.
        let t = vm_loader(&["snapshot", s(&img), s(&out)]);
        let text = String::from_utf8_lossy(&t.stdout);
        assert!(
            text.contains("in 3 segments") && text.contains("snapshot:"),
            "{text}"
        );
    }
}

#[test]
fn a_relocated_snapshot_loads_at_its_new_base_without_swizzling() {
    let dir = tempfile::tempdir().unwrap();
    let img = write(dir.path(), "in.image", &small(WordSize::W64)).0;
    let out = dir.path().join("moved.image");
    let j = json_quiet(&[
        "snapshot",
        s(&img),
        s(&out),
        "--base",
        "0x2345_0008",
        "--json",
    ]);
    assert_eq!(j["placement"], "relocated");
    assert_eq!(j["swizzled"], true);
    assert_eq!(j["old_base"], 0x2345_0008u64);
    assert_eq!(j["segments_written"], 1);
    let info = json_quiet(&["info", s(&out), "--json"]);
    assert_eq!(info["old_base"], 0x2345_0008u64);
    let v = json_quiet(&["verify", s(&out), "--json"]);
    assert_eq!(v["ok"], true);
    assert_eq!(v["placement"], "old-base");
    assert_eq!(v["swizzled"], false);
}

#[test]
fn a_background_snapshot_reports_the_pause_and_writes_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let img = write(dir.path(), "in.image", &small(WordSize::W32)).0;
    let out = dir.path().join("bg.image");
    let j = json_quiet(&["snapshot", s(&img), s(&out), "--background", "--json"]);
    let k = keys(&j);
    assert!(k.contains(&"pause_us") && !k.contains(&"write_us"), "{k:?}");
    assert!(j["pause_us"].as_u64().unwrap() < 1_000_000);
    assert!(j["snapshot_us"].as_u64().unwrap() > 0);
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&img).unwrap());
    assert!(temps(dir.path()).is_empty());
    assert_eq!(j["writer"], "fork");
    // The writer thread over the write-protected heap writes the same bytes.
    let out = dir.path().join("bg-thread.image");
    let j = json_quiet(&[
        "snapshot",
        s(&img),
        s(&out),
        "--background",
        "--writer",
        "thread",
        "--json",
    ]);
    match j.get("fell_back").and_then(|v| v.as_str()) {
        None => assert_eq!(j["writer"], "thread"),
        Some(why) => {
            assert!(
                std::env::var_os("SPUR_REQUIRE_UFFD").is_none(),
                "no writer thread: {why}"
            );
            assert_eq!(j["writer"], "fork");
        }
    }
    assert!(j["pause_us"].as_u64().unwrap() < 1_000_000);
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&img).unwrap());
    assert!(temps(dir.path()).is_empty());
}

#[test]
fn the_output_may_be_the_image_itself() {
    let dir = tempfile::tempdir().unwrap();
    let img = write(dir.path(), "self.image", &small(WordSize::W64)).0;
    let original = std::fs::read(&img).unwrap();
    json_quiet(&["snapshot", s(&img), s(&img), "--json"]);
    assert!(std::fs::read(&img).unwrap() == original);
    json_quiet(&["snapshot", s(&img), s(&img), "--relocate", "--json"]);
    let v = json_quiet(&["verify", s(&img), "--json"]);
    assert_eq!(v["ok"], true);
    assert_ne!(std::fs::read(&img).unwrap(), original);
    assert!(temps(dir.path()).is_empty());
}

#[test]
fn bad_input_and_unwritable_targets_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let img = write(dir.path(), "in.image", &small(WordSize::W64)).0;
    let missing = dir.path().join("missing.image");
    assert_refused(
        &["snapshot", s(&missing), s(&dir.path().join("o"))],
        "No such file",
    );
    let nowhere = dir.path().join("no/such/folder/out.image");
    assert_refused(&["snapshot", s(&img), s(&nowhere)], "creating");
    let taken = dir.path().join("taken");
    std::fs::create_dir_all(taken.join("inside")).unwrap();
    for bg in [false, true] {
        let mut args = vec!["snapshot", s(&img), s(&taken)];
        if bg {
            args.push("--background");
        }
        assert_refused(&args, "directory");
        assert!(temps(dir.path()).is_empty());
    }
}

/// Runs `vm-loader args...` under `ulimit -f blocks` (512-byte blocks).
fn under_file_size_limit(blocks: u64, args: &[&str]) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(format!("ulimit -f {blocks}; exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("running bash")
}

#[test]
fn a_file_size_limit_fails_cleanly_and_leaves_the_previous_image() {
    let dir = tempfile::tempdir().unwrap();
    let img = write(dir.path(), "in.image", &small(WordSize::W64)).0;
    let before_img = std::fs::read(&img).unwrap();
    // A previous image at the target: another builder image.
    let out = write(
        dir.path(),
        "out.image",
        &SynthSpec::new(WordSize::W32, 256 << 10),
    )
    .0;
    let before_out = std::fs::read(&out).unwrap();
    // 1 MiB allowed, the image is 2 MiB: the limit strikes inside a segment;
    // 1 block strikes inside the header.
    for blocks in [1, 2048] {
        for (target, before) in [(&out, &before_out), (&img, &before_img)] {
            for bg in [false, true] {
                let mut args = vec!["snapshot", s(&img), s(target)];
                if bg {
                    args.push("--background");
                }
                let o = under_file_size_limit(blocks, &args);
                assert_one_line_failure(&o, "snapshot under ulimit -f", "File too large");
                assert!(
                    std::fs::read(target).unwrap() == *before,
                    "{args:?} under ulimit -f {blocks} changed the target"
                );
                assert_eq!(temps(dir.path()), Vec::<PathBuf>::new(), "{args:?}");
            }
        }
    }
    // With room enough, the same command works.
    let o = under_file_size_limit(1 << 20, &["snapshot", s(&img), s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(std::fs::read(&out).unwrap() == before_img);
}

#[test]
fn a_writer_killed_mid_write_leaves_the_previous_image_and_its_file_is_removed_next_time() {
    let dir = tempfile::tempdir().unwrap();
    // Big enough that a write takes a while: 64 MiB.
    let img = write(
        dir.path(),
        "big.image",
        &SynthSpec::new(WordSize::W64, 64 << 20),
    )
    .0;
    let out = write(
        dir.path(),
        "out.image",
        &SynthSpec::new(WordSize::W64, 256 << 10),
    )
    .0;
    let before = std::fs::read(&out).unwrap();
    let mut killed_mid_write = false;
    for _attempt in 0..10 {
        let (mid, status) = kill_mid_write(dir.path(), &["snapshot", s(&img), s(&out)], |tmp| {
            std::fs::metadata(tmp).map(|m| m.len()).unwrap_or(0)
        });
        if std::fs::read(&out).unwrap() != before {
            // The write finished before the kill: put the old image back, retry.
            std::fs::write(&out, &before).unwrap();
            for t in temps(dir.path()) {
                std::fs::remove_file(t).unwrap();
            }
            continue;
        }
        if mid && status.code().is_none() {
            killed_mid_write = true;
            break;
        }
        for t in temps(dir.path()) {
            std::fs::remove_file(t).unwrap();
        }
    }
    assert!(
        killed_mid_write,
        "never caught the writer in the middle of a write"
    );
    // The previous image is intact; what remains is the temporary file.
    assert!(std::fs::read(&out).unwrap() == before);
    let left = temps(dir.path());
    assert_eq!(left.len(), 1, "{left:?}");
    // The next snapshot to the same target removes it (nobody holds its lock).
    let small_img = write(dir.path(), "small.image", &small(WordSize::W64)).0;
    json_quiet(&["snapshot", s(&small_img), s(&out), "--json"]);
    assert!(temps(dir.path()).is_empty());
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&small_img).unwrap());
}

#[test]
fn bench_reports_medians_against_the_baselines_and_draws_the_plot() {
    let dir = tempfile::tempdir().unwrap();
    let img = write(dir.path(), "b.image", &small(WordSize::W32)).0;
    let plot = dir.path().join("plot.svg");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let j = json_quiet(&[
        "bench",
        s(&img),
        "--synth",
        "1,2",
        "--runs",
        "2",
        "--plot",
        s(&plot),
        "--dir",
        s(&scratch),
        "--json",
    ]);
    assert_eq!(j["runs"], 2);
    let images = j["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    for im in images {
        let k = keys(im);
        for want in [
            "heap_bytes",
            "load_us",
            "snapshot_us",
            "background_pause_us",
            "raw_read_us",
            "raw_write_us",
            "load_vs_snapshot",
        ] {
            assert!(k.contains(&want), "{want} missing from {k:?}");
        }
        assert!(im["heap_bytes"].as_u64().unwrap() >= 1 << 20);
        assert!(im["snapshot_us"].as_u64().unwrap() > 0);
        let r = im["load_vs_snapshot"].as_f64().unwrap();
        let expect = im["load_us"].as_f64().unwrap() / im["snapshot_us"].as_f64().unwrap();
        assert!((r - expect).abs() < 0.01, "{r} vs {expect}");
        // The new baselines and the relocated load, with their ratios.
        for want in ["raw_read_huge_us", "raw_read_warm_us", "load_relocated_us"] {
            assert!(im[want].as_u64().unwrap() > 0, "{want}: {}", im[want]);
        }
        let r = im["relocated_vs_load"].as_f64().unwrap();
        let expect = im["load_relocated_us"].as_f64().unwrap() / im["load_us"].as_f64().unwrap();
        assert!((r - expect).abs() < 0.01, "{r} vs {expect}");
        let p90 = &im["p90_us"];
        assert!(p90["load"].as_u64().unwrap() >= im["best_us"]["load"].as_u64().unwrap());
        assert!(
            p90["load_relocated"].as_u64().unwrap()
                >= im["best_us"]["load_relocated"].as_u64().unwrap()
        );
        assert!(p90["snapshot"].as_u64().unwrap() >= im["best_us"]["snapshot"].as_u64().unwrap());
        let q = &im["p90_ratios"];
        let f = |v: &Value| v.as_f64().unwrap();
        let expect = f(&p90["snapshot"]) / f(&p90["raw_write_sync"]);
        assert!((f(&q["snapshot_vs_raw_write_sync"]) - expect).abs() < 0.01);
        let expect = f(&p90["load_relocated"]) / f(&p90["load"]);
        assert!((f(&q["relocated_vs_load"]) - expect).abs() < 0.01);
        // A 90th percentile is never below its median.
        assert!(f(&q["load_vs_median"]) >= 1.0 && f(&q["relocated_vs_median"]) >= 1.0);
        // The writer thread's pause beside the fork's, where the kernel
        // offers write-protection (CI requires it).
        let writer = im["background_thread_writer"].as_str().unwrap();
        if writer == "thread" {
            assert!(im["background_thread_pause_us"].as_u64().unwrap() > 0);
            assert!(im["background_thread_us"].as_u64().unwrap() > 0);
            assert!(
                p90["background_thread_pause"].as_u64().unwrap()
                    >= im["best_us"]["background_thread_pause"].as_u64().unwrap()
            );
        } else {
            assert!(
                std::env::var_os("SPUR_REQUIRE_UFFD").is_none(),
                "no writer thread: {writer}"
            );
        }
    }
    // The writer thread alone: no child is forked in the whole run.
    let j = json_quiet(&[
        "bench",
        "--synth",
        "1",
        "--runs",
        "2",
        "--dir",
        s(&scratch),
        "--background-writers",
        "thread",
        "--json",
    ]);
    let im = &j["images"][0];
    assert_eq!(im["background_pause_us"], 0, "the child is not measured");
    assert_eq!(im["background_child_us"], 0);
    if im["background_thread_writer"] == "thread" {
        assert!(im["background_thread_pause_us"].as_u64().unwrap() > 0);
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.matches("<polyline").count() >= 2);
    assert!(svg.contains("load") && svg.contains("snapshot"));
    // Nothing is left in the scratch folder but the builder's images.
    let mut left: Vec<_> = std::fs::read_dir(&scratch)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["synth-1mib-64.image", "synth-2mib-64.image"]);
}

#[test]
fn a_composed_folder_is_written_as_a_single_file() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("composed");
    let out = vm_loader(&[
        "synth",
        s(&folder),
        "--heap-kib",
        "768",
        "--segments",
        "2",
        "--composed",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let single = dir.path().join("single.image");
    let j = json_quiet(&["snapshot", s(&folder), s(&single), "--json"]);
    assert_eq!(j["segments_written"], 2);
    assert_eq!(j["prefix"], false);
    let v = json_quiet(&["verify", s(&single), "--json"]);
    assert_eq!(v["ok"], true);
    assert_eq!(v["placement"], "old-base");
}

#[test]
fn convert_goes_to_composed_and_back_to_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("a.image");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_vm-loader"))
        .args([
            "synth",
            image.to_str().unwrap(),
            "--heap-kib",
            "768",
            "--segments",
            "2",
            "--gap-mib",
            "1",
        ])
        .output()
        .unwrap();
    assert!(st.status.success());
    let folder = dir.path().join("a.composed");
    let back = dir.path().join("b.image");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_vm-loader"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let j = run(&[
        "convert",
        image.to_str().unwrap(),
        folder.to_str().unwrap(),
        "--to",
        "composed",
        "--json",
    ]);
    assert_eq!(j["segments_written"], 2);
    assert!(folder.join("header.ston").is_file() && folder.join("seg1.data").is_file());
    // Read by default; mapped only when asked.
    let l = run(&["load", folder.to_str().unwrap(), "--json"]);
    assert_eq!(l["swizzled"], false);
    assert!(l["segments"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["mapped"] == false));
    let l = run(&["load", folder.to_str().unwrap(), "--map-files", "--json"]);
    assert_eq!(l["swizzled"], false);
    assert!(l["segments"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["mapped"] == true));
    run(&[
        "convert",
        folder.to_str().unwrap(),
        back.to_str().unwrap(),
        "--to",
        "single",
        "--json",
    ]);
    assert_eq!(
        std::fs::read(&image).unwrap(),
        std::fs::read(&back).unwrap()
    );
    // snapshot keeps the input's format unless asked.
    let again = dir.path().join("again");
    run(&[
        "snapshot",
        folder.to_str().unwrap(),
        again.to_str().unwrap(),
        "--json",
    ]);
    assert!(again.join("header.ston").is_file());
    let single = dir.path().join("s.image");
    run(&[
        "snapshot",
        folder.to_str().unwrap(),
        single.to_str().unwrap(),
        "--format",
        "single",
        "--json",
    ]);
    assert_eq!(
        std::fs::read(&image).unwrap(),
        std::fs::read(&single).unwrap()
    );
    // Background snapshots write single files only.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vm-loader"))
        .args([
            "snapshot",
            image.to_str().unwrap(),
            again.to_str().unwrap(),
            "--format",
            "composed",
            "--background",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("single files only"));
}

#[test]
fn bench_takes_a_composed_folder_and_reports_resident_memory() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("f");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_vm-loader"))
        .args(["synth", s(&folder), "--heap-mib", "8", "--composed"])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let j = json_quiet(&[
        "bench",
        s(&folder),
        "--runs",
        "1",
        "--dir",
        s(&scratch),
        "--map-files",
        "--json",
    ]);
    let im = &j["images"][0];
    assert_eq!(im["heap_bytes"], 8 << 20);
    assert!(im["file_bytes"].as_u64().unwrap() >= 8 << 20);
    // Mapped, not read: the load leaves far less resident than the heap.
    assert!(
        im["rss_after_load_bytes"].as_u64().unwrap() < 4 << 20,
        "{im}"
    );
    let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Runs `vm-loader args...` and kills it with SIGKILL as soon as
/// `written(temporary)` says its temporary holds some, but not all (under
/// 60 MiB), of a 64 MiB image. Returns whether it was caught mid-write, and
/// how it ended.
fn kill_mid_write(
    dir: &Path,
    args: &[&str],
    written: impl Fn(&Path) -> u64,
) -> (bool, std::process::ExitStatus) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let mut mid = false;
    while t.elapsed() < Duration::from_secs(30) {
        if let Some(tmp) = temps(dir).first() {
            let len = written(tmp);
            if len > 0 && len < (60 << 20) {
                mid = true;
                break;
            }
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    child.kill().ok();
    (mid, child.wait().unwrap())
}

/// Every file of a folder, by name, with its bytes.
fn folder_contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_composed_snapshot_that_fails_leaves_the_previous_folder_whole() {
    let dir = tempfile::tempdir().unwrap();
    let img = write(
        dir.path(),
        "in.image",
        &SynthSpec::new(WordSize::W64, 2 << 20),
    )
    .0;
    let out = dir.path().join("out");
    json_quiet(&[
        "convert",
        s(&write(
            dir.path(),
            "old.image",
            &SynthSpec::new(WordSize::W32, 256 << 10),
        )
        .0),
        s(&out),
        "--to",
        "composed",
        "--json",
    ]);
    let before = folder_contents(&out);
    // bash counts 1024-byte blocks: 1 block strikes inside seg0.data's first
    // KiB, 1024 blocks (1 MiB) in the middle of the 2 MiB segment.
    for blocks in [1, 1024] {
        let o = under_file_size_limit(
            blocks,
            &["snapshot", s(&img), s(&out), "--format", "composed"],
        );
        assert_one_line_failure(&o, "snapshot under ulimit -f", "File too large");
        assert!(
            folder_contents(&out) == before,
            "ulimit -f {blocks} changed the folder"
        );
        assert_eq!(temps(dir.path()), Vec::<PathBuf>::new());
    }
    let o = under_file_size_limit(
        1 << 20,
        &["snapshot", s(&img), s(&out), "--format", "composed"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(folder_contents(&out) != before);
}

#[test]
fn a_composed_writer_killed_midway_leaves_the_previous_folder_and_its_temporary_is_removed_next_time(
) {
    let dir = tempfile::tempdir().unwrap();
    let img = write(
        dir.path(),
        "big.image",
        &SynthSpec::new(WordSize::W64, 64 << 20),
    )
    .0;
    let out = dir.path().join("out");
    let old = write(
        dir.path(),
        "old.image",
        &SynthSpec::new(WordSize::W64, 256 << 10),
    )
    .0;
    json_quiet(&["convert", s(&old), s(&out), "--to", "composed", "--json"]);
    let before = folder_contents(&out);
    let mut killed = false;
    for _attempt in 0..10 {
        let args = ["snapshot", s(&img), s(&out), "--format", "composed"];
        let (mid, status) = kill_mid_write(dir.path(), &args, |tmp| {
            std::fs::metadata(tmp.join("seg0.data"))
                .map(|m| m.len())
                .unwrap_or(0)
        });
        if folder_contents(&out) != before {
            // Finished before the kill: put the old folder back and retry.
            std::fs::remove_dir_all(&out).unwrap();
            json_quiet(&["convert", s(&old), s(&out), "--to", "composed", "--json"]);
            continue;
        }
        if mid && status.code().is_none() {
            killed = true;
            break;
        }
        for t in temps(dir.path()) {
            std::fs::remove_dir_all(t).unwrap();
        }
    }
    assert!(killed, "never caught the writer in the middle of a write");
    assert!(folder_contents(&out) == before);
    assert_eq!(temps(dir.path()).len(), 1);
    json_quiet(&[
        "snapshot",
        s(&old),
        s(&out),
        "--format",
        "composed",
        "--json",
    ]);
    assert!(temps(dir.path()).is_empty());
}
