//! The V3PlusClosures bytecode set (Squeak's `EncoderForV3PlusClosures`):
//! the original Blue Book set with the closure bytecodes 138..143.
//!
//! | bytes | meaning |
//! |---|---|
//! | 0-15, 16-31 | push receiver variable, push temp |
//! | 32-63, 64-95 | push literal constant, push literal variable |
//! | 96-103, 104-111 | pop into receiver variable, pop into temp |
//! | 112-119 | push self, true, false, nil, -1, 0, 1, 2 |
//! | 120-125 | return self, true, false, nil, top; block return top |
//! | 126, 127 | unassigned |
//! | 128-130 | extended push / store / pop-store (type in the top 2 bits) |
//! | 131, 133, 134 | extended send, extended super send, second extended send |
//! | 132 | double extended do-anything |
//! | 135-137 | pop, dup, push thisContext |
//! | 138 | push new array / pop into new array |
//! | 139 | call primitive (2-byte index) |
//! | 140-142 | push / store / pop-store remote temp |
//! | 143 | push closure (copied, args, 16-bit block size) |
//! | 144-151, 152-159 | short jump, short pop-jump-false (offset 1..8) |
//! | 160-167 | long jump (offset -1024..1023) |
//! | 168-171, 172-175 | long pop-jump-true, -false (offset 0..1023) |
//! | 176-207 | special selector sends |
//! | 208-255 | send literal selector 0..15 with 0, 1, 2 args |

use super::{mk, operand, Decode, Instruction, Op};
use spur_loader::conv::u64_of;

/// Decodes the instruction at `code[at]`.
pub fn decode(code: &[u8], at: usize) -> Instruction {
    let (op, len) = decode_op(code, at);
    super::instruction(code, at, op, len)
}

/// The operation at `code[at]` and its length in bytes, without allocating:
/// what the interpreter dispatches on.
#[inline]
pub fn decode_op(code: &[u8], at: usize) -> (Op, usize) {
    match try_decode(code, at) {
        Ok(d) | Err(d) => d,
    }
}

