//! A copy-on-write view of memory inside this process: the ranges are
//! write-protected through `userfaultfd`, and the first write to each
//! 2 MiB chunk of them waits until a handler thread has copied the chunk.
//! A reader ([`Frozen::view`]) then sees every byte as it was when
//! [`Frozen::freeze`] returned, while the rest of the program goes on
//! writing. This is what `fork` gives a background snapshot writer, at a
//! fraction of the pause: `fork` copies the page tables of the whole
//! process (for a 4 GiB heap of huge pages, 2,048 entries and as many new
//! page-table pages) before it returns, where write-protecting the same
//! heap changes a bit in each entry.
//!
//! # What the kernel must offer
//!
//! `userfaultfd` with write-protect faults on anonymous memory (Linux 5.7),
//! faults on pages never touched (`UFFD_FEATURE_WP_UNPOPULATED`, 6.4), and
//! the right to handle faults the kernel itself takes (a `read` into a
//! protected buffer): root or `CAP_SYS_PTRACE`, `vm.unprivileged_userfaultfd
//! = 1`, or access to `/dev/userfaultfd`. The user-mode-only variant is not
//! used: a system call writing into a protected range would fail with
//! `EFAULT` instead of waiting. The fault handler must be able to run while
//! a writing thread waits, which is not so under valgrind (it runs one
//! thread at a time), so under valgrind nothing is frozen. Where any of this
//! is missing, [`Frozen::freeze`] fails with [`FreezeError::Unsupported`]
//! and the caller falls back to `fork`.
//!
//! # Why the view is sound
//!
//! A byte of a protected range cannot change while its chunk is protected:
//! every write to it, from this process's code or from the kernel on its
//! behalf, stops in the kernel until the handler lifts the protection. The
//! handler copies a chunk before it lifts it, and never lifts it while a
//! reader is reading the chunk's memory directly (a reader *pins* the chunk;
//! the last unpin lifts a protection the handler had to leave). So a reader
//! sees either the protected memory itself or the copy, and both hold the
//! bytes of the freeze. The ranges stay mapped for as long as the
//! [`Frozen`] lives: each holds a lease on its [`Reservation`], whose drop,
//! `commit` and `map_file` wait until the lease is given back.
//!
//! The kernel structures are written here from its UAPI header
//! (`linux/userfaultfd.h`) rather than taken from the `userfaultfd` crate,
//! whose bindings are generated with bindgen, and so need libclang, at
//! build time.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::{Lease, Reservation};

/// The unit of copying: a huge page, so a chunk's protection is one page
/// table entry when the heap is in huge pages.
pub const CHUNK: u64 = 2 << 20;

const UFFD_API: u64 = 0xAA;
const UFFD_FEATURE_PAGEFAULT_FLAG_WP: u64 = 1 << 0;
const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;
const UFFD_EVENT_PAGEFAULT: u8 = 0x12;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

/// `struct uffd_msg`: 32 bytes, packed; a page fault's address is at 16.
const MSG_BYTES: usize = 32;

/// The ioctls, numbered as `linux/userfaultfd.h` numbers them.
mod ioctls {
    use super::{UffdioApi, UffdioRange, UffdioRegister, UffdioWriteprotect};
    nix::ioctl_readwrite!(uffdio_api, 0xAA, 0x3F, UffdioApi);
    nix::ioctl_readwrite!(uffdio_register, 0xAA, 0x00, UffdioRegister);
    nix::ioctl_read!(uffdio_unregister, 0xAA, 0x01, UffdioRange);
    nix::ioctl_read!(uffdio_wake, 0xAA, 0x02, UffdioRange);
    nix::ioctl_readwrite!(uffdio_writeprotect, 0xAA, 0x06, UffdioWriteprotect);
}
use ioctls::{uffdio_api, uffdio_register, uffdio_unregister, uffdio_wake, uffdio_writeprotect};

