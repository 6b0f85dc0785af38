//! Process-wide settings kolm's binaries apply first thing ([`init`]). The library chooses
//! neither the allocator nor the thread count; a binary that wants kolm's choices calls this
//! before it starts any thread.
//!
//! **Freed memory stays with the process.** Training and embedding free and allocate tensors
//! of megabytes to hundreds of megabytes many times a second. mimalloc (the binaries'
//! allocator) gives freed memory back to the OS once it has lain unused for its purge delay,
//! and new tensors then come back as fresh pages for the kernel to fault in and zero: a third of
//! a training step went to `clear_page` (measured on the training benchmark, Qwen2.5-0.5B's
//! shape: 80 → 124 tokens/s with purging off; the default delay of 1 s, and 100 s, did not
//! recover it). With purging off, freed memory is reused; the resident size stays at its
//! high-water mark until the process exits.
//!
//! **The thread count is looked up once.** candle asks for its thread count on every matrix
//! multiply, and without `RAYON_NUM_THREADS` that means reading `/proc/cpuinfo` (for the
//! physical core count): on a one-text query embedding, dozens of reads. Setting the variable
//! once, to the cores this process may use, answers it from the environment.
//!
//! **candle's element-wise pool parks at once.** candle runs large element-wise operations on a
//! pool of its own (one thread fewer than the cores) whose threads, after each operation, spin
//! 25,000 times before they sleep. Training alternates those operations with matrix products
//! on rayon's threads, so on a small machine the spinning thread takes a core from the matrix
//! product that follows: 15% of a training step's samples were that spin. A spin limit of
//! 1,000 lets the pool catch back-to-back operations and then sleep.

use std::os::raw::c_int;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (the same in its v2 and v3 headers;
/// `libmimalloc-sys` names no constant for it). A test checks it by its default, 1,000 ms in
/// the v3 that `libmimalloc-sys` builds (v3's `options.c`; the header's comment still says 10).
const PURGE_DELAY: c_int = 15;

/// Applies the three settings. Call it at the top of `main`, before any thread exists.
pub fn init() {
    // SAFETY: setting an option is a plain store mimalloc allows at any time.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // Physical cores, as candle would count them, within what this process may use.
        let allowed = std::thread::available_parallelism().map_or(1, |n| n.get());
        let n = num_cpus::get_physical().clamp(1, allowed);
        // Sound: no other thread exists yet to read the environment concurrently.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        // Sound for the same reason; candle reads it when its pool starts.
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "1000");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_the_one_whose_default_is_1000_ms() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: reading an option.
            assert_eq!(
                unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) },
                1000
            );
        }
    }
}
