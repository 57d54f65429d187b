//! Writing the image header (§1.3): the exact inverse of `read::header`.

use crate::addr::OldAddr;
use crate::layout::{to_usize, WordSize};
use crate::read::header::ImageHeader;
use crate::write::segment::FileLayout;

/// Header values a running VM would write in place of those read at load
/// (§7 step 4): what it was asked for at start-up or since. Each `None`
/// keeps the value of the header the heap was loaded from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderOverrides {
    /// Desired new-space size (`hdrEdenBytes`).
    pub eden_bytes: Option<u32>,
    /// Desired number of stack pages (`hdrNumStackPages`).
    pub num_stack_pages: Option<u16>,
    /// External semaphore table size (`hdrMaxExtSemTabSize`).
    pub max_ext_sem_table: Option<u16>,
    /// JIT code zone size in KiB (`hdrCogCodeSize`).
    pub cog_code_size_kib: Option<u16>,
    /// Identity-hash seed (`hdrLastHash`).
    pub last_hash: Option<u64>,
    /// Header flags (§1.4). A runtime that knows its own bits merges them
    /// into the value read, keeping the bits it does not know.
    pub flags: Option<u64>,
    /// Free bytes in free chunks inside the written segments
    /// (`freeOldSpaceInImage`); the value read is right as long as no object
    /// was allocated or freed since the load.
    pub free_old_space: Option<u64>,
}

/// The header size a snapshot writes: the one read, when it is a plausible
/// single-file header size, else the standard 128 or 64 bytes (a composed
/// image's `imageHeaderSize` is unused by its reader and may say anything).
fn snapshot_header_size(read: &ImageHeader) -> u64 {
    let standard = read.word.standard_header_size() as u64;
    let h = read.header_size;
    if h >= standard && h.is_multiple_of(8) && h <= crate::read::header::MAX_HEADER_SIZE {
        h
    } else {
        standard
    }
}

impl ImageHeader {
    /// The header of a snapshot of a heap loaded with header `self` (§7):
    /// the format number, header size, flags, window size, image version and
    /// the VM's requested sizes carried over (or overridden), `dataSize` and
    /// `firstSegSize` from the file layout, `oldBaseAddr` = where the first
    /// written segment lives now, and the special objects oop as it is now.
    /// `prefix_bytes` is 0, or 512 when the file will start with a prefix.
    pub fn for_snapshot(
        &self,
        layout: &FileLayout,
        special_objects: OldAddr,
        prefix_bytes: u64,
        o: &HeaderOverrides,
    ) -> ImageHeader {
        ImageHeader {
            format: self.format,
            word: self.word,
            multiple_bytecode_sets: self.multiple_bytecode_sets,
            byte_order: self.byte_order,
            prefix_bytes,
            header_size: snapshot_header_size(self),
            data_size: layout.data_size,
            old_base: layout.segments[0].start,
            special_objects_oop: special_objects,
            last_hash: o.last_hash.unwrap_or(self.last_hash),
            saved_window_size: self.saved_window_size,
            flags: o.flags.unwrap_or(self.flags),
            extra_vm_memory: self.extra_vm_memory,
            num_stack_pages: o.num_stack_pages.unwrap_or(self.num_stack_pages),
            cog_code_size_kib: o.cog_code_size_kib.unwrap_or(self.cog_code_size_kib),
            eden_bytes: o.eden_bytes.unwrap_or(self.eden_bytes),
            max_ext_sem_table: o.max_ext_sem_table.unwrap_or(self.max_ext_sem_table),
            image_version: self.image_version,
            first_segment_size: layout.first_segment_size,
            free_old_space: o.free_old_space.unwrap_or(self.free_old_space),
        }
    }

