//! The command line.

use std::path::PathBuf;

use clap::builder::TypedValueParser as _;
use clap::{ArgGroup, Args, Parser, Subcommand};
use spur_format::WordSize;
use spur_loader::{LoadOptions, PlacementRequest};

/// Inspect, load, verify, launch and build Spur (Pharo, Squeak, Cuis) images.
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
    /// Write a test image made by the builder.
    Synth(SynthArgs),
    /// Load the heap, wire the runtime, and show where the image resumes.
    Launch(LaunchArgs),
    /// Count instances and bytes per class (a space tally), largest first.
    Stats(LoadArgs),
    /// Load an image and write the loaded heap back as an image (a snapshot).
    Snapshot(SnapshotArgs),
    /// Measure load and snapshot times against reading and writing the same bytes.
    Bench(BenchArgs),
    /// Rewrite an image in the other format: a single file or a composed folder.
    Convert(ConvertArgs),
}

/// The two ways an image can be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageFormat {
    /// One file: header, then the segments back to back.
    Single,
    /// Pharo's composed format: a folder of .ston and .data files.
    Composed,
}

/// Who writes a background snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WriterArg {
    /// A forked child process.
    Fork,
    /// A thread of this process over the write-protected heap.
    Thread,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The image to read: a single file or a composed folder.
    pub input: PathBuf,
    /// Where to write (replaced only once the new image is complete).
    pub out: PathBuf,
    /// The format to write.
    #[arg(long, value_enum)]
    pub to: ImageFormat,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The image to load: a single file, or a composed folder.
    pub image: PathBuf,
    /// Where to write the snapshot (replaced only once it is complete; may
    /// be IMAGE). Only a regular file or a composed folder is replaced; a
    /// symbolic link is written through to its file.
    pub out: PathBuf,
    #[command(flatten)]
    pub place: PlaceArgs,
    /// Write from a forked child while this process goes on; report the pause.
    #[arg(long)]
    pub background: bool,
    /// Who writes a --background snapshot: a forked child, or a thread of
    /// this process over the write-protected heap (each 2 MiB copied at its
    /// first write while the thread runs; a child where the kernel offers no
    /// write-protection)
    #[arg(
        long,
        value_enum,
        value_name = "WHO",
        default_value = "fork",
        requires = "background"
    )]
    pub writer: WriterArg,
    /// Desired new-space bytes to record in the header (default: as read).
    #[arg(long, value_name = "BYTES", value_parser = parse_u32)]
    pub eden_bytes: Option<u32>,
    /// Desired number of stack pages to record (default: as read).
    #[arg(long, value_name = "N")]
    pub stack_pages: Option<u16>,
    /// External semaphore table size to record (default: as read).
    #[arg(long, value_name = "N")]
    pub ext_sem_table: Option<u16>,
    /// The format to write (default: a single file when OUT ends in
    /// .image, a composed folder when OUT is one, else the input's; a single
    /// file cannot hold a perm space).
    #[arg(long, value_enum)]
    pub format: Option<ImageFormat>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("input").required(true).multiple(true).args(["images", "synth"])))]
pub struct BenchArgs {
    /// The images to measure.
    pub images: Vec<PathBuf>,
    /// Also measure builder images of these heap sizes in MiB (e.g. 16,64,256,1024),
    /// written into the scratch folder first.
    #[arg(long, value_name = "MIB,...", value_delimiter = ',')]
    pub synth: Vec<u64>,
    /// Measurements of each kind per image; the medians are reported.
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=1000).map(|n| n as usize))]
    pub runs: usize,
    /// Draw load and snapshot time against heap size into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// An existing folder for the builder images (kept there for the next
    /// run) and the files written (default: a new temporary folder, removed
    /// at the end). Writes land on its file system.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    #[arg(long, help = MAP_FILES_HELP)]
    pub map_files: bool,
    /// Which background writers to measure. A forked child's exit leaves
    /// this VM slower for a while (every run whose thread writer follows the
    /// child pays for it), so `thread` measures the writer thread as a
    /// process that only uses it sees it.
    #[arg(long, value_enum, value_name = "WHO", default_value = "both")]
    pub background_writers: BenchWriters,
}

