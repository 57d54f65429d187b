//! Decoding the two bytecode sets of Spur images: V3PlusClosures (the
//! primary set) and SistaV1 (the alternate set, chosen by the sign bit of a
//! method's header).
//!
//! Decoding is total: every byte sequence decodes to instructions, and a byte
//! the set leaves unassigned, or an instruction cut off by the end of the
//! method, is an [`Op::Unknown`] or [`Op::Truncated`] that
//! [`Instruction::is_valid`] reports, rather than a guess.

pub mod sista;
pub mod v3;

use spur_format::layout::to_usize;
use spur_loader::conv::u64_of;
use std::fmt::Write as _;

/// Which bytecode set a method is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BytecodeSet {
    /// The primary set of Squeak, Pharo and Cuis.
    V3PlusClosures,
    /// The alternate set (header sign bit set): full blocks, extensions.
    SistaV1,
}

impl BytecodeSet {
    /// The name the Smalltalk side uses for the encoder.
    pub const fn name(self) -> &'static str {
        match self {
            BytecodeSet::V3PlusClosures => "V3PlusClosures",
            BytecodeSet::SistaV1 => "SistaV1",
        }
    }
}

/// What a decoded instruction does. Literal operands are literal indices
/// (0-based, as the bytecodes count them); jump targets are absolute pcs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Push instance variable N of the receiver.
    PushReceiverVariable(u32),
    /// Push the value of the association in literal N (a global).
    PushLiteralVariable(u32),
    /// Push literal N itself.
    PushLiteralConstant(u32),
    /// Push temporary N (arguments first).
    PushTemp(u32),
    /// Push the receiver, `self`.
    PushReceiver,
    /// Push `true`.
    PushTrue,
    /// Push `false`.
    PushFalse,
    /// Push `nil`.
    PushNil,
    /// Push this SmallInteger.
    PushInteger(i64),
    /// Push the Character with this code point.
    PushCharacter(u32),
    /// Push the active context, `thisContext`.
    PushThisContext,
    /// Push the active process (SistaV1 82 with extB 1).
    PushThisProcess,
    /// Push the top of the stack again.
    Dup,
    /// Drop the top of the stack.
    Pop,
    /// `Array new: n` from the stack (`pop: true`) or empty.
    PushArray {
        /// Slots of the new Array.
        size: u8,
        /// Fill it from the top `size` stack values rather than with nils.
        pop: bool,
    },
    /// Store the top of the stack into instance variable `index` of the receiver.
    StoreReceiverVariable {
        /// Receiver instance variable, 0-based.
        index: u32,
        /// Pop the stored value too.
        pop: bool,
    },
    /// Store the top of the stack into the association in literal `index`.
    StoreLiteralVariable {
        /// Literal holding the association, 0-based.
        index: u32,
        /// Pop the stored value too.
        pop: bool,
    },
    /// Store the top of the stack into temporary `index`.
    StoreTemp {
        /// Temporary, 0-based, arguments first.
        index: u32,
        /// Pop the stored value too.
        pop: bool,
    },
    /// Temp `index` of the temp vector in temp `vector` (or, in SistaV1,
    /// inst var `index` of the object in temp `vector` when `inst_var`).
    PushRemoteTemp {
        /// Slot in the temp vector (or object), 0-based.
        index: u8,
        /// Temporary holding the temp vector (with `inst_var`, the object).
        vector: u8,
        /// Access instance variable `index` of that object, not a temp-vector slot.
        inst_var: bool,
    },
    /// Store the top of the stack into slot `index` of the vector in temporary `vector`.
    StoreRemoteTemp {
        /// Slot in the temp vector (or object), 0-based.
        index: u8,
        /// Temporary holding the temp vector (with `inst_var`, the object).
        vector: u8,
        /// Access instance variable `index` of that object, not a temp-vector slot.
        inst_var: bool,
        /// Pop the stored value too.
        pop: bool,
    },
    /// Send the selector in literal `literal` with `args` arguments.
    Send {
        /// Literal holding the selector, 0-based.
        literal: u32,
        /// Arguments taken from the stack.
        args: u32,
    },
    /// Send the selector in literal `literal` to `super`.
    SuperSend {
        /// Literal holding the selector, 0-based.
        literal: u32,
        /// Arguments taken from the stack.
        args: u32,
        /// SistaV1 directed super send: the class is on the stack.
        directed: bool,
    },
    /// A special selector (index 0..31 of special object 23).
    SpecialSend {
        /// Index into the special selectors, 0..31.
        index: u8,
    },
    /// Jump to `target`.
    Jump {
        /// The absolute pc jumped to.
        target: u64,
    },
    /// Pop the top; jump to `target` when it is `true`.
    JumpIfTrue {
        /// The absolute pc jumped to.
        target: u64,
    },
    /// Pop the top; jump to `target` when it is `false`.
    JumpIfFalse {
        /// The absolute pc jumped to.
        target: u64,
    },
    /// Return the receiver from the home method.
    ReturnReceiver,
    /// Return `true` from the home method.
    ReturnTrue,
    /// Return `false` from the home method.
    ReturnFalse,
    /// Return `nil` from the home method.
    ReturnNil,
    /// Return the top of the stack from the home method.
    ReturnTop,
    /// Return the top of the stack from the block to its caller.
    BlockReturnTop,
    /// Return `nil` from the block to its caller.
    BlockReturnNil,
    /// A block whose body follows inline (V3 143, SistaV1 250).
    PushClosure {
        /// Values copied from the stack into the closure.
        copied: u32,
        /// Arguments the block takes.
        args: u32,
        /// Bytes of the inline body that follows.
        size: u32,
    },
    /// A FullBlockClosure on the CompiledBlock in a literal (SistaV1 249).
    PushFullClosure {
        /// Literal holding the CompiledBlock, 0-based.
        literal: u32,
        /// Values copied from the stack into the closure.
        copied: u8,
        /// The closure's receiver is popped from the stack instead of being `self`.
        receiver_on_stack: bool,
        /// The closure has no outer context (nil).
        ignore_outer: bool,
    },
    /// Call the method's primitive of this number (the first bytecode of a method).
    CallPrimitive(u16),
    /// A SistaV1 inlined (unsafe) primitive.
    CallInlinePrimitive(u16),
    /// SistaV1 `branch if (not) instance of` a literal behavior.
    BranchIfInstanceOf {
        /// Literal holding the behavior tested against, 0-based.
        literal: u32,
        /// The absolute pc jumped to when the test holds.
        target: u64,
        /// Jump when the top is *not* an instance of the behavior.
        negated: bool,
    },
    /// Do nothing (SistaV1 95).
    Nop,
    /// Trap to the image (SistaV1 217, `selectorSistaTrap`).
    Trap,
    /// A byte the set leaves unassigned (or an illegal operand).
    Unknown(u8),
    /// An extension prefix before a bytecode that takes none, or prefixes
    /// that widen an operand beyond its field (a u32 index or count).
    BadExtension(u8),
    /// The instruction runs past the end of the method.
    Truncated(u8),
}

