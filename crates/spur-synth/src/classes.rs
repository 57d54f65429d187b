//! The classes a synthetic image defines, and the class-table index each one
//! gets.
//!
//! The indices the VMs rely on are the compact ones of §3.5 (32..38, 51, 52,
//! the immediate classes 1, 2, 4) plus ByteArray at 50 as PVM names it. Every
//! other class sits at a free index from 53 on page 0 of the class table; one
//! class ([`SYNTH_RECORD`]) sits on page 1 so that objects with a class index
//! above 1023 exist. Metaclasses get indices from [`FIRST_METACLASS_INDEX`]
//! in the order of [`CLASSES`] (the page-1 class's metaclass at 1025).

use spur_format::raw;
use spur_format::WordSize;

/// SmallInteger (immediate; tag 1, and tag 3 on 32-bit, which the VM folds to 1).
pub const SMALL_INTEGER: u32 = 1;
/// Character (immediate, tag 2).
pub const CHARACTER: u32 = 2;
/// SmallFloat64 (immediate, tag 4; 64-bit images only).
pub const SMALL_FLOAT64: u32 = 4;
/// LargeNegativeInteger (compact index checked at load).
pub const LARGE_NEGATIVE_INTEGER: u32 = raw::CLASS_LARGE_NEGATIVE_INTEGER;
/// LargePositiveInteger (compact index checked at load).
pub const LARGE_POSITIVE_INTEGER: u32 = raw::CLASS_LARGE_POSITIVE_INTEGER;
/// BoxedFloat64, `splObj(9)` (compact index checked at load).
pub const BOXED_FLOAT64: u32 = raw::CLASS_FLOAT;
/// Message.
pub const MESSAGE: u32 = raw::CLASS_MESSAGE;
/// Context (MethodContext), `splObj(10)`.
pub const CONTEXT: u32 = raw::CLASS_METHOD_CONTEXT;
/// BlockClosure, `splObj(36)`.
pub const BLOCK_CLOSURE: u32 = raw::CLASS_BLOCK_CLOSURE;
/// FullBlockClosure, `splObj(37)`.
pub const FULL_BLOCK_CLOSURE: u32 = raw::CLASS_FULL_BLOCK_CLOSURE;
/// ByteArray (PVM's index; the VMs read it from `splObj(26)`).
pub const BYTE_ARRAY: u32 = 50;
/// Array, `splObj(7)`.
pub const ARRAY: u32 = raw::CLASS_ARRAY;
/// ByteString, `splObj(6)`.
pub const BYTE_STRING: u32 = raw::CLASS_BYTE_STRING;
/// UndefinedObject, the class of nil.
pub const UNDEFINED_OBJECT: u32 = 53;
/// True.
pub const TRUE: u32 = 54;
/// False.
pub const FALSE: u32 = 55;
/// Object, the root of the hierarchy.
pub const OBJECT: u32 = 56;
/// Class.
pub const CLASS: u32 = 57;
/// Metaclass: the class of every metaclass, its own metaclass included.
pub const METACLASS: u32 = 58;
/// ByteSymbol.
pub const BYTE_SYMBOL: u32 = 59;
/// CompiledMethod.
pub const COMPILED_METHOD: u32 = 60;
/// Association.
pub const ASSOCIATION: u32 = 61;
/// ProcessorScheduler.
pub const PROCESSOR_SCHEDULER: u32 = 62;
/// Process.
pub const PROCESS: u32 = 63;
/// LinkedList.
pub const LINKED_LIST: u32 = 64;
/// Semaphore.
pub const SEMAPHORE: u32 = 65;
/// Point.
pub const POINT: u32 = 66;
/// Bitmap.
pub const BITMAP: u32 = 67;
/// WordArray.
pub const WORD_ARRAY: u32 = 68;
/// MethodDictionary.
pub const METHOD_DICTIONARY: u32 = 69;
/// SystemDictionary: the class of the Smalltalk stand-in, `splObj(8)`.
pub const SYSTEM_DICTIONARY: u32 = 70;
/// Float, the abstract superclass of BoxedFloat64 and SmallFloat64.
pub const FLOAT: u32 = 71;
/// Boolean.
pub const BOOLEAN: u32 = 72;
/// Integer.
pub const INTEGER: u32 = 73;
/// A fixed-pointer class on class-table page 1 (3 instance variables).
pub const SYNTH_RECORD: u32 = 1024;
/// The metaclass of [`SYNTH_RECORD`], also on page 1.
pub const SYNTH_RECORD_METACLASS: u32 = 1025;
/// Metaclasses of the page-0 classes take indices from here, in [`CLASSES`] order.
pub const FIRST_METACLASS_INDEX: u32 = 128;

