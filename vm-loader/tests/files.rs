//! The files around an image: inputs and outputs that are not regular
//! files (FIFOs, devices, folders, symbolic links), the mode and owner of a
//! replaced image, the format chosen from OUT, synth's temporaries and
//! limits, and bytes after the data.

use spur_format::layout::to_usize;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_vm-loader");

/// A command that hangs is a failure, not a stuck test run.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `cmd` to its end, or kills it after [`TIMEOUT`] and fails.
fn finish(mut cmd: Command, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG")
        .spawn()
        .expect("running vm-loader");
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn vm_loader(args: &[&str]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args);
    finish(c, &format!("{args:?}"))
}

/// `vm-loader args...` under `umask mask`.
fn with_umask(mask: &str, args: &[&str]) -> Output {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("umask {mask}; exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(args);
    finish(c, &format!("umask {mask} {args:?}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok(args: &[&str]) -> Output {
    let out = vm_loader(args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    out
}

fn json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = ok(&a);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON: {e}"))
}

/// Exit code 2, one line on stderr that says `needle`, nothing on stdout.
fn assert_refused(args: &[&str], needle: &str) {
    let out = vm_loader(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?}: {}", stdout(&out));
    assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err:?}");
    assert!(
        err.contains(needle),
        "{args:?}: {err:?} does not say {needle:?}"
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small single-file image written by `vm-loader synth`.
fn synth(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    ok(&["synth", s(&p), "--heap-kib", "512", "--segments", "2"]);
    p
}

/// A small composed folder written by `vm-loader synth --composed`.
fn synth_composed(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    ok(&["synth", s(&p), "--heap-kib", "512", "--composed"]);
    p
}

fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo").arg(p).status().unwrap();
    assert!(st.success(), "mkfifo {}", p.display());
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

/// A character device node like /dev/full (1, 7), private to `dir`; only
/// root may make one.
fn mknod_full(p: &Path) -> bool {
    is_root()
        && Command::new("mknod")
            .arg(p)
            .args(["c", "1", "7"])
            .status()
            .unwrap()
            .success()
}

/// Names in `dir` that look like a writer's temporary.
fn temporaries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && (n.contains("tmp") || n.contains(".synth-")))
        .collect();
    v.sort();
    v
}

#[test]
fn a_fifo_or_a_device_as_image_is_refused_at_once_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("f.image");
    mkfifo(&fifo);
    let out = dir.path().join("out.image");
    for args in [
        vec!["info", s(&fifo)],
        vec!["load", s(&fifo)],
        vec!["verify", s(&fifo)],
        vec!["launch", s(&fifo), "--headless"],
        vec!["stats", s(&fifo)],
        vec!["snapshot", s(&fifo), s(&out)],
        vec!["convert", s(&fifo), s(&out), "--to", "composed"],
    ] {
        assert_refused(&args, "FIFO");
    }
    assert_refused(&["info", "/dev/zero"], "character device");
    assert_refused(&["load", "/dev/null"], "character device");
    assert!(!out.exists());
}

#[test]
fn a_fifo_inside_a_composed_folder_is_named_not_called_missing() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["header.ston", "seg0.data", "seg0.ston"] {
        let folder = synth_composed(dir.path(), &format!("c-{name}"));
        std::fs::remove_file(folder.join(name)).unwrap();
        mkfifo(&folder.join(name));
        assert_refused(&["info", s(&folder)], name);
        assert_refused(&["load", s(&folder)], "FIFO");
    }
}

