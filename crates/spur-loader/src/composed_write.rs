//! Writing a loaded heap as a Pharo composed image (§6): a folder with
//! `header.ston`, and `segN.ston` + `segN.data` for each segment, built
//! beside the target and swapped in whole.
//!
//! Each `segN.data` is the segment's bytes exactly as they are in memory,
//! its in-memory bridge included, as the Pharo VM writes them. A relocated
//! (coalesced) heap is one contiguous range and is written as one segment.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use spur_format::write::composed::{header_ston, segment_ston};
use spur_format::{ImageHeader, OldAddr};

use crate::heap::LoadedHeap;

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposedWritten {
    pub path: PathBuf,
    /// `(start, size)` of each segment written, at its current address.
    pub segments: Vec<(u64, u64)>,
    pub bytes_written: u64,
}

/// Errors writing a composed folder. The target is untouched after any of them.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot replace {path}: {why}")]
    Target { path: String, why: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The memory ranges to write: each segment with its own bridge, or the
/// coalesced range as one segment.
pub(crate) fn written_segments(heap: &LoadedHeap) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut run_start: Option<u64> = None;
    for s in heap.segments() {
        let start = run_start.unwrap_or(s.new_start.0);
        if s.own_bridge {
            out.push((start, s.new_start.0 + s.size - start));
            run_start = None;
        } else {
            run_start = Some(start);
        }
    }
    out
}

/// The header a snapshot of `heap` carries (§7): the live base and special
/// objects oop, sizes of what is written, everything else as loaded.
pub(crate) fn snapshot_header(heap: &LoadedHeap, segments: &[(u64, u64)]) -> ImageHeader {
    let mut h = heap.header().clone();
    h.old_base = OldAddr(heap.nil().0);
    h.special_objects_oop = OldAddr(heap.special_objects().0);
    h.data_size = segments.iter().map(|s| s.1).sum();
    h.first_segment_size = segments.first().map_or(0, |s| s.1);
    h.prefix_bytes = 0;
    h
}

/// Writes `heap` as a composed image at `out` (a folder). The folder is
/// built beside `out` under a temporary name, synced, and then swapped in
/// with one rename (an atomic exchange when `out` already exists), so `out`
/// is at every moment either the old image or the new one, whole.
pub fn write_composed(heap: &LoadedHeap, out: &Path) -> Result<ComposedWritten, WriteError> {
    let segments = written_segments(heap);
    let header = snapshot_header(heap, &segments);
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out.file_name().ok_or_else(|| WriteError::Target {
        path: out.display().to_string(),
        why: "it has no file name".into(),
    })?;
    let tmp = parent.join(format!(
        ".{}.tmp-composed-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    let result = build(heap, &header, &segments, &tmp).and_then(|written| {
        swap_in(&tmp, out, parent)?;
        Ok(written)
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    let bytes_written = result?;
    Ok(ComposedWritten {
        path: out.to_path_buf(),
        segments,
        bytes_written,
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

fn build(
    heap: &LoadedHeap,
    header: &ImageHeader,
    segments: &[(u64, u64)],
    dir: &Path,
) -> Result<u64, WriteError> {
    fs::create_dir(dir).map_err(io_err(dir))?;
    let perm = heap.perm_space().zip(heap.perm_bytes());
    let perm_bytes = perm.map_or(0, |(p, _)| p.size);
    write_file(
        &dir.join("header.ston"),
        header_ston(header, perm_bytes).as_bytes(),
    )?;
    if let Some((p, bytes)) = perm {
        write_file(
            &dir.join("permSpace.ston"),
            segment_ston(p.start, p.size).as_bytes(),
        )?;
        write_file(&dir.join("permSpace.data"), bytes)?;
    }
    let mut total = 0;
    for (i, &(start, size)) in segments.iter().enumerate() {
        write_file(
            &dir.join(format!("seg{i}.ston")),
            segment_ston(start, size).as_bytes(),
        )?;
        write_file(
            &dir.join(format!("seg{i}.data")),
            heap.bytes_at(start, size),
        )?;
        total += size;
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    debug_assert_eq!(total, header.data_size);
    Ok(total)
}

/// Moves the finished folder `tmp` to `out`: a plain rename when `out` does
/// not exist, else an atomic exchange followed by removal of the old image.
fn swap_in(tmp: &Path, out: &Path, parent: &Path) -> Result<(), WriteError> {
    if fs::symlink_metadata(out).is_err() {
        fs::rename(tmp, out).map_err(io_err(out))?;
    } else {
        nix::fcntl::renameat2(
            None,
            tmp,
            None,
            out,
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        )
        .map_err(|e| WriteError::Target {
            path: out.display().to_string(),
            why: format!("atomic exchange failed: {e}"),
        })?;
        // `tmp` now holds the previous image.
        let old = fs::symlink_metadata(tmp).map_err(io_err(tmp))?;
        if old.is_dir() {
            fs::remove_dir_all(tmp).map_err(io_err(tmp))?;
        } else {
            fs::remove_file(tmp).map_err(io_err(tmp))?;
        }
    }
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io_err(parent))
}
