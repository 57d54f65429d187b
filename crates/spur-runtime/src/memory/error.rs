//! Why an object-memory operation could not be done.

use spur_format::FormatError;
use spur_loader::HeapAccessError;
use spur_mem::MemError;

/// Why an object-memory operation could not be done. Every variant names
/// the object or address involved; a failed operation changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// An immediate where an object is needed.
    #[error("{oop:#x} is an immediate, not an object")]
    Immediate {
        /// The immediate, as a heap word.
        oop: u64,
    },
    /// A pointer that lands in no space, or an object that runs past the end of its space.
    #[error("{addr:#x} is not the address of an object of the heap")]
    NotAnObject {
        /// The address, in this process.
        addr: u64,
    },
    /// A slot index past the object's slots.
    #[error("object {obj:#x} has {num_slots} slots; slot {index} does not exist")]
    NoSuchSlot {
        /// The object (its address).
        obj: u64,
        /// The slot asked for, 0-based.
        index: u64,
        /// Slots the object has.
        num_slots: u64,
    },
    /// A value wider than a 32-bit heap's words.
    #[error("{value:#x} does not fit a slot of a 32-bit heap")]
    TooWide {
        /// The value that does not fit 32 bits.
        value: u64,
    },
    /// A store into an object whose immutable bit is set.
    #[error("object {obj:#x} is immutable; slot {index} cannot be stored into")]
    Immutable {
        /// The object (its address).
        obj: u64,
        /// The slot of the store, 0-based.
        index: u64,
    },
    /// The operation needs another kind of object (a byte object, a pointer object).
    #[error("object {obj:#x} has format {format}; {why}")]
    WrongFormat {
        /// The object (its address).
        obj: u64,
        /// Its format field (0..=31, §3.2).
        format: u8,
        /// What the operation needed instead.
        why: &'static str,
    },
    /// Eden has no room for an allocation: a scavenge (the caller's) must make some.
    #[error("eden is full: {needed} bytes needed, {free} free")]
    EdenFull {
        /// Bytes the allocation needs, header included.
        needed: u64,
        /// Bytes left in eden below its limit.
        free: u64,
    },
    /// An allocation request no object can satisfy.
    #[error("cannot allocate an object of class index {class_index}, format {format}: {why}")]
    BadAllocation {
        /// The class index asked for (§4.2).
        class_index: u32,
        /// The format asked for (0..=31, §3.2).
        format: u8,
        /// Why that class and format cannot be allocated.
        why: &'static str,
    },
    /// A become that cannot be done.
    #[error("cannot become {from:#x} into {to:#x}: {why}")]
    Become {
        /// The object to be replaced (its address).
        from: u64,
        /// The object it was to become (its address).
        to: u64,
        /// Why it cannot be done.
        why: String,
    },
    /// The free-lists object (the 4th object, §4.1) is not one.
    #[error("the free-lists object at {addr:#x} is not one (class {class_index}, format {format}, {num_slots} slots)")]
    BadFreeLists {
        /// The object the hidden roots name as the free lists (its address).
        addr: u64,
        /// Its class index (§4.2).
        class_index: u32,
        /// Its format field (§3.2).
        format: u8,
        /// Slots it has.
        num_slots: u64,
    },
    /// A free-chunk tree link that does not lead to a free chunk.
    #[error("the free-chunk tree leads to {addr:#x}, which is not a free chunk")]
    BadFreeTree {
        /// Where the link leads, in this process.
        addr: u64,
    },
    /// A free-chunk tree that loops.
    #[error("the free-chunk tree is deeper than {limit} nodes; it must loop")]
    FreeTreeLoops {
        /// Nodes walked before giving up.
        limit: u64,
    },
    /// The last segment does not end in a bridge of its own.
    #[error("the last segment has no bridge of its own at {addr:#x}")]
    NoFinalBridge {
        /// Where the bridge should start, in this process.
        addr: u64,
    },
    /// Old space has no free chunk large enough and cannot grow by one:
    /// the machine has no memory (or address space) left, or the object is
    /// larger than a segment old space grows by.
    #[error("old space has no free chunk of {needed} bytes and cannot grow by one (the largest holds {largest})")]
    OldSpaceFull {
        /// Bytes asked for, overflow word included.
        needed: u64,
        /// Bytes of the largest free chunk.
        largest: u64,
    },
    /// Old space would grow past the limit its owner set
    /// ([`ObjectMemory::set_growth_limit`](super::ObjectMemory::set_growth_limit)).
    #[error("old space would grow past its limit of {limit} bytes: it grew by {grown} already and needs {needed} more")]
    GrowthLimit {
        /// Bytes the growth would add.
        needed: u64,
        /// Bytes old space grew by so far.
        grown: u64,
        /// The limit.
        limit: u64,
    },
    /// A walk over a segment found a malformed object.
    #[error(transparent)]
    Walk(#[from] FormatError),
    /// The heap's raw memory refused an access.
    #[error(transparent)]
    Heap(#[from] HeapAccessError),
    /// Memory could not be made accessible.
    #[error(transparent)]
    Memory(#[from] MemError),
}

impl MemoryError {
    /// Is the machine (memory) at fault rather than the heap or the request?
    pub fn is_machine(&self) -> bool {
        matches!(
            self,
            MemoryError::Memory(_) | MemoryError::Heap(HeapAccessError::Memory(_))
        )
    }
}
