//! The read view: [`ObjectMemory`]'s reads answering `Option`, for the
//! wiring code (special objects, class table, dialect, semaphores, resume
//! point, stats), which treats what is not there as absent and reports it
//! in its own words.

use spur_format::raw::{FMT_BYTES, FMT_COMPILED_METHOD};
use spur_format::{NewAddr, ObjHeader, WordSize};

use super::{ObjectMemory, Oop};

/// Reads of an [`ObjectMemory`] that answer `None` for anything missing.
#[derive(Debug, Clone, Copy)]
pub struct ReadView<'m> {
    mem: &'m ObjectMemory,
}

impl<'m> ReadView<'m> {
    pub(super) fn new(mem: &'m ObjectMemory) -> Self {
        ReadView { mem }
    }
    /// The memory read.
    pub fn memory(&self) -> &'m ObjectMemory {
        self.mem
    }
    /// The heap's word size.
    #[inline]
    pub fn word(&self) -> WordSize {
        self.mem.word()
    }
    /// nil.
    #[inline]
    pub fn nil(&self) -> Oop {
        self.mem.nil()
    }
    /// Is `oop` a pointer to an object of one of the spaces?
    #[inline]
    pub fn is_object(&self, oop: Oop) -> bool {
        self.mem.header(oop).is_ok()
    }
    /// The header of `obj`.
    #[inline]
    pub fn header(&self, obj: Oop) -> Option<ObjHeader> {
        self.mem.header(obj).ok()
    }
    /// The slot count of `obj`.
    #[inline]
    pub fn num_slots(&self, obj: Oop) -> Option<u64> {
        self.mem.num_slots(obj).ok()
    }
    /// Slot `i` of `obj`, if it has that many.
    #[inline]
    pub fn slot(&self, obj: Oop, i: u64) -> Option<Oop> {
        self.mem.fetch(obj, i).ok()
    }
    /// The slots of `obj`, in order (none when it is not an object).
    pub fn slots(&self, obj: Oop) -> impl Iterator<Item = Oop> + 'm {
        let mem = self.mem;
        let n = mem.num_slots(obj).unwrap_or(0);
        (0..n).map_while(move |i| mem.fetch(obj, i).ok())
    }
    /// The bytes of a byte object or compiled method (unused tail bytes cut).
    pub fn bytes(&self, obj: Oop) -> Option<&'m [u8]> {
        if self.header(obj)?.format() < FMT_BYTES {
            return None;
        }
        self.mem.bytes(obj).ok()
    }
    /// Is `obj` a byte object (format 16..23), such as a String or Symbol?
    pub fn is_bytes(&self, obj: Oop) -> bool {
        self.header(obj)
            .is_some_and(|h| (FMT_BYTES..FMT_COMPILED_METHOD).contains(&h.format()))
    }
    /// Is `obj` compiled code (format 24..31: CompiledMethod, CompiledBlock)?
    pub fn is_compiled_code(&self, obj: Oop) -> bool {
        self.header(obj).is_some_and(|h| h.is_compiled_method())
    }
    /// The text of a byte object, read as Latin-1.
    pub fn string(&self, obj: Oop) -> Option<String> {
        self.mem.string(obj)
    }
    /// The address of `oop`, when it is an object.
    pub fn addr(&self, oop: Oop) -> Option<NewAddr> {
        self.is_object(oop).then(|| oop.addr(self.word())).flatten()
    }
}
