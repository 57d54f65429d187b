//! The calls. Each one runs in the boundary's `guard` (a panic becomes
//! `SPUR_E_INTERNAL`), turns its pointer arguments into checked values
//! through the private `boundary` module first, and writes its results only
//! when it succeeds.
//!
//! Every pointer argument is NULL or valid as its call's `# Safety`
//! section says; every `unsafe` block below relies on that contract alone.

use std::ffi::{c_char, CStr};

use spur_format::WordSize;
use spur_loader::{
    BackgroundWriter, Backing, FilesUnchanged, FindingKind, LoadOptions, PlacementRequest,
};
use spur_runtime::{class_histogram, BytecodeSet, LaunchSpecialObjects, Oop, RuntimeOptions};

use crate::boundary::{self, guard, opt_in, path_in, BufOut, Failure, MaybeOut, Out, Outcome};
use crate::handles::{self, Entry};
use crate::image::{self, memory_failure, Image};
use crate::types::*;

fn range(call: &str, what: &str, index: u64, count: u64) -> Failure {
    Failure::new(
        SPUR_E_RANGE,
        format!("{call}: {what} {index} is out of range (there are {count})"),
    )
}

/// The version of this interface (`SPUR_ABI_VERSION` of the header it was built with).
#[no_mangle]
pub extern "C" fn spur_abi_version() -> u32 {
    SPUR_ABI_VERSION
}

/// The message of this thread's last failed call, or "" after a success:
/// one line, as `vm-loader` prints it after `vm-loader: ` for the calls it
/// also makes (load, wire, snapshot). The pointer stays valid until the
/// next call of this library on the same thread; copy it to keep it.
#[no_mangle]
pub extern "C" fn spur_last_error() -> *const c_char {
    boundary::last_error()
}

/// The name of a status code (`"SPUR_E_NULL"`), a static string.
#[no_mangle]
pub extern "C" fn spur_status_name(status: SpurStatus) -> *const c_char {
    let name: &'static CStr = match status {
        SPUR_OK => c"SPUR_OK",
        SPUR_E_NULL => c"SPUR_E_NULL",
        SPUR_E_HANDLE => c"SPUR_E_HANDLE",
        SPUR_E_ARGUMENT => c"SPUR_E_ARGUMENT",
        SPUR_E_IMAGE => c"SPUR_E_IMAGE",
        SPUR_E_RUNTIME => c"SPUR_E_RUNTIME",
        SPUR_E_STATE => c"SPUR_E_STATE",
        SPUR_E_RANGE => c"SPUR_E_RANGE",
        SPUR_E_MEMORY => c"SPUR_E_MEMORY",
        SPUR_E_WRITE => c"SPUR_E_WRITE",
        SPUR_E_INTERNAL => c"SPUR_E_INTERNAL",
        _ => c"unknown status",
    };
    boundary::static_c(name)
}

/// Fills `out` with the default load options: old addresses, huge pages,
/// composed segment files read (not mapped).
///
/// # Safety
/// `out` is NULL or points to writable memory for one `SpurLoadOptions`.
#[no_mangle]
pub unsafe extern "C" fn spur_load_options_default(out: *mut SpurLoadOptions) -> SpurStatus {
    const CALL: &str = "spur_load_options_default";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        out.put(default_load_options());
        Ok(())
    })
}

fn default_load_options() -> SpurLoadOptions {
    SpurLoadOptions {
        placement: SPUR_PLACE_OLD_BASE,
        base: 0,
        huge_pages: 1,
        map_files_unchanged: 0,
    }
}

fn load_options(call: &str, o: &SpurLoadOptions) -> Outcome<LoadOptions> {
    let placement = match o.placement {
        SPUR_PLACE_OLD_BASE => PlacementRequest::OldBase,
        SPUR_PLACE_RELOCATE => PlacementRequest::Relocate,
        SPUR_PLACE_AT => PlacementRequest::At(o.base),
        other => {
            return Err(Failure::new(
                SPUR_E_ARGUMENT,
                format!("{call}: placement {other} is not SPUR_PLACE_OLD_BASE, SPUR_PLACE_RELOCATE or SPUR_PLACE_AT"),
            ))
        }
    };
    let map_files = if o.map_files_unchanged != 0 {
        // SAFETY: this is not a memory-safety block of this crate: it
        // passes on the caller's promise. `map_files_unchanged` is
        // documented in the header as the caller's word that nobody
        // writes to or truncates the composed image's files while it is
        // loaded, which is exactly what `FilesUnchanged::assume` asks.
        Some(unsafe { FilesUnchanged::assume() })
    } else {
        None
    };
    Ok(LoadOptions {
        placement,
        backing: if o.huge_pages != 0 {
            Backing::HugePages
        } else {
            Backing::Pages
        },
        map_files,
        // Relocation's threads: the loader's default, as the command
        // line's without --threads.
        ..LoadOptions::default()
    })
}

