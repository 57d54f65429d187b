//! The fixed structure at the start of segment 0: nil, false, true, the
//! free-lists object, the hidden roots and class table, the classes and
//! metaclasses, the special objects array and everything it reaches (the
//! scheduler with a resumable process, methods, symbols, the Smalltalk
//! stand-in).
//!
//! It is small (about 70 KiB on 64-bit, 38 KiB on 32-bit), so it is built in memory first: every
//! object gets its address when it is allocated, slots are filled in once
//! all addresses are known, and the whole is then streamed in address order.

use spur_format::layout::to_usize;
use std::collections::BTreeMap;
use std::io::{self, Seek, Write};

use spur_format::raw::SPECIAL_SELECTORS;
use spur_format::raw::{
    CLASS_ARRAY_PUN, CLASS_TABLE_MAJOR_SHIFT, CLASS_TABLE_PAGE_SLOTS, FMT_FIXED, FMT_INDEXABLE,
    FMT_INDEXABLE_WITH_FIXED, FMT_ZERO_SIZED, HIDDEN_ROOTS_SLOTS,
};
use spur_format::WordSize;

use crate::classes::*;
use crate::emit::Emitter;
use crate::encode::{
    byte_shape, bytecodes, class_format, method_header, object_bytes, BytecodeSet,
};
use crate::rng::Rng;
use crate::KernelWork;

/// Index of an object allocated in the kernel.
pub(crate) type Ref = usize;

#[derive(Debug)]
struct Proto {
    addr: u64,
    class: u32,
    format: u8,
    hash: u32,
    num_slots: u64,
    /// Slot values (for methods: header and literals).
    slots: Vec<u64>,
    /// Raw bytes after the slots (byte objects, method bytecodes).
    bytes: Vec<u8>,
}

/// Indices of the special objects array (§4.3), and the length of the one
/// the builder writes.
pub(crate) mod spl {
    pub(crate) use spur_format::raw::special::squeak::{
        CLASS_BLOCK_CLOSURE, CLASS_FULL_BLOCK_CLOSURE,
    };
    pub(crate) use spur_format::raw::special::*;
    /// Length of the array.
    pub(crate) const SIZE: u64 = 60;
}

/// Number of process priorities (lists in the scheduler).
const PRIORITIES: u64 = 80;
/// Priority of the resumable (active) process.
const ACTIVE_PRIORITY: i64 = 40;
/// Priority of the idle process, waiting in its quiescent list.
const IDLE_PRIORITY: i64 = 10;

/// Class-table index of the `k`th class a `Like` adds; its metaclass is at
/// the next index.
pub(crate) fn like_index(k: usize) -> u32 {
    crate::FIRST_LIKE_INDEX + 2 * u32::try_from(k).expect("the builder makes small values")
}

/// The built fixed structure, with the addresses the filler and the report need.
#[derive(Debug)]
pub(crate) struct Kernel {
    word: WordSize,
    protos: Vec<Proto>,
    next: u64,
    rng: Rng,
    symbols: BTreeMap<String, Ref>,
    /// Class-table pages (refs), page `p` holds indices `p*1024..`.
    pages: Vec<Ref>,
    nil: u64,
    /// Address of nil, false, true.
    pub(crate) nil_false_true: [u64; 3],
    /// The free-lists object.
    pub(crate) free_lists: Ref,
    /// The special objects array.
    pub(crate) special_objects: u64,
    /// Class objects by class-table index (classes and metaclasses).
    pub(crate) class_addrs: BTreeMap<u32, u64>,
    /// Addresses of the kernel's ByteSymbols.
    pub(crate) symbol_addrs: Vec<u64>,
    /// Addresses of the kernel's visible objects: pointer targets for the filler.
    pub(crate) targets: Vec<u64>,
    /// File offset of the free-lists object's slot 0, once emitted.
    pub(crate) free_lists_slot0: u64,
}

impl Kernel {
    /// Builds the structure for an image whose nil lives at `base`.
    pub(crate) fn build(
        word: WordSize,
        base: u64,
        multiple_bytecode_sets: bool,
        seed: u64,
        work: KernelWork,
        extra: &[(&str, u8, u64)],
    ) -> Self {
        let mut k = Kernel {
            word,
            protos: Vec::new(),
            next: base,
            rng: Rng::new(seed, 0x6b65_726e),
            symbols: BTreeMap::new(),
            pages: Vec::new(),
            nil: base,
            nil_false_true: [0; 3],
            free_lists: 0,
            special_objects: 0,
            class_addrs: BTreeMap::new(),
            symbol_addrs: Vec::new(),
            targets: Vec::new(),
            free_lists_slot0: 0,
        };
        k.layout(multiple_bytecode_sets, work, extra);
        k
    }

