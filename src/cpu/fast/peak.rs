//! The CPU's floating-point peak as measured, not as a data sheet states it: every thread of the
//! pool runs independent chains of fused multiply-adds at one SIMD level at once, so `bench` can
//! set each phase's FLOP/s against what this machine, at its clock right now, can reach.
//!
//! Each chain is one vector register (16 lanes for AVX-512, 8 for AVX2, 4 for the baseline, which
//! calls libm's `fmaf` per lane as the baseline build's products do). `CHAINS` chains hide the
//! instruction's latency: 4-5 cycles, 2 issued a cycle on most cores, so at least 10 in flight.

use std::hint::black_box;
use std::time::Instant;

use super::Simd;

/// Independent accumulators per thread: latency (up to 5 cycles) times FMA issue width (2).
const CHAINS: usize = 10;
/// Multiply-adds per chain and lane in one timed run: about 30 ms at 3.5 GHz.
const ROUNDS: usize = 100_000_000 / CHAINS;
/// Timed runs; the fastest counts (a run that loses its core to another program is slower, never
/// faster).
const RUNS: usize = 3;

/// Floating-point operations a second (2 per fused multiply-add) that every thread of rayon's pool
/// sustains at `simd` (capped at what this CPU has), fastest of `RUNS` runs.
pub fn peak_flops(simd: Simd) -> f64 {
    let level = simd.min(Simd::detect());
    let lanes = match level {
        Simd::Avx512 => 16,
        Simd::Avx2 => 8,
        Simd::Baseline => 4,
    };
    // The baseline's `fmaf` calls are far slower; fewer of them keep the run short.
    let rounds = if level == Simd::Baseline { ROUNDS / 50 } else { ROUNDS };
    let threads = rayon::current_num_threads();
    let best = (0..RUNS)
        .map(|_| {
            let t0 = Instant::now();
            rayon::broadcast(|_| chains(level, rounds));
            t0.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    (2 * threads * CHAINS * lanes * rounds) as f64 / best
}

/// `rounds` multiply-adds on each lane of `CHAINS` chains of `level`'s width.
fn chains(level: Simd, rounds: usize) -> f32 {
    match level {
        Simd::Avx512 => chains16(level, rounds),
        Simd::Avx2 => chains8(level, rounds),
        Simd::Baseline => chains4(level, rounds),
    }
}

/// `fn $name(level, rounds)`: one vector of `$lanes` lanes per chain, compiled for `level`.
/// `black_box` keeps the start and the factors unknown to the compiler, so the loop can be
/// neither folded nor shortened; x -> 0.999999 x + 1e-7 stays finite forever.
macro_rules! fma_chains {
    ($name:ident, $lanes:literal) => {
        simd_piece! {
            fn $name(rounds: usize) -> f32 {
                let mut acc = black_box([[1.0f32; $lanes]; CHAINS]);
                let (a, b) = (black_box(0.999_999f32), black_box(1e-7f32));
                for _ in 0..rounds {
                    for chain in acc.iter_mut() {
                        for x in chain.iter_mut() {
                            *x = x.mul_add(a, b);
                        }
                    }
                }
                black_box(acc).iter().flatten().sum()
            }
        }
    };
}
fma_chains!(chains16, 16);
fma_chains!(chains8, 8);
fma_chains!(chains4, 4);
