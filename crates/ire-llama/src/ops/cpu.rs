//! Process-wide settings the CPU kernels want: the allocator and denormal floats. Training
//! (`ire_train::train`) and the benchmarks apply them with [`tune`] before the first step.
//!
//! **Allocator.** A training step allocates and frees the same large buffers every step
//! (activations, their gradients, blocks of logits: 1–64 MB each). glibc serves blocks above its
//! mmap threshold (dynamic, at most 32 MiB) with fresh `mmap`s and returns freed heap tops to the
//! kernel, so every step pays first-touch page faults on memory it had a moment ago. [`tune`]
//! fixes the threshold at its 32 MiB maximum and keeps freed memory in the process. Measured
//! (docs/performance.md, tiny, 2 threads): minor page faults per run 280–630 k → 71–75 k,
//! system time 1.4–2.2 s → 0.7 s, throughput +3–7 %, peak RSS unchanged. Blocks over 32 MiB
//! (the 60m-shaped head's gradient) are still mmapped. Other allocators (mimalloc, jemalloc)
//! would be C libraries: not without a figure that beats this.
//!
//! **Denormals.** Once a model's softmaxes get peaky, probabilities and their gradients fall
//! below f32's smallest normal (1.2e-38); every arithmetic instruction that touches such a
//! value takes a microcode assist (~100 cycles), and gemm on a block of them slows down many
//! times over (measured: the default run's step grew from 0.5 s to 0.9 s by step 45). [`tune`]
//! sets flush-to-zero and denormals-are-zero on the training threads (the rayon pool and the
//! caller), as XLA and TensorFlow do by default; values below 1.2e-38 become 0.

/// Applies both settings; call it before the first step, from the thread that will train.
/// Idempotent. The rayon pool is configured only if nothing has started it yet (otherwise the
/// kernels' own flushing still keeps their outputs normal).
pub fn tune() {
    tune_malloc();
    flush_denormals();
    let pool = rayon::ThreadPoolBuilder::new()
        .start_handler(|_| flush_denormals())
        .build_global();
    if pool.is_err() {
        tracing::debug!(
            "the rayon pool was already running; denormals are flushed by the kernels only"
        );
    }
}

/// Raises glibc's mmap threshold to 32 MiB and disables heap trimming (no-op elsewhere).
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; any value is accepted or
        // rejected (returns 0), never undefined behaviour.
        let ok = unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
        };
        if !ok {
            tracing::debug!("mallopt refused the allocator settings; keeping glibc's defaults");
        }
    }
}

/// Sets flush-to-zero and denormals-are-zero for this thread's SSE/AVX arithmetic (x86-64;
/// no-op elsewhere).
pub fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    {
        const FTZ: u32 = 1 << 15;
        const DAZ: u32 = 1 << 6;
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr/ldmxcsr read and write this thread's MXCSR through a valid u32;
        // only the FTZ and DAZ bits change, and every x86-64 CPU has SSE2 and both bits.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
            csr |= FTZ | DAZ;
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly, preserves_flags));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::hint::black_box;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn flushing_makes_denormal_results_zero_on_this_thread_only() {
        let product = || black_box(1e-30f32) * black_box(1e-10f32); // 1e-40: a denormal
        std::thread::spawn(move || {
            assert!(product() > 0.0, "denormals exist before");
            super::flush_denormals();
            assert_eq!(product(), 0.0, "flushed to zero");
            assert_eq!(
                black_box(1e-40f32) * black_box(1.0f32),
                0.0,
                "denormal inputs read as 0"
            );
        })
        .join()
        .unwrap();
        assert!(product() > 0.0, "other threads keep IEEE denormals");
    }
}