/// Loads the image at `path`: a single file, or a composed image's folder.
/// `opts` may be NULL for the defaults. On success `*out` is a new handle,
/// to be released with `spur_release`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `opts` is NULL or points to
/// a `SpurLoadOptions`; `out` is NULL or writable for one `SpurImage`.
#[no_mangle]
pub unsafe extern "C" fn spur_load(
    path: *const c_char,
    opts: *const SpurLoadOptions,
    out: *mut SpurImage,
) -> SpurStatus {
    const CALL: &str = "spur_load";
    guard(CALL, || {
        // SAFETY: the caller's contract above, for each of the three.
        let (path, opts, out) = unsafe {
            (
                path_in(path, CALL, "path")?,
                opt_in(opts).unwrap_or_else(default_load_options),
                Out::new(out, CALL, "out")?,
            )
        };
        let options = load_options(CALL, &opts)?;
        let image = Image::load(path, &options)?;
        let id = handles::insert(Entry::Image(Box::new(std::sync::Mutex::new(image))));
        out.put(SpurImage { id });
        Ok(())
    })
}

/// Releases an image: unmaps its heap, new space and stack zone. Every
/// address it handed out is invalid afterwards. A handle released twice
/// (or never given out) is refused with `SPUR_E_HANDLE`.
#[no_mangle]
pub extern "C" fn spur_release(image: SpurImage) -> SpurStatus {
    const CALL: &str = "spur_release";
    guard(CALL, || handles::release_image(CALL, image))
}

/// The header fields of the image.
///
/// # Safety
/// `out` is NULL or writable for one `SpurHeader`.
#[no_mangle]
pub unsafe extern "C" fn spur_header(image: SpurImage, out: *mut SpurHeader) -> SpurStatus {
    const CALL: &str = "spur_header";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        handles::with_image(CALL, image, |im| {
            let h = &im.header;
            out.put(SpurHeader {
                format: h.format,
                word_size: match h.word {
                    WordSize::W32 => 4,
                    WordSize::W64 => 8,
                },
                big_endian: (h.byte_order.name() == "big").into(),
                multiple_bytecode_sets: h.multiple_bytecode_sets.into(),
                composed: im.composed.into(),
                prefix_bytes: h.prefix_bytes,
                header_size: h.header_size,
                data_size: h.data_size,
                old_base: h.old_base.get(),
                special_objects_oop: h.special_objects_oop.get(),
                last_hash: h.last_hash,
                flags: h.flags,
                first_segment_size: h.first_segment_size,
                free_old_space: h.free_old_space,
                eden_bytes: h.eden_bytes,
                stack_pages: h.num_stack_pages,
                max_ext_sem_table: h.max_ext_sem_table,
                cog_code_size: u64::from(h.cog_code_size_kib) * 1024,
                image_version: h.image_version,
                extra_vm_memory: h.extra_vm_memory,
                saved_window_width: (h.saved_window_size >> 16 & 0xffff) as u32,
                saved_window_height: (h.saved_window_size & 0xffff) as u32,
            });
            Ok(())
        })
    })
}

/// Where the heap was placed.
///
/// # Safety
/// `out` is NULL or writable for one `SpurPlacement`.
#[no_mangle]
pub unsafe extern "C" fn spur_placement(image: SpurImage, out: *mut SpurPlacement) -> SpurStatus {
    const CALL: &str = "spur_placement";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        handles::with_image(CALL, image, |im| {
            let heap = im.heap(CALL)?;
            out.put(SpurPlacement {
                relocated: (heap.placement().name() == "relocated").into(),
                swizzled: heap.swizzled().into(),
                fell_back: heap.fallback_reason().is_some().into(),
                segments: heap.segments().len() as u64,
                heap_bytes: heap.heap_bytes(),
                headroom: heap.headroom(),
            });
            Ok(())
        })
    })
}

/// Why the heap was relocated although its old addresses were asked for
/// ("" when it was not), into `buf` as `snprintf` does: at most `cap`
/// bytes with the NUL, the full length in `*len` (`len` may be NULL).
///
/// # Safety
/// `buf` is NULL or writable for `cap` bytes; `len` is NULL or writable
/// for one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn spur_fallback_reason(
    image: SpurImage,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> SpurStatus {
    const CALL: &str = "spur_fallback_reason";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { BufOut::new(buf.cast(), cap, len, CALL) }?;
        handles::with_image(CALL, image, |im| {
            out.text(im.heap(CALL)?.fallback_reason().unwrap_or(""));
            Ok(())
        })
    })
}

/// The number of segments of the loaded heap.
///
/// # Safety
/// `out` is NULL or writable for one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn spur_segment_count(image: SpurImage, out: *mut u64) -> SpurStatus {
    const CALL: &str = "spur_segment_count";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        handles::with_image(CALL, image, |im| {
            out.put(im.heap(CALL)?.segments().len() as u64);
            Ok(())
        })
    })
}

/// Segment `index` of the loaded heap: old start, new start, size, mapped.
///
/// # Safety
/// `out` is NULL or writable for one `SpurSegment`.
#[no_mangle]
pub unsafe extern "C" fn spur_segment(
    image: SpurImage,
    index: u64,
    out: *mut SpurSegment,
) -> SpurStatus {
    const CALL: &str = "spur_segment";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        handles::with_image(CALL, image, |im| {
            let segs = im.heap(CALL)?.segments();
            let s = usize::try_from(index)
                .ok()
                .and_then(|i| segs.get(i))
                .ok_or_else(|| range(CALL, "segment", index, segs.len() as u64))?;
            out.put(SpurSegment {
                index: s.index as u64,
                old_start: s.old_start.get(),
                new_start: s.new_start.get(),
                size: s.size,
                mapped: s.mapped.into(),
            });
            Ok(())
        })
    })
}