/// One decoded instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The pc of its first byte (1-based byte index in the method object,
    /// counting from the method header, as contexts store it).
    pub pc: u64,
    /// Its bytes, extension prefixes included.
    pub bytes: Vec<u8>,
    /// What it does.
    pub op: Op,
}

impl Instruction {
    /// The pc after it.
    pub fn next_pc(&self) -> u64 {
        self.pc + u64_of(self.bytes.len())
    }
    /// Is it a real instruction of its set?
    pub fn is_valid(&self) -> bool {
        !matches!(
            self.op,
            Op::Unknown(_) | Op::BadExtension(_) | Op::Truncated(_)
        )
    }
    /// Does it return from the method?
    pub fn is_method_return(&self) -> bool {
        matches!(
            self.op,
            Op::ReturnReceiver | Op::ReturnTrue | Op::ReturnFalse | Op::ReturnNil | Op::ReturnTop
        )
    }
    /// Does it return from a block?
    pub fn is_block_return(&self) -> bool {
        matches!(self.op, Op::BlockReturnTop | Op::BlockReturnNil)
    }
    /// The pc it may jump to, if any.
    pub fn jump_target(&self) -> Option<u64> {
        match self.op {
            Op::Jump { target }
            | Op::JumpIfTrue { target }
            | Op::JumpIfFalse { target }
            | Op::BranchIfInstanceOf { target, .. } => Some(target),
            Op::PushClosure { size, .. } => Some(self.next_pc() + u64::from(size)),
            _ => None,
        }
    }

