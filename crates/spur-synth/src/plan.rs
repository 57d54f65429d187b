//! Segment sizes and addresses, decided before anything is written.

use spur_format::raw::BRIDGE_BYTES;

use crate::{SpecError, SynthSpec};

/// Smallest later segment; also the filler room segment 0 gets beyond the kernel.
pub(crate) const MIN_SEGMENT: u64 = 4096;

/// Where one segment goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegPlan {
    /// Old address of its first byte.
    pub(crate) start: u64,
    /// Bytes, bridge included.
    pub(crate) size: u64,
}

/// Splits `spec.heap_bytes` (rounded up to 8) into `spec.segments` segments
/// of about equal size; segment 0 is grown to hold the `kernel_bytes` of
/// fixed structure, and every later segment holds at least [`MIN_SEGMENT`].
/// Sizes sum to the rounded `heap_bytes` whenever that is large enough.
pub(crate) fn plan(spec: &SynthSpec, kernel_bytes: u64) -> Result<Vec<SegPlan>, SpecError> {
    let k = spec.segments as u64;
    let total = spec.heap_bytes.div_ceil(8) * 8;
    let min0 = kernel_bytes + BRIDGE_BYTES + MIN_SEGMENT;
    let mut sizes = Vec::with_capacity(spec.segments);
    if k == 1 {
        sizes.push(total.max(min0));
    } else {
        let per = total / k / 8 * 8;
        let first = per.max(min0);
        let rest = total.saturating_sub(first);
        let each = (rest / (k - 1) / 8 * 8).max(MIN_SEGMENT);
        sizes.push(first);
        for _ in 1..k - 1 {
            sizes.push(each);
        }
        let last = rest.saturating_sub(each * (k - 2)).max(MIN_SEGMENT);
        sizes.push(last);
    }
    let mut out = Vec::with_capacity(sizes.len());
    let mut start = spec.old_base;
    for (i, &size) in sizes.iter().enumerate() {
        if i > 0 {
            start += spec.gap_bytes;
        }
        out.push(SegPlan { start, size });
        start += size;
    }
    let end = start;
    let limit = spec.word.address_limit();
    if end > limit {
        return Err(SpecError::PastAddressLimit {
            base: spec.old_base,
            end,
            limit,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spur_format::WordSize;

    #[test]
    fn sizes_sum_to_the_heap_and_segment_zero_holds_the_kernel() {
        let mut spec = SynthSpec::new(WordSize::W64, 1 << 20);
        spec.segments = 4;
        spec.gap_bytes = 4096;
        let p = plan(&spec, 70_000).unwrap();
        assert_eq!(p.iter().map(|s| s.size).sum::<u64>(), 1 << 20);
        assert!(p.iter().all(|s| s.size % 8 == 0));
        assert_eq!(p[1].start, p[0].start + p[0].size + 4096);
        spec.heap_bytes = 100_000;
        let p = plan(&spec, 70_000).unwrap();
        assert!(p[0].size >= 70_000 + 16 + MIN_SEGMENT);
        assert!(p[1..].iter().all(|s| s.size >= MIN_SEGMENT));
        let mut huge = SynthSpec::new(WordSize::W32, 4 << 30);
        huge.segments = 2;
        assert!(matches!(
            plan(&huge, 70_000),
            Err(SpecError::PastAddressLimit { .. })
        ));
    }
}
