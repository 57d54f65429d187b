//! The object memory the interpreter runs on: the runtime's object-memory
//! API (`spur_runtime::memory`, docs/embedding.md), plus the one helper the
//! interpreter builds on it.

pub use spur_runtime::memory::{AllocStats, MemoryError, ObjectMemory, Oop, Space};

use spur_format::raw::FMT_LAST_POINTER;

/// A copy of `obj` in eden: same class, format and slots (primitive 148).
pub fn shallow_copy(m: &mut ObjectMemory, obj: Oop) -> Result<Oop, MemoryError> {
    let h = m.header(obj)?;
    let n = m.num_slots(obj)?;
    let copy = m.allocate_slots(h.class_index(), h.format(), n)?;
    if h.format() <= FMT_LAST_POINTER {
        for i in 0..n {
            let v = m.fetch(obj, i)?;
            m.store(copy, i, v)?;
        }
    } else {
        let body = m.bytes(obj)?.to_vec();
        m.bytes_mut(copy)?[..body.len()].copy_from_slice(&body);
    }
    Ok(copy)
}
