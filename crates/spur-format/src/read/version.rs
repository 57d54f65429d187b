//! Recognising the image format number (§1.1, §1.2).

use crate::layout::WordSize;
use crate::raw::*;

/// Byte order of an image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    /// Least significant byte first: every image in use.
    Little,
    /// Most significant byte first.
    Big,
}

impl ByteOrder {
    /// `little` or `big`, for messages.
    pub const fn name(self) -> &'static str {
        match self {
            ByteOrder::Little => "little",
            ByteOrder::Big => "big",
        }
    }
}

/// What a format number says about an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// A Spur image this crate reads.
    Spur {
        /// The format number.
        number: u32,
        /// The word size.
        word: WordSize,
        /// The multiple-bytecode-sets bit (68533, 7033).
        multiple_bytecode_sets: bool,
    },
    /// The first 64-bit Spur format (68019), with the obsolete SmallFloat tag.
    ObsoleteSpur {
        /// The format number.
        number: u32,
    },
    /// A pre-Spur (V3) image: another object format altogether.
    PreSpur {
        /// The format number.
        number: u32,
        /// The word size.
        word: WordSize,
        /// The format has closures.
        closures: bool,
    },
}

impl Version {
    /// Classifies a format number, or `None` when it is not a Smalltalk image number at all.
    pub fn classify(number: u32) -> Option<Version> {
        match number {
            FORMAT_SPUR32 | FORMAT_SPUR32_SISTA => Some(Version::Spur {
                number,
                word: WordSize::W32,
                multiple_bytecode_sets: number & MULTIPLE_BYTECODE_SETS_BIT != 0,
            }),
            FORMAT_SPUR64 | FORMAT_SPUR64_SISTA => Some(Version::Spur {
                number,
                word: WordSize::W64,
                multiple_bytecode_sets: number & MULTIPLE_BYTECODE_SETS_BIT != 0,
            }),
            FORMAT_SPUR64_OBSOLETE => Some(Version::ObsoleteSpur { number }),
            _ => {
                // Pre-Spur base numbers (IF knownVersionNumbers), with the float-order
                // and bytecode-set bits allowed on top.
                let base = number & !(PLATFORM_FLOAT_ORDER_BIT | MULTIPLE_BYTECODE_SETS_BIT);
                let (word, closures) = match base {
                    6502 => (WordSize::W32, false),
                    6504 => (WordSize::W32, true),
                    68000 => (WordSize::W64, false),
                    68002 => (WordSize::W64, true),
                    68004 => (WordSize::W64, true),
                    _ => return None,
                };
                Some(Version::PreSpur {
                    number,
                    word,
                    closures,
                })
            }
        }
    }

    /// The Spur image this number names, or the error that says why it cannot
    /// be loaded (obsolete Spur, pre-Spur), for a word found at `offset` in
    /// the byte order `order`.
    pub fn loadable(
        self,
        order: ByteOrder,
        offset: u64,
    ) -> Result<(u32, WordSize, bool), crate::FormatError> {
        match self {
            Version::Spur {
                number,
                word,
                multiple_bytecode_sets,
            } => Ok((number, word, multiple_bytecode_sets)),
            Version::ObsoleteSpur { number } => Err(crate::FormatError::ObsoleteSpur { number }),
            Version::PreSpur {
                number,
                word,
                closures,
            } => Err(crate::FormatError::PreSpur {
                number,
                word64: word == WordSize::W64,
                closures,
                order,
                offset,
            }),
        }
    }

    /// The format number itself.
    pub const fn number(self) -> u32 {
        match self {
            Version::Spur { number, .. }
            | Version::ObsoleteSpur { number }
            | Version::PreSpur { number, .. } => number,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spur_numbers() {
        for (n, w, sista) in [
            (6521, WordSize::W32, false),
            (7033, WordSize::W32, true),
            (68021, WordSize::W64, false),
            (68533, WordSize::W64, true),
        ] {
            assert_eq!(
                Version::classify(n),
                Some(Version::Spur {
                    number: n,
                    word: w,
                    multiple_bytecode_sets: sista
                })
            );
        }
    }

    #[test]
    fn pre_spur_and_unknown() {
        assert!(matches!(
            Version::classify(6505),
            Some(Version::PreSpur {
                closures: true,
                word: WordSize::W32,
                ..
            })
        ));
        assert!(matches!(
            Version::classify(6502),
            Some(Version::PreSpur {
                closures: false,
                ..
            })
        ));
        assert!(matches!(
            Version::classify(68019),
            Some(Version::ObsoleteSpur { .. })
        ));
        assert_eq!(Version::classify(0x6619_0000), None);
        assert_eq!(Version::classify(0), None);
    }
}
