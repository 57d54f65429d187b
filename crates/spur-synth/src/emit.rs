//! The streaming writer: objects go through a large `BufWriter` in address
//! order; the few words that are only known at the end (the header, the
//! free-list heads, the free tree's links, forward pointers out of segment
//! 0) are recorded as patches and written by seeking back.

use spur_format::layout::to_usize;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};

use spur_format::objheader::overflow_word;
use spur_format::raw::{BRIDGE_BYTES, OVERFLOW_SLOTS, OVERFLOW_SLOTS_BYTE};
use spur_format::{FileBridge, ObjHeader, WordSize};

use crate::encode::{free_chunk_shape, object_bytes};

/// Size of the write buffer: large enough that the kernel's write calls are
/// few, small enough not to matter for the process's footprint.
const BUFFER_BYTES: usize = 8 << 20;

/// Bytes to overwrite once the stream is complete.
#[derive(Debug)]
struct Patch {
    offset: u64,
    bytes: Vec<u8>,
}

/// Writes objects one after the other, tracking their file offsets and old
/// addresses.
#[derive(Debug)]
pub(crate) struct Emitter<'w, W: Write + Seek> {
    out: BufWriter<&'w mut W>,
    /// Stream position of file offset 0.
    origin: u64,
    word: WordSize,
    /// File offset of the next byte.
    pos: u64,
    /// Old address of the next byte.
    addr: u64,
    /// Old address where the current segment's bridge begins.
    limit: u64,
    /// The object being built: its bytes, and the size it must reach.
    scratch: Vec<u8>,
    target: u64,
    patches: Vec<Patch>,
    /// Entities written so far (objects and free chunks; bridges excluded).
    objects: u64,
}

impl<'w, W: Write + Seek> Emitter<'w, W> {
    /// Starts writing at `out`'s current position, which becomes file offset 0.
    pub(crate) fn new(out: &'w mut W, word: WordSize) -> io::Result<Self> {
        let origin = out.stream_position()?;
        Ok(Emitter {
            out: BufWriter::with_capacity(BUFFER_BYTES, out),
            origin,
            word,
            pos: 0,
            addr: 0,
            limit: 0,
            scratch: Vec::with_capacity(64 << 10),
            target: 0,
            patches: Vec::new(),
            objects: 0,
        })
    }

    /// Writes bytes that are not heap data (prefix, header placeholder).
    pub(crate) fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Begins a segment at old address `start` spanning `size` bytes, bridge included.
    pub(crate) fn start_segment(&mut self, start: u64, size: u64) {
        self.addr = start;
        self.limit = start + size - BRIDGE_BYTES;
    }

    /// Old address of the next byte.
    pub(crate) fn addr(&self) -> u64 {
        self.addr
    }

    /// Bytes left before the current segment's bridge.
    pub(crate) fn remaining(&self) -> u64 {
        self.limit - self.addr
    }

    /// Entities written so far.
    pub(crate) fn objects(&self) -> u64 {
        self.objects
    }

    /// File offset of the next byte: the current file length.
    pub(crate) fn file_len(&self) -> u64 {
        self.pos
    }

    /// Begins an object; returns the address of its header (the oop).
    /// Follow with [`slot`](Self::slot)/[`bytes`](Self::bytes) and [`end`](Self::end).
    pub(crate) fn begin(&mut self, class: u32, format: u8, hash: u32, num_slots: u64) -> u64 {
        let total = object_bytes(self.word, num_slots);
        assert!(
            total <= self.remaining(),
            "object of {total} bytes at {:#x} overruns the segment's bridge at {:#x}",
            self.addr,
            self.limit
        );
        self.scratch.clear();
        self.target = total;
        let raw_slots = if num_slots >= OVERFLOW_SLOTS {
            self.scratch
                .extend_from_slice(&overflow_word(num_slots).to_le_bytes());
            OVERFLOW_SLOTS_BYTE
        } else {
            u8::try_from(num_slots).expect("the builder makes small values")
        };
        let header = ObjHeader::new(class, format, raw_slots, hash);
        self.scratch.extend_from_slice(&header.0.to_le_bytes());
        self.addr + self.scratch.len() as u64 - 8
    }

