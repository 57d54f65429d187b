//! Where image bytes come from: a file read with `pread`, or a byte buffer.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

use crate::error::LoadError;

/// Random-access image bytes. The loader reads the header, the bridges and
/// then each segment straight into its final place through this trait,
/// from two threads at once when relocating a large segment (hence `Sync`).
pub trait ImageSource: Sync {
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
        // Never blocks (a FIFO), and refuses what is not a regular file.
        let file = crate::files::open_regular(path, "an image file").map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
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

use spur_format::read::composed::{self, ComposedError, SegmentMeta};
use spur_format::read::ston;
use spur_format::{FileSegment, ImageHeader, SegmentTable};

/// Where each segment's bytes are: the loader reads (or maps) them from here,
/// from two threads at once when relocating a large segment (hence `Sync`).
pub trait SegmentReader: Sync {
    /// Fills `buf` with the bytes of `seg` starting `at` bytes into the segment.
    fn read_segment(&self, seg: &FileSegment, at: u64, buf: &mut [u8]) -> Result<(), LoadError>;
    /// A file that holds exactly `seg` from offset 0, which may be mapped in place.
    fn segment_file(&self, _seg: &FileSegment) -> Option<&File> {
        None
    }
    /// Perm space (§6): where it lives and the file holding it from offset 0.
    fn perm(&self) -> Option<(SegmentMeta, &File)> {
        None
    }
}

/// The segments of a single-file image: at their offsets in one source.
#[derive(Debug)]
pub struct InOneFile<'a, S: ImageSource + ?Sized>(pub &'a S);

impl<S: ImageSource + ?Sized> SegmentReader for InOneFile<'_, S> {
    fn read_segment(&self, seg: &FileSegment, at: u64, buf: &mut [u8]) -> Result<(), LoadError> {
        self.0.read_exact_at(buf, seg.file_offset + at)
    }
}

/// Errors of a composed folder: a file that cannot be read, or bad content.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    /// A file of the folder could not be opened or read.
    #[error("{path}")]
    Io {
        /// The file concerned.
        path: String,
        /// The failure the system reported.
        source: std::io::Error,
    },
    /// A `.ston` file is not the STON the Pharo VM writes.
    #[error(transparent)]
    Ston(#[from] ston::StonError),
    /// The files disagree (sizes, segment order, header fields).
    #[error("{}", .folder)]
    Content {
        /// The folder concerned.
        folder: String,
        /// What is wrong with it.
        source: ComposedError,
    },
}

/// A Pharo composed image: a folder with `header.ston` and `segN.ston` /
/// `segN.data` pairs (§6), and optionally `permSpace.ston` / `permSpace.data`.
#[derive(Debug)]
pub struct ComposedSource {
    /// The image header, built from `header.ston`.
    pub header: ImageHeader,
    /// The segments, from the `segN.ston` files, in file order.
    pub table: SegmentTable,
    files: Vec<File>,
    /// Perm space: where it lives, its size, and its data file.
    pub perm: Option<(SegmentMeta, File)>,
}

impl ComposedSource {
    /// Opens and checks a composed folder: every `.ston` parsed, every `.data`
    /// at least as long as its `.ston` says.
    pub fn open(dir: &std::path::Path) -> Result<ComposedSource, LoadError> {
        let folder = dir.display().to_string();
        let io = |p: &std::path::Path, source| FolderError::Io {
            path: p.display().to_string(),
            source,
        };
        let content = |source| FolderError::Content {
            folder: folder.clone(),
            source,
        };
        let read_ston = |name: &str| -> Result<ston::StonStruct, FolderError> {
            let p = dir.join(name);
            // A .ston file is a few hundred bytes: read no more than the
            // parser accepts, whatever the file's size.
            let mut text = String::new();
            crate::files::open_regular(&p, "a .ston file")
                .and_then(|f| f.take(ston::MAX_STON_BYTES + 1).read_to_string(&mut text))
                .map_err(|e| io(&p, e))?;
            let parsed = ston::parse(&text, name)?;
            let known: &[&str] = if name == "header.ston" {
                &composed::HEADER_FIELDS
            } else {
                &composed::SEGMENT_FIELDS
            };
            for (field, value) in &parsed.fields {
                if !known.contains(&field.as_str()) && field != composed::SAVED_WINDOW_SIZE_FIELD {
                    tracing::debug!("{name}: unknown field {field} ({value}) ignored");
                }
            }
            Ok(parsed)
        };
        let open_data = |name: &str, ston_name: &str, want: u64| -> Result<File, FolderError> {
            let p = dir.join(name);
            let f = crate::files::open_regular(&p, "a .data file").map_err(|e| io(&p, e))?;
            let len = f.metadata().map_err(|e| io(&p, e))?.len();
            if len < want {
                return Err(FolderError::Content {
                    folder: folder.clone(),
                    source: ComposedError::ShortData {
                        file: name.into(),
                        ston: ston_name.into(),
                        found: len,
                        expected: want,
                    },
                });
            }
            Ok(f)
        };
        // Anything by a file's name counts as there: a FIFO called
        // header.ston is then refused as what it is, not called missing.
        let there = |name: &str| crate::files::exists(&dir.join(name));
        if !there("header.ston") {
            return Err(FolderError::Io {
                path: folder.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a folder, but not a composed image (no header.ston)",
                ),
            }
            .into());
        }
        let perm = if there("permSpace.ston") {
            let meta = SegmentMeta::from_ston(&read_ston("permSpace.ston")?, "permSpace.ston")
                .map_err(content)?;
            let f = open_data("permSpace.data", "permSpace.ston", meta.size)?;
            Some((meta, f))
        } else {
            None
        };
        let header = composed::header_from_ston(
            &read_ston("header.ston")?,
            perm.as_ref().map_or(0, |(m, _)| m.size),
        )
        .map_err(content)?;
        // The reader stops at the first missing segN.data, as the Pharo VM does.
        let mut metas = Vec::new();
        let mut files = Vec::new();
        for i in 0.. {
            let data = format!("seg{i}.data");
            if !there(&data) {
                if i == 0 {
                    return Err(content(ComposedError::NoSegments).into());
                }
                break;
            }
            let ston_name = format!("seg{i}.ston");
            let meta =
                SegmentMeta::from_ston(&read_ston(&ston_name)?, &ston_name).map_err(content)?;
            files.push(open_data(&data, &ston_name, meta.size)?);
            metas.push(meta);
        }
        let table = composed::segment_table(&header, &metas).map_err(content)?;
        if let Some((m, _)) = &perm {
            composed::check_perm_space(&header, &table, m).map_err(content)?;
        }
        Ok(ComposedSource {
            header,
            table,
            files,
            perm,
        })
    }
}

impl SegmentReader for ComposedSource {
    fn read_segment(&self, seg: &FileSegment, at: u64, buf: &mut [u8]) -> Result<(), LoadError> {
        self.files[seg.index]
            .read_exact_at(buf, at)
            .map_err(|source| LoadError::Read {
                offset: at,
                len: buf.len() as u64,
                source,
            })
    }
    fn segment_file(&self, seg: &FileSegment) -> Option<&File> {
        self.files.get(seg.index)
    }
    fn perm(&self) -> Option<(SegmentMeta, &File)> {
        self.perm.as_ref().map(|(m, f)| (*m, f))
    }
}