    /// The instruction as text: `81 <40> pushLitVar: 0 #Foo`. `literal`
    /// renders literal `i` (or `None` to show the index alone) and `special`
    /// the special selector `i`.
    pub fn text(
        &self,
        literal: &dyn Fn(u32) -> Option<String>,
        special: &dyn Fn(u8) -> Option<(String, u32)>,
    ) -> String {
        let mut hex = String::new();
        for (i, b) in self.bytes.iter().enumerate() {
            if i > 0 {
                hex.push(' ');
            }
            let _ = write!(hex, "{b:02X}");
        }
        let lit = |i: u32| literal(i).map_or(String::new(), |s| format!(" {s}"));
        let m = match self.op {
            Op::PushReceiverVariable(i) => format!("pushRcvr: {i}"),
            Op::PushLiteralVariable(i) => format!("pushLitVar: {i}{}", lit(i)),
            Op::PushLiteralConstant(i) => format!("pushConstant: {i}{}", lit(i)),
            Op::PushTemp(i) => format!("pushTemp: {i}"),
            Op::PushReceiver => "self".into(),
            Op::PushTrue => "pushConstant: true".into(),
            Op::PushFalse => "pushConstant: false".into(),
            Op::PushNil => "pushConstant: nil".into(),
            Op::PushInteger(v) => format!("pushConstant: {v}"),
            Op::PushCharacter(c) => match char::from_u32(c) {
                Some(ch) if !ch.is_control() => format!("pushConstant: ${ch}"),
                _ => format!("pushConstant: (Character value: {c})"),
            },
            Op::PushThisContext => "pushThisContext".into(),
            Op::PushThisProcess => "pushThisProcess".into(),
            Op::Dup => "dup".into(),
            Op::Pop => "pop".into(),
            Op::PushArray { size, pop: false } => format!("push: (Array new: {size})"),
            Op::PushArray { size, pop: true } => format!("pop {size} into: (Array new: {size})"),
            Op::StoreReceiverVariable { index, pop } => {
                format!("{}IntoRcvr: {index}", if pop { "popInto" } else { "store" })
            }
            Op::StoreLiteralVariable { index, pop } => format!(
                "{}IntoLitVar: {index}{}",
                if pop { "popInto" } else { "store" },
                lit(index)
            ),
            Op::StoreTemp { index, pop } => {
                format!("{}IntoTemp: {index}", if pop { "popInto" } else { "store" })
            }
            Op::PushRemoteTemp {
                index,
                vector,
                inst_var,
            } => format!(
                "push{}: {index} inVectorAt: {vector}",
                if inst_var { "RemoteInstVar" } else { "Temp" }
            ),
            Op::StoreRemoteTemp {
                index,
                vector,
                inst_var,
                pop,
            } => format!(
                "{}Into{}: {index} inVectorAt: {vector}",
                if pop { "pop" } else { "store" },
                if inst_var { "RemoteInstVar" } else { "Temp" }
            ),
            Op::Send { literal, args } => format!("send: {literal}{} ({args} args)", lit(literal)),
            Op::SuperSend {
                literal,
                args,
                directed,
            } => format!(
                "{}superSend: {literal}{} ({args} args)",
                if directed { "directed " } else { "" },
                lit(literal)
            ),
            Op::SpecialSend { index } => match special(index) {
                Some((s, n)) => format!("send: #{s} ({n} args)"),
                None => format!("send special selector {index}"),
            },
            Op::Jump { target } => format!("jumpTo: {target}"),
            Op::JumpIfTrue { target } => format!("jumpTrue: {target}"),
            Op::JumpIfFalse { target } => format!("jumpFalse: {target}"),
            Op::ReturnReceiver => "returnSelf".into(),
            Op::ReturnTrue => "returnTrue".into(),
            Op::ReturnFalse => "returnFalse".into(),
            Op::ReturnNil => "returnNil".into(),
            Op::ReturnTop => "returnTop".into(),
            Op::BlockReturnTop => "blockReturn".into(),
            Op::BlockReturnNil => "blockReturnNil".into(),
            Op::PushClosure { copied, args, size } => format!(
                "closure(copied: {copied}, args: {args}) to: {}",
                self.next_pc() + u64::from(size)
            ),
            Op::PushFullClosure {
                literal,
                copied,
                receiver_on_stack,
                ignore_outer,
            } => format!(
                "pushFullClosure: {literal}{} copied: {copied}{}{}",
                lit(literal),
                if receiver_on_stack {
                    " receiverOnStack"
                } else {
                    ""
                },
                if ignore_outer { " ignoreOuter" } else { "" }
            ),
            Op::CallPrimitive(p) => format!("<primitive: {p}>"),
            Op::CallInlinePrimitive(p) => format!("inlinePrimitive: {p}"),
            Op::BranchIfInstanceOf {
                literal,
                target,
                negated,
            } => format!(
                "branchIf{}InstanceOf: {literal}{} to: {target}",
                if negated { "Not" } else { "" },
                lit(literal)
            ),
            Op::Nop => "nop".into(),
            Op::Trap => "trap".into(),
            Op::Unknown(b) => format!("unknown bytecode {b} (0x{b:02X})"),
            Op::BadExtension(b) => {
                format!("extension before bytecode {b} (0x{b:02X}), which takes none")
            }
            Op::Truncated(b) => {
                format!("bytecode {b} (0x{b:02X}) cut off by the end of the method")
            }
        };
        format!("{} <{hex}> {m}", self.pc)
    }
}

