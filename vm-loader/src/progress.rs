//! A progress bar on the terminal for long writes, and nothing otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Writes shorter than this finish before a bar would be worth drawing.
pub const MIN_BYTES: u64 = 64 << 20;

/// A bar for `total` bytes on stderr, when stderr is a terminal, the output
/// is not JSON and the write is big enough; otherwise a hidden bar, which
/// draws nothing.
pub fn bar(total: u64, json: bool, what: &str) -> ProgressBar {
    if json || total < MIN_BYTES || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_bar_for_json_or_small_writes() {
        assert!(bar(1 << 30, true, "x").is_hidden());
        assert!(bar(1 << 20, false, "x").is_hidden());
    }
}
