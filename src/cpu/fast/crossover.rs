//! The two ways a hidden-to-hidden layer's block of rows is multiplied, timed side by side over
//! a range of input densities: the products over the non-zeros (`block`) and the register tiles
//! (`dense`). `dense_from` is set where the second starts to win; `bench --crossover` measures
//! it on the machine at hand.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::block::{self, Columns};
use super::dense::{self, Panels};
use super::{BLOCK, Simd};

/// One density's times: the forward product `A·W` and the weight gradient `A^T·dZ` of a block
/// of `BLOCK` rows, on one thread, fastest of the repeats.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CrossoverPoint {
    /// Non-zero inputs per input.
    pub density: f64,
    /// Seconds for both products over the non-zeros (regrouping the block by column included).
    pub sparse_s: f64,
    /// Seconds for both products by register tiles (W's panels packed beforehand, as the step
    /// packs them once per pass).
    pub dense_s: f64,
    /// Whether the two gave the same bits, as they must.
    pub same_bits: bool,
}

/// The `CrossoverPoint` of a `fan_in` -> `fan_out` layer at `density`, at `simd`'s level (at most
/// what this CPU has), fastest of `repeats` runs.
pub fn crossover(simd: Simd, fan_in: usize, fan_out: usize, density: f64, repeats: usize) -> CrossoverPoint {
    point(simd, simd.min(Simd::detect()), (fan_in, fan_out), density, repeats)
}

/// The lowest of `points`' densities (ascending) from which the dense products are the faster at
/// every density measured; None if they never are.
pub fn dense_wins_from(points: &[CrossoverPoint]) -> Option<f64> {
    let losing = points.iter().rposition(|p| p.dense_s > p.sparse_s);
    match losing {
        Some(i) => points.get(i + 1).map(|p| p.density),
        None => points.first().map(|p| p.density),
    }
}

simd_piece! {
    /// `crossover` at `level`, the level this body is compiled for.
    fn point(level: Simd, fans: (usize, usize), density: f64, repeats: usize) -> CrossoverPoint {
        let (fan_in, fan_out) = fans;
        let mut rng = ChaCha8Rng::seed_from_u64(15);
        // ReLU outputs: positive where non-zero.
        let a: Vec<f32> = (0..BLOCK * fan_in)
            .map(|_| if rng.random_bool(density.clamp(0.0, 1.0)) { rng.random_range(0.01..2.0) } else { 0.0 })
            .collect();
        let mut random = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
        let (w, b, dz) = (random(fan_in * fan_out), random(fan_out), random(BLOCK * fan_out));
        let panels = Panels::pack(&w, fan_in, fan_out, level);
        let mut nz = Columns::default();
        let (mut out_s, mut dw_s) = (vec![0.0; BLOCK * fan_out], vec![0.0; fan_in * fan_out]);
        let (mut out_d, mut dw_d) = (out_s.clone(), dw_s.clone());
        let (mut sparse_s, mut dense_s) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..repeats.max(1) {
            dw_s.fill(0.0);
            let t = Instant::now();
            nz.set_dense(&a, fan_in);
            block::forward(&mut out_s, Some(&b), &nz, &w, fan_out);
            block::backward(&mut dw_s, &dz, &nz, fan_out);
            sparse_s = sparse_s.min(t.elapsed().as_secs_f64());
            dw_d.fill(0.0);
            let t = Instant::now();
            dense::forward(&mut out_d, Some(&b), &a, fan_in, (&w, &panels), fan_out);
            dense::backward(&mut dw_d, &dz, &a, fan_in, fan_out, level);
            dense_s = dense_s.min(t.elapsed().as_secs_f64());
        }
        CrossoverPoint { density, sparse_s, dense_s, same_bits: out_s == out_d && dw_s == dw_d }
    }
}

#[cfg(test)]
mod tests {
    use super::{CrossoverPoint, Simd, crossover, dense_wins_from};

    #[test]
    fn both_products_give_the_same_bits_at_every_density() {
        for density in [0.0, 0.3, 1.0] {
            let p = crossover(Simd::detect(), 40, 24, density, 1);
            assert!(p.same_bits, "density {}", p.density);
            assert!(p.sparse_s > 0.0 && p.dense_s > 0.0, "{p:?}");
        }
    }

    #[test]
    fn the_crossover_is_where_dense_wins_from_then_on() {
        let at =
            |density: f64, sparse_s: f64, dense_s: f64| CrossoverPoint { density, sparse_s, dense_s, same_bits: true };
        let points = [at(0.1, 1.0, 2.0), at(0.2, 1.0, 0.9), at(0.3, 1.0, 1.1), at(0.4, 1.0, 0.8), at(0.5, 1.0, 0.5)];
        assert_eq!(dense_wins_from(&points), Some(0.4));
        assert_eq!(dense_wins_from(&points[..3]), None);
        assert_eq!(dense_wins_from(&points[3..]), Some(0.4));
        assert_eq!(dense_wins_from(&[]), None);
    }
}
