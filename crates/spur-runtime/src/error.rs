//! Errors of the runtime: what could not be wired, with the numbers that explain it.

use crate::memory::MemoryError;
use spur_mem::MemError;

/// Why a loaded heap could not be wired into a runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// `--stack-pages 0` or another count no VM can run with.
    #[error("{requested} stack pages requested; a VM needs at least 1 (and at most {max})")]
    BadStackPages { requested: u64, max: u64 },

    /// `--ext-sem-table 0` or a size past the table's limit.
    #[error("an external semaphore table of {requested} entries requested; give 1 to {max}")]
    BadSemaphoreTable { requested: u64, max: u64 },

    /// New space too small for the allocation reserve of §4.4.
    #[error("new space of {new_space_bytes} bytes cannot hold the allocation reserve: {stack_pages} stack pages need {reserve} bytes of reserve, and an eden of {eden_bytes} bytes minus 1/64 leaves {usable}; give at least {minimum} bytes")]
    EdenTooSmall {
        new_space_bytes: u64,
        eden_bytes: u64,
        reserve: u64,
        stack_pages: u64,
        usable: u64,
        minimum: u64,
    },

    /// New space or stack zone larger than the word size can address.
    #[error("{what} of {bytes} bytes is more than a {bits}-bit heap can address")]
    TooLarge {
        what: &'static str,
        bytes: u64,
        bits: u32,
    },

    /// A 32-bit image's new space or stack zone must lie below 4 GiB, and no room is free there.
    #[error("no room below 4 GiB for the {what} of {bytes} bytes a 32-bit image needs")]
    NoRoomBelow4G { what: &'static str, bytes: u64 },

    /// The special objects array is not an array, or too short.
    #[error("the special objects array at {addr:#x} {why}")]
    SpecialObjects { addr: u64, why: String },

    /// A compact class the VMs check at load is not where they expect it (§4.3).
    #[error("special object {slot} ({name}) is {found:#x}, but class index {index} holds {expected:#x}; the VMs refuse such an image")]
    CompactClass {
        slot: usize,
        name: &'static str,
        found: u64,
        index: u32,
        expected: u64,
    },

    /// The hidden roots or a class-table page is malformed (§4.2).
    #[error("class table: {why} (at {addr:#x})")]
    ClassTable { addr: u64, why: String },

    /// Neither the class name slot nor the metaclass `thisClass` slot could be found.
    #[error("cannot locate the {what} slot: {why}")]
    ClassLayout { what: &'static str, why: String },

    /// The chain from the scheduler to the suspended context is broken.
    #[error("resume point: {what} at {addr:#x} {why}")]
    Resume {
        what: &'static str,
        addr: u64,
        why: String,
    },

    /// The context's pc does not lie inside its method's bytecodes.
    #[error("resume point: context {context:#x} has pc {pc}, outside its method's bytecodes {initial_pc}..{end_pc}")]
    PcOutsideMethod {
        context: u64,
        pc: u64,
        initial_pc: u64,
        end_pc: u64,
    },

    #[error(transparent)]
    Memory(#[from] MemError),

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
