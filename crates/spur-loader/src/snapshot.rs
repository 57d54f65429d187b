//! Snapshots: a loaded heap written back as a single-file image, the way
//! the VMs write one (§2.2, §7), safely and straight from memory.
//!
//! * **What is written.** The non-empty segments back to back after the
//!   header, each with its live bytes and its bridge re-encoded for the file
//!   (the gap to the next segment and the next segment's size; 16 bytes put
//!   from a small buffer, the heap is never modified). A heap kept at its old
//!   addresses is written segment by segment with its gaps. A relocated heap
//!   was coalesced into one range at load (§2.3), so it is written as one
//!   segment, as the VMs write a heap they coalesced: `firstSegSize` =
//!   `dataSize`. `oldBaseAddr` is where nil lives now and the special objects
//!   oop is the current one; no pointer is rewritten (§7). The format
//!   number, header size, flags, window size, image version, `lastHash`,
//!   `extraVMMemory` and `freeOldSpaceInImage` are carried over from the
//!   header read at load, and so are the requested eden, stack pages, code
//!   size and semaphore table size, unless [`SnapshotOptions::overrides`]
//!   gives a runtime's values.
//! * **The prefix.** A loaded heap does not keep the 512 bytes that may
//!   precede an image's header, so the caller passes them
//!   ([`SnapshotOptions::prefix`], read with [`read_prefix`]); without them
//!   the image is written without a prefix, which every VM reads (PVM reads
//!   only that form).
//! * **Streaming.** Segment bytes go from the heap's memory to the file in
//!   `write` calls of up to 16 MiB, cut at 16 MiB boundaries of the file;
//!   nothing is copied into a buffer first. The file's disk blocks are
//!   reserved before the first write (`fallocate`, keeping the size at 0),
//!   so (where the file system can reserve blocks) a full disk fails the
//!   snapshot before anything is written and the writeback allocates no
//!   blocks. After each 16 MiB the kernel is
//!   asked to start writing the whole pages written so far to disk
//!   (`sync_file_range`), so the `fsync` at the end overlaps the writing
//!   instead of following it, and dirty pages stay few.
//! * **Safety of the target.** [`write_atomically`]: the target is
//!   checked first (only a regular file is replaced; a FIFO, a device or a
//!   folder is refused before anything is written; a symbolic link is
//!   written through to its file, see [`crate::files`]); a new file with a
//!   unique, recognisable name is created (`O_EXCL`) beside the target and
//!   locked (`flock`), given the old file's mode, owner and group, written,
//!   `fsync`ed, renamed over the target, and the directory is `fsync`ed.
//!   Any error removes the temporary file and leaves the target as it was.
//!   A process killed while writing leaves its temporary file
//!   (`.NAME.snapshot-PID-N.tmp`) and never a changed target; the next
//!   snapshot to the same target removes such files that no live writer
//!   holds locked. The target may be the image the heap was loaded from.
//! * **Bytes after the data.** A file longer than its header and data says
//!   (some real images carry a few hundred bytes more) is written back with
//!   them when the caller passes them ([`SnapshotOptions::trailer`], read
//!   with [`read_trailer`]), so that an image written in place is
//!   byte-identical.
//! * **Background.** [`snapshot_in_background`] forks: the child writes the
//!   copy-on-write view of the heap through the same steps (a fixed routine
//!   of the memory crate that makes only async-signal-safe calls), while the
//!   parent returns at once and may change or drop its heap.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use spur_format::raw::{BRIDGE_BYTES, PREFIX_BYTES};
use spur_format::{FileLayout, FormatError, HeaderOverrides, ImageHeader};
use spur_mem::process::{self, ChildOutcome, WriteJob, WriterChild};

pub use spur_mem::process::ignore_file_size_signal;

use crate::conv::{usize_of, Micros};
use crate::files::{self, LockedFile, OutForm};
use crate::heap::LoadedHeap;
use crate::source::ImageSource;
use crate::LoadError;

