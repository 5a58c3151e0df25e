//! `simd_piece!`, which compiles a function's body once per SIMD level and runs the one the CPU
//! allows: the pieces of the mini-batch step (`batch`) and the crossover's timings use it.

/// `fn $name(simd: Simd, args..) -> ret`: its body compiled for AVX-512, AVX2 or the baseline
/// target, by `simd` capped at what the CPU has. The same code at each width, so the same bits.
macro_rules! simd_piece {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        fn $name(simd: Simd, $($arg: $ty),*) -> $ret {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                fn avx512($($arg: $ty),*) -> $ret { body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) -> $ret { body($($arg),*) }
                match simd.min(Simd::detect()) {
                    // SAFETY: `Simd::detect` found these features on this CPU.
                    Simd::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    Simd::Avx2 => return unsafe { avx2($($arg),*) },
                    Simd::Baseline => {}
                }
            }
            body($($arg),*)
        }
    };
}
