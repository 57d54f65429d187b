//! A forked writer for background snapshots, and the file-system calls the
//! snapshot writer needs beyond `std`.
//!
//! [`spawn_writer`] forks. The child sees the parent's memory as it was at
//! the fork, copy-on-write, so it can write a consistent heap while the
//! parent goes on changing its own copy. The child runs one fixed routine of
//! this module, never code of the caller: it writes byte slices that were
//! prepared before the fork to a file that was opened before the fork,
//! syncs it, renames it over its target, syncs the directory, and leaves
//! with `_exit`.
//!
//! # Why the child is sound
//!
//! After `fork` in a process with several threads, the child has one thread,
//! and any lock another thread held (the allocator's, stdio's, a `Mutex`)
//! stays locked forever. POSIX therefore allows the child only
//! async-signal-safe functions until it calls `exec` or `_exit`. The child
//! routine here calls only `write`, `fsync`, `renameat`, `unlinkat`, `_exit`
//! (all on POSIX's async-signal-safe list), `fallocate` and `sync_file_range`
//! (bare Linux system calls that take no user-space lock). `write`, `fsync`,
//! `renameat` and `unlinkat` go through `nix`, whose wrappers are one libc
//! call and a read of `errno` each; the names are `&CStr`, which `nix` hands
//! to libc as they are (a `Path` or `&str` would be copied, and a long one
//! put in a newly allocated `CString`, which the child must not do). `nix`
//! has no `_exit` and no `sync_file_range`, so those two are `libc`. `fork` is
//! `nix::unistd::fork`, a bare call too. The child
//! allocates nothing, takes no lock, formats nothing, cannot panic (every
//! slice is cut at a length no greater than the one it has) and never
//! returns into the caller's code. It reads only the slices and names of the [`WriteJob`],
//! which the job borrows and which therefore were mapped in the parent at the
//! fork; the child's copy of them cannot change under it.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::FallocateFlags;
use nix::sys::signal::{self, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{self, ForkResult, Pid, UnlinkatFlags};

/// After this many bytes the child asks the kernel to start writing them
/// back, so that the final `fsync` has little left to wait for. It is also
/// the most the child hands to one `write`.
pub const WRITEBACK_CHUNK: u64 = 16 << 20;

/// Writeback hints cover whole pages of this size only: a page still being
/// filled must not be under writeback when the next `write` reaches it, or
/// that write waits for the disk.
pub const WRITEBACK_ALIGN: u64 = 4096;

/// Everything the forked child needs, prepared by the parent.
#[derive(Debug, Clone, Copy)]
pub struct WriteJob<'a> {
    /// The temporary file, open for writing, positioned at 0 and empty.
    pub file: BorrowedFd<'a>,
    /// The bytes to write, in order.
    pub pieces: &'a [&'a [u8]],
    /// The directory that holds the temporary file and the target.
    pub dir: BorrowedFd<'a>,
    /// Name of the temporary file inside `dir`.
    pub temp_name: &'a CStr,
    /// Name of the target inside `dir`, replaced by the rename.
    pub target_name: &'a CStr,
}

/// How a writer child ended.
#[derive(Debug)]
pub enum ChildOutcome {
    /// Written, synced and renamed over the target.
    Done,
    /// A system call failed; the child removed the temporary file. The error
    /// is the `errno` the child exited with.
    Failed(io::Error),
    /// The child was killed by this signal. The temporary file may remain;
    /// the caller removes it.
    Killed(i32),
}

/// A forked writer child. Dropping it without [`WriterChild::wait`] waits
/// for it, so that no child is left a zombie.
#[derive(Debug)]
pub struct WriterChild {
    pid: Pid,
    forked_at: Instant,
    reaped: bool,
}

/// Forks a child that writes `job` and exits; returns in the parent as soon
/// as the fork has.
pub fn spawn_writer(job: &WriteJob<'_>) -> io::Result<WriterChild> {
    // SAFETY: see the module documentation: the child only runs `child_main`,
    // which calls async-signal-safe functions on memory the job borrows, and
    // ends with `_exit`; it never returns to the caller's code.
    let pid = match unsafe { unistd::fork() }? {
        ForkResult::Child => child_main(job),
        ForkResult::Parent { child } => child,
    };
    Ok(WriterChild {
        pid,
        forked_at: Instant::now(),
        reaped: false,
    })
}