    /// Bytes the structure occupies.
    pub(crate) fn bytes(&self) -> u64 {
        self.next - self.nil
    }

    /// Non-nil class-table entries.
    pub(crate) fn classes(&self) -> u64 {
        self.class_addrs.len() as u64
    }

    fn addr(&self, r: Ref) -> u64 {
        self.protos[r].addr
    }

    fn set(&mut self, r: Ref, i: usize, v: u64) {
        self.protos[r].slots[i] = v;
    }

    fn int(&self, v: i64) -> u64 {
        self.word.encode_small_integer(v)
    }

    /// A random identity hash: 22 bits, about one in sixteen left 0
    /// (never assigned), as in a real heap.
    fn hash(&mut self) -> u32 {
        if self.rng.chance(1, 16) {
            0
        } else {
            self.nonzero_hash()
        }
    }

    fn nonzero_hash(&mut self) -> u32 {
        1 + u32::try_from(self.rng.below(0x3F_FFFF)).expect("the builder makes small values")
    }

    fn alloc(
        &mut self,
        class: u32,
        format: u8,
        hash: u32,
        slots: Vec<u64>,
        bytes: Vec<u8>,
        num_slots: u64,
    ) -> Ref {
        let total = object_bytes(self.word, num_slots);
        let addr = self.next + if num_slots >= 255 { 8 } else { 0 };
        self.next += total;
        self.protos.push(Proto {
            addr,
            class,
            format,
            hash,
            num_slots,
            slots,
            bytes,
        });
        self.protos.len() - 1
    }

    /// A pointer object of `n` slots, all nil.
    fn pointers(&mut self, class: u32, format: u8, n: u64) -> Ref {
        let h = self.hash();
        let nil = self.nil;
        self.alloc(class, format, h, vec![nil; to_usize(n)], Vec::new(), n)
    }

    /// A byte object (format 16..23) holding `data`.
    fn byte_object(&mut self, class: u32, data: &[u8], hash: u32) -> Ref {
        let (n, fmt) = byte_shape(self.word, spur_format::raw::FMT_BYTES, data.len() as u64);
        self.alloc(class, fmt, hash, Vec::new(), data.to_vec(), n)
    }

    /// The ByteSymbol `name`, created once.
    fn symbol(&mut self, name: &str) -> u64 {
        if let Some(&r) = self.symbols.get(name) {
            return self.addr(r);
        }
        let h = self.nonzero_hash();
        let r = self.byte_object(BYTE_SYMBOL, name.as_bytes(), h);
        self.symbols.insert(name.to_string(), r);
        self.addr(r)
    }

    fn string(&mut self, s: &str) -> u64 {
        let h = self.hash();
        let r = self.byte_object(BYTE_STRING, s.as_bytes(), h);
        self.addr(r)
    }

    fn array(&mut self, values: &[u64]) -> u64 {
        let r = self.pointers(ARRAY, FMT_INDEXABLE, values.len() as u64);
        self.protos[r].slots.copy_from_slice(values);
        self.addr(r)
    }

    fn association(&mut self, key: u64, value: u64) -> u64 {
        let r = self.pointers(ASSOCIATION, FMT_FIXED, 2);
        self.set(r, 0, key);
        self.set(r, 1, value);
        self.addr(r)
    }

    /// A CompiledMethod: `literals` then `code` and a one-byte trailer (0).
    fn method(&mut self, set: BytecodeSet, literals: &[u64], code: &[u8]) -> u64 {
        self.method_with(set, literals, code, 0, 0, false)
    }

    /// A CompiledMethod with arguments and temps; `primitive`: its code
    /// starts with a call-primitive bytecode (header bit 16).
    fn method_with(
        &mut self,
        set: BytecodeSet,
        literals: &[u64],
        code: &[u8],
        args: u64,
        temps: u64,
        primitive: bool,
    ) -> u64 {
        let w = self.word.bytes();
        let n_lit = literals.len() as u64;
        let header = method_header(self.word, set, n_lit, args, temps) | i64::from(primitive) << 16;
        let mut slots = vec![self.int(header)];
        slots.extend_from_slice(literals);
        let mut bytes = code.to_vec();
        bytes.push(0);
        let (n, fmt) = byte_shape(
            self.word,
            spur_format::raw::FMT_COMPILED_METHOD,
            (n_lit + 1) * w + bytes.len() as u64,
        );
        let h = self.hash();
        let r = self.alloc(COMPILED_METHOD, fmt, h, slots, bytes, n);
        self.addr(r)
    }

