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
//! It is also the only crate with `unsafe` code, so the few other system
//! calls the workspace needs live here too, each behind a safe function:
//! [`process`] forks the background snapshot writer (a fixed child routine
//! that only makes async-signal-safe calls), waits for it, starts early
//! writeback of a file and ignores `SIGXFSZ`.

use std::fmt;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

pub mod process;

/// Errors of the memory crate, with the addresses and sizes involved.
#[derive(Debug, thiserror::Error)]
pub enum MemError {
    #[error("address range {addr:#x}..{end:#x} is already in use by {}", describe(.occupants))]
    Occupied {
        addr: u64,
        end: u64,
        occupants: Vec<Occupant>,
    },
    #[error("address {addr:#x} or length {len:#x} is not page-aligned (page size {page:#x})")]
    Unaligned { addr: u64, len: u64, page: u64 },
    #[error("cannot reserve {len} bytes of address space at {addr:#x}: {source}")]
    Reserve {
        addr: u64,
        len: u64,
        source: std::io::Error,
    },
    #[error("cannot make {len} bytes at {addr:#x} accessible: {source}")]
    Commit {
        addr: u64,
        len: u64,
        source: std::io::Error,
    },
    #[error("range {offset:#x}+{len:#x} lies outside the {size:#x}-byte reservation at {base:#x}")]
    OutOfRange {
        base: u64,
        size: u64,
        offset: u64,
        len: u64,
    },
    #[error("cannot map {len} bytes of a file at {addr:#x}: {source}")]
    MapFile {
        addr: u64,
        len: u64,
        source: std::io::Error,
    },
}

/// A mapping found in a range that was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupant {
    pub start: u64,
    pub end: u64,
    /// Protection as `/proc/self/maps` writes it (`r-xp`), or from the `region` crate.
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

