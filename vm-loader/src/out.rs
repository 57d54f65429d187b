//! Printing results: one JSON object, or text for people.

use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;

/// Prints `value` as one JSON object (with `--json`) or `text` otherwise.
///
/// A reader that goes away early (`vm-loader info | head -1`) is not an
/// error: the rest of the output is dropped.
pub fn emit<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) -> Result<()> {
    let mut s = if json {
        serde_json::to_string_pretty(value).context("encoding the JSON output")?
    } else {
        text()
    };
    if !s.ends_with('\n') {
        s.push('\n');
    }
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(s.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

/// The error of a failed command as one JSON object on stdout (with
/// `--json`), so that a reader of stdout always gets JSON.
pub fn error_json(message: &str, exit_code: u8) {
    let v = serde_json::json!({ "error": message, "exit_code": exit_code });
    let _ = writeln!(std::io::stdout().lock(), "{v}");
}

/// A path as text for one line: control characters (a newline in a file
/// name) are escaped as Rust writes them (`\n`), everything else is kept.
pub fn shown(p: &std::path::Path) -> String {
    let text = p.to_string_lossy();
    if !text.chars().any(char::is_control) {
        return text.into_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Bytes in a readable unit (`4 MiB`, `1.5 KiB`, `312 bytes`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if n >= unit {
            return if n.is_multiple_of(unit) {
                format!("{} {name}", n / unit)
            } else {
                format!("{:.1} {name}", n as f64 / unit as f64)
            };
        }
    }
    format!("{n} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(human_bytes(312), "312 bytes");
        assert_eq!(human_bytes(4 << 20), "4 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }

    #[test]
    fn a_newline_in_a_path_is_shown_escaped() {
        assert_eq!(shown("a\nb.image".as_ref()), "a\\nb.image");
        assert_eq!(shown("é x.image".as_ref()), "é x.image");
    }
}