/// Checks the heap as the VMs do (docs/format.md §8), keeping the findings for
/// `spur_finding`. A corrupt heap is still `SPUR_OK`: see `out->ok`.
///
/// # Safety
/// `out` is NULL or writable for one `SpurVerifyReport`.
#[no_mangle]
pub unsafe extern "C" fn spur_verify(image: SpurImage, out: *mut SpurVerifyReport) -> SpurStatus {
    const CALL: &str = "spur_verify";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        handles::with_image(CALL, image, |im| {
            let r = spur_loader::verify(im.heap(CALL)?);
            out.put(SpurVerifyReport {
                ok: r.ok().into(),
                objects: r.objects,
                free_chunks: r.free_chunks,
                classes: r.classes,
                errors: r.errors.len() as u64,
                warnings: r.warnings.len() as u64,
                errors_dropped: r.errors_dropped,
                warnings_dropped: r.warnings_dropped,
            });
            im.report = Some(r);
            Ok(())
        })
    })
}

fn kind_name(k: FindingKind) -> &'static CStr {
    match k.name() {
        "segment" => c"segment",
        "first-objects" => c"first-objects",
        "special-objects" => c"special-objects",
        "class-table" => c"class-table",
        "pointer" => c"pointer",
        "forwarder" => c"forwarder",
        "free-space" => c"free-space",
        "method" => c"method",
        "obj-stack" => c"obj-stack",
        "header-bits" => c"header-bits",
        "object-format" => c"object-format",
        _ => c"other",
    }
}

/// Finding `index` of the last `spur_verify`: the errors first, then the
/// warnings. Its text goes into `buf` as in `spur_fallback_reason`.
///
/// # Safety
/// `out` is NULL or writable for one `SpurFinding`; `buf`, `cap` and `len`
/// as for `spur_fallback_reason`.
#[no_mangle]
pub unsafe extern "C" fn spur_finding(
    image: SpurImage,
    index: u64,
    out: *mut SpurFinding,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> SpurStatus {
    const CALL: &str = "spur_finding";
    guard(CALL, || {
        // SAFETY: the caller's contract above, for both.
        let (out, text) = unsafe {
            (
                Out::new(out, CALL, "out")?,
                BufOut::new(buf.cast(), cap, len, CALL)?,
            )
        };
        handles::with_image(CALL, image, |im| {
            let r = im.report.as_ref().ok_or_else(|| {
                Failure::new(SPUR_E_STATE, format!("{CALL}: call spur_verify first"))
            })?;
            let n = (r.errors.len() + r.warnings.len()) as u64;
            let i = usize::try_from(index).map_err(|_| range(CALL, "finding", index, n))?;
            let (f, is_error) = match r.errors.get(i) {
                Some(f) => (f, true),
                None => (
                    r.warnings
                        .get(i - r.errors.len())
                        .ok_or_else(|| range(CALL, "finding", index, n))?,
                    false,
                ),
            };
            out.put(SpurFinding {
                is_error: is_error.into(),
                addr: f.addr,
                kind: boundary::static_c(kind_name(f.kind)),
            });
            text.text(&f.what);
            Ok(())
        })
    })
}

/// Wires the runtime: the overrides are checked (a refused one is
/// `SPUR_E_ARGUMENT` and changes nothing), then new space, the stack zone
/// and the tables are made and the resume point found. `opts` may be NULL.
/// If wiring refuses the heap (`SPUR_E_RUNTIME`), the heap is released
/// with it and the handle only answers `spur_release`.
///
/// # Safety
/// `opts` is NULL or points to a `SpurRuntimeOptions`.
#[no_mangle]
pub unsafe extern "C" fn spur_wire(
    image: SpurImage,
    opts: *const SpurRuntimeOptions,
) -> SpurStatus {
    const CALL: &str = "spur_wire";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let o = unsafe { opt_in(opts) }.unwrap_or_default();
        let nonzero = |v: u64| (v != 0).then_some(v);
        let opts = RuntimeOptions {
            eden_bytes: nonzero(o.eden_bytes),
            stack_pages: nonzero(o.stack_pages),
            ext_sem_table: nonzero(o.ext_sem_table),
            claim_headroom: o.keep_headroom == 0,
        };
        handles::with_image(CALL, image, |im| im.wire(CALL, &opts))
    })
}

/// `*out` = 1 when the image is wired.
///
/// # Safety
/// `out` is NULL or writable for one `uint8_t`.
#[no_mangle]
pub unsafe extern "C" fn spur_is_wired(image: SpurImage, out: *mut u8) -> SpurStatus {
    const CALL: &str = "spur_is_wired";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        handles::with_image(CALL, image, |im| {
            out.put(im.is_wired().into());
            Ok(())
        })
    })
}

/// The dialect wiring found (`pharo`, `squeak`, `cuis` or `unknown`), into
/// `buf` as in `spur_fallback_reason`. Wired images only.
///
/// # Safety
/// As for `spur_fallback_reason`.
#[no_mangle]
pub unsafe extern "C" fn spur_dialect(
    image: SpurImage,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> SpurStatus {
    const CALL: &str = "spur_dialect";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { BufOut::new(buf.cast(), cap, len, CALL) }?;
        handles::with_image(CALL, image, |im| {
            out.text(im.runtime(CALL)?.dialect().dialect.name());
            Ok(())
        })
    })
}