/// Slots of a class (Squeak layout): superclass, methodDict, format,
/// instanceVariables, organization, subclasses, name, classPool,
/// sharedPools, environment, category.
pub const CLASS_SLOTS: u64 = 11;
/// Slots of a metaclass: superclass, methodDict, format, instanceVariables,
/// organization, thisClass.
pub const METACLASS_SLOTS: u64 = 6;
/// Class slot indices.
pub const SUPERCLASS_INDEX: usize = 0;
/// Class slot holding the MethodDictionary.
pub const METHOD_DICT_INDEX: usize = 1;
/// Class slot holding the format SmallInteger (`instSpec << 16 | instSize`).
pub const FORMAT_INDEX: usize = 2;
/// Class slot holding the Array of instance-variable names (or nil).
pub const INST_VARS_INDEX: usize = 3;
/// Class slot holding the name ByteSymbol.
pub const NAME_INDEX: usize = 6;
/// Class slot holding the environment (the Smalltalk stand-in).
pub const ENVIRONMENT_INDEX: usize = 9;
/// Class slot holding the category ByteSymbol.
pub const CATEGORY_INDEX: usize = 10;
/// Metaclass slot pointing back at its class.
pub const THIS_CLASS_INDEX: usize = 5;

/// Fixed slots of a Context before its stack: sender, pc, stackp, method,
/// closureOrNil, receiver.
pub const CONTEXT_FIXED_SLOTS: u64 = 6;
/// Stack slots of the contexts the builder writes (Squeak's small frame).
pub const CONTEXT_STACK_SLOTS: u64 = 16;

/// One class the image defines.
#[derive(Debug, Clone, Copy)]
pub struct ClassDef {
    /// The class name (also its ByteSymbol).
    pub name: &'static str,
    /// Its class-table index, which is also its identity hash.
    pub index: u32,
    /// Superclass name; `None` for Object.
    pub superclass: Option<&'static str>,
    /// Instance specification (the object format of its instances, §3.2).
    pub inst_spec: u8,
    /// Names of the instance variables it adds (its instances' fixed slots
    /// are those of its superclasses plus these).
    pub inst_vars: &'static [&'static str],
    /// Only present in 64-bit images.
    pub only_64: bool,
}

const fn def(
    name: &'static str,
    index: u32,
    superclass: Option<&'static str>,
    inst_spec: u8,
    inst_vars: &'static [&'static str],
) -> ClassDef {
    ClassDef {
        name,
        index,
        superclass,
        inst_spec,
        inst_vars,
        only_64: false,
    }
}

/// Every class of a synthetic image, superclasses before subclasses.
pub const CLASSES: &[ClassDef] = &[
    def("Object", OBJECT, None, 0, &[]),
    def("UndefinedObject", UNDEFINED_OBJECT, Some("Object"), 0, &[]),
    def("Boolean", BOOLEAN, Some("Object"), 0, &[]),
    def("True", TRUE, Some("Boolean"), 0, &[]),
    def("False", FALSE, Some("Boolean"), 0, &[]),
    def("Integer", INTEGER, Some("Object"), 0, &[]),
    def("SmallInteger", SMALL_INTEGER, Some("Integer"), 7, &[]),
    def(
        "LargePositiveInteger",
        LARGE_POSITIVE_INTEGER,
        Some("Integer"),
        16,
        &[],
    ),
    def(
        "LargeNegativeInteger",
        LARGE_NEGATIVE_INTEGER,
        Some("LargePositiveInteger"),
        16,
        &[],
    ),
    def("Character", CHARACTER, Some("Object"), 7, &[]),
    def("Float", FLOAT, Some("Object"), 10, &[]),
    def("BoxedFloat64", BOXED_FLOAT64, Some("Float"), 10, &[]),
    ClassDef {
        only_64: true,
        ..def("SmallFloat64", SMALL_FLOAT64, Some("Float"), 7, &[])
    },
    def(
        "Message",
        MESSAGE,
        Some("Object"),
        1,
        &["selector", "args", "lookupClass"],
    ),
    def(
        "Context",
        CONTEXT,
        Some("Object"),
        3,
        &[
            "sender",
            "pc",
            "stackp",
            "method",
            "closureOrNil",
            "receiver",
        ],
    ),
    def(
        "BlockClosure",
        BLOCK_CLOSURE,
        Some("Object"),
        3,
        &["outerContext", "startpcOrMethod", "numArgs"],
    ),
    def(
        "FullBlockClosure",
        FULL_BLOCK_CLOSURE,
        Some("BlockClosure"),
        3,
        &["receiver"],
    ),
    def("ByteArray", BYTE_ARRAY, Some("Object"), 16, &[]),
    def("Array", ARRAY, Some("Object"), 2, &[]),
    def("ByteString", BYTE_STRING, Some("Object"), 16, &[]),
    def("ByteSymbol", BYTE_SYMBOL, Some("ByteString"), 16, &[]),
    def(
        "Class",
        CLASS,
        Some("Object"),
        1,
        &[
            "superclass",
            "methodDict",
            "format",
            "instanceVariables",
            "organization",
            "subclasses",
            "name",
            "classPool",
            "sharedPools",
            "environment",
            "category",
        ],
    ),
    def(
        "Metaclass",
        METACLASS,
        Some("Object"),
        1,
        &[
            "superclass",
            "methodDict",
            "format",
            "instanceVariables",
            "organization",
            "thisClass",
        ],
    ),
    def("CompiledMethod", COMPILED_METHOD, Some("Object"), 24, &[]),
    def(
        "Association",
        ASSOCIATION,
        Some("Object"),
        1,
        &["key", "value"],
    ),
    def(
        "ProcessorScheduler",
        PROCESSOR_SCHEDULER,
        Some("Object"),
        1,
        &["quiescentProcessLists", "activeProcess"],
    ),
    def(
        "LinkedList",
        LINKED_LIST,
        Some("Object"),
        1,
        &["firstLink", "lastLink"],
    ),
    def(
        "Process",
        PROCESS,
        Some("Object"),
        1,
        &["nextLink", "suspendedContext", "priority", "myList", "name"],
    ),
    def(
        "Semaphore",
        SEMAPHORE,
        Some("LinkedList"),
        1,
        &["excessSignals"],
    ),
    def("Point", POINT, Some("Object"), 1, &["x", "y"]),
    def("Bitmap", BITMAP, Some("Object"), 10, &[]),
    def("WordArray", WORD_ARRAY, Some("Object"), 10, &[]),
    def(
        "MethodDictionary",
        METHOD_DICTIONARY,
        Some("Object"),
        3,
        &["tally", "array"],
    ),
    def(
        "SystemDictionary",
        SYSTEM_DICTIONARY,
        Some("Object"),
        1,
        &["tally", "array"],
    ),
    def(
        "SynthRecord",
        SYNTH_RECORD,
        Some("Object"),
        1,
        &["alpha", "beta", "gamma"],
    ),
];

