//! Writes the seed corpora of the fuzz targets, one folder per target, from
//! images the builder makes (and, when a corpus folder is given, from the
//! small real images in it).
//!
//! ```sh
//! cargo run --release --manifest-path fuzz/Cargo.toml -p spur-seedgen -- fuzz/corpus [IMAGES]
//! ```
//!
//! Seeds are generated rather than committed: the builder's images are
//! deterministic, so the same command always writes the same seeds.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use spur_format::raw::PREFIX_BYTES;
use spur_format::read::header::HEADER_PROBE_BYTES;
use spur_format::write::composed::{header_ston, segment_ston};
use spur_format::{ImageHeader, SegmentTable};

/// Real images larger than this are not used as seeds: libFuzzer mutates
/// large inputs slowly.
const MAX_REAL_SEED: u64 = 300 << 10;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::write(dir.join(name), bytes)
}

/// The header and its neighbours: the probe the loader reads, the same with
/// the format word byte-swapped, and with pre-Spur and obsolete numbers.
fn header_seeds(out: &Path, name: &str, image: &[u8]) -> io::Result<()> {
    let probe = &image[..image.len().min(HEADER_PROBE_BYTES)];
    write(out, name, probe)?;
    let (h, _) = layout(image);
    let at = h.prefix_bytes as usize;
    let mut swapped = probe.to_vec();
    swapped[at..at + 4].reverse();
    write(out, &format!("{name}-swapped"), &swapped)?;
    for (tag, number) in [("v3", 6505u32), ("obsolete", 68019)] {
        let mut b = probe.to_vec();
        b[at..at + 4].copy_from_slice(&number.to_le_bytes());
        write(out, &format!("{name}-{tag}"), &b)?;
    }
    Ok(())
}

/// `header.ston`, then each `segN.ston`, separated by NUL bytes: the input
/// the `ston` target splits. Written with LF and with CRLF line ends.
fn ston_seeds(out: &Path, name: &str, image: &[u8]) -> io::Result<()> {
    let (mut h, table) = layout(image);
    h.prefix_bytes = 0;
    let mut parts = vec![header_ston(&h, 0)];
    parts.extend(
        table
            .segments
            .iter()
            .map(|s| segment_ston(s.old_start.get(), s.size)),
    );
    let text = parts.join("\0");
    write(out, name, text.as_bytes())?;
    write(
        out,
        &format!("{name}-crlf"),
        text.replace('\n', "\r\n").as_bytes(),
    )
}

fn layout(image: &[u8]) -> (ImageHeader, SegmentTable) {
    let probe = &image[..image.len().min(HEADER_PROBE_BYTES)];
    let h = ImageHeader::parse(probe, image.len() as u64).expect("the builder's header parses");
    let t = SegmentTable::read(&h, |off| {
        let at = off as usize;
        Ok::<_, spur_format::FormatError>(image[at..at + 16].try_into().unwrap())
    })
    .expect("the builder's segments read");
    (h, t)
}

fn main() -> io::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "fuzz/corpus".into()));
    let real = args
        .next()
        .map(PathBuf::from)
        .filter(|p| !p.as_os_str().is_empty());
    let mut images: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, spec) in spur_synth::small_kinds() {
        let (bytes, _) = spur_synth::image_bytes(&spec)?;
        images.push((name.to_string(), bytes));
    }
    // A header after a prefix that is not zeros.
    let mut b = images[0].1.clone();
    let mut prefixed = vec![0x23u8; PREFIX_BYTES as usize];
    prefixed.append(&mut b);
    images.push(("w64-prefix-hash".into(), prefixed));
    if let Some(dir) = &real {
        for e in fs::read_dir(dir)? {
            let p = e?.path();
            let small = fs::metadata(&p).is_ok_and(|m| m.is_file() && m.len() <= MAX_REAL_SEED);
            if small && p.extension().is_some_and(|x| x == "image") {
                let name = p.file_stem().unwrap().to_string_lossy().into_owned();
                images.push((name, fs::read(&p)?));
            }
        }
    }
    let mut n = 0;
    for (name, bytes) in &images {
        header_seeds(&out.join("header"), name, bytes)?;
        ston_seeds(&out.join("ston"), name, bytes)?;
        write(&out.join("segments"), name, bytes)?;
        write(&out.join("load_verify"), name, bytes)?;
        write(&out.join("resume"), name, bytes)?;
        // The target loads inputs of odd length at their old addresses: the
        // same image with one byte of trailing garbage, which a file may have.
        let mut odd = bytes.clone();
        odd.push(0x0A);
        write(&out.join("load_verify"), &format!("{name}-in-place"), &odd)?;
        n += 1;
    }
    println!(
        "seeds from {n} images written to {}/{{header,segments,ston,load_verify,resume}}",
        out.display()
    );
    Ok(())
}
