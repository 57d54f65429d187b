//! The external semaphore table (§4.4): where code outside Smalltalk (a
//! plugin, a signal handler, another thread) records that a semaphore must
//! be signalled; the interpreter signals the Semaphore objects held, by
//! 1-based index, in the ExternalObjectsArray (special object 38).
//!
//! Its size starts at 256 (`INITIAL_EXT_SEM_TABLE_SIZE`); a request (the
//! header's `hdrMaxExtSemTabSize` when non-zero, then the command line)
//! rounds up to a power of two and never shrinks the table
//! (`ioSetMaxExtSemTableSize`). The table also grows to cover the
//! ExternalObjectsArray the image already holds, so that every registered
//! semaphore can be signalled.
//!
//! A [`Signaller`] is a handle on the table's pending counts that can be
//! sent to another thread (an embedder's I/O thread): its signals wake the
//! interpreter's thread when it sleeps waiting for one.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;

use spur_format::raw::FMT_INDEXABLE;

use crate::error::RuntimeError;
use crate::memory::{Oop, ReadView};
use crate::special_objects::SpecialObjects;

/// The table's size before any request (PVM `sq.h`).
pub const INITIAL_EXT_SEM_TABLE_SIZE: u64 = 256;
/// The largest table accepted.
pub const MAX_EXT_SEM_TABLE_SIZE: u64 = 1 << 20;

/// Where the table's size came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeFrom {
    /// The VMs' initial size, [`INITIAL_EXT_SEM_TABLE_SIZE`].
    Default,
    /// The image header's `maxExtSemTabSize` (§1.3).
    Header,
    /// Given as an override by the caller (`--ext-sem-table`).
    CommandLine,
    /// Grown to cover the ExternalObjectsArray.
    ObjectsArray,
}

impl SizeFrom {
    /// `default`, `header`, `command-line` or `objects-array`.
    pub const fn name(self) -> &'static str {
        match self {
            SizeFrom::Default => "default",
            SizeFrom::Header => "header",
            SizeFrom::CommandLine => "command-line",
            SizeFrom::ObjectsArray => "objects-array",
        }
    }
}

/// The counts signallers add to and the interpreter drains, and the thread
/// to wake when one is added.
#[derive(Debug, Default)]
struct Pending {
    counts: Vec<AtomicU32>,
    /// Set by every signal, cleared by a drain: one load tells the
    /// interpreter whether to look.
    any: AtomicBool,
    waker: Mutex<Option<Thread>>,
}

/// A handle that signals the table's semaphores from any thread (it is
/// `Send` and `Sync`; clone it for each).
#[derive(Debug, Clone)]
pub struct Signaller(Arc<Pending>);

impl Signaller {
    /// Records a signal for the semaphore at 1-based `index` and wakes the
    /// interpreter's thread if it registered one. `false` when the index is
    /// outside the table.
    pub fn signal(&self, index: usize) -> bool {
        let Some(p) = index.checked_sub(1).and_then(|i| self.0.counts.get(i)) else {
            return false;
        };
        p.fetch_add(1, Ordering::AcqRel);
        self.0.any.store(true, Ordering::Release);
        if let Ok(w) = self.0.waker.lock() {
            if let Some(t) = w.as_ref() {
                t.unpark();
            }
        }
        true
    }

    /// Takes the pending signals: calls `f(index, count)` for each 1-based
    /// index signalled since the last call.
    pub fn drain(&self, mut f: impl FnMut(usize, u32)) {
        if !self.0.any.swap(false, Ordering::AcqRel) {
            return;
        }
        for (i, p) in self.0.counts.iter().enumerate() {
            let n = p.swap(0, Ordering::AcqRel);
            if n > 0 {
                f(i + 1, n);
            }
        }
    }

    /// Is a signal waiting to be drained?
    pub fn any_pending(&self) -> bool {
        self.0.any.load(Ordering::Acquire)
    }

    /// Makes `thread` the one each signal unparks (`None`: no thread).
    pub fn wake_on_signal(&self, thread: Option<Thread>) {
        if let Ok(mut w) = self.0.waker.lock() {
            *w = thread;
        }
    }

    /// Handles on this table besides the table's own and `self`: someone
    /// else (another thread) may still signal.
    pub fn others(&self) -> usize {
        Arc::strong_count(&self.0).saturating_sub(2)
    }
}

/// Pending signals, by semaphore index.
#[derive(Debug)]
pub struct ExternalSemaphoreTable {
    pending: Signaller,
    from: SizeFrom,
    objects_array: Option<Oop>,
    objects_len: u64,
}

/// `n` as `ioSetMaxExtSemTableSize` takes it: rounded up to a power of two,
/// never below `current`.
pub const fn grow_to(current: u64, n: u64) -> u64 {
    let p = n.next_power_of_two();
    if p > current {
        p
    } else {
        current
    }
}

