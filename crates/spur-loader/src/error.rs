//! Errors of the loader: what could not be loaded, and where.

use spur_format::FormatError;
use spur_mem::MemError;

/// Why an image could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("reading {len} bytes at file offset {offset}")]
    Read {
        offset: u64,
        len: u64,
        source: std::io::Error,
    },
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Memory(#[from] MemError),
    #[error("--base {addr:#x}: {why}")]
    BadBase { addr: u64, why: &'static str },
    #[error("the heap needs {need:#x} bytes of address space, more than this machine can reserve")]
    TooLarge { need: u64 },
    #[error("relocating")]
    Relocate(#[source] FormatError),
    #[error(transparent)]
    Folder(#[from] crate::source::FolderError),
}

impl LoadError {
    /// Is the input at fault (as opposed to the machine)?
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            LoadError::Format(_)
                | LoadError::Relocate(_)
                | LoadError::BadBase { .. }
                | LoadError::Folder(_)
        )
    }
}
