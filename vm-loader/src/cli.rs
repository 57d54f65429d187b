//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use spur_loader::PlacementRequest;

/// Inspect, load and verify Spur (Pharo, Squeak, Cuis) images.
#[derive(Debug, Parser)]
#[command(name = "vm-loader", version, about)]
pub struct Cli {
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the header and the segments, without loading the heap.
    Info(InfoArgs),
    /// Load the heap into memory and report where it went.
    Load(LoadArgs),
    /// Load the heap and check it object by object.
    Verify(LoadArgs),
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The image file.
    pub image: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The image file.
    pub image: Option<PathBuf>,
    #[command(flatten)]
    pub place: PlaceArgs,
}

/// Where to put the heap.
#[derive(Debug, Args)]
pub struct PlaceArgs {
    /// Put nil at exactly this address (hex with 0x, or decimal), coalescing
    /// the segments and swizzling.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr, conflicts_with = "relocate")]
    pub base: Option<u64>,
    /// Load away from the old addresses even when they are free.
    #[arg(long)]
    pub relocate: bool,
}

impl PlaceArgs {
    pub fn request(&self) -> PlacementRequest {
        match (self.base, self.relocate) {
            (Some(addr), _) => PlacementRequest::At(addr),
            (None, true) => PlacementRequest::Relocate,
            (None, false) => PlacementRequest::OldBase,
        }
    }
}

/// An address or size: `0x`-prefixed hex, or decimal; `_` may group digits.
pub fn parse_addr(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse::<u64>(),
    };
    parsed.map_err(|e| format!("{s:?} is not an address (hex with 0x, or decimal): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn addresses_parse_as_hex_or_decimal() {
        assert_eq!(parse_addr("0x804000"), Ok(0x804000));
        assert_eq!(parse_addr("0X2000_0008"), Ok(0x2000_0008));
        assert_eq!(parse_addr("8404992"), Ok(0x804000));
        assert!(parse_addr("0x").is_err());
        assert!(parse_addr("-8").is_err());
        assert!(parse_addr("0x1_0000_0000_0000_0000").is_err());
        assert!(parse_addr("ten").is_err());
    }

    #[test]
    fn base_and_relocate_conflict() {
        let e = Cli::try_parse_from(["vm-loader", "load", "x", "--base", "0x1000", "--relocate"])
            .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        let c = Cli::try_parse_from(["vm-loader", "verify", "--base", "4096", "--json"]).unwrap();
        let Command::Verify(a) = c.command else {
            panic!("not verify")
        };
        assert_eq!(a.place.request(), PlacementRequest::At(4096));
        assert!(a.image.is_none());
        assert!(c.json);
    }
}