impl ExternalSemaphoreTable {
    /// The table for the header's request, the command line's, and the
    /// image's ExternalObjectsArray.
    pub fn new(
        view: &ReadView<'_>,
        specials: &SpecialObjects,
        header_size: u16,
        requested: Option<u64>,
    ) -> Result<Self, RuntimeError> {
        let mut size = INITIAL_EXT_SEM_TABLE_SIZE;
        let mut from = SizeFrom::Default;
        if header_size != 0 && grow_to(size, u64::from(header_size)) > size {
            size = grow_to(size, u64::from(header_size));
            from = SizeFrom::Header;
        }
        if let Some(n) = requested {
            if n == 0 || n > MAX_EXT_SEM_TABLE_SIZE {
                return Err(RuntimeError::BadSemaphoreTable {
                    requested: n,
                    max: MAX_EXT_SEM_TABLE_SIZE,
                });
            }
            if grow_to(size, n) > size {
                size = grow_to(size, n);
                from = SizeFrom::CommandLine;
            }
        }
        let objects_array = specials
            .common()
            .external_objects_array()
            .filter(|&a| view.header(a).is_some_and(|h| h.format() == FMT_INDEXABLE));
        let objects_len = objects_array.and_then(|a| view.num_slots(a)).unwrap_or(0);
        if objects_len > size {
            size = grow_to(size, objects_len.min(MAX_EXT_SEM_TABLE_SIZE));
            from = SizeFrom::ObjectsArray;
        }
        Ok(ExternalSemaphoreTable {
            pending: Signaller(Arc::new(Pending {
                counts: (0..size).map(|_| AtomicU32::new(0)).collect(),
                any: AtomicBool::new(false),
                waker: Mutex::new(None),
            })),
            from,
            objects_array,
            objects_len,
        })
    }

    /// Entries in the table.
    pub fn size(&self) -> usize {
        self.pending.0.counts.len()
    }
    /// A handle that signals this table from any thread.
    pub fn signaller(&self) -> Signaller {
        self.pending.clone()
    }
    /// Where the size came from.
    pub fn size_from(&self) -> SizeFrom {
        self.from
    }
    /// The ExternalObjectsArray (special object 38), if the image has one.
    pub fn objects_array(&self) -> Option<Oop> {
        self.objects_array
    }
    /// Slots of the ExternalObjectsArray.
    pub fn objects_len(&self) -> u64 {
        self.objects_len
    }

    /// Records a signal for the semaphore at 1-based `index`, from any
    /// thread. `false` when the index is outside the table.
    pub fn signal(&self, index: usize) -> bool {
        self.pending.signal(index)
    }

    /// Takes the pending signals: calls `f(index, count)` for each 1-based
    /// index signalled since the last call.
    pub fn drain(&self, f: impl FnMut(usize, u32)) {
        self.pending.drain(f);
    }

    /// The Semaphore registered at 1-based `index`, if any.
    pub fn semaphore(&self, view: &ReadView<'_>, nil: Oop, index: usize) -> Option<Oop> {
        let a = self.objects_array?;
        let s = view.slot(a, index.checked_sub(1)? as u64)?;
        (s != nil).then_some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_up_and_never_shrink() {
        assert_eq!(grow_to(256, 16), 256);
        assert_eq!(grow_to(256, 256), 256);
        assert_eq!(grow_to(256, 257), 512);
        assert_eq!(grow_to(512, 1000), 1024);
    }

    /// A table of four entries with nothing pending and no objects array.
    fn table_of_four() -> ExternalSemaphoreTable {
        ExternalSemaphoreTable {
            pending: Signaller(Arc::new(Pending {
                counts: (0..4).map(|_| AtomicU32::new(0)).collect(),
                any: AtomicBool::new(false),
                waker: Mutex::new(None),
            })),
            from: SizeFrom::Default,
            objects_array: None,
            objects_len: 0,
        }
    }

    #[test]
    fn signals_are_counted_and_drained() {
        let t = table_of_four();
        assert!(t.signal(1) && t.signal(4) && t.signal(4));
        assert!(!t.signal(0) && !t.signal(5));
        let mut got = vec![];
        t.drain(|i, n| got.push((i, n)));
        assert_eq!(got, vec![(1, 1), (4, 2)]);
        got.clear();
        t.drain(|i, n| got.push((i, n)));
        assert!(got.is_empty());
    }

    #[test]
    fn another_thread_signals_and_wakes_the_parked_one() {
        let t = table_of_four();
        let mine = t.signaller();
        mine.wake_on_signal(Some(std::thread::current()));
        let theirs = t.signaller();
        assert_eq!(mine.others(), 1);
        let h = std::thread::spawn(move || assert!(theirs.signal(3)));
        // Parked until the signal (a spurious wake-up just loops).
        while !mine.any_pending() {
            std::thread::park();
        }
        h.join().unwrap();
        assert_eq!(mine.others(), 0);
        let mut got = vec![];
        mine.drain(|i, n| got.push((i, n)));
        assert_eq!(got, vec![(3, 1)]);
    }
}
