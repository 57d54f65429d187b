//! Where the image of `info`, `load` and `verify` comes from: a file, or,
//! when no IMAGE is given, a small image the builder makes in memory.

use std::path::{Path, PathBuf};

use anyhow::Context;
use spur_format::WordSize;
use spur_format::{ImageHeader, SegmentTable};
use spur_loader::{ComposedSource, FileSource, ImageSource, LoadError, LoadOptions, LoadedHeap};
use spur_synth::SynthSpec;

use crate::out::human_bytes;

/// Heap size of the default image.
const DEFAULT_HEAP_BYTES: u64 = 4 << 20;
/// Segments of the default image, and the gap between them: enough to show
/// the loader placing each segment at its own old address.
const DEFAULT_SEGMENTS: usize = 2;
const DEFAULT_GAP_BYTES: u64 = 1 << 20;

/// An opened image.
#[derive(Debug)]
pub enum Image {
    /// A file, read with `pread` as the loader needs it, and its path (to
    /// name it in errors).
    File(FileSource, PathBuf),
    /// An image held in memory.
    Bytes(Vec<u8>),
    /// A Pharo composed image: a folder of `.ston` and `.data` files.
    Folder(ComposedSource),
}

impl Image {
    /// Opens `path`, or builds the default image when there is none.
    pub fn open(path: Option<&Path>) -> anyhow::Result<Image> {
        match path {
            Some(p) if p.is_dir() => Ok(Image::Folder(ComposedSource::open(p)?)),
            Some(p) => Ok(Image::File(FileSource::open(p)?, p.to_path_buf())),
            None => {
                let spec = default_spec();
                eprintln!(
                    "note: no IMAGE given; using a {} {}-bit image with {} segments \
                     made in memory by the builder",
                    human_bytes(spec.heap_bytes),
                    spec.word.bytes() * 8,
                    spec.segments
                );
                let (bytes, _) = spur_synth::image_bytes(&spec)
                    .context("building the default image in memory")?;
                Ok(Image::Bytes(bytes))
            }
        }
    }
}

impl Image {
    /// The header and segment table, without loading anything. Errors
    /// name the file.
    pub fn layout(&self) -> anyhow::Result<(ImageHeader, SegmentTable)> {
        let r = match self {
            Image::Folder(c) => Ok((c.header.clone(), c.table.clone())),
            _ => spur_loader::read_layout(self),
        };
        self.named(r)
    }

    /// Loads the image. Errors name the file.
    pub fn load(&self, opts: &LoadOptions) -> anyhow::Result<LoadedHeap> {
        let r = match self {
            Image::Folder(c) => spur_loader::load_composed(c, opts),
            _ => spur_loader::load(self, opts),
        };
        self.named(r)
    }

    /// `r`, its error prefixed by the file's path when it does not say it.
    fn named<T>(&self, r: Result<T, LoadError>) -> anyhow::Result<T> {
        match (self, r) {
            (_, Ok(v)) => Ok(v),
            (Image::File(_, path), Err(e)) if !e.to_string().contains(&*path.to_string_lossy()) => {
                Err(anyhow::Error::new(e).context(crate::out::shown(path)))
            }
            (_, Err(e)) => Err(e.into()),
        }
    }
}

/// The image used when no IMAGE is given: 64-bit, two segments a gap apart.
pub fn default_spec() -> SynthSpec {
    SynthSpec {
        segments: DEFAULT_SEGMENTS,
        gap_bytes: DEFAULT_GAP_BYTES,
        ..SynthSpec::new(WordSize::W64, DEFAULT_HEAP_BYTES)
    }
}

/// The loader reads either kind through the library's own sources.
impl ImageSource for Image {
    fn len(&self) -> u64 {
        match self {
            Image::File(f, _) => f.len(),
            Image::Bytes(b) => ImageSource::len(b.as_slice()),
            Image::Folder(_) => 0,
        }
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), LoadError> {
        match self {
            Image::File(f, _) => f.read_exact_at(buf, offset),
            Image::Bytes(b) => b.as_slice().read_exact_at(buf, offset),
            Image::Folder(_) => [0u8; 0].as_slice().read_exact_at(buf, offset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_image_reads_as_two_segments_with_a_gap() {
        let (bytes, report) = spur_synth::image_bytes(&default_spec()).unwrap();
        let (header, table) = spur_loader::read_layout(&Image::Bytes(bytes)).unwrap();
        assert_eq!(header.word, WordSize::W64);
        assert_eq!(table.segments.len(), DEFAULT_SEGMENTS);
        assert_eq!(table.segments[0].gap_after, DEFAULT_GAP_BYTES);
        assert_eq!(header.data_size, report.data_size);
    }
}
