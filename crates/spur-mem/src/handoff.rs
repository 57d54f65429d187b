//! A buffer filled front to back by one thread while another works on the
//! part not yet filled: a load at the old base reads on one side while the
//! other faults in pages ahead of it.
//!
//! [`handoff`] splits a `&mut [u8]` into a [`Filler`] and a [`Filled`]. The
//! filler writes the buffer in order, one piece at a time, and publishes each
//! piece when it is complete; the other side sees, each time it asks, the
//! whole prefix published so far as one contiguous `&mut [u8]`. Neither side
//! ever sees the bytes the other may be touching: the filler only reaches
//! bytes past the published frontier, the other side only bytes before it.
//! Safe Rust cannot say this (the boundary moves), which is why it lives here.

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::mpsc;

/// Splits `bytes` into the side that fills it and the side that reads what
/// is filled. Both may be sent to other threads (within `bytes`' lifetime,
/// e.g. with [`std::thread::scope`]).
pub fn handoff(bytes: &mut [u8]) -> (Filler<'_>, Filled<'_>) {
    let (tx, rx) = mpsc::channel();
    split(bytes, tx, rx)
}

fn split(
    bytes: &mut [u8],
    tx: mpsc::Sender<usize>,
    rx: mpsc::Receiver<usize>,
) -> (Filler<'_>, Filled<'_>) {
    let ptr = NonNull::from(&mut *bytes).cast::<u8>();
    let len = bytes.len();
    (
        Filler {
            ptr,
            len,
            frontier: 0,
            tx,
            _bytes: PhantomData,
        },
        Filled {
            ptr,
            len,
            visible: 0,
            published: 0,
            rx,
            _bytes: PhantomData,
        },
    )
}

/// The side that fills the buffer, front to back.
#[derive(Debug)]
pub struct Filler<'a> {
    ptr: NonNull<u8>,
    len: usize,
    /// Bytes before this are published and belong to the other side.
    frontier: usize,
    /// Where each new frontier is sent.
    tx: mpsc::Sender<usize>,
    _bytes: PhantomData<&'a mut [u8]>,
}

// SAFETY: a Filler only touches `frontier..len` of a buffer it borrows
// mutably for 'a, which no one else touches (the other side stays below the
// published frontier); moving it to another thread moves that access.
unsafe impl Send for Filler<'_> {}

impl Filler<'_> {
    /// Bytes published so far.
    pub fn frontier(&self) -> usize {
        self.frontier
    }

    /// Bytes not yet filled.
    pub fn remaining(&self) -> usize {
        self.len - self.frontier
    }

    /// Hands the next `n` bytes (fewer at the end) to `f`, then publishes
    /// them. Returns `Ok(false)` when the other side has gone (nothing more
    /// needs filling), `Ok(true)` otherwise. When `f` fails its bytes stay
    /// unpublished and its error is returned.
    pub fn fill<E>(
        &mut self,
        n: usize,
        f: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<bool, E> {
        let n = n.min(self.remaining());
        // SAFETY: `frontier..frontier + n` lies inside the buffer borrowed
        // mutably for 'a, and only this side touches bytes at or past the
        // frontier; the slice is dropped before the frontier moves past it.
        let piece =
            unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(self.frontier), n) };
        f(piece)?;
        self.frontier += n;
        // The channel orders the writes above before the other side's reads.
        Ok(self.tx.send(self.frontier).is_ok())
    }
}

/// The side that works on the filled prefix.
#[derive(Debug)]
pub struct Filled<'a> {
    ptr: NonNull<u8>,
    len: usize,
    visible: usize,
    /// The latest frontier received (at least `visible`).
    published: usize,
    rx: mpsc::Receiver<usize>,
    _bytes: PhantomData<&'a mut [u8]>,
}

// SAFETY: a Filled only touches `0..visible`, bytes the filler has published
// and will never touch again; moving it to another thread moves that access.
unsafe impl Send for Filled<'_> {}