/// Bytes handed to one `write` call, and the unit of progress and of the
/// early-writeback hint.
pub const WRITE_CHUNK: usize = 16 << 20;

/// How to write a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// Header values a runtime asks for (§7); `None` fields keep the value
    /// read at load.
    pub overrides: HeaderOverrides,
    /// The 512 bytes to write before the header, or `None` for no prefix.
    pub prefix: Option<Vec<u8>>,
    /// Bytes to write after the data: those the source file carried past
    /// its header and data ([`read_trailer`]), or none.
    pub trailer: Vec<u8>,
}

/// The most bytes after the data that [`read_trailer`] keeps.
pub const MAX_TRAILER_BYTES: u64 = 64 << 20;

/// Bytes of `src` past the end of its data (prefix, header, `dataSize`).
pub fn trailing_len<S: ImageSource + ?Sized>(src: &S, header: &ImageHeader) -> u64 {
    src.len()
        .saturating_sub(header.prefix_bytes + header.header_size + header.data_size)
}

/// The bytes of `src` after its data, to be written back after the data of
/// a snapshot; `None` when there are more than [`MAX_TRAILER_BYTES`].
pub fn read_trailer<S: ImageSource + ?Sized>(
    src: &S,
    header: &ImageHeader,
) -> Result<Option<Vec<u8>>, LoadError> {
    let n = trailing_len(src, header);
    if n > MAX_TRAILER_BYTES {
        return Ok(None);
    }
    let mut t = vec![0u8; usize_of(n)];
    src.read_exact_at(&mut t, src.len() - n)?;
    Ok(Some(t))
}

/// Why a snapshot could not be written. The target is unchanged in every
/// case but one: a failed `fsync` of the folder after the rename (`File`,
/// "syncing the folder"), where the new image is in place but may not
/// survive a crash of the machine.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The heap cannot be described by a valid header or segment layout.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The prefix passed for the file (§1.1) has the wrong length, in bytes.
    #[error("the prefix before the header must be exactly {PREFIX_BYTES} bytes, not {0}")]
    BadPrefix(usize),
    /// Coalesced writing was asked for, but two segments are apart in memory.
    #[error("the heap's segments {first}..={last} share no contiguous memory, so they cannot be written as one coalesced segment")]
    NotContiguous {
        /// Index of the first segment of the run.
        first: usize,
        /// Index of the last segment of the run.
        last: usize,
    },
    /// Writing the image file failed.
    #[error("writing {len} bytes at file offset {offset}")]
    Write {
        /// Where the write started, in bytes from the start of the file.
        offset: u64,
        /// Bytes being written.
        len: u64,
        /// The failure the system reported.
        source: io::Error,
    },
    /// Creating, syncing, renaming or removing a file failed.
    #[error("{what} {path}")]
    File {
        /// The step that failed, e.g. "syncing".
        what: &'static str,
        /// The file concerned.
        path: String,
        /// The failure the system reported.
        source: io::Error,
    },
    /// The target cannot be replaced (not a regular file, or unreadable).
    #[error("{path}")]
    Target {
        /// The target path.
        path: String,
        /// The failure the system reported.
        source: io::Error,
    },
    /// The target path ends in no file name (e.g. `/` or `..`).
    #[error("{0} names no file to write")]
    NoFileName(String),
    /// The background writer could not be forked or waited for.
    #[error("background snapshot: the writer process failed")]
    ChildFailed(#[source] io::Error),
    /// The background writer was killed by this signal number.
    #[error("background snapshot: the writer process was killed by signal {0}")]
    ChildKilled(i32),
    /// The source image, whose prefix is copied, could not be read.
    #[error("reading the prefix of the source image")]
    Prefix(#[from] LoadError),
    /// A single-file image cannot hold a perm space.
    #[error("the heap has a perm space of {bytes} bytes (a Pharo composed image), which a single-file image cannot hold; the Pharo VM refuses this too (§6)")]
    PermSpace {
        /// Bytes of perm space in the heap.
        bytes: u64,
    },
}

fn file_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SnapshotError {
    let path = path.display().to_string();
    move |source| SnapshotError::File { what, path, source }
}

/// The 512-byte prefix of an image, when its header says it has one.
pub fn read_prefix<S: ImageSource + ?Sized>(
    src: &S,
    header: &ImageHeader,
) -> Result<Option<Vec<u8>>, LoadError> {
    if header.prefix_bytes == 0 {
        return Ok(None);
    }
    let mut p = vec![0u8; usize_of(header.prefix_bytes)];
    src.read_exact_at(&mut p, 0)?;
    Ok(Some(p))
}

/// A range of memory written as one segment: its address as the file will
/// record it, its size, and its bytes.
pub(crate) type MemoryRun<'h> = (spur_format::OldAddr, u64, &'h [u8]);

