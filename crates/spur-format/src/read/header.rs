//! Reading the image header (§1.2, §1.3).

use crate::addr::OldAddr;
use crate::error::{FormatError, Result};
use crate::layout::{to_usize, WordSize};
use crate::raw::*;
use crate::read::version::{ByteOrder, Version};

/// How many bytes of a file [`ImageHeader::parse`] wants to see: the prefix plus
/// the largest standard header.
pub const HEADER_PROBE_BYTES: usize = to_usize(PREFIX_BYTES + HEADER_SIZE_64 as u64);

/// Largest `imageHeaderSize` accepted: well above the 64 and 128 the VMs write.
pub const MAX_HEADER_SIZE: u64 = 64 * 1024;

/// Smallest `imageHeaderSize` that holds every field of the header (§1.3).
pub const fn min_header_size(word: WordSize) -> u64 {
    match word {
        WordSize::W64 => 88,
        WordSize::W32 => 56,
    }
}

/// Is `size` an `imageHeaderSize` this crate accepts: room for every field,
/// a multiple of 8, at most [`MAX_HEADER_SIZE`]?
pub const fn valid_header_size(word: WordSize, size: u64) -> bool {
    size >= min_header_size(word) && size <= MAX_HEADER_SIZE && size.is_multiple_of(8)
}

/// A parsed single-file image header. Field names follow the VMs' (§1.3 of `docs/format.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageHeader {
    /// The format number (e.g. 68021).
    pub format: u32,
    /// The word size the format number gives.
    pub word: WordSize,
    /// The format number's multiple-bytecode-sets bit.
    pub multiple_bytecode_sets: bool,
    /// The file's byte order (always little once parsed).
    pub byte_order: ByteOrder,
    /// 0, or 512 when the image follows a prefix.
    pub prefix_bytes: u64,
    /// `imageHeaderSize`: bytes from the format word to the heap data.
    pub header_size: u64,
    /// `dataSize`: bytes of segment data, bridges included.
    pub data_size: u64,
    /// `oldBaseAddr`: where segment 0 (and nil) was when saved.
    pub old_base: OldAddr,
    /// The special objects array's old address.
    pub special_objects_oop: OldAddr,
    /// The identity-hash seed.
    pub last_hash: u64,
    /// The saved window size (0 from Pharo).
    pub saved_window_size: u64,
    /// The header flags (§1.4).
    pub flags: u64,
    /// `extraVMMemory`: requested headroom, 0 for the default.
    pub extra_vm_memory: u32,
    /// Requested stack pages, 0 for the default.
    pub num_stack_pages: u16,
    /// The JIT code zone, in KiB.
    pub cog_code_size_kib: u16,
    /// Requested new-space bytes, 0 for the default.
    pub eden_bytes: u32,
    /// The external semaphore table size, 0 when unset.
    pub max_ext_sem_table: u16,
    /// An opaque 16-bit value Pharo images may set.
    pub image_version: u16,
    /// `firstSegSize`: bytes of segment 0, bridge included.
    pub first_segment_size: u64,
    /// Free bytes inside the written segments (§5.3).
    pub free_old_space: u64,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}

impl ImageHeader {
    /// The header a writer starts from: a little-endian Spur image of `word`
    /// (format 68021 or 6521, one bytecode set, no prefix, the standard
    /// header size) holding `data_size` bytes of heap from `old_base` in one
    /// segment, floats little-endian, every VM setting left at 0 (the VM's
    /// default). The special objects oop is `old_base` until the caller says
    /// where the array is; callers set the rest with struct update syntax.
    pub fn new(word: WordSize, old_base: OldAddr, data_size: u64) -> ImageHeader {
        ImageHeader {
            format: match word {
                WordSize::W64 => FORMAT_SPUR64,
                WordSize::W32 => FORMAT_SPUR32,
            },
            word,
            multiple_bytecode_sets: false,
            byte_order: ByteOrder::Little,
            prefix_bytes: 0,
            header_size: u64::from(word.standard_header_size()),
            data_size,
            old_base,
            special_objects_oop: old_base,
            last_hash: 0,
            saved_window_size: 0,
            flags: FLAG_FLOATS_LITTLE_ENDIAN,
            extra_vm_memory: 0,
            num_stack_pages: 0,
            cog_code_size_kib: 0,
            eden_bytes: 0,
            max_ext_sem_table: 0,
            image_version: 0,
            first_segment_size: data_size,
            free_old_space: 0,
        }
    }

