//! The interpreter proper: registers, the bytecode loop, sends, returns,
//! closures and process switches.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use spur_format::raw::{FMT_BYTES, FMT_COMPILED_METHOD, FMT_INDEXABLE, FMT_INDEXABLE_WITH_FIXED};
use spur_format::WordSize;
use spur_loader::HeapAccessError;
use spur_runtime::bytecodes::{decode_op, BytecodeSet, Op};
use spur_runtime::method::MethodHeader;
use spur_runtime::special_objects::index as so;
use spur_runtime::{Runtime, Signaller};

use crate::mem::{MemoryError, ObjectMemory, Oop};
use crate::plugins::Files;
use crate::prims::index0;
use crate::{InterpError, Options, Stats};
use spur_runtime::memory::{from_small_int, small_int};

/// Context slots (the same in every dialect).
pub(crate) const SENDER: u64 = 0;
pub(crate) const PC: u64 = 1;
pub(crate) const STACKP: u64 = 2;
pub(crate) const METHOD: u64 = 3;
pub(crate) const CLOSURE: u64 = 4;
pub(crate) const RECEIVER: u64 = 5;
pub(crate) const TEMP0: u64 = 6;
/// Slots of a small and a large context (fixed slots included).
const SMALL_CONTEXT: u64 = 6 + 16;
const LARGE_CONTEXT: u64 = 6 + 56;

/// BlockClosure and FullBlockClosure slots.
pub(crate) const CLOSURE_OUTER: u64 = 0;
pub(crate) const CLOSURE_START: u64 = 1;
pub(crate) const CLOSURE_NUM_ARGS: u64 = 2;
pub(crate) const FULL_RECEIVER: u64 = 3;

/// Process, scheduler and linked-list slots.
const PROC_NEXT: u64 = 0;
pub(crate) const PROC_CONTEXT: u64 = 1;
const PROC_PRIORITY: u64 = 2;
const PROC_LIST: u64 = 3;
const SCHED_LISTS: u64 = 0;
const SCHED_ACTIVE: u64 = 1;
const LIST_FIRST: u64 = 0;
const LIST_LAST: u64 = 1;
const SEM_EXCESS: u64 = 2;

/// Bytecodes between checks of the clock, the timer and the limits.
const CHECK_EVERY: u64 = 1024;
/// Method cache entries (a power of two).
const CACHE_SIZE: usize = 2048;
/// Code cache entries (a power of two).
const CODE_CACHE_SIZE: usize = 1024;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The image quit (primitive 113) with this exit code.
    Quit(i32),
    /// The run stopped; `line` says where and why, in one line.
    Stopped {
        /// Why it stopped.
        kind: StopKind,
        /// Where and why, in one line.
        line: String,
    },
}

impl Outcome {
    /// One line for stderr and reports.
    pub fn line(&self) -> String {
        match self {
            Outcome::Quit(c) => format!("quit with exit code {c}"),
            Outcome::Stopped { line, .. } => line.clone(),
        }
    }
    /// A short word for reports: `quit`, `bytecode-limit`, `timeout`, ...
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Quit(_) => "quit",
            Outcome::Stopped { kind, .. } => kind.name(),
        }
    }
}

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// The run's bytecode limit was reached.
    BytecodeLimit,
    /// The run's timeout passed.
    Timeout,
    /// Eden is full and the object could not go to old space (a memory
    /// with no new space); a wired run scavenges instead.
    EdenFull,
    /// Old space would grow past the run's growth limit, or the machine
    /// gave no more memory.
    OutOfMemory,
    /// Nothing is runnable and no timer is pending.
    Idle,
    /// A primitive the run cannot do without.
    MissingPrimitive,
    /// Anything else the image cannot handle (a broken object, a
    /// recursive doesNotUnderstand:, an unknown bytecode...).
    Error,
}

impl StopKind {
    /// A short word for reports: `bytecode-limit`, `timeout`, ...
    pub fn name(self) -> &'static str {
        match self {
            StopKind::BytecodeLimit => "bytecode-limit",
            StopKind::Timeout => "timeout",
            StopKind::EdenFull => "eden-full",
            StopKind::OutOfMemory => "out-of-memory",
            StopKind::Idle => "idle",
            StopKind::MissingPrimitive => "missing-primitive",
            StopKind::Error => "error",
        }
    }
}

/// Why the loop must stop.
#[derive(Debug)]
pub(crate) enum Stop {
    Quit(i32),
    Halt(StopKind, String),
}

/// What stopping on a memory error is: out of memory when old space could
/// not grow, eden full when it could not be asked to, an error otherwise.
pub(crate) fn memory_stop_kind(e: &MemoryError) -> StopKind {
    match e {
        MemoryError::EdenFull { .. } => StopKind::EdenFull,
        MemoryError::GrowthLimit { .. }
        | MemoryError::OldSpaceFull { .. }
        | MemoryError::Heap(HeapAccessError::NoRoomForSegment { .. }) => StopKind::OutOfMemory,
        _ => StopKind::Error,
    }
}

impl From<MemoryError> for Stop {
    // Out of line: every `?` on a memory call in the loop converts through here.
    #[cold]
    #[inline(never)]
    fn from(e: MemoryError) -> Self {
        Stop::Halt(memory_stop_kind(&e), e.to_string())
    }
}

pub(crate) type R<T> = Result<T, Stop>;

pub(crate) fn halt<T>(msg: impl Into<String>) -> R<T> {
    Err(Stop::Halt(StopKind::Error, msg.into()))
}

/// A primitive's result: done (the stack holds its result), or failed
/// with an error code (1 is the generic failure).
#[derive(Debug)]
pub(crate) enum Prim {
    Done,
    Fail(u32),
}

#[derive(Debug, Clone, Copy, Default)]
struct CacheEntry {
    selector: Oop,
    class_index: u32,
    method: Oop,
    primitive: u16,
}

/// Inline arithmetic for a special selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inline {
    Add,
    Sub,
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Ne,
    Mul,
    Div,
    Mod,
    BitShift,
    IntDiv,
    BitAnd,
    BitOr,
    Identical,
    NotIdentical,
}

/// The result of SmallInteger arithmetic, before it is an oop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arith {
    Int(i64),
    Bool(bool),
}

/// SmallInteger arithmetic as the special selectors and primitives 1..17
/// define it: `/` only when exact, `\\` and `//` floored (the result of
/// `\\` has the divisor's sign), `bitShift:` failing when bits would be
/// lost. `None`: the primitive fails (zero divisor, inexact, overflow); the
/// caller still checks the SmallInteger range.
#[inline(always)]
fn arith(op: Inline, x: i64, y: i64) -> Option<Arith> {
    use Arith::{Bool, Int};
    Some(match op {
        Inline::Add => Int(x.checked_add(y)?),
        Inline::Sub => Int(x.checked_sub(y)?),
        Inline::Mul => Int(x.checked_mul(y)?),
        Inline::Lt => Bool(x < y),
        Inline::Gt => Bool(x > y),
        Inline::Le => Bool(x <= y),
        Inline::Ge => Bool(x >= y),
        Inline::Eq => Bool(x == y),
        Inline::Ne => Bool(x != y),
        Inline::Div => {
            if y == 0 || x.checked_rem(y)? != 0 {
                return None;
            }
            Int(x.checked_div(y)?)
        }
        Inline::Mod => {
            let r = x.checked_rem(y)?;
            Int(if r != 0 && (r < 0) != (y < 0) {
                r + y
            } else {
                r
            })
        }
        Inline::IntDiv => {
            let q = x.checked_div(y)?;
            Int(if x % y != 0 && (x < 0) != (y < 0) {
                q - 1
            } else {
                q
            })
        }
        Inline::BitAnd => Int(x & y),
        Inline::BitOr => Int(x | y),
        Inline::BitShift => {
            if y >= 0 {
                if y > 62 {
                    return (x == 0).then_some(Int(0));
                }
                let r = x.checked_shl(u32::try_from(y).ok()?)?;
                if r >> y != x {
                    return None;
                }
                Int(r)
            } else {
                Int(x >> (-y).min(63))
            }
        }
        Inline::Identical | Inline::NotIdentical => return None,
    })
}

/// A method's bytes (from its header on: byte `pc - 1` is the one at `pc`)
/// and the instruction that starts at each of them, decoded once when the
/// method enters the code cache rather than at every step.
#[derive(Debug)]
struct Code {
    /// The method's header, decoded.
    header: MethodHeader,
    bytes: Box<[u8]>,
    /// `ops[pc - 1]`: the operation at `pc` and its length. Every offset is
    /// decoded (the header and literal bytes too), so a pc anywhere in the
    /// method runs what decoding its byte answers, as before the cache.
    ops: Box<[(Op, usize)]>,
}

impl Default for Code {
    fn default() -> Self {
        Code::new(NO_HEADER, &[])
    }
}

impl Code {
    fn new(header: MethodHeader, bytes: &[u8]) -> Self {
        let set = header.set;
        Code {
            header,
            bytes: bytes.into(),
            ops: (0..bytes.len())
                .map(|at| decode_op(set, bytes, at))
                .collect(),
        }
    }
}

/// The header of the empty code that fills unused code cache entries.
const NO_HEADER: MethodHeader = MethodHeader {
    value: 0,
    num_literals: 0,
    has_primitive: false,
    large_frame: false,
    num_temps: 0,
    num_args: 0,
    set: BytecodeSet::V3PlusClosures,
};

/// Where a young object's slots lie in new space and how many it has
/// (`ObjectMemory::young_slots`); `None` for any other object.
type View = Option<(usize, u64)>;

/// The byte offset of slot `i` of a body whose slot 0 is at `base`
/// (wrapping: an offset out of range fails the access's bounds check).
#[inline(always)]
fn slot_offset(base: usize, i: u64) -> usize {
    base.wrapping_add(ix(i).wrapping_mul(8))
}

/// The primitives that activate a closure (`value`, `value:`...,
/// `valueNoContextSwitch`...): `Vm::activate_closure` with the stacked arguments.
#[inline(always)]
pub(crate) fn is_value_primitive(p: u16) -> bool {
    matches!(p, 201..=205 | 207 | 209 | 221 | 222)
}

/// The word at byte `at` of `b`, as an oop.
#[inline(always)]
fn word_at(b: &[u8], at: usize) -> Option<Oop> {
    // A range whose end wrapped starts after it ends: `get` refuses it.
    let w = b.get(at..at.wrapping_add(8))?;
    Some(Oop::from_bits(u64::from_le_bytes(w.try_into().ok()?)))
}

/// Writes `v` as the word at byte `at` of `b`.
#[inline(always)]
fn put_word_at(b: &mut [u8], at: usize, v: Oop) -> Option<()> {
    b.get_mut(at..at.wrapping_add(8))?
        .copy_from_slice(&v.bits().to_le_bytes());
    Some(())
}

/// What a block's new context gets besides its stacked arguments and
/// copied values.
struct BlockSlots {
    closure: Oop,
    method: Oop,
    rcvr: Oop,
    argc: u64,
}

impl BlockSlots {
    /// Fills the fixed slots, arguments and copied values of a new block
    /// context of view `view` through one new-space slice, when it, the
    /// active context and the closure (view `cv`) are all young; `None`
    /// when any check fails, after which the caller stores every slot
    /// the general way (some may already hold the same values).
    #[inline(always)]
    fn fill(&self, vm: &mut Vm<'_>, view: View, cv: View, first: u64, copied: u64) -> Option<()> {
        let (cb, cn) = view?;
        let fb = vm.frame?;
        let (clb, cln) = cv?;
        let (sp, ctx) = (vm.sp, vm.ctx);
        if self.argc > sp
            || TEMP0 + sp > vm.ctx_slots
            || first + copied > cln
            || TEMP0 + self.argc + copied > cn
        {
            return None;
        }
        let b = vm.m.young_bytes_mut()?;
        put_word_at(b, slot_offset(cb, SENDER), ctx)?;
        put_word_at(b, slot_offset(cb, METHOD), self.method)?;
        put_word_at(b, slot_offset(cb, CLOSURE), self.closure)?;
        put_word_at(b, slot_offset(cb, RECEIVER), self.rcvr)?;
        let from = TEMP0 + sp - self.argc;
        for i in 0..self.argc {
            let v = word_at(b, slot_offset(fb, from + i))?;
            put_word_at(b, slot_offset(cb, TEMP0 + i), v)?;
        }
        for i in 0..copied {
            let v = word_at(b, slot_offset(clb, first + i))?;
            put_word_at(b, slot_offset(cb, TEMP0 + self.argc + i), v)?;
        }
        Some(())
    }
}

