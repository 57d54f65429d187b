//! The whole life of a real image under `vm-loader launch`: the Pharo 8
//! kernel of the corpus, copied into a temporary folder, starts, saves
//! itself through the project's snapshot writer (primitive 97) and quits;
//! the image it wrote verifies intact and handles its command line
//! (`printVersion`, `--version`) on the next starts. In place, relocated on
//! every start, and as a composed folder. A snapshot that cannot be written
//! (a full disk, a read-only folder) or a start killed at any moment leaves
//! the original image whole. Needs `SPUR_CORPUS`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod common;
use common::*;

const VERSION_LINE: &str = "[version] 'Pharo8.0.0' 'Pharo-8.0.0+build.1080.sha.9f5ce2e9";

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not a number"))
}

/// `launch --headless` of `image` with `extra` options and the image's
/// `args`; answers its stdout, after checking it exited 0.
fn launch(image: &Path, extra: &[&str], args: &[&str]) -> String {
    let image = image.to_str().unwrap();
    let mut a = vec!["launch", image, "--headless"];
    a.extend_from_slice(extra);
    if !args.is_empty() {
        a.push("--");
        a.extend_from_slice(args);
    }
    let out = vm_loader(&a);
    assert_eq!(code(&out), 0, "{a:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn objects(image: &Path) -> u64 {
    let j = json(&["verify", "--json", image.to_str().unwrap()]);
    assert_eq!(j["ok"], true, "{j}");
    // No forwarder is left, and the header's free bytes are the free chunks'.
    assert_eq!(j["warnings"].as_array().map(Vec::len), Some(0), "{j}");
    u(&j["objects"])
}

/// First start, check of what it wrote, then two more starts.
fn life(image: &Path, extra: &[&str]) {
    let before = objects(image);
    let header_before = json(&["info", "--json", image.to_str().unwrap()]);
    // The first start ignores its arguments, saves itself and quits.
    let mut a = vec!["launch", image.to_str().unwrap(), "--headless", "--json"];
    a.extend_from_slice(extra);
    let run = json(&a);
    assert_eq!(run["ended"], "quit", "{run}");
    assert_eq!(run["exit_code"], 0, "{run}");
    assert_eq!(u(&run["snapshots"]), 1, "{run}");
    assert!(u(&run["tenured_objects"]) > 0, "{run}");
    assert!(u(&run["tenured_bytes"]) > 0, "{run}");
    assert!(u(&run["snapshot_us"]) > 0, "{run}");
    assert!(run.get("load_us").is_some(), "{run}");
    // A tiny eden fills many times over: the scavenger runs, and the run
    // ends as it does with the default eden (which scavenges only when the
    // image asks for a collection).
    if extra.contains(&"--eden-bytes") {
        assert!(u(&run["scavenges"]) > 5, "{run}");
        assert!(u(&run["survivor_bytes"]) > 0, "{run}");
    }
    // The headroom claimed at wiring holds what was tenured: old space
    // needs no new segment.
    assert_eq!(u(&run["old_space_growth"]), 0, "{run}");
    // The kernel starts its timer and idle processes and waits on them.
    assert!(u(&run["process_switches"]) > 0, "{run}");
    // The file written is a whole image with what new space held.
    let after = objects(image);
    assert!(after > before, "{after} objects saved, {before} before");
    let header = json(&["info", "--json", image.to_str().unwrap()]);
    assert!(
        u(&header["data_size"]) > u(&header_before["data_size"]),
        "{header}"
    );
    assert_ne!(header["last_hash"], header_before["last_hash"], "{header}");
    // The headroom's free chunk, what the copies left of it, is not written.
    assert!(
        u(&header["free_old_space"]) < u(&header["data_size"]) / 2,
        "{header}"
    );
    // Started again, it handles its command line and quits, every time.
    for _ in 0..2 {
        let out = launch(image, extra, &["printVersion"]);
        assert!(out.starts_with(VERSION_LINE), "{out}");
        assert_eq!(out.lines().count(), 1, "{out}");
    }
    // `--version` ends each of its two lines with the image's own
    // `VTermOutputDriver>>cr`, Termcap's `cr` sequence (escape, `[`, a
    // carriage return), which the stdout stream's newline writer turns
    // into a line feed: a real VM prints the same bytes.
    let out = launch(image, extra, &["--version"]);
    let lines: Vec<&str> = out.split_inclusive('\n').collect();
    // The VM's version (attribute 1009) takes two lines, as Cog's does.
    assert_eq!(lines.len(), 4, "{out:?}");
    assert!(
        lines[0].starts_with("Image: Pharo-8.0.0+build.1080.sha.9f5ce2e9")
            && lines[0].ends_with(" (64 Bit)\u{1b}[\n"),
        "{out:?}"
    );
    assert!(lines[1].starts_with("VM:    StackInterpreter"), "{out:?}");
    assert_eq!(lines[3], "\u{1b}[\n", "{out:?}");
    // `--help` prints the handler's class comment on stderr; the kernel
    // keeps no class comments, so what it prints is the default one, the
    // template.
    let mut a = vec!["launch", image.to_str().unwrap(), "--headless"];
    a.extend_from_slice(extra);
    a.extend_from_slice(&["--", "--help"]);
    let out = vm_loader(&a);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(stderr(&out).starts_with("Please comment me"), "{out:?}");
}

fn kernel_copy(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("Pharo.image");
    std::fs::copy(
        spur_tests::corpus_dir().join("pharo8-kernel-empharo-64.image"),
        &path,
    )
    .unwrap();
    path
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn the_pharo8_kernel_saves_itself_and_starts_again_in_place() {
    let dir = tempfile::tempdir().unwrap();
    life(&kernel_copy(dir.path()), &[]);
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn the_pharo8_kernel_saves_itself_and_starts_again_relocated() {
    let dir = tempfile::tempdir().unwrap();
    life(&kernel_copy(dir.path()), &["--relocate"]);
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn the_pharo8_kernel_saves_itself_and_starts_again_with_a_tiny_eden() {
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB of new space with one stack page: eden holds some 30 KiB below
    // its scavenge threshold.
    life(
        &kernel_copy(dir.path()),
        &["--eden-bytes", "65536", "--stack-pages", "1"],
    );
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn the_pharo8_kernel_as_a_composed_folder_saves_a_composed_folder() {
    let dir = tempfile::tempdir().unwrap();
    let file = kernel_copy(dir.path());
    let folder = dir.path().join("Pharo");
    json(&[
        "convert",
        "--json",
        "--to",
        "composed",
        file.to_str().unwrap(),
        folder.to_str().unwrap(),
    ]);
    life(&folder, &[]);
    assert!(folder.join("header.ston").is_file());
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn a_snapshot_the_disk_cannot_hold_leaves_the_image_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let image = kernel_copy(dir.path());
    let original = std::fs::read(&image).unwrap();
    // A file-size limit of 1 or 2 MiB (less than the 2.4 MiB the image
    // writes; reading is not limited) makes the write fail as a full disk does.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -f 2048 && exec '{BIN}' launch '{}' --headless",
            image.display()
        ))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert!(
        err.contains("snapshot to ") && err.contains("nothing was replaced"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(std::fs::read(&image).unwrap(), original);
    // No temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn a_start_killed_at_any_moment_leaves_an_image_that_starts() {
    let dir = tempfile::tempdir().unwrap();
    let image = kernel_copy(dir.path());
    let original = std::fs::read(&image).unwrap();
    // Killed before, during or after its snapshot: the image there is the
    // original or the new one, whole, never a mix; a later start works.
    for ms in [20, 80, 150, 250, 400, 700] {
        std::fs::write(&image, &original).unwrap();
        let mut child = std::process::Command::new(BIN)
            .args(["launch", image.to_str().unwrap(), "--headless"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
        let now = std::fs::read(&image).unwrap();
        if now != original {
            let j = json(&["verify", "--json", image.to_str().unwrap()]);
            assert_eq!(j["ok"], true, "killed after {ms} ms: {j}");
        }
        let out = launch(&image, &[], &["printVersion"]);
        if now == original {
            // The original ignores its arguments: it saves itself and quits.
            assert!(out.is_empty(), "{out}");
        } else {
            assert!(out.starts_with(VERSION_LINE), "killed after {ms} ms: {out}");
        }
    }
    // What killed writers left behind is gone after the next snapshot.
    std::fs::write(&image, &original).unwrap();
    launch(&image, &[], &[]);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "Pharo.image")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Makes a folder unwritable for as long as it lives, for root too, and
/// writable again when dropped (also when the test fails).
///
/// Root ignores permission bits, so as root the folder gets the immutable
/// attribute (`chattr +i`: no entry can be created, renamed or removed in
/// it, whoever asks); as anyone else, mode 0555. The immutable attribute
/// needs a filesystem that keeps it (ext4, xfs, btrfs, tmpfs since Linux
/// 6.0) and the CAP_LINUX_IMMUTABLE capability root has. A folder counts as
/// unwritable only once creating a file in it has failed, so the test
/// cannot pass on a folder that stayed writable.
struct ReadOnlyFolder {
    dir: PathBuf,
    immutable: bool,
}

impl ReadOnlyFolder {
    /// `None` (and the folder as it was) when it could not be made unwritable.
    fn new(dir: &Path) -> Option<ReadOnlyFolder> {
        let immutable = nix::unistd::geteuid().is_root();
        if immutable {
            let st = Command::new("chattr").arg("+i").arg(dir).status();
            if !st.is_ok_and(|s| s.success()) {
                return None;
            }
        } else {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).ok()?;
        }
        let guard = ReadOnlyFolder {
            dir: dir.to_path_buf(),
            immutable,
        };
        let probe = dir.join("probe");
        let made = std::fs::File::create(&probe).is_ok();
        let _ = std::fs::remove_file(&probe);
        (!made).then_some(guard)
    }
}

impl Drop for ReadOnlyFolder {
    fn drop(&mut self) {
        if self.immutable {
            let _ = Command::new("chattr").arg("-i").arg(&self.dir).status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755));
        }
    }
}

/// A temporary folder holding a copy of the kernel image, and the guard
/// that keeps it unwritable: in the system's temporary folder, or Cargo's
/// test scratch folder under `target/` when the former's filesystem keeps
/// no immutable attribute.
fn read_only_kernel_copy() -> (tempfile::TempDir, PathBuf, ReadOnlyFolder) {
    let bases = [
        std::env::temp_dir(),
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
    ];
    for base in &bases {
        let dir = tempfile::tempdir_in(base).unwrap();
        let image = kernel_copy(dir.path());
        if let Some(guard) = ReadOnlyFolder::new(dir.path()) {
            return (dir, image, guard);
        }
    }
    panic!("none of {bases:?} can be made unwritable (as root: chattr +i)");
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn a_snapshot_into_a_read_only_folder_fails_and_leaves_the_image_as_it_was() {
    let (dir, image, read_only) = read_only_kernel_copy();
    let original = std::fs::read(&image).unwrap();
    let names_before: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let out = Command::new(BIN)
        .args(["launch", image.to_str().unwrap(), "--headless"])
        .output()
        .unwrap();
    drop(read_only);
    let err = stderr(&out);
    // Primitive 97 fails: the writer could not create its temporary file
    // beside the image, and says so in one line.
    assert!(
        err.contains("snapshot to ")
            && err.contains("nothing was replaced")
            && err.contains("creating a temporary file"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // The image's own handling: `SessionManager>>snapshot:andQuit:` takes
    // the failed primitive's nil as "not starting", and since it was asked
    // to quit, quits through primitive 113 with its default code 0, before
    // reaching its "Failed to write image file" error. Nothing on stdout.
    assert_eq!(code(&out), 0, "{err}");
    assert!(
        out.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(std::fs::read(&image).unwrap(), original);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, names_before, "no temporary file is left");
}
