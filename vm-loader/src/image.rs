//! Where the image of `info` and `load` comes from.

use std::path::Path;

use spur_loader::{FileSource, ImageSource, LoadError};

/// An opened image.
#[derive(Debug)]
pub enum Image {
    /// A file, read with `pread` as the loader needs it.
    File(FileSource),
}

impl Image {
    /// Opens `path`.
    pub fn open(path: Option<&Path>) -> anyhow::Result<Image> {
        match path {
            Some(p) => Ok(Image::File(FileSource::open(p)?)),
            None => anyhow::bail!("no IMAGE given"),
        }
    }
}

/// The loader reads it through the library's own sources.
impl ImageSource for Image {
    fn len(&self) -> u64 {
        match self {
            Image::File(f) => f.len(),
        }
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), LoadError> {
        match self {
            Image::File(f) => f.read_exact_at(buf, offset),
        }
    }
}
