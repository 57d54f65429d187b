//! Compiled code: method headers, literals, and what names a method.
//!
//! A CompiledMethod's slot 0 is its header, a SmallInteger; its literals
//! follow, then its bytecodes (§2.4). By convention of every Spur dialect
//! the last literal of a method is its class binding (an association whose
//! value is the class) and the one before is its selector, or an
//! AdditionalMethodState whose slot 1 is the selector. A CompiledBlock (the
//! code of a full block) keeps its outer code, a method or another block,
//! as its last literal instead; following that chain leads to the home
//! method.

use spur_format::raw::METHOD_NUM_LITERALS_MASK;
use spur_format::{NewAddr, WordSize};

use crate::bytecodes::BytecodeSet;
use crate::class_table::ClassTable;
use crate::memory::{Oop, ReadView};

/// A decoded method header (the SmallInteger in slot 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodHeader {
    /// The header's SmallInteger value.
    pub value: i64,
    /// Bits 0..14.
    pub num_literals: u64,
    /// Bit 16: the method starts with a call-primitive bytecode.
    pub has_primitive: bool,
    /// Bit 17: the method needs a large context.
    pub large_frame: bool,
    /// Bits 18..23.
    pub num_temps: u8,
    /// Bits 24..27.
    pub num_args: u8,
    /// The sign bit selects the alternate set, SistaV1.
    pub set: BytecodeSet,
}

impl MethodHeader {
    /// Decodes a header oop, if it is a SmallInteger.
    pub fn decode(word: WordSize, oop: Oop) -> Option<Self> {
        let v = word.small_integer(oop.bits())?;
        Some(MethodHeader {
            value: v,
            num_literals: (v & METHOD_NUM_LITERALS_MASK).cast_unsigned(),
            has_primitive: v >> 16 & 1 == 1,
            large_frame: v >> 17 & 1 == 1,
            num_temps: u8::try_from(v >> 18 & 0x3F).unwrap_or(0),
            num_args: u8::try_from(v >> 24 & 0xF).unwrap_or(0),
            set: if v < 0 {
                BytecodeSet::SistaV1
            } else {
                BytecodeSet::V3PlusClosures
            },
        })
    }
}

/// A CompiledMethod or CompiledBlock of the heap.
#[derive(Debug, Clone)]
pub struct CompiledCode<'h> {
    /// Address of the method object, in this process.
    pub addr: NewAddr,
    /// Its decoded header word (literal count, temps, primitive, set).
    pub header: MethodHeader,
    /// The literals, slots 1..=numLiterals.
    pub literals: Vec<Oop>,
    /// The whole object's bytes from slot 0 on: byte `pc - 1` is the byte at `pc`.
    pub bytes: &'h [u8],
}

impl<'h> CompiledCode<'h> {
    /// Reads the compiled code object at `oop`, or says why it is not one.
    pub fn read(view: &ReadView<'h>, oop: Oop) -> Result<Self, String> {
        let h = view
            .header(oop)
            .ok_or_else(|| format!("{oop:#x} is not an object"))?;
        if !h.is_compiled_method() {
            return Err(format!(
                "{oop:#x} has format {}, not compiled code (24..31)",
                h.format()
            ));
        }
        let word = view.word();
        let header = view
            .slot(oop, 0)
            .and_then(|h| MethodHeader::decode(word, h))
            .ok_or_else(|| format!("{oop:#x}: its header (slot 0) is not a SmallInteger"))?;
        let n = view.num_slots(oop).unwrap_or(0);
        if header.num_literals + 1 > n {
            return Err(format!(
                "{oop:#x}: its header says {} literals but it has {n} slots",
                header.num_literals
            ));
        }
        let literals = (1..=header.num_literals)
            .map(|i| view.slot(oop, i).unwrap_or_default())
            .collect();
        let bytes = view
            .bytes(oop)
            .ok_or_else(|| format!("{oop:#x}: its bytes do not lie in the heap"))?;
        let addr = view
            .addr(oop)
            .ok_or_else(|| format!("{oop:#x} is not an object"))?;
        Ok(CompiledCode {
            addr,
            header,
            literals,
            bytes,
        })
    }

    /// The pc of the first bytecode: `(numLiterals + 1) * W + 1`.
    pub fn initial_pc(&self, word: WordSize) -> u64 {
        (self.header.num_literals + 1) * word.bytes() + 1
    }

    /// The last literal.
    pub fn last_literal(&self) -> Option<Oop> {
        self.literals.last().copied()
    }

    /// The outer code of a CompiledBlock: its last literal, when that is
    /// compiled code. `None` for a CompiledMethod.
    pub fn outer_code(&self, view: &ReadView<'_>) -> Option<Oop> {
        self.last_literal().filter(|&l| view.is_compiled_code(l))
    }

    /// Is this a CompiledBlock (its last literal is its outer code)?
    pub fn is_block(&self, view: &ReadView<'_>) -> bool {
        self.outer_code(view).is_some()
    }

    /// The selector: the penultimate literal, or slot 1 of the
    /// AdditionalMethodState found there.
    pub fn selector(&self, view: &ReadView<'_>) -> Option<Oop> {
        let n = self.literals.len();
        let p = *self.literals.get(n.checked_sub(2)?)?;
        if view.is_bytes(p) {
            return Some(p);
        }
        let s = view.slot(p, 1)?;
        view.is_bytes(s).then_some(s)
    }

    /// The class the method is installed in: the value of its class binding
    /// (the last literal), when that is a class.
    pub fn method_class(&self, view: &ReadView<'_>, classes: &ClassTable) -> Option<Oop> {
        let binding = self.last_literal()?;
        let class = view.slot(binding, 1)?;
        classes.is_class(view, class).then_some(class)
    }
}

/// Follows the outer-code chain of `code` to its home CompiledMethod (at
/// most `limit` steps, for safety against a malformed loop).
pub fn home_method<'h>(
    view: &ReadView<'h>,
    code: CompiledCode<'h>,
    limit: usize,
) -> Result<CompiledCode<'h>, String> {
    let mut c = code;
    for _ in 0..limit {
        match c.outer_code(view) {
            None => return Ok(c),
            Some(outer) => c = CompiledCode::read(view, outer)?,
        }
    }
    Err(format!(
        "the outer-code chain from {} is longer than {limit}",
        c.addr
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_decode_both_sets() {
        let w = WordSize::W64;
        let h = MethodHeader::decode(
            w,
            Oop::from_bits(w.encode_small_integer(3 | 1 << 16 | 2 << 18 | 1 << 24)),
        )
        .unwrap();
        assert_eq!(h.num_literals, 3);
        assert!(h.has_primitive && !h.large_frame);
        assert_eq!((h.num_temps, h.num_args), (2, 1));
        assert_eq!(h.set, BytecodeSet::V3PlusClosures);
        let w = WordSize::W32;
        let sista = MethodHeader::decode(w, Oop::from_bits(w.encode_small_integer(-(1 << 30) + 5)))
            .unwrap();
        assert_eq!(sista.set, BytecodeSet::SistaV1);
        assert_eq!(sista.num_literals, 5);
        assert_eq!(MethodHeader::decode(w, Oop::from_bits(0x3204000)), None);
    }
}