/// The special objects array and nil, false, true, the scheduler's
/// association and the external objects array. Wired images only.
///
/// # Safety
/// `out` is NULL or writable for one `SpurSpecialObjects`.
#[no_mangle]
pub unsafe extern "C" fn spur_special_objects(
    image: SpurImage,
    out: *mut SpurSpecialObjects,
) -> SpurStatus {
    const CALL: &str = "spur_special_objects";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        handles::with_image(CALL, image, |im| {
            let so = LaunchSpecialObjects::of(im.runtime(CALL)?.special_objects());
            out.put(SpurSpecialObjects {
                array: so.array,
                length: so.length as u64,
                nil: so.nil,
                false_object: so.false_,
                true_object: so.true_,
                scheduler_association: so.scheduler_association,
                external_objects_array: so.external_objects_array,
            });
            Ok(())
        })
    })
}

/// Slot `index` of the special objects array (read now, so after a become
/// too); `SPUR_E_RANGE` past its end.
///
/// # Safety
/// `out` is NULL or writable for one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn spur_special_object(
    image: SpurImage,
    index: u64,
    out: *mut u64,
) -> SpurStatus {
    const CALL: &str = "spur_special_object";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        handles::with_image(CALL, image, |im| {
            let m = im.memory(CALL)?;
            let so = m.special_objects();
            let n = m.num_slots(so).map_err(|e| memory_failure(CALL, &e))?;
            if index >= n {
                return Err(range(CALL, "special object", index, n));
            }
            out.put(
                m.fetch(so, index)
                    .map_err(|e| memory_failure(CALL, &e))?
                    .bits(),
            );
            Ok(())
        })
    })
}

/// The class table's pages, classes and the class layout's slots. Wired images only.
///
/// # Safety
/// `out` is NULL or writable for one `SpurClassTable`.
#[no_mangle]
pub unsafe extern "C" fn spur_class_table(
    image: SpurImage,
    out: *mut SpurClassTable,
) -> SpurStatus {
    const CALL: &str = "spur_class_table";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        handles::with_image(CALL, image, |im| {
            let ct = im.runtime(CALL)?.class_table();
            out.put(SpurClassTable {
                pages: ct.pages() as u64,
                classes: ct.classes(),
                name_slot: ct.layout().name_slot,
                this_class_slot: ct.layout().this_class_slot,
            });
            Ok(())
        })
    })
}

/// The class at `index` of the class table; `SPUR_E_RANGE` when none is there.
///
/// # Safety
/// `out` is NULL or writable for one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn spur_class_at(image: SpurImage, index: u32, out: *mut u64) -> SpurStatus {
    const CALL: &str = "spur_class_at";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        handles::with_image(CALL, image, |im| {
            let c = im.memory(CALL)?.class_at(index).ok_or_else(|| {
                Failure::new(SPUR_E_RANGE, format!("{CALL}: no class at index {index}"))
            })?;
            out.put(c.bits());
            Ok(())
        })
    })
}

/// The class of `oop` (immediates too).
///
/// # Safety
/// `out` is NULL or writable for one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn spur_class_of(image: SpurImage, oop: u64, out: *mut u64) -> SpurStatus {
    const CALL: &str = "spur_class_of";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        handles::with_image(CALL, image, |im| {
            let c = im
                .memory(CALL)?
                .class_of(Oop::from_bits(oop))
                .ok_or_else(|| {
                    Failure::new(
                        SPUR_E_RANGE,
                        format!("{CALL}: {oop:#x} has no class in the class table"),
                    )
                })?;
            out.put(c.bits());
            Ok(())
        })
    })
}

/// The class index in `oop`'s header (an immediate's: its tag's index).
///
/// # Safety
/// `out` is NULL or writable for one `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn spur_class_index_of(
    image: SpurImage,
    oop: u64,
    out: *mut u32,
) -> SpurStatus {
    const CALL: &str = "spur_class_index_of";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        handles::with_image(CALL, image, |im| {
            let i = im
                .memory(CALL)?
                .class_index_of(Oop::from_bits(oop))
                .map_err(|e| memory_failure(CALL, &e))?;
            out.put(i);
            Ok(())
        })
    })
}

/// The name of `class` (`Foo`, or `Foo class` for a metaclass), into
/// `buf` as in `spur_fallback_reason`. Wired images only (wiring finds the
/// class layout).
///
/// # Safety
/// As for `spur_fallback_reason`.
#[no_mangle]
pub unsafe extern "C" fn spur_class_name(
    image: SpurImage,
    class: u64,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> SpurStatus {
    const CALL: &str = "spur_class_name";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { BufOut::new(buf.cast(), cap, len, CALL) }?;
        handles::with_image(CALL, image, |im| {
            let name = im
                .runtime(CALL)?
                .memory()
                .class_name(Oop::from_bits(class))
                .ok_or_else(|| {
                    Failure::new(
                        SPUR_E_RANGE,
                        format!("{CALL}: {class:#x} is not a class with a name"),
                    )
                })?;
            out.text(&name);
            Ok(())
        })
    })
}

