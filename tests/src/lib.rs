//! Shared helpers of the integration tests: where the corpus is, and facts
//! about its images from `SOURCES.md`.

#![forbid(unsafe_code)]

use std::path::PathBuf;

/// A real image of the corpus and the facts `SOURCES.md` lists for it.
#[derive(Debug, Clone, Copy)]
pub struct CorpusImage {
    pub file: &'static str,
    pub format: u32,
    pub word_bytes: u64,
    pub old_base: u64,
    pub special_objects_oop: u64,
    pub objects: u64,
}

/// The Spur images of `../shared/images/SOURCES.md`.
pub const CORPUS: &[CorpusImage] = &[
    CorpusImage {
        file: "pharo-vm-test-img-64.image",
        format: 68021,
        word_bytes: 8,
        old_base: 0x804000,
        special_objects_oop: 0x8351d8,
        objects: 2472,
    },
    CorpusImage {
        file: "pharo8-kernel-empharo-64.image",
        format: 68021,
        word_bytes: 8,
        old_base: 0x804000,
        special_objects_oop: 0x870c40,
        objects: 29904,
    },
    CorpusImage {
        file: "pharo-candle-squeakjs-headless-2020-32.image",
        format: 6521,
        word_bytes: 4,
        old_base: 0x3204000,
        special_objects_oop: 0x3224618,
        objects: 2493,
    },
    CorpusImage {
        file: "pharo-tiny-codeparadise-client-32.image",
        format: 6521,
        word_bytes: 4,
        old_base: 0x3204000,
        special_objects_oop: 0x3213ea0,
        objects: 4843,
    },
];

/// The non-Spur images and the format number each must be refused with.
pub const NON_SPUR: &[(&str, u32)] = &[
    (
        "non-spur/squeak-v3-closure-rsqueak-bootstrapped-6505-32.image",
        6505,
    ),
    ("non-spur/squeak-v3-mini-bigendian-6502-32.image", 6502),
];

/// The corpus folder from `SPUR_CORPUS`, or `None` (with a note printed) when
/// the variable is unset, as on a fresh clone. When it is set, the folder
/// must exist: a missing corpus fails the test run instead of passing silently.
pub fn corpus_dir() -> Option<PathBuf> {
    match std::env::var_os("SPUR_CORPUS") {
        None => {
            eprintln!("note: SPUR_CORPUS is not set; tests over the real image corpus are skipped");
            None
        }
        Some(dir) => {
            let dir = PathBuf::from(dir);
            assert!(
                dir.join("SOURCES.md").is_file(),
                "SPUR_CORPUS={} does not hold the image corpus (no SOURCES.md)",
                dir.display()
            );
            Some(dir)
        }
    }
}