#[test]
fn an_out_that_is_not_a_regular_file_or_an_image_folder_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let img = synth(dir.path(), "in.image");
    let folder = synth_composed(dir.path(), "in.composed");
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let dev = dir.path().join("full");
    let mut specials = vec![(fifo.clone(), "FIFO")];
    if mknod_full(&dev) {
        specials.push((dev.clone(), "character device"));
    }
    for (out, what) in &specials {
        let o = s(out);
        for args in [
            vec!["snapshot", s(&img), o],
            vec!["snapshot", s(&img), o, "--background"],
            vec!["snapshot", s(&img), o, "--format", "composed"],
            vec!["snapshot", s(&folder), o],
            vec!["convert", s(&img), o, "--to", "composed"],
            vec!["convert", s(&folder), o, "--to", "single"],
            vec!["synth", o, "--heap-kib", "256"],
            vec!["synth", o, "--heap-kib", "256", "--composed"],
        ] {
            assert_refused(&args, what);
            let t = std::fs::symlink_metadata(out).unwrap().file_type();
            assert!(t.is_fifo() || t.is_char_device(), "{args:?} replaced it");
        }
    }
    assert_eq!(temporaries(dir.path()), Vec::<String>::new());

    // A folder that is not a composed image is never replaced, and a folder
    // is refused as the target of a single file before anything is written.
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("notes.txt"), "mine").unwrap();
    for args in [
        vec!["snapshot", s(&img), s(&plain), "--format", "composed"],
        vec!["convert", s(&img), s(&plain), "--to", "composed"],
        vec!["synth", s(&plain), "--heap-kib", "256", "--composed"],
    ] {
        assert_refused(&args, "not a composed image");
        assert_eq!(std::fs::read(plain.join("notes.txt")).unwrap(), b"mine");
    }
    for args in [
        vec!["snapshot", s(&img), s(&plain)],
        vec!["snapshot", s(&img), s(&plain), "--background"],
        vec!["snapshot", s(&img), s(&folder), "--format", "single"],
        vec!["synth", s(&plain), "--heap-kib", "256"],
    ] {
        assert_refused(&args, "a directory");
        assert!(std::fs::symlink_metadata(args[2].as_ref() as &Path)
            .map(|m| m.is_dir())
            .unwrap_or(true));
    }
    assert_eq!(temporaries(dir.path()), Vec::<String>::new());
    // A composed folder may be replaced by a composed image.
    ok(&["snapshot", s(&img), s(&folder), "--format", "composed"]);
}

#[test]
fn a_symlink_out_is_written_through_to_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let img = synth(dir.path(), "in.image");
    let real = synth(dir.path(), "real.image");
    std::fs::write(&real, b"old").unwrap();
    let link = dir.path().join("current.image");
    std::os::unix::fs::symlink("real.image", &link).unwrap();
    for bg in [false, true] {
        let mut args = vec!["snapshot", s(&img), s(&link)];
        if bg {
            args.push("--background");
        }
        ok(&args);
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), std::fs::read(&img).unwrap());
        std::fs::write(&real, b"old").unwrap();
    }
    // A link to nothing is refused: there is no file to write through to.
    let dangling = dir.path().join("dangling.image");
    std::os::unix::fs::symlink("nowhere/x.image", &dangling).unwrap();
    assert_refused(&["snapshot", s(&img), s(&dangling)], "symbolic link");
    // A link to a FIFO is a FIFO.
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let to_fifo = dir.path().join("to-fifo.image");
    std::os::unix::fs::symlink(&fifo, &to_fifo).unwrap();
    assert_refused(&["snapshot", s(&img), s(&to_fifo)], "FIFO");
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_replaced_image_keeps_its_mode_and_owner() {
    let dir = tempfile::tempdir().unwrap();
    let img = synth(dir.path(), "in.image");
    let root = is_root();
    for bg in [false, true] {
        for out in [img.clone(), dir.path().join("other.image")] {
            if out != img {
                std::fs::copy(&img, &out).unwrap();
            }
            std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o600)).unwrap();
            if root {
                std::os::unix::fs::chown(&out, Some(65534), Some(65534)).unwrap();
            }
            let mut args = vec!["snapshot", s(&img), s(&out)];
            if bg {
                args.push("--background");
            }
            ok(&args);
            assert_eq!(mode(&out), 0o600, "{args:?}");
            if root {
                let m = std::fs::metadata(&out).unwrap();
                assert_eq!((m.uid(), m.gid()), (65534, 65534), "{args:?}");
            }
        }
    }
    // A new file gets the umask's default.
    let new = dir.path().join("new.image");
    let o = with_umask("027", &["snapshot", s(&img), s(&new)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(mode(&new), 0o640);

    // A composed folder keeps the folder's and each file's mode and owner.
    let folder = dir.path().join("c");
    ok(&["convert", s(&img), s(&folder), "--to", "composed"]);
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(&folder).unwrap().flatten() {
        std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        if root {
            std::os::unix::fs::chown(e.path(), Some(65534), Some(65534)).unwrap();
        }
    }
    if root {
        std::os::unix::fs::chown(&folder, Some(65534), Some(65534)).unwrap();
    }
    ok(&["convert", s(&img), s(&folder), "--to", "composed"]);
    assert_eq!(mode(&folder), 0o700);
    for e in std::fs::read_dir(&folder).unwrap().flatten() {
        assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
        if root {
            assert_eq!(e.metadata().unwrap().uid(), 65534);
        }
    }
    if root {
        assert_eq!(std::fs::metadata(&folder).unwrap().uid(), 65534);
    }
}

#[test]
fn the_format_written_follows_out_or_format_and_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let folder = synth_composed(dir.path(), "in");
    // OUT ending in .image: a single file, as `snapshot --help` says.
    let single = dir.path().join("x.image");
    let o = ok(&["snapshot", s(&folder), s(&single)]);
    assert!(single.is_file(), "{} is not a file", single.display());
    assert!(stdout(&o).contains("a single file"), "{}", stdout(&o));
    let j = json(&["snapshot", s(&folder), s(&single)]);
    assert_eq!(j["written"], "single");
    // Without a hint in the name, the input's format.
    let again = dir.path().join("again");
    let o = ok(&["snapshot", s(&folder), s(&again)]);
    assert!(again.join("header.ston").is_file());
    assert!(stdout(&o).contains("a composed folder"), "{}", stdout(&o));
    // --format wins over the name.
    let forced = dir.path().join("forced.image");
    let j = json(&["snapshot", s(&single), s(&forced), "--format", "composed"]);
    assert_eq!(j["written"], "composed");
    assert!(forced.join("header.ston").is_file());
}