    /// Parses the header from the start of a file.
    ///
    /// `bytes` holds the first bytes of the file (at least [`HEADER_PROBE_BYTES`]
    /// unless the file is shorter); `file_len` is the whole file's length.
    /// Probes offset 0 and then offset 512 as OpenSmalltalk does, refuses
    /// byte-swapped, pre-Spur and unknown formats, and checks every size and
    /// address the later stages rely on.
    pub fn parse(bytes: &[u8], file_len: u64) -> Result<ImageHeader> {
        if bytes.len() < 4 {
            return Err(FormatError::TooShort {
                needed: HEADER_SIZE_32 as u64,
                found: file_len,
            });
        }
        let at0 = u32_at(bytes, 0);
        let found = match probe(at0, 0)? {
            Some(v) => Some((v, 0u64)),
            None if bytes.len() >= to_usize(PREFIX_BYTES) + 4 => {
                let at512 = u32_at(bytes, to_usize(PREFIX_BYTES));
                probe(at512, PREFIX_BYTES)?.map(|v| (v, PREFIX_BYTES))
            }
            None => None,
        };
        let Some(((number, word, sista), start)) = found else {
            let at512 = if bytes.len() >= to_usize(PREFIX_BYTES) + 4 {
                format!(
                    " nor {:#010x} at offset 512",
                    u32_at(bytes, to_usize(PREFIX_BYTES))
                )
            } else {
                String::new()
            };
            return Err(FormatError::UnknownFormat { at0, at512 });
        };
        let std_size = word.standard_header_size() as u64;
        let s = to_usize(start);
        if (bytes.len() as u64) < start + std_size {
            return Err(FormatError::TooShort {
                needed: start + std_size,
                found: file_len,
            });
        }
        let b = &bytes[s..s + to_usize(std_size)];
        let header_size = u32_at(b, 4) as u64;
        if !valid_header_size(word, header_size) {
            return Err(FormatError::BadHeaderSize {
                found: header_size,
                min: min_header_size(word),
                max: MAX_HEADER_SIZE,
                offset: start + 4,
            });
        }
        let wb = to_usize(word.bytes());
        // The word-sized fields follow the two u32s; field `i` is at 8 + i*W.
        let word_at = |at: usize| -> u64 {
            match word {
                WordSize::W64 => u64::from_le_bytes(b[at..at + 8].try_into().unwrap()),
                WordSize::W32 => u32_at(b, at) as u64,
            }
        };
        let w = |i: usize| word_at(8 + i * wb);
        // Then 16 bytes of packed u32/u16 fields, then two more words.
        let packed = 8 + 6 * wb;
        let h = ImageHeader {
            format: number,
            word,
            multiple_bytecode_sets: sista,
            byte_order: ByteOrder::Little,
            prefix_bytes: start,
            header_size,
            data_size: w(0),
            old_base: OldAddr::new(w(1)),
            special_objects_oop: OldAddr::new(w(2)),
            last_hash: w(3),
            saved_window_size: w(4),
            flags: w(5),
            extra_vm_memory: u32_at(b, packed),
            num_stack_pages: u16_at(b, packed + 4),
            cog_code_size_kib: u16_at(b, packed + 6),
            eden_bytes: u32_at(b, packed + 8),
            max_ext_sem_table: u16_at(b, packed + 12),
            image_version: u16_at(b, packed + 14),
            first_segment_size: word_at(packed + 16),
            free_old_space: word_at(packed + 16 + wb),
        };
        h.check(file_len)?;
        Ok(h)
    }

    /// File offset of the first segment's first byte.
    pub const fn data_offset(&self) -> u64 {
        self.prefix_bytes + self.header_size
    }

    /// Names of the known flag bits that are set.
    pub fn flag_names(&self) -> Vec<&'static str> {
        HEADER_FLAGS
            .iter()
            .filter(|(bit, _)| self.flags & bit != 0)
            .map(|&(_, name)| name)
            .collect()
    }

    fn check(&self, file_len: u64) -> Result<()> {
        let data_offset = self.data_offset();
        let available = file_len.saturating_sub(data_offset);
        if self.data_size > available {
            return Err(FormatError::DataBeyondFile {
                data_size: self.data_size,
                data_offset,
                available,
            });
        }
        if !self.data_size.is_multiple_of(8) {
            return Err(FormatError::BadDataSize {
                data_size: self.data_size,
                why: "not a multiple of 8",
            });
        }
        let fs = self.first_segment_size;
        if !fs.is_multiple_of(8) || fs < 32 || fs > self.data_size {
            return Err(FormatError::BadFirstSegmentSize {
                size: fs,
                data_size: self.data_size,
            });
        }
        let base = self.old_base.get();
        if !base.is_multiple_of(8) {
            return Err(FormatError::BadBaseAddress {
                base,
                why: "not 8-byte aligned",
            });
        }
        if base == 0 {
            return Err(FormatError::BadBaseAddress {
                base,
                why: "nil cannot live at address 0",
            });
        }
        if base
            .checked_add(self.data_size)
            .is_none_or(|end| end > self.word.address_limit())
        {
            return Err(FormatError::BadBaseAddress {
                base,
                why: "the heap would extend past the address limit of this word size",
            });
        }
        Ok(())
    }
}