/// A `u64` index or length as a `usize`: exact on 64-bit hosts; on a
/// narrower host a value that does not fit becomes `usize::MAX`, which no
/// slice holds, so the access that uses it fails its bounds check.
#[inline(always)]
fn ix(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// The index in the scheduler's lists of the run queue of priority `pri`
/// (priorities below 1 share the first).
fn run_queue(pri: i64) -> u64 {
    u64::try_from(pri.saturating_sub(1)).unwrap_or(0)
}

/// A pending timer: signal `semaphore` at `at`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timer {
    pub semaphore: Oop,
    pub at: Instant,
}

pub(crate) struct Vm<'r> {
    pub m: &'r mut ObjectMemory,
    pub opts: Options,
    pub word: WordSize,
    pub nil: Oop,
    pub tru: Oop,
    pub fls: Oop,
    // Registers of the active context.
    pub ctx: Oop,
    pub method: Oop,
    pub pc: u64,
    pub sp: u64,
    pub receiver: Oop,
    set: BytecodeSet,
    /// The active method's bytes and decoded instructions, from the code cache.
    code: Rc<Code>,
    /// Methods' code by method oop, direct-mapped.
    code_cache: Vec<(Oop, Rc<Code>)>,
    ctx_slots: u64,
    /// Where the active context's slot 0 lies in new space
    /// (`ObjectMemory::young_slots`) when it is young, so that the stack
    /// and temps are one bounds-checked word access away; `None` sends
    /// every access through `fetch` / `store`. Derived from `ctx` by
    /// `refresh_frame`, which runs whenever the active context changes and
    /// after anything that may move objects or change the context's
    /// header (a become, a tenuring, a primitive).
    frame: Option<usize>,
    /// The bytecode count at which the loop next stops stepping (to check
    /// interrupts, or at its limit).
    until: u64,
    /// The error code of the primitive that just failed.
    pub prim_fail: Option<u32>,
    /// How many of the newest contexts were made by sends since a context
    /// was last exposed (`thisContext`, a closure, a process switch): those
    /// nobody else can reference, so they are reused when they return.
    reclaimable: u64,
    /// Returned contexts to reuse, small and large, with how many of their
    /// temp and stack slots may hold values.
    free_contexts: [Vec<(Oop, u64)>; 2],
    cache: Vec<CacheEntry>,
    /// The special selectors: selector, argument count, inline arithmetic.
    specials: [(Oop, u32, Option<Inline>); 32],
    pub ci_context: u32,
    pub ci_closure: u32,
    pub ci_full_closure: u32,
    pub ci_array: u32,
    pub ci_message: u32,
    pub ci_string: u32,
    pub ci_float: u32,
    pub ci_large_pos: u32,
    pub ci_large_neg: u32,
    pub stats: Stats,
    pub output: Vec<u8>,
    pub files: Files,
    pub start: Instant,
    pub timer: Option<Timer>,
    /// Named primitives of modules this VM does not have, as they failed:
    /// `(module.name, first bytecode count, calls)`.
    pub missing: Vec<(String, u64, u64)>,
    pub missing_index: HashMap<String, usize>,
    /// The primitive running, for the stop line.
    pub current_prim: u16,
    /// The named primitive running (`Module>>name`), for the stop line.
    pub current_named: Option<String>,
    traced: u64,
    pub(crate) deadline: Option<Instant>,
    preemption_yields: bool,
    /// The runtime's external semaphore table, as a handle other threads
    /// may hold too; its signals unpark this thread.
    pub signals: Signaller,
}

impl std::fmt::Debug for Vm<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("ctx", &self.ctx)
            .field("pc", &self.pc)
            .field("sp", &self.sp)
            .finish_non_exhaustive()
    }
}

impl<'r> Vm<'r> {
    pub fn new(rt: &'r mut Runtime, opts: &Options) -> Result<Self, InterpError> {
        let context = rt.resume_point().context.bits();
        let preemption_yields = rt.settings().preemption_yields;
        let signals = rt.semaphores().signaller();
        signals.wake_on_signal(Some(std::thread::current()));
        let m = rt.memory_mut();
        m.set_growth_limit(opts.growth_limit);
        let word = m.word();
        let ci = |m: &ObjectMemory, i: usize, default: u32| {
            m.class_index_of_class(m.special(i)).unwrap_or(default)
        };
        let ci_context = ci(m, so::CLASS_METHOD_CONTEXT, 36);
        let ci_array = ci(m, so::CLASS_ARRAY, 51);
        let ci_message = ci(m, so::CLASS_MESSAGE, 35);
        let ci_string = ci(m, so::CLASS_BYTE_STRING, 52);
        let ci_float = ci(m, so::CLASS_FLOAT, 34);
        let ci_large_pos = ci(m, so::CLASS_LARGE_POSITIVE_INTEGER, 33);
        let ci_large_neg = ci(m, so::CLASS_LARGE_NEGATIVE_INTEGER, 32);
        // BlockClosure and FullBlockClosure are special objects 36 and 37;
        // the class table's fixed indices 37 and 38 when they are not.
        let ci_closure = ci(m, 36, 37);
        let ci_full_closure = ci(m, 37, 38);
        let mut specials = [(Oop::default(), 0, None); 32];
        let sel = m.special(so::SPECIAL_SELECTORS);
        for (i, &(_, argc)) in (0u64..).zip(spur_runtime::bytecodes::SPECIAL_SELECTORS.iter()) {
            let s = m.fetch(sel, 2 * i).unwrap_or(m.nil());
            let n = m
                .fetch(sel, 2 * i + 1)
                .ok()
                .and_then(|n| m.small_int(n))
                .unwrap_or(i64::from(argc));
            let inline = m.string(s).and_then(|t| {
                Some(match t.as_str() {
                    "+" => Inline::Add,
                    "-" => Inline::Sub,
                    "<" => Inline::Lt,
                    ">" => Inline::Gt,
                    "<=" => Inline::Le,
                    ">=" => Inline::Ge,
                    "=" => Inline::Eq,
                    "~=" => Inline::Ne,
                    "*" => Inline::Mul,
                    "/" => Inline::Div,
                    "\\\\" => Inline::Mod,
                    "bitShift:" => Inline::BitShift,
                    "//" => Inline::IntDiv,
                    "bitAnd:" => Inline::BitAnd,
                    "bitOr:" => Inline::BitOr,
                    "==" => Inline::Identical,
                    "~~" => Inline::NotIdentical,
                    _ => return None,
                })
            });
            // Clamped to 0..=15, so the conversion cannot fail.
            let n = u32::try_from(n.clamp(0, 15)).unwrap_or(0);
            if let Some(e) = specials.get_mut(ix(i)) {
                *e = (s, n, inline);
            }
        }
        let mut vm = Vm {
            nil: m.nil(),
            tru: m.true_object(),
            fls: m.false_object(),
            word,
            m,
            opts: opts.clone(),
            ctx: Oop::from_bits(context),
            method: Oop::default(),
            pc: 0,
            sp: 0,
            receiver: Oop::default(),
            set: BytecodeSet::V3PlusClosures,
            code: Rc::default(),
            code_cache: vec![(Oop::default(), Rc::default()); CODE_CACHE_SIZE],
            ctx_slots: 0,
            frame: None,
            until: 0,
            prim_fail: None,
            reclaimable: 0,
            free_contexts: [Vec::new(), Vec::new()],
            cache: vec![CacheEntry::default(); CACHE_SIZE],
            specials,
            ci_context,
            ci_closure,
            ci_full_closure,
            ci_array,
            ci_message,
            ci_string,
            ci_float,
            ci_large_pos,
            ci_large_neg,
            stats: Stats::default(),
            output: Vec::new(),
            files: Files::default(),
            start: Instant::now(),
            timer: None,
            missing: Vec::new(),
            missing_index: HashMap::new(),
            current_prim: 0,
            current_named: None,
            traced: 0,
            deadline: opts.timeout.and_then(|t| Instant::now().checked_add(t)),
            preemption_yields,
            signals,
        };
        vm.fetch_registers().map_err(|e| InterpError::BadResume {
            context,
            why: match e {
                Stop::Halt(_, s) => s,
                Stop::Quit(c) => format!("quit {c}"),
            },
        })?;
        Ok(vm)
    }

    // ---- registers ----

    /// Loads the registers from the active context object.
    pub fn fetch_registers(&mut self) -> R<()> {
        let ctx = self.ctx;
        let view = self.m.young_slots(ctx);
        // A young context's four registers through one new-space slice.
        let regs = view.and_then(|(base, n)| {
            if RECEIVER >= n {
                return None;
            }
            let b = self.m.young_bytes_mut()?;
            let at = |i| word_at(b, slot_offset(base, i));
            Some([at(METHOD)?, at(PC)?, at(STACKP)?, at(RECEIVER)?])
        });
        let (method, pc, sp) = match regs {
            Some([method, pc, sp, _]) => (method, pc, sp),
            None => (
                self.fetch_via(view, ctx, METHOD)?,
                self.fetch_via(view, ctx, PC)?,
                Oop::default(),
            ),
        };
        let Some(pc) = self.m.small_int(pc) else {
            return halt(format!("context {ctx} has no pc (it has returned)"));
        };
        let sp = match regs {
            Some(_) => sp,
            None => self.fetch_via(view, ctx, STACKP)?,
        };
        let sp = self.m.small_int(sp).unwrap_or(0);
        let code = self.code_of(method)?;
        self.method = method;
        self.set = code.header.set;
        self.code = code;
        // A negative pc or stack pointer counts as 0, as it always has.
        self.pc = u64::try_from(pc).unwrap_or(0);
        self.sp = u64::try_from(sp).unwrap_or(0);
        self.receiver = match regs {
            Some([.., receiver]) => receiver,
            None => self.fetch_via(view, ctx, RECEIVER)?,
        };
        self.ctx_slots = match view {
            Some((_, n)) => n,
            None => self.m.num_slots(ctx)?,
        };
        if TEMP0 + self.sp > self.ctx_slots {
            return halt(format!(
                "context {ctx} has stack pointer {} but {} slots",
                self.sp, self.ctx_slots
            ));
        }
        self.frame = view.map(|(base, _)| base);
        Ok(())
    }

    /// Re-derives `frame` from the active context: where its slots lie in
    /// new space, when it is young, mutable and of `ctx_slots` slots.
    #[inline]
    pub(crate) fn refresh_frame(&mut self) {
        self.frame = match self.m.young_slots(self.ctx) {
            Some((base, n)) if n == self.ctx_slots => Some(base),
            _ => None,
        };
    }

    /// The byte offset in new space of slot `i` of the active context,
    /// when `frame` holds one; the caller has checked `i < ctx_slots`.
    #[inline(always)]
    fn frame_slot(&self, i: u64) -> Option<usize> {
        Some(slot_offset(self.frame?, i))
    }

    /// The active context's view (see `View`).
    #[inline(always)]
    fn frame_view(&self) -> View {
        self.frame.map(|base| (base, self.ctx_slots))
    }

    /// Slot `i` of `obj`, whose view is `view`.
    #[inline(always)]
    fn fetch_via(&self, view: View, obj: Oop, i: u64) -> R<Oop> {
        if let Some((base, n)) = view {
            if i < n {
                if let Some(v) = self.m.young_word(slot_offset(base, i)) {
                    return Ok(v);
                }
            }
        }
        self.m.fetch(obj, i).map_err(Stop::from)
    }

    /// Stores `v` into slot `i` of `obj`, whose view is `view` (a young
    /// object needs no barrier).
    #[inline(always)]
    fn store_via(&mut self, view: View, obj: Oop, i: u64, v: Oop) -> R<()> {
        if let Some((base, n)) = view {
            if i < n && self.m.set_young_word(slot_offset(base, i), v) {
                return Ok(());
            }
        }
        self.m.store(obj, i, v).map_err(Stop::from)
    }

    /// Slot `i` of the active context.
    #[inline(always)]
    fn ctx_fetch(&self, i: u64) -> R<Oop> {
        if i < self.ctx_slots {
            if let Some(v) = self.frame_slot(i).and_then(|at| self.m.young_word(at)) {
                return Ok(v);
            }
        }
        self.m.fetch(self.ctx, i).map_err(Stop::from)
    }

    /// Stores `v` into slot `i` of the active context.
    #[inline(always)]
    fn ctx_store(&mut self, i: u64, v: Oop) -> R<()> {
        if i < self.ctx_slots {
            if let Some(at) = self.frame_slot(i) {
                if self.m.set_young_word(at, v) {
                    return Ok(());
                }
            }
        }
        self.m.store(self.ctx, i, v).map_err(Stop::from)
    }

    /// `store_registers` through one new-space slice when the active
    /// context is young.
    #[inline(always)]
    fn store_registers_fast(&mut self) -> R<()> {
        if let Some(fb) = self.frame {
            if STACKP < self.ctx_slots {
                let pc = self.uint(self.pc);
                let sp = self.uint(self.sp);
                if let Some(b) = self.m.young_bytes_mut() {
                    if put_word_at(b, slot_offset(fb, PC), pc)
                        .and_then(|()| put_word_at(b, slot_offset(fb, STACKP), sp))
                        .is_some()
                    {
                        return Ok(());
                    }
                }
            }
        }
        self.store_registers()
    }

