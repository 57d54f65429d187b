//! The special objects array (§4.3): the objects and classes the VM needs by
//! index, named in both numberings, Pharo's and Squeak/Cuis's.
//!
//! Most indices mean the same in both; [`index`] lists them, with the few
//! that differ in [`index::pharo`] and [`index::squeak`]. Accessors answer
//! `None` when the image's array is too short for an index or holds nil
//! there: the array's length is the image's business (§4.3), and the VMs do
//! not check it at load.

use spur_format::raw::{CLASS_BLOCK_CLOSURE, FMT_INDEXABLE};
use spur_format::NewAddr;

use crate::class_table::ClassTable;
use crate::error::RuntimeError;
use crate::memory::{Oop, ReadView};

/// Indices of the special objects array (§4.3), in both numberings; one
/// definition, in the format crate.
pub use spur_format::raw::special as index;

/// Slots the runtime itself needs: up to the external objects array and the
/// large negative integers.
const MIN_SLOTS: u64 = index::CLASS_LARGE_NEGATIVE_INTEGER as u64 + 1;

/// The special objects array, read once.
#[derive(Debug, Clone)]
pub struct SpecialObjects {
    addr: NewAddr,
    slots: Vec<Oop>,
}

macro_rules! accessors {
    ($ty:ident { $( $(#[$doc:meta])* $name:ident = $idx:path ),* $(,)? }) => {
        impl $ty<'_> {
            $(
                $(#[$doc])*
                #[doc = concat!(
                    "The object in special-objects slot `", stringify!($idx),
                    "` (§4.3), or `None` when that slot is nil or past the array's end."
                )]
                pub fn $name(&self) -> Option<Oop> { self.0.get($idx) }
            )*
        }
    };
}

impl SpecialObjects {
    /// Reads the array at `addr` and checks what every VM relies on: it is
    /// an array (format 2) of at least 43 slots whose first three slots are
    /// nil, false and true, 16 bytes apart from `nil` on (§4.1).
    pub fn read(view: &ReadView<'_>, addr: NewAddr, nil: NewAddr) -> Result<Self, RuntimeError> {
        let bad = |why: String| RuntimeError::SpecialObjects {
            addr: addr.get(),
            why,
        };
        let array = Oop::from_addr(addr);
        let h = view
            .header(array)
            .ok_or_else(|| bad("is not an object of the heap".into()))?;
        let n = view.num_slots(array).unwrap_or(0);
        if h.format() != FMT_INDEXABLE || n < MIN_SLOTS {
            return Err(bad(format!(
                "has format {} and {n} slots; it must be an array (format 2) of at least {MIN_SLOTS}",
                h.format()
            )));
        }
        let slots: Vec<Oop> = (0..n)
            .map(|i| view.slot(array, i).unwrap_or_default())
            .collect();
        for (i, name) in ["nil", "false", "true"].iter().enumerate() {
            let want = Oop::from_addr(nil.plus(16 * i as u64));
            if slots[i] != want {
                return Err(bad(format!(
                    "holds {:#x} in slot {i}; {name} is at {want:#x}",
                    slots[i]
                )));
            }
        }
        Ok(SpecialObjects { addr, slots })
    }

    /// Where the array is.
    pub fn addr(&self) -> NewAddr {
        self.addr
    }
    /// Slots in the array.
    pub fn len(&self) -> usize {
        self.slots.len()
    }
    /// Never empty once read; for symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
    /// Slot `i` as stored (nil included), or `None` past the end.
    pub fn at(&self, i: usize) -> Option<Oop> {
        self.slots.get(i).copied()
    }
    /// Slot `i` unless it is nil or past the end.
    pub fn get(&self, i: usize) -> Option<Oop> {
        self.at(i).filter(|&v| v != self.slots[index::NIL_OBJECT])
    }

    /// nil: the first object of old space (§4.1).
    pub fn nil(&self) -> NewAddr {
        NewAddr::from_heap_word(self.slots[index::NIL_OBJECT].bits())
    }
    /// nil, as an oop.
    pub fn nil_oop(&self) -> Oop {
        self.slots[index::NIL_OBJECT]
    }
    /// false, at nil + 16.
    pub fn false_object(&self) -> NewAddr {
        NewAddr::from_heap_word(self.slots[index::FALSE_OBJECT].bits())
    }
    /// true, at nil + 32.
    pub fn true_object(&self) -> NewAddr {
        NewAddr::from_heap_word(self.slots[index::TRUE_OBJECT].bits())
    }

    /// The accessors of the indices only Pharo's VM names.
    pub fn pharo(&self) -> PharoSpecials<'_> {
        PharoSpecials(self)
    }
    /// The accessors of the indices only Squeak, Cuis and OpenSmalltalk name.
    pub fn squeak(&self) -> SqueakSpecials<'_> {
        SqueakSpecials(self)
    }
    /// The accessors of the indices both numberings share.
    pub fn common(&self) -> CommonSpecials<'_> {
        CommonSpecials(self)
    }

    /// The compact-class checks the VMs make at load (§4.3 end): special
    /// objects 7, 42, 13, 9 and 10 must be the classes at indices 51, 32,
    /// 33, 34 and 36, and any mismatch is fatal. OpenSmalltalk also checks
    /// BlockClosure (special object 36 against index 37); PVM does not, so
    /// that one is reported, not enforced.
    pub fn check_compact_classes(
        &self,
        view: &ReadView<'_>,
        classes: &ClassTable,
    ) -> Result<CompactClasses, RuntimeError> {
        for (slot, index, name) in index::COMPACT_CLASS_CHECKS {
            let found = self.at(slot).map_or(0, Oop::bits);
            let expected = classes.class_at(view, index).map_or(0, Oop::bits);
            if found != expected {
                return Err(RuntimeError::CompactClass {
                    slot,
                    name,
                    found,
                    index,
                    expected,
                });
            }
        }
        let block = self.at(index::squeak::CLASS_BLOCK_CLOSURE);
        let at37 = classes.class_at(view, CLASS_BLOCK_CLOSURE);
        Ok(CompactClasses {
            block_closure_matches: block.is_some() && block == at37,
        })
    }
}