/// Looks at one candidate format word: `Ok(Some)` for Spur, `Ok(None)` for
/// nothing known, and an error for a known image this crate will not load.
fn probe(word: u32, offset: u64) -> Result<Option<(u32, WordSize, bool)>> {
    if let Some(v) = Version::classify(word) {
        return v.loadable(ByteOrder::Little, offset).map(Some);
    }
    match Version::classify(word.swap_bytes()) {
        Some(Version::Spur { number, .. }) | Some(Version::ObsoleteSpur { number }) => {
            Err(FormatError::ByteSwapped { number, offset })
        }
        Some(v) => v.loadable(ByteOrder::Big, offset).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header64() -> Vec<u8> {
        let mut b = vec![0u8; 128];
        b[0..4].copy_from_slice(&68021u32.to_le_bytes());
        b[4..8].copy_from_slice(&128u32.to_le_bytes());
        b[8..16].copy_from_slice(&64u64.to_le_bytes()); // dataSize
        b[16..24].copy_from_slice(&0x804000u64.to_le_bytes());
        b[24..32].copy_from_slice(&0x804010u64.to_le_bytes());
        b[48..56].copy_from_slice(&2u64.to_le_bytes());
        b[60..62].copy_from_slice(&7u16.to_le_bytes());
        b[72..80].copy_from_slice(&64u64.to_le_bytes()); // firstSegSize
        b.extend_from_slice(&[0u8; 64]);
        b
    }

    #[test]
    fn parses_a_64_bit_header() {
        let b = header64();
        let h = ImageHeader::parse(&b, b.len() as u64).unwrap();
        assert_eq!(h.format, 68021);
        assert_eq!(h.word, WordSize::W64);
        assert_eq!(h.old_base, OldAddr::new(0x804000));
        assert_eq!(h.num_stack_pages, 7);
        assert_eq!(h.first_segment_size, 64);
        assert_eq!(h.data_offset(), 128);
        assert_eq!(h.flag_names(), vec!["floats_little_endian"]);
    }

    #[test]
    fn finds_the_header_after_a_prefix() {
        let mut b = vec![0u8; 512];
        b.extend(header64());
        let h = ImageHeader::parse(&b, b.len() as u64).unwrap();
        assert_eq!(h.prefix_bytes, 512);
        assert_eq!(h.data_offset(), 640);
    }

    #[test]
    fn refuses_what_it_cannot_load() {
        let mut b = header64();
        b[0..4].copy_from_slice(&68021u32.to_be_bytes());
        let e = ImageHeader::parse(&b, b.len() as u64).unwrap_err();
        assert!(matches!(e, FormatError::ByteSwapped { number: 68021, .. }));
        b[0..4].copy_from_slice(&6505u32.to_le_bytes());
        let e = ImageHeader::parse(&b, b.len() as u64).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("format 6505 is a pre-Spur V3 image"));
        b[0..4].copy_from_slice(&0xdeadbeefu32.to_le_bytes());
        let e = ImageHeader::parse(&b, b.len() as u64).unwrap_err();
        assert!(matches!(e, FormatError::UnknownFormat { .. }));
    }

    #[test]
    fn refuses_bad_sizes() {
        let b = header64();
        let e = ImageHeader::parse(&b, 150).unwrap_err();
        assert!(matches!(e, FormatError::DataBeyondFile { .. }), "{e}");
        let mut b = header64();
        b[72..80].copy_from_slice(&72u64.to_le_bytes());
        let e = ImageHeader::parse(&b, b.len() as u64).unwrap_err();
        assert!(matches!(e, FormatError::BadFirstSegmentSize { .. }), "{e}");
        let mut b = header64();
        b[16..24].copy_from_slice(&0x804004u64.to_le_bytes());
        let e = ImageHeader::parse(&b, b.len() as u64).unwrap_err();
        assert!(matches!(e, FormatError::BadBaseAddress { .. }), "{e}");
    }
}
