//! Errors of the loader: what could not be loaded, and where.

use spur_format::FormatError;
use spur_mem::MemError;

/// Why an image could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The image file (or folder) could not be opened.
    #[error("{path}")]
    Open {
        /// The path given.
        path: String,
        /// The failure the system reported.
        source: std::io::Error,
    },
    /// Reading the image failed or came up short.
    #[error("reading {len} bytes at file offset {offset}")]
    Read {
        /// Where the read started, in bytes from the start of the file.
        offset: u64,
        /// Bytes asked for.
        len: u64,
        /// The failure the system reported.
        source: std::io::Error,
    },
    /// The header, a bridge or an object breaks the format (§1, §2).
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Address space could not be reserved, committed or released.
    #[error(transparent)]
    Memory(#[from] MemError),
    /// The base address asked for cannot hold the heap.
    #[error("--base {addr:#x}: {why}")]
    BadBase {
        /// The address asked for.
        addr: u64,
        /// Why it cannot be used.
        why: &'static str,
    },
    /// The heap is larger than the address space that can be reserved.
    #[error("the heap needs {need:#x} bytes of address space, more than this machine can reserve")]
    TooLarge {
        /// Bytes of address space the heap and its headroom need.
        need: u64,
    },
    /// A 32-bit heap to be placed away from its old addresses finds no free
    /// range of its size below 4 GiB outside them.
    #[error("the 32-bit heap needs {need:#x} bytes below 4 GiB away from its old addresses {old_start:#x}..{old_end:#x}, and no free range that large is left there")]
    NoRoomBelow4G {
        /// Bytes of address space the heap needs.
        need: u64,
        /// The heap's old start (oldBaseAddr).
        old_start: u64,
        /// The end of its last segment's old range.
        old_end: u64,
    },
    /// Swizzling the heap to its new addresses met a bad object or pointer.
    #[error("relocating")]
    Relocate(#[source] FormatError),
    /// A composed image folder is unreadable or inconsistent (§6).
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
