//! Where the runtime's own memory goes: new space directly below old space
//! when that range is free, as OpenSmalltalk lays out its heap (§4.5);
//! otherwise wherever the kernel has room. A 32-bit image's memory always
//! lies below 4 GiB, since its oops are 32-bit.

use spur_format::WordSize;
use spur_loader::placement::reserve_below_4g;
use spur_mem::{page_floor, Reservation};

use crate::error::RuntimeError;

/// How a range was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// Ending where old space begins (its first page).
    BelowOldSpace,
    /// Wherever there was room.
    Elsewhere,
}

impl Placed {
    /// `below-old-space` or `elsewhere`.
    pub const fn name(self) -> &'static str {
        match self {
            Placed::BelowOldSpace => "below-old-space",
            Placed::Elsewhere => "elsewhere",
        }
    }
}

/// Lowest address tried for memory placed below old space: keep clear of
/// the first pages, which the kernel refuses (`mmap_min_addr`).
const LOWEST: u64 = 1 << 20;

/// Reserves `len` bytes (a multiple of the page size): ending at the page
/// of `below` if given and free, else elsewhere.
pub(crate) fn reserve_for(
    word: WordSize,
    len: u64,
    below: Option<u64>,
) -> Result<(Reservation, Placed), RuntimeError> {
    if let Some(end) = below.map(page_floor) {
        if let Some(start) = end.checked_sub(len).filter(|&s| s >= LOWEST) {
            match Reservation::at(start, len) {
                Ok(r) => return Ok((r, Placed::BelowOldSpace)),
                Err(e) => tracing::debug!(
                    "{len} bytes below {end:#x} unavailable: {}",
                    spur_format::error::Chain(&e)
                ),
            }
        }
    }
    let r = match word {
        WordSize::W64 => Reservation::anywhere(len, 0)?,
        // The loader's one search below 4 GiB, which placed the heap itself.
        WordSize::W32 => reserve_below_4g(len, None)?.ok_or(RuntimeError::NoRoomBelow4G {
            what: if below.is_some() {
                "new space"
            } else {
                "stack zone"
            },
            bytes: len,
        })?,
    };
    Ok((r, Placed::Elsewhere))
}