/// Decodes the instruction at byte offset `at` of `code` (the method
/// object's bytes, so that `pc = at + 1`).
pub fn decode_at(set: BytecodeSet, code: &[u8], at: usize) -> Instruction {
    let (op, len) = decode_op(set, code, at);
    instruction(code, at, op, len)
}

/// The operation at byte offset `at` of `code` and its length in bytes
/// (extension prefixes included), without allocating. This is the one
/// table of both sets: [`decode_at`] and the interpreter both use it.
/// `at` must be inside `code`.
#[inline]
pub fn decode_op(set: BytecodeSet, code: &[u8], at: usize) -> (Op, usize) {
    match set {
        BytecodeSet::V3PlusClosures => v3::decode_op(code, at),
        BytecodeSet::SistaV1 => sista::decode_op(code, at),
    }
}

/// A method's bytecodes decoded from its first pc to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The instructions, in pc order.
    pub instructions: Vec<Instruction>,
    /// The pc just past the last instruction: the method's bytecodes end
    /// there (its trailer follows).
    pub end_pc: u64,
}

/// Decodes a method from `initial_pc` to its end.
///
/// The end is the first return past which no jump (or inline block) goes;
/// for a CompiledBlock (`block`) block returns count too. Decoding also
/// stops at an invalid instruction and at the end of `code`. The trailer
/// (source pointer, temp names) is never decoded.
pub fn decode_method(set: BytecodeSet, code: &[u8], initial_pc: u64, block: bool) -> Decoded {
    let mut instructions = Vec::new();
    let mut pc = initial_pc.max(1);
    let mut furthest = pc;
    while to_usize(pc - 1) < code.len() {
        let ins = decode_at(set, code, to_usize(pc - 1));
        let next = ins.next_pc();
        let valid = ins.is_valid();
        if let Some(t) = ins.jump_target() {
            furthest = furthest.max(t);
        }
        let ends = ins.is_method_return() || (block && ins.is_block_return());
        instructions.push(ins);
        pc = next;
        if !valid || (ends && next > furthest) {
            break;
        }
    }
    Decoded {
        instructions,
        end_pc: pc,
    }
}

/// The 32 special selectors and their argument counts (§4.3, special
/// object 23); used when the image's own array cannot be read.
pub use spur_format::raw::SPECIAL_SELECTORS;