/// The classes present in an image of this word size.
pub fn classes_for(word: WordSize) -> impl Iterator<Item = &'static ClassDef> {
    CLASSES
        .iter()
        .filter(move |c| word == WordSize::W64 || !c.only_64)
}

/// The class named `name`.
pub fn class_named(name: &str) -> Option<&'static ClassDef> {
    CLASSES.iter().find(|c| c.name == name)
}

/// Number of fixed (named) slots of instances of `c`: its own instance
/// variables plus those of its superclasses.
pub fn inst_size(c: &ClassDef) -> u64 {
    let mut n = c.inst_vars.len() as u64;
    let mut s = c.superclass;
    while let Some(name) = s {
        let sc = class_named(name).expect("superclass is defined");
        n += sc.inst_vars.len() as u64;
        s = sc.superclass;
    }
    n
}

/// The class-table index of the metaclass of `c`.
pub fn metaclass_index(word: WordSize, c: &ClassDef) -> u32 {
    if c.index == SYNTH_RECORD {
        return SYNTH_RECORD_METACLASS;
    }
    let pos = classes_for(word)
        .filter(|d| d.index != SYNTH_RECORD)
        .position(|d| d.index == c.index)
        .expect("class is present in this word size");
    FIRST_METACLASS_INDEX + u32::try_from(pos).expect("the builder makes small values")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn indices_are_unique_and_avoid_puns() {
        for word in [WordSize::W32, WordSize::W64] {
            let mut seen = BTreeSet::new();
            for c in classes_for(word) {
                assert!(seen.insert(c.index), "{}", c.name);
                assert!(seen.insert(metaclass_index(word, c)), "{} class", c.name);
                if let Some(s) = c.superclass {
                    let pos = |n: &str| CLASSES.iter().position(|d| d.name == n).unwrap();
                    assert!(pos(s) < pos(c.name), "{} before {}", s, c.name);
                }
            }
            for i in seen {
                assert!(
                    matches!(i, 1 | 2 | 4) || i >= raw::FIRST_VALID_CLASS_INDEX,
                    "{i}"
                );
                assert!(i != 3 && i < 2048);
            }
        }
        assert_eq!(inst_size(class_named("Semaphore").unwrap()), 3);
        assert_eq!(inst_size(class_named("FullBlockClosure").unwrap()), 4);
        assert_eq!(inst_size(class_named("Class").unwrap()), CLASS_SLOTS);
        assert_eq!(
            inst_size(class_named("Metaclass").unwrap()),
            METACLASS_SLOTS
        );
        assert_eq!(
            inst_size(class_named("Context").unwrap()),
            CONTEXT_FIXED_SLOTS
        );
    }
}