/// Where the image resumes. Wired images only.
///
/// # Safety
/// `out` is NULL or writable for one `SpurResumePoint`.
#[no_mangle]
pub unsafe extern "C" fn spur_resume_point(
    image: SpurImage,
    out: *mut SpurResumePoint,
) -> SpurStatus {
    const CALL: &str = "spur_resume_point";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        handles::with_image(CALL, image, |im| {
            let r = im.runtime(CALL)?.resume_point();
            out.put(SpurResumePoint {
                scheduler: r.scheduler.bits(),
                process: r.process.bits(),
                context: r.context.bits(),
                method: r.method.bits(),
                home_method: r.home_method.bits(),
                receiver: r.receiver.bits(),
                in_block: r.in_block.into(),
                sista: (r.bytecode_set() == BytecodeSet::SistaV1).into(),
                pc: r.pc,
                initial_pc: r.initial_pc,
                end_pc: r.end_pc,
                stack_pointer: r.stack_pointer,
            });
            Ok(())
        })
    })
}

/// The selector of the method the image resumes in, into `buf` as in
/// `spur_fallback_reason`. Wired images only.
///
/// # Safety
/// As for `spur_fallback_reason`.
#[no_mangle]
pub unsafe extern "C" fn spur_resume_selector(
    image: SpurImage,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> SpurStatus {
    const CALL: &str = "spur_resume_selector";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { BufOut::new(buf.cast(), cap, len, CALL) }?;
        handles::with_image(CALL, image, |im| {
            out.text(&im.runtime(CALL)?.resume_point().selector_name);
            Ok(())
        })
    })
}

/// `Class>>selector` (or `[] in Class>>selector`) of the resume point,
/// into `buf` as in `spur_fallback_reason`. Wired images only.
///
/// # Safety
/// As for `spur_fallback_reason`.
#[no_mangle]
pub unsafe extern "C" fn spur_resume_method_name(
    image: SpurImage,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> SpurStatus {
    const CALL: &str = "spur_resume_method_name";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { BufOut::new(buf.cast(), cap, len, CALL) }?;
        handles::with_image(CALL, image, |im| {
            out.text(&im.runtime(CALL)?.resume_point().method_name());
            Ok(())
        })
    })
}

/// New space's ranges. Wired images only.
///
/// # Safety
/// `out` is NULL or writable for one `SpurNewSpace`.
#[no_mangle]
pub unsafe extern "C" fn spur_new_space(image: SpurImage, out: *mut SpurNewSpace) -> SpurStatus {
    const CALL: &str = "spur_new_space";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        handles::with_image(CALL, image, |im| {
            let ns = im.runtime(CALL)?.new_space();
            let l = ns.layout();
            out.put(SpurNewSpace {
                start: ns.start().get(),
                end: ns.end().get(),
                bytes: l.total_bytes,
                survivor_bytes: l.survivor_bytes,
                past_start: ns.past_space().start,
                future_start: ns.future_space().start,
                eden_start: ns.eden().start,
                eden_bytes: l.eden_bytes,
                scavenge_threshold: ns.scavenge_threshold().get(),
                reserve_bytes: l.reserve_bytes,
                below_old_space: (ns.placed().name() == "below-old-space").into(),
            });
            Ok(())
        })
    })
}

/// The stack zone's range and pages. Wired images only.
///
/// # Safety
/// `out` is NULL or writable for one `SpurStackZone`.
#[no_mangle]
pub unsafe extern "C" fn spur_stack_zone(image: SpurImage, out: *mut SpurStackZone) -> SpurStatus {
    const CALL: &str = "spur_stack_zone";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        handles::with_image(CALL, image, |im| {
            let st = im.runtime(CALL)?.stack_zone();
            let l = st.layout();
            out.put(SpurStackZone {
                start: st.start(),
                bytes: l.zone_bytes,
                pages: l.count,
                page_bytes: l.page_bytes,
            });
            Ok(())
        })
    })
}

/// Old space after wiring: its range, the headroom and the free chunk made of it.
///
/// # Safety
/// `out` is NULL or writable for one `SpurOldSpace`.
#[no_mangle]
pub unsafe extern "C" fn spur_old_space(image: SpurImage, out: *mut SpurOldSpace) -> SpurStatus {
    const CALL: &str = "spur_old_space";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        handles::with_image(CALL, image, |im| {
            let o = im.runtime(CALL)?.old_space();
            out.put(SpurOldSpace {
                start: o.start.get(),
                end: o.end.get(),
                headroom: o.headroom,
                free_chunk: o.claimed.map_or(0, |c| c.chunk.get()),
                free_chunk_bytes: o.claimed.map_or(0, |c| c.bytes),
                free_bytes: o.free_bytes,
            });
            Ok(())
        })
    })
}

/// Runs `f` on the object memory of `image` (loaded or wired).
fn on_memory<T>(
    call: &str,
    image: SpurImage,
    f: impl FnOnce(&mut spur_runtime::ObjectMemory) -> Result<T, spur_runtime::MemoryError>,
) -> Outcome<T> {
    handles::with_image(call, image, |im| {
        f(im.memory_mut(call)?).map_err(|e| memory_failure(call, &e))
    })
}

