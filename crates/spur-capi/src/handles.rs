//! The registry behind the handles: a handle is a number, never a pointer,
//! so a handle released twice, or never given out, is found unknown
//! instead of being dereferenced. Numbers count up from 1 and are never
//! reused.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use spur_loader::BackgroundSnapshot;

use crate::boundary::{Failure, Outcome};
use crate::image::Image;
use crate::types::*;

/// What a handle stands for.
#[derive(Debug)]
pub enum Entry {
    Image(Box<Mutex<Image>>),
    Job(Box<Mutex<Option<BackgroundSnapshot>>>),
}

#[derive(Debug)]
struct Registry {
    next: u64,
    entries: BTreeMap<u64, Arc<Entry>>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 1,
    entries: BTreeMap::new(),
});

/// The registry, even after a panic elsewhere poisoned its lock (the map
/// is changed by single inserts and removes, which cannot be half done).
fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers `entry` and returns its number.
pub fn insert(entry: Entry) -> u64 {
    let mut r = registry();
    let id = r.next;
    r.next += 1;
    r.entries.insert(id, Arc::new(entry));
    id
}

fn unknown(call: &str, what: &str, id: u64) -> Failure {
    Failure::new(
        SPUR_E_HANDLE,
        format!("{call}: {what} {id} is not a live handle (never given out, or already released)"),
    )
}

fn get(id: u64) -> Option<Arc<Entry>> {
    registry().entries.get(&id).cloned()
}

/// Runs `f` on the image `h`, holding its lock: calls on one image are
/// serialized, calls on different images run at once.
pub fn with_image<T>(
    call: &str,
    h: SpurImage,
    f: impl FnOnce(&mut Image) -> Outcome<T>,
) -> Outcome<T> {
    let entry = get(h.id).ok_or_else(|| unknown(call, "image", h.id))?;
    let Entry::Image(m) = &*entry else {
        return Err(unknown(call, "image", h.id));
    };
    let mut image = m.lock().map_err(|_| poisoned(call, h.id))?;
    f(&mut image)
}

/// Runs `f` on the job `j`.
pub fn with_job<T>(
    call: &str,
    j: SpurJob,
    f: impl FnOnce(&mut Option<BackgroundSnapshot>) -> Outcome<T>,
) -> Outcome<T> {
    let entry = get(j.id).ok_or_else(|| unknown(call, "job", j.id))?;
    let Entry::Job(m) = &*entry else {
        return Err(unknown(call, "job", j.id));
    };
    let mut job = m.lock().map_err(|_| poisoned(call, j.id))?;
    f(&mut job)
}

fn poisoned(call: &str, id: u64) -> Failure {
    Failure::new(
        SPUR_E_INTERNAL,
        format!("{call}: an earlier call on handle {id} failed with an internal error; release it"),
    )
}

/// Releases the image `h`.
pub fn release_image(call: &str, h: SpurImage) -> Outcome<()> {
    release(call, "image", h.id, |e| matches!(e, Entry::Image(_)))
}

/// Releases the job `j`.
pub fn release_job(call: &str, j: SpurJob) -> Outcome<()> {
    release(call, "job", j.id, |e| matches!(e, Entry::Job(_)))
}

fn release(call: &str, what: &str, id: u64, is: impl Fn(&Entry) -> bool) -> Outcome<()> {
    let mut r = registry();
    match r.entries.get(&id) {
        Some(e) if is(e) => {
            let e = r.entries.remove(&id);
            drop(r);
            // Dropped outside the registry's lock: unmapping a heap, or
            // waiting for a snapshot's child, holds no other call.
            drop(e);
            Ok(())
        }
        _ => Err(unknown(call, what, id)),
    }
}
