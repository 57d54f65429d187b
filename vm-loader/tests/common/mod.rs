//! Helpers the `vm-loader` end-to-end tests share: running the binary,
//! reading its JSON, checking one-line refusals, writing builder images.
//!
//! Each test binary uses only some of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use spur_synth::{SynthReport, SynthSpec};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_vm-loader");

/// Runs `vm-loader` with `args` (no `RUST_LOG`, so only warnings are logged).
pub fn vm_loader(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("running vm-loader")
}

/// The exit code; a death by signal fails the test.
pub fn code(out: &Output) -> i32 {
    out.status
        .code()
        .unwrap_or_else(|| panic!("vm-loader died by a signal: {}", stderr(out)))
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a command that must exit with `expect` and print one JSON object.
pub fn json_with(args: &[&str], expect: i32) -> Value {
    let out = vm_loader(args);
    assert_eq!(code(&out), expect, "{args:?}: {}", stderr(&out));
    parse_json(args, &out)
}

/// Runs a command that must succeed and print one JSON object.
pub fn json(args: &[&str]) -> Value {
    json_with(args, 0)
}

/// Like [`json`], and nothing may be said on stderr either.
pub fn json_quiet(args: &[&str]) -> Value {
    let out = vm_loader(args);
    assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
    assert!(
        out.stderr.is_empty(),
        "{args:?}: stderr not empty: {}",
        stderr(&out)
    );
    parse_json(args, &out)
}

fn parse_json(args: &[&str], out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Bad input: exit code 2 (never a panic's 101), nothing on stdout, and one
/// line on stderr that starts `vm-loader: ` and contains `needle`.
pub fn assert_one_line_failure(out: &Output, what: &str, needle: &str) {
    let err = stderr(out);
    assert_ne!(code(out), 101, "{what} panicked: {err}");
    assert_eq!(code(out), 2, "{what}: {err}");
    assert!(out.stdout.is_empty(), "{what} printed to stdout");
    assert_eq!(err.lines().count(), 1, "{what}: not one line: {err:?}");
    assert!(err.starts_with("vm-loader: "), "{what}: {err}");
    assert!(
        err.contains(needle),
        "{what}: {err:?} does not name {needle:?}"
    );
}

/// Runs `args`, which must be refused as [`assert_one_line_failure`] says.
pub fn assert_refused(args: &[&str], needle: &str) {
    assert_one_line_failure(&vm_loader(args), &format!("{args:?}"), needle);
}

/// Writes a builder image `dir/name`.
pub fn write(dir: &Path, name: &str, spec: &SynthSpec) -> (PathBuf, SynthReport) {
    let path = dir.join(name);
    let report = spur_synth::write_image_file(spec, &path).expect("writing a synth image");
    (path, report)
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// The keys of a JSON object, sorted.
pub fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<_> = v
        .as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}
