//! Walks over every object: old space (segment by segment), perm space,
//! then new space (past space, eden), each in address order (§3.6).

use spur_format::raw::LAST_CLASS_INDEX_PUN;

use super::{le_u64, ObjectMemory, Oop};

/// The objects of every space, in address order within each: old space
/// first, then perm space, then new space. Hidden objects (class index at
/// most 31: free chunks, bridges, forwarders, the memory's own tables) are
/// skipped unless asked for. A malformed object ends its space's walk.
#[derive(Debug, Clone)]
pub struct Objects<'m> {
    mem: &'m ObjectMemory,
    regions: Vec<(u64, u64)>,
    region: usize,
    cursor: u64,
    hidden: bool,
}

impl<'m> Objects<'m> {
    pub(super) fn new(mem: &'m ObjectMemory, hidden: bool) -> Self {
        let mut regions: Vec<(u64, u64)> = mem.spans.iter().map(|s| (s.start, s.end)).collect();
        regions.extend(mem.perm);
        if mem.new_space.is_some() {
            regions.push(mem.past_used());
            regions.push((mem.eden_start, mem.eden_top));
        }
        let cursor = regions.first().map_or(0, |r| r.0);
        Objects {
            mem,
            regions,
            region: 0,
            cursor,
            hidden,
        }
    }
}

impl Iterator for Objects<'_> {
    type Item = Oop;

    fn next(&mut self) -> Option<Oop> {
        loop {
            let &(_, end) = self.regions.get(self.region)?;
            match self.mem.step(self.cursor, end) {
                Some((obj, next, class_index)) => {
                    self.cursor = next;
                    if self.hidden || class_index > LAST_CLASS_INDEX_PUN {
                        return Some(obj);
                    }
                }
                None => {
                    self.region += 1;
                    self.cursor = self.regions.get(self.region).map_or(0, |r| r.0);
                }
            }
        }
    }
}

impl ObjectMemory {
    /// The object starting at `cursor` (past an overflow word), the address
    /// after it and its class index; `None` at `end` or at a malformed object.
    pub(super) fn step(&self, cursor: u64, end: u64) -> Option<(Oop, u64, u32)> {
        if cursor >= end {
            return None;
        }
        let (b, off) = self.locate(cursor)?;
        let w = le_u64(b, off)?;
        let obj = if w >> 56 == 0xFF { cursor + 8 } else { cursor };
        if obj + 8 > end {
            return None;
        }
        let o = Oop::from_bits(obj);
        let h = self.header(o).ok()?;
        let n = self.num_slots(o).ok()?;
        let next = obj.checked_add(self.word.body_bytes(n)?)?;
        (next <= end).then_some((o, next, h.class_index()))
    }

    /// Past space's objects: the survivors of the last scavenge.
    pub(super) fn past_used(&self) -> (u64, u64) {
        (self.past.0, self.past_top)
    }

    /// Every object of every space, hidden objects skipped: old space
    /// first, then perm space, then new space, in address order.
    pub fn objects(&self) -> Objects<'_> {
        Objects::new(self, false)
    }

    /// Every object, hidden ones (class-table pages, free chunks, forwarders) included.
    pub fn all_objects(&self) -> Objects<'_> {
        Objects::new(self, true)
    }

    /// The instances of the class at `class_index`, in the order of [`objects`](Self::objects).
    pub fn instances_of(&self, class_index: u32) -> impl Iterator<Item = Oop> + '_ {
        self.objects()
            .filter(move |&o| self.header(o).is_ok_and(|h| h.class_index() == class_index))
    }
}
