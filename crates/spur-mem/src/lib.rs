//! Address-space reservation and placement for Spur heaps.
//!
//! This is the only crate of the workspace that calls `mmap`, `munmap`,
//! `mprotect` or `madvise`. It hands out [`Reservation`]s: ranges of address
//! space this process owns, each unmapped when its owner is dropped.
//!
//! What it guarantees:
//! - Nothing is ever mapped over memory the process does not own. A range is
//!   reserved at a chosen address only with `MAP_FIXED_NOREPLACE`, and the
//!   address the kernel returns is checked (older kernels treat the flag as a
//!   hint); plain `MAP_FIXED` is used only inside a reservation already owned.
//! - When a range is taken, [`MemError::Occupied`] says by whom (the mappings
//!   found there, with their file names when `/proc/self/maps` tells them).
//! - A reservation starts inaccessible (`PROT_NONE`, `MAP_NORESERVE`); only its
//!   committed prefix is readable and writable, and only that prefix is ever
//!   exposed as a slice.
//!
//! What it leaves to the caller: choosing addresses (page-aligned) and sizes,
//! and what goes into the memory.
//!
//! Two functions are `unsafe`: [`Reservation::map_file`], which maps a file
//! copy-on-write into a reservation. Its bytes are then handed out as `&[u8]`,
//! but the file is shared with every other process that can open it: one that
//! writes to it may change bytes behind a live `&[u8]`, and one that truncates
//! it makes the next touch of a page past the new end raise `SIGBUS`. Only the
//! caller can know that nobody will, so the caller promises it, either at each
//! call or once with [`FilesUnchanged::assume`] (the other), whose token the
//! safe [`Reservation::map_file_unchanged`] takes.
//!
//! It is also the only crate with `unsafe` code (a caller's promise aside:
//! `vm-loader` makes one for `--map-files`), so the few other system calls
//! the workspace needs live here too, each behind a safe function:
//! [`process`] forks the background snapshot writer (a fixed child routine
//! that only makes async-signal-safe calls), waits for it, starts early
//! writeback of a file and ignores `SIGXFSZ`, or starts a writer thread;
//! [`wp`] write-protects a heap so that such a thread reads it as it was
//! while the rest of the program writes on; [`handoff`] lets one thread
//! work on the filled front of a buffer while another fills the rest;
//! [`hint::prefetch`] asks for a cache line ahead of its use.

// The crate uses Linux-only mmap flags (MAP_FIXED_NOREPLACE, MAP_NORESERVE)
// and /proc/self/maps, and its sizes are u64s that index memory as usize.
#[cfg(not(target_os = "linux"))]
compile_error!("spur-mem (and so the whole workspace) builds on Linux only");
#[cfg(not(target_pointer_width = "64"))]
compile_error!("spur-mem needs a 64-bit target (usize of 64 bits)");

use std::fmt;
use std::fs::File;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use nix::errno::Errno;
use nix::sys::mman::{self, MapFlags, MmapAdvise, ProtFlags};

pub mod handoff;
pub mod hint;
pub mod process;
pub mod wp;

/// Errors of the memory crate, with the addresses and sizes involved.
#[derive(Debug, thiserror::Error)]
pub enum MemError {
    /// The range asked for is taken; the occupants say by what.
    #[error("address range {addr:#x}..{end:#x} is already in use by {}", describe(.occupants))]
    Occupied {
        /// Start of the range.
        addr: u64,
        /// End of the range.
        end: u64,
        /// The mappings found there.
        occupants: Vec<Occupant>,
    },
    /// An address or length that is not a multiple of the page size.
    #[error("address {addr:#x} or length {len:#x} is not page-aligned (page size {page:#x})")]
    Unaligned {
        /// The address asked for.
        addr: u64,
        /// The length asked for.
        len: u64,
        /// The page size.
        page: u64,
    },
    /// The kernel refused to reserve the range.
    #[error("cannot reserve {len} bytes of address space at {addr:#x}")]
    Reserve {
        /// The address asked for (0: anywhere).
        addr: u64,
        /// Bytes asked for.
        len: u64,
        /// The system's error.
        source: std::io::Error,
    },
    /// The kernel refused to make reserved pages accessible.
    #[error("cannot make {len} bytes at {addr:#x} accessible")]
    Commit {
        /// Start of the pages.
        addr: u64,
        /// Bytes asked for.
        len: u64,
        /// The system's error.
        source: std::io::Error,
    },
    /// A range that does not lie inside the reservation.
    #[error("range {offset:#x}+{len:#x} lies outside the {size:#x}-byte reservation at {base:#x}")]
    OutOfRange {
        /// The reservation's start.
        base: u64,
        /// The reservation's size.
        size: u64,
        /// Offset of the range asked for.
        offset: u64,
        /// Its length.
        len: u64,
    },
    #[error(
        "cannot map {len} bytes from offset {file_offset:#x} of a file of {file_len} bytes: \
         the file ends {} bytes short",
        shortfall(.file_offset, .len, .file_len)
    )]
    /// A file mapping that would reach past the end of the file.
    FileTooShort {
        /// Offset in the file.
        file_offset: u64,
        /// Bytes to map.
        len: u64,
        /// The file's length.
        file_len: u64,
    },
    /// The kernel refused to map the file.
    #[error("cannot map {len} bytes of a file at {addr:#x}")]
    MapFile {
        /// Where it was to go.
        addr: u64,
        /// Bytes to map.
        len: u64,
        /// The system's error.
        source: std::io::Error,
    },
}