    /// Writes pc and stack pointer back into the active context.
    pub fn store_registers(&mut self) -> R<()> {
        let pc = self.uint(self.pc);
        let sp = self.uint(self.sp);
        self.ctx_store(PC, pc)?;
        self.ctx_store(STACKP, sp)
    }

    /// Makes `method`'s code (from the code cache) the one the loop runs,
    /// and its bytecode set `self.set`.
    fn load_code(&mut self, method: Oop) -> R<()> {
        let code = self.code_of(method)?;
        self.set = code.header.set;
        self.code = code;
        Ok(())
    }

    /// `method`'s header and code from the code cache, decoded on a miss
    /// (failing as `header_of` does when it is not compiled code).
    #[inline]
    fn code_of(&mut self, method: Oop) -> R<Rc<Code>> {
        let slot = (method.bits() >> 3) as usize & (CODE_CACHE_SIZE - 1);
        let (m, code) = &self.code_cache[slot];
        if *m == method && method != Oop::default() {
            return Ok(code.clone());
        }
        self.decode_code(method, slot)
    }

    #[inline(never)]
    fn decode_code(&mut self, method: Oop, slot: usize) -> R<Rc<Code>> {
        let h = self.header_of(method)?;
        let code = Rc::new(Code::new(h, self.m.bytes(method)?));
        self.code_cache[slot] = (method, code.clone());
        Ok(code)
    }

    /// Drops `method` from the code cache (after its header or literals
    /// changed); the active method's code runs on as it was decoded.
    pub fn forget_code(&mut self, method: Oop) {
        let slot = (method.bits() >> 3) as usize & (CODE_CACHE_SIZE - 1);
        if self.code_cache[slot].0 == method {
            self.code_cache[slot] = (Oop::default(), Rc::default());
        }
    }

    /// After a become: every oop the interpreter keeps outside the heap is
    /// re-read (the registers were passed as roots), and the caches go.
    pub fn after_become(&mut self) -> R<()> {
        self.flush_cache();
        self.flush_code_cache();
        self.free_contexts = [Vec::new(), Vec::new()];
        self.expose();
        for e in self.specials.iter_mut() {
            e.0 = self.m.forwarded(e.0);
        }
        if let Some(t) = self.timer.as_mut() {
            t.semaphore = self.m.forwarded(t.semaphore);
        }
        self.refresh_frame();
        self.load_code(self.method)
    }

    /// Forgets every method's cached bytes (after a method's bytes change).
    pub fn flush_code_cache(&mut self) {
        self.code_cache.fill((Oop::default(), Rc::default()));
        let m = self.method;
        let _ = self.load_code(m);
    }

    pub fn header_of(&self, method: Oop) -> R<MethodHeader> {
        let f = self.m.format(method)?;
        if f < FMT_COMPILED_METHOD {
            return halt(format!("{method} (format {f}) is not compiled code"));
        }
        let h = self.m.fetch(method, 0)?;
        MethodHeader::decode(self.word, h)
            .ok_or_else(|| Stop::Halt(StopKind::Error, format!("{method}: bad method header")))
    }

    pub fn initial_pc(&self, h: &MethodHeader) -> u64 {
        (h.num_literals + 1) * self.word.bytes() + 1
    }

    // ---- small helpers ----

    #[inline]
    pub fn int(&self, v: i64) -> Oop {
        self.m.from_small_int(v).unwrap_or(self.nil)
    }
    /// The SmallInteger `v` (nil when out of range), for pcs, stack
    /// pointers and sizes.
    #[inline]
    pub fn uint(&self, v: u64) -> Oop {
        i64::try_from(v)
            .ok()
            .and_then(|v| self.m.from_small_int(v))
            .unwrap_or(self.nil)
    }
    /// The Character `c` (nil when the heap cannot hold it).
    pub fn chr(&self, c: u32) -> Oop {
        self.m.from_character(c).unwrap_or(self.nil)
    }
    #[inline]
    pub fn boolean(&self, b: bool) -> Oop {
        if b {
            self.tru
        } else {
            self.fls
        }
    }

    // The stack and temp accessors are inlined into the loop; their error
    // paths are out of line so that each use stays a few instructions.

    #[inline(always)]
    pub fn push(&mut self, v: Oop) -> R<()> {
        self.sp += 1;
        if TEMP0 + self.sp > self.ctx_slots {
            return self.stack_overflow();
        }
        self.ctx_store(TEMP0 + self.sp - 1, v)
    }
    #[cold]
    #[inline(never)]
    fn stack_overflow(&self) -> R<()> {
        halt(format!("stack overflow in context {}", self.ctx))
    }
    #[cold]
    #[inline(never)]
    fn stack_underflow<T>(&self, n: u64) -> R<T> {
        halt(format!("stack underflow (item {n} of {})", self.sp))
    }
    #[inline(always)]
    pub fn pop(&mut self) -> R<Oop> {
        if self.sp == 0 {
            return self.stack_underflow(0);
        }
        let v = self.ctx_fetch(TEMP0 + self.sp - 1)?;
        self.sp -= 1;
        Ok(v)
    }
    #[inline(always)]
    pub fn stack_value(&self, n: u64) -> R<Oop> {
        if n >= self.sp {
            return self.stack_underflow(n);
        }
        self.ctx_fetch(TEMP0 + self.sp - 1 - n)
    }
    #[inline(always)]
    pub fn pop_n(&mut self, n: u64) -> R<()> {
        if n > self.sp {
            return self.stack_underflow(n);
        }
        self.sp -= n;
        Ok(())
    }
    #[inline(always)]
    pub fn pop_n_push(&mut self, n: u64, v: Oop) -> R<()> {
        self.pop_n(n)?;
        self.push(v)
    }
    pub(crate) fn top_put(&mut self, v: Oop) -> R<()> {
        if self.sp == 0 {
            return halt("stack underflow");
        }
        self.ctx_store(TEMP0 + self.sp - 1, v)
    }
    #[inline(always)]
    fn temp(&self, i: u64) -> R<Oop> {
        self.ctx_fetch(TEMP0 + i)
    }
    #[inline(always)]
    fn literal(&self, i: u32) -> R<Oop> {
        self.m.fetch(self.method, 1 + i as u64).map_err(Stop::from)
    }

    /// The class index of instances of `class`.
    pub fn class_index(&self, class: Oop) -> R<u32> {
        self.m.class_index_of_class(class).ok_or_else(|| {
            Stop::Halt(
                StopKind::Error,
                format!("{class} is not in the class table"),
            )
        })
    }

    pub fn new_array(&mut self, n: u64) -> R<Oop> {
        Ok(self.m.allocate_slots(self.ci_array, FMT_INDEXABLE, n)?)
    }

    pub fn new_string(&mut self, s: &[u8]) -> R<Oop> {
        let o = self.m.allocate_bytes(self.ci_string, s.len() as u64)?;
        self.m.bytes_mut(o)?.copy_from_slice(s);
        Ok(o)
    }

    // ---- naming, for traces and stop lines ----

    /// The home method of compiled code (a CompiledBlock's outer chain).
    pub fn home_method(&self, mut code: Oop) -> Oop {
        for _ in 0..64 {
            let Ok(h) = self.header_of(code) else {
                return code;
            };
            let Ok(last) = self.m.fetch(code, h.num_literals) else {
                return code;
            };
            if self.m.format(last).is_ok_and(|f| f >= FMT_COMPILED_METHOD) {
                code = last;
            } else {
                return code;
            }
        }
        code
    }

    /// The class a method is installed in (the value of its last literal).
    pub fn method_class(&self, method: Oop) -> Option<Oop> {
        let home = self.home_method(method);
        let h = self.header_of(home).ok()?;
        let binding = self.m.fetch(home, h.num_literals).ok()?;
        self.m.fetch(binding, 1).ok()
    }

    pub fn selector_of(&self, method: Oop) -> Option<Oop> {
        let home = self.home_method(method);
        let h = self.header_of(home).ok()?;
        let p = self.m.fetch(home, h.num_literals.checked_sub(1)?).ok()?;
        if self.m.string(p).is_some() {
            return Some(p);
        }
        self.m
            .fetch(p, 1)
            .ok()
            .filter(|s| self.m.string(*s).is_some())
    }

    /// `Class>>selector`, or `[] in Class>>selector` for block code.
    pub fn method_name(&self, method: Oop) -> String {
        let block = self.home_method(method) != method;
        let class = self
            .method_class(method)
            .and_then(|c| self.m.class_name(c))
            .unwrap_or_else(|| "?".into());
        let sel = self
            .selector_of(method)
            .and_then(|s| self.m.string(s))
            .unwrap_or_else(|| "?".into());
        format!("{}{class}>>{sel}", if block { "[] in " } else { "" })
    }

    fn context_name(&self) -> String {
        let closure = self.m.fetch(self.ctx, CLOSURE).unwrap_or(self.nil);
        let name = self.method_name(self.method);
        if closure != self.nil && !name.starts_with("[] in ") {
            format!("[] in {name}")
        } else {
            name
        }
    }

    fn stop_line(&self, kind: StopKind, why: &str) -> String {
        let prim = match (&self.current_named, self.current_prim) {
            (Some(n), _) => format!(", primitive {n}"),
            (None, 0) => String::new(),
            (None, p) => format!(", primitive {p}"),
        };
        let mut line = format!(
            "stopped ({}) in {}{prim} after {} bytecodes: {why}",
            kind.name(),
            self.context_name(),
            self.stats.bytecodes
        );
        if let Some((name, at, calls)) = self.missing.first() {
            line.push_str(&format!(
                "; missing primitive {name} (failed first after {at} bytecodes, {calls} calls)"
            ));
            if self.missing.len() > 1 {
                let rest: Vec<&str> = self.missing[1..].iter().map(|m| m.0.as_str()).collect();
                line.push_str(&format!("; also missing: {}", rest.join(", ")));
            }
        }
        line
    }

    // ---- the loop ----

    pub fn run(&mut self) -> Outcome {
        self.start = Instant::now();
        let r = self.run_loop();
        let _ = self.store_registers();
        match r {
            Err(Stop::Quit(c)) => Outcome::Quit(c),
            Err(Stop::Halt(kind, why)) => {
                let kind = if kind == StopKind::Error && !self.missing.is_empty() {
                    StopKind::MissingPrimitive
                } else {
                    kind
                };
                Outcome::Stopped {
                    kind,
                    line: self.stop_line(kind, &why),
                }
            }
            Ok(()) => Outcome::Stopped {
                kind: StopKind::Error,
                line: self.stop_line(StopKind::Error, "the loop ended"),
            },
        }
    }

    fn run_loop(&mut self) -> R<()> {
        let limit = self.opts.max_bytecodes.unwrap_or(u64::MAX);
        let mut next_check = self.stats.bytecodes + CHECK_EVERY;
        loop {
            // Every step counts one bytecode: the checks come between runs
            // of steps, at the same counts as a check before every step.
            self.until = next_check.min(limit);
            while self.stats.bytecodes < self.until {
                self.step()?;
            }
            if self.stats.bytecodes >= next_check {
                next_check = self.stats.bytecodes + CHECK_EVERY;
                self.check_interrupts()?;
                self.at_safe_point()?;
            }
            if self.stats.bytecodes >= limit {
                return Err(Stop::Halt(
                    StopKind::BytecodeLimit,
                    format!("the limit of {limit} bytecodes"),
                ));
            }
        }
    }

    fn check_interrupts(&mut self) -> R<()> {
        let now = Instant::now();
        if let Some(d) = self.deadline {
            if now >= d {
                return Err(Stop::Halt(
                    StopKind::Timeout,
                    format!(
                        "the timeout of {:.1} s",
                        self.opts.timeout.unwrap_or_default().as_secs_f64()
                    ),
                ));
            }
        }
        if let Some(t) = self.timer {
            if now >= t.at {
                self.timer = None;
                self.signal(t.semaphore)?;
            }
        }
        for sem in self.external_signals() {
            self.signal(sem)?;
        }
        Ok(())
    }

