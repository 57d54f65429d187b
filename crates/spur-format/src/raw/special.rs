//! Indices of the special objects array (§4.3), in both numberings: the
//! Pharo VM's and Squeak/Cuis/OpenSmalltalk's.
//!
//! The constants at this level mean the same in both numberings; the few
//! that differ are in [`pharo`] and [`squeak`]. [`COMPACT_CLASS_CHECKS`]
//! pairs the special objects the VMs compare with the class table at load
//! with the compact class indices they must match.

/// nil.
pub const NIL_OBJECT: usize = 0;
/// false.
pub const FALSE_OBJECT: usize = 1;
/// true.
pub const TRUE_OBJECT: usize = 2;
/// The association whose value is the process scheduler.
pub const SCHEDULER_ASSOCIATION: usize = 3;
/// Class Bitmap.
pub const CLASS_BITMAP: usize = 4;
/// Class SmallInteger.
pub const CLASS_SMALL_INTEGER: usize = 5;
/// Pharo: ClassByteString; Squeak: ClassString.
pub const CLASS_BYTE_STRING: usize = 6;
/// Class Array.
pub const CLASS_ARRAY: usize = 7;
/// The Smalltalk dictionary (commented out in the Pharo VM, used by Squeak).
pub const SMALLTALK_DICTIONARY: usize = 8;
/// Class Float.
pub const CLASS_FLOAT: usize = 9;
/// Class MethodContext (Context in Pharo).
pub const CLASS_METHOD_CONTEXT: usize = 10;
/// Class Point.
pub const CLASS_POINT: usize = 12;
/// Class LargePositiveInteger.
pub const CLASS_LARGE_POSITIVE_INTEGER: usize = 13;
/// Class Message.
pub const CLASS_MESSAGE: usize = 15;
/// Class CompiledMethod (unused by the Pharo VM, named by both).
pub const CLASS_COMPILED_METHOD: usize = 16;
/// The semaphore signalled when memory runs low.
pub const THE_LOW_SPACE_SEMAPHORE: usize = 17;
/// Class Semaphore.
pub const CLASS_SEMAPHORE: usize = 18;
/// Class Character.
pub const CLASS_CHARACTER: usize = 19;
/// `#doesNotUnderstand:`.
pub const SELECTOR_DOES_NOT_UNDERSTAND: usize = 20;
/// `#cannotReturn:`.
pub const SELECTOR_CANNOT_RETURN: usize = 21;
/// The process that was running when memory ran low.
pub const PROCESS_SIGNALING_LOW_SPACE: usize = 22;
/// The special selectors array (selector, argument count pairs).
pub const SPECIAL_SELECTORS: usize = 23;
/// `#mustBeBoolean`.
pub const SELECTOR_MUST_BE_BOOLEAN: usize = 25;
/// Class ByteArray.
pub const CLASS_BYTE_ARRAY: usize = 26;
/// Class Process.
pub const CLASS_PROCESS: usize = 27;
/// The compact classes array (unused by Spur, still present).
pub const COMPACT_CLASSES: usize = 28;
/// The timer semaphore.
pub const THE_TIMER_SEMAPHORE: usize = 29;
/// The user-interrupt semaphore.
pub const THE_INTERRUPT_SEMAPHORE: usize = 30;
/// `#cannotInterpret:`.
pub const SELECTOR_CANNOT_INTERPRET: usize = 34;
/// The external semaphore table, Smalltalk side.
pub const EXTERNAL_OBJECTS_ARRAY: usize = 38;
/// The finalization semaphore.
pub const THE_FINALIZATION_SEMAPHORE: usize = 41;
/// Class LargeNegativeInteger.
pub const CLASS_LARGE_NEGATIVE_INTEGER: usize = 42;
/// Class ExternalAddress.
pub const CLASS_EXTERNAL_ADDRESS: usize = 43;
/// `#aboutToReturn:through:`.
pub const SELECTOR_ABOUT_TO_RETURN: usize = 48;
/// `#run:with:in:`.
pub const SELECTOR_RUN_WITH_IN: usize = 49;
/// `#attemptToAssign:withIndex:`.
pub const SELECTOR_ATTEMPT_TO_ASSIGN: usize = 50;
/// The primitive error table.
pub const PRIM_ERR_TABLE: usize = 51;
/// Class WeakFinalizer.
pub const CLASS_WEAK_FINALIZER: usize = 55;
/// The foreign callback process (Pharo VM; unverified for OpenSmalltalk, §4.3).
pub const FOREIGN_CALLBACK_PROCESS: usize = 56;
/// `#unknownBytecode` (Pharo VM; unverified for OpenSmalltalk, §4.3).
pub const SELECTOR_UNKNOWN_BYTECODE: usize = 57;
/// `#counterTripped:` (Pharo VM; unverified for OpenSmalltalk, §4.3).
pub const SELECTOR_COUNTER_TRIPPED: usize = 58;
/// `#sistaTrap` (Pharo VM; unverified for OpenSmalltalk, §4.3).
pub const SELECTOR_SISTA_TRAP: usize = 59;

