//! The boundary with C: the only code of this crate that touches a raw
//! pointer, and the guard every call runs in.
//!
//! A pointer from C becomes a checked Rust value here, once per argument:
//! NULL is an error (`SPUR_E_NULL`) naming the argument; a non-NULL
//! pointer is trusted to be what the call's `# Safety` section says (C
//! cannot tell us more). Results are written only when the call succeeds.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use crate::types::*;

/// A failed call: its status and its one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: SpurStatus,
    pub line: String,
}

impl Failure {
    pub fn new(status: SpurStatus, line: impl Into<String>) -> Failure {
        Failure {
            status,
            line: line.into(),
        }
    }
}

pub type Outcome<T> = Result<T, Failure>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `line` as this thread's last error (NUL bytes cannot be in a C
/// string: they become spaces).
fn set_last_error(line: &str) {
    let c = CString::new(line.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// The last error of this thread, as a pointer valid until the next call
/// of this library on the same thread.
pub fn last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Runs one call: a success clears the last error, a failure records its
/// line, and a panic is caught and reported as `SPUR_E_INTERNAL` instead
/// of unwinding into C.
pub fn guard(call: &str, body: impl FnOnce() -> Outcome<()>) -> SpurStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            set_last_error("");
            SPUR_OK
        }
        Ok(Err(f)) => {
            set_last_error(&f.line);
            f.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            set_last_error(&format!("{call}: internal error (caught): {what}"));
            SPUR_E_INTERNAL
        }
    }
}

fn null(call: &str, arg: &str) -> Failure {
    Failure::new(SPUR_E_NULL, format!("{call}: {arg} is NULL"))
}

/// Where a call writes one result.
#[derive(Debug)]
pub struct Out<T: Copy> {
    ptr: *mut T,
}

impl<T: Copy> Out<T> {
    /// # Safety
    /// `ptr` is NULL or valid for a write of one `T` (alignment included)
    /// until the call returns.
    pub unsafe fn new(ptr: *mut T, call: &str, arg: &str) -> Outcome<Out<T>> {
        if ptr.is_null() {
            return Err(null(call, arg));
        }
        Ok(Out { ptr })
    }

    /// Writes the result (without reading or dropping what was there).
    pub fn put(self, value: T) {
        // SAFETY: `new` was given a non-NULL pointer that its caller
        // promised is valid for a write of one T during this call.
        unsafe { self.ptr.write(value) }
    }
}

/// An optional result: NULL means the caller does not want it.
#[derive(Debug)]
pub struct MaybeOut<T: Copy> {
    ptr: *mut T,
}

impl<T: Copy> MaybeOut<T> {
    /// # Safety
    /// As [`Out::new`], but NULL is allowed.
    pub unsafe fn new(ptr: *mut T) -> MaybeOut<T> {
        MaybeOut { ptr }
    }

    pub fn put(self, value: T) {
        if !self.ptr.is_null() {
            // SAFETY: non-NULL, and valid for one write of T by the
            // contract of `new`.
            unsafe { self.ptr.write(value) }
        }
    }
}

/// Reads an optional input struct: NULL gives `None`.
///
/// # Safety
/// `ptr` is NULL or points to an initialized `T` valid for reads.
pub unsafe fn opt_in<T: Copy>(ptr: *const T) -> Option<T> {
    if ptr.is_null() {
        None
    } else {
        // SAFETY: non-NULL and, by this function's contract, a readable T.
        Some(unsafe { ptr.read() })
    }
}

/// A path given as a NUL-terminated C string (any bytes but NUL; not
/// necessarily UTF-8).
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that stays valid and
/// unchanged until the call returns.
pub unsafe fn path_in<'a>(ptr: *const c_char, call: &str, arg: &str) -> Outcome<&'a Path> {
    if ptr.is_null() {
        return Err(null(call, arg));
    }
    // SAFETY: non-NULL, NUL-terminated and live for the call by contract.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    if bytes.is_empty() {
        return Err(Failure::new(
            SPUR_E_ARGUMENT,
            format!("{call}: {arg} is an empty path"),
        ));
    }
    Ok(Path::new(OsStr::from_bytes(bytes)))
}