/// The ranges of memory a snapshot writes, one per written segment: its
/// address, its size and its bytes (the in-memory bridge included). Runs of
/// segments that were coalesced at load (each but the last overwritten at
/// its end by the next) are one range of memory and are written as one
/// segment.
pub(crate) fn memory_runs(heap: &LoadedHeap) -> Result<Vec<MemoryRun<'_>>, SnapshotError> {
    let segs = heap.segments();
    let mut ranges = Vec::new();
    let mut first = 0;
    for (i, s) in segs.iter().enumerate() {
        if !s.own_bridge && i + 1 < segs.len() {
            let next = &segs[i + 1];
            if next.region != s.region || next.offset != s.offset + usize_of(s.size - BRIDGE_BYTES)
            {
                return Err(SnapshotError::NotContiguous {
                    first: i,
                    last: i + 1,
                });
            }
            continue;
        }
        let f = &segs[first];
        let size = s.new_start.get() + s.size - f.new_start.get();
        let region = heap.regions[f.region].bytes();
        ranges.push((
            f.new_start.as_saved(),
            size,
            &region[f.offset..f.offset + usize_of(size)],
        ));
        first = i + 1;
    }
    Ok(ranges)
}

/// What a snapshot of one heap writes: the prefix and header bytes, and per
/// segment the memory to copy and the 16 bridge bytes that end it.
#[derive(Debug)]
pub struct SnapshotPlan<'h> {
    /// The header the file will carry.
    pub header: ImageHeader,
    /// Where each segment goes and what its bridge says.
    pub layout: FileLayout,
    head: Vec<u8>,
    bodies: Vec<&'h [u8]>,
    tail: Vec<u8>,
}

impl<'h> SnapshotPlan<'h> {
    /// Plans the snapshot of `heap`. Reads nothing but the heap's segment
    /// table: the bytes are read as they are written.
    pub fn new(heap: &'h LoadedHeap, opts: &SnapshotOptions) -> Result<Self, SnapshotError> {
        if let Some(p) = &opts.prefix {
            if p.len() as u64 != PREFIX_BYTES {
                return Err(SnapshotError::BadPrefix(p.len()));
            }
        }
        if let Some(perm) = heap.perm_space().filter(|p| p.size > 0) {
            return Err(SnapshotError::PermSpace { bytes: perm.size });
        }
        let ranges = memory_runs(heap)?;
        let layout = FileLayout::plan(heap.word(), ranges.iter().map(|r| (r.0, r.1)))?;
        // The file form of each bridge is written from the layout, not memory.
        let bodies = layout
            .segments
            .iter()
            .map(|p| {
                let b = ranges[p.index].2;
                &b[..b.len() - usize_of(BRIDGE_BYTES)]
            })
            .collect();
        let prefix_bytes = opts.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let header = heap.header().for_snapshot(
            &layout,
            heap.special_objects().as_saved(),
            prefix_bytes,
            &opts.overrides,
        );
        let mut head = opts.prefix.clone().unwrap_or_default();
        head.extend_from_slice(&header.encode());
        Ok(SnapshotPlan {
            header,
            layout,
            head,
            bodies,
            tail: opts.trailer.clone(),
        })
    }

