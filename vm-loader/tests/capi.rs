//! The C interface from C: the example front end (`examples/c/spur_info.c`)
//! and the C test (`crates/spur-capi/tests/c/abuse.c`) are built with the
//! system C compiler against the static library, run, and compared with
//! `vm-loader info`, `load`, `launch` (its dry run), `stats` and `snapshot` on
//! the builder's images and every corpus image (the tests marked
//! `needs SPUR_CORPUS`), in place and relocated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::BIN;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `target/<profile>/deps`, where cargo builds `libspur_capi.a` for this
/// test (a dev-dependency, built with all its crate types). Only a
/// `cargo build` of spur-capi itself copies it up to `target/<profile>`,
/// so the copy there may be stale; this one is rebuilt with the test.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().to_path_buf()
}

/// Builds `source` into `out` with `cc`, warnings as errors, against the
/// static library and the libraries its Rust code needs
/// (`rustc --print native-static-libs`).
fn build_c(source: &str, out: &Path) {
    let lib = lib_dir().join("libspur_capi.a");
    assert!(lib.is_file(), "{} was not built", lib.display());
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let o = Command::new(&cc)
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-g", "-I"])
        .arg(workspace().join("include"))
        .arg(workspace().join(source))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-lrt", "-lutil", "-o"])
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("running {cc} (install a C compiler): {e}"));
    assert!(
        o.status.success(),
        "{cc} {source}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn vm_json(args: &[&str]) -> Value {
    let o = run(Path::new(BIN), args);
    assert!(
        o.status.success(),
        "vm-loader {args:?}: {}",
        text(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The line `vm-loader` prints for refused input, without `vm-loader: `.
fn vm_error(args: &[&str]) -> String {
    let o = run(Path::new(BIN), args);
    assert_eq!(
        o.status.code(),
        Some(2),
        "vm-loader {args:?}: {}",
        text(&o.stderr)
    );
    let err = text(&o.stderr);
    err.trim_end()
        .strip_prefix("vm-loader: ")
        .unwrap_or_else(|| panic!("{err:?}"))
        .to_string()
}

/// The example's `key: value` lines; keys that repeat (`segment`,
/// `class`) keep every value in order.
fn facts(out: &str) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in out.lines() {
        let (k, v) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("not a key: value line: {line:?}"));
        m.entry(k.to_string()).or_default().push(v.to_string());
    }
    m
}

fn num(s: &str) -> u64 {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).unwrap(),
        None => s.parse().unwrap_or_else(|_| panic!("not a number: {s:?}")),
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_bool().map(u64::from))
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

struct Facts(BTreeMap<String, Vec<String>>, String);

impl Facts {
    fn one(&self, key: &str) -> &str {
        match self.0.get(key).map(Vec::as_slice) {
            Some([v]) => v,
            other => panic!("{}: {key} is {other:?}", self.1),
        }
    }
    fn all(&self, key: &str) -> &[String] {
        self.0.get(key).map_or(&[], Vec::as_slice)
    }
    fn n(&self, key: &str) -> u64 {
        num(self.one(key))
    }
}