impl WriterChild {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        // Process ids are positive.
        self.pid.as_raw().cast_unsigned()
    }

    /// Waits for the child to end; returns how it ended and how long after
    /// the fork it did.
    pub fn wait(mut self) -> io::Result<(ChildOutcome, Duration)> {
        let outcome = self
            .wait_with(WaitPidFlag::empty())?
            .expect("a blocking wait returns");
        Ok((outcome, self.forked_at.elapsed()))
    }

    /// Has the child ended? Never blocks.
    pub fn try_wait(&mut self) -> io::Result<Option<(ChildOutcome, Duration)>> {
        Ok(self
            .wait_with(WaitPidFlag::WNOHANG)?
            .map(|o| (o, self.forked_at.elapsed())))
    }

    fn wait_with(&mut self, flags: WaitPidFlag) -> io::Result<Option<ChildOutcome>> {
        if self.reaped {
            return Err(io::Error::other("the writer child was already waited for"));
        }
        let status = loop {
            match waitpid(self.pid, Some(flags)) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(WaitStatus::StillAlive) => return Ok(None),
                Ok(status) => break status,
            }
        };
        self.reaped = true;
        Ok(Some(match status {
            WaitStatus::Exited(_, 0) => ChildOutcome::Done,
            WaitStatus::Exited(_, errno) => {
                ChildOutcome::Failed(io::Error::from_raw_os_error(errno))
            }
            WaitStatus::Signaled(_, signal, _) => ChildOutcome::Killed(signal as i32),
            other => ChildOutcome::Failed(io::Error::other(format!(
                "the writer child ended with status {other:?}"
            ))),
        }))
    }
}

impl Drop for WriterChild {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.wait_with(WaitPidFlag::empty());
        }
    }
}

/// The child: write, sync, rename, sync the directory, `_exit`. Exit code 0
/// on success, else the failing call's `errno` (1..=255).
fn child_main(job: &WriteJob<'_>) -> ! {
    let total: u64 = job.pieces.iter().map(|p| p.len() as u64).sum();
    if let Err(e) = reserve_blocks(job.file, total) {
        child_fail(job, e);
    }
    let mut out = Progress::default();
    for piece in job.pieces {
        if let Err(e) = out.put(job.file, piece) {
            child_fail(job, e);
        }
    }
    if let Err(e) = unistd::fsync(job.file) {
        child_fail(job, e);
    }
    if let Err(e) = nix::fcntl::renameat(job.dir, job.temp_name, job.dir, job.target_name) {
        child_fail(job, e);
    }
    // The new image is in place; a failed directory sync means only that
    // the rename may not survive a crash of the machine.
    let code = match unistd::fsync(job.dir) {
        Ok(()) => 0,
        Err(e) => exit_code(e),
    };
    // SAFETY: `_exit` ends the process at once, without running any of the
    // parent's atexit handlers or destructors; `nix` has no wrapper for it.
    unsafe { libc::_exit(code) }
}

/// A file being written from its start in chunks of at most
/// [`WRITEBACK_CHUNK`], each whole page of them handed to writeback as soon
/// as a chunk is complete. Allocates nothing and takes no lock, so the
/// forked child may use it.
#[derive(Debug, Default)]
struct Progress {
    written: u64,
    hinted: u64,
}

impl Progress {
    /// Writes all of `bytes` at the end of what was written so far.
    fn put(&mut self, file: BorrowedFd<'_>, bytes: &[u8]) -> Result<(), Errno> {
        let mut rest = bytes;
        while !rest.is_empty() {
            // Up to the next chunk boundary of the file.
            let room = crate::to_usize(WRITEBACK_CHUNK - self.written % WRITEBACK_CHUNK);
            let want = rest.len().min(room);
            let n = match unistd::write(file, &rest[..want]) {
                Ok(n) => n.min(want),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Err(Errno::EIO);
            }
            rest = &rest[n..];
            self.written += n as u64;
            let upto = self.written & !(WRITEBACK_ALIGN - 1);
            if upto >= self.hinted + WRITEBACK_CHUNK {
                start_writeback_raw(file.as_raw_fd(), self.hinted, upto - self.hinted);
                self.hinted = upto;
            }
        }
        Ok(())
    }
}