/// The system page size.
pub fn page_size() -> u64 {
    region::page::size() as u64
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
/// Ranges come from the `region` crate; names are added from
/// `/proc/self/maps` where the system has it.
pub fn who_maps(addr: u64, len: u64) -> Vec<Occupant> {
    let mut found: Vec<Occupant> = match region::query_range(addr as *const u8, len as usize) {
        Ok(iter) => iter
            .filter_map(Result::ok)
            .map(|r| {
                let start = r.as_range().start as u64;
                Occupant {
                    start,
                    end: start + r.len() as u64,
                    protection: r.protection().to_string(),
                    name: None,
                }
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    if let Ok(maps) = std::fs::read_to_string("/proc/self/maps") {
        for o in &mut found {
            o.name = maps.lines().find_map(|line| {
                let mut parts = line.split_whitespace();
                let range = parts.next()?;
                let (s, e) = range.split_once('-')?;
                let (s, e) = (
                    u64::from_str_radix(s, 16).ok()?,
                    u64::from_str_radix(e, 16).ok()?,
                );
                if s <= o.start && o.start < e {
                    let prot = parts.next()?;
                    o.protection = prot.to_string();
                    parts.nth(3).map(str::to_string)
                } else {
                    None
                }
            });
        }
    }
    found
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

impl Reservation {
    /// Reserves exactly `addr..addr+len`, or fails without touching anything
    /// mapped there. Both must be page-aligned.
    pub fn at(addr: u64, len: u64) -> Result<Reservation, MemError> {
        let page = page_size();
        if !addr.is_multiple_of(page) || !len.is_multiple_of(page) || len == 0 || addr == 0 {
            return Err(MemError::Unaligned { addr, len, page });
        }
        let end = addr
            .checked_add(len)
            .ok_or(MemError::Unaligned { addr, len, page })?;
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping: the
        // kernel fails with EEXIST instead. The new mapping is anonymous and
        // PROT_NONE, so nothing can observe it until it is committed.
        let p = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                len as usize,
                libc::PROT_NONE,
                libc::MAP_PRIVATE
                    | libc::MAP_ANONYMOUS
                    | libc::MAP_NORESERVE
                    | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EEXIST) {
                return Err(MemError::Occupied {
                    addr,
                    end,
                    occupants: who_maps(addr, len),
                });
            }
            return Err(MemError::Reserve {
                addr,
                len,
                source: err,
            });
        }
        // Kernels before 4.17 ignore MAP_FIXED_NOREPLACE and treat the address
        // as a hint: accept only an exact placement.
        if p as u64 != addr {
            // SAFETY: `p` is the mapping just created by this call, `len` bytes long;
            // nobody else has seen it.
            unsafe { libc::munmap(p, len as usize) };
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
            base: NonNull::new(p as *mut u8).expect("mmap returned a non-null address"),
            len: len as usize,
            committed: 0,
        })
    }

    /// Reserves `len` bytes wherever the kernel chooses, aligned to `align`
    /// (a power of two, at least the page size).
    pub fn anywhere(len: u64, align: u64) -> Result<Reservation, MemError> {
        let page = page_size();
        let align = align.max(page);
        if !len.is_multiple_of(page) || len == 0 || !align.is_power_of_two() {
            return Err(MemError::Unaligned { addr: 0, len, page });
        }
        let total =
            len.checked_add(align - page)
                .ok_or(MemError::Unaligned { addr: 0, len, page })?;
        // SAFETY: no address is given, so the kernel picks an unused range.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total as usize,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(MemError::Reserve {
                addr: 0,
                len: total,
                source: std::io::Error::last_os_error(),
            });
        }
        let start = p as u64;
        let aligned = (start + align - 1) & !(align - 1);
        let head = aligned - start;
        let tail = total - head - len;
        // SAFETY: the head and tail trimmed here lie inside the mapping just made
        // and outside the part kept.
        unsafe {
            if head > 0 {
                libc::munmap(p, head as usize);
            }
            if tail > 0 {
                libc::munmap((aligned + len) as *mut libc::c_void, tail as usize);
            }
        }
        Ok(Reservation {
            base: NonNull::new(aligned as *mut u8).expect("mmap returned a non-null address"),
            len: len as usize,
            committed: 0,
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

    /// Bytes accessible from the start.
    pub fn committed(&self) -> usize {
        self.committed
    }

    /// Makes `0..len` readable and writable (rounded up to whole pages). The
    /// committed prefix only grows; new pages read as zero.
    pub fn commit(&mut self, len: u64, backing: Backing) -> Result<(), MemError> {
        let want = page_ceil(len);
        if want > self.len as u64 {
            return Err(MemError::OutOfRange {
                base: self.base(),
                size: self.len as u64,
                offset: 0,
                len,
            });
        }
        let want = want as usize;
        if want <= self.committed {
            return Ok(());
        }
        let from = self.committed;
        // SAFETY: `from..want` lies inside this reservation, which this value owns.
        let start = unsafe { self.base.as_ptr().add(from) };
        let n = want - from;
        // SAFETY: changes protection only of pages this reservation owns.
        let rc = unsafe {
            libc::mprotect(
                start as *mut libc::c_void,
                n,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            return Err(MemError::Commit {
                addr: start as u64,
                len: n as u64,
                source: std::io::Error::last_os_error(),
            });
        }
        if backing == Backing::HugePages {
            // SAFETY: advice on pages this reservation owns; failure is harmless
            // (the system may not offer huge pages) and is ignored.
            unsafe { libc::madvise(start as *mut libc::c_void, n, libc::MADV_HUGEPAGE) };
        }
        self.committed = want;
        Ok(())
    }

    /// The committed prefix.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `0..committed` is mapped readable and writable and owned by
        // this value; the borrow of `self` keeps it mapped.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.committed) }
    }

    /// The committed prefix, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), self.committed) }
    }

    /// Maps `len` bytes of `file` from `file_offset` copy-on-write at
    /// `offset` inside this reservation, and commits up to its end. Later
    /// writes to the memory never reach the file, and changes to the file
    /// may or may not be seen (`MAP_PRIVATE`). Offsets must be page-aligned
    /// and the range must lie inside the reservation; pages already committed
    /// there are replaced, which is sound because this value owns them.
    pub fn map_file(
        &mut self,
        offset: u64,
        file: &File,
        file_offset: u64,
        len: u64,
    ) -> Result<(), MemError> {
        let page = page_size();
        if !offset.is_multiple_of(page) || !file_offset.is_multiple_of(page) {
            return Err(MemError::Unaligned {
                addr: self.base() + offset,
                len,
                page,
            });
        }
        let end = offset.checked_add(len).filter(|&e| e <= self.len as u64);
        if end.is_none() || len == 0 {
            return Err(MemError::OutOfRange {
                base: self.base(),
                size: self.len as u64,
                offset,
                len,
            });
        }
        let addr = self.base() + offset;
        // SAFETY: MAP_FIXED is used only inside this reservation, which this value
        // owns exclusively (checked just above): it replaces nothing but our own pages.
        let p = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                file.as_raw_fd(),
                file_offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(MemError::MapFile {
                addr,
                len,
                source: std::io::Error::last_os_error(),
            });
        }
        assert_eq!(
            p as u64, addr,
            "MAP_FIXED inside a reservation moved the mapping"
        );
        let new_committed = page_ceil(offset + len) as usize;
        if offset as usize <= self.committed && new_committed > self.committed {
            self.committed = new_committed;
        }
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: the whole range was mapped by this value and nothing else
        // refers to it once it is dropped (slices borrow `self`).
        unsafe { libc::munmap(self.base.as_ptr() as *mut libc::c_void, self.len) };
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
}
