//! The raw on-disk definitions of the Spur format, in one place.
//!
//! Every constant gives the section of `docs/format.md` that says where it
//! comes from in the VM sources. Readers and writers use these and
//! nothing else, so that one number never lives in two places.

pub mod special;

/// The Spur bit in the image format number (§1.1).
pub const SPUR_BIT: u32 = 16;
/// "Platform float word order" bit of the format number (§1.1).
pub const PLATFORM_FLOAT_ORDER_BIT: u32 = 1;
/// "Multiple bytecode sets active" bit of the format number (§1.1).
pub const MULTIPLE_BYTECODE_SETS_BIT: u32 = 512;

/// 32-bit Spur (6504 + 16 + 1).
pub const FORMAT_SPUR32: u32 = 6521;
/// 32-bit Spur with multiple bytecode sets.
pub const FORMAT_SPUR32_SISTA: u32 = FORMAT_SPUR32 | MULTIPLE_BYTECODE_SETS_BIT;
/// 64-bit Spur (68004 + 16 + 1).
pub const FORMAT_SPUR64: u32 = 68021;
/// 64-bit Spur with multiple bytecode sets (written by OpenSmalltalk).
pub const FORMAT_SPUR64_SISTA: u32 = FORMAT_SPUR64 | MULTIPLE_BYTECODE_SETS_BIT;
/// The first 64-bit Spur format, with the old SmallFloat tag; obsolete.
pub const FORMAT_SPUR64_OBSOLETE: u32 = 68019;

/// Where an image may start when it is not at offset 0 (§1.2).
pub const PREFIX_BYTES: u64 = 512;

/// Header sizes as the VMs write them (§1.3): 16 words.
pub const HEADER_SIZE_64: u32 = 128;
pub const HEADER_SIZE_32: u32 = 64;

/// Object header bit layout (§3.1).
pub const CLASS_INDEX_MASK: u64 = 0x3F_FFFF;
pub const IMMUTABLE_SHIFT: u32 = 23;
pub const FORMAT_SHIFT: u32 = 24;
pub const FORMAT_MASK: u64 = 0x1F;
pub const REMEMBERED_SHIFT: u32 = 29;
pub const PINNED_SHIFT: u32 = 30;
pub const GREY_SHIFT: u32 = 31;
pub const HASH_SHIFT: u32 = 32;
pub const HASH_MASK: u64 = 0x3F_FFFF;
pub const MARKED_SHIFT: u32 = 55;
pub const NUM_SLOTS_SHIFT: u32 = 56;
/// A numSlots byte of 255 means the count is in the overflow word before the header.
pub const OVERFLOW_SLOTS: u64 = OVERFLOW_SLOTS_BYTE as u64;
/// The same numSlots byte, as it is stored.
pub const OVERFLOW_SLOTS_BYTE: u8 = 255;

/// Object formats (§3.2).
pub const FMT_ZERO_SIZED: u8 = 0;
pub const FMT_FIXED: u8 = 1;
pub const FMT_INDEXABLE: u8 = 2;
pub const FMT_INDEXABLE_WITH_FIXED: u8 = 3;
pub const FMT_WEAK: u8 = 4;
pub const FMT_EPHEMERON: u8 = 5;
pub const FMT_LAST_POINTER: u8 = 5;
pub const FMT_FORWARDED: u8 = 7;
pub const FMT_64BIT: u8 = 9;
pub const FMT_32BIT: u8 = 10;
pub const FMT_16BIT: u8 = 12;
pub const FMT_BYTES: u8 = 16;
pub const FMT_COMPILED_METHOD: u8 = 24;

/// Class-index puns (§3.5).
pub const CLASS_FREE_CHUNK: u32 = 0;
pub const CLASS_SEGMENT_BRIDGE: u32 = 3;
pub const CLASS_FORWARDER: u32 = 8;
pub const CLASS_ARRAY_PUN: u32 = 16;
pub const CLASS_WEAK_ARRAY_PUN: u32 = 17;
pub const CLASS_32BIT_LONGS_PUN: u32 = 18;
pub const CLASS_64BIT_LONGS_PUN: u32 = 19;
pub const CLASS_IS_ITSELF_PUN: u32 = 31;
pub const LAST_CLASS_INDEX_PUN: u32 = 31;
pub const FIRST_VALID_CLASS_INDEX: u32 = 32;

