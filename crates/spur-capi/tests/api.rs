//! The C interface called from Rust, for what the C tests cannot show
//! easily: handle numbers are never reused, an image released while
//! another thread uses it is dropped only when that call ends, and a
//! released handle answers `SPUR_E_HANDLE` from every thread.

use std::ffi::{CStr, CString};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use spur_capi::api::*;
use spur_capi::*;
use spur_format::WordSize;
use spur_synth::SynthSpec;

fn image(dir: &Path) -> CString {
    let path = dir.join("t.image");
    spur_synth::write_image_file(&SynthSpec::new(WordSize::W64, 1 << 20), &path).unwrap();
    CString::new(path.to_str().unwrap()).unwrap()
}

fn load(path: &CStr) -> SpurImage {
    let mut img = SpurImage { id: 0 };
    // SAFETY: `path` is a NUL-terminated string and `img` a writable SpurImage.
    let s = unsafe { spur_load(path.as_ptr(), std::ptr::null(), &mut img) };
    assert_eq!(s, SPUR_OK, "{}", last_error());
    img
}

fn last_error() -> String {
    // SAFETY: the pointer is this thread's message, valid until its next call.
    unsafe { CStr::from_ptr(spur_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn header(img: SpurImage) -> SpurStatus {
    let mut h = SpurHeader::default();
    // SAFETY: `h` is a writable SpurHeader.
    unsafe { spur_header(img, &mut h) }
}

#[test]
fn handle_numbers_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = image(dir.path());
    let first = load(&path);
    assert_eq!(spur_release(first), SPUR_OK);
    let second = load(&path);
    assert_ne!(first, second);
    assert_eq!(header(first), SPUR_E_HANDLE);
    assert!(
        last_error().contains("already released"),
        "{}",
        last_error()
    );
    assert_eq!(header(second), SPUR_OK);
    assert_eq!(spur_release(second), SPUR_OK);
    assert_eq!(spur_release(second), SPUR_E_HANDLE);
}

#[test]
fn an_image_released_while_in_use_goes_when_its_calls_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = image(dir.path());
    let img = load(&path);
    // nil is the first object of the first segment, wherever it went (the
    // tests run at once, so one of them finds the old addresses taken).
    let mut seg = SpurSegment::default();
    // SAFETY: `seg` is a writable SpurSegment.
    assert_eq!(unsafe { spur_segment(img, 0, &mut seg) }, SPUR_OK);
    let nil = seg.new_start;
    let released = AtomicBool::new(false);
    std::thread::scope(|s| {
        // Readers fetch nil's class index until the handle is gone; every
        // answer is either the value or SPUR_E_HANDLE, never a crash.
        let readers: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let mut seen_gone = false;
                    for _ in 0..100_000 {
                        let mut index = 0u32;
                        // SAFETY: `index` is a writable u32.
                        match unsafe { spur_class_index_of(img, nil, &mut index) } {
                            SPUR_OK => assert_ne!(index, 0),
                            SPUR_E_HANDLE => {
                                seen_gone = true;
                                break;
                            }
                            other => panic!("status {other}: {}", last_error()),
                        }
                    }
                    seen_gone || !released.load(Ordering::SeqCst)
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(spur_release(img), SPUR_OK);
        released.store(true, Ordering::SeqCst);
        for r in readers {
            assert!(r.join().unwrap());
        }
    });
    assert_eq!(spur_release(img), SPUR_E_HANDLE);
}
