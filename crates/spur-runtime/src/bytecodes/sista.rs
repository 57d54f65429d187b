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
        let v = operand(code, at, 1)
            .map_err(|_| (Op::Truncated(code[start]), code.len() - start))? as i64;
        if code[at] == 224 {
            ext_a = ext_a * 256 + v;
        } else {
            ext_b = if ext_b == 0 && v > 127 {
                v - 256
            } else {
                ext_b * 256 + v
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
    let target = |len: usize, off: i64| ((at + len) as i64 + 1 + off).max(0) as u64;
    let byte = |i: usize| operand(code, at, i).map_err(fix);
    match b {
        0..=15 => one(Op::PushReceiverVariable((b & 15) as u32)),
        16..=31 => one(Op::PushLiteralVariable((b & 15) as u32)),
        32..=63 => one(Op::PushLiteralConstant((b & 31) as u32)),
        64..=71 => one(Op::PushTemp((b & 7) as u32)),
        72..=75 => one(Op::PushTemp((b & 3) as u32 + 8)),
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
            literal: (b & 15) as u32,
            args: ((b - 128) / 16) as u32,
        }),
        176..=183 => one(Op::Jump {
            target: target(1, (b & 7) as i64 + 1),
        }),
        184..=191 => one(Op::JumpIfTrue {
            target: target(1, (b & 7) as i64 + 1),
        }),
        192..=199 => one(Op::JumpIfFalse {
            target: target(1, (b & 7) as i64 + 1),
        }),
        200..=207 => one(Op::StoreReceiverVariable {
            index: (b & 7) as u32,
            pop: true,
        }),
        208..=215 => one(Op::StoreTemp {
            index: (b & 7) as u32,
            pop: true,
        }),
        216 => one(Op::Pop),
        217 => one(Op::Trap),
        218..=223 => one(Op::Unknown(b)),
        224 | 225 => unreachable!("extensions are consumed above"),
        226..=247 => {
            let i = byte(1)? as i64;
            let wide_a = (i + ext_a * 256) as u32;
            let op = match b {
                226 => Op::PushReceiverVariable(wide_a),
                227 => Op::PushLiteralVariable(wide_a),
                228 => Op::PushLiteralConstant(wide_a),
                229 => Op::PushTemp(i as u32),
                231 => Op::PushArray {
                    size: (i & 127) as u8,
                    pop: i >> 7 == 1,
                },
                232 => Op::PushInteger(i + ext_b * 256),
                233 => Op::PushCharacter((i + ext_b * 256) as u32),
                234 => Op::Send {
                    literal: ((i >> 3) + ext_a * 32) as u32,
                    args: ((i & 7) + ext_b * 8) as u32,
                },
                235 => {
                    let directed = ext_b >= 64;
                    Op::SuperSend {
                        literal: ((i >> 3) + ext_a * 32) as u32,
                        args: ((i & 7) + (ext_b & 63) * 8) as u32,
                        directed,
                    }
                }
                237 => Op::Jump {
                    target: target(2, i + ext_b * 256),
                },
                238 => Op::JumpIfTrue {
                    target: target(2, i + ext_b * 256),
                },
                239 => Op::JumpIfFalse {
                    target: target(2, i + ext_b * 256),
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
                    index: i as u32,
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
                    index: i as u32,
                    pop: false,
                },
                // 230, 236, 246, 247.
                _ => Op::Unknown(b),
            };
            two(op)
        }
        248..=255 => {
            let i = byte(1)? as i64;
            let j = byte(2)? as i64;
            let op = match b {
                248 => {
                    let index = (i + (j & 31) * 256) as u16;
                    if j >> 7 == 1 {
                        Op::CallInlinePrimitive(index)
                    } else {
                        Op::CallPrimitive(index)
                    }
                }
                249 => Op::PushFullClosure {
                    literal: (i + ext_a * 256) as u32,
                    copied: (j & 63) as u8,
                    receiver_on_stack: j >> 7 == 1,
                    ignore_outer: j >> 6 & 1 == 1,
                },
                250 => Op::PushClosure {
                    copied: ((i >> 3 & 7) + ext_a / 16 * 8) as u32,
                    args: ((i & 7) + ext_a % 16 * 8) as u32,
                    size: (j + ext_b * 256) as u32,
                },
                251 => Op::PushRemoteTemp {
                    index: i as u8,
                    vector: (j & 127) as u8,
                    inst_var: j >> 7 == 1,
                },
                252 | 253 => Op::StoreRemoteTemp {
                    index: i as u8,
                    vector: (j & 127) as u8,
                    inst_var: j >> 7 == 1,
                    pop: b == 253,
                },
                254 => Op::BranchIfInstanceOf {
                    literal: (i + ext_a * 256) as u32,
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
}
