//! Writing the `.ston` files of a composed image (§6), with the struct
//! names, field names and field order the Pharo VM writes.

use crate::read::composed::{
    HEADER_FIELDS, HEADER_STRUCT, SAVED_WINDOW_SIZE_FIELD, SEGMENT_FIELDS, SEGMENT_STRUCT,
};
use crate::read::header::ImageHeader;
use crate::read::ston;

/// The text of `header.ston` for `header`; `perm_bytes` is the size of the
/// perm space written beside it (0 when there is none): `dataSize` counts it,
/// `hdrOldSpaceSize` does not.
pub fn header_ston(header: &ImageHeader, perm_bytes: u64) -> String {
    let values: [i64; 17] = [
        (header.data_size + perm_bytes).cast_signed(),
        header.data_size.cast_signed(),
        header.old_base.get().cast_signed(),
        header.special_objects_oop.get().cast_signed(),
        header.flags.cast_signed(),
        header.extra_vm_memory as i64,
        header.num_stack_pages as i64,
        header.cog_code_size_kib as i64,
        header.eden_bytes as i64,
        header.max_ext_sem_table as i64,
        header.first_segment_size.cast_signed(),
        header.free_old_space.cast_signed(),
        0, // swapBytes: written by the Pharo VM, meaningless on load
        header.last_hash.cast_signed(),
        header.format as i64,
        header.header_size.cast_signed(),
        header.image_version as i64,
    ];
    let mut fields: Vec<(&str, i64)> = HEADER_FIELDS.iter().copied().zip(values).collect();
    // The one field of a single-file header the Pharo VM's struct lacks (it
    // writes 0 there since Pharo 9). Kept, after the others, only when an
    // image carries one, so that a single file converted to a folder and
    // back is the same file; readers skip fields they do not know.
    if header.saved_window_size != 0 {
        fields.push((
            SAVED_WINDOW_SIZE_FIELD,
            header.saved_window_size.cast_signed(),
        ));
    }
    ston::write(HEADER_STRUCT, &fields)
}

/// The text of `segN.ston` or `permSpace.ston`.
pub fn segment_ston(start: u64, size: u64) -> String {
    ston::write(
        SEGMENT_STRUCT,
        &[
            (SEGMENT_FIELDS[0], start.cast_signed()),
            (SEGMENT_FIELDS[1], size.cast_signed()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::composed::{header_from_ston, SegmentMeta};
    use crate::{OldAddr, WordSize};

    #[test]
    fn header_round_trips_through_ston() {
        let h = ImageHeader {
            special_objects_oop: OldAddr::new(0x100_0000_0400),
            last_hash: 77,
            ..ImageHeader::new(WordSize::W64, OldAddr::new(0x100_0000_0000), 4096)
        };
        let text = header_ston(&h, 0);
        assert!(text.starts_with(
            "SpurImageHeaderStruct {\n\t#dataSize : 4096,\n\t#hdrOldSpaceSize : 4096,\n"
        ));
        assert!(text.ends_with("\t#imageVersion : 0\n}"));
        let back = header_from_ston(&ston::parse(&text, "header.ston").unwrap(), 0).unwrap();
        assert_eq!(back, h);
        let seg = ston::parse(&segment_ston(0x100_0000_0000, 4096), "seg0.ston").unwrap();
        assert_eq!(
            SegmentMeta::from_ston(&seg, "seg0.ston").unwrap(),
            SegmentMeta {
                start: 0x100_0000_0000,
                size: 4096
            }
        );
    }
}
