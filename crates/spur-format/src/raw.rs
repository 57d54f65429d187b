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

/// Header sizes as the VMs write them (§1.3), 16 words: 64-bit.
pub const HEADER_SIZE_64: u32 = 128;
/// 32-bit.
pub const HEADER_SIZE_32: u32 = 64;

/// Object header bit layout (§3.1): mask of the 22-bit class index.
pub const CLASS_INDEX_MASK: u64 = 0x3F_FFFF;
/// Bit of the immutable flag.
pub const IMMUTABLE_SHIFT: u32 = 23;
/// First bit of the 5-bit format field.
pub const FORMAT_SHIFT: u32 = 24;
/// Mask of the format field, once shifted.
pub const FORMAT_MASK: u64 = 0x1F;
/// Bit of the remembered flag.
pub const REMEMBERED_SHIFT: u32 = 29;
/// Bit of the pinned flag.
pub const PINNED_SHIFT: u32 = 30;
/// Bit of the grey (marking) flag.
pub const GREY_SHIFT: u32 = 31;
/// First bit of the 22-bit identity hash.
pub const HASH_SHIFT: u32 = 32;
/// Mask of the identity hash, once shifted.
pub const HASH_MASK: u64 = 0x3F_FFFF;
/// Bit of the mark flag.
pub const MARKED_SHIFT: u32 = 55;
/// First bit of the 8-bit slot count.
pub const NUM_SLOTS_SHIFT: u32 = 56;
/// A numSlots byte of 255 means the count is in the overflow word before the header.
pub const OVERFLOW_SLOTS: u64 = OVERFLOW_SLOTS_BYTE as u64;
/// The same numSlots byte, as it is stored.
pub const OVERFLOW_SLOTS_BYTE: u8 = 255;

/// Object formats (§3.2): no slots (nil, true, false).
pub const FMT_ZERO_SIZED: u8 = 0;
/// Fixed pointer fields only.
pub const FMT_FIXED: u8 = 1;
/// Indexable pointers (Array).
pub const FMT_INDEXABLE: u8 = 2;
/// Indexable pointers after fixed fields (Context).
pub const FMT_INDEXABLE_WITH_FIXED: u8 = 3;
/// Weak indexable pointers after fixed fields (WeakArray).
pub const FMT_WEAK: u8 = 4;
/// Ephemeron.
pub const FMT_EPHEMERON: u8 = 5;
/// The last format whose slots are all pointers.
pub const FMT_LAST_POINTER: u8 = 5;
/// A forwarder: slot 0 is where the object went.
pub const FMT_FORWARDED: u8 = 7;
/// 64-bit indexable words.
pub const FMT_64BIT: u8 = 9;
/// 32-bit indexable words (10 and 11).
pub const FMT_32BIT: u8 = 10;
/// 16-bit indexable units (12 to 15).
pub const FMT_16BIT: u8 = 12;
/// Indexable bytes (16 to 23).
pub const FMT_BYTES: u8 = 16;
/// Compiled methods (24 to 31).
pub const FMT_COMPILED_METHOD: u8 = 24;

/// Class-index puns (§3.5): a free chunk.
pub const CLASS_FREE_CHUNK: u32 = 0;
/// A segment bridge.
pub const CLASS_SEGMENT_BRIDGE: u32 = 3;
/// A forwarder.
pub const CLASS_FORWARDER: u32 = 8;
/// Class-table pages and the hidden-roots object.
pub const CLASS_ARRAY_PUN: u32 = 16;
/// Hidden weak arrays.
pub const CLASS_WEAK_ARRAY_PUN: u32 = 17;
/// Hidden 32-bit word objects (a 32-bit heap's free-lists object and object-stack pages).
pub const CLASS_32BIT_LONGS_PUN: u32 = 18;
/// Hidden 64-bit word objects (a 64-bit heap's free-lists object and object-stack pages).
pub const CLASS_64BIT_LONGS_PUN: u32 = 19;
/// Marks a class whose instances are itself.
pub const CLASS_IS_ITSELF_PUN: u32 = 31;
/// The last pun: objects of class index up to this one are hidden.
pub const LAST_CLASS_INDEX_PUN: u32 = 31;
/// The first index of a real class.
pub const FIRST_VALID_CLASS_INDEX: u32 = 32;