/// What the compact-class checks found beyond the fatal ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactClasses {
    /// Special object 36 is the class at index 37 (OpenSmalltalk's extra check).
    pub block_closure_matches: bool,
}

/// The indices both numberings share (§4.3).
#[derive(Debug, Clone, Copy)]
pub struct CommonSpecials<'a>(&'a SpecialObjects);
/// The indices of Pharo's numbering (`SMM class>>initializeSpecialObjectIndices`).
#[derive(Debug, Clone, Copy)]
pub struct PharoSpecials<'a>(&'a SpecialObjects);
/// The indices of the Squeak/Cuis numbering (OpenSmalltalk, SqueakJS).
#[derive(Debug, Clone, Copy)]
pub struct SqueakSpecials<'a>(&'a SpecialObjects);

accessors!(CommonSpecials {
    /// The association whose value is the ProcessorScheduler.
    scheduler_association = index::SCHEDULER_ASSOCIATION,
    class_bitmap = index::CLASS_BITMAP,
    class_small_integer = index::CLASS_SMALL_INTEGER,
    /// ByteString (Pharo) or String (Squeak).
    class_byte_string = index::CLASS_BYTE_STRING,
    class_array = index::CLASS_ARRAY,
    smalltalk_dictionary = index::SMALLTALK_DICTIONARY,
    class_float = index::CLASS_FLOAT,
    class_method_context = index::CLASS_METHOD_CONTEXT,
    class_point = index::CLASS_POINT,
    class_large_positive_integer = index::CLASS_LARGE_POSITIVE_INTEGER,
    class_message = index::CLASS_MESSAGE,
    class_compiled_method = index::CLASS_COMPILED_METHOD,
    the_low_space_semaphore = index::THE_LOW_SPACE_SEMAPHORE,
    class_semaphore = index::CLASS_SEMAPHORE,
    class_character = index::CLASS_CHARACTER,
    selector_does_not_understand = index::SELECTOR_DOES_NOT_UNDERSTAND,
    selector_cannot_return = index::SELECTOR_CANNOT_RETURN,
    process_signaling_low_space = index::PROCESS_SIGNALING_LOW_SPACE,
    special_selectors = index::SPECIAL_SELECTORS,
    selector_must_be_boolean = index::SELECTOR_MUST_BE_BOOLEAN,
    class_byte_array = index::CLASS_BYTE_ARRAY,
    class_process = index::CLASS_PROCESS,
    compact_classes = index::COMPACT_CLASSES,
    the_timer_semaphore = index::THE_TIMER_SEMAPHORE,
    the_interrupt_semaphore = index::THE_INTERRUPT_SEMAPHORE,
    selector_cannot_interpret = index::SELECTOR_CANNOT_INTERPRET,
    /// The external semaphore table, Smalltalk side.
    external_objects_array = index::EXTERNAL_OBJECTS_ARRAY,
    the_finalization_semaphore = index::THE_FINALIZATION_SEMAPHORE,
    class_large_negative_integer = index::CLASS_LARGE_NEGATIVE_INTEGER,
    class_external_address = index::CLASS_EXTERNAL_ADDRESS,
    selector_about_to_return = index::SELECTOR_ABOUT_TO_RETURN,
    selector_run_with_in = index::SELECTOR_RUN_WITH_IN,
    selector_attempt_to_assign = index::SELECTOR_ATTEMPT_TO_ASSIGN,
    prim_err_table = index::PRIM_ERR_TABLE,
    class_weak_finalizer = index::CLASS_WEAK_FINALIZER,
    foreign_callback_process = index::FOREIGN_CALLBACK_PROCESS,
    selector_unknown_bytecode = index::SELECTOR_UNKNOWN_BYTECODE,
    selector_counter_tripped = index::SELECTOR_COUNTER_TRIPPED,
    selector_sista_trap = index::SELECTOR_SISTA_TRAP,
});

