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
use std::time::Instant;

use spur_format::write::composed::{header_ston, segment_ston};
use spur_format::write::header::HeaderOverrides;
use spur_format::write::segment::FileLayout;
use spur_format::ImageHeader;

use crate::conv::Micros;
use crate::files::{self, OutForm};
use crate::heap::LoadedHeap;
use crate::snapshot::memory_runs;

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposedWritten {
    /// The folder written: the target, its symbolic link resolved.
    pub path: PathBuf,
    /// `(start, size)` of each segment written, at its current address.
    pub segments: Vec<(u64, u64)>,
    /// Bytes of every file written: `.ston` and `.data`.
    pub bytes_written: u64,
    /// The header written to `header.ston`.
    pub header: ImageHeader,
    /// Writing and syncing each file.
    pub write_us: u64,
    /// Swapping the folder in, removing the old one and syncing the parent.
    pub sync_us: u64,
}

/// Errors writing a composed folder. The target is untouched after any of them.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A file or folder of the image could not be created, written, synced or removed.
    #[error("{path}")]
    Io {
        /// The file or folder concerned.
        path: String,
        /// The failure the system reported.
        source: std::io::Error,
    },
    /// The target cannot be replaced (not a folder of an image, no space left)
    /// or the heap cannot be laid out as segments.
    #[error("cannot replace {path}: {why}")]
    Target {
        /// The target folder.
        path: String,
        /// Why, in words.
        why: String,
    },
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
        why: spur_format::error::Chain(&e).to_string(),
    })?;
    let layout = FileLayout::plan(heap.word(), runs.iter().map(|r| (r.0, r.1))).map_err(|e| {
        WriteError::Target {
            path: out.display().to_string(),
            why: spur_format::error::Chain(&e).to_string(),
        }
    })?;
    let header =
        heap.header()
            .for_snapshot(&layout, heap.special_objects().as_saved(), 0, overrides);
    // Only non-empty segments are written, as the VMs do (§2.2).
    let segments: Vec<(u64, &[u8])> = layout
        .segments
        .iter()
        .map(|p| (runs[p.index].0.get(), runs[p.index].2))
        .collect();
    let target = files::check_output(out, OutForm::Composed).map_err(|e| WriteError::Target {
        path: out.display().to_string(),
        why: e.to_string(),
    })?;
    let out = target.path.as_path();
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out.file_name().ok_or_else(|| WriteError::Target {
        path: out.display().to_string(),
        why: "it has no file name".into(),
    })?;
    let data: u64 = segments.iter().map(|s| s.1.len() as u64).sum::<u64>()
        + heap.perm_bytes().map_or(0, |b| b.len() as u64);
    files::check_free_space(parent, data, "the image").map_err(|e| WriteError::Target {
        path: out.display().to_string(),
        why: e.to_string(),
    })?;
    // Named and locked like a single-file snapshot's temporary, so that the
    // folder a killed writer leaves behind is removed by the next snapshot
    // to `out`, and a live writer's never.
    let _ = crate::snapshot::remove_stale_temps(out);
    let (tmp, lock) = files::create_temp(parent, name, true).map_err(io_err(parent))?;
    // The folder being replaced lends its mode and owner to the new one,
    // and each of its files to the file of the same name.
    let old = target
        .existing
        .as_ref()
        .filter(|m| m.is_dir())
        .map(|m| (out, m));
    let t0 = Instant::now();
    let result = build(heap, &header, &segments, &tmp, old.map(|o| o.0))
        .and_then(|written| {
            if let Some((_, m)) = old {
                files::copy_owner_and_mode(m, &lock).map_err(io_err(&tmp))?;
            }
            Ok(written)
        })
        .and_then(|written| {
            let write_us = t0.elapsed().micros();
            swap_in(&tmp, out, parent)?;
            Ok((written, write_us))
        });
    drop(lock);
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    let (bytes_written, write_us) = result?;
    Ok(ComposedWritten {
        path: out.to_path_buf(),
        segments: segments.iter().map(|s| (s.0, s.1.len() as u64)).collect(),
        bytes_written,
        header,
        write_us,
        sync_us: t0.elapsed().micros().saturating_sub(write_us),
    })
}

/// Writes `bytes` to the new file `path` and syncs it; the file takes the
/// mode and owner of `like`'s file of the same name, or else of its
/// `header.ston`, when there is an old folder `like`. Returns the bytes.
fn write_file(path: &Path, bytes: &[u8], like: Option<&Path>) -> Result<u64, WriteError> {
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(path))?;
    if let Some(old) = like {
        let name = path.file_name().unwrap_or_default();
        let meta = fs::metadata(old.join(name)).or_else(|_| fs::metadata(old.join("header.ston")));
        if let Some(m) = meta.ok().filter(|m| m.is_file()) {
            files::copy_owner_and_mode(&m, &f).map_err(io_err(path))?;
        }
    }
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))?;
    Ok(bytes.len() as u64)
}

/// Writes the files of the image into the new, empty folder `dir`;
/// returns the bytes written, `.ston` files included.
fn build(
    heap: &LoadedHeap,
    header: &ImageHeader,
    segments: &[(u64, &[u8])],
    dir: &Path,
    like: Option<&Path>,
) -> Result<u64, WriteError> {
    let perm = heap.perm_space().zip(heap.perm_bytes());
    let perm_bytes = perm.map_or(0, |(p, _)| p.size);
    let mut total = write_file(
        &dir.join("header.ston"),
        header_ston(header, perm_bytes).as_bytes(),
        like,
    )?;
    if let Some((p, bytes)) = perm {
        total += write_file(
            &dir.join("permSpace.ston"),
            segment_ston(p.start, p.size).as_bytes(),
            like,
        )?;
        total += write_file(&dir.join("permSpace.data"), bytes, like)?;
    }
    let mut data = 0;
    for (i, &(start, bytes)) in segments.iter().enumerate() {
        let size = bytes.len() as u64;
        total += write_file(
            &dir.join(format!("seg{i}.ston")),
            segment_ston(start, size).as_bytes(),
            like,
        )?;
        total += write_file(&dir.join(format!("seg{i}.data")), bytes, like)?;
        data += size;
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    debug_assert_eq!(data, header.data_size);
    Ok(total)
}

/// Moves the finished folder `tmp` to `out`: a plain rename when `out` does
/// not exist, else an atomic exchange followed by removal of the old image.
///
/// Two writers creating the same folder at once both find no `out`; the
/// second rename then fails (`ENOTEMPTY`) and that writer exchanges instead,
/// as if `out` had been there from the start.
fn swap_in(tmp: &Path, out: &Path, parent: &Path) -> Result<(), WriteError> {
    let renamed = if fs::symlink_metadata(out).is_err() {
        match fs::rename(tmp, out) {
            Ok(()) => true,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::ENOTEMPTY | nix::libc::EEXIST)
                ) =>
            {
                false
            }
            Err(e) => return Err(io_err(out)(e)),
        }
    } else {
        false
    };
    if !renamed {
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
        // `tmp` now holds the previous image, unlocked under a temporary's
        // name: another writer's stale-temporary cleanup may remove it (or
        // part of it) first, which is the same outcome.
        let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        let removed = match fs::symlink_metadata(tmp) {
            Ok(old) if old.is_dir() => fs::remove_dir_all(tmp),
            Ok(_) => fs::remove_file(tmp),
            Err(e) => Err(e),
        };
        match removed {
            Err(e) if !gone(&e) => return Err(io_err(tmp)(e)),
            _ => {}
        }
    }
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io_err(parent))
}