/// The number of slots of `obj` (overflow word handled).
///
/// # Safety
/// `out` is NULL or writable for one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn spur_num_slots(image: SpurImage, obj: u64, out: *mut u64) -> SpurStatus {
    const CALL: &str = "spur_num_slots";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        out.put(on_memory(CALL, image, |m| {
            m.num_slots(Oop::from_bits(obj))
        })?);
        Ok(())
    })
}

/// The format field (0..31) of `obj`'s header.
///
/// # Safety
/// `out` is NULL or writable for one `uint8_t`.
#[no_mangle]
pub unsafe extern "C" fn spur_format_of(image: SpurImage, obj: u64, out: *mut u8) -> SpurStatus {
    const CALL: &str = "spur_format_of";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        out.put(on_memory(CALL, image, |m| m.format(Oop::from_bits(obj)))?);
        Ok(())
    })
}

/// Pointer slot `index` of `obj`.
///
/// # Safety
/// `out` is NULL or writable for one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn spur_fetch(
    image: SpurImage,
    obj: u64,
    index: u64,
    out: *mut u64,
) -> SpurStatus {
    const CALL: &str = "spur_fetch";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        out.put(on_memory(CALL, image, |m| m.fetch(Oop::from_bits(obj), index))?.bits());
        Ok(())
    })
}

/// Stores `value` into slot `index` of `obj`, with the write barrier;
/// refuses an immutable object.
#[no_mangle]
pub extern "C" fn spur_store(image: SpurImage, obj: u64, index: u64, value: u64) -> SpurStatus {
    const CALL: &str = "spur_store";
    guard(CALL, || {
        on_memory(CALL, image, |m| {
            m.store(Oop::from_bits(obj), index, Oop::from_bits(value))
        })
    })
}

/// Copies the bytes of `obj` (exact length for byte objects, the whole
/// body otherwise) into `buf`: at most `cap`, the full length in `*len`.
///
/// # Safety
/// `buf` is NULL or writable for `cap` bytes and is not inside the heap;
/// `len` is NULL or writable for one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn spur_bytes(
    image: SpurImage,
    obj: u64,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> SpurStatus {
    const CALL: &str = "spur_bytes";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { BufOut::new(buf, cap, len, CALL) }?;
        handles::with_image(CALL, image, |im| {
            let b = im
                .memory(CALL)?
                .bytes(Oop::from_bits(obj))
                .map_err(|e| memory_failure(CALL, &e))?;
            out.bytes(b);
            Ok(())
        })
    })
}

/// Writes `len` bytes from `src` into the body of `obj` at byte `offset`;
/// `SPUR_E_RANGE` when they do not fit in it.
///
/// # Safety
/// `src` is NULL or readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn spur_write_bytes(
    image: SpurImage,
    obj: u64,
    offset: u64,
    src: *const u8,
    len: usize,
) -> SpurStatus {
    const CALL: &str = "spur_write_bytes";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let src = unsafe { boundary::bytes_in(src, len, CALL, "src") }?;
        handles::with_image(CALL, image, |im| {
            let body = im
                .memory_mut(CALL)?
                .bytes_mut(Oop::from_bits(obj))
                .map_err(|e| memory_failure(CALL, &e))?;
            let n = body.len() as u64;
            let dest = usize::try_from(offset)
                .ok()
                .and_then(|o| body.get_mut(o..o.checked_add(src.len())?))
                .ok_or_else(|| {
                    Failure::new(
                        SPUR_E_RANGE,
                        format!("{CALL}: {len} bytes at offset {offset} do not fit in the {n} bytes of {obj:#x}"),
                    )
                })?;
            dest.copy_from_slice(src);
            Ok(())
        })
    })
}

/// Allocates in eden an object of `num_slots` pointer slots (filled with
/// nil) of class index `class_index` and format `format`; in old space when
/// eden cannot hold it (the memory then wants a scavenge). `SPUR_E_MEMORY`
/// when old space cannot grow by it either, or the image is not wired.
///
/// # Safety
/// `out` is NULL or writable for one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn spur_allocate_slots(
    image: SpurImage,
    class_index: u32,
    format: u8,
    num_slots: u64,
    out: *mut u64,
) -> SpurStatus {
    const CALL: &str = "spur_allocate_slots";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        out.put(
            on_memory(CALL, image, |m| {
                m.allocate_slots(class_index, format, num_slots)
            })?
            .bits(),
        );
        Ok(())
    })
}

/// Allocates in eden a byte object of `byte_len` zero bytes.
///
/// # Safety
/// `out` is NULL or writable for one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn spur_allocate_bytes(
    image: SpurImage,
    class_index: u32,
    byte_len: u64,
    out: *mut u64,
) -> SpurStatus {
    const CALL: &str = "spur_allocate_bytes";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        out.put(on_memory(CALL, image, |m| m.allocate_bytes(class_index, byte_len))?.bits());
        Ok(())
    })
}

