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
    /// The handle's number in the library's registry.
    pub id: u64,
}

/// A snapshot being written by a forked child (`spur_snapshot_background`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpurJob {
    /// The handle's number in the library's registry.
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

/// The header fields (docs/format.md §1).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurHeader {
    /// The image format number (68021, 68533, 6521, 7033).
    pub format: u32,
    /// 4 or 8.
    pub word_size: u32,
    /// 1 when the file is big-endian.
    pub big_endian: u8,
    /// 1 when the format says the image uses two bytecode sets.
    pub multiple_bytecode_sets: u8,
    /// 1 when the image was a composed folder.
    pub composed: u8,
    /// Bytes before the header (0, or 512 for a file with a prefix).
    pub prefix_bytes: u64,
    /// `headerSize`: bytes of the header.
    pub header_size: u64,
    /// `dataSize`: bytes of heap the file holds.
    pub data_size: u64,
    /// `oldBaseAddr`: where old space (nil) was when the image was saved.
    pub old_base: u64,
    /// `specialObjectsOop`, at its saved address.
    pub special_objects_oop: u64,
    /// `lastHash`: the identity-hash seed.
    pub last_hash: u64,
    /// The header flags (docs/format.md §1.4).
    pub flags: u64,
    /// `firstSegSize`: bytes of the first segment, bridge included.
    pub first_segment_size: u64,
    /// `freeOldSpaceInImage`: free bytes the image carries.
    pub free_old_space: u64,
    /// Desired new-space bytes (0: the VM's default).
    pub eden_bytes: u32,
    /// Desired stack pages (0: the VM's default).
    pub stack_pages: u16,
    /// External semaphore table size (0: the VM's default).
    pub max_ext_sem_table: u16,
    /// Bytes (the header holds KiB).
    pub cog_code_size: u64,
    /// The image version field.
    pub image_version: u16,
    /// Bytes the VM is asked to reserve beyond the heap (0: its default).
    pub extra_vm_memory: u32,
    /// The saved window's width in pixels.
    pub saved_window_width: u32,
    /// The saved window's height in pixels.
    pub saved_window_height: u32,
}

/// Where the heap went.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurPlacement {
    /// 1 when the segments were moved (coalesced) instead of loaded at their old addresses.
    pub relocated: u8,
    /// 1 when pointers were rewritten for the new addresses.
    pub swizzled: u8,
    /// 1 when old addresses were asked for but taken (`spur_fallback_reason` says by what).
    pub fell_back: u8,
    /// Segments of the loaded heap (1 when relocated: coalesced).
    pub segments: u64,
    /// Bytes of heap loaded.
    pub heap_bytes: u64,
    /// Bytes reserved after the last segment for old space to grow into.
    pub headroom: u64,
}

/// One segment of the loaded heap.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurSegment {
    /// The segment's index in the file.
    pub index: u64,
    /// Its start when the image was saved.
    pub old_start: u64,
    /// Its start in this process.
    pub new_start: u64,
    /// Its bytes, bridge included.
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
    /// Objects, free chunks and hidden objects walked (bridges excluded).
    pub objects: u64,
    /// Free chunks walked.
    pub free_chunks: u64,
    /// Classes in the class table.
    pub classes: u64,
    /// Errors kept (read each with `spur_finding`).
    pub errors: u64,
    /// Warnings kept, after the errors in `spur_finding`'s numbering.
    pub warnings: u64,
    /// Errors beyond those kept, counted only.
    pub errors_dropped: u64,
    /// Warnings beyond those kept, counted only.
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
    /// Stack pages (1..65535).
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
    /// The special objects array.
    pub array: u64,
    /// Its number of slots.
    pub length: u64,
    /// nil.
    pub nil: u64,
    /// false.
    pub false_object: u64,
    /// true.
    pub true_object: u64,
    /// Special object 3: the association holding the ProcessorScheduler.
    pub scheduler_association: u64,
    /// Special object 38: the external objects (semaphores) array.
    pub external_objects_array: u64,
}

/// The class table's shape.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurClassTable {
    /// Pages of the class table in use.
    pub pages: u64,
    /// Classes in it.
    pub classes: u64,
    /// The slot of a class that holds its name.
    pub name_slot: u64,
    /// The slot of a metaclass that holds its class.
    pub this_class_slot: u64,
}

