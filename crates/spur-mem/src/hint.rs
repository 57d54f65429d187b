//! Hints to the processor that change no value the program computes.

/// Asks the processor to bring the cache line holding `*r` into its caches
/// ahead of a load that will need it. It changes nothing the program can
/// observe but time; on targets without a prefetch instruction it does
/// nothing.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE, which `_mm_prefetch` needs, is part of every x86_64
    // target's baseline. A prefetch never faults and writes nothing; `r`
    // is a valid reference besides.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            std::ptr::from_ref(r).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}