    /// The first pc of a method with `num_literals` literals (1-based byte index).
    fn initial_pc(&self, num_literals: u64) -> i64 {
        ((num_literals + 1) * self.word.bytes() + 1).cast_signed()
    }

    /// A Context: `stack` values pushed, the remaining stack slots nil.
    #[allow(clippy::too_many_arguments)]
    fn context(&mut self, sender: u64, pc: i64, method: u64, receiver: u64, stack: &[u64]) -> u64 {
        let r = self.pointers(
            CONTEXT,
            FMT_INDEXABLE_WITH_FIXED,
            CONTEXT_FIXED_SLOTS + CONTEXT_STACK_SLOTS,
        );
        let pc = self.int(pc);
        let sp = self.int(i64::try_from(stack.len()).expect("the builder makes small values"));
        self.set(r, 0, sender);
        self.set(r, 1, pc);
        self.set(r, 2, sp);
        self.set(r, 3, method);
        // slot 4, closureOrNil, stays nil
        self.set(r, 5, receiver);
        for (i, &v) in stack.iter().enumerate() {
            self.set(r, to_usize(CONTEXT_FIXED_SLOTS) + i, v);
        }
        self.addr(r)
    }

    /// A hashed collection's slot array: `entries` placed at `hash & mask`,
    /// probing linearly, in an array of `capacity` (a power of two).
    fn hashed(&self, entries: &[(u32, u64)], capacity: usize) -> Vec<Option<usize>> {
        let mut table = vec![None; capacity];
        for (i, &(h, _)) in entries.iter().enumerate() {
            let mut at = h as usize & (capacity - 1);
            while table[at].is_some() {
                at = (at + 1) & (capacity - 1);
            }
            table[at] = Some(i);
        }
        table
    }

    /// A MethodDictionary holding `methods` (selector symbol, method).
    fn method_dictionary(&mut self, methods: &[(u64, u64)]) -> u64 {
        let capacity = (methods.len() * 2).next_power_of_two().max(4);
        let hashes: Vec<(u32, u64)> = methods
            .iter()
            .map(|&(sel, m)| (self.hash_of(sel), m))
            .collect();
        let table = self.hashed(&hashes, capacity);
        let nil = self.nil;
        let method_array: Vec<u64> = table
            .iter()
            .map(|e| e.map_or(nil, |i| methods[i].1))
            .collect();
        let array = self.array(&method_array);
        let dict = self.pointers(
            METHOD_DICTIONARY,
            FMT_INDEXABLE_WITH_FIXED,
            2 + capacity as u64,
        );
        let tally = self.int(i64::try_from(methods.len()).expect("the builder makes small values"));
        self.set(dict, 0, tally);
        self.set(dict, 1, array);
        for (at, e) in table.iter().enumerate() {
            if let Some(i) = e {
                self.set(dict, 2 + at, methods[*i].0);
            }
        }
        self.addr(dict)
    }

    fn hash_of(&self, addr: u64) -> u32 {
        self.protos
            .iter()
            .find(|p| p.addr == addr)
            .map(|p| p.hash)
            .expect("kernel object")
    }

    fn ref_of(&self, addr: u64) -> Ref {
        self.protos
            .iter()
            .position(|p| p.addr == addr)
            .expect("kernel object")
    }