/// Why memory could not be frozen.
#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    /// The kernel, or this process's rights, do not offer what a frozen view
    /// needs (see the module documentation); `fork` still works.
    #[error("write-protecting memory is not available here: {0}")]
    Unsupported(String),
    /// A range that is not page-aligned or not committed in its reservation.
    #[error("range {offset:#x}+{len:#x} is not a page-aligned part of the committed {committed:#x} bytes at {base:#x}")]
    BadRange {
        /// The reservation's start.
        base: u64,
        /// Its committed bytes.
        committed: u64,
        /// Offset of the range.
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// A system call failed.
    #[error("write-protecting memory: {what}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The system's error.
        source: io::Error,
    },
}

/// One chunk's state, under [`Shared::chunks`].
#[derive(Default)]
struct Chunk {
    /// The chunk's bytes at the freeze, once a write asked for them.
    copy: Option<Arc<[u8]>>,
    /// Readers reading the chunk's memory itself.
    pins: u32,
    /// The protection is lifted.
    lifted: bool,
    /// The handler copied the chunk but left the protection to the last unpin.
    lift_pending: bool,
}

struct Shared {
    uffd: OwnedFd,
    /// Chunk starts, increasing, and each chunk's length.
    starts: Vec<u64>,
    lens: Vec<u64>,
    chunks: Mutex<Vec<Chunk>>,
    /// Chunks copied because a write came first, and their bytes.
    copies: AtomicU64,
    copied_bytes: AtomicU64,
}

/// Memory frozen for a reader while the program writes on: see the module
/// documentation. [`Frozen::thaw`] (or dropping it) lifts every protection
/// and gives the leases back.
pub struct Frozen {
    shared: Arc<Shared>,
    ranges: Vec<UffdioRange>,
    handler: Option<JoinHandle<()>>,
    /// Wakes the handler to stop.
    stop_tx: Option<File>,
    leases: Vec<Arc<Lease>>,
}

impl std::fmt::Debug for Frozen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frozen({} chunks)", self.shared.starts.len())
    }
}

fn io_err(what: &'static str) -> impl FnOnce(nix::errno::Errno) -> FreezeError {
    move |e| FreezeError::Io {
        what,
        source: e.into(),
    }
}

