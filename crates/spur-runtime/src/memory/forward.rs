//! One-way become: every reference to an object is redirected to another,
//! and the first becomes a forwarder (class index 8, format 7, slot 0 the
//! target, §3.2), as the VMs do before a collection sweeps it.

use std::collections::HashMap;

use spur_format::raw::{
    CLASS_FORWARDER, CLASS_FREE_CHUNK, CLASS_INDEX_MASK, CLASS_SEGMENT_BRIDGE, FMT_FORWARDED,
    FMT_LAST_POINTER, FORMAT_MASK, FORMAT_SHIFT, HASH_MASK, HASH_SHIFT, LAST_CLASS_INDEX_PUN,
    METHOD_NUM_LITERALS_MASK, REMEMBERED_SHIFT,
};
use spur_format::{NewAddr, ObjHeader};

use super::{MemoryError, ObjectMemory, Oop};

impl ObjectMemory {
    /// One-way become: every reference to each `from` in the heap (old,
    /// perm and new space, the class table, the special objects array) now
    /// points to its `to`, and `from` becomes a forwarder to `to`. With
    /// `copy_hash`, `to` takes `from`'s identity hash (when it has one).
    /// Each oop of `roots` (the interpreter's registers) is updated too;
    /// anything else it holds must be re-read through
    /// [`forwarded`](Self::forwarded).
    ///
    /// Everything is checked before anything changes: immediates, objects
    /// outside the heap, nil, true, false and hidden objects as `from`, a
    /// `from` given twice with different targets and a cycle are errors.
    /// An old object that gets a young `to` is remembered.
    pub fn become_forward(
        &mut self,
        pairs: &[(Oop, Oop)],
        copy_hash: bool,
        roots: &mut [Oop],
    ) -> Result<(), MemoryError> {
        let refuse = |from: Oop, to: Oop, why: &str| MemoryError::Become {
            from: from.bits(),
            to: to.bits(),
            why: why.into(),
        };
        let mut map: HashMap<Oop, Oop> = HashMap::with_capacity(pairs.len());
        for &(from, to) in pairs {
            let h = self.header(from)?;
            self.header(to)?;
            if [self.nil, self.true_object, self.false_object].contains(&from) {
                return Err(refuse(
                    from,
                    to,
                    "nil, true and false cannot become another object",
                ));
            }
            if h.class_index() <= LAST_CLASS_INDEX_PUN {
                return Err(refuse(
                    from,
                    to,
                    "a hidden object cannot become another object",
                ));
            }
            if from == to {
                continue;
            }
            if let Some(&other) = map.get(&from) {
                if other != to {
                    return Err(refuse(
                        from,
                        to,
                        &format!("it is also to become {other:#x}"),
                    ));
                }
            }
            map.insert(from, to);
        }
        // Resolve chains (a → b, b → c) to their ends, refusing cycles.
        let mut resolved = HashMap::with_capacity(map.len());
        for (&from, &to) in &map {
            let mut end = to;
            let mut steps = 0;
            while let Some(&next) = map.get(&end) {
                steps += 1;
                if next == from || steps > map.len() {
                    return Err(refuse(from, to, "the pairs form a cycle"));
                }
                end = next;
            }
            resolved.insert(from, end);
        }
        if resolved.is_empty() {
            return Ok(());
        }
        let map = resolved;

        // Rewrite every pointer field of every object.
        let mut regions: Vec<(u64, u64)> = self.spans.iter().map(|s| (s.start, s.end)).collect();
        regions.extend(self.perm);
        if self.new_space.is_some() {
            regions.push(self.past_used());
            regions.push((self.eden_start, self.eden_top));
        }
        for (start, end) in regions {
            let mut cursor = start;
            while let Some((obj, next, class_index)) = self.step(cursor, end) {
                cursor = next;
                if matches!(
                    class_index,
                    CLASS_FREE_CHUNK | CLASS_SEGMENT_BRIDGE | CLASS_FORWARDER
                ) {
                    continue;
                }
                self.forward_fields(obj, &map)?;
            }
        }
        // Turn each `from` into a forwarder.
        for (&from, &to) in &map {
            let fh = self.header(from)?;
            if copy_hash && fh.hash() != 0 {
                let th = self.header(to)?;
                let hash = u64::from(fh.hash()) & HASH_MASK;
                self.set_header(
                    to,
                    ObjHeader(th.0 & !(HASH_MASK << HASH_SHIFT) | hash << HASH_SHIFT),
                )?;
            }
            let keep = fh.0 & !(CLASS_INDEX_MASK | FORMAT_MASK << FORMAT_SHIFT);
            let forwarder =
                keep | u64::from(CLASS_FORWARDER) | u64::from(FMT_FORWARDED) << FORMAT_SHIFT;
            self.set_header(from, ObjHeader(forwarder))?;
            self.store_raw(from, 0, to.bits())?;
            self.barrier(from, to);
        }
        if let Some(&to) = map.get(&self.special_objects) {
            self.special_objects = to;
            self.heap
                .set_special_objects(NewAddr::from_heap_word(to.bits()));
        }
        for r in roots.iter_mut() {
            if let Some(&to) = map.get(r) {
                *r = to;
            }
        }
        Ok(())
    }

    /// Rewrites the pointer fields of `obj` found in `map`.
    fn forward_fields(&mut self, obj: Oop, map: &HashMap<Oop, Oop>) -> Result<(), MemoryError> {
        let h = self.header(obj)?;
        let n = self.num_slots(obj)?;
        let fmt = h.format();
        let count = if fmt <= FMT_LAST_POINTER {
            n
        } else if h.is_compiled_method() && n > 0 {
            // Slot 0 is the method header (a SmallInteger); the literals follow.
            match self.small_int(self.fetch(obj, 0)?) {
                Some(hdr) => ((hdr & METHOD_NUM_LITERALS_MASK).cast_unsigned() + 1).min(n),
                None => 0,
            }
        } else {
            0
        };
        for i in 0..count {
            let v = self.fetch(obj, i)?;
            if let Some(&to) = map.get(&v) {
                self.store_raw(obj, i, to.bits())?;
                self.barrier(obj, to);
            }
        }
        Ok(())
    }

    /// The write barrier without the store: remembers old `obj` once when
    /// `value` is young.
    fn barrier(&mut self, obj: Oop, value: Oop) {
        if self.is_young(value) && !self.is_young(obj) {
            if let Ok(h) = self.header(obj) {
                if !h.is_remembered()
                    && self
                        .set_header(obj, ObjHeader(h.0 | 1 << REMEMBERED_SHIFT))
                        .is_ok()
                {
                    self.remembered.push(obj);
                }
            }
        }
    }

    /// Where `oop` points after a become: the end of its forwarder chain
    /// (itself when it is not a forwarder, or not an object).
    pub fn forwarded(&self, oop: Oop) -> Oop {
        let mut o = oop;
        // A chain is at most as long as the forwarders one become made; bound it anyway.
        for _ in 0..64 {
            match self.header(o) {
                Ok(h) if h.class_index() == CLASS_FORWARDER => match self.fetch(o, 0) {
                    Ok(next) => o = next,
                    Err(_) => return o,
                },
                _ => return o,
            }
        }
        o
    }
}