/// A mapping found in a range that was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupant {
    /// Start of the mapping.
    pub start: u64,
    /// End of the mapping.
    pub end: u64,
    /// Protection and sharing as `/proc/self/maps` writes them (`r-xp`), from the `region` crate.
    pub protection: String,
    /// The file or pseudo-file mapped there (`[heap]`, `/usr/lib/libc.so.6`), if any.
    pub name: Option<String>,
}

impl fmt::Display for Occupant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#x}..{:#x} {} {}",
            self.start,
            self.end,
            self.protection,
            self.name.as_deref().unwrap_or("(anonymous)")
        )
    }
}

fn shortfall(file_offset: &u64, len: &u64, file_len: &u64) -> u64 {
    file_offset.saturating_add(*len).saturating_sub(*file_len)
}

fn describe(occupants: &[Occupant]) -> String {
    if occupants.is_empty() {
        return "an existing mapping".to_string();
    }
    occupants
        .iter()
        .map(|o| o.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `x` as a `usize`: exact, since this crate builds for 64-bit targets only
/// (see the `compile_error!` at the top).
const fn to_usize(x: u64) -> usize {
    // 64-bit targets only: a u64 always fits a usize.
    #[allow(clippy::cast_possible_truncation)]
    let n = x as usize;
    n
}

/// The system page size.
pub fn page_size() -> u64 {
    region::page::size() as u64
}

/// Resident memory of this process in bytes: the resident page count of
/// `/proc/self/statm` times the page size, or `None` when it cannot be read.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    pages.checked_mul(page_size())
}

/// Rounds `x` down to a page boundary.
pub fn page_floor(x: u64) -> u64 {
    x & !(page_size() - 1)
}

/// Rounds `x` up to a page boundary (saturating at the top of the address space).
pub fn page_ceil(x: u64) -> u64 {
    let p = page_size();
    x.checked_add(p - 1).map_or(!(p - 1), |y| y & !(p - 1))
}

/// The mappings of this process that overlap `addr..addr+len`.
///
/// Ranges, protection and sharing come from the `region` crate. It cannot
/// tell what is mapped (a file's path, `[heap]`, `[stack]`), so the names are
/// looked up in `/proc/self/maps` where the system has it.
pub fn who_maps(addr: u64, len: u64) -> Vec<Occupant> {
    let mut found: Vec<Occupant> = match region::query_range(addr as *const u8, to_usize(len)) {
        Ok(iter) => iter
            .filter_map(Result::ok)
            .map(|r| {
                let range = r.as_range();
                Occupant {
                    start: range.start as u64,
                    end: range.end as u64,
                    protection: format!(
                        "{}{}",
                        r.protection(),
                        if r.is_shared() { 's' } else { 'p' }
                    ),
                    name: None,
                }
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    if let Ok(maps) = std::fs::read_to_string("/proc/self/maps") {
        for o in &mut found {
            o.name = maps.lines().find_map(|line| mapped_name(line, o.start));
        }
    }
    found
}

/// The name column of a `/proc/self/maps` line (`start-end perms offset dev
/// inode name`) whose range holds `addr`.
fn mapped_name(line: &str, addr: u64) -> Option<String> {
    // Fields are separated by one space; the name (which may hold spaces)
    // follows the inode after padding.
    let mut fields = line.splitn(6, ' ');
    let (s, e) = fields.next()?.split_once('-')?;
    let (s, e) = (
        u64::from_str_radix(s, 16).ok()?,
        u64::from_str_radix(e, 16).ok()?,
    );
    if !(s <= addr && addr < e) {
        return None;
    }
    let name = fields.nth(4)?.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// How to commit memory that is about to be filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backing {
    /// Ordinary pages, faulted in as they are first written.
    #[default]
    Pages,
    /// Ask for transparent huge pages where the system offers them: far fewer
    /// page faults when a large heap is filled at once.
    HugePages,
}

/// A range of address space this process owns; unmapped on drop.
///
/// Only its committed prefix (`0..committed()`) is accessible.
pub struct Reservation {
    base: NonNull<u8>,
    len: usize,
    committed: usize,
    /// Readers elsewhere ([`wp::Frozen`]) that need the mapping as it is.
    leases: Arc<Lease>,
}

/// The count of a reservation's leases: while it is above zero, the
/// reservation is neither unmapped nor remapped (its drop, `commit` and
/// `map_file` wait).
#[derive(Debug, Default)]
pub(crate) struct Lease {
    count: Mutex<usize>,
    zero: Condvar,
}

impl Lease {
    fn take(&self) {
        *self.count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
    }
    /// Ends one lease.
    pub(crate) fn give_back(&self) {
        let mut n = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.zero.notify_all();
        }
    }
    fn wait_none(&self) {
        let mut n = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        while *n > 0 {
            n = self.zero.wait(n).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

// SAFETY: a Reservation owns its mapping exclusively, like a Vec<u8> owns its
// buffer; moving it to another thread moves that ownership.
unsafe impl Send for Reservation {}
// SAFETY: shared references only give out `&[u8]` of the committed prefix.
unsafe impl Sync for Reservation {}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Reservation({:#x}..{:#x}, committed {:#x})",
            self.base(),
            self.base() + self.len() as u64,
            self.committed
        )
    }
}

/// A caller's promise that the files it maps stay as they are: the token that
/// [`Reservation::map_file_unchanged`] takes instead of an `unsafe` call.
///
/// It can only be made with the `unsafe` [`FilesUnchanged::assume`], so safe
/// code that holds one got it from code that took the responsibility. A
/// program that maps files on its user's word (a command-line flag) makes
/// one where it reads that word, and hands it down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilesUnchanged {
    _promise: (),
}

impl FilesUnchanged {
    /// Promises that every file later mapped under this token is left alone
    /// while it is mapped.
    ///
    /// # Safety
    ///
    /// For every file mapped with [`Reservation::map_file_unchanged`] under
    /// this token, from the call until the [`Reservation`] is dropped: no
    /// process (this one included) writes to the mapped range of the file,
    /// through any descriptor or shared mapping, and nobody truncates the
    /// file below the end of that range. A write breaks the immutability of
    /// the `&[u8]` that [`Reservation::bytes`] hands out (on Linux the new
    /// bytes show through every page the heap has not written yet); a
    /// truncation makes the next access to a page past the new end raise
    /// `SIGBUS`, which kills the process. Replacing a file by renaming
    /// another over its name, or deleting it, is harmless: the mapping keeps
    /// the old file.
    pub unsafe fn assume() -> FilesUnchanged {
        FilesUnchanged { _promise: () }
    }
}

/// `len` as the non-zero length the system calls take.
fn nonzero(len: u64) -> Option<NonZeroUsize> {
    usize::try_from(len).ok().and_then(NonZeroUsize::new)
}

impl Reservation {
    /// Reserves exactly `addr..addr+len`, or fails without touching anything
    /// mapped there. Both must be page-aligned.
    pub fn at(addr: u64, len: u64) -> Result<Reservation, MemError> {
        let page = page_size();
        let unaligned = MemError::Unaligned { addr, len, page };
        if !addr.is_multiple_of(page) || !len.is_multiple_of(page) {
            return Err(unaligned);
        }
        let (Some(at), Some(n), Some(end)) = (nonzero(addr), nonzero(len), addr.checked_add(len))
        else {
            return Err(unaligned);
        };
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping: the
        // kernel fails with EEXIST instead. The new mapping is anonymous and
        // PROT_NONE, so nothing can observe it until it is committed.
        let mapped = unsafe {
            mman::mmap_anonymous(
                Some(at),
                n,
                ProtFlags::PROT_NONE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE | MapFlags::MAP_FIXED_NOREPLACE,
            )
        };
        let p = match mapped {
            Ok(p) => p,
            Err(Errno::EEXIST) => {
                return Err(MemError::Occupied {
                    addr,
                    end,
                    occupants: who_maps(addr, len),
                })
            }
            Err(e) => {
                return Err(MemError::Reserve {
                    addr,
                    len,
                    source: e.into(),
                })
            }
        };
        // Kernels before 4.17 ignore MAP_FIXED_NOREPLACE and treat the address
        // as a hint: accept only an exact placement.
        if p.as_ptr() as u64 != addr {
            // SAFETY: `p` is the mapping just created by this call, `len` bytes long;
            // nobody else has seen it. Failure would only leak address space.
            let _ = unsafe { mman::munmap(p, n.get()) };
            return Err(MemError::Occupied {
                addr,
                end,
                occupants: who_maps(addr, len),
            });
        }
        tracing::debug!(
            addr = format_args!("{addr:#x}"),
            len,
            "reserved at fixed address"
        );
        Ok(Reservation {
            base: p.cast(),
            len: n.get(),
            committed: 0,
            leases: Arc::default(),
        })
    }

    /// Reserves `len` bytes wherever the kernel chooses, aligned to `align`
    /// (a power of two, at least the page size).
    pub fn anywhere(len: u64, align: u64) -> Result<Reservation, MemError> {
        let page = page_size();
        let align = align.max(page);
        let unaligned = MemError::Unaligned { addr: 0, len, page };
        if !len.is_multiple_of(page) || len == 0 || !align.is_power_of_two() {
            return Err(unaligned);
        }
        let Some(total) = len.checked_add(align - page).and_then(nonzero) else {
            return Err(unaligned);
        };
        // SAFETY: no address is given, so the kernel picks an unused range.
        let p = unsafe {
            mman::mmap_anonymous(
                None,
                total,
                ProtFlags::PROT_NONE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
            )
        }
        .map_err(|e| MemError::Reserve {
            addr: 0,
            len: total.get() as u64,
            source: e.into(),
        })?;
        let start = p.as_ptr() as u64;
        let aligned = (start + align - 1) & !(align - 1);
        let head = to_usize(aligned - start);
        let tail = total.get() - head - to_usize(len);
        // SAFETY: `head < total`, so the aligned start lies inside the mapping just made.
        let base = unsafe { p.cast::<u8>().add(head) };
        // SAFETY: the head and tail trimmed here lie inside the mapping just made
        // and outside the part kept. Failure would only leak address space.
        unsafe {
            if head > 0 {
                let _ = mman::munmap(p, head);
            }
            if tail > 0 {
                let _ = mman::munmap(base.add(to_usize(len)).cast(), tail);
            }
        }
        Ok(Reservation {
            base,
            len: to_usize(len),
            committed: 0,
            leases: Arc::default(),
        })
    }

    /// First address of the reservation.
    pub fn base(&self) -> u64 {
        self.base.as_ptr() as u64
    }

    /// Bytes reserved.
    pub fn len(&self) -> usize {
        self.len
    }

    /// A reservation is never empty; provided for symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A new lease on the mapping, given back through [`Lease::give_back`].
    pub(crate) fn lease(&self) -> Arc<Lease> {
        self.leases.take();
        Arc::clone(&self.leases)
    }

    /// Bytes accessible from the start.
    pub fn committed(&self) -> usize {
        self.committed
    }

    /// Makes `0..len` readable and writable (rounded up to whole pages). The
    /// committed prefix only grows; new pages read as zero.
    pub fn commit(&mut self, len: u64, backing: Backing) -> Result<(), MemError> {
        self.leases.wait_none();
        let want = page_ceil(len);
        if want > self.len as u64 {
            return Err(MemError::OutOfRange {
                base: self.base(),
                size: self.len as u64,
                offset: 0,
                len,
            });
        }
        let want = to_usize(want);
        if want <= self.committed {
            return Ok(());
        }
        let from = self.committed;
        // SAFETY: `from..want` lies inside this reservation, which this value owns.
        let start = unsafe { self.base.add(from) };
        let n = want - from;
        // SAFETY: changes protection only of pages this reservation owns.
        unsafe {
            mman::mprotect(
                start.cast(),
                n,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            )
        }
        .map_err(|e| MemError::Commit {
            addr: start.as_ptr() as u64,
            len: n as u64,
            source: e.into(),
        })?;
        if backing == Backing::HugePages {
            // SAFETY: advice on pages this reservation owns; failure is harmless
            // (the system may not offer huge pages) and is ignored.
            let _ = unsafe { mman::madvise(start.cast(), n, MmapAdvise::MADV_HUGEPAGE) };
        }
        self.committed = want;
        Ok(())
    }

    /// The committed prefix.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `0..committed` is mapped readable and writable and owned by
        // this value; the borrow of `self` keeps it mapped. Where a file is
        // mapped, its caller promised that nobody changes it (`map_file`).
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.committed) }
    }

    /// The committed prefix, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), self.committed) }
    }

    /// Maps `len` bytes of `file` from `file_offset` copy-on-write at
    /// `offset` inside this reservation, and commits up to its end when the
    /// committed prefix reaches `offset`. Writes to the memory never reach
    /// the file (`MAP_PRIVATE`). Offsets must be page-aligned, the range must
    /// lie inside the reservation, and the file must hold
    /// `file_offset..file_offset+len` now ([`MemError::FileTooShort`]
    /// otherwise). Pages already committed there are replaced, which is
    /// sound because this value owns them and `&mut self` proves that no
    /// slice of them is alive.
    ///
    /// # Safety
    ///
    /// Until this reservation is dropped, no process (this one included)
    /// writes to `file_offset..file_offset+len` of the file, through any
    /// descriptor or shared mapping, and nobody truncates the file below
    /// `file_offset+len`. Otherwise the bytes behind a `&[u8]` from
    /// [`Reservation::bytes`] may change (on Linux a write shows through
    /// every page not written here yet), and touching a page past a new end
    /// of the file raises `SIGBUS`. Renaming another file over the name, or
    /// deleting it, is harmless: the mapping keeps the old file.
    pub unsafe fn map_file(
        &mut self,
        offset: u64,
        file: &File,
        file_offset: u64,
        len: u64,
    ) -> Result<(), MemError> {
        self.leases.wait_none();
        let page = page_size();
        if !offset.is_multiple_of(page) || !file_offset.is_multiple_of(page) {
            return Err(MemError::Unaligned {
                addr: self.base().saturating_add(offset),
                len,
                page,
            });
        }
        let end = offset.checked_add(len).filter(|&e| e <= self.len as u64);
        let Some((end, n)) = end.zip(nonzero(len)) else {
            return Err(MemError::OutOfRange {
                base: self.base(),
                size: self.len as u64,
                offset,
                len,
            });
        };
        let addr = self.base() + offset;
        let file_len = file
            .metadata()
            .map_err(|source| MemError::MapFile { addr, len, source })?
            .len();
        let file_end = file_offset.checked_add(len);
        if file_end.is_none_or(|e| e > file_len) {
            return Err(MemError::FileTooShort {
                file_offset,
                len,
                file_len,
            });
        }
        // `file_offset < file_len`, which fits an off_t.
        let at_file = file_offset.cast_signed();
        // SAFETY: MAP_FIXED is used only inside this reservation, which this value
        // owns exclusively (checked just above): it replaces nothing but our own
        // pages, and `&mut self` proves no slice of them is alive. That the file
        // stays as it is while mapped is the caller's promise (see `# Safety`).
        let p = unsafe {
            mman::mmap(
                nonzero(addr),
                n,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_FIXED,
                file,
                at_file,
            )
        }
        .map_err(|e| MemError::MapFile {
            addr,
            len,
            source: e.into(),
        })?;
        assert_eq!(
            p.as_ptr() as u64,
            addr,
            "MAP_FIXED inside a reservation moved the mapping"
        );
        let new_committed = to_usize(page_ceil(end));
        if to_usize(offset) <= self.committed && new_committed > self.committed {
            self.committed = new_committed;
        }
        Ok(())
    }

    /// [`Reservation::map_file`], for a caller that holds the promise it
    /// needs as a [`FilesUnchanged`] token.
    pub fn map_file_unchanged(
        &mut self,
        promise: FilesUnchanged,
        offset: u64,
        file: &File,
        file_offset: u64,
        len: u64,
    ) -> Result<(), MemError> {
        let FilesUnchanged { _promise: () } = promise;
        // SAFETY: the token exists only through `FilesUnchanged::assume`, whose
        // caller promised for every file mapped under it what `map_file` asks.
        unsafe { self.map_file(offset, file, file_offset, len) }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // A frozen view may still read the memory.
        self.leases.wait_none();
        // SAFETY: the whole range was mapped by this value and nothing else
        // refers to it once it is dropped (slices borrow `self`). Failure
        // would only leak address space.
        let _ = unsafe { mman::munmap(self.base.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_commits_and_releases() {
        let mut r = Reservation::anywhere(1 << 20, 1 << 16).unwrap();
        assert_eq!(r.base() % (1 << 16), 0);
        assert_eq!(r.bytes().len(), 0);
        r.commit(100, Backing::Pages).unwrap();
        assert_eq!(r.committed() as u64, page_size());
        r.bytes_mut()[99] = 7;
        assert_eq!(r.bytes()[99], 7);
        let base = r.base();
        drop(r);
        // The range is free again: reserve it at its exact address.
        let again = Reservation::at(base, 1 << 20).unwrap();
        assert_eq!(again.base(), base);
    }

    #[test]
    fn an_occupied_range_is_refused_and_named() {
        let r = Reservation::anywhere(1 << 20, 0).unwrap();
        let e = Reservation::at(r.base() + page_size(), page_size()).unwrap_err();
        match e {
            MemError::Occupied { occupants, .. } => {
                assert!(occupants
                    .iter()
                    .any(|o| o.start <= r.base() + page_size() && r.base() + page_size() < o.end));
            }
            other => panic!("expected Occupied, got {other}"),
        }
        // Still intact and ours.
        assert_eq!(r.len(), 1 << 20);
    }

    #[test]
    fn the_executable_is_never_mapped_over() {
        let here = page_floor(reserves_commits_and_releases as fn() as usize as u64);
        let e = Reservation::at(here, page_size()).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("already in use"), "{text}");
    }

    #[test]
    fn unaligned_requests_are_refused() {
        assert!(matches!(
            Reservation::at(0x804008, page_size()),
            Err(MemError::Unaligned { .. })
        ));
    }

    #[test]
    fn commit_past_the_end_is_refused() {
        let mut r = Reservation::anywhere(page_size(), 0).unwrap();
        assert!(matches!(
            r.commit(2 * page_size(), Backing::Pages),
            Err(MemError::OutOfRange { .. })
        ));
    }

    /// A scratch file of `len` bytes, byte `i` holding `i % 251`.
    fn scratch_file(name: &str, len: u64) -> (std::path::PathBuf, File) {
        let path = std::env::temp_dir().join(format!("spur-mem-map-{name}-{}", std::process::id()));
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let f = File::open(&path).unwrap();
        (path, f)
    }

    #[test]
    fn a_file_maps_at_an_offset_and_writes_stay_private() {
        let p = page_size();
        let (path, f) = scratch_file("cow", 3 * p + 100);
        let original = std::fs::read(&path).unwrap();
        let mut r = Reservation::anywhere(8 * p, 0).unwrap();
        r.commit(2 * p, Backing::Pages).unwrap();
        r.bytes_mut()[to_usize(p)] = 0xAB;
        let len = 2 * p + 100;
        // SAFETY: the file is this test's own scratch file; nothing writes to
        // or truncates it while `r` lives.
        unsafe { r.map_file(2 * p, &f, p, len) }.unwrap();
        // The committed prefix now runs to the end of the mapping, and what
        // was committed before it is as it was.
        assert_eq!(r.committed() as u64, page_ceil(2 * p + len));
        assert_eq!(r.bytes()[to_usize(p)], 0xAB);
        let at = 2 * to_usize(p);
        assert_eq!(
            &r.bytes()[at..at + to_usize(len)],
            &original[to_usize(p)..to_usize(p + len)]
        );
        // Past the end of the file, the last page reads as zero.
        assert!(r.bytes()[at + to_usize(len)..].iter().all(|&b| b == 0));
        r.bytes_mut()[at..at + 8].copy_from_slice(b"changed!");
        r.bytes_mut()[at + to_usize(len) - 1] ^= 0xFF;
        assert_eq!(&r.bytes()[at..at + 8], b"changed!");
        drop(r);
        assert_eq!(std::fs::read(&path).unwrap(), original);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn the_token_maps_like_the_unsafe_call() {
        let p = page_size();
        let (path, f) = scratch_file("token", p);
        let mut r = Reservation::anywhere(p, 0).unwrap();
        // SAFETY: the file is this test's own scratch file; nothing writes to
        // or truncates it while `r` lives.
        let promise = unsafe { FilesUnchanged::assume() };
        r.map_file_unchanged(promise, 0, &f, 0, p).unwrap();
        assert_eq!(r.bytes(), &std::fs::read(&path).unwrap()[..]);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_file_too_short_for_the_range_is_refused_with_the_numbers() {
        let p = page_size();
        let (path, f) = scratch_file("short", 2 * p);
        let mut r = Reservation::anywhere(4 * p, 0).unwrap();
        r.commit(p, Backing::Pages).unwrap();
        r.bytes_mut()[0] = 9;
        for (file_offset, len) in [(0, 3 * p), (p, 2 * p), (2 * p, 1), (4 * p, p)] {
            // SAFETY: the file is this test's own; nothing is mapped anyway.
            let e = unsafe { r.map_file(0, &f, file_offset, len) }.unwrap_err();
            match &e {
                MemError::FileTooShort {
                    file_offset: o,
                    len: l,
                    file_len,
                } => assert_eq!((*o, *l, *file_len), (file_offset, len, 2 * p)),
                other => panic!("expected FileTooShort, got {other}"),
            }
            let short = file_offset + len - 2 * p;
            assert!(
                e.to_string().contains(&format!("ends {short} bytes short")),
                "{e}"
            );
        }
        // Nothing was replaced.
        assert_eq!((r.committed() as u64, r.bytes()[0]), (p, 9));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn mapping_outside_the_reservation_or_unaligned_is_refused() {
        let p = page_size();
        let (path, f) = scratch_file("range", 4 * p);
        let mut r = Reservation::anywhere(2 * p, 0).unwrap();
        // SAFETY: the file is this test's own; nothing is mapped anyway.
        unsafe {
            assert!(matches!(
                r.map_file(p, &f, 0, 2 * p),
                Err(MemError::OutOfRange { .. })
            ));
            assert!(matches!(
                r.map_file(0, &f, 0, 0),
                Err(MemError::OutOfRange { .. })
            ));
            assert!(matches!(
                r.map_file(8, &f, 0, p),
                Err(MemError::Unaligned { .. })
            ));
            assert!(matches!(
                r.map_file(0, &f, 8, p),
                Err(MemError::Unaligned { .. })
            ));
        }
        std::fs::remove_file(&path).unwrap();
    }

    /// Why `map_file` is `unsafe`: a write to the file shows through the
    /// pages the mapping has not written yet (what Linux does; POSIX leaves
    /// it open), while a page written here keeps its private copy.
    #[test]
    fn a_write_to_the_file_shows_through_untouched_pages() {
        use std::os::unix::fs::FileExt;
        let p = page_size();
        let (path, f) = scratch_file("through", 2 * p);
        let mut r = Reservation::anywhere(2 * p, 0).unwrap();
        // SAFETY: the test writes to the file below, but only while no slice
        // of `r` is alive, and never truncates it.
        unsafe { r.map_file(0, &f, 0, 2 * p) }.unwrap();
        r.bytes_mut()[0] = 0xEE;
        let w = File::options().write(true).open(&path).unwrap();
        w.write_all_at(b"new", 0).unwrap();
        w.write_all_at(b"new", p).unwrap();
        let b = r.bytes();
        assert_eq!(b[0], 0xEE, "the written page is a private copy");
        assert_eq!(
            &b[1..3],
            &[1, 2],
            "the private copy predates the file's change"
        );
        assert_eq!(
            &b[to_usize(p)..to_usize(p) + 3],
            b"new",
            "the untouched page shows the file"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn occupants_are_named_from_proc_maps() {
        let line = "7f0000000000-7f0000001000 r-xp 00000000 08:01 1234       /usr/lib/a b.so";
        assert_eq!(
            mapped_name(line, 0x7f00_0000_0800).as_deref(),
            Some("/usr/lib/a b.so")
        );
        assert_eq!(mapped_name(line, 0x7f00_0000_1000), None);
        let anon = "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 ";
        assert_eq!(mapped_name(anon, 0x7f00_0000_0000), None);
        let r = Reservation::anywhere(page_size(), 0).unwrap();
        let found = who_maps(r.base(), page_size());
        assert!(
            found
                .iter()
                .any(|o| o.start <= r.base() && r.base() < o.end && o.protection == "---p"),
            "{found:?}"
        );
    }
}
