//! The class table (§4.2) and class names.
//!
//! The table's pages hang off the hidden-roots object, the 5th object of
//! old space. Every object names its class by index; a class's identity
//! hash is its index. Class names are not at a fixed slot: Squeak and Pharo
//! 8 keep the name in slot 6, Pharo Candle kernels in slot 3. Like
//! OpenSmalltalk (`initializeExtraClassInstVarIndices`, §4.3 end), the slot
//! is found from class Array: the slot of Array holding a byte string that
//! reads `Array` (or ends in it, for kernels whose classes carry a prefix,
//! such as the `PC` of the Pharo VM's test kernel), confirmed on
//! SmallInteger. A metaclass has no name; its `thisClass` slot, found as the
//! slot of Array's metaclass that holds Array, leads to the class it
//! describes, and it is named `Foo class`.

use spur_format::raw::{
    CLASS_ARRAY, CLASS_ARRAY_PUN, CLASS_TABLE_MAJOR_SHIFT, CLASS_TABLE_PAGE_SLOTS,
    CLASS_TABLE_ROOT_SLOTS, FIRST_VALID_CLASS_INDEX, FMT_INDEXABLE, HIDDEN_ROOTS_SLOTS,
};

use spur_loader::conv::u64_of;

use crate::error::RuntimeError;
use crate::memory::{Oop, ReadView};
use crate::special_objects::SpecialObjects;

/// Where class objects keep their name and metaclasses their class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassLayout {
    /// Slot of a class holding its name (a Symbol).
    pub name_slot: u64,
    /// Slot of a metaclass holding the class it describes.
    pub this_class_slot: u64,
    /// The class Metaclass: the class of every metaclass.
    pub metaclass: Oop,
}

/// The class table of a loaded heap.
#[derive(Debug, Clone)]
pub struct ClassTable {
    hidden_roots: Oop,
    pages: Vec<Oop>,
    /// Every non-nil entry, in index order.
    entries: Vec<(u32, Oop)>,
    classes: u64,
    nil: Oop,
    layout: ClassLayout,
}

impl ClassTable {
    /// Reads the hidden roots and the class-table pages, counts the
    /// classes, and locates the name and `thisClass` slots.
    pub fn read(view: &ReadView<'_>, specials: &SpecialObjects) -> Result<Self, RuntimeError> {
        let mem = view.memory();
        let nil = mem.nil();
        let bad = |addr: Oop, why: String| RuntimeError::ClassTable {
            addr: addr.bits(),
            why,
        };
        // The free lists are the 4th object (nil + 48), the hidden roots the 5th.
        let free_lists = mem.free_lists();
        view.num_slots(free_lists)
            .ok_or_else(|| bad(free_lists, "no free-lists object at nil + 48".into()))?;
        let hidden = mem
            .hidden_roots()
            .ok_or_else(|| bad(free_lists, "no 5th object (hidden roots) after it".into()))?;
        let h = view
            .header(hidden)
            .ok_or_else(|| bad(hidden, "no 5th object (hidden roots)".into()))?;
        let hn = view.num_slots(hidden).unwrap_or(0);
        if h.class_index() != CLASS_ARRAY_PUN
            || h.format() != FMT_INDEXABLE
            || hn != HIDDEN_ROOTS_SLOTS
        {
            return Err(bad(
                hidden,
                format!(
                    "the 5th object must be the hidden roots (class {CLASS_ARRAY_PUN}, format 2, {HIDDEN_ROOTS_SLOTS} slots), found class {}, format {}, {hn} slots",
                    h.class_index(),
                    h.format()
                ),
            ));
        }
        let mut pages = Vec::new();
        for p in 0..CLASS_TABLE_ROOT_SLOTS {
            let page = view.slot(hidden, p).unwrap_or(nil);
            if page == nil {
                break;
            }
            let ok = view
                .header(page)
                .is_some_and(|h| h.class_index() == CLASS_ARRAY_PUN)
                && view.num_slots(page) == Some(CLASS_TABLE_PAGE_SLOTS);
            if !ok {
                return Err(bad(
                    page,
                    format!("root slot {p} does not hold a 1024-slot class-table page"),
                ));
            }
            pages.push(page);
        }
        if pages.is_empty() {
            return Err(bad(hidden, "the class table has no pages".into()));
        }
        let mut entries = Vec::new();
        let mut classes = 0;
        for (p, &page) in pages.iter().enumerate() {
            for (j, c) in view.slots(page).enumerate() {
                if c == nil {
                    continue;
                }
                // At most 4096 pages of 1024 entries: 22 bits, the width of a class index.
                let Ok(i) = u32::try_from(u64_of(p) * CLASS_TABLE_PAGE_SLOTS + u64_of(j)) else {
                    continue;
                };
                // Counted as the verifier counts: immediate classes and real indices.
                if i >= FIRST_VALID_CLASS_INDEX || matches!(i, 1..=4) {
                    classes += 1;
                }
                entries.push((i, c));
            }
        }
        let mut table = ClassTable {
            hidden_roots: hidden,
            pages,
            entries,
            classes,
            nil,
            layout: ClassLayout {
                name_slot: 0,
                this_class_slot: 0,
                metaclass: nil,
            },
        };
        table.layout = table.find_layout(view, specials)?;
        Ok(table)
    }

