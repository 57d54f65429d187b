//! One list of the kinds of image the builder makes, for the tools that want
//! one image of each: the fuzz targets' seeds and the mutation sweep.

use spur_format::WordSize;

use crate::SynthSpec;

/// One image of every kind, each as small as the builder makes it: each word
/// size, several segments with and without gaps (down to an 8-byte gap), the
/// prefix and the multiple-bytecode-set formats 68533 and 7033, no free
/// chunks with an unaligned base, and a 32-bit image at Squeak's usual base.
/// Each comes with a name fit for a file name.
pub fn small_kinds() -> Vec<(&'static str, SynthSpec)> {
    let small = |word| SynthSpec::new(word, 0);
    let mut v = vec![("w64", small(WordSize::W64)), ("w32", small(WordSize::W32))];
    let mut s = small(WordSize::W64);
    s.segments = 3;
    s.gap_bytes = 64 << 10;
    v.push(("w64-3seg-gaps", s));
    let mut s = small(WordSize::W32);
    s.segments = 2;
    s.gap_bytes = 8;
    v.push(("w32-2seg-gap8", s));
    let mut s = small(WordSize::W64);
    s.segments = 2;
    v.push(("w64-2seg-adjacent", s));
    let mut s = small(WordSize::W64);
    s.prefix = true;
    s.multiple_bytecode_sets = true;
    v.push(("w64-68533-prefix", s));
    let mut s = small(WordSize::W32);
    s.prefix = true;
    s.multiple_bytecode_sets = true;
    s.old_base = 0x3204000;
    v.push(("w32-7033-prefix", s));
    let mut s = small(WordSize::W64);
    s.free_chunks = false;
    s.old_base = 0x804008;
    v.push(("w64-no-free-unaligned-base", s));
    let mut s = small(WordSize::W32);
    s.old_base = 0x3204000;
    s.seed = 7;
    v.push(("w32-squeak-base", s));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_valid_and_named_once() {
        let kinds = small_kinds();
        let mut names: Vec<_> = kinds.iter().map(|k| k.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), kinds.len());
        for (name, spec) in &kinds {
            assert_eq!(spec.validate(), Ok(()), "{name}");
        }
    }
}
