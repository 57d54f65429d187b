//! Writing the image header (§1.3): the exact inverse of `read::header`.

use crate::layout::WordSize;
use crate::read::header::ImageHeader;

impl ImageHeader {
    /// Encodes the header as `header_size` bytes (the prefix, if any, is not
    /// part of it). Padding after the fields is zero, as the VMs write it.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.header_size as usize];
        let wb = self.word.bytes() as usize;
        let put_word = |b: &mut Vec<u8>, at: usize, v: u64| match self.word {
            WordSize::W64 => b[at..at + 8].copy_from_slice(&v.to_le_bytes()),
            WordSize::W32 => b[at..at + 4].copy_from_slice(&(v as u32).to_le_bytes()),
        };
        b[0..4].copy_from_slice(&self.format.to_le_bytes());
        b[4..8].copy_from_slice(&(self.header_size as u32).to_le_bytes());
        let words = [
            self.data_size,
            self.old_base.0,
            self.special_objects_oop.0,
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
    use crate::addr::OldAddr;
    use crate::read::header::ImageHeader;
    use crate::read::version::ByteOrder;
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
                old_base: OldAddr(0x3204000),
                special_objects_oop: OldAddr(0x3204800),
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
            assert_eq!(bytes.len(), h.header_size as usize);
            bytes.resize(bytes.len() + 4096, 0);
            assert_eq!(ImageHeader::parse(&bytes, bytes.len() as u64).unwrap(), h);
        }
    }
}