/// One piece of what a [`spawn_thread_writer`] writes.
#[derive(Debug)]
pub enum ThreadPiece {
    /// Bytes of its own (a header, a bridge).
    Bytes(Vec<u8>),
    /// `len` bytes from `addr` of the frozen memory, as they were at the freeze.
    Frozen {
        /// First address.
        addr: u64,
        /// Bytes.
        len: u64,
    },
}

/// What a writer thread needs: the job of [`WriteJob`], owned.
#[derive(Debug)]
pub struct ThreadJob {
    /// The temporary file, open for writing, positioned at 0 and empty.
    pub file: File,
    /// The bytes to write, in order.
    pub pieces: Vec<ThreadPiece>,
    /// The directory that holds the temporary file and the target.
    pub dir: File,
    /// Name of the temporary file inside `dir`.
    pub temp_name: std::ffi::CString,
    /// Name of the target inside `dir`, replaced by the rename.
    pub target_name: std::ffi::CString,
}

/// A writer thread of this process (see [`spawn_thread_writer`]).
#[derive(Debug)]
pub struct WriterThread {
    /// The thread, which returns its result and the chunks it copied.
    handle: Option<std::thread::JoinHandle<(io::Result<()>, u64)>>,
    started: Instant,
}

/// Starts a thread that writes `job` from `frozen` memory and its own
/// bytes, the way the forked child does: blocks reserved, chunks with
/// early writeback, the protection lifted from each stretch once written
/// (when the pieces go up in address), `fsync`, rename, directory `fsync`;
/// on a failure it removes the temporary file. The frozen view ends when
/// the last byte is written, before the `fsync`.
pub fn spawn_thread_writer(job: ThreadJob, frozen: crate::wp::Frozen) -> io::Result<WriterThread> {
    let handle = std::thread::Builder::new()
        .name("spur-snapshot-writer".into())
        .spawn(move || {
            let (r, copies) = thread_main(&job, frozen);
            if r.is_err() {
                let _ = unistd::unlinkat(
                    job.dir.as_fd(),
                    job.temp_name.as_c_str(),
                    UnlinkatFlags::NoRemoveDir,
                );
            }
            (r, copies)
        })?;
    Ok(WriterThread {
        handle: Some(handle),
        started: Instant::now(),
    })
}

/// The writer thread's work; returns its result and the chunks the writes
/// of the rest of the program made it copy.
fn thread_main(job: &ThreadJob, frozen: crate::wp::Frozen) -> (io::Result<()>, u64) {
    let r = write_frozen(job, &frozen);
    let copies = frozen.copies().0;
    frozen.thaw();
    (r.and_then(|()| commit_thread_job(job)), copies)
}

/// Writes the pieces of `job`, the frozen ones from `frozen`.
fn write_frozen(job: &ThreadJob, frozen: &crate::wp::Frozen) -> io::Result<()> {
    let file = job.file.as_fd();
    let total: u64 = job
        .pieces
        .iter()
        .map(|p| match p {
            ThreadPiece::Bytes(b) => b.len() as u64,
            ThreadPiece::Frozen { len, .. } => *len,
        })
        .sum();
    reserve_blocks(file, total)?;
    let mut last = 0u64;
    let rising = job.pieces.iter().all(|p| match p {
        ThreadPiece::Frozen { addr, len } => {
            let ok = *addr >= last;
            last = addr + len;
            ok
        }
        ThreadPiece::Bytes(_) => true,
    });
    let mut out = Progress::default();
    for p in &job.pieces {
        match p {
            ThreadPiece::Bytes(b) => out.put(file, b)?,
            ThreadPiece::Frozen { addr, len } => {
                let end = addr + len;
                let mut a = *addr;
                while a < end {
                    let to = end.min(a + WRITEBACK_CHUNK);
                    frozen.view(a, to - a, &mut |b| {
                        out.put(file, b).map_err(io::Error::from)
                    })?;
                    if rising {
                        frozen.thaw_below(to);
                    }
                    a = to;
                }
            }
        }
    }
    Ok(())
}