    /// Length of the file this plan writes.
    pub fn file_len(&self) -> u64 {
        self.head.len() as u64 + self.layout.data_size + self.tail.len() as u64
    }

    /// The bytes of the file, in order: the prefix and header, then each
    /// segment's body (borrowed from the heap) and bridge, then the bytes
    /// after the data.
    pub fn pieces(&self) -> Vec<&[u8]> {
        let mut v = Vec::with_capacity(1 + 2 * self.bodies.len());
        v.push(self.head.as_slice());
        for (body, seg) in self.bodies.iter().zip(&self.layout.segments) {
            v.push(body);
            v.push(&seg.bridge);
        }
        if !self.tail.is_empty() {
            v.push(self.tail.as_slice());
        }
        v
    }

    /// Writes the image to `out`; `progress` is told the bytes written so
    /// far after each chunk. Returns the bytes written.
    pub fn write_to<W: Write>(
        &self,
        out: &mut W,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, SnapshotError> {
        self.write_with(out, &mut |_, done| progress(done))
    }

    /// The writer: pieces in file order, cut so that every write but the
    /// last ends on a multiple of [`WRITE_CHUNK`] in the file; `after` gets
    /// the output and the bytes written so far after each write.
    fn write_with<W: Write>(
        &self,
        out: &mut W,
        after: &mut dyn FnMut(&mut W, u64),
    ) -> Result<u64, SnapshotError> {
        let _s = tracing::debug_span!("snapshot-write", bytes = self.file_len()).entered();
        let chunk = WRITE_CHUNK as u64;
        let mut offset = 0u64;
        for piece in self.pieces() {
            let mut rest = piece;
            while !rest.is_empty() {
                let room = usize_of(chunk - offset % chunk);
                let (now, later) = rest.split_at(room.min(rest.len()));
                out.write_all(now).map_err(|source| SnapshotError::Write {
                    offset,
                    len: now.len() as u64,
                    source,
                })?;
                offset += now.len() as u64;
                rest = later;
                after(out, offset);
            }
        }
        out.flush().map_err(|source| SnapshotError::Write {
            offset,
            len: 0,
            source,
        })?;
        Ok(offset)
    }
}

/// What a snapshot wrote and how long each part took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotReport {
    /// The header written.
    pub header: ImageHeader,
    /// Segments written (1 for a relocated heap).
    pub segments: usize,
    /// Bytes of the file: prefix, header and segments.
    pub bytes_written: u64,
    /// Planning and writing the bytes (into the page cache).
    pub write_us: u64,
    /// `fsync` of the file, the rename and the directory's `fsync`.
    pub sync_us: u64,
    /// The whole snapshot, planning to the directory's `fsync`.
    pub total_us: u64,
}

