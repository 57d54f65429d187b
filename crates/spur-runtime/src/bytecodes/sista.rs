//! The SistaV1 bytecode set (`EncoderForSistaV1`), the alternate set of
//! Pharo 8+, Squeak 6 and Cuis.
//!
//! | bytes | meaning |
//! |---|---|
//! | 0-15, 16-31, 32-63 | push receiver variable, literal variable, literal constant |
//! | 64-75 | push temp 0..11 |
//! | 76-83 | push self, true, false, nil, 0, 1, thisContext (thisProcess with ext B 1), dup |
//! | 84-87 | unassigned |
//! | 88-95 | return self, true, false, nil, top; block return nil, top; nop |
//! | 96-127 | special selector sends |
//! | 128-175 | send literal selector 0..15 with 0, 1, 2 args |
//! | 176-199 | short jump, pop-jump-true, pop-jump-false (offset 1..8) |
//! | 200-215 | pop into receiver variable, pop into temp |
//! | 216, 217 | pop, trap |
//! | 218-223 | unassigned |
//! | 224, 225 | extension A (unsigned), extension B (signed): prefixes |
//! | 226-247 | two-byte codes (pushes, sends, jumps, stores; 230, 236, 246, 247 unassigned) |
//! | 248-254 | three-byte codes (primitive, full closure, closure, remote temps, instance-of branch) |
//! | 255 | unassigned |
//!
//! Extensions accumulate (`A = A*256 + a`; the first B byte is signed) and
//! are part of the instruction they extend; an extension before a bytecode
//! that takes none is reported as such.

use super::{operand, Decode, Instruction, Op};
use spur_loader::conv::u64_of;

/// Bytecodes an extension may precede.
fn extensible(b: u8) -> bool {
    matches!(b, 82 | 94 | 95 | 226..=229 | 231..=245 | 248..=255)
}

/// Decodes the instruction at `code[at]`, extension prefixes included.
pub fn decode(code: &[u8], at: usize) -> Instruction {
    let (op, len) = decode_op(code, at);
    super::instruction(code, at, op, len)
}

/// The operation at `code[at]` (extension prefixes included) and its length
/// in bytes, without allocating: what the interpreter dispatches on.
#[inline]
pub fn decode_op(code: &[u8], at: usize) -> (Op, usize) {
    match try_decode(code, at) {
        Ok(d) | Err(d) => d,
    }
}

