//! The header's flag word decoded into the settings it controls (§1.4), and
//! the identity-hash seed (§1.3, field `lastHash`).

use spur_format::ImageHeader;

/// Settings from the header's flags word (§1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSettings {
    /// The raw flags word.
    pub flags: u64,
    /// Bit 0: open the display full screen (OpenSmalltalk; Pharo ignores it).
    pub full_screen: bool,
    /// Bit 1: boxed floats are stored in little-endian word order. When this
    /// differs from the host, every boxed float is converted (§1.2).
    pub floats_little_endian: bool,
    /// Bit 2: processes have thread affinity (multi-threaded VM).
    pub process_has_thread_affinity: bool,
    /// Bit 3: run methods interpreted (CoInterpreter).
    pub interpreted_methods: bool,
    /// Bit 4 clear: a preempted process goes to the back of its run queue.
    pub preemption_yields: bool,
    /// Bit 5: do not thread the GUI thread (multi-threaded VM).
    pub no_threading_of_gui_thread: bool,
    /// Bit 6: new finalization (ephemerons).
    pub new_finalization: bool,
    /// Bit 7: send mouse-wheel events rather than arrow keys.
    pub send_wheel_events: bool,
    /// Bit 8 clear: primitives may do mixed integer/float arithmetic.
    pub mixed_arithmetic: bool,
    /// Bit 9: answered by the File plugins (meaning unverified, §9).
    pub file_plugin_flag: bool,
    /// Bit 10 clear: scale the display up on high-DPI screens.
    pub upscale_display_if_high_dpi: bool,
    /// Bits above 10, kept for the snapshot writer.
    pub unknown_bits: u64,
}

/// Bits with a known meaning (§1.4).
pub const KNOWN_FLAG_BITS: u64 = 0x7FF;

impl ImageSettings {
    /// Decodes `flags`.
    pub fn from_flags(flags: u64) -> Self {
        let bit = |n: u32| flags >> n & 1 == 1;
        ImageSettings {
            flags,
            full_screen: bit(0),
            floats_little_endian: bit(1),
            process_has_thread_affinity: bit(2),
            interpreted_methods: bit(3),
            preemption_yields: !bit(4),
            no_threading_of_gui_thread: bit(5),
            new_finalization: bit(6),
            send_wheel_events: bit(7),
            mixed_arithmetic: !bit(8),
            file_plugin_flag: bit(9),
            upscale_display_if_high_dpi: !bit(10),
            unknown_bits: flags & !KNOWN_FLAG_BITS,
        }
    }

    /// Must boxed floats be converted on this host (§1.2)?
    pub const fn floats_need_swapping(&self) -> bool {
        self.floats_little_endian != cfg!(target_endian = "little")
    }
}

/// The identity-hash generator's seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashSeed {
    /// The seed: `lastHash` masked to the 22 bits of an identity hash.
    pub seed: u32,
    /// `lastHash` as the header holds it.
    pub last_hash: u64,
    /// The masked value was 0, so the seed came from the clock, as
    /// OpenSmalltalk does.
    pub from_clock: bool,
}

/// Mask OpenSmalltalk applies to `lastHash` (§1.3).
pub const HASH_SEED_MASK: u64 = 0x3F_FFFF;

impl HashSeed {
    /// The seed for `header`.
    pub fn from_header(header: &ImageHeader) -> Self {
        let seed = (header.last_hash & HASH_SEED_MASK) as u32;
        if seed != 0 {
            return HashSeed {
                seed,
                last_hash: header.last_hash,
                from_clock: false,
            };
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::from(d.subsec_nanos()) ^ d.as_secs());
        HashSeed {
            seed: ((nanos & HASH_SEED_MASK) as u32).max(1),
            last_hash: header.last_hash,
            from_clock: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_decode_to_their_settings() {
        let s = ImageSettings::from_flags(2);
        assert!(s.floats_little_endian && s.preemption_yields && s.mixed_arithmetic);
        assert!(!s.floats_need_swapping());
        let s = ImageSettings::from_flags(16 | 256 | 1024 | 0x1000);
        assert!(!s.floats_little_endian && !s.preemption_yields && !s.mixed_arithmetic);
        assert!(!s.upscale_display_if_high_dpi);
        assert_eq!(s.unknown_bits, 0x1000);
        assert!(s.floats_need_swapping());
    }
}