    /// Appends one slot (a word) to the object being built.
    #[inline]
    pub(crate) fn slot(&mut self, value: u64) {
        match self.word {
            WordSize::W64 => self.scratch.extend_from_slice(&value.to_le_bytes()),
            WordSize::W32 => self
                .scratch
                .extend_from_slice(&u32::try_from(value).expect("a 32-bit word").to_le_bytes()),
        }
    }

    /// Appends raw body bytes to the object being built.
    #[inline]
    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        self.scratch.extend_from_slice(bytes);
    }

    /// File offset of the next slot of the object being built.
    pub(crate) fn next_slot_offset(&self) -> u64 {
        self.pos + self.scratch.len() as u64
    }

    /// Finishes the object: pads it with zeros to its full size and writes it.
    pub(crate) fn end(&mut self) -> io::Result<()> {
        assert!(
            self.scratch.len() as u64 <= self.target,
            "object body of {} bytes exceeds its size {}",
            self.scratch.len(),
            self.target
        );
        self.scratch.resize(to_usize(self.target), 0);
        self.out.write_all(&self.scratch)?;
        self.pos += self.target;
        self.addr += self.target;
        self.objects += 1;
        Ok(())
    }

    /// Writes a free chunk of `bytes` bytes whose `next` slot is `next` and
    /// whose other slots are 0. Returns its address and the file offset of
    /// slot 0.
    pub(crate) fn free_chunk(&mut self, bytes: u64, next: u64) -> io::Result<(u64, u64)> {
        assert!(bytes <= self.remaining());
        let (num_slots, overflow) = free_chunk_shape(self.word, bytes);
        self.scratch.clear();
        self.target = bytes;
        let raw_slots = if overflow {
            self.scratch
                .extend_from_slice(&overflow_word(num_slots).to_le_bytes());
            OVERFLOW_SLOTS_BYTE
        } else {
            u8::try_from(num_slots).expect("the builder makes small values")
        };
        self.scratch
            .extend_from_slice(&ObjHeader::new(0, 0, raw_slots, 0).0.to_le_bytes());
        let addr = self.addr + self.scratch.len() as u64 - 8;
        let slot0 = self.next_slot_offset();
        self.slot(next);
        self.end()?;
        Ok((addr, slot0))
    }

    /// Ends the current segment with its bridge in file encoding (§2.2).
    pub(crate) fn bridge(&mut self, gap: u64, next_size: u64) -> io::Result<()> {
        assert_eq!(self.addr, self.limit, "segment not filled to its bridge");
        self.out
            .write_all(&FileBridge::encode(self.word, gap, next_size))?;
        self.pos += BRIDGE_BYTES;
        self.addr += BRIDGE_BYTES;
        Ok(())
    }

    /// Records `bytes` to be written at file offset `offset` at the end.
    pub(crate) fn patch(&mut self, offset: u64, bytes: Vec<u8>) {
        self.patches.push(Patch { offset, bytes });
    }

    /// Records one word (slot-sized) to be written at `offset` at the end.
    pub(crate) fn patch_words(&mut self, offset: u64, words: &[u64]) {
        let mut b = Vec::with_capacity(words.len() * to_usize(self.word.bytes()));
        for &w in words {
            match self.word {
                WordSize::W64 => b.extend_from_slice(&w.to_le_bytes()),
                WordSize::W32 => {
                    b.extend_from_slice(&u32::try_from(w).expect("a 32-bit word").to_le_bytes())
                }
            }
        }
        self.patch(offset, b);
    }

    /// Applies the patches in file order and leaves the stream positioned
    /// at the end of the image.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.out.flush()?;
        let end = self.pos;
        self.patches.sort_by_key(|p| p.offset);
        for p in &self.patches {
            assert!(p.offset + p.bytes.len() as u64 <= end);
            self.out.seek(SeekFrom::Start(self.origin + p.offset))?;
            self.out.write_all(&p.bytes)?;
        }
        self.out.seek(SeekFrom::Start(self.origin + end))?;
        self.out.flush()?;
        Ok(())
    }
}