    fn layout(&mut self, mbs: bool, work: KernelWork, extra: &[(&str, u8, u64)]) {
        let word = self.word;
        let nil_ref = self.alloc(UNDEFINED_OBJECT, FMT_ZERO_SIZED, 0, vec![], vec![], 0);
        let h = self.hash();
        let false_ref = self.alloc(FALSE, FMT_ZERO_SIZED, h, vec![], vec![], 0);
        let h = self.hash();
        let true_ref = self.alloc(TRUE, FMT_ZERO_SIZED, h, vec![], vec![], 0);
        debug_assert_eq!(self.addr(nil_ref), self.nil);
        let nil = self.nil;
        let (fals, tru) = (self.addr(false_ref), self.addr(true_ref));
        self.nil_false_true = [nil, fals, tru];

        let heads = word.num_free_lists();
        self.free_lists = self.alloc(
            word.word_array_pun(),
            word.word_indexable_format(),
            0,
            vec![0; to_usize(heads)],
            vec![],
            heads,
        );
        let hidden = self.alloc(
            CLASS_ARRAY_PUN,
            FMT_INDEXABLE,
            0,
            vec![nil; to_usize(HIDDEN_ROOTS_SLOTS)],
            vec![],
            HIDDEN_ROOTS_SLOTS,
        );
        let max_index = classes_for(word)
            .map(|c| c.index.max(metaclass_index(word, c)))
            .max()
            .unwrap()
            .max(extra.len().checked_sub(1).map_or(0, |k| like_index(k) + 1));
        let num_pages = ((max_index >> CLASS_TABLE_MAJOR_SHIFT) + 1).max(2);
        for p in 0..num_pages {
            let page = self.alloc(
                CLASS_ARRAY_PUN,
                FMT_INDEXABLE,
                0,
                vec![nil; to_usize(CLASS_TABLE_PAGE_SLOTS)],
                vec![],
                CLASS_TABLE_PAGE_SLOTS,
            );
            self.pages.push(page);
            let a = self.addr(page);
            self.set(hidden, p as usize, a);
        }

        // Classes and metaclasses: allocate all, then fill.
        let defs: Vec<&ClassDef> = classes_for(word).collect();
        let mut class_ref = BTreeMap::new();
        let mut meta_ref = BTreeMap::new();
        for c in &defs {
            let meta_index = metaclass_index(word, c);
            let cr = self.alloc(
                meta_index,
                FMT_FIXED,
                c.index,
                vec![nil; to_usize(CLASS_SLOTS)],
                vec![],
                CLASS_SLOTS,
            );
            let mr = self.alloc(
                METACLASS,
                FMT_FIXED,
                meta_index,
                vec![nil; to_usize(METACLASS_SLOTS)],
                vec![],
                METACLASS_SLOTS,
            );
            class_ref.insert(c.name, cr);
            meta_ref.insert(c.name, mr);
            let (ca, ma) = (self.addr(cr), self.addr(mr));
            self.enter_class(c.index, ca);
            self.enter_class(meta_index, ma);
        }
        let mut extra_refs = Vec::with_capacity(extra.len());
        for (k, &(name, inst_spec, fixed)) in extra.iter().enumerate() {
            let index = like_index(k);
            let cr = self.alloc(
                index + 1,
                FMT_FIXED,
                index,
                vec![nil; to_usize(CLASS_SLOTS)],
                vec![],
                CLASS_SLOTS,
            );
            let mr = self.alloc(
                METACLASS,
                FMT_FIXED,
                index + 1,
                vec![nil; to_usize(METACLASS_SLOTS)],
                vec![],
                METACLASS_SLOTS,
            );
            let (ca, ma) = (self.addr(cr), self.addr(mr));
            self.enter_class(index, ca);
            self.enter_class(index + 1, ma);
            extra_refs.push((name, inst_spec, fixed, cr, mr));
        }
        let class_addr = |k: &Kernel, name: &str| k.addr(class_ref[name]);

        // The Smalltalk stand-in exists before classes point at it.
        let smalltalk = self.pointers(SYSTEM_DICTIONARY, FMT_FIXED, 2);
        let smalltalk_addr = self.addr(smalltalk);
        let category = self.symbol("Synth-Kernel");

        // Methods and the classes that own them.
        let sel_step = self.symbol("synthStep");
        let sel_run = self.symbol("synthRun");
        let sel_idle = self.symbol("synthIdle");
        let small_int_class = class_addr(self, "SmallInteger");
        let undefined_class = class_addr(self, "UndefinedObject");
        let object_class = class_addr(self, "Object");
        let bind_step = self.association(nil, small_int_class);
        let bind_run = self.association(nil, undefined_class);
        let bind_idle = self.association(nil, object_class);
        let m_step = {
            use bytecodes::v3::*;
            self.method(
                BytecodeSet::V3,
                &[sel_step, bind_step],
                &[PUSH_SELF, PUSH_ONE, SEND_PLUS, RETURN_TOP],
            )
        };
        let forty_one = self.int(41);
        // The work (see `KernelWork`).
        let sel_square = self.symbol("synthSquare");
        let sel_work = self.symbol("synthWork:");
        let sel_loop = self.symbol("synthLoop:");
        let sel_quit = self.symbol("synthQuit:");
        let sel_at = self.symbol("at:");
        let bind_square = self.association(nil, object_class);
        let bind_work = self.association(nil, small_int_class);
        let bind_loop = self.association(nil, small_int_class);
        let bind_quit = self.association(nil, undefined_class);
        let bind_at = self.association(nil, object_class);
        let m_square = {
            use bytecodes::v3::*;
            self.method(
                BytecodeSet::V3,
                &[sel_square, bind_square],
                &[PUSH_SELF, PUSH_SELF, SEND_TIMES, RETURN_TOP],
            )
        };
        let two_five_six = self.int(256);
        let m_work = self.method_with(
            BytecodeSet::V3,
            &[sel_square, two_five_six, sel_work, bind_work],
            &work_code(true),
            1,
            4,
            false,
        );
        let m_loop = self.method_with(
            BytecodeSet::V3,
            &[sel_square, two_five_six, sel_loop, bind_loop],
            &work_code(false),
            1,
            4,
            false,
        );
        let m_quit = {
            use bytecodes::v3::*;
            self.method_with(
                BytecodeSet::V3,
                &[sel_quit, bind_quit],
                &[CALL_PRIMITIVE, 113, 0, RETURN_SELF],
                1,
                1,
                true,
            )
        };
        let m_at = {
            use bytecodes::v3::*;
            self.method_with(
                BytecodeSet::V3,
                &[sel_at, bind_at],
                &[CALL_PRIMITIVE, 60, 0, RETURN_NIL],
                1,
                1,
                true,
            )
        };
        let iterations = self.int(i64::from(work.iterations));
        let sel_job = if work.sends { sel_work } else { sel_loop };
        let m_run = {
            use bytecodes::v3::*;
            self.method_with(
                BytecodeSet::V3,
                &[
                    forty_one, sel_step, iterations, sel_job, sel_quit, sel_run, bind_run,
                ],
                &[
                    PUSH_LITERAL,
                    SEND_LITERAL_0 + 1,
                    POP_INTO_TEMP,
                    PUSH_SELF,
                    PUSH_TEMP,
                    PUSH_LITERAL + 2,
                    SEND_LITERAL_1 + 3,
                    SEND_LITERAL_1 + 4,
                    POP,
                    RETURN_SELF,
                ],
                0,
                1,
                false,
            )
        };
        let m_idle = if mbs {
            use bytecodes::sista::*;
            self.method(
                BytecodeSet::Sista,
                &[sel_idle, bind_idle],
                &[PUSH_NIL, POP, RETURN_SELF],
            )
        } else {
            use bytecodes::v3::*;
            self.method(
                BytecodeSet::V3,
                &[sel_idle, bind_idle],
                &[PUSH_NIL, POP, RETURN_SELF],
            )
        };
        // A method in the other set too when both are active, never executed.
        let extra = if mbs {
            let sel = self.symbol("synthPlusOne");
            let b = self.association(nil, small_int_class);
            use bytecodes::sista::*;
            Some((
                sel,
                self.method(
                    BytecodeSet::Sista,
                    &[sel, b],
                    &[PUSH_SELF, PUSH_ONE, SEND_PLUS, RETURN_TOP],
                ),
            ))
        } else {
            None
        };

        for c in &defs {
            let cr = class_ref[c.name];
            let mr = meta_ref[c.name];
            let ca = self.addr(cr);
            let superclass = c.superclass.map_or(nil, |s| class_addr(self, s));
            let meta_super = match c.superclass {
                Some(s) => self.addr(meta_ref[s]),
                None => class_addr(self, "Class"),
            };
            let mut methods = Vec::new();
            match c.index {
                SMALL_INTEGER => {
                    methods.push((sel_step, m_step));
                    methods.push((sel_work, m_work));
                    methods.push((sel_loop, m_loop));
                    methods.extend(extra);
                }
                UNDEFINED_OBJECT => {
                    methods.push((sel_run, m_run));
                    methods.push((sel_quit, m_quit));
                }
                OBJECT => {
                    methods.push((sel_idle, m_idle));
                    methods.push((sel_at, m_at));
                    // Inherited, so that a send looks through the chain.
                    methods.push((sel_square, m_square));
                }
                _ => {}
            }
            let dict = self.method_dictionary(&methods);
            let meta_dict = self.method_dictionary(&[]);
            let name = self.symbol(c.name);
            let inst_vars = if c.inst_vars.is_empty() {
                nil
            } else {
                let names: Vec<u64> = c.inst_vars.iter().map(|v| self.symbol(v)).collect();
                self.array(&names)
            };
            let fmt = self.int(class_format(c.inst_spec, inst_size(c)));
            let meta_fmt = self.int(class_format(FMT_FIXED, CLASS_SLOTS));
            self.set(cr, SUPERCLASS_INDEX, superclass);
            self.set(cr, METHOD_DICT_INDEX, dict);
            self.set(cr, FORMAT_INDEX, fmt);
            self.set(cr, INST_VARS_INDEX, inst_vars);
            self.set(cr, NAME_INDEX, name);
            self.set(cr, ENVIRONMENT_INDEX, smalltalk_addr);
            self.set(cr, CATEGORY_INDEX, category);
            self.set(mr, SUPERCLASS_INDEX, meta_super);
            self.set(mr, METHOD_DICT_INDEX, meta_dict);
            self.set(mr, FORMAT_INDEX, meta_fmt);
            self.set(mr, THIS_CLASS_INDEX, ca);
        }

        // The classes a `Like` adds: Object's subclasses of the given formats.
        for (name, inst_spec, fixed, cr, mr) in extra_refs {
            let ca = self.addr(cr);
            let superclass = class_addr(self, "Object");
            let meta_super = self.addr(meta_ref["Object"]);
            let dict = self.method_dictionary(&[]);
            let meta_dict = self.method_dictionary(&[]);
            let name = self.symbol(name);
            let fmt = self.int(class_format(inst_spec, fixed));
            let meta_fmt = self.int(class_format(FMT_FIXED, CLASS_SLOTS));
            self.set(cr, SUPERCLASS_INDEX, superclass);
            self.set(cr, METHOD_DICT_INDEX, dict);
            self.set(cr, FORMAT_INDEX, fmt);
            self.set(cr, NAME_INDEX, name);
            self.set(cr, ENVIRONMENT_INDEX, smalltalk_addr);
            self.set(cr, CATEGORY_INDEX, category);
            self.set(mr, SUPERCLASS_INDEX, meta_super);
            self.set(mr, METHOD_DICT_INDEX, meta_dict);
            self.set(mr, FORMAT_INDEX, meta_fmt);
            self.set(mr, THIS_CLASS_INDEX, ca);
        }

        // The resumable process: SmallInteger>>synthStep, suspended after
        // `push self`, called from UndefinedObject>>synthRun (its temp nil).
        let caller = self.context(nil, self.initial_pc(7) + 2, m_run, nil, &[nil]);
        let top = self.context(
            caller,
            self.initial_pc(2) + 1,
            m_step,
            forty_one,
            &[forty_one],
        );
        let idle_ctx = self.context(nil, self.initial_pc(2), m_idle, nil, &[]);
        let lists: Vec<u64> = (0..PRIORITIES)
            .map(|_| {
                let r = self.pointers(LINKED_LIST, FMT_FIXED, 2);
                self.addr(r)
            })
            .collect();
        let lists_array = self.array(&lists);
        let main_name = self.string("synth main");
        let idle_name = self.string("synth idle");
        let active = self.pointers(PROCESS, FMT_FIXED, 5);
        let idle = self.pointers(PROCESS, FMT_FIXED, 5);
        let (active_addr, idle_addr) = (self.addr(active), self.addr(idle));
        let p = self.int(ACTIVE_PRIORITY);
        self.set(active, 1, top);
        self.set(active, 2, p);
        self.set(active, 4, main_name);
        let idle_list =
            lists[usize::try_from(IDLE_PRIORITY - 1).expect("the builder makes small values")];
        let p = self.int(IDLE_PRIORITY);
        self.set(idle, 1, idle_ctx);
        self.set(idle, 2, p);
        self.set(idle, 3, idle_list);
        self.set(idle, 4, idle_name);
        let idle_list_ref = self.ref_of(idle_list);
        self.set(idle_list_ref, 0, idle_addr);
        self.set(idle_list_ref, 1, idle_addr);
        let scheduler = self.pointers(PROCESSOR_SCHEDULER, FMT_FIXED, 2);
        self.set(scheduler, 0, lists_array);
        self.set(scheduler, 1, active_addr);
        let processor = self.symbol("Processor");
        let scheduler_addr = self.addr(scheduler);
        let scheduler_assoc = self.association(processor, scheduler_addr);

        // Smalltalk: #Name -> class for every class, and #Processor.
        let mut globals: Vec<(u32, u64)> = Vec::new();
        for c in &defs {
            let name = self.symbol(c.name);
            let ca = class_addr(self, c.name);
            let a = self.association(name, ca);
            globals.push((self.hash_of(name), a));
        }
        globals.push((self.hash_of(processor), scheduler_assoc));
        let capacity = (globals.len() * 2).next_power_of_two();
        let table = self.hashed(&globals, capacity);
        let slots: Vec<u64> = table
            .iter()
            .map(|e| e.map_or(nil, |i| globals[i].1))
            .collect();
        let globals_array = self.array(&slots);
        let tally = self.int(i64::try_from(globals.len()).expect("the builder makes small values"));
        self.set(smalltalk, 0, tally);
        self.set(smalltalk, 1, globals_array);

        // Special selectors, external objects.
        let mut sels = Vec::new();
        for (s, n) in SPECIAL_SELECTORS {
            sels.push(self.symbol(s));
            sels.push(self.int(i64::from(n)));
        }
        let special_selectors = self.array(&sels);
        let mut externals = vec![nil; 16];
        for e in externals.iter_mut().take(3) {
            let s = self.pointers(SEMAPHORE, FMT_FIXED, 3);
            let zero = self.int(0);
            self.set(s, 2, zero);
            *e = self.addr(s);
        }
        let external_objects = self.array(&externals);
        let dnu = self.symbol("doesNotUnderstand:");
        let cannot_return = self.symbol("cannotReturn:");
        let must_be_boolean = self.symbol("mustBeBoolean");

        let sp = self.pointers(ARRAY, FMT_INDEXABLE, spl::SIZE);
        let ca = |k: &Kernel, i: u32| k.class_addrs[&i];
        let entries: Vec<(usize, u64)> = vec![
            (spl::NIL_OBJECT, nil),
            (spl::FALSE_OBJECT, fals),
            (spl::TRUE_OBJECT, tru),
            (spl::SCHEDULER_ASSOCIATION, scheduler_assoc),
            (spl::CLASS_BITMAP, ca(self, BITMAP)),
            (spl::CLASS_SMALL_INTEGER, ca(self, SMALL_INTEGER)),
            (spl::CLASS_BYTE_STRING, ca(self, BYTE_STRING)),
            (spl::CLASS_ARRAY, ca(self, ARRAY)),
            (spl::SMALLTALK_DICTIONARY, smalltalk_addr),
            (spl::CLASS_FLOAT, ca(self, BOXED_FLOAT64)),
            (spl::CLASS_METHOD_CONTEXT, ca(self, CONTEXT)),
            (spl::CLASS_POINT, ca(self, POINT)),
            (
                spl::CLASS_LARGE_POSITIVE_INTEGER,
                ca(self, LARGE_POSITIVE_INTEGER),
            ),
            (spl::CLASS_MESSAGE, ca(self, MESSAGE)),
            (spl::CLASS_COMPILED_METHOD, ca(self, COMPILED_METHOD)),
            (spl::CLASS_SEMAPHORE, ca(self, SEMAPHORE)),
            (spl::CLASS_CHARACTER, ca(self, CHARACTER)),
            (spl::SELECTOR_DOES_NOT_UNDERSTAND, dnu),
            (spl::SELECTOR_CANNOT_RETURN, cannot_return),
            (spl::SPECIAL_SELECTORS, special_selectors),
            (spl::SELECTOR_MUST_BE_BOOLEAN, must_be_boolean),
            (spl::CLASS_BYTE_ARRAY, ca(self, BYTE_ARRAY)),
            (spl::CLASS_PROCESS, ca(self, PROCESS)),
            (spl::CLASS_BLOCK_CLOSURE, ca(self, BLOCK_CLOSURE)),
            (spl::CLASS_FULL_BLOCK_CLOSURE, ca(self, FULL_BLOCK_CLOSURE)),
            (spl::EXTERNAL_OBJECTS_ARRAY, external_objects),
            (
                spl::CLASS_LARGE_NEGATIVE_INTEGER,
                ca(self, LARGE_NEGATIVE_INTEGER),
            ),
        ];
        for (i, v) in entries {
            self.set(sp, i, v);
        }
        self.special_objects = self.addr(sp);

        let hidden_refs = [self.free_lists, hidden];
        let pages = self.pages.clone();
        self.symbol_addrs = self
            .symbols
            .values()
            .map(|&r| self.protos[r].addr)
            .collect();
        self.targets = (0..self.protos.len())
            .filter(|r| !hidden_refs.contains(r) && !pages.contains(r))
            .map(|r| self.protos[r].addr)
            .collect();
    }