#[test]
fn synth_refuses_what_cannot_fit_before_writing_and_cleans_up_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("huge.image");
    // Refused before anything is written: the folder stays empty.
    assert_refused(&["synth", s(&out), "--heap-mib", "100000000"], "free");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());

    // Killed mid-write, synth leaves a temporary that the next run removes.
    let big = dir.path().join("big.image");
    let mut caught = false;
    for _ in 0..10 {
        let mut child = Command::new(BIN)
            .args(["synth", s(&big), "--heap-mib", "256"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        let mut mid = false;
        while t0.elapsed() < TIMEOUT {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let growing = std::fs::read_dir(dir.path()).unwrap().flatten().any(|e| {
                e.file_name().to_string_lossy().starts_with(".big.image")
                    && e.metadata().map(|m| m.len() > (1 << 20)).unwrap_or(false)
            });
            if growing {
                mid = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        if mid && status.code().is_none() && !big.exists() {
            caught = true;
            break;
        }
        let _ = std::fs::remove_file(&big);
        for t in temporaries(dir.path()) {
            let _ = std::fs::remove_file(dir.path().join(t));
        }
    }
    assert!(caught, "never caught synth in the middle of a write");
    assert_eq!(temporaries(dir.path()).len(), 1);
    ok(&["synth", s(&big), "--heap-kib", "256"]);
    assert_eq!(temporaries(dir.path()), Vec::<String>::new());
}

#[test]
fn bytes_after_the_data_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let img = synth(dir.path(), "t.image");
    let mut bytes = std::fs::read(&img).unwrap();
    bytes.extend((0..320u32).map(|i| (i * 7).to_le_bytes()[0]));
    std::fs::write(&img, &bytes).unwrap();
    let info = json(&["info", s(&img)]);
    assert_eq!(info["trailing_bytes"], 320);
    let j = json(&["snapshot", s(&img), s(&img)]);
    assert_eq!(j["trailing_bytes"], 320);
    assert!(std::fs::read(&img).unwrap() == bytes, "not byte-identical");
    let o = ok(&[
        "snapshot",
        s(&img),
        s(&dir.path().join("c")),
        "--format",
        "composed",
    ]);
    assert!(
        stdout(&o).contains("320 bytes after the data"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn an_out_name_near_the_length_limit_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let img = synth(dir.path(), "in.image");
    let long = dir.path().join(format!("{}.image", "n".repeat(249)));
    ok(&["snapshot", s(&img), s(&long)]);
    ok(&["snapshot", s(&img), s(&long), "--background"]);
    assert!(std::fs::read(&long).unwrap() == std::fs::read(&img).unwrap());
    let folder = dir.path().join("c".repeat(255));
    ok(&["convert", s(&img), s(&folder), "--to", "composed"]);
    ok(&["synth", s(&long), "--heap-kib", "256"]);
    assert_eq!(temporaries(dir.path()), Vec::<String>::new());
}

#[test]
fn a_composed_snapshot_counts_every_file_and_errors_name_the_file_and_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let img = synth(dir.path(), "in.image");
    let folder = dir.path().join("c");
    let j = json(&["convert", s(&img), s(&folder), "--to", "composed"]);
    let on_disk: u64 = std::fs::read_dir(&folder)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert_eq!(j["bytes_written"], on_disk);
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    assert_refused(
        &["convert", s(&img), s(&fifo), "--to", "single"],
        "convert to",
    );
    // A file too short for a header is named.
    let one = dir.path().join("one.image");
    std::fs::write(&one, b"x").unwrap();
    assert_refused(&["info", s(&one)], &format!("{}: ", one.display()));
    // A newline in a name does not break the line.
    let nl = synth(dir.path(), "a\nb.image");
    let o = ok(&["snapshot", s(&nl), s(&nl)]);
    assert_eq!(stdout(&o).lines().count(), 3, "{}", stdout(&o));
}

#[test]
fn under_json_an_error_is_a_json_object_too() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("f.image");
    mkfifo(&fifo);
    let o = vm_loader(&["info", s(&fifo), "--json"]);
    assert_eq!(o.status.code(), Some(2));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(j["error"].as_str().unwrap().contains("FIFO"), "{j}");
    assert_eq!(j["exit_code"], 2);
}

#[test]
fn relocated_snapshots_are_reproducible_and_a_low_base_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let img = synth(dir.path(), "in.image");
    let a = dir.path().join("a.image");
    let b = dir.path().join("b.image");
    let ja = json(&["snapshot", s(&img), s(&a), "--relocate"]);
    json(&["snapshot", s(&img), s(&b), "--relocate"]);
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());
    assert_eq!(ja["old_base"], 0x2000_0000_0000u64);
    assert_refused(&["load", s(&img), "--base", "0x8"], "--base 0x8");
}

