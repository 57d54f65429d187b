//! The plain C types of the interface: status codes, handles and the
//! structs the calls fill. Nothing here owns memory or holds a Rust type.

/// What every call returns: `SPUR_OK` (0) or one of the `SPUR_E_*` codes;
/// `spur_last_error()` then holds the one-line message.
pub type SpurStatus = i32;

/// The call did what it was asked.
pub const SPUR_OK: SpurStatus = 0;
/// A pointer the call needs was NULL.
pub const SPUR_E_NULL: SpurStatus = 1;
/// The handle is not one this library gave out, or it was released.
pub const SPUR_E_HANDLE: SpurStatus = 2;
/// An argument's value is refused (an unknown option, a stack-page count out of range).
pub const SPUR_E_ARGUMENT: SpurStatus = 3;
/// The image could not be read or loaded: the line `vm-loader` prints, which exits with 2.
pub const SPUR_E_IMAGE: SpurStatus = 4;
/// Wiring refused the heap (not fit to resume) or could not reserve its memory.
pub const SPUR_E_RUNTIME: SpurStatus = 5;
/// The call does not apply to the handle as it is (wired or not, heap released by a failed wire).
pub const SPUR_E_STATE: SpurStatus = 6;
/// An index is out of range, or nothing is there (a class index with no class).
pub const SPUR_E_RANGE: SpurStatus = 7;
/// The object memory refused the access: not an object, slot out of range, immutable, eden full.
pub const SPUR_E_MEMORY: SpurStatus = 8;
/// A snapshot could not be written.
pub const SPUR_E_WRITE: SpurStatus = 9;
/// An internal error (a Rust panic) was caught at the boundary; the handle
/// it happened on refuses further calls but can be released.
pub const SPUR_E_INTERNAL: SpurStatus = 10;

/// The version of this interface; it changes when a struct or a call does.
pub const SPUR_ABI_VERSION: u32 = 1;

/// A loaded image: its heap and, once wired, the runtime around it.
/// An opaque number; 0 is never a valid handle, and a released handle is
/// never given out again.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpurImage {
    pub id: u64,
}

/// A snapshot being written by a forked child (`spur_snapshot_background`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpurJob {
    pub id: u64,
}

/// Load at the image's old addresses, each segment at its own old start;
/// relocate only when a range is taken.
pub const SPUR_PLACE_OLD_BASE: u32 = 0;
/// Load elsewhere: coalesce the segments and swizzle.
pub const SPUR_PLACE_RELOCATE: u32 = 1;
/// Coalesce with nil at exactly `base`.
pub const SPUR_PLACE_AT: u32 = 2;

/// How to load (`spur_load_options_default` fills the defaults).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpurLoadOptions {
    /// `SPUR_PLACE_OLD_BASE` (default), `SPUR_PLACE_RELOCATE` or `SPUR_PLACE_AT`.
    pub placement: u32,
    /// With `SPUR_PLACE_AT`: the address of nil (8-aligned).
    pub base: u64,
    /// Nonzero (default): ask for transparent huge pages.
    pub huge_pages: u8,
    /// Nonzero: map a composed image's segment files copy-on-write instead
    /// of reading them. THE CALLER'S PROMISE: nobody writes to or truncates
    /// the folder's `.data` files while the image is loaded; a write may
    /// show through, and a page past a truncated file's end kills the
    /// process with SIGBUS. Default 0.
    pub map_files_unchanged: u8,
}

/// The header fields (§1 of the format reference).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurHeader {
    pub format: u32,
    /// 4 or 8.
    pub word_size: u32,
    /// 1 when the file is big-endian.
    pub big_endian: u8,
    pub multiple_bytecode_sets: u8,
    /// 1 when the image was a composed folder.
    pub composed: u8,
    pub prefix_bytes: u64,
    pub header_size: u64,
    pub data_size: u64,
    pub old_base: u64,
    pub special_objects_oop: u64,
    pub last_hash: u64,
    pub flags: u64,
    pub first_segment_size: u64,
    pub free_old_space: u64,
    pub eden_bytes: u32,
    pub stack_pages: u16,
    pub max_ext_sem_table: u16,
    /// Bytes (the header holds KiB).
    pub cog_code_size: u64,
    pub image_version: u16,
    pub extra_vm_memory: u32,
    pub saved_window_width: u32,
    pub saved_window_height: u32,
}

/// Where the heap went.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurPlacement {
    /// 1 when the segments were moved (coalesced) instead of loaded at their old addresses.
    pub relocated: u8,
    pub swizzled: u8,
    /// 1 when old addresses were asked for but taken (`spur_fallback_reason` says by what).
    pub fell_back: u8,
    pub segments: u64,
    pub heap_bytes: u64,
    pub headroom: u64,
}

