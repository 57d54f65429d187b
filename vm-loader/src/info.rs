//! `vm-loader info`: the header and the segments, from the header and the
//! bridges alone.

use std::fmt::Write;

use anyhow::Result;
use serde::Serialize;
use spur_format::{raw::HEADER_FLAGS, ImageHeader, SegmentTable};

use crate::cli::InfoArgs;
use crate::image::Image;
use crate::out::{emit, human_bytes};
use crate::Outcome;

/// The JSON of `info`.
#[derive(Debug, Serialize)]
pub struct InfoJson {
    pub format: u32,
    pub word_size: u64,
    pub byte_order: &'static str,
    pub multiple_bytecode_sets: bool,
    pub prefix_bytes: u64,
    pub header_size: u64,
    pub data_size: u64,
    pub old_base: u64,
    pub special_objects_oop: u64,
    pub last_hash: u64,
    pub flags: FlagsJson,
    pub first_segment_size: u64,
    pub free_old_space: u64,
    pub eden_bytes: u32,
    pub stack_pages: u16,
    /// Bytes (the header holds KiB).
    pub cog_code_size: u64,
    pub max_ext_sem_table: u16,
    pub image_version: u16,
    /// Bytes the VM is asked to reserve beyond the heap (0: its default).
    pub extra_vm_memory: u64,
    /// The window size saved with the image, in pixels.
    pub saved_window: WindowJson,
    /// `"file"`, `"composed"` (a folder) or `"builder"` (no IMAGE given).
    pub input: &'static str,
    /// Bytes of the file after its data (kept by a snapshot).
    pub trailing_bytes: u64,
    /// With `--dialect`: `pharo`, `squeak`, `cuis` or `unknown`, as launch
    /// finds it, and the evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dialect: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dialect_evidence: Option<Vec<String>>,
    pub segments: Vec<SegmentJson>,
}

#[derive(Debug, Serialize)]
pub struct WindowJson {
    pub width: u64,
    pub height: u64,
}

