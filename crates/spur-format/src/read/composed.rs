//! Pharo's composed images (§6): a folder holding `header.ston`, then
//! `segN.ston` + `segN.data` for each segment, and optionally
//! `permSpace.ston` + `permSpace.data`. This module turns the parsed STON
//! structs into the same [`ImageHeader`] and [`SegmentTable`] a single file
//! gives, with every number checked.

use crate::addr::OldAddr;
use crate::error::FormatError;
use crate::layout::WordSize;
use crate::read::header::{valid_header_size, ImageHeader};
use crate::read::segment::{FileSegment, SegmentTable};
use crate::read::ston::StonStruct;
use crate::read::version::{ByteOrder, Version};

/// Struct name of `header.ston`.
pub const HEADER_STRUCT: &str = "SpurImageHeaderStruct";
/// Struct name of `segN.ston` and `permSpace.ston`.
pub const SEGMENT_STRUCT: &str = "ComposedMetadataStruct";
/// The fields of `header.ston`, in the order the Pharo VM writes them (§6).
pub const HEADER_FIELDS: [&str; 17] = [
    "dataSize",
    "hdrOldSpaceSize",
    "oldBaseAddr",
    "initialSpecialObjectsOop",
    "headerFlags",
    "extraVMMemory",
    "hdrNumStackPages",
    "hdrCogCodeSize",
    "hdrEdenBytes",
    "hdrMaxExtSemTabSize",
    "firstSegSize",
    "freeOldSpaceInImage",
    "swapBytes",
    "hdrLastHash",
    "imageFormat",
    "imageHeaderSize",
    "imageVersion",
];
/// An extra `header.ston` field this project writes after the Pharo VM's
/// fields, only for images that carry a saved window size (§1.3 field 7).
pub const SAVED_WINDOW_SIZE_FIELD: &str = "savedWindowSize";
/// The fields of `segN.ston` and `permSpace.ston`.
pub const SEGMENT_FIELDS: [&str; 2] = ["startAddress", "dataSize"];

/// Where the Pharo VM keeps perm space; a composed image's perm space must
/// have been saved there (§4.5, §6).
pub const fn perm_space_base(word: WordSize) -> u64 {
    match word {
        WordSize::W64 => 0x200_0000_0000,
        WordSize::W32 => 0x8000_0000,
    }
}

/// Errors specific to composed folders, naming the file concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposedError {
    /// A `.ston` file holds another struct than the one expected.
    #[error("{file}: struct is {found}, expected {expected}")]
    WrongStruct {
        /// The file.
        file: String,
        /// The struct name it holds.
        found: String,
        /// The struct name it must hold.
        expected: &'static str,
    },
    /// A field's value cannot be what it stands for.
    #[error("{file}: field {field} is {value}, {why}")]
    BadField {
        /// The file.
        file: String,
        /// The field.
        field: &'static str,
        /// Its value, as the file says it.
        value: i64,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A `.data` file is shorter than its `.ston` says.
    #[error("{file} holds {found} bytes, but {ston} says dataSize {expected}")]
    ShortData {
        /// The `.data` file.
        file: String,
        /// The `.ston` file that gives its size.
        ston: String,
        /// Bytes the `.data` file holds.
        found: u64,
        /// Bytes the `.ston` file says.
        expected: u64,
    },
    /// Segments out of order or overlapping.
    #[error("segment {segment} starts at {start:#x}, inside segment {prev} ({prev_start:#x}..{prev_end:#x})")]
    Overlap {
        /// The segment that starts too low.
        segment: usize,
        /// Its start.
        start: u64,
        /// The segment before it.
        prev: usize,
        /// That segment's start.
        prev_start: u64,
        /// That segment's end.
        prev_end: u64,
    },
    /// The segments do not add up to the header's old-space size.
    #[error("header.ston says {expected} bytes of old space, but the segments hold {found}")]
    SizeMismatch {
        /// Bytes the header gives.
        expected: u64,
        /// Bytes the segments hold.
        found: u64,
    },
    /// Segment 0 does not start at the header's oldBaseAddr.
    #[error("segment 0 starts at {start:#x}, but header.ston says oldBaseAddr {base:#x}")]
    BaseMismatch {
        /// Segment 0's start.
        start: u64,
        /// The header's oldBaseAddr.
        base: u64,
    },
    /// The perm space is not at the Pharo VM's perm base (§4.5).
    #[error("permSpace.ston says the perm space starts at {found:#x}; it can only live at {expected:#x}")]
    PermBase {
        /// Where `permSpace.ston` puts it.
        found: u64,
        /// The perm base of this word size.
        expected: u64,
    },
    /// The perm space's extent is impossible.
    #[error("permSpace.ston says {size} bytes from {start:#x}, {why}")]
    PermRange {
        /// Its start.
        start: u64,
        /// Its size.
        size: u64,
        /// What is wrong with it.
        why: &'static str,
    },
    #[error(
        "the folder has no seg0.ston and seg0.data: a composed image needs at least one segment"
    )]
    /// The folder has no segment 0.
    NoSegments,
    /// The header, once read, fails a check of a single file's header.
    #[error(transparent)]
    Format(#[from] FormatError),
}