    /// Executes one instruction: the commonest here, in the loop, the
    /// others (and the slow paths) in `execute`.
    #[inline(always)]
    fn step(&mut self) -> R<()> {
        let at = ix(self.pc.wrapping_sub(1));
        let Some(&(op, len)) = self.code.ops.get(at) else {
            return self.past_the_end();
        };
        self.pc += len as u64;
        self.stats.bytecodes += 1;
        match op {
            Op::PushTemp(i) => {
                if self.push_temp_fast(i as u64).is_some() {
                    return Ok(());
                }
                let v = self.temp(i as u64)?;
                self.push(v)
            }
            Op::PushReceiver => self.push(self.receiver),
            Op::PushTrue => self.push(self.tru),
            Op::PushFalse => self.push(self.fls),
            Op::PushNil => self.push(self.nil),
            Op::PushLiteralConstant(i) => {
                let v = self.literal(i)?;
                self.push(v)
            }
            Op::PushReceiverVariable(i) => {
                let v = self.m.fetch(self.receiver, i as u64)?;
                self.push(v)
            }
            Op::PushInteger(v) => {
                let o = self.int(v);
                self.push(o)
            }
            Op::Pop => {
                // The value of a young active context needs no reading.
                if self.frame.is_some() && self.sp > 0 && TEMP0 + self.sp <= self.ctx_slots {
                    self.sp -= 1;
                    return Ok(());
                }
                self.pop().map(|_| ())
            }
            Op::Dup => {
                let v = self.stack_value(0)?;
                self.push(v)
            }
            Op::StoreTemp { index, pop } => {
                if self.store_temp_fast(index as u64, pop).is_some() {
                    return Ok(());
                }
                let v = if pop {
                    self.pop()?
                } else {
                    self.stack_value(0)?
                };
                self.ctx_store(TEMP0 + index as u64, v)
            }
            Op::Jump { target } => {
                self.pc = target;
                Ok(())
            }
            Op::JumpIfTrue { target } => self.cond_jump(true, target),
            Op::JumpIfFalse { target } => self.cond_jump(false, target),
            Op::SpecialSend { index } => self.special_send(index),
            Op::Send { literal, args } => {
                let sel = self.literal(literal)?;
                self.send_fast(sel, args)
            }
            Op::BlockReturnTop => {
                let v = self.pop()?;
                self.block_return(v)
            }
            _ => self.execute(op),
        }
    }

    /// Pushes temp `i` of a young active context through one new-space
    /// slice; `None`, with nothing changed, when `temp` and `push` must.
    #[inline(always)]
    fn push_temp_fast(&mut self, i: u64) -> Option<()> {
        let fb = self.frame?;
        let (t, d) = (TEMP0 + i, TEMP0 + self.sp);
        if t >= self.ctx_slots || d >= self.ctx_slots {
            return None;
        }
        let b = self.m.young_bytes_mut()?;
        let v = word_at(b, slot_offset(fb, t))?;
        put_word_at(b, slot_offset(fb, d), v)?;
        self.sp += 1;
        Some(())
    }

    /// Stores the stack top of a young active context into temp `i`
    /// (popping it when `pop`) through one new-space slice; `None`, with
    /// nothing changed, when the general path must.
    #[inline(always)]
    fn store_temp_fast(&mut self, i: u64, pop: bool) -> Option<()> {
        let fb = self.frame?;
        let t = TEMP0 + i;
        if self.sp == 0 || TEMP0 + self.sp > self.ctx_slots || t >= self.ctx_slots {
            return None;
        }
        let top = slot_offset(fb, TEMP0 + self.sp - 1);
        let b = self.m.young_bytes_mut()?;
        let v = word_at(b, top)?;
        put_word_at(b, slot_offset(fb, t), v)?;
        if pop {
            self.sp -= 1;
        }
        Some(())
    }

    /// SmallInteger arithmetic of a special selector on the top two stack
    /// values of a young active context, through one new-space slice,
    /// with the comparison and jump fused as in `special_send`; `None`,
    /// with nothing changed, when `special_send` must do it.
    #[inline(always)]
    fn int_send_fast(&mut self, op: Inline) -> Option<()> {
        let fb = self.frame?;
        if self.sp < 2 || TEMP0 + self.sp > self.ctx_slots {
            return None;
        }
        let word = self.word;
        let ia = slot_offset(fb, TEMP0 + self.sp - 2);
        let ib = slot_offset(fb, TEMP0 + self.sp - 1);
        let (tru, fls) = (self.tru, self.fls);
        let b = self.m.young_bytes_mut()?;
        let x = small_int(word, word_at(b, ia)?)?;
        let y = small_int(word, word_at(b, ib)?)?;
        match arith(op, x, y)? {
            Arith::Bool(r) => {
                put_word_at(b, ia, if r { tru } else { fls })?;
                self.sp -= 2;
                if let Some((len, on, target)) = self.next_cond_jump() {
                    self.pc += len as u64;
                    self.stats.bytecodes += 1;
                    if r == on {
                        self.pc = target;
                    }
                } else {
                    self.sp += 1;
                }
            }
            Arith::Int(v) => {
                put_word_at(b, ia, from_small_int(word, v)?)?;
                self.sp -= 1;
            }
        }
        Some(())
    }

    #[cold]
    #[inline(never)]
    fn past_the_end(&self) -> R<()> {
        halt(format!(
            "pc {} is past the end of the method ({} bytes)",
            self.pc,
            self.code.bytes.len()
        ))
    }

    #[inline(never)]
    fn execute(&mut self, op: Op) -> R<()> {
        match op {
            Op::PushReceiverVariable(i) => {
                let v = self.m.fetch(self.receiver, i as u64)?;
                self.push(v)
            }
            Op::PushLiteralVariable(i) => {
                let a = self.literal(i)?;
                let v = self.m.fetch(a, 1)?;
                self.push(v)
            }
            Op::PushLiteralConstant(i) => {
                let v = self.literal(i)?;
                self.push(v)
            }
            Op::PushTemp(i) => {
                let v = self.temp(i as u64)?;
                self.push(v)
            }
            Op::PushReceiver => self.push(self.receiver),
            Op::PushTrue => self.push(self.tru),
            Op::PushFalse => self.push(self.fls),
            Op::PushNil => self.push(self.nil),
            Op::PushInteger(v) => {
                let o = self.int(v);
                self.push(o)
            }
            Op::PushCharacter(c) => {
                let o = self.chr(c);
                self.push(o)
            }
            Op::PushThisContext => {
                self.expose();
                self.store_registers()?;
                self.push(self.ctx)
            }
            Op::PushThisProcess => {
                let p = self.active_process()?;
                self.push(p)
            }
            Op::Dup => {
                let v = self.stack_value(0)?;
                self.push(v)
            }
            Op::Pop => self.pop().map(|_| ()),
            Op::PushArray { size, pop } => {
                let a = self.new_array(size as u64)?;
                if pop {
                    for i in (0..size as u64).rev() {
                        let v = self.pop()?;
                        self.m.store(a, i, v)?;
                    }
                }
                self.push(a)
            }
            Op::StoreReceiverVariable { index, pop } => {
                let v = if pop {
                    self.pop()?
                } else {
                    self.stack_value(0)?
                };
                self.m.store(self.receiver, index as u64, v)?;
                Ok(())
            }
            Op::StoreLiteralVariable { index, pop } => {
                let v = if pop {
                    self.pop()?
                } else {
                    self.stack_value(0)?
                };
                let a = self.literal(index)?;
                self.m.store(a, 1, v)?;
                Ok(())
            }
            Op::StoreTemp { index, pop } => {
                let v = if pop {
                    self.pop()?
                } else {
                    self.stack_value(0)?
                };
                self.ctx_store(TEMP0 + index as u64, v)
            }
            Op::PushRemoteTemp { index, vector, .. } => {
                let vec = self.temp(vector as u64)?;
                let v = self.m.fetch(vec, index as u64)?;
                self.push(v)
            }
            Op::StoreRemoteTemp {
                index, vector, pop, ..
            } => {
                let v = if pop {
                    self.pop()?
                } else {
                    self.stack_value(0)?
                };
                let vec = self.temp(vector as u64)?;
                self.m.store(vec, index as u64, v)?;
                Ok(())
            }
            Op::Send { literal, args } => {
                let sel = self.literal(literal)?;
                self.send(sel, args, None)
            }
            Op::SuperSend {
                literal,
                args,
                directed,
            } => {
                let sel = self.literal(literal)?;
                let class = if directed {
                    self.pop()?
                } else {
                    self.method_class(self.method).ok_or_else(|| {
                        Stop::Halt(
                            StopKind::Error,
                            "super send from a method with no class".into(),
                        )
                    })?
                };
                let sup = self.m.fetch(class, 0)?;
                self.send(sel, args, Some(sup))
            }
            Op::SpecialSend { index } => self.special_send(index),
            Op::Jump { target } => {
                self.pc = target;
                Ok(())
            }
            Op::JumpIfTrue { target } => self.cond_jump(true, target),
            Op::JumpIfFalse { target } => self.cond_jump(false, target),
            Op::ReturnReceiver => self.method_return(self.receiver),
            Op::ReturnTrue => self.method_return(self.tru),
            Op::ReturnFalse => self.method_return(self.fls),
            Op::ReturnNil => self.method_return(self.nil),
            Op::ReturnTop => {
                let v = self.pop()?;
                self.method_return(v)
            }
            Op::BlockReturnTop => {
                let v = self.pop()?;
                self.block_return(v)
            }
            Op::BlockReturnNil => self.block_return(self.nil),
            Op::PushClosure { copied, args, size } => {
                self.expose();
                let c = self.m.allocate_slots(
                    self.ci_closure,
                    FMT_INDEXABLE_WITH_FIXED,
                    3 + copied as u64,
                )?;
                self.m.store(c, CLOSURE_OUTER, self.ctx)?;
                let start = self.uint(self.pc);
                self.m.store(c, CLOSURE_START, start)?;
                let n = self.int(args as i64);
                self.m.store(c, CLOSURE_NUM_ARGS, n)?;
                for i in (0..copied as u64).rev() {
                    let v = self.pop()?;
                    self.m.store(c, 3 + i, v)?;
                }
                self.pc += size as u64;
                self.push(c)
            }
            Op::PushFullClosure {
                literal,
                copied,
                receiver_on_stack,
                ignore_outer,
            } => {
                self.expose();
                let block = self.literal(literal)?;
                let h = self.header_of(block)?;
                let c = self.m.allocate_slots(
                    self.ci_full_closure,
                    FMT_INDEXABLE_WITH_FIXED,
                    4 + copied as u64,
                )?;
                let outer = if ignore_outer { self.nil } else { self.ctx };
                self.m.store(c, CLOSURE_OUTER, outer)?;
                self.m.store(c, CLOSURE_START, block)?;
                let n = self.int(h.num_args as i64);
                self.m.store(c, CLOSURE_NUM_ARGS, n)?;
                for i in (0..copied as u64).rev() {
                    let v = self.pop()?;
                    self.m.store(c, 4 + i, v)?;
                }
                let r = if receiver_on_stack {
                    self.pop()?
                } else {
                    self.receiver
                };
                self.m.store(c, FULL_RECEIVER, r)?;
                self.push(c)
            }
            Op::CallPrimitive(_) => {
                // Runs after the primitive failed (or when the method was
                // activated without it): store the error code when a
                // store into a temp follows.
                if let Some(code) = self.prim_fail.take() {
                    let next = ix(self.pc)
                        .checked_sub(1)
                        .and_then(|at| self.code.bytes.get(at))
                        .copied();
                    let long_store = match self.set {
                        BytecodeSet::V3PlusClosures => 0x81,
                        BytecodeSet::SistaV1 => 0xF5,
                    };
                    if next == Some(long_store) {
                        let e = self.error_object(code);
                        self.top_put(e)?;
                    }
                }
                Ok(())
            }
            Op::CallInlinePrimitive(p) => halt(format!(
                "inline primitive {p} (Sista optimized code) is not supported"
            )),
            Op::BranchIfInstanceOf { .. } => {
                halt("branchIfInstanceOf (Sista optimized code) is not supported")
            }
            Op::Nop => Ok(()),
            Op::Trap => halt("trap bytecode"),
            Op::Unknown(b) => halt(format!("unknown bytecode {b} at pc {}", self.pc - 1)),
            Op::BadExtension(b) => halt(format!("extension before bytecode {b}, which takes none")),
            Op::Truncated(b) => halt(format!("bytecode {b} cut off by the end of the method")),
        }
    }

    fn error_object(&self, code: u32) -> Oop {
        let table = self.m.special(so::PRIM_ERR_TABLE);
        match self.m.fetch(table, code as u64 - 1) {
            Ok(e) if e != self.nil || code == 1 => e,
            _ => self.int(code as i64),
        }
    }

    #[inline(always)]
    fn cond_jump(&mut self, on: bool, target: u64) -> R<()> {
        let v = self.pop()?;
        if v == self.boolean(on) {
            self.pc = target;
            Ok(())
        } else if v == self.boolean(!on) {
            Ok(())
        } else {
            self.must_be_boolean(v)
        }
    }

    #[cold]
    #[inline(never)]
    fn must_be_boolean(&mut self, v: Oop) -> R<()> {
        self.push(v)?;
        let sel = self.m.special(so::SELECTOR_MUST_BE_BOOLEAN);
        self.send(sel, 0, None)
    }

    // ---- sends ----