/// Indices only the Pharo VM gives a meaning.
pub mod pharo {
    /// The process suspended in a callout.
    pub const SUSPENDED_PROCESS_IN_CALLOUT: usize = 11;
    /// Class Float32Register.
    pub const CLASS_FLOAT32_REGISTER: usize = 31;
    /// Class Float64Register.
    pub const CLASS_FLOAT64_REGISTER: usize = 32;
    /// Class Mutex.
    pub const CLASS_MUTEX: usize = 39;
    /// The tag of a process running external code.
    pub const PROCESS_IN_EXTERNAL_CODE_TAG: usize = 40;
}

/// Indices only Squeak, Cuis and OpenSmalltalk give a meaning.
pub mod squeak {
    /// Class BlockContext; unused in Spur images.
    pub const CLASS_BLOCK_CONTEXT: usize = 11;
    /// The display.
    pub const THE_DISPLAY: usize = 14;
    /// The table of the 256 byte characters.
    pub const CHARACTER_TABLE: usize = 24;
    /// A Float prototype.
    pub const FLOAT_PROTO: usize = 31;
    /// A MethodContext prototype.
    pub const METHOD_CONTEXT_PROTO: usize = 35;
    /// Class BlockClosure: checked against class index 37 by OpenSmalltalk at
    /// load (Pharo images fill it too).
    pub const CLASS_BLOCK_CLOSURE: usize = 36;
    /// Class FullBlockClosure.
    pub const CLASS_FULL_BLOCK_CLOSURE: usize = 37;
    /// ClassPseudoContext, or a Mutex class in some images.
    pub const CLASS_PSEUDO_CONTEXT: usize = 39;
    /// Class TranslatedMethod.
    pub const CLASS_TRANSLATED_METHOD: usize = 40;
    /// Class ExternalStructure.
    pub const CLASS_EXTERNAL_STRUCTURE: usize = 44;
    /// Class ExternalData.
    pub const CLASS_EXTERNAL_DATA: usize = 45;
    /// Class ExternalFunction.
    pub const CLASS_EXTERNAL_FUNCTION: usize = 46;
    /// Class ExternalLibrary.
    pub const CLASS_EXTERNAL_LIBRARY: usize = 47;
    /// Class Alien.
    pub const CLASS_ALIEN: usize = 52;
    /// `#invokeCallbackContext:`.
    pub const INVOKE_CALLBACK_SELECTOR: usize = 53;
    /// Class UnsafeAlien.
    pub const CLASS_UNSAFE_ALIEN: usize = 54;
}

/// The compact-class checks every VM makes at load (§4.3): the special
/// object at the first index must be the class at the compact class index;
/// any mismatch is fatal. The third field names the class.
pub const COMPACT_CLASS_CHECKS: [(usize, u32, &str); 5] = [
    (CLASS_ARRAY, super::CLASS_ARRAY, "Array"),
    (
        CLASS_LARGE_NEGATIVE_INTEGER,
        super::CLASS_LARGE_NEGATIVE_INTEGER,
        "LargeNegativeInteger",
    ),
    (
        CLASS_LARGE_POSITIVE_INTEGER,
        super::CLASS_LARGE_POSITIVE_INTEGER,
        "LargePositiveInteger",
    ),
    (CLASS_FLOAT, super::CLASS_FLOAT, "Float"),
    (
        CLASS_METHOD_CONTEXT,
        super::CLASS_METHOD_CONTEXT,
        "MethodContext",
    ),
];
