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
use spur_format::write::header::HeaderOverrides;
use spur_format::write::segment::FileLayout;
use spur_format::ImageHeader;

use crate::heap::LoadedHeap;
use crate::snapshot::memory_runs;

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposedWritten {
    pub path: PathBuf,
    /// `(start, size)` of each segment written, at its current address.
    pub segments: Vec<(u64, u64)>,
    pub bytes_written: u64,
    /// The header written to `header.ston`.
    pub header: ImageHeader,
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

/// Writes `heap` as a composed image at `out` (a folder). The folder is
/// built beside `out` under a temporary name, synced, and then swapped in
/// with one rename (an atomic exchange when `out` already exists), so `out`
/// is at every moment either the old image or the new one, whole.
pub fn write_composed(
    heap: &LoadedHeap,
    out: &Path,
    overrides: &HeaderOverrides,
) -> Result<ComposedWritten, WriteError> {
    let runs = memory_runs(heap).map_err(|e| WriteError::Target {
        path: out.display().to_string(),
        why: e.to_string(),
    })?;
    let layout = FileLayout::plan(heap.word(), runs.iter().map(|r| (r.0, r.1))).map_err(|e| {
        WriteError::Target {
            path: out.display().to_string(),
            why: e.to_string(),
        }
    })?;
    let header =
        heap.header()
            .for_snapshot(&layout, heap.special_objects().as_saved(), 0, overrides);
    // Only non-empty segments are written, as the VMs do (§2.2).
    let segments: Vec<(u64, &[u8])> = layout
        .segments
        .iter()
        .map(|p| (runs[p.index].0 .0, runs[p.index].2))
        .collect();
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out.file_name().ok_or_else(|| WriteError::Target {
        path: out.display().to_string(),
        why: "it has no file name".into(),
    })?;
    // Named like a single-file snapshot's temporary, so that the folder a
    // killed writer leaves behind is removed by the next snapshot to `out`.
    let _ = crate::snapshot::remove_stale_temps(out);
    let tmp = parent.join(format!(
        "{}{}-composed.tmp",
        crate::snapshot::temp_prefix(name),
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
        segments: segments.iter().map(|s| (s.0, s.1.len() as u64)).collect(),
        bytes_written,
        header,
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
    segments: &[(u64, &[u8])],
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
    for (i, &(start, bytes)) in segments.iter().enumerate() {
        let size = bytes.len() as u64;
        write_file(
            &dir.join(format!("seg{i}.ston")),
            segment_ston(start, size).as_bytes(),
        )?;
        write_file(&dir.join(format!("seg{i}.data")), bytes)?;
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
            nix::fcntl::AT_FDCWD,
            tmp,
            nix::fcntl::AT_FDCWD,
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