    /// Finds the name slot from Array and SmallInteger, and `thisClass` from Array's metaclass.
    fn find_layout(
        &self,
        view: &ReadView<'_>,
        specials: &SpecialObjects,
    ) -> Result<ClassLayout, RuntimeError> {
        let layout_err = |what, why: String| RuntimeError::ClassLayout { what, why };
        // Array by its compact index (51), which the VMs check against
        // special object 7 right after.
        let array = self
            .class_at(view, CLASS_ARRAY)
            .or(specials.common().class_array())
            .ok_or_else(|| {
                layout_err(
                    "class name",
                    "no Array at class index 51 nor in special object 7".into(),
                )
            })?;
        let small_int = specials.common().class_small_integer();
        let n = view.num_slots(array).unwrap_or(0);
        let text = |i: u64| view.slot(array, i).and_then(|s| view.string(s));
        let exact = (0..n).find(|&i| text(i).as_deref() == Some("Array"));
        let suffix = || (0..n).find(|&i| text(i).is_some_and(|t| t.ends_with("Array")));
        let name_slot = exact.or_else(suffix).ok_or_else(|| {
            layout_err(
                "class name",
                format!("no slot of Array ({array:#x}, {n} slots) holds a string naming it"),
            )
        })?;
        if let Some(si) = small_int {
            let t = view.slot(si, name_slot).and_then(|s| view.string(s));
            if !t.as_deref().is_some_and(|t| t.ends_with("SmallInteger")) {
                return Err(layout_err(
                    "class name",
                    format!(
                        "slot {name_slot} names Array but holds {t:?} in SmallInteger ({si:#x})"
                    ),
                ));
            }
        }
        let meta = self
            .class_of(view, array)
            .ok_or_else(|| layout_err("thisClass", format!("Array ({array:#x}) has no class")))?;
        let mn = view.num_slots(meta).unwrap_or(0);
        let this_class_slot = (0..mn)
            .rev()
            .find(|&i| view.slot(meta, i) == Some(array))
            .ok_or_else(|| {
                layout_err(
                    "thisClass",
                    format!("no slot of Array's metaclass ({meta:#x}) holds Array"),
                )
            })?;
        let metaclass = self.class_of(view, meta).ok_or_else(|| {
            layout_err(
                "thisClass",
                format!("Array's metaclass ({meta:#x}) has no class"),
            )
        })?;
        Ok(ClassLayout {
            name_slot,
            this_class_slot,
            metaclass,
        })
    }

    /// The hidden-roots object (the 5th object of old space).
    pub fn hidden_roots(&self) -> Oop {
        self.hidden_roots
    }
    /// Used pages (each of 1024 entries).
    pub fn pages(&self) -> usize {
        self.pages.len()
    }
    /// Non-nil entries at valid indices (those of the immediate classes included),
    /// counted as the verifier counts them.
    pub fn classes(&self) -> u64 {
        self.classes
    }
    /// Where names and `thisClass` live.
    pub fn layout(&self) -> ClassLayout {
        self.layout
    }

    /// The class at `index`, or `None` when the entry is nil or past the used pages.
    #[inline]
    pub fn class_at(&self, view: &ReadView<'_>, index: u32) -> Option<Oop> {
        let page = *self
            .pages
            .get((index >> CLASS_TABLE_MAJOR_SHIFT) as usize)?;
        let c = view.slot(page, u64::from(index) & (CLASS_TABLE_PAGE_SLOTS - 1))?;
        (c != self.nil).then_some(c)
    }

    /// The class index of `oop`: its header's, or the one its tag names (§3.3).
    pub fn class_index_of(&self, view: &ReadView<'_>, oop: Oop) -> Option<u32> {
        view.memory().class_index_of(oop).ok()
    }

    /// The class of any oop, immediates included.
    pub fn class_of(&self, view: &ReadView<'_>, oop: Oop) -> Option<Oop> {
        self.class_at(view, self.class_index_of(view, oop)?)
    }