/// A userfaultfd that handles kernel-mode faults too, or why there is none.
fn open_uffd() -> Result<OwnedFd, FreezeError> {
    // Valgrind runs one thread at a time: a thread stopped in a
    // write-protect fault would keep the handler from ever running. Its
    // preloaded libraries give it away.
    if std::env::var("LD_PRELOAD").is_ok_and(|p| p.contains("vgpreload")) {
        return Err(FreezeError::Unsupported(
            "under valgrind, which runs one thread at a time, a write to frozen memory would wait for ever"
                .into(),
        ));
    }
    let flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: the system call takes flags only and returns a new descriptor
    // or -1.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) };
    if fd >= 0 {
        let fd =
            i32::try_from(fd).map_err(|_| FreezeError::Unsupported("odd descriptor".into()))?;
        // SAFETY: `fd` is a new descriptor this process owns alone.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let first = io::Error::last_os_error();
    // Without the right to the system call, the device may still be open to us.
    let dev = File::open("/dev/userfaultfd")
        .map_err(|_| FreezeError::Unsupported(format!("userfaultfd: {first}")))?;
    // SAFETY: USERFAULTFD_IOC_NEW takes the flags as its argument and returns
    // a new descriptor; `dev` is open.
    let fd = unsafe { libc::ioctl(dev.as_raw_fd(), userfaultfd_ioc_new_code(), flags) };
    if fd < 0 {
        return Err(FreezeError::Unsupported(format!(
            "userfaultfd: {first}; /dev/userfaultfd: {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: as above, a new descriptor of our own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The request number of `USERFAULTFD_IOC_NEW`, `_IO(0xAA, 0)`.
fn userfaultfd_ioc_new_code() -> libc::Ioctl {
    nix::request_code_none!(0xAA, 0x00) as libc::Ioctl
}

impl Frozen {
    /// Write-protects `parts` (a reservation, an offset and a length in it,
    /// page-aligned and inside its committed bytes) and starts the thread
    /// that copies a chunk at its first write. Returns once every part is
    /// protected.
    pub fn freeze(parts: &[(&Reservation, u64, u64)]) -> Result<Frozen, FreezeError> {
        let page = crate::page_size();
        let mut ranges = Vec::new();
        for &(r, offset, len) in parts {
            let ok = offset.is_multiple_of(page)
                && len.is_multiple_of(page)
                && len > 0
                && offset
                    .checked_add(len)
                    .is_some_and(|e| e <= r.committed() as u64);
            if !ok {
                return Err(FreezeError::BadRange {
                    base: r.base(),
                    committed: r.committed() as u64,
                    offset,
                    len,
                });
            }
            ranges.push(UffdioRange {
                start: r.base() + offset,
                len,
            });
        }
        ranges.sort_by_key(|r| r.start);
        if ranges
            .windows(2)
            .any(|w| w[0].start + w[0].len > w[1].start)
        {
            return Err(FreezeError::Unsupported("overlapping ranges".into()));
        }
        let uffd = open_uffd()?;
        let mut api = UffdioApi {
            api: UFFD_API,
            features: UFFD_FEATURE_WP_UNPOPULATED,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_API reads and writes the struct it is given.
        unsafe { uffdio_api(uffd.as_raw_fd(), &raw mut api) }.map_err(|e| {
            FreezeError::Unsupported(format!(
                "userfaultfd API with unpopulated write-protection: {e}"
            ))
        })?;
        if api.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP == 0 {
            return Err(FreezeError::Unsupported(
                "no write-protect faults in this kernel".into(),
            ));
        }
        // Made before anything is protected, so that nothing after it but
        // the handler's start can fail.
        let (stop_rx, stop_tx) = nix::unistd::pipe().map_err(io_err("making a pipe"))?;
        // Take the leases first: from here the memory stays mapped.
        let leases: Vec<Arc<Lease>> = parts.iter().map(|(r, _, _)| r.lease()).collect();
        let mut registered = Vec::new();
        for r in &ranges {
            let mut reg = UffdioRegister {
                range: *r,
                mode: UFFDIO_REGISTER_MODE_WP,
                ioctls: 0,
            };
            // SAFETY: registers memory this process owns (the reservations,
            // leased above) with its own descriptor; it changes no byte.
            if let Err(e) = unsafe { uffdio_register(uffd.as_raw_fd(), &raw mut reg) } {
                undo(&uffd, &registered, &leases);
                return Err(FreezeError::Unsupported(format!(
                    "registering {:#x}+{:#x} for write-protection: {e}",
                    r.start, r.len
                )));
            }
            registered.push(*r);
        }
        let (mut starts, mut lens) = (Vec::new(), Vec::new());
        for r in &ranges {
            let mut a = r.start;
            let end = r.start + r.len;
            while a < end {
                let next = ((a / CHUNK) + 1) * CHUNK;
                let to = next.min(end);
                starts.push(a);
                lens.push(to - a);
                a = to;
            }
        }
        for r in &ranges {
            if let Err(e) = protect(&uffd, *r, true) {
                undo(&uffd, &registered, &leases);
                return Err(FreezeError::Io {
                    what: "protecting the ranges",
                    source: e,
                });
            }
        }
        let chunks = (0..starts.len()).map(|_| Chunk::default()).collect();
        let shared = Arc::new(Shared {
            uffd,
            starts,
            lens,
            chunks: Mutex::new(chunks),
            copies: AtomicU64::new(0),
            copied_bytes: AtomicU64::new(0),
        });
        let s = Arc::clone(&shared);
        let handler = std::thread::Builder::new()
            .name("spur-wp-faults".into())
            .spawn(move || s.handle_faults(stop_rx));
        let handler = match handler {
            Ok(h) => h,
            Err(e) => {
                // Nothing can fault into a handler that never ran: lift all.
                for r in &ranges {
                    let _ = protect(&shared.uffd, *r, false);
                }
                undo(&shared.uffd, &registered, &leases);
                return Err(FreezeError::Io {
                    what: "starting the fault handler",
                    source: e,
                });
            }
        };
        Ok(Frozen {
            shared,
            ranges,
            handler: Some(handler),
            stop_tx: Some(File::from(stop_tx)),
            leases,
        })
    }

    /// Hands `f` the bytes of `addr..addr + len` as they were at the freeze,
    /// in pieces of at most one chunk, in order. The range must lie in the
    /// frozen ranges. Stops at `f`'s first error.
    pub fn view(
        &self,
        addr: u64,
        len: u64,
        f: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let s = &self.shared;
        let end = addr
            .checked_add(len)
            .ok_or_else(|| io::Error::other("range past the address space"))?;
        let mut a = addr;
        while a < end {
            let i = s
                .chunk_of(a)
                .ok_or_else(|| io::Error::other(format!("{a:#x} is not in the frozen memory")))?;
            let (cs, cl) = (s.starts[i], s.lens[i]);
            let to = end.min(cs + cl);
            let (off, n) = (usize_of(a - cs), usize_of(to - a));
            let copy = {
                let mut chunks = s.lock();
                let c = &mut chunks[i];
                if let Some(copy) = &c.copy {
                    Some(Arc::clone(copy))
                } else if c.lifted {
                    return Err(io::Error::other(format!(
                        "the chunk at {cs:#x} was thawed before it was read"
                    )));
                } else {
                    c.pins += 1;
                    None
                }
            };
            if let Some(copy) = copy {
                f(&copy[off..off + n])?;
            } else {
                // SAFETY: the chunk is mapped (a lease keeps it so), readable,
                // and cannot change while it is pinned and protected: see the
                // module documentation.
                let bytes = unsafe {
                    std::slice::from_raw_parts(
                        std::ptr::with_exposed_provenance::<u8>(usize_of(a)),
                        n,
                    )
                };
                let r = f(bytes);
                s.unpin(i);
                r?;
            }
            a = to;
        }
        Ok(())
    }

    /// Lifts the protection of every chunk that lies wholly below `addr`
    /// and drops its copy: for a reader that reads in increasing order and is
    /// done with that memory, so that later writes there cost nothing.
    pub fn thaw_below(&self, addr: u64) {
        let s = &self.shared;
        let upto = s.starts.partition_point(|&c| c < addr);
        let mut chunks = s.lock();
        for i in 0..upto {
            if s.starts[i] + s.lens[i] > addr {
                break;
            }
            let c = &mut chunks[i];
            if c.pins == 0 {
                c.copy = None;
                if !c.lifted {
                    c.lifted = true;
                    let _ = s.lift(i);
                }
            }
        }
    }

    /// Chunks copied because a write reached them before the reader was
    /// done, and their bytes.
    pub fn copies(&self) -> (u64, u64) {
        (
            self.shared.copies.load(Ordering::Relaxed),
            self.shared.copied_bytes.load(Ordering::Relaxed),
        )
    }

    /// Lifts every protection, stops the handler, unregisters the ranges and
    /// gives the leases back.
    pub fn thaw(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        let Some(handler) = self.handler.take() else {
            return;
        };
        let s = &self.shared;
        {
            let mut chunks = s.lock();
            for c in chunks.iter_mut() {
                c.copy = None;
                c.lifted = true;
            }
        }
        for r in &self.ranges {
            let _ = protect(&s.uffd, *r, false);
        }
        if let Some(mut tx) = self.stop_tx.take() {
            let _ = io::Write::write_all(&mut tx, b"x");
        }
        let _ = handler.join();
        for r in &self.ranges {
            let mut r = *r;
            // SAFETY: unregisters a range this descriptor registered.
            let _ = unsafe { uffdio_unregister(s.uffd.as_raw_fd(), &raw mut r) };
        }
        for l in self.leases.drain(..) {
            l.give_back();
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Unregisters `registered` and gives the leases back, after a failure.
fn undo(uffd: &OwnedFd, registered: &[UffdioRange], leases: &[Arc<Lease>]) {
    for r in registered {
        let mut r = *r;
        // SAFETY: unregisters a range this descriptor registered.
        let _ = unsafe { uffdio_unregister(uffd.as_raw_fd(), &raw mut r) };
    }
    for l in leases {
        l.give_back();
    }
}

fn usize_of(x: u64) -> usize {
    usize::try_from(x).expect("a 64-bit target")
}

/// Sets (`on`) or lifts the write protection of `r`; lifting wakes the
/// threads waiting on it.
fn protect(uffd: &OwnedFd, r: UffdioRange, on: bool) -> io::Result<()> {
    let mut wp = UffdioWriteprotect {
        range: r,
        mode: if on { UFFDIO_WRITEPROTECT_MODE_WP } else { 0 },
    };
    // SAFETY: changes the protection of registered memory of this process;
    // no byte changes.
    unsafe { uffdio_writeprotect(uffd.as_raw_fd(), &raw mut wp) }
        .map(drop)
        .map_err(Into::into)
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<Chunk>> {
        self.chunks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn chunk_of(&self, a: u64) -> Option<usize> {
        let i = self.starts.partition_point(|&c| c <= a).checked_sub(1)?;
        (a < self.starts[i] + self.lens[i]).then_some(i)
    }

    fn lift(&self, i: usize) -> io::Result<()> {
        protect(
            &self.uffd,
            UffdioRange {
                start: self.starts[i],
                len: self.lens[i],
            },
            false,
        )
    }

    fn unpin(&self, i: usize) {
        let mut chunks = self.lock();
        let c = &mut chunks[i];
        c.pins -= 1;
        if c.pins == 0 && c.lift_pending {
            c.lift_pending = false;
            c.lifted = true;
            let _ = self.lift(i);
        }
    }

    /// A write reached chunk `i`: copy it, then lift its protection (now,
    /// or at the last unpin), which lets the write go on.
    fn fault(&self, i: usize, addr: u64) {
        let mut chunks = self.lock();
        let c = &mut chunks[i];
        if c.lifted {
            // Lifted since the fault was queued; the lift woke the writer, and
            // waking again is harmless.
            drop(chunks);
            let page = crate::page_size();
            let mut r = UffdioRange {
                start: addr / page * page,
                len: page,
            };
            // SAFETY: wakes threads waiting on a registered range.
            let _ = unsafe { uffdio_wake(self.uffd.as_raw_fd(), &raw mut r) };
            return;
        }
        if c.copy.is_none() {
            let n = usize_of(self.lens[i]);
            // SAFETY: the chunk is mapped (leased) and protected, so nothing
            // writes to it while it is read.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    std::ptr::with_exposed_provenance::<u8>(usize_of(self.starts[i])),
                    n,
                )
            };
            c.copy = Some(Arc::from(bytes));
            self.copies.fetch_add(1, Ordering::Relaxed);
            self.copied_bytes.fetch_add(self.lens[i], Ordering::Relaxed);
        }
        if c.pins == 0 {
            c.lifted = true;
            let _ = self.lift(i);
        } else {
            c.lift_pending = true;
        }
    }

    fn handle_faults(&self, stop_rx: OwnedFd) {
        let mut fds = [
            libc::pollfd {
                fd: self.uffd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop_rx.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let mut uffd = File::from(self.uffd.try_clone().expect("dup of the userfaultfd"));
        let mut buf = [0u8; MSG_BYTES * 16];
        loop {
            // SAFETY: polls two descriptors this thread holds open.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            if fds[1].revents != 0 {
                break;
            }
            let got = match uffd.read(&mut buf) {
                Ok(g) => g,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            for m in buf[..got].chunks_exact(MSG_BYTES) {
                if m[0] != UFFD_EVENT_PAGEFAULT {
                    continue;
                }
                let addr = u64::from_ne_bytes(m[16..24].try_into().expect("8 bytes"));
                if let Some(i) = self.chunk_of(addr) {
                    self.fault(i, addr);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backing;
    use std::sync::atomic::AtomicBool;

    /// A frozen view, or `None` where the machine cannot make one; with
    /// `SPUR_REQUIRE_UFFD` set (CI does) that is a failure.
    fn freeze_or_skip(parts: &[(&Reservation, u64, u64)]) -> Option<Frozen> {
        match Frozen::freeze(parts) {
            Ok(f) => Some(f),
            Err(FreezeError::Unsupported(why))
                if std::env::var_os("SPUR_REQUIRE_UFFD").is_none() =>
            {
                eprintln!(
                    "note: write-protection unavailable here ({why}); frozen-view test skipped"
                );
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn pattern(i: usize) -> u8 {
        (i.wrapping_mul(31) ^ (i >> 12)).to_le_bytes()[0]
    }

    #[test]
    fn a_frozen_view_keeps_the_bytes_of_the_freeze_while_they_are_written() {
        let len = 5 * CHUNK + 3 * 4096;
        let mut r = Reservation::anywhere(len + CHUNK, CHUNK).unwrap();
        r.commit(len, Backing::HugePages).unwrap();
        // The last chunk and a half are never touched before the freeze.
        let filled = usize_of(3 * CHUNK + CHUNK / 2);
        for (i, b) in r.bytes_mut()[..filled].iter_mut().enumerate() {
            *b = pattern(i);
        }
        let want: Vec<u8> = (0..usize_of(len))
            .map(|i| if i < filled { pattern(i) } else { 0 })
            .collect();
        let base = r.base();
        let Some(frozen) = freeze_or_skip(&[(&r, 0, len)]) else {
            return;
        };
        // Another thread writes into every chunk, the untouched ones too,
        // while this one reads.
        let addr = usize_of(base);
        let writer = std::thread::spawn(move || {
            for k in 0..6 {
                let at = k * usize_of(CHUNK) + 4100;
                let p = std::ptr::with_exposed_provenance_mut::<u8>(addr + at);
                // SAFETY: the reservation outlives this thread, which is
                // joined before it is dropped, and nothing else touches it.
                unsafe { std::ptr::write_volatile(p, 0xEE) };
            }
        });
        writer.join().unwrap();
        let mut seen = Vec::new();
        frozen
            .view(base, len, &mut |b| {
                seen.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
        assert!(seen == want, "the view changed under the writes");
        let (copies, bytes) = frozen.copies();
        assert_eq!(copies, 6, "one copy for each chunk written");
        assert_eq!(bytes, len);
        // The memory itself holds the writes.
        assert_eq!(r.bytes()[4100], 0xEE);
        assert_eq!(r.bytes()[usize_of(5 * CHUNK) + 4100], 0xEE);
        frozen.thaw();
        r.bytes_mut()[0] = 1;
        assert_eq!(r.bytes()[0], 1);
    }

    #[test]
    fn a_thawed_chunk_takes_writes_without_a_copy_and_a_lease_holds_the_drop() {
        let len = 4 * CHUNK;
        let mut r = Reservation::anywhere(len, CHUNK).unwrap();
        r.commit(len, Backing::HugePages).unwrap();
        r.bytes_mut().fill(7);
        let base = r.base();
        let Some(frozen) = freeze_or_skip(&[(&r, CHUNK, 2 * CHUNK)]) else {
            return;
        };
        assert!(
            frozen.view(base, 8, &mut |_| Ok(())).is_err(),
            "outside the frozen ranges"
        );
        frozen.thaw_below(base + 2 * CHUNK);
        r.bytes_mut()[usize_of(CHUNK) + 5] = 9;
        r.bytes_mut()[usize_of(2 * CHUNK) + 5] = 9;
        assert_eq!(
            frozen.copies().0,
            1,
            "only the chunk still frozen was copied"
        );
        assert!(
            frozen.view(base + CHUNK, 8, &mut |_| Ok(())).is_err(),
            "thawed"
        );
        let mut second = Vec::new();
        frozen
            .view(base + 2 * CHUNK, 8, &mut |b| {
                second.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
        assert_eq!(second, vec![7; 8]);
        // The drop of the reservation waits for the view to end.
        let done = Arc::new(AtomicBool::new(false));
        let d = Arc::clone(&done);
        let dropper = std::thread::spawn(move || {
            drop(r);
            d.load(Ordering::Acquire)
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        done.store(true, Ordering::Release);
        frozen.thaw();
        assert!(
            dropper.join().unwrap(),
            "the reservation was unmapped under a frozen view"
        );
    }
}
