//! Errors of the runtime: what could not be wired, with the numbers that explain it.

use crate::memory::MemoryError;
use spur_mem::MemError;

/// Why a loaded heap could not be wired into a runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// `--stack-pages 0` or another count no VM can run with.
    #[error("{requested} stack pages requested; a VM needs at least 1 (and at most {max})")]
    BadStackPages {
        /// Pages asked for.
        requested: u64,
        /// Most pages accepted.
        max: u64,
    },

    /// `--ext-sem-table 0` or a size past the table's limit.
    #[error("an external semaphore table of {requested} entries requested; give 1 to {max}")]
    BadSemaphoreTable {
        /// Entries asked for.
        requested: u64,
        /// Most entries accepted.
        max: u64,
    },

    /// New space too small for the allocation reserve of §4.4.
    #[error("new space of {new_space_bytes} bytes cannot hold the allocation reserve: {stack_pages} stack pages need {reserve} bytes of reserve, and an eden of {eden_bytes} bytes minus 1/64 leaves {usable}; give at least {minimum} bytes")]
    EdenTooSmall {
        /// Bytes of new space asked for.
        new_space_bytes: u64,
        /// Bytes of eden in that new space.
        eden_bytes: u64,
        /// Bytes of allocation reserve the stack pages need.
        reserve: u64,
        /// Stack pages the reserve is sized for.
        stack_pages: u64,
        /// Bytes of eden left for the reserve once its 1/64 headroom is kept free.
        usable: u64,
        /// Smallest new space, in bytes, whose eden holds the reserve.
        minimum: u64,
    },

    /// New space or stack zone larger than the word size can address.
    #[error("{what} of {bytes} bytes is more than a {bits}-bit heap can address")]
    TooLarge {
        /// The space concerned, e.g. "new space".
        what: &'static str,
        /// Its size in bytes.
        bytes: u64,
        /// The heap's word size in bits (32 or 64).
        bits: u32,
    },

    /// A 32-bit image's new space or stack zone must lie below 4 GiB, and no room is free there.
    #[error("no room below 4 GiB for the {what} of {bytes} bytes a 32-bit image needs")]
    NoRoomBelow4G {
        /// The space concerned: "new space" or "stack zone".
        what: &'static str,
        /// Its size in bytes.
        bytes: u64,
    },

    /// The special objects array is not an array, or too short.
    #[error("the special objects array at {addr:#x} {why}")]
    SpecialObjects {
        /// Address of the special objects array, in this process.
        addr: u64,
        /// What is wrong with it.
        why: String,
    },

    /// A compact class the VMs check at load is not where they expect it (§4.3).
    #[error("special object {slot} ({name}) is {found:#x}, but class index {index} holds {expected:#x}; the VMs refuse such an image")]
    CompactClass {
        /// The special-objects slot (0-based).
        slot: usize,
        /// The slot's name.
        name: &'static str,
        /// The class the slot holds (its address, 0 for none).
        found: u64,
        /// The compact class index the VMs expect that class at.
        index: u32,
        /// The class the class table holds at that index (its address, 0 for none).
        expected: u64,
    },

    /// The hidden roots or a class-table page is malformed (§4.2).
    #[error("class table: {why} (at {addr:#x})")]
    ClassTable {
        /// Address of the malformed object, in this process.
        addr: u64,
        /// What is wrong with it.
        why: String,
    },

    /// Neither the class name slot nor the metaclass `thisClass` slot could be found.
    #[error("cannot locate the {what} slot: {why}")]
    ClassLayout {
        /// The slot sought: "class name" or "thisClass".
        what: &'static str,
        /// Why no candidate fits.
        why: String,
    },

    /// The chain from the scheduler to the suspended context is broken.
    #[error("resume point: {what} at {addr:#x} {why}")]
    Resume {
        /// The object concerned, e.g. "scheduler" or "suspended context".
        what: &'static str,
        /// Its address (or oop), in this process.
        addr: u64,
        /// What is wrong with it.
        why: String,
    },

    /// The context's pc does not lie inside its method's bytecodes.
    #[error("resume point: context {context:#x} has pc {pc}, outside its method's bytecodes {initial_pc}..{end_pc}")]
    PcOutsideMethod {
        /// The suspended context (its address).
        context: u64,
        /// Its pc, the 1-based byte index in its method.
        pc: u64,
        /// The pc of the method's first bytecode.
        initial_pc: u64,
        /// The pc just past the method's last bytecode.
        end_pc: u64,
    },

    /// New space or the stack zone could not be reserved or committed.
    #[error(transparent)]
    Memory(#[from] MemError),

    /// An object could not be read or changed through the object memory.
    #[error(transparent)]
    Object(#[from] MemoryError),
}

impl RuntimeError {
    /// Is the image or a command-line value at fault (as opposed to the machine)?
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, RuntimeError::Memory(_))
            && !matches!(self, RuntimeError::Object(e) if e.is_machine())
    }
}