#[test]
fn a_too_small_eden_is_reported_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let img = synth(dir.path(), "in.image");
    assert_refused(
        &["launch", s(&img), "--headless", "--eden-bytes", "1"],
        "new space of 1 bytes",
    );
}

#[test]
fn info_says_more_and_launch_and_verify_say_why_a_heap_moved() {
    let dir = tempfile::tempdir().unwrap();
    let img = synth(dir.path(), "in.image");
    let info = json(&["info", s(&img), "--dialect"]);
    let l = json(&["launch", s(&img), "--headless", "--dry-run"]);
    assert_eq!(info["dialect"], l["dialect"]);
    assert_eq!(info["dialect_evidence"], l["dialect_evidence"]);
    assert_eq!(info["input"], "file");
    assert_eq!(info["saved_window"]["width"], 1024);
    assert_eq!(info["saved_window"]["height"], 768);
    assert_eq!(info["segments"][0]["file_offset"], info["header_size"]);
    let folder = synth_composed(dir.path(), "c");
    let o = ok(&["info", s(&folder)]);
    assert!(stdout(&o).starts_with("a composed image"), "{}", stdout(&o));
    // Placed at its old addresses, nothing moved it: the field is there, null.
    let v = json(&["verify", s(&img)]);
    assert!(v.get("fallback").is_some_and(Value::is_null), "{v}");
    assert!(
        l["image"].get("fallback").is_some_and(Value::is_null),
        "{l}"
    );
}

#[test]
fn bench_checks_its_files_first_and_names_its_images() {
    let dir = tempfile::tempdir().unwrap();
    let img = synth(dir.path(), "named.image");
    let nowhere = dir.path().join("no/such/plot.svg");
    let o = vm_loader(&["bench", s(&img), "--runs", "1", "--plot", s(&nowhere)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("measuring"),
        "measured first: {}",
        stderr(&o)
    );
    let missing = dir.path().join("scratch");
    assert_refused(
        &["bench", s(&img), "--runs", "1", "--dir", s(&missing)],
        "--dir",
    );
    assert!(!missing.exists(), "--dir was created");
    let o = ok(&["bench", s(&img), "--runs", "1"]);
    let table = stdout(&o);
    assert!(
        table
            .lines()
            .nth(2)
            .is_some_and(|l| l.ends_with("named.image")),
        "{table}"
    );
}

#[test]
fn help_names_every_command() {
    let o = ok(&["--help"]);
    let first = stdout(&o).lines().next().unwrap_or_default().to_string();
    for cmd in [
        "info", "load", "verify", "launch", "stats", "synth", "snapshot", "convert", "bench",
    ] {
        assert!(first.contains(cmd), "{first:?} does not name {cmd}");
    }
}

#[test]
fn launch_json_gives_each_instruction_as_bytes_and_fields() {
    let dir = tempfile::tempdir().unwrap();
    let img = synth(dir.path(), "in.image");
    let j = json(&["launch", s(&img), "--headless", "--dry-run"]);
    let r = &j["resume"];
    let ins = r["instructions"].as_array().unwrap();
    assert_eq!(ins.len(), r["bytecodes"].as_array().unwrap().len());
    let cur = &ins[to_usize(r["current"].as_u64().unwrap())];
    assert_eq!(cur["pc"], r["pc"]);
    let bytes = cur["bytes"].as_array().unwrap();
    assert!(!bytes.is_empty());
    // The text form shows the same first byte in hex.
    let text = cur["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("<{:02X}", bytes[0].as_u64().unwrap())),
        "{text} vs {bytes:?}"
    );
    assert!(!cur["op"].as_str().unwrap().is_empty());
    for w in ins.windows(2) {
        let next = w[0]["pc"].as_u64().unwrap() + w[0]["bytes"].as_array().unwrap().len() as u64;
        assert_eq!(w[1]["pc"].as_u64().unwrap(), next);
    }
}