/// Allocates in eden a zeroed object of `units` 64-, 32- or 16-bit units
/// (format 9, 10 or 12).
///
/// # Safety
/// `out` is NULL or writable for one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn spur_allocate_words(
    image: SpurImage,
    class_index: u32,
    format: u8,
    units: u64,
    out: *mut u64,
) -> SpurStatus {
    const CALL: &str = "spur_allocate_words";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        out.put(
            on_memory(CALL, image, |m| {
                m.allocate_words(class_index, format, units)
            })?
            .bits(),
        );
        Ok(())
    })
}

/// The identity hash of `obj`, assigned on first request.
///
/// # Safety
/// `out` is NULL or writable for one `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn spur_identity_hash(
    image: SpurImage,
    obj: u64,
    out: *mut u32,
) -> SpurStatus {
    const CALL: &str = "spur_identity_hash";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        out.put(on_memory(CALL, image, |m| {
            m.identity_hash(Oop::from_bits(obj))
        })?);
        Ok(())
    })
}

/// Bytes still free in eden (0 before wiring).
///
/// # Safety
/// `out` is NULL or writable for one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn spur_eden_free(image: SpurImage, out: *mut u64) -> SpurStatus {
    const CALL: &str = "spur_eden_free";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        out.put(on_memory(CALL, image, |m| Ok(m.eden_free()))?);
        Ok(())
    })
}

/// The value of a SmallInteger; `SPUR_E_ARGUMENT` when `oop` is not one.
///
/// # Safety
/// `out` is NULL or writable for one `int64_t`.
#[no_mangle]
pub unsafe extern "C" fn spur_small_int(image: SpurImage, oop: u64, out: *mut i64) -> SpurStatus {
    const CALL: &str = "spur_small_int";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        let v = handles::with_image(CALL, image, |im| {
            Ok(im.memory(CALL)?.small_int(Oop::from_bits(oop)))
        })?;
        out.put(v.ok_or_else(|| {
            Failure::new(
                SPUR_E_ARGUMENT,
                format!("{CALL}: {oop:#x} is not a SmallInteger"),
            )
        })?);
        Ok(())
    })
}

/// The SmallInteger of `value`; `SPUR_E_ARGUMENT` when out of range (61 or 31 bits).
///
/// # Safety
/// `out` is NULL or writable for one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn spur_from_small_int(
    image: SpurImage,
    value: i64,
    out: *mut u64,
) -> SpurStatus {
    const CALL: &str = "spur_from_small_int";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        let v = handles::with_image(CALL, image, |im| Ok(im.memory(CALL)?.from_small_int(value)))?;
        out.put(
            v.ok_or_else(|| {
                Failure::new(
                    SPUR_E_ARGUMENT,
                    format!("{CALL}: {value} is out of a SmallInteger's range"),
                )
            })?
            .bits(),
        );
        Ok(())
    })
}

/// Counts instances and bytes per class in one walk (as `vm-loader
/// stats`), keeping the rows, largest first, for `spur_histogram_row`.
///
/// # Safety
/// `out` is NULL or writable for one `SpurHistogram`.
#[no_mangle]
pub unsafe extern "C" fn spur_histogram(image: SpurImage, out: *mut SpurHistogram) -> SpurStatus {
    const CALL: &str = "spur_histogram";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out, CALL, "out") }?;
        handles::with_image(CALL, image, |im| {
            let h = class_histogram(im.memory(CALL)?)
                .map_err(|e| Failure::new(SPUR_E_IMAGE, image::one_line(None, &e)))?;
            out.put(SpurHistogram {
                rows: h.rows.len() as u64,
                instances: h.instances(),
                bytes: h.bytes(),
                free_chunks: h.free_chunks,
                free_bytes: h.free_bytes,
                hidden_objects: h.hidden,
                hidden_bytes: h.hidden_bytes,
            });
            im.histogram = Some(h);
            Ok(())
        })
    })
}