#[derive(Debug, Serialize)]
pub struct FlagsJson {
    pub value: u64,
    /// Names of the known bits that are set.
    pub names: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct SegmentJson {
    pub index: usize,
    pub old_start: u64,
    pub size: u64,
    /// Where the segment's bytes start: in the image file, or in its
    /// `segN.data` for a composed folder.
    pub file_offset: u64,
}

pub fn run(args: &InfoArgs, json: bool) -> Result<Outcome> {
    let image = Image::open(args.image.as_deref())?;
    let (header, table) = image.layout()?;
    let mut j = to_json(&header, &table);
    j.input = match image {
        Image::File(..) => "file",
        Image::Folder(_) => "composed",
        Image::Bytes(_) => "builder",
    };
    j.trailing_bytes = match &image {
        Image::File(f, _) => spur_loader::trailing_len(f, &header),
        _ => 0,
    };
    if args.dialect {
        let heap = image.load(&spur_loader::LoadOptions::default())?;
        let rt = spur_runtime::Runtime::wire(heap, &spur_runtime::RuntimeOptions::default())?;
        let d = rt.dialect();
        j.dialect = Some(d.dialect.name());
        j.dialect_evidence = Some(d.clues.iter().map(|c| c.what.clone()).collect());
    }
    emit(json, &j, || {
        let mut s = text(&header, &table);
        if let (Some(d), Some(ev)) = (j.dialect, &j.dialect_evidence) {
            let _ = writeln!(s, "dialect         {d}: {}", ev.join("; "));
        }
        match j.input {
            "composed" => s.insert_str(0, "a composed image (a folder of .ston and .data files)\n"),
            _ if j.trailing_bytes > 0 => {
                let _ = writeln!(s, "after the data  {} bytes", j.trailing_bytes);
            }
            _ => {}
        }
        s
    })?;
    Ok(Outcome::Ok)
}

fn to_json(h: &ImageHeader, t: &SegmentTable) -> InfoJson {
    InfoJson {
        format: h.format,
        word_size: h.word.bytes(),
        byte_order: h.byte_order.name(),
        multiple_bytecode_sets: h.multiple_bytecode_sets,
        prefix_bytes: h.prefix_bytes,
        header_size: h.header_size,
        data_size: h.data_size,
        old_base: h.old_base.get(),
        special_objects_oop: h.special_objects_oop.get(),
        last_hash: h.last_hash,
        flags: FlagsJson {
            value: h.flags,
            names: h.flag_names(),
        },
        first_segment_size: h.first_segment_size,
        free_old_space: h.free_old_space,
        eden_bytes: h.eden_bytes,
        stack_pages: h.num_stack_pages,
        cog_code_size: h.cog_code_size_kib as u64 * 1024,
        max_ext_sem_table: h.max_ext_sem_table,
        image_version: h.image_version,
        extra_vm_memory: h.extra_vm_memory as u64,
        saved_window: WindowJson {
            width: h.saved_window_size >> 16 & 0xffff,
            height: h.saved_window_size & 0xffff,
        },
        input: "file",
        trailing_bytes: 0,
        dialect: None,
        dialect_evidence: None,
        segments: t
            .segments
            .iter()
            .map(|s| SegmentJson {
                index: s.index,
                old_start: s.old_start.get(),
                size: s.size,
                file_offset: s.file_offset,
            })
            .collect(),
    }
}

/// Flag bits that no known name covers.
fn unknown_flags(flags: u64) -> u64 {
    HEADER_FLAGS.iter().fold(flags, |f, (bit, _)| f & !bit)
}

fn text(h: &ImageHeader, t: &SegmentTable) -> String {
    let mut s = String::new();
    let sista = if h.multiple_bytecode_sets {
        ", multiple bytecode sets"
    } else {
        ""
    };
    let _ = writeln!(
        s,
        "format          {} ({}-bit Spur, {}-endian{sista})",
        h.format,
        h.word.bytes() * 8,
        h.byte_order.name()
    );
    let _ = writeln!(
        s,
        "header          {} bytes at file offset {}{}",
        h.header_size,
        h.prefix_bytes,
        if h.prefix_bytes > 0 {
            " (after a prefix)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        s,
        "data size       {} ({})",
        h.data_size,
        human_bytes(h.data_size)
    );
    let _ = writeln!(s, "old base        {:#x}", h.old_base.get());
    let _ = writeln!(s, "special objects {:#x}", h.special_objects_oop.get());
    let _ = writeln!(s, "last hash       {:#x}", h.last_hash);
    let mut names = h.flag_names().join(", ");
    let unknown = unknown_flags(h.flags);
    if unknown != 0 {
        if !names.is_empty() {
            names.push_str(", ");
        }
        let _ = write!(names, "unknown bits {unknown:#x}");
    }
    let _ = writeln!(s, "flags           {:#x} ({names})", h.flags);
    let _ = writeln!(s, "first segment   {} bytes", h.first_segment_size);
    let _ = writeln!(
        s,
        "free old space  {} ({})",
        h.free_old_space,
        human_bytes(h.free_old_space)
    );
    let or_default = |n: u64| {
        if n == 0 {
            "default".to_string()
        } else {
            n.to_string()
        }
    };
    let _ = writeln!(
        s,
        "extra VM memory {}",
        or_default(h.extra_vm_memory as u64)
    );
    let _ = writeln!(s, "eden bytes      {}", or_default(h.eden_bytes as u64));
    let _ = writeln!(
        s,
        "stack pages     {}",
        or_default(h.num_stack_pages as u64)
    );
    let _ = writeln!(
        s,
        "cog code size   {}",
        or_default(h.cog_code_size_kib as u64 * 1024)
    );
    let _ = writeln!(
        s,
        "max ext sem tab {}",
        or_default(h.max_ext_sem_table as u64)
    );
    let _ = writeln!(s, "image version   {}", h.image_version);
    let _ = writeln!(
        s,
        "saved window    {}x{}",
        h.saved_window_size >> 16 & 0xffff,
        h.saved_window_size & 0xffff
    );
    let _ = writeln!(s, "segments        {}", t.segments.len());
    for seg in &t.segments {
        let gap = if seg.gap_after > 0 {
            format!(", then a gap of {}", human_bytes(seg.gap_after))
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "  {:>3}  {:#014x}..{:#014x}  {:>10} bytes at file offset {}{gap}",
            seg.index,
            seg.old_start.get(),
            seg.old_end().get(),
            seg.size,
            seg.file_offset
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_flag_bits_are_kept_apart() {
        assert_eq!(unknown_flags(2 | 16), 0);
        assert_eq!(unknown_flags(2 | 0x1000), 0x1000);
    }
}