    #[inline(always)]
    fn special_send(&mut self, index: u8) -> R<()> {
        let (sel, n, inline) = self.specials[index as usize & 31];
        if let Some(op) = inline {
            if op == Inline::Identical || op == Inline::NotIdentical {
                let b = self.pop()?;
                let a = self.pop()?;
                let r = self.boolean((a == b) == (op == Inline::Identical));
                return self.push(r);
            }
            if self.int_send_fast(op).is_some() {
                return Ok(());
            }
            let b = self.stack_value(0)?;
            let a = self.stack_value(1)?;
            if let (Some(x), Some(y)) = (self.m.small_int(a), self.m.small_int(b)) {
                match arith(op, x, y) {
                    Some(Arith::Bool(r)) => {
                        self.pop_n(2)?;
                        // A comparison followed by a conditional jump: the
                        // jump runs here. Its boolean is still written where
                        // the push would have put it, so that the slot above
                        // the stack top holds what it held before.
                        if let Some((len, on, target)) = self.next_cond_jump() {
                            self.ctx_store(TEMP0 + self.sp, self.boolean(r))?;
                            self.pc += len as u64;
                            self.stats.bytecodes += 1;
                            if r == on {
                                self.pc = target;
                            }
                            return Ok(());
                        }
                        return self.push(self.boolean(r));
                    }
                    Some(Arith::Int(v)) => {
                        if let Some(r) = self.m.from_small_int(v) {
                            self.pop_n(2)?;
                            return self.push(r);
                        }
                    }
                    None => {}
                }
            }
        }
        self.send_fast(sel, n)
    }

    /// A send whose method the cache holds for a young receiver and whose
    /// primitive is `at:`, `at:put:` or `size` on an Array or a closure's
    /// value, run without the general send path; anything else (a miss, an
    /// old or immediate receiver, a failing primitive, sends being traced)
    /// goes to `send`, which does it all again with nothing changed here.
    #[inline(always)]
    fn send_fast(&mut self, sel: Oop, argc: u32) -> R<()> {
        let n = argc as u64;
        if n < self.sp && self.opts.method_cache && self.traced >= self.opts.trace_sends {
            let rcvr = self.stack_value(n)?;
            if let Some((h, base, slots)) = self.m.young_object(rcvr) {
                let ci = h.class_index();
                let e = self.cache[Self::cache_slot(sel, ci)];
                if e.selector == sel && e.class_index == ci && e.method != Oop::default() {
                    let prim = e.primitive;
                    let quick = match prim {
                        60 => argc == 1,
                        61 => argc == 2,
                        62 => argc == 0,
                        _ => false,
                    };
                    if quick && h.format() == FMT_INDEXABLE {
                        if self.array_prim_fast(prim, argc, h, base, slots).is_some() {
                            self.stats.method_cache_hits += 1;
                            self.stats.sends += 1;
                            self.stats.primitive_calls += 1;
                            return Ok(());
                        }
                        if let Some(v) = self.quick_young_prim(prim, argc, h, base, slots)? {
                            self.stats.method_cache_hits += 1;
                            self.stats.sends += 1;
                            self.stats.primitive_calls += 1;
                            return self.pop_n_push(n + 1, v);
                        }
                    } else if is_value_primitive(prim) {
                        let cv = (!h.is_immutable()).then_some((base, slots));
                        return self.value_fast(rcvr, sel, argc, prim, (ci, cv));
                    }
                }
            }
        }
        self.send(sel, argc, None)
    }

    /// `send_fast` for a closure's value primitive.
    #[inline(never)]
    fn value_fast(
        &mut self,
        closure: Oop,
        sel: Oop,
        argc: u32,
        prim: u16,
        (ci, cv): (u32, View),
    ) -> R<()> {
        self.current_prim = prim;
        let r = self.activate_closure_in(closure, argc, ci, cv)?;
        self.current_prim = 0;
        match r {
            Prim::Done => {
                self.stats.method_cache_hits += 1;
                self.stats.sends += 1;
                self.stats.primitive_calls += 1;
                Ok(())
            }
            Prim::Fail(_) => self.send(sel, argc, None),
        }
    }

    /// The conditional jump that comes next (its length, the boolean it
    /// jumps on and its target), when it may run as part of this step:
    /// not when it would be the bytecode at which the loop checks
    /// interrupts or stops at its limit.
    #[inline(always)]
    fn next_cond_jump(&self) -> Option<(usize, bool, u64)> {
        if self.stats.bytecodes + 1 >= self.until {
            return None;
        }
        match *self.code.ops.get(ix(self.pc.wrapping_sub(1)))? {
            (Op::JumpIfTrue { target }, len) => Some((len, true, target)),
            (Op::JumpIfFalse { target }, len) => Some((len, false, target)),
            _ => None,
        }
    }

    /// SmallInteger arithmetic of the special selectors and primitives
    /// 1..17: `None` when the result is not a SmallInteger (or undefined).
    fn int_op(&self, op: Inline, x: i64, y: i64) -> Option<Oop> {
        match arith(op, x, y)? {
            Arith::Int(v) => self.m.from_small_int(v),
            Arith::Bool(b) => Some(self.boolean(b)),
        }
    }

    /// Arithmetic primitives 1..17 on SmallIntegers.
    pub fn int_prim(&self, prim: u16, x: i64, y: i64) -> Option<Oop> {
        let op = match prim {
            1 => Inline::Add,
            2 => Inline::Sub,
            3 => Inline::Lt,
            4 => Inline::Gt,
            5 => Inline::Le,
            6 => Inline::Ge,
            7 => Inline::Eq,
            8 => Inline::Ne,
            9 => Inline::Mul,
            10 => Inline::Div,
            11 => Inline::Mod,
            12 => Inline::IntDiv,
            13 => {
                // quo: truncated.
                return if y == 0 {
                    None
                } else {
                    x.checked_div(y).and_then(|v| self.m.from_small_int(v))
                };
            }
            14 => Inline::BitAnd,
            15 => Inline::BitOr,
            16 => return self.m.from_small_int(x ^ y),
            17 => Inline::BitShift,
            _ => return None,
        };
        self.int_op(op, x, y)
    }

    /// Sends `sel` with `argc` arguments to the receiver under them,
    /// looking up from `start` (a super send) or the receiver's class.
    pub fn send(&mut self, sel: Oop, argc: u32, start: Option<Oop>) -> R<()> {
        let rcvr = self.stack_value(argc as u64)?;
        if start.is_none() && self.opts.method_cache {
            // A hit needs only the class index; the class is read on a miss.
            let ci = match self.m.young_header(rcvr) {
                Some(h) => h.class_index(),
                None => self.m.class_index_of(rcvr)?,
            };
            if let Some((method, prim)) = self.cached(sel, ci) {
                return self.execute_method(rcvr, method, argc, prim, sel);
            }
        }
        let (ci, class) = match start {
            Some(c) => (self.m.class_index_of_class(c), c),
            None => {
                let ci = self.m.class_index_of(rcvr)?;
                let c = self.m.class_at(ci).ok_or_else(|| {
                    Stop::Halt(
                        StopKind::Error,
                        format!("{rcvr} has class index {ci}, which is empty"),
                    )
                })?;
                (Some(ci), c)
            }
        };
        let (method, prim) = match self.lookup(sel, ci, class)? {
            Some(e) => e,
            None => {
                // doesNotUnderstand: with a Message.
                let dnu = self.m.special(so::SELECTOR_DOES_NOT_UNDERSTAND);
                if sel == dnu {
                    return halt(format!(
                        "recursive doesNotUnderstand: ({} does not understand #doesNotUnderstand:)",
                        self.m.class_name(class).unwrap_or_default()
                    ));
                }
                let msg = self.message(sel, argc, class)?;
                self.pop_n(argc as u64)?;
                self.push(msg)?;
                match self.lookup(dnu, ci, class)? {
                    Some(e) => {
                        return self.execute_method(rcvr, e.0, 1, e.1, sel);
                    }
                    None => {
                        return halt(format!(
                            "{} does not understand #{} nor #doesNotUnderstand:",
                            self.m.class_name(class).unwrap_or_default(),
                            self.m.string(sel).unwrap_or_default()
                        ))
                    }
                }
            }
        };
        self.execute_method(rcvr, method, argc, prim, sel)
    }

    /// A Message for `sel` with the top `argc` stack values.
    fn message(&mut self, sel: Oop, argc: u32, class: Oop) -> R<Oop> {
        let args = self.new_array(argc as u64)?;
        for i in 0..argc as u64 {
            let v = self.stack_value(argc as u64 - 1 - i)?;
            self.m.store(args, i, v)?;
        }
        let n = self
            .m
            .class_at(self.ci_message)
            .and_then(|c| self.m.fetch(c, 2).ok())
            .and_then(|f| self.m.small_int(f))
            .and_then(|f| u64::try_from(f & 0xFFFF).ok())
            .unwrap_or(3)
            .max(3);
        let msg = self.m.allocate_slots(self.ci_message, 1, n)?;
        self.m.store(msg, 0, sel)?;
        self.m.store(msg, 1, args)?;
        if n > 2 {
            self.m.store(msg, 2, class)?;
        }
        Ok(msg)
    }

    /// The method cache's slot for `sel` sent to instances of class index `ci`.
    #[inline]
    fn cache_slot(sel: Oop, ci: u32) -> usize {
        ((sel.bits() >> 3) as usize ^ (ci as usize).wrapping_mul(0x9E37)) & (CACHE_SIZE - 1)
    }

    /// The cached method and primitive for `sel` and class index `ci`
    /// (counted as a hit), when the cache holds them.
    #[inline]
    fn cached(&mut self, sel: Oop, ci: u32) -> Option<(Oop, u16)> {
        let e = self.cache[Self::cache_slot(sel, ci)];
        if e.selector == sel && e.class_index == ci && e.method != Oop::default() {
            self.stats.method_cache_hits += 1;
            return Some((e.method, e.primitive));
        }
        None
    }

    /// Looks `sel` up from `class`, through the cache when `ci` is known.
    fn lookup(&mut self, sel: Oop, ci: Option<u32>, class: Oop) -> R<Option<(Oop, u16)>> {
        let slot = ci.map(|ci| Self::cache_slot(sel, ci));
        if let (Some(ci), true) = (ci, self.opts.method_cache) {
            if let Some(e) = self.cached(sel, ci) {
                return Ok(Some(e));
            }
        }
        self.stats.method_cache_misses += 1;
        let mut c = class;
        let mut depth = 0;
        while c != self.nil {
            depth += 1;
            if depth > 10_000 {
                return halt("the superclass chain loops");
            }
            let dict = self.m.fetch(c, 1)?;
            if let Some(m) = self.lookup_in_dict(dict, sel)? {
                let prim = self.primitive_index(m)?;
                if let (Some(ci), Some(slot)) = (ci, slot) {
                    self.cache[slot] = CacheEntry {
                        selector: sel,
                        class_index: ci,
                        method: m,
                        primitive: prim,
                    };
                }
                return Ok(Some((m, prim)));
            }
            c = self.m.fetch(c, 0)?;
        }
        Ok(None)
    }

    pub fn flush_cache(&mut self) {
        self.cache.fill(CacheEntry::default());
    }

