//! CPU-feature dispatch: the widest x86 instruction set the running CPU supports, detected
//! once, and [`multiversion!`](crate::multiversion), which compiles a kernel's body for
//! AVX-512, AVX2+FMA and the baseline and calls the widest one the CPU runs. ire-llama's fused
//! kernels and ire-optim's fused update and mask selection are built with it, so the binary
//! runs on any x86-64.

/// The instruction sets a kernel is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512 (F, VL, BW, DQ) with AVX2 and FMA.
    Avx512,
    /// AVX2 with FMA.
    Avx2,
    /// Whatever the target's baseline is.
    Baseline,
}

/// The widest instruction set this CPU runs (detected once).
pub fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    })
}

/// Defines `fn NAME(args) -> R` whose body is compiled for each [`Isa`] and dispatched at run
/// time. The body must be safe code; arguments are passed through unchanged.
#[macro_export]
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                match $crate::cpu::isa() {
                    // SAFETY: `isa()` detected these features on this CPU.
                    $crate::cpu::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    $crate::cpu::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::cpu::Isa::Baseline => {}
                }
            }
            body($($arg),*)
        }
    };
}
