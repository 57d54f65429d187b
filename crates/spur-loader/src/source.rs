//! Where image bytes come from: a file read with `pread`, or a byte buffer.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::error::LoadError;

/// Random-access image bytes. The loader reads the header, the bridges and
/// then each segment straight into its final place through this trait.
pub trait ImageSource {
    /// Total length in bytes.
    fn len(&self) -> u64;
    /// Is the source empty?
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fills `buf` from `offset`; fails when fewer bytes are there.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), LoadError>;
}

/// An image file.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    len: u64,
}

impl FileSource {
    /// Opens `path` for reading.
    pub fn open(path: &std::path::Path) -> Result<FileSource, LoadError> {
        let open_err = |source| LoadError::Open {
            path: path.display().to_string(),
            source,
        };
        let file = File::open(path).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        if meta.is_dir() {
            return Err(open_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "is a directory, not an image file",
            )));
        }
        Ok(FileSource {
            file,
            len: meta.len(),
        })
    }
    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl ImageSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), LoadError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| LoadError::Read {
                offset,
                len: buf.len() as u64,
                source,
            })
    }
}

impl ImageSource for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), LoadError> {
        let short = || LoadError::Read {
            offset,
            len: buf.len() as u64,
            source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
        };
        let start = usize::try_from(offset).map_err(|_| short())?;
        let end = start.checked_add(buf.len()).ok_or_else(short)?;
        buf.copy_from_slice(self.get(start..end).ok_or_else(short)?);
        Ok(())
    }
}