    /// The method for `sel` in a MethodDictionary (tally, array, keys...).
    fn lookup_in_dict(&mut self, dict: Oop, sel: Oop) -> R<Option<Oop>> {
        if dict == self.nil || self.m.header(dict).is_err() {
            return Ok(None);
        }
        let n = self.m.num_slots(dict)?;
        if n <= 2 {
            return Ok(None);
        }
        let size = n - 2;
        let start = if sel.is_immediate(self.word) {
            0
        } else {
            let h = self.m.header(sel)?.hash() as u64;
            if size.is_power_of_two() {
                h & (size - 1)
            } else {
                h % size
            }
        };
        for k in 0..size {
            let i = (start + k) % size;
            let key = self.m.fetch(dict, 2 + i)?;
            if key == sel {
                let values = self.m.fetch(dict, 1)?;
                return Ok(Some(self.m.fetch(values, i)?));
            }
            if key == self.nil {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// The primitive of a method (0 when none, or when it is not compiled code).
    pub fn primitive_index(&self, method: Oop) -> R<u16> {
        let Ok(f) = self.m.format(method) else {
            return Ok(0);
        };
        if f < FMT_COMPILED_METHOD {
            return Ok(0);
        }
        let h = self.header_of(method)?;
        if !h.has_primitive {
            return Ok(0);
        }
        let at = ix(self.initial_pc(&h));
        let code = self.m.bytes(method)?;
        match (code.get(at), code.get(at + 1)) {
            (Some(&lo), Some(&hi)) => Ok(lo as u16 | (hi as u16) << 8),
            _ => halt(format!("{method}: its primitive index lies past its end")),
        }
    }

    /// Runs `method` for `rcvr` (with `argc` arguments on the stack): its
    /// primitive, and when there is none or it fails, a new context.
    pub fn execute_method(
        &mut self,
        rcvr: Oop,
        method: Oop,
        argc: u32,
        prim: u16,
        sel: Oop,
    ) -> R<()> {
        self.stats.sends += 1;
        if self.traced < self.opts.trace_sends {
            self.traced += 1;
            eprintln!(
                "send {}: #{} to {} -> {}",
                self.stats.sends,
                self.m.string(sel).unwrap_or_else(|| "?".into()),
                self.m
                    .class_of(rcvr)
                    .and_then(|c| self.m.class_name(c))
                    .unwrap_or_else(|| "?".into()),
                self.method_name(method)
            );
        }
        // A primitive index comes only from compiled code (`primitive_index`).
        if prim != 0 {
            if let Some(v) = self.quick_prim(prim, argc)? {
                self.stats.primitive_calls += 1;
                return self.pop_n_push(argc as u64 + 1, v);
            }
        }
        if self
            .m
            .format(method)
            .map_or(true, |f| f < FMT_COMPILED_METHOD)
        {
            return self.run_with_in(method, sel, argc);
        }
        if prim > 0 {
            if (256..520).contains(&prim) {
                let v = match prim {
                    256 => rcvr,
                    257 => self.tru,
                    258 => self.fls,
                    259 => self.nil,
                    260..=263 => self.int(prim as i64 - 261),
                    _ => self.m.fetch(rcvr, prim as u64 - 264)?,
                };
                self.stats.primitive_calls += 1;
                return self.pop_n_push(argc as u64 + 1, v);
            }
            self.stats.primitive_calls += 1;
            self.current_prim = prim;
            if is_value_primitive(prim) {
                // A closure's value: it saves the registers itself when it
                // activates, and changes nothing when it fails.
                let c = self.stack_value(argc as u64)?;
                let r = self.activate_closure(c, argc)?;
                self.current_prim = 0;
                match r {
                    Prim::Done => return Ok(()),
                    Prim::Fail(code) => {
                        self.stats.primitive_failures += 1;
                        self.prim_fail = Some(code);
                        return self.activate(rcvr, method, argc);
                    }
                }
            }
            // The image may look at the active context from a primitive.
            self.store_registers()?;
            let sp = self.sp;
            let ctx = self.ctx;
            // On a stop the primitive stays named for the stop line.
            let r = self.primitive(prim, argc, method);
            // It may have changed the active context, moved it or its header.
            self.refresh_frame();
            let r = r?;
            self.current_prim = 0;
            self.current_named = None;
            match r {
                Prim::Done => return Ok(()),
                Prim::Fail(code) => {
                    self.stats.primitive_failures += 1;
                    // A snapshot that failed may have moved the context to old space.
                    if self.ctx != ctx && self.m.forwarded(ctx) != self.ctx {
                        return halt(format!("primitive {prim} failed after switching context"));
                    }
                    self.sp = sp;
                    self.prim_fail = Some(code);
                }
            }
        }
        self.activate(rcvr, method, argc)
    }

    /// Primitives 60 (`at:`), 61 (`at:put:`) and 62 (`size`) on an object
    /// of only indexable pointers (format 2, as an Array) or of bytes
    /// (formats 16..23, as a ByteArray), which need neither the registers
    /// saved nor the class's fixed-field count: the result to push in place
    /// of the receiver and arguments. `None` when the general primitive
    /// must decide (another format, a bad index or value, an immutable
    /// receiver), with nothing changed.
    #[inline]
    fn quick_prim(&mut self, prim: u16, argc: u32) -> R<Option<Oop>> {
        let want = match prim {
            60 => 1,
            61 => 2,
            62 => 0,
            _ => return Ok(None),
        };
        if argc != want {
            return Ok(None);
        }
        let o = self.stack_value(argc as u64)?;
        if let Some((h, base, n)) = self.m.young_object(o) {
            if h.format() == FMT_INDEXABLE {
                return self.quick_young_prim(prim, argc, h, base, n);
            }
        }
        if o.is_immediate(self.word) {
            return Ok(None);
        }
        let Ok(h) = self.m.header(o) else {
            return Ok(None);
        };
        let bytes = match h.format() {
            FMT_INDEXABLE => false,
            f if (FMT_BYTES..FMT_COMPILED_METHOD).contains(&f) => true,
            _ => return Ok(None),
        };
        let size = if bytes {
            self.m.bytes(o)?.len() as u64
        } else {
            self.m.num_slots(o)?
        };
        if prim == 62 {
            return Ok(i64::try_from(size)
                .ok()
                .and_then(|s| self.m.from_small_int(s)));
        }
        let index = self.stack_value(argc as u64 - 1)?;
        let Some(k) = self.m.small_int(index).and_then(|i| index0(i, size)) else {
            return Ok(None);
        };
        if prim == 60 {
            return Ok(Some(if bytes {
                let b = self.m.bytes(o)?.get(ix(k)).copied();
                match b {
                    Some(b) => self.int(i64::from(b)),
                    None => return Ok(None),
                }
            } else {
                self.m.fetch(o, k)?
            }));
        }
        if h.is_immutable() {
            return Ok(None);
        }
        let v = self.stack_value(0)?;
        if bytes {
            let Some(x) = self.m.small_int(v).and_then(|x| u8::try_from(x).ok()) else {
                return Ok(None);
            };
            match self.m.bytes_mut(o)?.get_mut(ix(k)) {
                Some(b) => *b = x,
                None => return Ok(None),
            }
        } else {
            self.m.store(o, k, v)?;
        }
        Ok(Some(v))
    }

    /// `quick_prim` on a young Array (format 2) of header `h` and `n`
    /// slots from new-space offset `base`.
    #[inline(always)]
    fn quick_young_prim(
        &mut self,
        prim: u16,
        argc: u32,
        h: spur_format::ObjHeader,
        base: usize,
        n: u64,
    ) -> R<Option<Oop>> {
        if prim == 62 {
            return Ok(i64::try_from(n).ok().and_then(|s| self.m.from_small_int(s)));
        }
        let index = self.stack_value(argc as u64 - 1)?;
        let Some(k) = self.m.small_int(index).and_then(|i| index0(i, n)) else {
            return Ok(None);
        };
        let at = slot_offset(base, k);
        if prim == 60 {
            return Ok(self.m.young_word(at));
        }
        if h.is_immutable() {
            return Ok(None);
        }
        let v = self.stack_value(0)?;
        Ok(self.m.set_young_word(at, v).then_some(v))
    }

    /// `quick_young_prim` when the active context is young too: operands,
    /// element and result through one new-space slice, the result left in
    /// place of the receiver and arguments. `None`, with nothing changed,
    /// when `quick_young_prim` must decide.
    #[inline(always)]
    fn array_prim_fast(
        &mut self,
        prim: u16,
        argc: u32,
        h: spur_format::ObjHeader,
        base: usize,
        n: u64,
    ) -> Option<()> {
        let fb = self.frame?;
        let args = argc as u64;
        if args >= self.sp || TEMP0 + self.sp > self.ctx_slots {
            return None;
        }
        let top = TEMP0 + self.sp - 1;
        let word = self.word;
        let b = self.m.young_bytes_mut()?;
        let v = match prim {
            62 => from_small_int(word, i64::try_from(n).ok()?)?,
            60 | 61 => {
                let i = small_int(word, word_at(b, slot_offset(fb, top - args + 1))?)?;
                let k = u64::try_from(i).ok().filter(|&k| k >= 1 && k <= n)? - 1;
                let at = slot_offset(base, k);
                if prim == 60 {
                    word_at(b, at)?
                } else {
                    if h.is_immutable() {
                        return None;
                    }
                    let v = word_at(b, slot_offset(fb, top))?;
                    // The receiver's slot lies in the frame: checked above,
                    // so the result's store below cannot fail after this.
                    put_word_at(b, at, v)?;
                    v
                }
            }
            _ => return None,
        };
        put_word_at(b, slot_offset(fb, top - args), v)?;
        self.sp -= args;
        Some(())
    }

    /// An object that is not a method in a method dictionary: send it
    /// `run:with:in:`.
    fn run_with_in(&mut self, obj: Oop, sel: Oop, argc: u32) -> R<()> {
        let rw = self.m.special(so::SELECTOR_RUN_WITH_IN);
        if rw == self.nil {
            return halt("a method dictionary holds a non-method and there is no #run:with:in:");
        }
        // What #run:with:in: finds must be a method: a non-method there
        // would be sent #run:with:in: in turn, without end.
        if sel == rw {
            return halt(
                "the #run:with:in: found for an object used as a method is itself not a method",
            );
        }
        let args = self.new_array(argc as u64)?;
        for i in 0..argc as u64 {
            let v = self.stack_value(argc as u64 - 1 - i)?;
            self.m.store(args, i, v)?;
        }
        let rcvr = self.stack_value(argc as u64)?;
        self.pop_n(argc as u64 + 1)?;
        self.push(obj)?;
        self.push(sel)?;
        self.push(args)?;
        self.push(rcvr)?;
        self.send(rw, 3, None)
    }

    /// A new context for `method`, its receiver and arguments taken from
    /// the stack; it becomes the active context.
    fn activate(&mut self, rcvr: Oop, method: Oop, argc: u32) -> R<()> {
        let code = self.code_of(method)?;
        let h = code.header;
        if h.num_args as u32 != argc {
            return halt(format!(
                "{} takes {} arguments, sent with {argc}",
                self.method_name(method),
                h.num_args
            ));
        }
        let size = if h.large_frame {
            LARGE_CONTEXT
        } else {
            SMALL_CONTEXT
        };
        let nt = (h.num_temps as u64).max(argc as u64);
        let size = size.max(TEMP0 + nt + 1);
        let (c, view) = self.new_context(size, argc as u64, nt)?;
        self.reclaimable += 1;
        self.store_via(view, c, SENDER, self.ctx)?;
        self.store_via(view, c, METHOD, method)?;
        self.store_via(view, c, RECEIVER, rcvr)?;
        for i in 0..argc as u64 {
            let v = self.stack_value(argc as u64 - 1 - i)?;
            self.store_via(view, c, TEMP0 + i, v)?;
        }
        self.pop_n(argc as u64 + 1)?;
        self.store_registers_fast()?;
        self.ctx = c;
        self.method = method;
        self.set = h.set;
        self.code = code;
        self.receiver = rcvr;
        self.pc = self.initial_pc(&h);
        self.sp = nt;
        self.ctx_slots = size;
        self.frame = Self::frame_of(view, size);
        if self.prim_fail.is_some() && !h.has_primitive {
            self.prim_fail = None;
        }
        Ok(())
    }

    /// The `frame` of a context of `size` slots whose view is `view`.
    #[inline(always)]
    fn frame_of(view: View, size: u64) -> Option<usize> {
        match view {
            Some((base, n)) if n == size => Some(base),
            _ => None,
        }
    }

    /// Activates a BlockClosure or FullBlockClosure with `argc` arguments
    /// on the stack (the value primitives).
    pub fn activate_closure(&mut self, closure: Oop, argc: u32) -> R<Prim> {
        let ci = match self.m.young_header(closure) {
            Some(h) => h.class_index(),
            None => self.m.class_index_of(closure)?,
        };
        let cv = self.m.young_slots(closure);
        self.activate_closure_in(closure, argc, ci, cv)
    }

    /// Two words of the young object of view `view`, slots `i` and `j`,
    /// through one new-space slice.
    #[inline(always)]
    fn young_pair(&mut self, view: View, i: u64, j: u64) -> Option<(Oop, Oop)> {
        let (base, n) = view?;
        if i >= n || j >= n {
            return None;
        }
        let b = self.m.young_bytes_mut()?;
        Some((
            word_at(b, slot_offset(base, i))?,
            word_at(b, slot_offset(base, j))?,
        ))
    }

    /// `activate_closure` for a closure of class index `ci` and view `cv`.
    #[inline(always)]
    fn activate_closure_in(&mut self, closure: Oop, argc: u32, ci: u32, cv: View) -> R<Prim> {
        let full = ci == self.ci_full_closure
            || (ci != self.ci_closure
                && self
                    .fetch_via(cv, closure, CLOSURE_START)
                    .is_ok_and(|s| self.m.format(s).is_ok_and(|f| f >= FMT_COMPILED_METHOD)));
        let n = self.fetch_via(cv, closure, CLOSURE_NUM_ARGS)?;
        if self.m.small_int(n) != Some(argc as i64) {
            return Ok(Prim::Fail(1));
        }
        let slots = match cv {
            Some((_, n)) => n,
            None => self.m.num_slots(closure)?,
        };
        let (method, rcvr, pc, first_copied, code) = if full {
            let method = self.fetch_via(cv, closure, CLOSURE_START)?;
            let code = self.code_of(method)?;
            let rcvr = self.fetch_via(cv, closure, FULL_RECEIVER)?;
            (method, rcvr, self.initial_pc(&code.header), 4, code)
        } else {
            let pair = self.young_pair(cv, CLOSURE_OUTER, CLOSURE_START);
            let outer = match pair {
                Some((outer, _)) => outer,
                None => self.fetch_via(cv, closure, CLOSURE_OUTER)?,
            };
            let ov = self.m.young_slots(outer);
            let (method, rcvr) = match self.young_pair(ov, METHOD, RECEIVER) {
                Some(p) => p,
                None => (
                    self.fetch_via(ov, outer, METHOD)?,
                    self.fetch_via(ov, outer, RECEIVER)?,
                ),
            };
            let start = match pair {
                Some((_, start)) => start,
                None => self.fetch_via(cv, closure, CLOSURE_START)?,
            };
            let Some(pc) = self.m.small_int(start) else {
                return Ok(Prim::Fail(1));
            };
            // A negative start runs past the end (as the largest pc).
            let pc = u64::try_from(pc).unwrap_or(u64::MAX);
            (method, rcvr, pc, 3, self.code_of(method)?)
        };
        let h = code.header;
        let temps = if full { h.num_temps as u64 } else { 0 };
        let copied = slots.saturating_sub(first_copied);
        let sp = (argc as u64 + copied).max(temps);
        let size = if h.large_frame {
            LARGE_CONTEXT
        } else {
            SMALL_CONTEXT
        }
        .max(TEMP0 + sp + 1);
        let (c, view) = self.new_context(size, argc as u64 + copied, sp)?;
        // Like a method's context, a block's is the newest on the chain and
        // referenced by nothing but its callees until it is exposed.
        self.reclaimable += 1;
        // Allocating moves nothing: the closure's view still holds.
        let fast = BlockSlots {
            closure,
            method,
            rcvr,
            argc: argc as u64,
        }
        .fill(self, view, cv, first_copied, copied);
        if fast.is_none() {
            // Each store the fast path may have made is made again, the same.
            self.store_via(view, c, SENDER, self.ctx)?;
            self.store_via(view, c, METHOD, method)?;
            self.store_via(view, c, CLOSURE, closure)?;
            self.store_via(view, c, RECEIVER, rcvr)?;
            for i in 0..argc as u64 {
                let v = self.stack_value(argc as u64 - 1 - i)?;
                self.store_via(view, c, TEMP0 + i, v)?;
            }
            for i in 0..copied {
                let v = self.fetch_via(cv, closure, first_copied + i)?;
                self.store_via(view, c, TEMP0 + argc as u64 + i, v)?;
            }
        }
        self.pop_n(argc as u64 + 1)?;
        self.store_registers_fast()?;
        self.ctx = c;
        self.method = method;
        self.set = h.set;
        self.code = code;
        self.receiver = rcvr;
        self.pc = pc;
        self.sp = sp;
        self.ctx_slots = size;
        self.frame = Self::frame_of(view, size);
        Ok(Prim::Done)
    }

    // ---- returns ----

    fn is_context(&self, o: Oop) -> bool {
        if let Some(h) = self.m.young_header(o) {
            return h.class_index() == self.ci_context;
        }
        !o.is_immediate(self.word) && self.m.class_index_of(o).ok() == Some(self.ci_context)
    }

    fn is_live(&self, c: Oop) -> bool {
        if let Some((h, base, n)) = self.m.young_object(c) {
            return h.class_index() == self.ci_context
                && PC < n
                && self
                    .m
                    .young_word(slot_offset(base, PC))
                    .is_some_and(|pc| self.m.small_int(pc).is_some());
        }
        self.is_context(c)
            && self
                .m
                .fetch(c, PC)
                .is_ok_and(|pc| self.m.small_int(pc).is_some())
    }

    /// `^value` from a method, or from a block (a non-local return to the
    /// home context's sender).
    fn method_return(&mut self, value: Oop) -> R<()> {
        let closure = self.ctx_fetch(CLOSURE)?;
        if closure == self.nil {
            let sender = self.ctx_fetch(SENDER)?;
            if !self.is_live(sender) {
                return self.cannot_return(value);
            }
            return self.return_to(sender, value);
        }
        // Find the home context.
        let mut home = self.ctx;
        for _ in 0..100_000 {
            let cl = self.m.fetch(home, CLOSURE)?;
            if cl == self.nil {
                break;
            }
            home = self.m.fetch(cl, CLOSURE_OUTER)?;
            if !self.is_context(home) {
                return self.cannot_return(value);
            }
        }
        let target = self.m.fetch(home, SENDER)?;
        if !self.is_live(home) || !self.is_live(target) {
            return self.cannot_return(value);
        }
        // Walk to the target: unwind-marked contexts in between get
        // aboutToReturn:through:.
        let mut c = self.ctx_fetch(SENDER)?;
        let mut steps = 0u64;
        while c != target {
            if !self.is_context(c) {
                return self.cannot_return(value);
            }
            let m = self.m.fetch(c, METHOD)?;
            if self.primitive_index(m)? == 198 {
                return self.about_to_return(value, c);
            }
            c = self.m.fetch(c, SENDER)?;
            steps += 1;
            if steps > 10_000_000 {
                return halt("the sender chain loops");
            }
        }
        self.return_to(target, value)
    }

    fn block_return(&mut self, value: Oop) -> R<()> {
        let sender = self.ctx_fetch(SENDER)?;
        if !self.is_live(sender) {
            return self.cannot_return(value);
        }
        self.return_to(sender, value)
    }

    /// Makes `target` active, marking every context from the active one up
    /// to it as returned (nil sender and pc), and pushes `value`.
    fn return_to(&mut self, target: Oop, value: Oop) -> R<()> {
        let mut c = self.ctx;
        let mut steps = 0u64;
        while c != target && c != self.nil {
            let view = if c == self.ctx {
                self.frame_view()
            } else {
                self.m.young_slots(c)
            };
            let next = match self.unlink_young(view) {
                Some(next) => next,
                None => {
                    let next = self.fetch_via(view, c, SENDER)?;
                    self.store_via(view, c, SENDER, self.nil)?;
                    self.store_via(view, c, PC, self.nil)?;
                    next
                }
            };
            if self.reclaimable > 0 {
                self.reclaimable -= 1;
                let used = if c == self.ctx {
                    self.sp
                } else {
                    let sp = self.fetch_via(view, c, STACKP)?;
                    self.m
                        .small_int(sp)
                        .map_or(u64::MAX, |v| u64::try_from(v).unwrap_or(0))
                };
                self.recycle(c, used, view)?;
            }
            c = next;
            steps += 1;
            if steps > 10_000_000 {
                return halt("the sender chain loops");
            }
        }
        self.ctx = target;
        self.fetch_registers()?;
        self.push(value)
    }

    /// The sender of the young context of view `view`, its sender and pc
    /// set to nil (it has returned), through one new-space slice; `None`,
    /// with nothing changed, when the general path must do it.
    #[inline(always)]
    fn unlink_young(&mut self, view: View) -> Option<Oop> {
        let (base, n) = view?;
        // SENDER is slot 0, PC slot 1.
        if PC >= n {
            return None;
        }
        let nil = self.nil;
        let b = self.m.young_bytes_mut()?;
        let next = word_at(b, slot_offset(base, SENDER))?;
        // Both words read first: neither write below can then fail.
        word_at(b, slot_offset(base, PC))?;
        put_word_at(b, slot_offset(base, SENDER), nil)?;
        put_word_at(b, slot_offset(base, PC), nil)?;
        Some(next)
    }

    /// The active context (and so every context under it) may now be
    /// referenced from the image: none of them is reused.
    #[inline]
    pub(crate) fn expose(&mut self) {
        self.reclaimable = 0;
    }

    /// A context of `size` slots whose temp and stack slots from `keep` on
    /// are nil (at least up to `need`) and whose closure is nil: a returned
    /// one, or a new one from eden.
    fn new_context(&mut self, size: u64, keep: u64, need: u64) -> R<(Oop, View)> {
        let list = match size {
            SMALL_CONTEXT => 0,
            LARGE_CONTEXT => 1,
            _ => 2,
        };
        if self.opts.recycle_contexts && list < 2 {
            if let Some((c, used)) = self.free_contexts[list].pop() {
                let view = self.m.young_slots(c);
                let end = TEMP0.saturating_add(used.max(need)).min(size);
                for i in TEMP0 + keep..end {
                    self.store_via(view, c, i, self.nil)?;
                }
                self.store_via(view, c, CLOSURE, self.nil)?;
                self.stats.contexts_reused += 1;
                return Ok((c, view));
            }
        }
        let c = self
            .m
            .allocate_slots(self.ci_context, FMT_INDEXABLE_WITH_FIXED, size)?;
        Ok((c, self.m.young_slots(c)))
    }

    /// Keeps a returned context that nobody references for reuse; `used`:
    /// how many of its temp and stack slots may hold values; `view`: its view.
    fn recycle(&mut self, c: Oop, used: u64, view: View) -> R<()> {
        if !self.opts.recycle_contexts || !self.m.is_young(c) {
            return Ok(());
        }
        let slots = match view {
            Some((_, n)) => n,
            None => self.m.num_slots(c)?,
        };
        let list = match slots {
            SMALL_CONTEXT => 0,
            LARGE_CONTEXT => 1,
            _ => return Ok(()),
        };
        if self.free_contexts[list].len() < 1024 {
            self.free_contexts[list].push((c, used));
        }
        Ok(())
    }

    fn cannot_return(&mut self, value: Oop) -> R<()> {
        self.expose();
        self.store_registers()?;
        self.push(self.ctx)?;
        self.push(value)?;
        let sel = self.m.special(so::SELECTOR_CANNOT_RETURN);
        self.send(sel, 1, None)
    }

    fn about_to_return(&mut self, value: Oop, through: Oop) -> R<()> {
        self.expose();
        self.store_registers()?;
        self.push(self.ctx)?;
        self.push(value)?;
        self.push(through)?;
        let sel = self.m.special(so::SELECTOR_ABOUT_TO_RETURN);
        self.send(sel, 2, None)
    }

    // ---- processes ----

    pub fn scheduler(&self) -> R<Oop> {
        let assoc = self.m.special(so::SCHEDULER_ASSOCIATION);
        Ok(self.m.fetch(assoc, 1)?)
    }

    pub fn active_process(&self) -> R<Oop> {
        let s = self.scheduler()?;
        Ok(self.m.fetch(s, SCHED_ACTIVE)?)
    }

    fn priority(&self, p: Oop) -> R<i64> {
        let v = self.m.fetch(p, PROC_PRIORITY)?;
        Ok(self.m.small_int(v).unwrap_or(1))
    }

    fn list_empty(&self, list: Oop) -> R<bool> {
        Ok(self.m.fetch(list, LIST_FIRST)? == self.nil)
    }

    fn add_last(&mut self, list: Oop, p: Oop) -> R<()> {
        if self.list_empty(list)? {
            self.m.store(list, LIST_FIRST, p)?;
        } else {
            let last = self.m.fetch(list, LIST_LAST)?;
            self.m.store(last, PROC_NEXT, p)?;
        }
        self.m.store(list, LIST_LAST, p)?;
        self.m.store(p, PROC_LIST, list)?;
        Ok(())
    }

    fn remove_first(&mut self, list: Oop) -> R<Oop> {
        let first = self.m.fetch(list, LIST_FIRST)?;
        let last = self.m.fetch(list, LIST_LAST)?;
        if first == last {
            self.m.store(list, LIST_FIRST, self.nil)?;
            self.m.store(list, LIST_LAST, self.nil)?;
        } else {
            let next = self.m.fetch(first, PROC_NEXT)?;
            self.m.store(list, LIST_FIRST, next)?;
        }
        self.m.store(first, PROC_NEXT, self.nil)?;
        self.m.store(first, PROC_LIST, self.nil)?;
        Ok(first)
    }

    /// Removes `p` from `list`; false when it is not there.
    pub fn remove_process(&mut self, list: Oop, p: Oop) -> R<bool> {
        let first = self.m.fetch(list, LIST_FIRST)?;
        if first == p {
            self.remove_first(list)?;
            return Ok(true);
        }
        let mut prev = first;
        for _ in 0..1_000_000 {
            if prev == self.nil {
                return Ok(false);
            }
            let next = self.m.fetch(prev, PROC_NEXT)?;
            if next == p {
                let after = self.m.fetch(p, PROC_NEXT)?;
                self.m.store(prev, PROC_NEXT, after)?;
                if self.m.fetch(list, LIST_LAST)? == p {
                    self.m.store(list, LIST_LAST, prev)?;
                }
                self.m.store(p, PROC_NEXT, self.nil)?;
                self.m.store(p, PROC_LIST, self.nil)?;
                return Ok(true);
            }
            prev = next;
        }
        Ok(false)
    }

    fn put_to_sleep(&mut self, p: Oop) -> R<()> {
        let pri = self.priority(p)?;
        let lists = self.m.fetch(self.scheduler()?, SCHED_LISTS)?;
        let list = self.m.fetch(lists, run_queue(pri))?;
        self.add_last(list, p)
    }

    fn put_first(&mut self, p: Oop) -> R<()> {
        let pri = self.priority(p)?;
        let lists = self.m.fetch(self.scheduler()?, SCHED_LISTS)?;
        let list = self.m.fetch(lists, run_queue(pri))?;
        let first = self.m.fetch(list, LIST_FIRST)?;
        if first == self.nil {
            return self.add_last(list, p);
        }
        self.m.store(p, PROC_NEXT, first)?;
        self.m.store(list, LIST_FIRST, p)?;
        self.m.store(p, PROC_LIST, list)?;
        Ok(())
    }

    fn wake_highest_priority(&mut self) -> R<Oop> {
        let lists = self.m.fetch(self.scheduler()?, SCHED_LISTS)?;
        let n = self.m.num_slots(lists)?;
        for i in (0..n).rev() {
            let list = self.m.fetch(lists, i)?;
            if !self.list_empty(list)? {
                return self.remove_first(list);
            }
        }
        Err(Stop::Halt(
            StopKind::Idle,
            "no process is runnable and no timer is pending".into(),
        ))
    }

    /// Saves the active process and makes `p` active.
    pub fn transfer_to(&mut self, p: Oop) -> R<()> {
        self.stats.process_switches += 1;
        self.expose();
        self.store_registers()?;
        let sched = self.scheduler()?;
        let old = self.m.fetch(sched, SCHED_ACTIVE)?;
        self.m.store(old, PROC_CONTEXT, self.ctx)?;
        self.m.store(sched, SCHED_ACTIVE, p)?;
        let c = self.m.fetch(p, PROC_CONTEXT)?;
        self.m.store(p, PROC_CONTEXT, self.nil)?;
        self.ctx = c;
        self.fetch_registers()
    }

    pub fn resume(&mut self, p: Oop) -> R<()> {
        let active = self.active_process()?;
        if self.priority(p)? > self.priority(active)? {
            // A preempted process goes back to the front of its run queue
            // unless the image asks preemption to yield (header flag 4, §1.4).
            if self.preemption_yields {
                self.put_to_sleep(active)?;
            } else {
                self.put_first(active)?;
            }
            self.transfer_to(p)
        } else {
            self.put_to_sleep(p)
        }
    }

    pub fn signal(&mut self, sem: Oop) -> R<()> {
        if sem == self.nil || sem.is_immediate(self.word) {
            return Ok(());
        }
        if self.list_empty(sem)? {
            let e = self.m.fetch(sem, SEM_EXCESS)?;
            let v = self.int(self.m.small_int(e).unwrap_or(0) + 1);
            self.m.store(sem, SEM_EXCESS, v)?;
            Ok(())
        } else {
            let p = self.remove_first(sem)?;
            self.resume(p)
        }
    }

    /// Primitive 86: the semaphore is on the stack top (the receiver).
    pub fn wait(&mut self, sem: Oop) -> R<()> {
        let e = self.m.fetch(sem, SEM_EXCESS)?;
        let e = self.m.small_int(e).unwrap_or(0);
        if e > 0 {
            let v = self.int(e - 1);
            self.m.store(sem, SEM_EXCESS, v)?;
            return Ok(());
        }
        let active = self.active_process()?;
        self.add_last(sem, active)?;
        let next = self.wake_or_wait_for_timer()?;
        self.transfer_to(next)
    }

    /// The highest-priority runnable process; when there is none but a
    /// timer is pending, waits for the timer and signals it.
    fn wake_or_wait_for_timer(&mut self) -> R<Oop> {
        for _ in 0..2 {
            match self.wake_highest_priority() {
                Ok(p) => return Ok(p),
                Err(e) => {
                    let fired = match self.timer.take() {
                        Some(t) => {
                            self.sleep_until(t.at)?;
                            let mut fired = vec![t.semaphore];
                            if self.signals.any_pending() && Instant::now() < t.at {
                                // Woken early by an external signal: the timer waits on.
                                self.timer = Some(t);
                                fired.clear();
                            }
                            fired.extend(self.external_signals());
                            fired
                        }
                        None if self.wait_for_signal()? => self.external_signals(),
                        None => return Err(e),
                    };
                    // Signal: the waiting process goes to its run queue.
                    for sem in fired {
                        if !self.list_empty(sem)? {
                            let p = self.remove_first(sem)?;
                            self.put_to_sleep(p)?;
                        } else {
                            self.signal(sem)?;
                        }
                    }
                }
            }
        }
        self.wake_highest_priority()
    }

    /// Sleeps until `at`, or stops at the run's deadline if that comes first.
    pub fn sleep_until(&mut self, at: Instant) -> R<()> {
        if !self.opts.real_time_waits {
            return Ok(());
        }
        let now = Instant::now();
        if let Some(d) = self.deadline {
            if at > d {
                std::thread::sleep(d.saturating_duration_since(now));
                return Err(Stop::Halt(
                    StopKind::Timeout,
                    format!(
                        "the timeout of {:.1} s, waiting for a timer",
                        self.opts.timeout.unwrap_or_default().as_secs_f64()
                    ),
                ));
            }
        }
        // Parked rather than asleep: an external signal ends the wait early.
        let _ = now;
        loop {
            let now = Instant::now();
            if now >= at || self.signals.any_pending() {
                return Ok(());
            }
            std::thread::park_timeout(at - now);
        }
    }

    pub fn suspend_active(&mut self) -> R<()> {
        let next = self.wake_or_wait_for_timer()?;
        self.transfer_to(next)
    }

    pub fn yield_active(&mut self) -> R<()> {
        let active = self.active_process()?;
        let pri = self.priority(active)?;
        let lists = self.m.fetch(self.scheduler()?, SCHED_LISTS)?;
        let list = self.m.fetch(lists, run_queue(pri))?;
        if self.list_empty(list)? {
            return Ok(());
        }
        self.put_to_sleep(active)?;
        let next = self.wake_highest_priority()?;
        self.transfer_to(next)
    }

    /// Records a named primitive of a module this VM lacks.
    pub fn note_missing(&mut self, name: String) {
        match self.missing_index.get(&name) {
            Some(&i) => self.missing[i].2 += 1,
            None => {
                self.missing_index.insert(name.clone(), self.missing.len());
                self.missing.push((name, self.stats.bytecodes, 1));
            }
        }
    }

    pub fn write_output(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
        if self.opts.echo {
            use std::io::Write;
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(bytes);
            let _ = o.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process of `priority` whose suspended context is the active one
    /// (registers saved), ready to be resumed.
    fn process(vm: &mut Vm<'_>, priority: i64) -> Oop {
        vm.store_registers().unwrap();
        let p = vm.new_array(4).unwrap();
        let pri = vm.int(priority);
        vm.m.store(p, PROC_CONTEXT, vm.ctx).unwrap();
        vm.m.store(p, PROC_PRIORITY, pri).unwrap();
        p
    }

    #[test]
    fn a_preempted_process_goes_where_the_images_flag_says() {
        for yields in [false, true] {
            let mut rt = crate::test_vm::runtime(WordSize::W64);
            let mut vm = Vm::new(&mut rt, &Options::default()).unwrap();
            vm.preemption_yields = yields;
            let active = vm.active_process().unwrap();
            let pri = vm.priority(active).unwrap();
            // Another process of the active one's priority, runnable.
            let peer = process(&mut vm, pri);
            vm.resume(peer).unwrap();
            assert_eq!(
                vm.active_process().unwrap(),
                active,
                "an equal does not preempt"
            );
            // A higher one preempts: the active process goes back to the
            // front of its run queue, or behind its peer when preemption yields.
            let high = process(&mut vm, pri + 1);
            vm.resume(high).unwrap();
            assert_eq!(vm.active_process().unwrap(), high);
            assert_eq!(vm.stats.process_switches, 1);
            let lists = vm.m.fetch(vm.scheduler().unwrap(), SCHED_LISTS).unwrap();
            let list = vm.m.fetch(lists, run_queue(pri)).unwrap();
            let first = vm.m.fetch(list, LIST_FIRST).unwrap();
            let last = vm.m.fetch(list, LIST_LAST).unwrap();
            let (want_first, want_last) = if yields {
                (peer, active)
            } else {
                (active, peer)
            };
            assert_eq!((first, last), (want_first, want_last), "yields: {yields}");
            assert_eq!(vm.m.fetch(want_first, PROC_NEXT).unwrap(), want_last);
        }
    }

    #[test]
    fn a_non_method_found_by_run_with_in_halts_the_run() {
        crate::test_vm::with_vm(WordSize::W64, |vm| {
            // Array's methods become #foo: and #run:with:in:, both answering
            // an Array: the non-method found for #foo: is sent #run:with:in:,
            // whose lookup finds another non-method.
            let (foo, rw) = (vm.new_array(0).unwrap(), vm.new_array(0).unwrap());
            let so = vm.m.special_objects();
            vm.m.store(so, so::SELECTOR_RUN_WITH_IN as u64, rw).unwrap();
            let not_a_method = vm.new_array(1).unwrap();
            let values = vm.new_array(2).unwrap();
            vm.m.store(values, 0, not_a_method).unwrap();
            vm.m.store(values, 1, not_a_method).unwrap();
            let dict = vm.new_array(4).unwrap();
            let two = vm.int(2);
            vm.m.store(dict, 0, two).unwrap();
            vm.m.store(dict, 1, values).unwrap();
            vm.m.store(dict, 2, foo).unwrap();
            vm.m.store(dict, 3, rw).unwrap();
            let array = vm.m.class_at(vm.ci_array).unwrap();
            vm.m.store(array, 1, dict).unwrap();
            vm.flush_cache();
            let rcvr = vm.new_array(0).unwrap();
            let arg = vm.int(7);
            vm.push(rcvr).unwrap();
            vm.push(arg).unwrap();
            match vm.send(foo, 1, None) {
                Err(Stop::Halt(StopKind::Error, msg)) => {
                    assert!(msg.contains("itself not a method"), "{msg}")
                }
                other => panic!("the send went on: {other:?}"),
            }
        });
    }

    fn int(op: Inline, x: i64, y: i64) -> Option<i64> {
        match arith(op, x, y)? {
            Arith::Int(v) => Some(v),
            Arith::Bool(_) => panic!("a boolean from {op:?}"),
        }
    }

    #[test]
    fn division_and_modulo_floor_as_smalltalk_says() {
        // 7 // -2 = -4 and 7 \\ -2 = -1; -7 // 2 = -4 and -7 \\ 2 = 1.
        assert_eq!(int(Inline::IntDiv, 7, -2), Some(-4));
        assert_eq!(int(Inline::Mod, 7, -2), Some(-1));
        assert_eq!(int(Inline::IntDiv, -7, 2), Some(-4));
        assert_eq!(int(Inline::Mod, -7, 2), Some(1));
        assert_eq!(int(Inline::IntDiv, -8, 2), Some(-4));
        assert_eq!(int(Inline::Mod, -8, 2), Some(0));
        assert_eq!(int(Inline::IntDiv, 7, 2), Some(3));
        // / answers only exact quotients (a Fraction is the image's business).
        assert_eq!(int(Inline::Div, 8, -2), Some(-4));
        assert_eq!(int(Inline::Div, 7, 2), None);
        for op in [Inline::Div, Inline::Mod, Inline::IntDiv] {
            assert_eq!(arith(op, 5, 0), None, "{op:?}");
        }
    }

    #[test]
    fn shifts_fail_when_bits_would_be_lost() {
        assert_eq!(int(Inline::BitShift, 3, 4), Some(48));
        assert_eq!(int(Inline::BitShift, -3, 2), Some(-12));
        assert_eq!(int(Inline::BitShift, 48, -4), Some(3));
        assert_eq!(int(Inline::BitShift, -1, -70), Some(-1));
        assert_eq!(int(Inline::BitShift, 1, 62), Some(1 << 62));
        assert_eq!(int(Inline::BitShift, 1, 63), None);
        assert_eq!(int(Inline::BitShift, 0, 100), Some(0));
        assert_eq!(int(Inline::BitShift, 3, 62), None);
    }

    #[test]
    fn overflow_and_comparisons() {
        assert_eq!(int(Inline::Add, i64::MAX, 1), None);
        assert_eq!(int(Inline::Mul, 1 << 40, 1 << 30), None);
        assert_eq!(arith(Inline::Le, 3, 3), Some(Arith::Bool(true)));
        assert_eq!(arith(Inline::Ne, 3, 3), Some(Arith::Bool(false)));
        assert_eq!(arith(Inline::Identical, 3, 3), None);
    }
}