/// Compact class indices the VMs check at load (§3.5, §4.3).
pub const CLASS_LARGE_NEGATIVE_INTEGER: u32 = 32;
pub const CLASS_LARGE_POSITIVE_INTEGER: u32 = 33;
pub const CLASS_FLOAT: u32 = 34;
pub const CLASS_MESSAGE: u32 = 35;
pub const CLASS_METHOD_CONTEXT: u32 = 36;
pub const CLASS_BLOCK_CLOSURE: u32 = 37;
pub const CLASS_FULL_BLOCK_CLOSURE: u32 = 38;
pub const CLASS_ARRAY: u32 = 51;
pub const CLASS_BYTE_STRING: u32 = 52;

/// Class table geometry (§4.2).
pub const CLASS_TABLE_PAGE_SLOTS: u64 = 1024;
pub const CLASS_TABLE_MAJOR_SHIFT: u32 = 10;
pub const CLASS_TABLE_ROOT_SLOTS: u64 = 4096;
pub const HIDDEN_ROOT_SLOTS: u64 = 8;
/// Slot count of the hidden-roots object: 4096 + 8.
pub const HIDDEN_ROOTS_SLOTS: u64 = CLASS_TABLE_ROOT_SLOTS + HIDDEN_ROOT_SLOTS;
pub const MARK_STACK_ROOT_INDEX: u64 = 4096;
pub const WEAKLING_STACK_ROOT_INDEX: u64 = 4097;
pub const MOURN_QUEUE_ROOT_INDEX: u64 = 4098;
pub const REMEMBERED_SET_ROOT_INDEX: u64 = 4099;

/// Object stack pages (§4.2).
pub const OBJ_STACK_PAGE_SLOTS: u64 = 4092;
pub const OBJ_STACK_TOP: u64 = 0;
pub const OBJ_STACK_MY: u64 = 1;
pub const OBJ_STACK_FREE: u64 = 2;
pub const OBJ_STACK_NEXT: u64 = 3;
pub const OBJ_STACK_FIXED_SLOTS: u64 = 4;

/// Free chunk slots (§3.5.1).
pub const FREE_CHUNK_NEXT: u64 = 0;
pub const FREE_CHUNK_PREV: u64 = 1;
pub const FREE_CHUNK_PARENT: u64 = 2;
pub const FREE_CHUNK_SMALLER: u64 = 3;
pub const FREE_CHUNK_LARGER: u64 = 4;

/// Compiled method header: literal count mask of the SmallInteger value (§2.4).
pub const METHOD_NUM_LITERALS_MASK: i64 = 0x7FFF;

/// Bytes of a segment bridge (§2.1).
pub const BRIDGE_BYTES: u64 = 16;

/// Header flag bits (§1.4), with the names `info` prints.
pub const HEADER_FLAGS: &[(u64, &str)] = &[
    (1, "full_screen"),
    (2, "floats_little_endian"),
    (4, "process_has_thread_affinity"),
    (8, "interpreted_methods"),
    (16, "preemption_does_not_yield"),
    (32, "no_threading_of_gui_thread"),
    (64, "new_finalization"),
    (128, "send_wheel_events"),
    (256, "mixed_arithmetic_disabled"),
    (512, "file_plugin_flag"),
    (1024, "upscale_display_if_high_dpi_disabled"),
];

/// Header flag: image floats are little-endian (§1.4).
pub const FLAG_FLOATS_LITTLE_ENDIAN: u64 = 2;

/// Default total new-space bytes when the header says 0 (§4.4).
pub const DEFAULT_EDEN_BYTES_64: u64 = 7 * 1024 * 1024;
pub const DEFAULT_EDEN_BYTES_32: u64 = 4 * 1024 * 1024;
/// Default growth headroom when `extraVMMemory` is 0 (§5.3).
pub const DEFAULT_GROW_HEADROOM: u64 = 16 * 1024 * 1024;

/// Names of the 32 special selectors and their argument counts, as every
/// Spur image's special object 23 lists them; used when the image's own
/// array cannot be read.
pub const SPECIAL_SELECTORS: [(&str, u32); 32] = [
    ("+", 1),
    ("-", 1),
    ("<", 1),
    (">", 1),
    ("<=", 1),
    (">=", 1),
    ("=", 1),
    ("~=", 1),
    ("*", 1),
    ("/", 1),
    ("\\\\", 1),
    ("@", 1),
    ("bitShift:", 1),
    ("//", 1),
    ("bitAnd:", 1),
    ("bitOr:", 1),
    ("at:", 1),
    ("at:put:", 2),
    ("size", 0),
    ("next", 0),
    ("nextPut:", 1),
    ("atEnd", 0),
    ("==", 1),
    ("class", 0),
    ("~~", 1),
    ("value", 0),
    ("value:", 1),
    ("do:", 1),
    ("new", 0),
    ("new:", 1),
    ("x", 0),
    ("y", 0),
];