    /// Puts `addr` at class-table index `index`.
    fn enter_class(&mut self, index: u32, addr: u64) {
        let page = self.pages[(index >> CLASS_TABLE_MAJOR_SHIFT) as usize];
        self.set(
            page,
            (index as u64 & (CLASS_TABLE_PAGE_SLOTS - 1)) as usize,
            addr,
        );
        self.class_addrs.insert(index, addr);
    }

    /// Streams the structure; the emitter must be at the start of segment 0.
    pub(crate) fn emit<W: Write + Seek>(&mut self, em: &mut Emitter<'_, W>) -> io::Result<()> {
        assert_eq!(em.addr(), self.nil);
        for (r, p) in self.protos.iter().enumerate() {
            let a = em.begin(p.class, p.format, p.hash, p.num_slots);
            debug_assert_eq!(a, p.addr);
            if r == self.free_lists {
                self.free_lists_slot0 = em.next_slot_offset();
            }
            for &s in &p.slots {
                em.slot(s);
            }
            em.bytes(&p.bytes);
            em.end()?;
        }
        Ok(())
    }
}

/// The bytecodes of `synthWork:` (`sends`) and `synthLoop:` (see
/// `KernelWork`): temps 0 n, 1 sum, 2 i, 3 arr; literals 0 #synthSquare,
/// 1 256.
fn work_code(sends: bool) -> Vec<u8> {
    use bytecodes::v3::*;
    let mut c = vec![PUSH_ZERO, POP_INTO_TEMP + 1, PUSH_ONE, POP_INTO_TEMP + 2];
    let top = c.len();
    c.extend_from_slice(&[PUSH_TEMP + 2, PUSH_TEMP, SEND_LE]);
    let exit_jump = c.len();
    c.extend_from_slice(&[LONG_JUMP_IF_FALSE, 0]);
    c.extend_from_slice(&[PUSH_TEMP + 1, PUSH_TEMP + 2]);
    if sends {
        c.push(SEND_LITERAL_0);
    } else {
        c.extend_from_slice(&[PUSH_TEMP + 2, SEND_TIMES]);
    }
    c.extend_from_slice(&[
        PUSH_SELF,
        SEND_MOD,
        SEND_PLUS,
        POP_INTO_TEMP + 1,
        PUSH_TEMP + 2,
        PUSH_ONE,
        SEND_PLUS,
        POP_INTO_TEMP + 2,
    ]);
    // A long jump back: offset (b & 7 - 4) * 256 + d from the pc after it.
    // The loop body is a few dozen bytes the builder wrote itself, so every
    // offset fits the jump encodings (checked: a change that breaks that panics
    // in the builder's tests, never on file input).
    let back = i64::try_from(top).expect("small offset")
        - (i64::try_from(c.len()).expect("small offset") + 2);
    c.extend_from_slice(&[
        LONG_JUMP + u8::try_from(4 + back.div_euclid(256)).expect("a jump within 1 KiB"),
        u8::try_from(back.rem_euclid(256)).expect("a remainder of 256"),
    ]);
    c[exit_jump + 1] = u8::try_from(c.len() - (exit_jump + 2)).expect("a short forward jump");
    c.extend_from_slice(&[
        PUSH_TEMP + 1,
        PUSH_TEMP + 2,
        PUSH_NEW_ARRAY,
        0x82,
        POP_INTO_TEMP + 3,
        PUSH_TEMP + 3,
        PUSH_ONE,
        SEND_AT,
        PUSH_TEMP + 3,
        PUSH_TWO,
        SEND_AT,
        SEND_PLUS,
        PUSH_LITERAL + 1,
        SEND_MOD,
        RETURN_TOP,
    ]);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_is_small_and_hidden_roots_land_where_the_reference_says() {
        for (word, at) in [(WordSize::W64, 576), (WordSize::W32, 192)] {
            for mbs in [false, true] {
                let k = Kernel::build(word, 0x10_0000, mbs, 1, KernelWork::default(), &[]);
                assert!(k.bytes() < 80 * 1024, "{word:?}: {} bytes", k.bytes());
                assert_eq!(k.protos[4].addr, 0x10_0000 + at);
                assert_eq!(k.protos[4].num_slots, HIDDEN_ROOTS_SLOTS);
            }
        }
    }
}