/// Where the image resumes (names through `spur_resume_selector` and `spur_resume_method_name`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurResumePoint {
    /// The ProcessorScheduler.
    pub scheduler: u64,
    /// The active process.
    pub process: u64,
    /// Its suspended context.
    pub context: u64,
    /// The method or block being run.
    pub method: u64,
    /// The method a block belongs to (the method itself otherwise).
    pub home_method: u64,
    /// The context's receiver.
    pub receiver: u64,
    /// 1 when the context runs a block.
    pub in_block: u8,
    /// 1 when the method uses the Sista V1 bytecode set.
    pub sista: u8,
    /// The pc, a byte index into the method, as the context holds it.
    pub pc: u64,
    /// The method's first bytecode.
    pub initial_pc: u64,
    /// The method's last bytecode.
    pub end_pc: u64,
    /// The context's stack pointer.
    pub stack_pointer: u64,
}

/// New space: past and future survivor spaces, then eden. Addresses are
/// in this process; `[start, end)` is the whole range.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurNewSpace {
    /// First byte of new space (of past space).
    pub start: u64,
    /// Just past its end (of eden).
    pub end: u64,
    /// All of it: survivors and eden.
    pub bytes: u64,
    /// Bytes of each survivor space.
    pub survivor_bytes: u64,
    /// Past space: the survivors of the last scavenge.
    pub past_start: u64,
    /// Future space: where the next scavenge copies survivors.
    pub future_start: u64,
    /// Eden: where new objects are allocated.
    pub eden_start: u64,
    /// Bytes of eden.
    pub eden_bytes: u64,
    /// Allocation past this address should trigger a scavenge.
    pub scavenge_threshold: u64,
    /// Bytes kept for the scavenger's own needs.
    pub reserve_bytes: u64,
    /// 1 when it ends where old space begins.
    pub below_old_space: u8,
}

/// The stack zone: `pages` pages of `page_bytes` from `start`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurStackZone {
    /// First byte of the zone.
    pub start: u64,
    /// Bytes of the zone, page records included.
    pub bytes: u64,
    /// Number of stack pages.
    pub pages: u64,
    /// Bytes of each page.
    pub page_bytes: u64,
}

/// Old space after wiring.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurOldSpace {
    /// First byte of old space (nil).
    pub start: u64,
    /// Just past the last object of the last segment.
    pub end: u64,
    /// Bytes reserved after it.
    pub headroom: u64,
    /// The free chunk made of the headroom, or 0.
    pub free_chunk: u64,
    /// Bytes of that chunk.
    pub free_chunk_bytes: u64,
    /// Free bytes in old space: the image's and that chunk's.
    pub free_bytes: u64,
}

/// The class histogram's totals (`spur_histogram`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurHistogram {
    /// Classes counted (rows for `spur_histogram_row`).
    pub rows: u64,
    /// Instances counted in the rows.
    pub instances: u64,
    /// Bytes counted in the rows.
    pub bytes: u64,
    /// Free chunks, not counted.
    pub free_chunks: u64,
    /// Their bytes.
    pub free_bytes: u64,
    /// Hidden objects (class-table pages, free lists, object stacks), not counted.
    pub hidden_objects: u64,
    /// Their bytes.
    pub hidden_bytes: u64,
}

/// One row of the histogram, largest first.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurClassStats {
    /// The class, or 0 when its index names none.
    pub class_oop: u64,
    /// Instances of the class.
    pub instances: u64,
    /// Their bytes: headers, overflow words and slots.
    pub bytes: u64,
}

/// Write a single file when the path ends in `.image`, a composed folder
/// when the path is one, else the input's format.
pub const SPUR_WRITE_AUTO: u32 = 0;
/// Write a single file.
pub const SPUR_WRITE_SINGLE: u32 = 1;
/// Write a composed folder.
pub const SPUR_WRITE_COMPOSED: u32 = 2;

/// How to write a snapshot; 0 in a field means "as read".
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurSnapshotOptions {
    /// `SPUR_WRITE_AUTO`, `SPUR_WRITE_SINGLE` or `SPUR_WRITE_COMPOSED`.
    pub format: u32,
    /// Desired new-space bytes to record in the header.
    pub eden_bytes: u32,
    /// Desired stack pages to record.
    pub stack_pages: u16,
    /// External semaphore table size to record.
    pub ext_sem_table: u16,
}

/// What a snapshot wrote.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpurSnapshotResult {
    /// Bytes written (every file of a composed folder).
    pub bytes_written: u64,
    /// Segments written (a relocated heap is written as one).
    pub segments: u64,
    /// 1 for a composed folder.
    pub composed: u8,
    /// The written image's format number.
    pub format: u32,
    /// The written header's `oldBaseAddr`.
    pub old_base: u64,
    /// The written header's `specialObjectsOop`.
    pub special_objects_oop: u64,
    /// The written header's `dataSize`.
    pub data_size: u64,
    /// Foreground: the whole write. Background: how long the caller was held.
    pub pause_us: u64,
    /// Background: from the fork to the child's exit.
    pub child_us: u64,
}