/// One segment of the loaded heap.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurSegment {
    pub index: u64,
    pub old_start: u64,
    pub new_start: u64,
    pub size: u64,
    /// 1 when mapped from a composed image's segment file.
    pub mapped: u8,
}

/// The verifier's totals (`spur_verify`); each finding through `spur_finding`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurVerifyReport {
    /// 1 when no error was found (warnings allowed).
    pub ok: u8,
    pub objects: u64,
    pub free_chunks: u64,
    pub classes: u64,
    pub errors: u64,
    pub warnings: u64,
    pub errors_dropped: u64,
    pub warnings_dropped: u64,
}

/// One finding of the last `spur_verify`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpurFinding {
    /// 1 for an error, 0 for a warning.
    pub is_error: u8,
    /// The object or slot concerned.
    pub addr: u64,
    /// `segment`, `pointer`, `class-table`, ...: a static string, never freed.
    pub kind: *const core::ffi::c_char,
}

/// What wiring may override; 0 in a count means "as the header says".
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurRuntimeOptions {
    /// Bytes of new space (eden and survivors).
    pub eden_bytes: u64,
    pub stack_pages: u64,
    /// Size request for the external semaphore table.
    pub ext_sem_table: u64,
    /// Nonzero: do NOT turn the headroom into a free chunk at the end of old space.
    pub keep_headroom: u8,
}

/// The special objects array and the objects a VM needs first.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurSpecialObjects {
    pub array: u64,
    pub length: u64,
    pub nil: u64,
    pub false_object: u64,
    pub true_object: u64,
    pub scheduler_association: u64,
    pub external_objects_array: u64,
}

/// The class table's shape.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurClassTable {
    pub pages: u64,
    pub classes: u64,
    pub name_slot: u64,
    pub this_class_slot: u64,
}

/// Where the image resumes (names through `spur_resume_selector` and `spur_resume_method_name`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurResumePoint {
    pub scheduler: u64,
    pub process: u64,
    pub context: u64,
    /// The method or block being run.
    pub method: u64,
    pub home_method: u64,
    pub receiver: u64,
    pub in_block: u8,
    /// 1 when the method uses the Sista V1 bytecode set.
    pub sista: u8,
    pub pc: u64,
    pub initial_pc: u64,
    pub end_pc: u64,
    pub stack_pointer: u64,
}

/// New space: past and future survivor spaces, then eden. Addresses are
/// in this process; `[start, end)` is the whole range.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurNewSpace {
    pub start: u64,
    pub end: u64,
    pub bytes: u64,
    pub survivor_bytes: u64,
    pub past_start: u64,
    pub future_start: u64,
    pub eden_start: u64,
    pub eden_bytes: u64,
    pub scavenge_threshold: u64,
    pub reserve_bytes: u64,
    /// 1 when it ends where old space begins.
    pub below_old_space: u8,
}

/// The stack zone: `pages` pages of `page_bytes` from `start`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurStackZone {
    pub start: u64,
    pub bytes: u64,
    pub pages: u64,
    pub page_bytes: u64,
}

/// Old space after wiring.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurOldSpace {
    pub start: u64,
    pub end: u64,
    pub headroom: u64,
    /// The free chunk made of the headroom, or 0.
    pub free_chunk: u64,
    pub free_chunk_bytes: u64,
    pub free_bytes: u64,
}

/// The class histogram's totals (`spur_histogram`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurHistogram {
    pub rows: u64,
    pub instances: u64,
    pub bytes: u64,
    pub free_chunks: u64,
    pub free_bytes: u64,
    pub hidden_objects: u64,
    pub hidden_bytes: u64,
}

/// One row of the histogram, largest first.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurClassStats {
    /// The class, or 0 when its index names none.
    pub class_oop: u64,
    pub instances: u64,
    pub bytes: u64,
}

/// Write a single file when the path ends in `.image`, a composed folder
/// when the path is one, else the input's format.
pub const SPUR_WRITE_AUTO: u32 = 0;
pub const SPUR_WRITE_SINGLE: u32 = 1;
pub const SPUR_WRITE_COMPOSED: u32 = 2;

/// How to write a snapshot; 0 in a field means "as read".
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurSnapshotOptions {
    /// `SPUR_WRITE_AUTO`, `SPUR_WRITE_SINGLE` or `SPUR_WRITE_COMPOSED`.
    pub format: u32,
    pub eden_bytes: u32,
    pub stack_pages: u16,
    pub ext_sem_table: u16,
}

/// What a snapshot wrote.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurSnapshotResult {
    pub bytes_written: u64,
    pub segments: u64,
    /// 1 for a composed folder.
    pub composed: u8,
    pub format: u32,
    pub old_base: u64,
    pub special_objects_oop: u64,
    pub data_size: u64,
    /// Foreground: the whole write. Background: how long the caller was held.
    pub pause_us: u64,
    /// Background: from the fork to the child's exit.
    pub child_us: u64,
}