#[inline]
fn try_decode(code: &[u8], at: usize) -> Decode {
    let b = code[at];
    let one = |op| Ok((op, 1));
    // A slice index is at most `isize::MAX`, so `at + len` fits an i64;
    // a jump before the method's first byte is clamped to pc 0.
    let next = |len: usize, off: i64| {
        (u64_of(at + len).cast_signed() + 1 + off)
            .max(0)
            .cast_unsigned()
    };
    match b {
        0..=15 => one(Op::PushReceiverVariable(u32::from(b & 15))),
        16..=31 => one(Op::PushTemp(u32::from(b & 15))),
        32..=63 => one(Op::PushLiteralConstant(u32::from(b & 31))),
        64..=95 => one(Op::PushLiteralVariable(u32::from(b & 31))),
        96..=103 => one(Op::StoreReceiverVariable {
            index: u32::from(b & 7),
            pop: true,
        }),
        104..=111 => one(Op::StoreTemp {
            index: u32::from(b & 7),
            pop: true,
        }),
        112 => one(Op::PushReceiver),
        113 => one(Op::PushTrue),
        114 => one(Op::PushFalse),
        115 => one(Op::PushNil),
        116..=119 => one(Op::PushInteger(i64::from(b) - 117)),
        120 => one(Op::ReturnReceiver),
        121 => one(Op::ReturnTrue),
        122 => one(Op::ReturnFalse),
        123 => one(Op::ReturnNil),
        124 => one(Op::ReturnTop),
        125 => one(Op::BlockReturnTop),
        126 | 127 => one(Op::Unknown(b)),
        128..=130 => {
            let d = operand(code, at, 1)?;
            let index = u32::from(d & 63);
            let pop = b == 130;
            let op = match (b, d >> 6) {
                (128, 0) => Op::PushReceiverVariable(index),
                (128, 1) => Op::PushTemp(index),
                (128, 2) => Op::PushLiteralConstant(index),
                (128, _) => Op::PushLiteralVariable(index),
                (_, 0) => Op::StoreReceiverVariable { index, pop },
                (_, 1) => Op::StoreTemp { index, pop },
                // Storing into a literal constant is illegal.
                (_, 2) => Op::Unknown(b),
                (_, _) => Op::StoreLiteralVariable { index, pop },
            };
            Ok(mk(2, op))
        }
        131 | 133 => {
            let d = operand(code, at, 1)?;
            let (literal, args) = (u32::from(d & 31), u32::from(d >> 5));
            let op = if b == 131 {
                Op::Send { literal, args }
            } else {
                Op::SuperSend {
                    literal,
                    args,
                    directed: false,
                }
            };
            Ok(mk(2, op))
        }
        132 => {
            let d = operand(code, at, 1)?;
            let i = u32::from(operand(code, at, 2)?);
            let args = u32::from(d & 31);
            let op = match d >> 5 {
                0 => Op::Send { literal: i, args },
                1 => Op::SuperSend {
                    literal: i,
                    args,
                    directed: false,
                },
                2 => Op::PushReceiverVariable(i),
                3 => Op::PushLiteralConstant(i),
                4 => Op::PushLiteralVariable(i),
                5 => Op::StoreReceiverVariable {
                    index: i,
                    pop: false,
                },
                6 => Op::StoreReceiverVariable {
                    index: i,
                    pop: true,
                },
                _ => Op::StoreLiteralVariable {
                    index: i,
                    pop: false,
                },
            };
            Ok(mk(3, op))
        }
        134 => {
            let d = operand(code, at, 1)?;
            Ok(mk(
                2,
                Op::Send {
                    literal: u32::from(d & 63),
                    args: u32::from(d >> 6),
                },
            ))
        }
        135 => one(Op::Pop),
        136 => one(Op::Dup),
        137 => one(Op::PushThisContext),
        138 => {
            let d = operand(code, at, 1)?;
            Ok(mk(
                2,
                Op::PushArray {
                    size: d & 127,
                    pop: d >> 7 == 1,
                },
            ))
        }
        139 => {
            let lo = u16::from(operand(code, at, 1)?);
            let hi = u16::from(operand(code, at, 2)?);
            Ok(mk(3, Op::CallPrimitive(lo | hi << 8)))
        }
        140..=142 => {
            let index = operand(code, at, 1)?;
            let vector = operand(code, at, 2)?;
            let op = if b == 140 {
                Op::PushRemoteTemp {
                    index,
                    vector,
                    inst_var: false,
                }
            } else {
                Op::StoreRemoteTemp {
                    index,
                    vector,
                    inst_var: false,
                    pop: b == 142,
                }
            };
            Ok(mk(3, op))
        }
        143 => {
            let d = operand(code, at, 1)?;
            let hi = u32::from(operand(code, at, 2)?);
            let lo = u32::from(operand(code, at, 3)?);
            Ok(mk(
                4,
                Op::PushClosure {
                    copied: u32::from(d >> 4),
                    args: u32::from(d & 15),
                    size: hi << 8 | lo,
                },
            ))
        }
        144..=151 => one(Op::Jump {
            target: next(1, i64::from(b & 7) + 1),
        }),
        152..=159 => one(Op::JumpIfFalse {
            target: next(1, i64::from(b & 7) + 1),
        }),
        160..=167 => {
            let d = i64::from(operand(code, at, 1)?);
            let off = (i64::from(b & 7) - 4) * 256 + d;
            Ok(mk(
                2,
                Op::Jump {
                    target: next(2, off),
                },
            ))
        }
        168..=175 => {
            let d = i64::from(operand(code, at, 1)?);
            let target = next(2, i64::from(b & 3) * 256 + d);
            let op = if b < 172 {
                Op::JumpIfTrue { target }
            } else {
                Op::JumpIfFalse { target }
            };
            Ok(mk(2, op))
        }
        176..=207 => one(Op::SpecialSend { index: b - 176 }),
        208..=255 => one(Op::Send {
            literal: u32::from(b & 15),
            args: u32::from((b - 208) / 16),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(code: &[u8]) -> Op {
        decode(code, 0).op
    }

    #[test]
    fn every_single_byte_code_decodes_as_the_table_says() {
        assert_eq!(op(&[0x70]), Op::PushReceiver);
        assert_eq!(op(&[0x76]), Op::PushInteger(1));
        assert_eq!(op(&[0x74]), Op::PushInteger(-1));
        assert_eq!(op(&[0x78]), Op::ReturnReceiver);
        assert_eq!(op(&[0x7C]), Op::ReturnTop);
        assert_eq!(op(&[0x87]), Op::Pop);
        assert_eq!(op(&[0xB0]), Op::SpecialSend { index: 0 });
        assert_eq!(
            op(&[0xD1]),
            Op::Send {
                literal: 1,
                args: 0
            }
        );
        assert_eq!(
            op(&[0xE3]),
            Op::Send {
                literal: 3,
                args: 1
            }
        );
        assert_eq!(
            op(&[0xF0]),
            Op::Send {
                literal: 0,
                args: 2
            }
        );
        assert_eq!(op(&[0x45]), Op::PushLiteralVariable(5));
        assert_eq!(
            op(&[0x6A]),
            Op::StoreTemp {
                index: 2,
                pop: true
            }
        );
        for b in 0..=255u8 {
            let i = decode(&[b, 0, 0, 0], 0);
            assert_eq!(i.is_valid(), !matches!(b, 126 | 127), "{b}");
        }
    }

    #[test]
    fn multi_byte_codes() {
        assert_eq!(
            op(&[0x83, 0xE6]),
            Op::Send {
                literal: 6,
                args: 7
            }
        );
        assert_eq!(op(&[0x81, 0x80]), Op::Unknown(0x81));
        assert_eq!(
            op(&[0x82, 0xC3]),
            Op::StoreLiteralVariable {
                index: 3,
                pop: true
            }
        );
        assert_eq!(
            op(&[0x84, 0x02, 0x07]),
            Op::Send {
                literal: 7,
                args: 2
            }
        );
        assert_eq!(op(&[0x8B, 0x3C, 0x01]), Op::CallPrimitive(316));
        assert_eq!(op(&[0x8A, 0x83]), Op::PushArray { size: 3, pop: true });
        // A long jump back by 4 from pc 11: (160 + 3 - 4) * 256 + 252 = -4.
        let j = decode(
            &[0u8; 12]
                .iter()
                .chain(&[0xA3, 0xFC])
                .copied()
                .collect::<Vec<_>>(),
            12,
        );
        assert_eq!(j.op, Op::Jump { target: 11 });
        assert_eq!(op(&[0x8F, 0x21]), Op::Truncated(0x8F));
    }
}