/// Compact class indices the VMs check at load (§3.5, §4.3): LargeNegativeInteger.
pub const CLASS_LARGE_NEGATIVE_INTEGER: u32 = 32;
/// LargePositiveInteger.
pub const CLASS_LARGE_POSITIVE_INTEGER: u32 = 33;
/// Float (boxed).
pub const CLASS_FLOAT: u32 = 34;
/// Message.
pub const CLASS_MESSAGE: u32 = 35;
/// MethodContext (Context).
pub const CLASS_METHOD_CONTEXT: u32 = 36;
/// BlockClosure.
pub const CLASS_BLOCK_CLOSURE: u32 = 37;
/// FullBlockClosure.
pub const CLASS_FULL_BLOCK_CLOSURE: u32 = 38;
/// Array.
pub const CLASS_ARRAY: u32 = 51;
/// ByteString.
pub const CLASS_BYTE_STRING: u32 = 52;

/// Class table geometry (§4.2): classes per page.
pub const CLASS_TABLE_PAGE_SLOTS: u64 = 1024;
/// A class index shifted by this is its page.
pub const CLASS_TABLE_MAJOR_SHIFT: u32 = 10;
/// Hidden-root slots that hold class-table pages.
pub const CLASS_TABLE_ROOT_SLOTS: u64 = 4096;
/// Hidden-root slots after the class table.
pub const HIDDEN_ROOT_SLOTS: u64 = 8;
/// Slot count of the hidden-roots object: 4096 + 8.
pub const HIDDEN_ROOTS_SLOTS: u64 = CLASS_TABLE_ROOT_SLOTS + HIDDEN_ROOT_SLOTS;
/// Hidden-root slot of the mark stack.
pub const MARK_STACK_ROOT_INDEX: u64 = 4096;
/// Hidden-root slot of the weakling stack.
pub const WEAKLING_STACK_ROOT_INDEX: u64 = 4097;
/// Hidden-root slot of the mourn queue.
pub const MOURN_QUEUE_ROOT_INDEX: u64 = 4098;
/// Hidden-root slot of the remembered set.
pub const REMEMBERED_SET_ROOT_INDEX: u64 = 4099;

/// Object stack pages (§4.2): slots of a page.
pub const OBJ_STACK_PAGE_SLOTS: u64 = 4092;
/// Object-stack page slot: how many entries are used.
pub const OBJ_STACK_TOP: u64 = 0;
/// Object-stack page slot: the hidden-root index it belongs to.
pub const OBJ_STACK_MY: u64 = 1;
/// Object-stack page slot: a spare page.
pub const OBJ_STACK_FREE: u64 = 2;
/// Object-stack page slot: the next page.
pub const OBJ_STACK_NEXT: u64 = 3;
/// Slots before an object-stack page's entries.
pub const OBJ_STACK_FIXED_SLOTS: u64 = 4;

/// Free chunk slots (§3.5.1): the next chunk of the same size.
pub const FREE_CHUNK_NEXT: u64 = 0;
/// Free chunk slot: the previous chunk of the same size.
pub const FREE_CHUNK_PREV: u64 = 1;
/// Free chunk slot: the parent in the tree of large chunks.
pub const FREE_CHUNK_PARENT: u64 = 2;
/// Free chunk slot: the subtree of smaller chunks.
pub const FREE_CHUNK_SMALLER: u64 = 3;
/// Free chunk slot: the subtree of larger chunks.
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

/// Default total new-space bytes of a 64-bit image when the header says 0 (§4.4).
pub const DEFAULT_EDEN_BYTES_64: u64 = 7 * 1024 * 1024;
/// The same on 32-bit.
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