    /// Is `oop` a class of this table: `classAt(hash(oop)) == oop`?
    pub fn is_class(&self, view: &ReadView<'_>, oop: Oop) -> bool {
        view.header(oop)
            .is_some_and(|h| h.hash() != 0 && self.class_at(view, h.hash()) == Some(oop))
    }

    /// Is `class` a metaclass (an instance of Metaclass)?
    pub fn is_metaclass(&self, view: &ReadView<'_>, class: Oop) -> bool {
        self.class_of(view, class) == Some(self.layout.metaclass)
    }

    /// The Symbol naming `class`; for a metaclass, the one naming its class.
    pub fn name_oop(&self, view: &ReadView<'_>, class: Oop) -> Option<Oop> {
        let c = if self.is_metaclass(view, class) {
            view.slot(class, self.layout.this_class_slot)?
        } else {
            class
        };
        let name = view.slot(c, self.layout.name_slot)?;
        view.is_bytes(name).then_some(name)
    }

    /// The name of `class` (`Foo`, or `Foo class` for its metaclass), if
    /// `class` is a class of this table.
    pub fn class_name(&self, view: &ReadView<'_>, class: Oop) -> Option<String> {
        if !self.is_class(view, class) {
            return None;
        }
        let name = view.string(self.name_oop(view, class)?)?;
        Some(if self.is_metaclass(view, class) {
            format!("{name} class")
        } else {
            name
        })
    }

    /// The name of the class of `oop`.
    pub fn class_name_of(&self, view: &ReadView<'_>, oop: Oop) -> Option<String> {
        self.class_name(view, self.class_of(view, oop)?)
    }

    /// Every non-nil entry `(index, class)` as read at wiring, pun indices
    /// included, in index order.
    pub fn entries(&self) -> &[(u32, Oop)] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spur_format::WordSize;
    use spur_loader::{LoadOptions, PlacementRequest};
    use spur_synth::classes as synth;
    use spur_synth::SynthSpec;

    fn table(word: WordSize) -> (spur_loader::LoadedHeap, u64) {
        let (bytes, r) = spur_synth::image_bytes(&SynthSpec::new(word, 128 << 10)).unwrap();
        let heap = spur_loader::load(
            bytes.as_slice(),
            &LoadOptions {
                placement: PlacementRequest::Relocate,
                ..Default::default()
            },
        )
        .unwrap();
        (heap, r.classes)
    }

    #[test]
    fn the_builders_classes_have_their_names_in_slot_6() {
        for word in [WordSize::W32, WordSize::W64] {
            let (heap, classes) = table(word);
            let mem = crate::memory::ObjectMemory::new(heap);
            let heap = mem.heap();
            let v = mem.view();
            let so = SpecialObjects::read(&v, heap.special_objects(), heap.nil()).unwrap();
            let ct = ClassTable::read(&v, &so).unwrap();
            assert_eq!(ct.pages(), 2);
            assert_eq!(ct.classes(), classes);
            assert_eq!(ct.layout().name_slot, synth::NAME_INDEX as u64);
            assert_eq!(ct.layout().this_class_slot, synth::THIS_CLASS_INDEX as u64);
            for c in synth::classes_for(word) {
                let class = ct.class_at(&v, c.index).unwrap();
                assert_eq!(ct.class_name(&v, class).as_deref(), Some(c.name));
                let meta = ct.class_at(&v, synth::metaclass_index(word, c)).unwrap();
                assert_eq!(ct.class_name(&v, meta), Some(format!("{} class", c.name)));
                assert!(ct.is_metaclass(&v, meta) && !ct.is_metaclass(&v, class));
            }
            let nil = mem.nil();
            assert_eq!(
                ct.class_name_of(&v, nil).as_deref(),
                Some("UndefinedObject")
            );
            assert_eq!(
                ct.class_name_of(&v, mem.from_small_int(-3).unwrap())
                    .as_deref(),
                Some("SmallInteger")
            );
            assert_eq!(
                ct.class_name_of(&v, mem.from_character(0x41).unwrap())
                    .as_deref(),
                Some("Character")
            );
            // Metaclass is its own metaclass's class.
            let m = ct.layout().metaclass;
            assert_eq!(ct.class_name(&v, m).as_deref(), Some("Metaclass"));
            assert_eq!(ct.class_name_of(&v, m).as_deref(), Some("Metaclass class"));
            // Not a class: nil, an immediate, the special objects array.
            assert_eq!(ct.class_name(&v, nil), None);
            assert_eq!(ct.class_name(&v, mem.special_objects()), None);
            assert_eq!(ct.class_at(&v, 5000), None);
            assert_eq!(ct.entries().len() as u64, classes);
        }
    }
}
