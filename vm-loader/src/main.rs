//! `vm-loader`: inspect, load, verify, launch, build, snapshot and convert Spur images
//! from the command line, and measure load against snapshot time.
//!
//! Every subcommand prints a human-readable account by default and one JSON
//! object with `--json` (addresses as plain integers there, in hex for
//! people). Exit codes: 0 success, 1 the verifier found the heap corrupt,
//! 2 the image could not be read or loaded (or the command line was wrong,
//! which is clap's own code 2). Bad input is reported as exactly one line on
//! stderr, `vm-loader: <message>`, and with `--json` also as one JSON object
//! on stdout, `{"error": "<message>", "exit_code": 2}`; nothing is left
//! mapped, since the loaded heap unmaps itself when dropped.

// One `unsafe` call, allowed where it is made: `--map-files` takes the
// user's promise that the image's files stay unchanged (`cli.rs`).
#![deny(unsafe_code)]

mod bench;
mod cli;
mod image;
mod info;
mod launch;
mod load;
mod out;
mod plot;
mod progress;
mod snapshot;
mod stats;
mod synth;
mod verify;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

/// What a subcommand that ran to the end says about its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything is as it should be.
    Ok,
    /// The image loaded, but the verifier found corruption.
    Corrupt,
    /// An image ran and ended with this exit code.
    Exit(u8),
}

/// The exit code when the input cannot be used at all.
const EXIT_BAD_INPUT: u8 = 2;
const EXIT_CORRUPT: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    // A write past `ulimit -f` then fails with EFBIG, and the writer removes
    // its temporary file and says so, instead of the process dying of SIGXFSZ.
    if let Err(e) = spur_loader::snapshot::ignore_file_size_signal() {
        tracing::warn!("cannot ignore SIGXFSZ: {e}");
    }
    let result = match &cli.command {
        Command::Info(a) => info::run(a, cli.json),
        Command::Load(a) => load::run(a, cli.json),
        Command::Verify(a) => verify::run(a, cli.json),
        Command::Synth(a) => synth::run(a, cli.json),
        Command::Launch(a) => launch::run(a, cli.json),
        Command::Stats(a) => stats::run(a, cli.json),
        Command::Snapshot(a) => snapshot::run(a, cli.json),
        Command::Bench(a) => bench::run(a, cli.json),
        Command::Convert(a) => snapshot::convert(a, cli.json),
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Corrupt) => ExitCode::from(EXIT_CORRUPT),
        Ok(Outcome::Exit(c)) => ExitCode::from(c),
        Err(e) => {
            let line = one_line(&e);
            if cli.json {
                out::error_json(&line, EXIT_BAD_INPUT);
            }
            eprintln!("vm-loader: {line}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// Logs go to stderr; the level comes from `RUST_LOG` and defaults to `warn`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The error and its causes on one line (`outer: inner: ...`, anyhow's
/// alternate form; each error of the libraries says only its own part and
/// leaves its cause to `source()`).
///
/// Control characters, such as a newline in a file name, are written
/// escaped (`\n`), so the message stays one line and a name cannot move
/// the terminal's cursor.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for c in format!("{e:#}").chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_is_said_once_on_one_line() {
        /// An error that says its own part and reports its cause as its source.
        #[derive(Debug)]
        struct Open {
            path: String,
            source: std::io::Error,
        }
        impl std::fmt::Display for Open {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "opening {}", self.path)
            }
        }
        impl std::error::Error for Open {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.source)
            }
        }
        let io = std::io::Error::other("disk\non fire");
        let e = anyhow::Error::new(Open {
            path: "a\nb".into(),
            source: io,
        })
        .context("reading x");
        assert_eq!(one_line(&e), "reading x: opening a\\nb: disk\\non fire");
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(one_line(&plain), "outer: inner");
    }
}