/// The background writers `bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchWriters {
    /// The forked child and the writer thread.
    Both,
    /// The forked child only.
    Fork,
    /// The writer thread only: no fork in the whole run.
    Thread,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The image file (default: a small image made in memory by the builder).
    pub image: Option<PathBuf>,
    /// Also load the heap and wire it as launch does, to say which dialect
    /// (Pharo, Squeak, Cuis) the image is and on what evidence.
    #[arg(long)]
    pub dialect: bool,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The image file (default: a small image made in memory by the builder).
    pub image: Option<PathBuf>,
    #[command(flatten)]
    pub place: PlaceArgs,
}

#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// The image file (default: a small image made in memory by the builder).
    pub image: Option<PathBuf>,
    /// Run without a display; the only mode there is, so it is required.
    #[arg(long, required = true)]
    pub headless: bool,
    /// Bytes of new space (eden and survivors), overriding the header.
    #[arg(long, value_name = "N", value_parser = parse_size)]
    pub eden_bytes: Option<u64>,
    /// Number of stack pages, overriding the header.
    #[arg(long, value_name = "N", value_parser = parse_size)]
    pub stack_pages: Option<u64>,
    /// Size of the external semaphore table (rounded up to a power of two,
    /// never below the header's or the default 256).
    #[arg(long, value_name = "N", value_parser = parse_size)]
    pub ext_sem_table: Option<u64>,
    #[command(flatten)]
    pub place: PlaceArgs,
    /// Report where the image would resume and run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Stop after N bytecodes (a report, exit code 3).
    #[arg(long, value_name = "N", value_parser = parse_size)]
    pub max_bytecodes: Option<u64>,
    /// Stop after SECONDS of running (a report, exit code 3).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// The most MiB old space may grow by during the run; past it the run
    /// stops, out of memory (exit code 3). 0: no limit but the machine's.
    #[arg(long, value_name = "MIB", value_parser = parse_size, default_value_t = spur_interp::DEFAULT_GROWTH_LIMIT >> 20)]
    pub max_growth_mib: u64,
    /// Run without the method cache (for measurements).
    #[arg(long)]
    pub no_method_cache: bool,
    /// Allocate every context afresh instead of reusing returned ones.
    #[arg(long)]
    pub no_context_reuse: bool,
    /// Print the first N sends to stderr.
    #[arg(long, value_name = "N", value_parser = parse_size, default_value = "0")]
    pub trace_sends: u64,
    /// Print the run's counts to stderr when it ends (with --json, they are
    /// in the JSON report).
    #[arg(long)]
    pub stats: bool,
    /// Arguments for the image (those that start with - after --).
    #[arg(trailing_var_arg = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// Where to put the heap.
#[derive(Debug, Default, Args)]
pub struct PlaceArgs {
    /// Put nil at exactly this address (hex with 0x, or decimal), coalescing
    /// the segments and swizzling.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr, conflicts_with = "relocate")]
    pub base: Option<u64>,
    /// Load away from the old addresses even when they are free.
    #[arg(long)]
    pub relocate: bool,
    #[arg(long, help = MAP_FILES_HELP)]
    pub map_files: bool,
    /// Threads for the load (relocated: each reads and rewrites a part of a
    /// large segment; at the old base: one reads while another faults in
    /// pages) and for verify's walks (default: every core).
    /// The heap and the report are the same whatever the number.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1024).map(|n| n as usize))]
    pub threads: Option<usize>,
}

/// The help of `--map-files`.
const MAP_FILES_HELP: &str =
    "Map a composed image's segment files copy-on-write instead of reading \
    them: loading then costs the same whatever the size. This trusts that nobody writes to or \
    truncates the .data files while the image is loaded: a write may show through, and a \
    truncated file kills the program with SIGBUS when it touches a page past the new end.";

/// Load options: at `placement`, mapping a composed image's segment files
/// when the user passed `--map-files`.
#[allow(unsafe_code)]
pub fn load_options(placement: PlacementRequest, map_files: bool) -> LoadOptions {
    // SAFETY: `--map-files` is the user's word that nobody changes the
    // image's files while this process has them loaded, which is what
    // `FilesUnchanged::assume` asks; the flag's help says so.
    let map_files = map_files.then(|| unsafe { spur_loader::FilesUnchanged::assume() });
    LoadOptions {
        placement,
        map_files,
        ..Default::default()
    }
}