#[inline]
fn try_decode(code: &[u8], start: usize) -> Decode {
    let mut at = start;
    let mut ext_a: i64 = 0;
    let mut ext_b: i64 = 0;
    let mut n_ext = 0;
    while code[at] == 224 || code[at] == 225 {
        let v = i64::from(
            operand(code, at, 1).map_err(|_| (Op::Truncated(code[start]), code.len() - start))?,
        );
        // Saturating: a run of prefixes too long for any operand then fails
        // the operand's range check below instead of overflowing.
        if code[at] == 224 {
            ext_a = ext_a.saturating_mul(256).saturating_add(v);
        } else {
            ext_b = if ext_b == 0 && v > 127 {
                v - 256
            } else {
                ext_b.saturating_mul(256).saturating_add(v)
            };
        }
        n_ext += 1;
        at += 2;
        if at >= code.len() {
            return Err((Op::Truncated(code[start]), code.len() - start));
        }
    }
    let b = code[at];
    if n_ext > 0 && !extensible(b) {
        return Ok((Op::BadExtension(b), at - start + 1));
    }
    let fix = |_| (Op::Truncated(code[start]), code.len() - start);
    let one = |op| Ok((op, at - start + 1));
    let two = |op| Ok((op, at - start + 2));
    let three = |op| Ok((op, at - start + 3));
    // A slice index is at most `isize::MAX`, so `at + len` fits an i64.
    let target = |len: usize, off: i64| {
        u64_of(at + len)
            .cast_signed()
            .saturating_add(1)
            .saturating_add(off)
            .max(0)
            .cast_unsigned()
    };
    let byte = |i: usize| operand(code, at, i).map_err(fix).map(i64::from);
    // An operand widened by extensions beyond its field (too many prefix
    // bytes) makes the instruction, `len` bytes long, a bad extension.
    let fit =
        |v: i64, len: usize| u32::try_from(v).map_err(|_| (Op::BadExtension(b), at - start + len));
    match b {
        0..=15 => one(Op::PushReceiverVariable(u32::from(b & 15))),
        16..=31 => one(Op::PushLiteralVariable(u32::from(b & 15))),
        32..=63 => one(Op::PushLiteralConstant(u32::from(b & 31))),
        64..=71 => one(Op::PushTemp(u32::from(b & 7))),
        72..=75 => one(Op::PushTemp(u32::from(b & 3) + 8)),
        76 => one(Op::PushReceiver),
        77 => one(Op::PushTrue),
        78 => one(Op::PushFalse),
        79 => one(Op::PushNil),
        80 => one(Op::PushInteger(0)),
        81 => one(Op::PushInteger(1)),
        82 if ext_b == 1 => one(Op::PushThisProcess),
        82 => one(Op::PushThisContext),
        83 => one(Op::Dup),
        84..=87 => one(Op::Unknown(b)),
        88 => one(Op::ReturnReceiver),
        89 => one(Op::ReturnTrue),
        90 => one(Op::ReturnFalse),
        91 => one(Op::ReturnNil),
        92 => one(Op::ReturnTop),
        93 => one(Op::BlockReturnNil),
        94 => one(Op::BlockReturnTop),
        95 => one(Op::Nop),
        96..=127 => one(Op::SpecialSend { index: b - 96 }),
        128..=175 => one(Op::Send {
            literal: u32::from(b & 15),
            args: u32::from((b - 128) / 16),
        }),
        176..=183 => one(Op::Jump {
            target: target(1, i64::from(b & 7) + 1),
        }),
        184..=191 => one(Op::JumpIfTrue {
            target: target(1, i64::from(b & 7) + 1),
        }),
        192..=199 => one(Op::JumpIfFalse {
            target: target(1, i64::from(b & 7) + 1),
        }),
        200..=207 => one(Op::StoreReceiverVariable {
            index: u32::from(b & 7),
            pop: true,
        }),
        208..=215 => one(Op::StoreTemp {
            index: u32::from(b & 7),
            pop: true,
        }),
        216 => one(Op::Pop),
        217 => one(Op::Trap),
        218..=223 => one(Op::Unknown(b)),
        224 | 225 => unreachable!("extensions are consumed above"),
        226..=247 => {
            let i = byte(1)?;
            let i8 = code[at + 1];
            let wide_a = fit(i + ext_a.saturating_mul(256), 2)?;
            let op = match b {
                226 => Op::PushReceiverVariable(wide_a),
                227 => Op::PushLiteralVariable(wide_a),
                228 => Op::PushLiteralConstant(wide_a),
                229 => Op::PushTemp(u32::from(i8)),
                231 => Op::PushArray {
                    size: i8 & 127,
                    pop: i8 >> 7 == 1,
                },
                232 => Op::PushInteger(i.saturating_add(ext_b.saturating_mul(256))),
                233 => Op::PushCharacter(fit(i + ext_b.saturating_mul(256), 2)?),
                234 => Op::Send {
                    literal: fit((i >> 3) + ext_a.saturating_mul(32), 2)?,
                    args: fit((i & 7) + ext_b.saturating_mul(8), 2)?,
                },
                235 => {
                    let directed = ext_b >= 64;
                    Op::SuperSend {
                        literal: fit((i >> 3) + ext_a.saturating_mul(32), 2)?,
                        args: fit((i & 7) + (ext_b & 63) * 8, 2)?,
                        directed,
                    }
                }
                237 => Op::Jump {
                    target: target(2, i + ext_b.saturating_mul(256)),
                },
                238 => Op::JumpIfTrue {
                    target: target(2, i + ext_b.saturating_mul(256)),
                },
                239 => Op::JumpIfFalse {
                    target: target(2, i + ext_b.saturating_mul(256)),
                },
                240 => Op::StoreReceiverVariable {
                    index: wide_a,
                    pop: true,
                },
                241 => Op::StoreLiteralVariable {
                    index: wide_a,
                    pop: true,
                },
                242 => Op::StoreTemp {
                    index: u32::from(i8),
                    pop: true,
                },
                243 => Op::StoreReceiverVariable {
                    index: wide_a,
                    pop: false,
                },
                244 => Op::StoreLiteralVariable {
                    index: wide_a,
                    pop: false,
                },
                245 => Op::StoreTemp {
                    index: u32::from(i8),
                    pop: false,
                },
                // 230, 236, 246, 247.
                _ => Op::Unknown(b),
            };
            two(op)
        }
        248..=255 => {
            let i = byte(1)?;
            let j = byte(2)?;
            let (i8, j8) = (code[at + 1], code[at + 2]);
            let op = match b {
                248 => {
                    let index = u16::from(i8) | u16::from(j8 & 31) << 8;
                    if j8 >> 7 == 1 {
                        Op::CallInlinePrimitive(index)
                    } else {
                        Op::CallPrimitive(index)
                    }
                }
                249 => Op::PushFullClosure {
                    literal: fit(i + ext_a.saturating_mul(256), 3)?,
                    copied: j8 & 63,
                    receiver_on_stack: j8 >> 7 == 1,
                    ignore_outer: j8 >> 6 & 1 == 1,
                },
                250 => Op::PushClosure {
                    copied: fit((i >> 3 & 7) + ext_a / 16 * 8, 3)?,
                    args: fit((i & 7) + ext_a % 16 * 8, 3)?,
                    size: fit(j + ext_b.saturating_mul(256), 3)?,
                },
                251 => Op::PushRemoteTemp {
                    index: i8,
                    vector: j8 & 127,
                    inst_var: j8 >> 7 == 1,
                },
                252 | 253 => Op::StoreRemoteTemp {
                    index: i8,
                    vector: j8 & 127,
                    inst_var: j8 >> 7 == 1,
                    pop: b == 253,
                },
                254 => Op::BranchIfInstanceOf {
                    literal: fit(i + ext_a.saturating_mul(256), 3)?,
                    target: target(3, j + (ext_b & 127) * 256),
                    negated: ext_b < 128,
                },
                _ => Op::Unknown(b),
            };
            three(op)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(code: &[u8]) -> Op {
        decode(code, 0).op
    }

    #[test]
    fn single_byte_codes_follow_the_table() {
        assert_eq!(op(&[0x4C]), Op::PushReceiver);
        assert_eq!(op(&[0x4F]), Op::PushNil);
        assert_eq!(op(&[0x51]), Op::PushInteger(1));
        assert_eq!(op(&[0x58]), Op::ReturnReceiver);
        assert_eq!(op(&[0x5C]), Op::ReturnTop);
        assert_eq!(op(&[0x60]), Op::SpecialSend { index: 0 });
        assert_eq!(op(&[0x7F]), Op::SpecialSend { index: 31 });
        assert_eq!(
            op(&[0x92]),
            Op::Send {
                literal: 2,
                args: 1
            }
        );
        assert_eq!(op(&[0xD8]), Op::Pop);
        assert_eq!(op(&[0x10]), Op::PushLiteralVariable(0));
        assert_eq!(op(&[0x21]), Op::PushLiteralConstant(1));
        assert_eq!(op(&[0x4A]), Op::PushTemp(10));
        let unassigned = [
            84, 85, 86, 87, 218, 219, 220, 221, 222, 223, 230, 236, 246, 247, 255,
        ];
        for b in 0..=255u8 {
            if b == 224 || b == 225 {
                continue;
            }
            let i = decode(&[b, 0, 0], 0);
            assert_eq!(i.is_valid(), !unassigned.contains(&b), "{b}");
        }
    }

    #[test]
    fn extensions_widen_the_instruction_they_precede() {
        // Ext A 1, push literal 4: literal 260.
        let i = decode(&[0xE0, 0x01, 0xE4, 0x04], 0);
        assert_eq!(i.op, Op::PushLiteralConstant(260));
        assert_eq!(i.bytes.len(), 4);
        assert_eq!(i.pc, 1);
        // Ext B -1 (0xFF), push integer 0: -256.
        assert_eq!(op(&[0xE1, 0xFF, 0xE8, 0x00]), Op::PushInteger(-256));
        // A backward jump: Ext B -1, jump 0xF0 from pc 1 (next pc 5): 5 - 16 = -11 -> 0.
        let j = decode(
            &[0u8; 20]
                .iter()
                .chain(&[0xE1, 0xFF, 0xED, 0xF0])
                .copied()
                .collect::<Vec<_>>(),
            20,
        );
        assert_eq!(j.op, Op::Jump { target: 9 });
        // Ext B 1 turns push thisContext into push thisProcess.
        assert_eq!(op(&[0xE1, 0x01, 0x52]), Op::PushThisProcess);
        // An extension before a plain push is invalid.
        let bad = decode(&[0xE0, 0x01, 0x4C], 0);
        assert_eq!(bad.op, Op::BadExtension(0x4C));
        assert_eq!(bad.bytes, vec![0xE0, 0x01, 0x4C]);
        assert_eq!(op(&[0xE0]), Op::Truncated(0xE0));
    }

    #[test]
    fn three_byte_codes() {
        assert_eq!(op(&[0xF8, 0x3C, 0x01]), Op::CallPrimitive(316));
        assert_eq!(op(&[0xF8, 0x3C, 0x81]), Op::CallInlinePrimitive(316));
        assert_eq!(
            op(&[0xF9, 0x02, 0x81]),
            Op::PushFullClosure {
                literal: 2,
                copied: 1,
                receiver_on_stack: true,
                ignore_outer: false
            }
        );
        assert_eq!(
            op(&[0xFA, 0x09, 0x05]),
            Op::PushClosure {
                copied: 1,
                args: 1,
                size: 5
            }
        );
        assert_eq!(
            op(&[0xFD, 0x02, 0x03]),
            Op::StoreRemoteTemp {
                index: 2,
                vector: 3,
                inst_var: false,
                pop: true
            }
        );
    }

    #[test]
    fn extensions_too_wide_for_the_operand_make_a_bad_extension() {
        // Two extA prefixes: pushLiteralVariable 0x0102 * 256 + 3.
        assert_eq!(
            op(&[0xE0, 1, 0xE0, 2, 0xE3, 3]),
            Op::PushLiteralVariable(0x01_0203)
        );
        // Four extA of 0xFF push the index past u32: refused, all 10 bytes.
        let mut code = [0xE0, 0xFF].repeat(4);
        code.extend_from_slice(&[0xE3, 3]);
        let i = decode(&code, 0);
        assert_eq!(i.op, Op::BadExtension(0xE3));
        assert_eq!(i.next_pc(), 11);
        // Twenty prefixes would overflow an i64: still a bad extension.
        let mut code = [0xE0, 0xFF].repeat(20);
        code.extend_from_slice(&[0xE3, 3]);
        assert_eq!(op(&code), Op::BadExtension(0xE3));
    }
}