/// A decoded operation and its length, or the `Truncated` one that ends
/// `code`.
pub(crate) type Decode = Result<(Op, usize), (Op, usize)>;

/// Byte `i` of `code`, or the `Truncated` operation of `code[at]`.
#[inline]
pub(crate) fn operand(code: &[u8], at: usize, i: usize) -> Result<u8, (Op, usize)> {
    code.get(at + i)
        .copied()
        .ok_or((Op::Truncated(code[at]), code.len() - at))
}

/// An operation of `len` bytes.
#[inline]
pub(crate) fn mk(len: usize, op: Op) -> (Op, usize) {
    (op, len)
}

/// The instruction of `len` bytes at `at`.
pub(crate) fn instruction(code: &[u8], at: usize, op: Op, len: usize) -> Instruction {
    Instruction {
        pc: u64_of(at) + 1,
        bytes: code[at..(at + len).min(code.len())].to_vec(),
        op,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: u32) -> Option<String> {
        None
    }
    fn special(i: u8) -> Option<(String, u32)> {
        let (s, n) = SPECIAL_SELECTORS[usize::from(i)];
        Some((s.to_string(), n))
    }

    #[test]
    fn a_method_ends_at_its_last_return_not_at_its_trailer() {
        // pushTemp 0; jumpFalse +2 (to the second return); pushConstant 1; returnTop;
        // pushConstant 2; returnTop; then a 4-byte trailer.
        let mut code = vec![0u8; 16];
        code.extend_from_slice(&[0x10, 0x99, 0x76, 0x7C, 0x77, 0x7C, 0xFE, 0xFE, 0xFE, 0xFE]);
        let d = decode_method(BytecodeSet::V3PlusClosures, &code, 17, false);
        assert_eq!(d.instructions.len(), 6);
        assert_eq!(d.end_pc, 23);
        assert!(d.instructions.iter().all(Instruction::is_valid));
        assert_eq!(
            d.instructions[1].text(&none, &special),
            "18 <99> jumpFalse: 21"
        );
    }

    #[test]
    fn an_inline_block_does_not_end_the_method() {
        // V3: closure(copied 0, args 0) of 2 bytes: [pushConstant 1. blockReturn]; pop; returnSelf.
        let code = [0x8F, 0x00, 0x00, 0x02, 0x76, 0x7D, 0x87, 0x78, 0x00];
        let d = decode_method(BytecodeSet::V3PlusClosures, &code, 1, false);
        let ops: Vec<_> = d.instructions.iter().map(|i| i.op).collect();
        assert_eq!(
            ops,
            vec![
                Op::PushClosure {
                    copied: 0,
                    args: 0,
                    size: 2
                },
                Op::PushInteger(1),
                Op::BlockReturnTop,
                Op::Pop,
                Op::ReturnReceiver
            ]
        );
        assert_eq!(d.end_pc, 9);
    }

    #[test]
    fn a_compiled_block_ends_at_its_block_return() {
        // SistaV1: pushConstant 1; blockReturn; then junk.
        let code = [0x51, 0x5E, 0xFF, 0xFF];
        let d = decode_method(BytecodeSet::SistaV1, &code, 1, true);
        assert_eq!(d.instructions.len(), 2);
        assert_eq!(d.end_pc, 3);
    }

    #[test]
    fn decoding_stops_at_an_unknown_bytecode_and_names_it() {
        let code = [0x70, 0x7E, 0x7C];
        let d = decode_method(BytecodeSet::V3PlusClosures, &code, 1, false);
        assert_eq!(d.instructions.len(), 2);
        assert!(!d.instructions[1].is_valid());
        assert_eq!(
            d.instructions[1].text(&none, &special),
            "2 <7E> unknown bytecode 126 (0x7E)"
        );
        let cut = decode_at(BytecodeSet::SistaV1, &[0xF8, 0x01], 0);
        assert_eq!(cut.op, Op::Truncated(0xF8));
        assert_eq!(cut.bytes, vec![0xF8, 0x01]);
    }
}