/// Writes a snapshot of `heap` to `target` safely ([`write_atomically`]).
/// `progress` is told the bytes written so far after each 16 MiB.
pub fn snapshot_to_path(
    heap: &LoadedHeap,
    target: &Path,
    opts: &SnapshotOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<SnapshotReport, SnapshotError> {
    let t0 = Instant::now();
    let plan = SnapshotPlan::new(heap, opts)?;
    check_room(target, plan.file_len())?;
    let mut write_time = Duration::ZERO;
    let bytes = write_atomically(target, |f| {
        process::reserve_blocks(f.as_fd(), plan.file_len())
            .map_err(|e| file_err("reserving disk space for the new image of", target)(e.into()))?;
        // Whole pages only: a page still being filled must not be under
        // writeback when the next write reaches it, or that write waits.
        let mut hinted = 0;
        let n = plan.write_with(f, &mut |f, done| {
            let upto = done & !(process::WRITEBACK_ALIGN - 1);
            if upto >= hinted + WRITE_CHUNK as u64 {
                process::start_writeback(f, hinted, upto - hinted);
                hinted = upto;
            }
            progress(done);
        })?;
        write_time = t0.elapsed();
        Ok(n)
    })?;
    let total = t0.elapsed();
    Ok(SnapshotReport {
        header: plan.header.clone(),
        segments: plan.layout.segments.len(),
        bytes_written: bytes,
        write_us: write_time.micros(),
        sync_us: total.saturating_sub(write_time).micros(),
        total_us: total.micros(),
    })
}

/// The folder and file name of `target`.
fn split_target(target: &Path) -> Result<(PathBuf, &std::ffi::OsStr), SnapshotError> {
    let name = target
        .file_name()
        .ok_or_else(|| SnapshotError::NoFileName(target.display().to_string()))?;
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

/// Removes temporary files (and composed folders) left beside the target
/// by writers that were killed: those named `.NAME.snapshot-*.tmp` that no
/// live writer holds locked ([`files::is_stale`]), whatever PID namespace
/// that writer ran in. Another snapshot under way keeps its lock, and its
/// file. Returns the files removed.
pub fn remove_stale_temps(target: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
    let (dir, name) = split_target(target)?;
    let prefix = files::temp_prefix(name);
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(removed);
    };
    for e in entries.flatten() {
        let file = e.file_name();
        let ours = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .is_some_and(|r| r.ends_with(".tmp"));
        if !ours {
            continue;
        }
        let p = e.path();
        let Some(_lock) = files::is_stale(&p) else {
            continue;
        };
        // A composed snapshot's temporary is a folder.
        let gone = if p.is_dir() {
            fs::remove_dir_all(&p).is_ok()
        } else {
            fs::remove_file(&p).is_ok()
        };
        if gone {
            tracing::info!(path = %p.display(), "removed a stale snapshot temporary file");
            removed.push(p);
        }
    }
    Ok(removed)
}

/// Replaces `target` with what `write` puts into a new file, or leaves it
/// untouched: the target is checked first ([`files::check_output`]: only a
/// regular file is replaced, a symbolic link is written through), the file
/// is created beside it with a unique, locked name (`O_EXCL`), given the
/// old file's mode, owner and group, written by `write`, `fsync`ed, renamed
/// over the target, and the directory is `fsync`ed. On any error the new
/// file is removed. Stale temporary files of killed writers are removed
/// first ([`remove_stale_temps`]).
pub fn write_atomically<T>(
    target: &Path,
    write: impl FnOnce(&mut File) -> Result<T, SnapshotError>,
) -> Result<T, SnapshotError> {
    let (tmp, mut file, out) = prepare_temp(target)?;
    let target = out.path.as_path();
    let result = (|| {
        let value = write(&mut file)?;
        let _s = tracing::debug_span!("snapshot-sync").entered();
        file.sync_all().map_err(file_err("syncing", &tmp))?;
        fs::rename(&tmp, target).map_err(file_err("renaming the new file over", target))?;
        drop(file);
        Ok(value)
    })();
    match result {
        Ok(value) => {
            // The rename is done; syncing the folder makes it survive a crash.
            let (dir, _) = split_target(target)?;
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(file_err("syncing the folder", &dir))?;
            Ok(value)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Checks `target`, removes stale temporaries beside it and creates the
/// locked temporary file that will replace it, with the old file's mode
/// and owner.
fn prepare_temp(target: &Path) -> Result<(PathBuf, LockedFile, files::Target), SnapshotError> {
    let out =
        files::check_output(target, OutForm::Single).map_err(|source| SnapshotError::Target {
            path: target.display().to_string(),
            source,
        })?;
    let (dir, name) = split_target(&out.path)?;
    remove_stale_temps(&out.path)?;
    let (tmp, file) = files::create_temp(&dir, name, false)
        .map_err(file_err("creating a temporary file in", &dir))?;
    if let Some(old) = &out.existing {
        if let Err(e) = files::copy_owner_and_mode(old, &file) {
            let _ = fs::remove_file(&tmp);
            return Err(file_err("giving the old mode to", &tmp)(e));
        }
    }
    Ok((tmp, file, out))
}

/// Fails unless the file system of `target` has room for `len` bytes.
fn check_room(target: &Path, len: u64) -> Result<(), SnapshotError> {
    let (dir, _) = split_target(target)?;
    files::check_free_space(&dir, len, "the image").map_err(|source| SnapshotError::Target {
        path: target.display().to_string(),
        source,
    })
}

/// Who writes a background snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackgroundWriter {
    /// A forked child process ([`snapshot_in_background`]).
    #[default]
    Fork,
    /// A thread of this process reading the heap write-protected, each
    /// 2 MiB copied at its first write ([`spur_mem::wp`]); where the kernel
    /// does not offer that, a forked child.
    Thread,
}

/// The writer of a running background snapshot.
#[derive(Debug)]
enum Running {
    Child(WriterChild),
    Thread(process::WriterThread),
}

/// How a writer ended, how long after its start, and how many 2 MiB
/// chunks a thread writer copied.
type Ended = (ChildOutcome, Duration, u64);

impl Running {
    fn wait(self) -> io::Result<Ended> {
        match self {
            Running::Child(c) => c.wait().map(|(o, d)| (o, d, 0)),
            Running::Thread(t) => Ok(t.wait()),
        }
    }
    fn try_wait(&mut self) -> io::Result<Option<Ended>> {
        match self {
            Running::Child(c) => Ok(c.try_wait()?.map(|(o, d)| (o, d, 0))),
            Running::Thread(t) => Ok(t.try_wait()),
        }
    }
    fn writer(&self) -> BackgroundWriter {
        match self {
            Running::Child(_) => BackgroundWriter::Fork,
            Running::Thread(_) => BackgroundWriter::Thread,
        }
    }
}

/// A snapshot being written in the background, by a forked child or by a
/// thread of this process.
#[derive(Debug)]
pub struct BackgroundSnapshot {
    child: Option<Running>,
    /// Why a thread was asked for and a child writes instead.
    fell_back: Option<String>,
    /// Dropped after the child has been waited for (fields drop after
    /// `Drop::drop`), so the temporary is locked for as long as it lives.
    _lock: LockedFile,
    temp: PathBuf,
    pause: Duration,
    bytes: u64,
    header: ImageHeader,
    segments: usize,
}

/// How a background snapshot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackgroundReport {
    /// The header written.
    pub header: ImageHeader,
    /// Segments written (1 for a relocated heap).
    pub segments: usize,
    /// Bytes of the file: prefix, header and segments.
    pub bytes_written: u64,
    /// How long the caller was held: planning, creating the file and the
    /// fork (or the write-protection and the thread's start).
    pub pause_us: u64,
    /// From the fork to the child's exit, as `waitpid` saw it (or from the
    /// thread's start to its end).
    pub child_us: u64,
    /// Who wrote it.
    pub writer: BackgroundWriter,
    /// 2 MiB chunks of the heap a thread writer copied because the program
    /// wrote to them before the thread had (0 for a child).
    pub copied_chunks: u64,
}

/// Starts writing a snapshot of `heap` to `target` in a forked child and
/// returns as soon as the fork has. The child writes the heap as it was at
/// the fork (copy-on-write), through the same safe steps as
/// [`write_atomically`]; the caller may change or drop the heap at once.
/// Wait for the result with [`BackgroundSnapshot::wait`].
pub fn snapshot_in_background(
    heap: &LoadedHeap,
    target: &Path,
    opts: &SnapshotOptions,
) -> Result<BackgroundSnapshot, SnapshotError> {
    snapshot_in_background_by(heap, target, opts, BackgroundWriter::Fork)
}

/// [`snapshot_in_background`] with the writer chosen. With
/// [`BackgroundWriter::Thread`] the heap is write-protected (its segments'
/// pages) and a thread of this process writes it; a write to the heap while
/// it does waits until its 2 MiB have been copied, once, and memory the
/// thread has written is unprotected as it goes. The pause is then the
/// write-protection, not a `fork`, whose cost grows with the heap. The
/// caller may still change the heap at once; dropping it, or growing it,
/// waits until the thread has written the last byte. Where the kernel does
/// not offer write-protection ([`spur_mem::wp`]), a child is forked as
/// before and [`BackgroundSnapshot::fell_back`] says why.
pub fn snapshot_in_background_by(
    heap: &LoadedHeap,
    target: &Path,
    opts: &SnapshotOptions,
    by: BackgroundWriter,
) -> Result<BackgroundSnapshot, SnapshotError> {
    let t0 = Instant::now();
    let plan = SnapshotPlan::new(heap, opts)?;
    let pieces = plan.pieces();
    check_room(target, plan.file_len())?;
    let (tmp, file, out) = prepare_temp(target)?;
    let (dir, name) = split_target(&out.path)?;
    let spawned = (|| {
        let dir_file = File::open(&dir).map_err(file_err("opening the folder", &dir))?;
        let c = |s: &std::ffi::OsStr| {
            CString::new(s.as_bytes()).map_err(|e| SnapshotError::File {
                what: "naming",
                path: s.to_string_lossy().into_owned(),
                source: io::Error::new(io::ErrorKind::InvalidInput, e),
            })
        };
        let temp_name = c(tmp.file_name().expect("a temporary file has a name"))?;
        let target_name = c(name)?;
        let mut fell_back = None;
        if by == BackgroundWriter::Thread {
            match freeze(heap, &pieces) {
                Ok((frozen, thread_pieces)) => {
                    let _s = tracing::debug_span!("snapshot-thread").entered();
                    let job = process::ThreadJob {
                        file: (*file)
                            .try_clone()
                            .map_err(file_err("opening again", &tmp))?,
                        pieces: thread_pieces,
                        dir: dir_file,
                        temp_name,
                        target_name,
                    };
                    return process::spawn_thread_writer(job, frozen)
                        .map(|t| (Running::Thread(t), None))
                        .map_err(file_err("starting a writer thread for", target));
                }
                Err(why) => fell_back = Some(why),
            }
        }
        let job = WriteJob {
            file: file.as_fd(),
            pieces: &pieces,
            dir: dir_file.as_fd(),
            temp_name: &temp_name,
            target_name: &target_name,
        };
        let _s = tracing::debug_span!("snapshot-fork").entered();
        process::spawn_writer(&job)
            .map(|c| (Running::Child(c), fell_back))
            .map_err(file_err("forking a writer for", target))
    })();
    // The child holds the lock too (the same open file) until it exits;
    // this process keeps its copy until it has waited for the child.
    let (child, fell_back) = match spawned {
        Ok(c) => c,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    Ok(BackgroundSnapshot {
        child: Some(child),
        fell_back,
        _lock: file,
        temp: tmp,
        pause: t0.elapsed(),
        bytes: plan.file_len(),
        header: plan.header.clone(),
        segments: plan.layout.segments.len(),
    })
}

/// The write-protected view of the heap memory `pieces` borrow, and the
/// pieces as the writer thread takes them; or why there is none.
fn freeze(
    heap: &LoadedHeap,
    pieces: &[&[u8]],
) -> Result<(spur_mem::wp::Frozen, Vec<process::ThreadPiece>), String> {
    let page = spur_mem::page_size();
    let mut parts: Vec<(usize, u64, u64)> = Vec::new();
    let mut out = Vec::with_capacity(pieces.len());
    for p in pieces {
        let addr = p.as_ptr() as u64;
        let region = heap.regions.iter().position(|r| {
            addr >= r.base() && addr + p.len() as u64 <= r.base() + r.committed() as u64
        });
        match region {
            Some(i) if !p.is_empty() => {
                let r = &heap.regions[i];
                let from = (addr - r.base()) / page * page;
                let to = (addr + p.len() as u64 - r.base()).div_ceil(page) * page;
                let to = to.min(r.committed() as u64);
                match parts.last_mut() {
                    Some((j, _, end)) if *j == i && from <= *end => *end = (*end).max(to),
                    _ => parts.push((i, from, to)),
                }
                out.push(process::ThreadPiece::Frozen {
                    addr,
                    len: p.len() as u64,
                });
            }
            _ => out.push(process::ThreadPiece::Bytes(p.to_vec())),
        }
    }
    let ranges: Vec<_> = parts
        .iter()
        .map(|&(i, from, to)| (&heap.regions[i], from, to - from))
        .collect();
    let _s = tracing::debug_span!("snapshot-freeze").entered();
    spur_mem::wp::Frozen::freeze(&ranges)
        .map(|f| (f, out))
        .map_err(|e| e.to_string())
}

/// Dropped without being waited for, the snapshot still waits for its child
/// (so that no zombie is left) and removes the temporary file if the child
/// was killed.
impl Drop for BackgroundSnapshot {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            if let Ok((ChildOutcome::Killed(_), _, _)) = child.wait() {
                let _ = fs::remove_file(&self.temp);
            }
        }
    }
}

impl BackgroundSnapshot {
    /// How long the call held the caller.
    pub fn pause(&self) -> Duration {
        self.pause
    }
    /// The writer's process id; 0 when a thread of this process writes.
    pub fn pid(&self) -> u32 {
        match &self.child {
            Some(Running::Child(c)) => c.pid(),
            _ => 0,
        }
    }
    /// Who writes the snapshot.
    pub fn writer(&self) -> BackgroundWriter {
        self.child
            .as_ref()
            .map_or(BackgroundWriter::Fork, Running::writer)
    }
    /// Why a thread was asked for and a forked child writes instead.
    pub fn fell_back(&self) -> Option<&str> {
        self.fell_back.as_deref()
    }
    /// The temporary file the child writes (its size shows the progress).
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }
    /// Bytes the child writes in all.
    pub fn file_len(&self) -> u64 {
        self.bytes
    }

    /// Waits for the child and says how it went.
    pub fn wait(mut self) -> Result<BackgroundReport, SnapshotError> {
        let child = self.child.take().expect("waited once");
        let writer = child.writer();
        let ended = child
            .wait()
            .map_err(file_err("waiting for the writer of", &self.temp))?;
        self.finish(ended, writer)
    }

    /// The result if the child has ended, without blocking.
    pub fn try_wait(&mut self) -> Result<Option<BackgroundReport>, SnapshotError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let writer = child.writer();
        match child
            .try_wait()
            .map_err(file_err("waiting for the writer of", &self.temp))?
        {
            None => Ok(None),
            Some(ended) => {
                self.child = None;
                self.finish(ended, writer).map(Some)
            }
        }
    }

    fn finish(
        &mut self,
        (outcome, took, copied_chunks): Ended,
        writer: BackgroundWriter,
    ) -> Result<BackgroundReport, SnapshotError> {
        match outcome {
            ChildOutcome::Done => Ok(BackgroundReport {
                header: self.header.clone(),
                segments: self.segments,
                bytes_written: self.bytes,
                pause_us: self.pause.micros(),
                child_us: took.micros(),
                writer,
                copied_chunks,
            }),
            ChildOutcome::Failed(e) => {
                let _ = fs::remove_file(&self.temp);
                Err(SnapshotError::ChildFailed(e))
            }
            ChildOutcome::Killed(sig) => {
                let _ = fs::remove_file(&self.temp);
                Err(SnapshotError::ChildKilled(sig))
            }
        }
    }
}
