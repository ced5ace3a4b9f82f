//! Giving memory back to the operating system after the rare large allocations.
//!
//! mimalloc (the release allocator, see BENCHMARKS.md) keeps freed memory for reuse and hands
//! it back only when the thread that freed it allocates again. That is right for request
//! traffic, but an argon2id hash (19 MiB, on a blocking-pool thread that then sleeps) would
//! otherwise stay resident for good: an idle server would sit at twice its working size.

/// Returns freed memory to the OS. Cheap when there is nothing to return; call it after a
/// large, short-lived allocation on the same thread.
pub fn release_unused() {
    #[cfg(feature = "mimalloc")]
    // SAFETY: mi_collect has no preconditions: any thread may call it at any time, and it
    // only frees memory that no live allocation uses.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}