fn expect_struct(s: &StonStruct, file: &str, expected: &'static str) -> Result<(), ComposedError> {
    if s.name != expected {
        return Err(ComposedError::WrongStruct {
            file: file.to_string(),
            found: s.name.clone(),
            expected,
        });
    }
    Ok(())
}

fn non_negative(s: &StonStruct, file: &str, field: &'static str) -> Result<u64, ComposedError> {
    let v = s.get(field);
    u64::try_from(v).map_err(|_| ComposedError::BadField {
        file: file.to_string(),
        field,
        value: v,
        why: "a negative number",
    })
}

/// A value `non_negative` accepted, back as the signed number the file held.
fn field_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn narrow<T: TryFrom<u64>>(
    s: &StonStruct,
    file: &str,
    field: &'static str,
) -> Result<T, ComposedError> {
    let v = non_negative(s, file, field)?;
    T::try_from(v).map_err(|_| ComposedError::BadField {
        file: file.to_string(),
        field,
        value: field_value(v),
        why: "too large for its binary-header field",
    })
}

/// One segment as `segN.ston` (or `permSpace.ston`) describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentMeta {
    /// The segment's address when it was saved (`startAddress`).
    pub start: u64,
    /// Its bytes, bridge included (`dataSize`).
    pub size: u64,
}

impl SegmentMeta {
    /// Reads a parsed `segN.ston` / `permSpace.ston`.
    pub fn from_ston(s: &StonStruct, file: &str) -> Result<SegmentMeta, ComposedError> {
        expect_struct(s, file, SEGMENT_STRUCT)?;
        let start = non_negative(s, file, "startAddress")?;
        let size = non_negative(s, file, "dataSize")?;
        if start % 8 != 0 {
            return Err(ComposedError::BadField {
                file: file.into(),
                field: "startAddress",
                value: field_value(start),
                why: "not 8-byte aligned",
            });
        }
        if size % 8 != 0 {
            return Err(ComposedError::BadField {
                file: file.into(),
                field: "dataSize",
                value: field_value(size),
                why: "not a multiple of 8",
            });
        }
        Ok(SegmentMeta { start, size })
    }
}

/// Builds the header from a parsed `header.ston`. `perm_bytes` is the size
/// of the perm space, when the folder has one (dataSize counts it too).
pub fn header_from_ston(s: &StonStruct, perm_bytes: u64) -> Result<ImageHeader, ComposedError> {
    let file = "header.ston";
    expect_struct(s, file, HEADER_STRUCT)?;
    let format: u32 = narrow(s, file, "imageFormat")?;
    let Some(version) = Version::classify(format) else {
        return Err(ComposedError::BadField {
            file: file.into(),
            field: "imageFormat",
            value: format as i64,
            why: "not a Spur image format (6521, 7033, 68021, 68533)",
        });
    };
    let (format, word, sista) = version.loadable(ByteOrder::Little, 0)?;
    let data_size = non_negative(s, file, "dataSize")?;
    let old_space = match non_negative(s, file, "hdrOldSpaceSize")? {
        0 => data_size
            .checked_sub(perm_bytes)
            .ok_or(ComposedError::SizeMismatch {
                expected: data_size,
                found: perm_bytes,
            })?,
        n => n,
    };
    // Unused by the Pharo VM, but a single file written from this header
    // has a header of this size: it must hold every field.
    let header_size = match non_negative(s, file, "imageHeaderSize")? {
        0 => word.standard_header_size() as u64,
        n if valid_header_size(word, n) => n,
        n => {
            return Err(ComposedError::BadField {
                file: file.into(),
                field: "imageHeaderSize",
                value: field_value(n),
                why: "not a header size (a multiple of 8 that holds every field, at most 64 KiB)",
            })
        }
    };
    Ok(ImageHeader {
        format,
        word,
        multiple_bytecode_sets: sista,
        byte_order: ByteOrder::Little,
        prefix_bytes: 0,
        header_size,
        data_size: old_space,
        old_base: OldAddr::new(non_negative(s, file, "oldBaseAddr")?),
        special_objects_oop: OldAddr::new(non_negative(s, file, "initialSpecialObjectsOop")?),
        last_hash: non_negative(s, file, "hdrLastHash")?,
        saved_window_size: non_negative(s, file, SAVED_WINDOW_SIZE_FIELD)?,
        flags: non_negative(s, file, "headerFlags")?,
        extra_vm_memory: narrow(s, file, "extraVMMemory")?,
        num_stack_pages: narrow(s, file, "hdrNumStackPages")?,
        cog_code_size_kib: narrow(s, file, "hdrCogCodeSize")?,
        eden_bytes: narrow(s, file, "hdrEdenBytes")?,
        max_ext_sem_table: narrow(s, file, "hdrMaxExtSemTabSize")?,
        image_version: narrow(s, file, "imageVersion")?,
        first_segment_size: non_negative(s, file, "firstSegSize")?,
        free_old_space: non_negative(s, file, "freeOldSpaceInImage")?,
    })
}