accessors!(PharoSpecials {
    suspended_process_in_callout = index::pharo::SUSPENDED_PROCESS_IN_CALLOUT,
    class_float32_register = index::pharo::CLASS_FLOAT32_REGISTER,
    class_float64_register = index::pharo::CLASS_FLOAT64_REGISTER,
    class_mutex = index::pharo::CLASS_MUTEX,
    process_in_external_code_tag = index::pharo::PROCESS_IN_EXTERNAL_CODE_TAG,
});

accessors!(SqueakSpecials {
    class_block_context = index::squeak::CLASS_BLOCK_CONTEXT,
    the_display = index::squeak::THE_DISPLAY,
    character_table = index::squeak::CHARACTER_TABLE,
    float_proto = index::squeak::FLOAT_PROTO,
    method_context_proto = index::squeak::METHOD_CONTEXT_PROTO,
    class_block_closure = index::squeak::CLASS_BLOCK_CLOSURE,
    class_full_block_closure = index::squeak::CLASS_FULL_BLOCK_CLOSURE,
    class_pseudo_context = index::squeak::CLASS_PSEUDO_CONTEXT,
    class_translated_method = index::squeak::CLASS_TRANSLATED_METHOD,
    class_external_structure = index::squeak::CLASS_EXTERNAL_STRUCTURE,
    class_external_data = index::squeak::CLASS_EXTERNAL_DATA,
    class_external_function = index::squeak::CLASS_EXTERNAL_FUNCTION,
    class_external_library = index::squeak::CLASS_EXTERNAL_LIBRARY,
    class_alien = index::squeak::CLASS_ALIEN,
    invoke_callback_selector = index::squeak::INVOKE_CALLBACK_SELECTOR,
    class_unsafe_alien = index::squeak::CLASS_UNSAFE_ALIEN,
});

#[cfg(test)]
mod tests {
    use super::*;
    use spur_format::WordSize;
    use spur_loader::LoadOptions;
    use spur_synth::SynthSpec;

    #[test]
    fn named_accessors_read_the_builders_array() {
        let (bytes, r) =
            spur_synth::image_bytes(&SynthSpec::new(WordSize::W64, 128 << 10)).unwrap();
        let heap = spur_loader::load(
            bytes.as_slice(),
            &LoadOptions {
                placement: spur_loader::PlacementRequest::Relocate,
                ..Default::default()
            },
        )
        .unwrap();
        let mem = crate::memory::ObjectMemory::new(heap);
        let heap = mem.heap();
        let v = mem.view();
        let so = SpecialObjects::read(&v, heap.special_objects(), heap.nil()).unwrap();
        assert_eq!(so.len(), 60);
        assert_eq!(so.nil(), heap.nil());
        assert_eq!(so.true_object(), heap.nil().plus(32));
        let c = so.common();
        let dnu = c.selector_does_not_understand().unwrap();
        assert_eq!(v.string(dnu).as_deref(), Some("doesNotUnderstand:"));
        assert!(c.external_objects_array().is_some());
        assert!(c.scheduler_association().is_some());
        // The builder fills the Squeak numbering: 36 and 37 hold the closure classes.
        assert!(so.squeak().class_block_closure().is_some());
        assert!(so.squeak().class_full_block_closure().is_some());
        assert_eq!(so.squeak().the_display(), None);
        assert_eq!(so.pharo().class_mutex(), None);
        assert_eq!(so.get(60), None);
        assert_ne!(r.special_objects_oop, 0);
    }

    #[test]
    fn an_array_that_does_not_start_with_nil_false_true_is_refused() {
        let (bytes, _) =
            spur_synth::image_bytes(&SynthSpec::new(WordSize::W32, 128 << 10)).unwrap();
        let heap = spur_loader::load(
            bytes.as_slice(),
            &LoadOptions {
                placement: spur_loader::PlacementRequest::Relocate,
                ..Default::default()
            },
        )
        .unwrap();
        let mut mem = crate::memory::ObjectMemory::new(heap);
        let so = mem.special_objects();
        mem.store(so, 1, mem.true_object()).unwrap();
        let heap = mem.heap();
        let v = mem.view();
        let so = heap.special_objects();
        let e = SpecialObjects::read(&v, so, heap.nil()).unwrap_err();
        assert!(e.to_string().contains("slot 1"), "{e}");
        // The nil object itself is not an array.
        let e = SpecialObjects::read(&v, heap.nil(), heap.nil()).unwrap_err();
        assert!(e.to_string().contains("format 0"), "{e}");
    }
}