/// Row `index` of the last `spur_histogram`; the class name into `buf` as
/// in `spur_fallback_reason` (`<class index N>` for an index with no class).
///
/// # Safety
/// `out` is NULL or writable for one `SpurClassStats`; `buf`, `cap` and
/// `len` as for `spur_fallback_reason`.
#[no_mangle]
pub unsafe extern "C" fn spur_histogram_row(
    image: SpurImage,
    index: u64,
    out: *mut SpurClassStats,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> SpurStatus {
    const CALL: &str = "spur_histogram_row";
    guard(CALL, || {
        // SAFETY: the caller's contract above, for both.
        let (out, name) = unsafe {
            (
                Out::new(out, CALL, "out")?,
                BufOut::new(buf.cast(), cap, len, CALL)?,
            )
        };
        handles::with_image(CALL, image, |im| {
            let h = im.histogram.as_ref().ok_or_else(|| {
                Failure::new(SPUR_E_STATE, format!("{CALL}: call spur_histogram first"))
            })?;
            let row = usize::try_from(index)
                .ok()
                .and_then(|i| h.rows.get(i))
                .ok_or_else(|| range(CALL, "row", index, h.rows.len() as u64))?;
            out.put(SpurClassStats {
                class_oop: row.class.map_or(0, |c| c.bits()),
                instances: row.instances,
                bytes: row.bytes,
            });
            name.text(&row.name);
            Ok(())
        })
    })
}

/// Writes the heap as it is now to `path` (replaced only once complete),
/// in the foreground: a single file keeps the source's prefix and the bytes
/// after its data, as `vm-loader snapshot` does. Young objects and
/// contexts must already be in old space (the VM's job). `opts` and `out`
/// may be NULL.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `opts` is NULL or points to
/// a `SpurSnapshotOptions`; `out` is NULL or writable for one `SpurSnapshotResult`.
#[no_mangle]
pub unsafe extern "C" fn spur_snapshot(
    image: SpurImage,
    path: *const c_char,
    opts: *const SpurSnapshotOptions,
    out: *mut SpurSnapshotResult,
) -> SpurStatus {
    const CALL: &str = "spur_snapshot";
    guard(CALL, || {
        // SAFETY: the caller's contract above, for each of the three.
        let (path, opts, out) = unsafe {
            (
                path_in(path, CALL, "path")?,
                opt_in(opts).unwrap_or_default(),
                MaybeOut::new(out),
            )
        };
        let r = handles::with_image(CALL, image, |im| im.snapshot(CALL, path, &opts))?;
        out.put(r);
        Ok(())
    })
}

/// Starts writing a single-file snapshot of the heap as it is now from a
/// forked child, and returns once the fork has: the caller may change the
/// heap at once, or release the image. `*out` is a job handle for
/// `spur_job_wait` (or `spur_job_release`).
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `opts` is NULL or points to
/// a `SpurSnapshotOptions`; `out` is NULL or writable for one `SpurJob`.
#[no_mangle]
pub unsafe extern "C" fn spur_snapshot_background(
    image: SpurImage,
    path: *const c_char,
    opts: *const SpurSnapshotOptions,
    out: *mut SpurJob,
) -> SpurStatus {
    // SAFETY: the caller's contract above is `background`'s.
    unsafe {
        background(
            "spur_snapshot_background",
            image,
            path,
            opts,
            out,
            BackgroundWriter::Fork,
        )
    }
}

/// The two background snapshots: the job of `by`'s snapshot into `*out`.
///
/// # Safety
/// As `spur_snapshot_background`.
unsafe fn background(
    call: &'static str,
    image: SpurImage,
    path: *const c_char,
    opts: *const SpurSnapshotOptions,
    out: *mut SpurJob,
    by: BackgroundWriter,
) -> SpurStatus {
    guard(call, || {
        // SAFETY: the caller's contract, for each of the three.
        let (path, opts, out) = unsafe {
            (
                path_in(path, call, "path")?,
                opt_in(opts).unwrap_or_default(),
                Out::new(out, call, "out")?,
            )
        };
        let job = handles::with_image(call, image, |im| {
            im.snapshot_background(call, path, &opts, by)
        })?;
        let id = handles::insert(Entry::Job(Box::new(std::sync::Mutex::new(Some(job)))));
        out.put(SpurJob { id });
        Ok(())
    })
}

/// `spur_snapshot_background`, written by a thread of this process instead
/// of a child: the heap's pages are write-protected (Linux `userfaultfd`),
/// and a write to the heap while the thread runs waits until its 2 MiB
/// have been copied, once. The pause is the protection, well under a
/// millisecond at 4 GiB, where `fork` copies the page tables of the whole
/// process. The call starts two threads (the writer and the handler of the
/// faults), which end when the last byte is written. Releasing the image
/// waits for that. Where the kernel does not offer write-protection, a
/// child is forked as by `spur_snapshot_background`. The job is waited for
/// and released in the same way.
///
/// # Safety
/// As `spur_snapshot_background`.
#[no_mangle]
pub unsafe extern "C" fn spur_snapshot_background_thread(
    image: SpurImage,
    path: *const c_char,
    opts: *const SpurSnapshotOptions,
    out: *mut SpurJob,
) -> SpurStatus {
    // SAFETY: the caller's contract above is `background`'s.
    unsafe {
        background(
            "spur_snapshot_background_thread",
            image,
            path,
            opts,
            out,
            BackgroundWriter::Thread,
        )
    }
}

/// Waits for a background snapshot to end and releases the job: `SPUR_OK`
/// when the image is written and in place, `SPUR_E_WRITE` (the child's
/// error) otherwise. `out` may be NULL.
///
/// # Safety
/// `out` is NULL or writable for one `SpurSnapshotResult`.
#[no_mangle]
pub unsafe extern "C" fn spur_job_wait(job: SpurJob, out: *mut SpurSnapshotResult) -> SpurStatus {
    const CALL: &str = "spur_job_wait";
    guard(CALL, || {
        // SAFETY: the caller's contract above.
        let out = unsafe { MaybeOut::new(out) };
        let running = handles::with_job(CALL, job, |j| Ok(j.take()))?;
        handles::release_job(CALL, job)?;
        let running = running.ok_or_else(|| {
            Failure::new(
                SPUR_E_HANDLE,
                format!(
                    "{CALL}: job {} is being waited for by another thread",
                    job.id
                ),
            )
        })?;
        let r = running.wait().map_err(|e| image::job_failure(&e))?;
        out.put(image::background_result(&r));
        Ok(())
    })
}

/// Releases a job without looking at its result (waiting for the child
/// first, so that no process is left behind).
#[no_mangle]
pub extern "C" fn spur_job_release(job: SpurJob) -> SpurStatus {
    const CALL: &str = "spur_job_release";
    guard(CALL, || handles::release_job(CALL, job))
}