/// Checks a perm space against the header and old space: it lives at the
/// one address the Pharo VM gives it, ends below the address limit of the
/// word size, and shares no address with an old-space segment.
pub fn check_perm_space(
    header: &ImageHeader,
    table: &SegmentTable,
    perm: &SegmentMeta,
) -> Result<(), ComposedError> {
    let expected = perm_space_base(header.word);
    if perm.start != expected {
        return Err(ComposedError::PermBase {
            found: perm.start,
            expected,
        });
    }
    let bad = |why| ComposedError::PermRange {
        start: perm.start,
        size: perm.size,
        why,
    };
    let end = perm
        .start
        .checked_add(perm.size)
        .filter(|&e| e <= header.word.address_limit())
        .ok_or_else(|| bad("past the address limit of the word size"))?;
    let overlaps = table
        .segments
        .iter()
        .any(|s| s.old_start.get() < end && perm.start < s.old_end().get());
    if overlaps {
        return Err(bad("which overlaps an old-space segment"));
    }
    Ok(())
}

/// Builds the segment table of a composed image from its segments' metadata,
/// checking order, overlaps, sizes and the base address.
pub fn segment_table(
    header: &ImageHeader,
    metas: &[SegmentMeta],
) -> Result<SegmentTable, ComposedError> {
    if metas.is_empty() {
        return Err(ComposedError::NoSegments);
    }
    let limit = header.word.address_limit();
    let mut segments = Vec::with_capacity(metas.len());
    for (i, m) in metas.iter().enumerate() {
        let file = format!("seg{i}.ston");
        if m.size < 32 {
            return Err(ComposedError::BadField {
                file,
                field: "dataSize",
                value: field_value(m.size),
                why: "too small to hold an object and its bridge",
            });
        }
        if m.start.checked_add(m.size).is_none_or(|e| e > limit) || m.start == 0 {
            return Err(FormatError::SegmentAddressOverflow {
                segment: i,
                start: m.start,
                end: m.start.saturating_add(m.size),
                limit,
            }
            .into());
        }
        if let Some(prev) = metas.get(i.wrapping_sub(1)).filter(|_| i > 0) {
            if m.start < prev.start + prev.size {
                return Err(ComposedError::Overlap {
                    segment: i,
                    start: m.start,
                    prev: i - 1,
                    prev_start: prev.start,
                    prev_end: prev.start + prev.size,
                });
            }
        }
        let gap_after = metas
            .get(i + 1)
            .map_or(0, |n| n.start.saturating_sub(m.start + m.size));
        segments.push(FileSegment {
            index: i,
            old_start: OldAddr::new(m.start),
            size: m.size,
            file_offset: 0,
            gap_after,
        });
    }
    if metas[0].start != header.old_base.get() {
        return Err(ComposedError::BaseMismatch {
            start: metas[0].start,
            base: header.old_base.get(),
        });
    }
    let total: u64 = metas.iter().map(|m| m.size).sum();
    if total != header.data_size {
        return Err(ComposedError::SizeMismatch {
            expected: header.data_size,
            found: total,
        });
    }
    let table = SegmentTable { segments };
    let so = header.special_objects_oop;
    if table.segment_of(so).is_none() || !so.get().is_multiple_of(8) {
        return Err(FormatError::SpecialObjectsOutside { oop: so.get() }.into());
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::ston;
    use crate::write::composed::header_ston;

    fn header(word: WordSize) -> ImageHeader {
        ImageHeader {
            special_objects_oop: OldAddr::new(0x3204800),
            last_hash: 283663,
            ..ImageHeader::new(word, OldAddr::new(0x3204000), 42256)
        }
    }

    /// Found by the `ston` fuzz target: an `imageHeaderSize` of 26 was taken
    /// as it is, and encoding that header for a single file panicked.
    #[test]
    fn a_header_size_that_cannot_hold_the_header_is_refused() {
        for word in [WordSize::W32, WordSize::W64] {
            for bad in [26, 8, 60, 200_000, 130] {
                let text = header_ston(&header(word), 0).replace(
                    &format!("#imageHeaderSize : {}", word.standard_header_size()),
                    &format!("#imageHeaderSize : {bad}"),
                );
                let s = ston::parse(&text, "header.ston").unwrap();
                let e = header_from_ston(&s, 0).unwrap_err();
                assert!(
                    matches!(
                        e,
                        ComposedError::BadField {
                            field: "imageHeaderSize",
                            ..
                        }
                    ),
                    "{bad}: {e}"
                );
            }
            let h = header_from_ston(
                &ston::parse(&header_ston(&header(word), 0), "header.ston").unwrap(),
                0,
            )
            .unwrap();
            assert_eq!(h.encode().len() as u64, h.header_size);
        }
    }
}