/// Runs the example on `image` and checks every line against vm-loader's
/// JSON for the same image and placement; the snapshots of both must be
/// the same bytes.
fn compare(example: &Path, image: &Path, place: &[&str], scratch: &Path) {
    let img = image.to_str().unwrap();
    let what = format!("{img} {place:?}");
    let c_snap = scratch.join("c.image");
    let v_snap = scratch.join("v.image");
    let mut args: Vec<&str> = place.to_vec();
    args.extend(["--snapshot", c_snap.to_str().unwrap(), img]);
    let o = run(example, &args);
    assert!(
        o.status.success(),
        "spur_info {args:?}: {}",
        text(&o.stderr)
    );
    let c = Facts(facts(&text(&o.stdout)), what.clone());

    let relocate: Vec<&str> = place.to_vec();
    let with = |cmd: &[&str]| -> Value {
        let mut a = cmd.to_vec();
        a.extend(&relocate);
        a.extend([img, "--json"]);
        vm_json(&a)
    };

    // info: the header and the segments' old starts and sizes.
    let info = vm_json(&["info", img, "--json"]);
    for key in [
        "format",
        "word_size",
        "prefix_bytes",
        "header_size",
        "data_size",
        "old_base",
        "special_objects_oop",
        "last_hash",
        "first_segment_size",
        "free_old_space",
        "eden_bytes",
        "stack_pages",
        "cog_code_size",
        "max_ext_sem_table",
        "image_version",
        "extra_vm_memory",
        "multiple_bytecode_sets",
    ] {
        assert_eq!(c.n(key), u(&info[key]), "{what}: {key}");
    }
    assert_eq!(c.n("flags"), u(&info["flags"]["value"]), "{what}: flags");
    assert_eq!(c.one("byte_order"), info["byte_order"], "{what}");
    assert_eq!(c.one("input"), info["input"], "{what}");
    let w = &info["saved_window"];
    assert_eq!(
        c.one("saved_window"),
        format!("{}x{}", w["width"], w["height"]),
        "{what}"
    );

    // load: where each segment went.
    let load = with(&["load"]);
    assert_eq!(c.one("placement"), load["placement"], "{what}");
    assert_eq!(c.n("swizzled"), u(&load["swizzled"]), "{what}");
    let segs = load["segments"].as_array().unwrap();
    assert_eq!(c.n("segments"), segs.len() as u64, "{what}");
    assert_eq!(c.all("segment").len(), segs.len(), "{what}");
    for (line, (s, i)) in c
        .all("segment")
        .iter()
        .zip(segs.iter().zip(&info["segments"].as_array().unwrap()[..]))
    {
        let expect = format!(
            "{} old {:#x} new {:#x} size {}{}",
            s["index"],
            u(&i["old_start"]),
            u(&s["new_start"]),
            u(&i["size"]),
            if s["mapped"] == true { " mapped" } else { "" }
        );
        assert_eq!(*line, expect, "{what}");
        assert_eq!(s["old_start"], i["old_start"], "{what}");
    }

    // stats: the totals and the top ten.
    let stats = with(&["stats"]);
    let rows = stats["classes"].as_array().unwrap();
    assert_eq!(
        c.one("histogram"),
        format!(
            "{} classes, {} instances, {} bytes",
            rows.len(),
            stats["total"]["instances"],
            stats["total"]["bytes"]
        ),
        "{what}"
    );
    let top: Vec<String> = rows
        .iter()
        .take(10)
        .map(|r| {
            format!(
                "{} {} {}",
                r["instances"],
                r["bytes"],
                r["class"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(c.all("class"), top.as_slice(), "{what}");

    // launch: the resume point, the tables, new space and the stack zone.
    let l = with(&launch_dry_run());
    let r = &l["resume"];
    assert_eq!(c.one("dialect"), l["dialect"], "{what}");
    for key in [
        "process",
        "context",
        "method",
        "receiver",
        "pc",
        "stack_pointer",
        "in_block",
    ] {
        assert_eq!(
            c.n(&format!("resume.{key}")),
            u(&r[key]),
            "{what}: resume.{key}"
        );
    }
    assert_eq!(c.one("resume.selector"), r["selector"], "{what}");
    assert_eq!(c.one("resume.method_name"), r["method_name"], "{what}");
    let so = &l["special_objects"];
    assert_eq!(
        c.one("special_objects"),
        format!(
            "{:#x} length {} nil {:#x} false {:#x} true {:#x}",
            u(&so["array"]),
            so["length"],
            u(&so["nil"]),
            u(&so["false"]),
            u(&so["true"])
        ),
        "{what}"
    );
    let ct = &l["class_table"];
    assert_eq!(
        c.one("class_table"),
        format!("{} pages, {} classes", ct["pages"], ct["classes"]),
        "{what}"
    );
    // New space's addresses are the same in both processes when it sits
    // below old space; elsewhere the kernel chooses.
    let ns = &l["new_space"];
    let line = c.one("new_space");
    let sizes = format!(
        "{} bytes, eden {{}} {} bytes, survivors {}, {}",
        ns["bytes"],
        ns["eden_bytes"],
        ns["survivor_bytes"],
        ns["placed"].as_str().unwrap()
    );
    let (range, rest) = line.split_once(' ').unwrap();
    let (eden_at, _) = rest
        .strip_prefix(&format!("{} bytes, eden ", ns["bytes"]))
        .unwrap_or_else(|| panic!("{what}: {line:?}"))
        .split_once(' ')
        .unwrap();
    assert_eq!(rest.replacen(eden_at, "{}", 1), sizes, "{what}: new space");
    if ns["placed"] == "below-old-space" {
        assert_eq!(
            range,
            format!("{:#x}..{:#x}", u(&ns["start"]), u(&ns["end"])),
            "{what}"
        );
        assert_eq!(num(eden_at), u(&ns["eden_start"]), "{what}");
    }
    let st = &l["stack_pages"];
    let zone = c.one("stack_zone");
    let (_, zone_sizes) = zone.split_once(' ').unwrap();
    assert_eq!(
        zone_sizes,
        format!(
            "{} bytes, {} pages of {}",
            st["zone_bytes"], st["count"], st["page_bytes"]
        ),
        "{what}"
    );

    // snapshot: the same bytes as vm-loader's.
    let mut a = vec!["snapshot", img, v_snap.to_str().unwrap()];
    a.extend(&relocate);
    let o = run(Path::new(BIN), &a);
    assert!(o.status.success(), "vm-loader {a:?}: {}", text(&o.stderr));
    let (cb, vb) = (
        std::fs::read(&c_snap).unwrap(),
        std::fs::read(&v_snap).unwrap(),
    );
    assert!(
        cb == vb,
        "{what}: the snapshots differ ({} and {} bytes)",
        cb.len(),
        vb.len()
    );
    assert!(
        c.one("snapshot")
            .starts_with(&format!("{} bytes", cb.len())),
        "{what}"
    );
}

/// `launch --headless`, and `--dry-run` where the command line has an
/// interpreter to run otherwise: the resume point without running it.
fn launch_dry_run() -> Vec<&'static str> {
    let help = run(Path::new(BIN), &["launch", "--help"]);
    let mut args = vec!["launch", "--headless"];
    if text(&help.stdout).contains("--dry-run") {
        args.push("--dry-run");
    }
    args
}

fn synth(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut a = vec!["synth", out.to_str().unwrap()];
    a.extend(args);
    let o = run(Path::new(BIN), &a);
    assert!(o.status.success(), "vm-loader {a:?}: {}", text(&o.stderr));
    out
}

#[test]
fn the_c_example_matches_vm_loader_on_builder_images() {
    let dir = tempfile::tempdir().unwrap();
    let example = dir.path().join("spur_info");
    build_c("examples/c/spur_info.c", &example);
    let images = [
        synth(
            dir.path(),
            "two.image",
            &["--heap-kib", "2048", "--segments", "2", "--gap-mib", "1"],
        ),
        synth(
            dir.path(),
            "w32.image",
            &["--heap-kib", "1024", "--word-size", "4", "--segments", "3"],
        ),
        synth(
            dir.path(),
            "prefix.image",
            &["--heap-kib", "512", "--prefix", "--sista"],
        ),
        synth(
            dir.path(),
            "folder",
            &["--heap-kib", "1024", "--segments", "2", "--composed"],
        ),
    ];
    for image in &images {
        compare(&example, image, &[], dir.path());
        compare(&example, image, &["--relocate"], dir.path());
    }
    // A composed folder's segment files mapped, on the caller's promise.
    compare(&example, &images[3], &["--map-files"], dir.path());
    let o = run(&example, &["--map-files", images[3].to_str().unwrap()]);
    assert!(text(&o.stdout).contains(" mapped\n"), "{}", text(&o.stdout));
}

/// The header is C++ too: a C++ program includes it and links.
#[test]
fn the_header_compiles_and_links_as_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("t.cpp");
    std::fs::write(
        &src,
        "#include \"spur_loader.h\"\n\
         int main() { SpurImage none{}; return spur_release(none) == SPUR_E_HANDLE ? 0 : 1; }\n",
    )
    .unwrap();
    let exe = dir.path().join("t");
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".to_string());
    let o = Command::new(&cxx)
        .args(["-std=c++11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(workspace().join("include"))
        .arg(&src)
        .arg(lib_dir().join("libspur_capi.a"))
        .args(["-lpthread", "-ldl", "-lm", "-lrt", "-lutil", "-o"])
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| panic!("running {cxx} (install a C++ compiler): {e}"));
    assert!(o.status.success(), "{cxx}: {}", text(&o.stderr));
    assert!(run(&exe, &[]).status.success());
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn the_c_example_matches_vm_loader_on_the_corpus() {
    let corpus = spur_tests::corpus_dir();
    let dir = tempfile::tempdir().unwrap();
    let example = dir.path().join("spur_info");
    build_c("examples/c/spur_info.c", &example);
    for image in spur_tests::CORPUS {
        let path = corpus.join(image.file);
        compare(&example, &path, &[], dir.path());
        compare(&example, &path, &["--relocate"], dir.path());
    }
}

#[test]
fn the_c_example_says_what_vm_loader_says_about_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let example = dir.path().join("spur_info");
    build_c("examples/c/spur_info.c", &example);
    let missing = dir.path().join("missing.image");
    let o = run(&example, &[missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        text(&o.stderr),
        format!(
            "spur_info: {}\n",
            vm_error(&["load", missing.to_str().unwrap()])
        )
    );
}

/// The C test over one image: it must pass, and the messages it shows must
/// be the lines vm-loader prints for the same input.
fn abuse(program: &Path, good: &Path) {
    let scratch = tempfile::tempdir().unwrap();
    let sd = scratch.path();
    let g = good.to_str().unwrap();
    let o = run(program, &[g, sd.to_str().unwrap()]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "abuse {g}:\n{out}{}", text(&o.stderr));
    assert!(out.contains(" passed, 0 failed"), "{out}");
    let p = |name: &str| sd.join(name).to_str().unwrap().to_string();
    let mut msgs = BTreeMap::new();
    for line in out.lines() {
        if let Some(m) = line.strip_prefix("msg ") {
            let (k, v) = m.split_once(": ").unwrap();
            msgs.insert(k.to_string(), v.to_string());
        }
    }
    let expect = [
        ("missing", vm_error(&["load", &p("no-such-folder/x.image")])),
        ("folder", vm_error(&["load", &p("empty-folder")])),
        ("base", vm_error(&["load", "--base", "0x1003", g])),
        (
            "truncated-header",
            vm_error(&["load", &p("truncated-header.image")]),
        ),
        (
            "truncated-data",
            vm_error(&["load", &p("truncated-data.image")]),
        ),
        ("bad-magic", vm_error(&["load", &p("bad-magic.image")])),
        (
            "bad-segment-size",
            vm_error(&["load", &p("bad-segment-size.image")]),
        ),
        (
            "stack-pages",
            vm_error(&["launch", "--headless", "--stack-pages", "70000", g]),
        ),
        ("wire-refused", {
            let image = p("specials-nil.image");
            let mut a = launch_dry_run();
            a.push(&image);
            vm_error(&a)
        }),
        (
            "snapshot-missing-folder",
            vm_error(&["snapshot", g, &p("no-such-folder/out.image")]),
        ),
    ];
    for (name, line) in expect {
        assert_eq!(msgs.get(name), Some(&line), "{g}: the message of {name}");
    }
}

#[test]
fn the_c_test_of_bad_input_passes_with_vm_loaders_messages() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("abuse");
    build_c("crates/spur-capi/tests/c/abuse.c", &program);
    let w64 = synth(
        dir.path(),
        "w64.image",
        &["--heap-kib", "1024", "--segments", "2"],
    );
    let w32 = synth(
        dir.path(),
        "w32.image",
        &["--heap-kib", "1024", "--word-size", "4"],
    );
    abuse(&program, &w64);
    abuse(&program, &w32);
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn the_c_test_of_bad_input_passes_over_corpus_images() {
    let corpus = spur_tests::corpus_dir();
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("abuse");
    build_c("crates/spur-capi/tests/c/abuse.c", &program);
    for image in spur_tests::CORPUS {
        abuse(&program, &corpus.join(image.file));
    }
}
