//! Where the image resumes: the scheduler association (special object 3)
//! leads to the ProcessorScheduler, whose `activeProcess` (slot 1) is the
//! process that saved the image; its `suspendedContext` (slot 1) is the
//! context to resume, with its method (slot 3), receiver (slot 5), pc
//! (slot 1) and stack pointer (slot 2).
//!
//! The method is named `Class>>selector` from its own literals; a block
//! (a context with a closure, or whose method is a CompiledBlock) is named
//! `[] in Class>>selector` after its home method. The bytecodes around the
//! pc are decoded in the method's own set (its header's sign bit).

use crate::bytecodes::{decode_method, BytecodeSet, Instruction, SPECIAL_SELECTORS};
use crate::class_table::ClassTable;
use crate::error::RuntimeError;
use crate::memory::{Oop, ReadView};
use crate::method::{home_method, CompiledCode, MethodHeader};
use crate::special_objects::SpecialObjects;

/// Context slots (the same in every dialect).
pub mod context {
    /// The context that sent the message (nil at the bottom of a stack).
    pub const SENDER: u64 = 0;
    /// The pc (a SmallInteger), or nil in a dead context.
    pub const PC: u64 = 1;
    /// Slots used on the stack above the fixed ones.
    pub const STACKP: u64 = 2;
    /// The CompiledMethod (or CompiledBlock) running.
    pub const METHOD: u64 = 3;
    /// The BlockClosure running, or nil in a method context.
    pub const CLOSURE_OR_NIL: u64 = 4;
    /// The receiver, `self`.
    pub const RECEIVER: u64 = 5;
    /// Fixed slots before the stack.
    pub const FIXED_SLOTS: u64 = 6;
}

/// `ProcessorScheduler` slot holding the active process.
pub const SCHEDULER_ACTIVE_PROCESS: u64 = 1;
/// `Process` slot holding the suspended context.
pub const PROCESS_SUSPENDED_CONTEXT: u64 = 1;
/// Association slot holding the value.
pub const ASSOCIATION_VALUE: u64 = 1;

/// Instructions shown before and after the one at the pc.
pub const WINDOW_BEFORE: usize = 4;
/// Instructions shown after the one at the pc.
pub const WINDOW_AFTER: usize = 6;
/// Longest outer-code chain followed from a block to its home method.
const MAX_BLOCK_NESTING: usize = 256;

/// The point where an interpreter resumes the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    /// The ProcessorScheduler, from the special objects array.
    pub scheduler: Oop,
    /// The scheduler's active process, which the image resumes.
    pub process: Oop,
    /// The process's suspended context.
    pub context: Oop,
    /// The context's method: a CompiledMethod, or a CompiledBlock for a full block.
    pub method: Oop,
    /// The home CompiledMethod (the method itself unless it is a CompiledBlock).
    pub home_method: Oop,
    /// The context runs a block.
    pub in_block: bool,
    /// The receiver of that context.
    pub receiver: Oop,
    /// The name of the receiver's class.
    pub receiver_class: String,
    /// The class the home method is installed in, and its name.
    pub method_class: Option<Oop>,
    /// That class's name, or `?` when it is unknown.
    pub method_class_name: String,
    /// The home method's selector (a Symbol) and its text.
    pub selector: Option<Oop>,
    /// That selector's text, or `?` when it is unknown.
    pub selector_name: String,
    /// The pc to resume at (1-based byte index in the method object).
    pub pc: u64,
    /// The stack pointer (slots used above the fixed ones).
    pub stack_pointer: u64,
    /// The running method's decoded header.
    pub header: MethodHeader,
    /// The method's bytecodes span `initial_pc..end_pc`.
    pub initial_pc: u64,
    /// See `initial_pc`: the pc just past the last bytecode.
    pub end_pc: u64,
    /// Instructions around the pc, decoded in the method's set.
    pub window: Vec<Instruction>,
    /// Index in `window` of the instruction at the pc.
    pub current: usize,
    /// `window` as text, literals and special selectors resolved.
    pub bytecodes: Vec<String>,
}