/// Bytes given as a pointer and a length (NULL allowed when the length is 0).
///
/// # Safety
/// When `len > 0`, `ptr` is NULL or valid for reads of `len` bytes that
/// do not change until the call returns.
pub unsafe fn bytes_in<'a>(ptr: *const u8, len: usize, call: &str, arg: &str) -> Outcome<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(null(call, arg));
    }
    // SAFETY: non-NULL and valid for `len` bytes by contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A caller's buffer for text or bytes, as `snprintf` fills one: at most
/// `cap` bytes are written (for text, the last is a NUL), and `*len` (when
/// `len` is not NULL) receives the full length, so a caller can size a
/// buffer by calling once with `cap` 0.
#[derive(Debug)]
pub struct BufOut {
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
}

impl BufOut {
    /// # Safety
    /// When `cap > 0`, `buf` is NULL or valid for writes of `cap` bytes;
    /// `len` is NULL or valid for one write of `size_t`; both until the
    /// call returns.
    pub unsafe fn new(buf: *mut u8, cap: usize, len: *mut usize, call: &str) -> Outcome<BufOut> {
        if cap > 0 && buf.is_null() {
            return Err(null(call, "buf (with cap > 0)"));
        }
        Ok(BufOut { buf, cap, len })
    }

    /// Text: as much as fits before a terminating NUL.
    pub fn text(self, s: &str) {
        if self.cap > 0 {
            let n = s.len().min(self.cap - 1);
            // SAFETY: `buf` is non-NULL (checked in `new` for cap > 0) and
            // valid for `cap` bytes; `n + 1 <= cap`, and `s` is a Rust
            // string, which cannot overlap the caller's buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(s.as_ptr(), self.buf, n);
                self.buf.add(n).write(0);
            }
        }
        self.put_len(s.len());
    }

    /// Bytes: as many as fit, no terminator.
    pub fn bytes(self, b: &[u8]) {
        let n = b.len().min(self.cap);
        if n > 0 {
            // SAFETY: `n <= cap` bytes into a buffer valid for `cap`
            // (non-NULL: `new` checked it for cap > 0). The contract says
            // the buffer is the caller's own memory, not the heap; `copy`
            // (a memmove) would tolerate an overlap all the same.
            unsafe { std::ptr::copy(b.as_ptr(), self.buf, n) }
        }
        self.put_len(b.len());
    }

    fn put_len(&self, n: usize) {
        if !self.len.is_null() {
            // SAFETY: non-NULL and valid for one write by `new`'s contract.
            unsafe { self.len.write(n) }
        }
    }
}

/// A static C string for `SpurFinding::kind` and `spur_status_name`.
pub fn static_c(s: &'static CStr) -> *const c_char {
    s.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last() -> String {
        // SAFETY: `last_error` points to this thread's message, a live CString.
        unsafe { CStr::from_ptr(last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_is_caught_and_reported() {
        let s = guard("spur_test", || panic!("boom at {}", 7));
        assert_eq!(s, SPUR_E_INTERNAL);
        assert_eq!(last(), "spur_test: internal error (caught): boom at 7");
        assert_eq!(guard("spur_test", || Ok(())), SPUR_OK);
        assert_eq!(last(), "");
    }

    #[test]
    fn a_failure_keeps_its_line_and_a_nul_cannot_cut_it() {
        let s = guard("spur_test", || Err(Failure::new(SPUR_E_RANGE, "a\0b")));
        assert_eq!(s, SPUR_E_RANGE);
        assert_eq!(last(), "a b");
    }

    #[test]
    fn text_is_cut_and_terminated_like_snprintf() {
        let mut buf = [0xffu8; 4];
        let mut len = 0usize;
        // SAFETY: `buf` is writable for 4 bytes and `len` for one usize.
        let out = unsafe { BufOut::new(buf.as_mut_ptr(), buf.len(), &mut len, "t") }.unwrap();
        out.text("hello");
        assert_eq!(&buf, b"hel\0");
        assert_eq!(len, 5);
        // SAFETY: NULL with cap 0 is allowed; `len` is writable.
        let out = unsafe { BufOut::new(std::ptr::null_mut(), 0, &mut len, "t") }.unwrap();
        out.text("hi");
        assert_eq!(len, 2);
    }
}