    /// Encodes the header as `header_size` bytes (the prefix, if any, is not
    /// part of it). Padding after the fields is zero, as the VMs write it.
    ///
    /// `header_size` must be one [`valid_header_size`] accepts, as the size
    /// of every parsed header is; a 32-bit header's words must fit 32 bits,
    /// as its addresses and sizes below the 4 GiB address limit do.
    ///
    /// [`valid_header_size`]: crate::read::header::valid_header_size
    pub fn encode(&self) -> Vec<u8> {
        let header_size = u32::try_from(self.header_size)
            .expect("a header size is at most 64 KiB (checked when it is read)");
        let mut b = vec![0u8; to_usize(self.header_size)];
        let wb = to_usize(self.word.bytes());
        let put_word = |b: &mut Vec<u8>, at: usize, v: u64| match self.word {
            WordSize::W64 => b[at..at + 8].copy_from_slice(&v.to_le_bytes()),
            WordSize::W32 => {
                // A 32-bit header's words are below its 4 GiB address limit.
                #[allow(clippy::cast_possible_truncation)]
                let v = v as u32;
                b[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
        };
        b[0..4].copy_from_slice(&self.format.to_le_bytes());
        b[4..8].copy_from_slice(&header_size.to_le_bytes());
        let words = [
            self.data_size,
            self.old_base.get(),
            self.special_objects_oop.get(),
            self.last_hash,
            self.saved_window_size,
            self.flags,
        ];
        for (i, v) in words.into_iter().enumerate() {
            put_word(&mut b, 8 + i * wb, v);
        }
        let p = 8 + 6 * wb;
        b[p..p + 4].copy_from_slice(&self.extra_vm_memory.to_le_bytes());
        b[p + 4..p + 6].copy_from_slice(&self.num_stack_pages.to_le_bytes());
        b[p + 6..p + 8].copy_from_slice(&self.cog_code_size_kib.to_le_bytes());
        b[p + 8..p + 12].copy_from_slice(&self.eden_bytes.to_le_bytes());
        b[p + 12..p + 14].copy_from_slice(&self.max_ext_sem_table.to_le_bytes());
        b[p + 14..p + 16].copy_from_slice(&self.image_version.to_le_bytes());
        put_word(&mut b, p + 16, self.first_segment_size);
        put_word(&mut b, p + 16 + wb, self.free_old_space);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderOverrides;
    use crate::addr::OldAddr;
    use crate::read::header::ImageHeader;
    use crate::read::version::ByteOrder;
    use crate::write::segment::FileLayout;
    use crate::WordSize;

    #[test]
    fn encode_then_parse_is_the_identity() {
        for (word, format) in [(WordSize::W32, 7033), (WordSize::W64, 68533)] {
            let h = ImageHeader {
                format,
                word,
                multiple_bytecode_sets: true,
                byte_order: ByteOrder::Little,
                prefix_bytes: 0,
                header_size: word.standard_header_size() as u64,
                data_size: 4096,
                old_base: OldAddr::new(0x3204000),
                special_objects_oop: OldAddr::new(0x3204800),
                last_hash: 0x1234,
                saved_window_size: 0x0400_0300,
                flags: 0x12,
                extra_vm_memory: 1 << 20,
                num_stack_pages: 60,
                cog_code_size_kib: 2048,
                eden_bytes: 8 << 20,
                max_ext_sem_table: 1024,
                image_version: 7,
                first_segment_size: 4096,
                free_old_space: 640,
            };
            let mut bytes = h.encode();
            assert_eq!(bytes.len() as u64, h.header_size);
            bytes.resize(bytes.len() + 4096, 0);
            assert_eq!(ImageHeader::parse(&bytes, bytes.len() as u64).unwrap(), h);

            // A snapshot of the same heap, moved and coalesced into one segment.
            let layout = FileLayout::plan(word, [(OldAddr::new(0x1000_0000), 4096)]).unwrap();
            let kept = h.for_snapshot(
                &layout,
                OldAddr::new(0x1000_0800),
                0,
                &HeaderOverrides::default(),
            );
            assert_eq!(kept.old_base, OldAddr::new(0x1000_0000));
            assert_eq!(kept.special_objects_oop, OldAddr::new(0x1000_0800));
            assert_eq!((kept.data_size, kept.first_segment_size), (4096, 4096));
            assert_eq!(kept.format, format, "the format number is kept as read");
            assert_eq!(
                (kept.flags, kept.eden_bytes, kept.num_stack_pages),
                (h.flags, h.eden_bytes, h.num_stack_pages)
            );
            assert_eq!(kept.max_ext_sem_table, h.max_ext_sem_table);
            let asked = h.for_snapshot(
                &layout,
                OldAddr::new(0x1000_0800),
                512,
                &HeaderOverrides {
                    eden_bytes: Some(16 << 20),
                    num_stack_pages: Some(160),
                    max_ext_sem_table: Some(4096),
                    ..Default::default()
                },
            );
            assert_eq!(
                (
                    asked.eden_bytes,
                    asked.num_stack_pages,
                    asked.max_ext_sem_table
                ),
                (16 << 20, 160, 4096)
            );
            assert_eq!(asked.prefix_bytes, 512);
            assert_eq!(asked.flags, h.flags);
            // A header size that no single file could have becomes the standard one.
            let odd = ImageHeader {
                header_size: 7,
                ..h.clone()
            };
            let fixed = odd.for_snapshot(
                &layout,
                OldAddr::new(0x1000_0800),
                0,
                &HeaderOverrides::default(),
            );
            assert_eq!(fixed.header_size, word.standard_header_size() as u64);
            assert_eq!(fixed.encode().len() as u64, fixed.header_size);
        }
    }
}