impl ResumePoint {
    /// `Class>>selector`, or `[] in Class>>selector` for a block.
    pub fn method_name(&self) -> String {
        format!(
            "{}{}>>{}",
            if self.in_block { "[] in " } else { "" },
            self.method_class_name,
            self.selector_name
        )
    }

    /// The bytecode set of the resumed method.
    pub fn bytecode_set(&self) -> BytecodeSet {
        self.header.set
    }

    /// Follows special object 3 to the active process's suspended context.
    pub fn find(
        view: &ReadView<'_>,
        specials: &SpecialObjects,
        classes: &ClassTable,
    ) -> Result<Self, RuntimeError> {
        let word = view.word();
        let nil = specials.nil_oop();
        let err = |what: &'static str, addr: Oop, why: String| RuntimeError::Resume {
            what,
            addr: addr.bits(),
            why,
        };
        let assoc = specials.common().scheduler_association().ok_or_else(|| {
            err(
                "special object 3",
                Oop::from_addr(specials.addr()),
                "is nil: no scheduler association".into(),
            )
        })?;
        let scheduler = view
            .slot(assoc, ASSOCIATION_VALUE)
            .filter(|&s| {
                view.num_slots(s)
                    .is_some_and(|n| n > SCHEDULER_ACTIVE_PROCESS)
            })
            .ok_or_else(|| {
                err(
                    "scheduler association",
                    assoc,
                    "does not hold a ProcessorScheduler (an object of at least 2 slots) in slot 1"
                        .into(),
                )
            })?;
        let process = view
            .slot(scheduler, SCHEDULER_ACTIVE_PROCESS)
            .filter(|&p| p != nil && view.num_slots(p).is_some_and(|n| n > 1))
            .ok_or_else(|| {
                err(
                    "scheduler",
                    scheduler,
                    "has no active process (slot 1 is nil or not a Process)".into(),
                )
            })?;
        let ctx = view
            .slot(process, PROCESS_SUSPENDED_CONTEXT)
            .filter(|&c| c != nil)
            .ok_or_else(|| {
                err(
                    "active process",
                    process,
                    "has no suspended context (slot 1 is nil)".into(),
                )
            })?;
        let n = view.num_slots(ctx).unwrap_or(0);
        if n < context::FIXED_SLOTS || !view.header(ctx).is_some_and(|h| h.is_pointers()) {
            return Err(err(
                "suspended context",
                ctx,
                format!(
                    "is not a context: {n} slots, it needs {} fixed ones",
                    context::FIXED_SLOTS
                ),
            ));
        }
        let slot = |i| view.slot(ctx, i).unwrap_or(nil);
        let pc = view.memory().small_int(slot(context::PC)).ok_or_else(|| {
            err(
                "suspended context",
                ctx,
                format!(
                    "has pc {:#x}, not a SmallInteger (a dead context)",
                    slot(context::PC)
                ),
            )
        })?;
        let sp = view.memory().small_int(slot(context::STACKP)).unwrap_or(0);
        let method_oop = slot(context::METHOD);
        let method = CompiledCode::read(view, method_oop)
            .map_err(|why| err("the suspended context's method", method_oop, why))?;
        let closure = slot(context::CLOSURE_OR_NIL);
        let receiver = slot(context::RECEIVER);
        let is_block_code = method.is_block(view);
        let home = home_method(view, method.clone(), MAX_BLOCK_NESTING)
            .map_err(|why| err("the suspended context's method", method_oop, why))?;
        let method_class = home.method_class(view, classes);
        let selector = home.selector(view);
        let initial_pc = method.initial_pc(word);
        let decoded = decode_method(method.header.set, method.bytes, initial_pc, is_block_code);
        let end_pc = decoded.end_pc;
        let pc = match u64::try_from(pc) {
            Ok(pc) if pc >= initial_pc && pc < end_pc => pc,
            _ => {
                return Err(RuntimeError::PcOutsideMethod {
                    context: ctx.bits(),
                    // A negative pc is shown as its two's complement, as the heap holds it.
                    pc: pc.cast_unsigned(),
                    initial_pc,
                    end_pc,
                });
            }
        };
        let at = decoded
            .instructions
            .iter()
            .position(|i| i.pc == pc)
            .ok_or_else(|| {
                err(
                    "suspended context",
                    ctx,
                    format!("has pc {pc}, which falls inside an instruction of its method"),
                )
            })?;
        let lo = at.saturating_sub(WINDOW_BEFORE);
        let hi = (at + WINDOW_AFTER + 1).min(decoded.instructions.len());
        let window = decoded.instructions[lo..hi].to_vec();
        let literal = |i: u32| {
            method
                .literals
                .get(i as usize)
                .map(|&l| describe(view, classes, specials, l))
        };
        let special = |i: u8| special_selector(view, specials, i);
        let bytecodes = window.iter().map(|i| i.text(&literal, &special)).collect();
        let name_of_class = |c: Option<Oop>| {
            c.and_then(|c| classes.class_name(view, c))
                .unwrap_or_else(|| "?".into())
        };
        Ok(ResumePoint {
            scheduler,
            process,
            context: ctx,
            method: Oop::from_addr(method.addr),
            home_method: Oop::from_addr(home.addr),
            in_block: closure != nil || is_block_code,
            receiver,
            receiver_class: name_of_class(classes.class_of(view, receiver)),
            method_class,
            method_class_name: name_of_class(method_class),
            selector,
            selector_name: selector
                .and_then(|s| view.string(s))
                .unwrap_or_else(|| "?".into()),
            pc,
            stack_pointer: u64::try_from(sp).unwrap_or(0),
            header: method.header,
            initial_pc,
            end_pc,
            window,
            current: at - lo,
            bytecodes,
        })
    }
}