impl PlaceArgs {
    /// The load options these arguments ask for.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            threads: self.threads(),
            ..load_options(self.request(), self.map_files)
        }
    }

    /// The threads `--threads` allows.
    pub fn threads(&self) -> spur_loader::Threads {
        match self.threads {
            None => spur_loader::Threads::Available,
            Some(1) => spur_loader::Threads::One,
            Some(n) => spur_loader::Threads::AtMost(n),
        }
    }

    pub fn request(&self) -> PlacementRequest {
        match (self.base, self.relocate) {
            (Some(addr), _) => PlacementRequest::At(addr),
            (None, true) => PlacementRequest::Relocate,
            (None, false) => PlacementRequest::OldBase,
        }
    }
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("heap").required(true).args(["heap_mib", "heap_kib"])))]
pub struct SynthArgs {
    /// Where to write the image (replaced atomically if it is a regular file,
    /// or with --composed a composed folder; a symbolic link is written
    /// through to its file).
    pub out: PathBuf,
    /// Heap size in MiB (a lower bound: the fixed structure always fits).
    #[arg(long, value_name = "N")]
    pub heap_mib: Option<u64>,
    /// Heap size in KiB, for small images.
    #[arg(long, value_name = "N")]
    pub heap_kib: Option<u64>,
    /// Number of segments.
    #[arg(long, value_name = "K", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=4096).map(|k| k as usize))]
    pub segments: usize,
    /// Gap between one segment's end and the next one's start, in MiB.
    #[arg(long, value_name = "G", default_value_t = 0)]
    pub gap_mib: u64,
    /// Word size in bytes: 4 or 8.
    #[arg(long, value_name = "4|8", default_value = "8", value_parser = parse_word_size)]
    pub word_size: WordSize,
    /// Put a 512-byte prefix before the header.
    #[arg(long)]
    pub prefix: bool,
    /// Multiple bytecode sets (format 68533 or 7033).
    #[arg(long)]
    pub sista: bool,
    /// Leave no free chunks in the heap.
    #[arg(long)]
    pub no_free_chunks: bool,
    /// oldBaseAddr, the address of nil (hex with 0x, or decimal); default:
    /// where Pharo puts old space.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    pub base: Option<u64>,
    /// Seed of the builder's generator: the same arguments give the same bytes.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Write a Pharo composed image (a folder of .ston and .data files).
    #[arg(long)]
    pub composed: bool,
    /// Follow this image's mix: its classes in proportion to their instance
    /// counts (what `stats` counts), each of about its mean size, scaled to
    /// the heap size asked for. The word size is the image's.
    #[arg(long, value_name = "IMAGE")]
    pub like: Option<PathBuf>,
}

/// A 32-bit count: decimal or `0x` hex.
pub fn parse_u32(s: &str) -> Result<u32, String> {
    let v = parse_addr(s)?;
    u32::try_from(v).map_err(|_| format!("{s:?} does not fit 32 bits"))
}