impl Filled<'_> {
    /// The buffer's whole length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes published and seen so far.
    pub fn visible(&self) -> usize {
        self.visible
    }

    /// Faults in, writable, the pages of `from..to` (offsets in the buffer)
    /// that the filler has not reached yet, without changing a byte
    /// (`MADV_POPULATE_WRITE`): the kernel's page clearing, and on a virtual
    /// machine the host's faults, then happen on this thread instead of in
    /// the filler's copy. Only whole pages inside the buffer are touched;
    /// returns whether the kernel did it (it may not offer the advice).
    pub fn prefault(&self, from: usize, to: usize) -> bool {
        let page = usize::try_from(crate::page_size()).unwrap_or(4096);
        let base = self.ptr.as_ptr() as usize;
        let start = (base + from.min(self.len)).next_multiple_of(page);
        let end = (base + to.min(self.len)) / page * page;
        if end <= start {
            return true;
        }
        let Some(at) = NonNull::new(start as *mut std::ffi::c_void) else {
            return false;
        };
        // SAFETY: `start..end` is whole pages inside the buffer, which is
        // borrowed mutably for 'a and so mapped; the advice only faults
        // pages in and never changes their contents, so it cannot disturb
        // the filler's writes or bytes already published.
        unsafe {
            nix::sys::mman::madvise(
                at,
                end - start,
                nix::sys::mman::MmapAdvise::MADV_POPULATE_WRITE,
            )
        }
        .is_ok()
    }

    /// Waits until more bytes are published and returns the whole published
    /// prefix. `None` once the filler is gone and nothing new was published
    /// (the buffer is full, or the filler stopped early: compare
    /// [`visible`](Self::visible) with [`len`](Self::len)).
    pub fn wait(&mut self) -> Option<&mut [u8]> {
        self.drain();
        if self.published == self.visible {
            self.published = self.rx.recv().ok()?;
            self.drain();
        }
        self.visible = self.published;
        // SAFETY: `0..visible` lies inside the buffer borrowed mutably for
        // 'a; the filler published it (the channel orders its writes before
        // this) and never touches it again. The slice borrows `self`, so
        // no two views live at once.
        Some(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.visible) })
    }

    /// How far the filler has published, without waiting (nothing of it is
    /// lent until [`wait`](Self::wait)).
    pub fn published(&mut self) -> usize {
        self.drain();
        self.published
    }

    fn drain(&mut self) {
        while let Ok(more) = self.rx.try_recv() {
            self.published = more;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_other_side_sees_every_published_byte_in_order() {
        let mut buf = vec![0u8; 1000];
        let seen = std::thread::scope(|s| {
            let (mut filler, mut filled) = handoff(&mut buf);
            s.spawn(move || {
                let mut k = 0u8;
                while filler.remaining() > 0 {
                    let go = filler
                        .fill(64, |p| {
                            for b in p.iter_mut() {
                                *b = k;
                                k = k.wrapping_add(1);
                            }
                            Ok::<_, ()>(())
                        })
                        .unwrap();
                    assert!(go);
                }
            });
            let mut last = 0;
            while let Some(view) = filled.wait() {
                assert!(view.len() > last && view.len() <= 1000);
                for (i, b) in view.iter().enumerate().skip(last) {
                    assert_eq!(*b, i.to_le_bytes()[0]);
                }
                // The other side may write what it sees.
                view[last] = 0xEE;
                last = view.len();
            }
            (last, filled.visible())
        });
        assert_eq!(seen, (1000, 1000));
        assert!(buf.contains(&0xEE));
    }

    #[test]
    fn prefaulting_changes_no_byte() {
        let mut buf: Vec<u8> = (0..100_000u32).map(|i| i.to_le_bytes()[0]).collect();
        let want = buf.clone();
        let (mut filler, filled) = handoff(&mut buf);
        filler.fill(10_000, |_| Ok::<_, ()>(())).unwrap();
        filled.prefault(0, 100_000);
        filled.prefault(90_000, 5);
        drop((filler, filled));
        assert_eq!(buf, want);
    }

    #[test]
    fn a_failed_piece_is_not_published() {
        let mut buf = vec![0u8; 100];
        let (mut filler, mut filled) = handoff(&mut buf);
        assert_eq!(filler.fill(40, |_| Ok::<_, ()>(())), Ok(true));
        assert_eq!(filler.fill(40, |_| Err("short read")), Err("short read"));
        assert_eq!(filler.frontier(), 40);
        drop(filler);
        assert_eq!(filled.wait().map(|v| v.len()), Some(40));
        assert!(filled.wait().is_none());
        assert_eq!(filled.visible(), 40);
    }

    #[test]
    fn the_filler_learns_when_the_other_side_has_gone() {
        let mut buf = vec![0u8; 100];
        let (mut filler, filled) = handoff(&mut buf);
        drop(filled);
        assert_eq!(filler.fill(10, |_| Ok::<_, ()>(())), Ok(false));
    }
}