/// Special selector `i` and its argument count, from special object 23
/// (pairs of selector and count), or from the standard list.
pub fn special_selector(
    view: &ReadView<'_>,
    specials: &SpecialObjects,
    i: u8,
) -> Option<(String, u32)> {
    let from_image = specials.common().special_selectors().and_then(|a| {
        let sel = view.string(view.slot(a, 2 * u64::from(i))?)?;
        let n = view
            .memory()
            .small_int(view.slot(a, 2 * u64::from(i) + 1)?)?;
        Some((sel, u32::try_from(n).ok()?))
    });
    from_image.or_else(|| {
        SPECIAL_SELECTORS
            .get(i as usize)
            .map(|&(s, n)| (s.to_string(), n))
    })
}

/// A literal as a person reads it: `#foo`, `Foo` (a binding), `42`, `nil`,
/// `'text'`, `a Foo`.
pub fn describe(
    view: &ReadView<'_>,
    classes: &ClassTable,
    specials: &SpecialObjects,
    oop: Oop,
) -> String {
    if let Some(v) = view.memory().small_int(oop) {
        return v.to_string();
    }
    let nil = specials.nil_oop();
    match oop {
        o if o == nil => return "nil".into(),
        o if o == Oop::from_addr(specials.true_object()) => return "true".into(),
        o if o == Oop::from_addr(specials.false_object()) => return "false".into(),
        _ => {}
    }
    let class = classes.class_name_of(view, oop).unwrap_or_default();
    if let Some(s) = view.string(oop) {
        let s: String = s.chars().take(40).collect();
        return if class.ends_with("Symbol") {
            format!("#{s}")
        } else {
            format!("'{s}'")
        };
    }
    if let Some(name) = classes.class_name(view, oop) {
        return name;
    }
    // A binding: its key names it.
    if let Some(key) = view.slot(oop, 0).and_then(|k| view.string(k)) {
        if view.num_slots(oop) == Some(2) {
            return key;
        }
    }
    if class.is_empty() {
        format!("{oop:#x}")
    } else {
        let article = if class.starts_with(['A', 'E', 'I', 'O', 'U']) {
            "an"
        } else {
            "a"
        };
        format!("{article} {class}")
    }
}