/// `4` or `8`.
pub fn parse_word_size(s: &str) -> Result<WordSize, String> {
    match s.trim() {
        "4" => Ok(WordSize::W32),
        "8" => Ok(WordSize::W64),
        _ => Err(format!("{s:?} is not a word size: give 4 or 8")),
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

/// A count or size: `0x`-prefixed hex, or decimal; `_` may group digits.
pub fn parse_size(s: &str) -> Result<u64, String> {
    parse_addr(s).map_err(|_| format!("{s:?} is not a number (decimal, or hex with 0x)"))
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

    #[test]
    fn files_are_mapped_only_with_map_files() {
        let load = |args: &[&str]| {
            let c = Cli::try_parse_from(args).unwrap();
            match c.command {
                Command::Load(a) | Command::Verify(a) | Command::Stats(a) => a.place.load_options(),
                Command::Launch(a) => a.place.load_options(),
                Command::Snapshot(a) => a.place.load_options(),
                _ => panic!("not a loading command"),
            }
        };
        assert_eq!(load(&["vm-loader", "load", "x"]).map_files, None);
        assert!(load(&["vm-loader", "load", "x", "--map-files"])
            .map_files
            .is_some());
        assert!(load(&["vm-loader", "stats", "x", "--map-files"])
            .map_files
            .is_some());
        let o = load(&["vm-loader", "verify", "--relocate", "--map-files"]);
        assert_eq!(o.placement, PlacementRequest::Relocate);
        assert!(o.map_files.is_some());
        assert!(load(&["vm-loader", "launch", "--headless", "--map-files"])
            .map_files
            .is_some());
        assert!(load(&["vm-loader", "snapshot", "a", "b", "--map-files"])
            .map_files
            .is_some());
        let c = Cli::try_parse_from(["vm-loader", "bench", "x", "--map-files"]).unwrap();
        let Command::Bench(b) = c.command else {
            panic!("not bench")
        };
        assert!(b.map_files);
    }

    #[test]
    fn snapshot_and_bench_arguments() {
        let c = Cli::try_parse_from([
            "vm-loader",
            "snapshot",
            "in.image",
            "out.image",
            "--relocate",
            "--background",
            "--eden-bytes",
            "0x1000000",
        ])
        .unwrap();
        let Command::Snapshot(a) = c.command else {
            panic!("not snapshot")
        };
        assert_eq!(a.place.request(), PlacementRequest::Relocate);
        assert!(a.background);
        assert_eq!(a.writer, WriterArg::Fork);
        assert_eq!(a.eden_bytes, Some(0x100_0000));
        let c = Cli::try_parse_from([
            "vm-loader",
            "snapshot",
            "in.image",
            "out.image",
            "--background",
            "--writer",
            "thread",
        ])
        .unwrap();
        let Command::Snapshot(a) = c.command else {
            panic!("not snapshot")
        };
        assert_eq!(a.writer, WriterArg::Thread);
        assert!(
            Cli::try_parse_from([
                "vm-loader",
                "snapshot",
                "in.image",
                "out.image",
                "--writer",
                "thread",
            ])
            .is_err(),
            "--writer needs --background"
        );
        assert!(Cli::try_parse_from(["vm-loader", "snapshot", "in.image"]).is_err());
        let c =
            Cli::try_parse_from(["vm-loader", "bench", "--synth", "16,64", "--runs", "3"]).unwrap();
        let Command::Bench(b) = c.command else {
            panic!("not bench")
        };
        assert_eq!((b.synth, b.runs, b.images.len()), (vec![16, 64], 3, 0));
        let e = Cli::try_parse_from(["vm-loader", "bench"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let e = Cli::try_parse_from(["vm-loader", "bench", "x", "--runs", "0"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn launch_needs_headless_and_takes_overrides() {
        let e = Cli::try_parse_from(["vm-loader", "launch", "x.image"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let c = Cli::try_parse_from([
            "vm-loader",
            "launch",
            "--headless",
            "--eden-bytes",
            "0x100_0000",
            "--stack-pages",
            "0",
            "--relocate",
        ])
        .unwrap();
        let Command::Launch(a) = c.command else {
            panic!("not launch")
        };
        assert!(a.image.is_none() && a.headless);
        assert_eq!(a.eden_bytes, Some(16 << 20));
        // Zero is refused by the runtime, with its own message.
        assert_eq!(a.stack_pages, Some(0));
        assert_eq!(a.place.request(), PlacementRequest::Relocate);
        assert!(parse_size("lots").unwrap_err().contains("not a number"));
    }

    #[test]
    fn synth_takes_exactly_one_heap_size() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["vm-loader", "synth", "out.image"].iter().chain(args))
        };
        let kind = |args: &[&str]| parse(args).unwrap_err().kind();
        use clap::error::ErrorKind;
        assert_eq!(kind(&[]), ErrorKind::MissingRequiredArgument);
        assert_eq!(
            kind(&["--heap-mib", "4", "--heap-kib", "64"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            kind(&["--heap-kib", "64", "--word-size", "5"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            kind(&["--heap-kib", "64", "--segments", "0"]),
            ErrorKind::ValueValidation
        );
        let c = parse(&[
            "--heap-kib",
            "64",
            "--word-size",
            "4",
            "--base",
            "0x10000000",
        ])
        .unwrap();
        let Command::Synth(a) = c.command else {
            panic!("not synth")
        };
        assert_eq!(a.heap_kib, Some(64));
        assert_eq!(a.word_size, WordSize::W32);
        assert_eq!(a.base, Some(0x1000_0000));
        assert_eq!(a.segments, 1);
    }
}