/// `fsync`, rename over the target, directory `fsync`.
fn commit_thread_job(job: &ThreadJob) -> io::Result<()> {
    unistd::fsync(job.file.as_fd())?;
    nix::fcntl::renameat(
        job.dir.as_fd(),
        job.temp_name.as_c_str(),
        job.dir.as_fd(),
        job.target_name.as_c_str(),
    )?;
    // As in the child: the image is in place; this only makes the rename durable.
    unistd::fsync(job.dir.as_fd())?;
    Ok(())
}

impl WriterThread {
    /// Waits for the thread; returns how it ended, how long after its start
    /// it did, and the 2 MiB chunks the writes of the rest of the program
    /// made it copy.
    pub fn wait(mut self) -> (ChildOutcome, Duration, u64) {
        self.join()
    }

    /// Has the thread ended? Never blocks.
    pub fn try_wait(&mut self) -> Option<(ChildOutcome, Duration, u64)> {
        if self
            .handle
            .as_ref()
            .is_some_and(std::thread::JoinHandle::is_finished)
        {
            Some(self.join())
        } else {
            None
        }
    }

    fn join(&mut self) -> (ChildOutcome, Duration, u64) {
        let (outcome, copies) = match self.handle.take().map(std::thread::JoinHandle::join) {
            Some(Ok((Ok(()), copies))) => (ChildOutcome::Done, copies),
            Some(Ok((Err(e), copies))) => (ChildOutcome::Failed(e), copies),
            Some(Err(_)) => (
                ChildOutcome::Failed(io::Error::other("the writer thread panicked")),
                0,
            ),
            None => (
                ChildOutcome::Failed(io::Error::other("the writer thread was already waited for")),
                0,
            ),
        };
        (outcome, self.started.elapsed(), copies)
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn child_fail(job: &WriteJob<'_>, errno: Errno) -> ! {
    let _ = unistd::unlinkat(job.dir, job.temp_name, UnlinkatFlags::NoRemoveDir);
    // SAFETY: as in `child_main`.
    unsafe { libc::_exit(exit_code(errno)) }
}

fn exit_code(errno: Errno) -> i32 {
    (errno as i32).clamp(1, 255)
}

fn start_writeback_raw(fd: libc::c_int, offset: u64, len: u64) {
    // SAFETY: a hint to the kernel about a file this process has open; it
    // touches no memory of the process. Failure is harmless and ignored.
    unsafe {
        libc::sync_file_range(
            fd,
            // Offsets and lengths within a file, far below i64::MAX.
            offset.cast_signed(),
            len.cast_signed(),
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Reserves the disk blocks for the first `len` bytes of a file that is
/// about to be written from its start (Linux `fallocate` with
/// `FALLOC_FL_KEEP_SIZE`: the blocks are allocated, the file's length still
/// grows only as it is written, so its size shows the progress). The writes
/// that follow then fill blocks the file already owns, and writing them
/// back needs no block allocation of its own (on ext4 this made the write
/// path of a 1 GiB snapshot, measured alone, about a third faster; see
/// docs/benchmarks.md, issue 12). A file system that cannot reserve blocks (`EOPNOTSUPP`, or
/// `EINVAL` for a file that is not a regular file) is written as before,
/// and `Ok(false)` says so; any other failure, such as `ENOSPC`, is
/// returned before a byte is written. Makes one system call: the forked
/// writer calls it too.
pub fn reserve_blocks(file: BorrowedFd<'_>, len: u64) -> Result<bool, Errno> {
    if len == 0 {
        return Ok(true);
    }
    let Ok(len) = i64::try_from(len) else {
        return Err(Errno::EFBIG);
    };
    match nix::fcntl::fallocate(file, FallocateFlags::FALLOC_FL_KEEP_SIZE, 0, len) {
        Ok(()) => Ok(true),
        Err(Errno::EOPNOTSUPP | Errno::ENOSYS | Errno::EINVAL) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Asks the kernel to start writing `offset..offset+len` of `file` back to
/// disk now, without waiting (Linux `sync_file_range`). A writer that calls
/// this after each large chunk overlaps the disk's work with its own, so the
/// final `fsync` finds little left to do. It is only a hint: errors show up
/// at the `fsync`, which the caller must still make.
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    start_writeback_raw(file.as_raw_fd(), offset, len);
}

/// Makes writes past the file-size limit (`ulimit -f`) fail with `EFBIG`
/// instead of killing the process with `SIGXFSZ`, so that a writer can
/// remove its temporary file and say what happened. This changes the
/// disposition for the whole process, which is what a command-line program
/// writing images wants.
pub fn ignore_file_size_signal() -> io::Result<()> {
    // SAFETY: SIG_IGN installs no handler, so no code runs in signal context.
    unsafe { signal::signal(Signal::SIGXFSZ, SigHandler::SigIgn) }?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::fd::AsFd;

    fn job_in(dir: &std::path::Path, target: &str) -> (File, File, CString, CString) {
        let tmp = dir.join(".tmp");
        let f = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .unwrap();
        let d = File::open(dir).unwrap();
        (
            f,
            d,
            CString::new(".tmp").unwrap(),
            CString::new(target).unwrap(),
        )
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("spur-mem-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_child_writes_syncs_and_renames() {
        let dir = scratch("ok");
        std::fs::write(dir.join("out"), b"old").unwrap();
        let (f, d, tmp, target) = job_in(&dir, "out");
        let big = vec![7u8; crate::to_usize(WRITEBACK_CHUNK + 5)];
        let pieces: [&[u8]; 3] = [b"head", &big, b"tail"];
        let job = WriteJob {
            file: f.as_fd(),
            pieces: &pieces,
            dir: d.as_fd(),
            temp_name: &tmp,
            target_name: &target,
        };
        let child = spawn_writer(&job).unwrap();
        assert!(child.pid() > 0);
        let (outcome, _) = child.wait().unwrap();
        assert!(matches!(outcome, ChildOutcome::Done), "{outcome:?}");
        let out = std::fs::read(dir.join("out")).unwrap();
        assert_eq!(out.len(), 8 + big.len());
        assert!(out.starts_with(b"head") && out.ends_with(b"tail"));
        assert!(!dir.join(".tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reserving_blocks_keeps_the_length_and_reports_real_failures() {
        use std::os::unix::fs::MetadataExt;
        let dir = scratch("reserve");
        let path = dir.join("f");
        let f = File::create(&path).unwrap();
        let len = 3 * WRITEBACK_CHUNK / 2 + 5;
        let reserved = reserve_blocks(f.as_fd(), len).unwrap();
        let m = f.metadata().unwrap();
        assert_eq!(m.len(), 0, "the length grows only as the file is written");
        if reserved {
            assert!(
                m.blocks() * 512 >= len,
                "{} blocks for {len} bytes",
                m.blocks()
            );
        }
        assert_eq!(reserve_blocks(f.as_fd(), 0), Ok(true));
        // A file open only for reading cannot be given blocks: the error is
        // returned, not taken for a file system without `fallocate`.
        let ro = File::open(&path).unwrap();
        assert_eq!(reserve_blocks(ro.as_fd(), 4096), Err(Errno::EBADF));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failing_child_removes_its_file_and_reports_errno() {
        let dir = scratch("fail");
        // Renaming a file over a non-empty directory fails (EISDIR).
        std::fs::create_dir_all(dir.join("out/inside")).unwrap();
        let (f, d, tmp, target) = job_in(&dir, "out");
        let pieces: [&[u8]; 1] = [b"data"];
        let job = WriteJob {
            file: f.as_fd(),
            pieces: &pieces,
            dir: d.as_fd(),
            temp_name: &tmp,
            target_name: &target,
        };
        let (outcome, _) = spawn_writer(&job).unwrap().wait().unwrap();
        match outcome {
            ChildOutcome::Failed(e) => assert_eq!(e.raw_os_error(), Some(libc::EISDIR)),
            other => panic!("expected a failure, got {other:?}"),
        }
        assert!(!dir.join(".tmp").exists());
        assert!(dir.join("out/inside").is_dir());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
