//! The two address spaces: addresses as the file records them, and addresses
//! in this process. Converting one into the other is a named operation.

use std::fmt;

/// An address as read from the image file: where something lived when the
/// image was saved.
///
/// Its field is private: it becomes a [`NewAddr`] only through a
/// [`Swizzle`] (`Swizzle::apply`, `Swizzle::IN_PLACE` for a segment that
/// did not move) or the loader's relocation.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct OldAddr(u64);

/// An address in this process: where something lives now.
///
/// Its field is private. A new address comes from a swizzle of an old one,
/// from memory this process reserved ([`NewAddr::in_reservation`]), or from
/// a pointer word of a loaded heap ([`NewAddr::from_heap_word`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NewAddr(u64);

impl OldAddr {
    /// The address the file records as `addr` (a header field, a segment
    /// start, a pointer word of a heap not yet relocated).
    #[inline(always)]
    pub const fn new(addr: u64) -> OldAddr {
        OldAddr(addr)
    }
    /// The address as a number, as the file holds it.
    #[inline(always)]
    pub const fn get(self) -> u64 {
        self.0
    }
    /// The address `bytes` further on in the file's address space.
    #[inline(always)]
    pub const fn plus(self, bytes: u64) -> OldAddr {
        OldAddr(self.0 + bytes)
    }
}

impl fmt::Debug for OldAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "old:{:#x}", self.0)
    }
}
impl fmt::Display for OldAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
impl fmt::Debug for NewAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "new:{:#x}", self.0)
    }
}
impl fmt::Display for NewAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl NewAddr {
    /// The address as a number of this process.
    #[inline(always)]
    pub const fn get(self) -> u64 {
        self.0
    }
    /// The address a pointer word of this process's heap names: a word read
    /// from a loaded heap, whose pointers already point into this process
    /// (the loader swizzled them, or the heap sits at its old addresses).
    /// Never an address read from the file: those are [`OldAddr`]s and
    /// become new addresses only through a relocation.
    #[inline(always)]
    pub const fn from_heap_word(word: u64) -> NewAddr {
        NewAddr(word)
    }
    /// The address `offset` bytes into memory this process reserved, whose
    /// first byte is at `base` (what the reservation answered).
    #[inline(always)]
    pub const fn in_reservation(base: u64, offset: u64) -> NewAddr {
        NewAddr(base + offset)
    }
    /// The address `bytes` further on.
    #[inline(always)]
    pub const fn plus(self, bytes: u64) -> NewAddr {
        NewAddr(self.0 + bytes)
    }
    /// Bytes from `earlier` to `self` (`None` when `earlier` lies after `self`).
    #[inline(always)]
    pub const fn offset_from(self, earlier: NewAddr) -> Option<u64> {
        self.0.checked_sub(earlier.0)
    }
    /// The address a file saved now records for what lives at `self`: a
    /// snapshot writes live addresses and rewrites no pointer (§7), so the
    /// new address of this process becomes the old address of the next load.
    #[inline]
    pub const fn as_saved(self) -> OldAddr {
        OldAddr(self.0)
    }
}

/// The distance a segment moved: `new = old + delta` (wrapping, as the VMs do).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Swizzle {
    /// New address minus old, as a two's-complement distance.
    pub delta: i64,
}

impl Swizzle {
    /// The identity relocation: a segment placed at the address it was
    /// saved at, whose old and new addresses are the same number.
    pub const IN_PLACE: Swizzle = Swizzle { delta: 0 };

    /// The swizzle that moves `old` to `new`.
    #[inline]
    pub const fn between(old: OldAddr, new: NewAddr) -> Self {
        Swizzle {
            delta: new.0.wrapping_sub(old.0).cast_signed(),
        }
    }
    /// Is this the identity (the segment did not move)?
    #[inline]
    pub const fn is_identity(self) -> bool {
        self.delta == 0
    }
    /// Where an old address lies now.
    #[inline(always)]
    pub const fn apply(self, old: OldAddr) -> NewAddr {
        NewAddr(old.0.wrapping_add(self.delta.cast_unsigned()))
    }
    /// Where a new address lay in the file.
    #[inline(always)]
    pub const fn undo(self, new: NewAddr) -> OldAddr {
        OldAddr(new.0.wrapping_sub(self.delta.cast_unsigned()))
    }
}
