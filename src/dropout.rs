//! Inverted dropout on the hidden layers: during a training step each hidden unit of each row is
//! kept with probability 1 - p and scaled by 1 / (1 - p), or set to 0, so that evaluation uses
//! the network as it is.
//!
//! The masks are a counter-based random function of (seed, step, layer, row, unit), which the CPU
//! backends and the WGSL kernels compute identically, so the GPU step can be checked against the
//! CPU's step by step:
//!
//! ```text
//! word   = mix(seed, step, layer)                 on the host, once per step and layer (u64 math)
//! h      = hash(hash(word ^ row) ^ unit)          per element, 32-bit (matmul.wgsl's dropout_keeps)
//! kept  <=> h >= threshold,  threshold = round(p * 2^32)
//! ```
//!
//! `hash` is Wellons' lowbias32, a bijection on u32 with good avalanche; `row` is the row's
//! position in the step's batch (0..B) and `unit` its column in the layer (0..H). For a fixed
//! word, distinct (row, unit) pairs give distinct inputs to the outer hash.

/// Dropout of a run: the probability of dropping a hidden unit, and the masks' seed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    /// In [0, 1): 0 turns dropout off.
    pub p: f32,
    pub seed: u64,
}

impl Dropout {
    pub fn is_on(&self) -> bool {
        self.p > 0.0
    }

    /// The masks of step `step` (the model's steps before it, 0-based), layer by layer over
    /// `hidden_layers` hidden layers.
    pub fn step(&self, step: u64, hidden_layers: usize) -> StepMasks {
        StepMasks {
            threshold: threshold(self.p),
            scale: 1.0 / (1.0 - self.p),
            words: (0..hidden_layers).map(|l| word(self.seed, step, l)).collect(),
        }
    }
}

/// One step's masks: hidden layer `l` (0-based) keeps element (row, unit) when
/// `keeps(words[l], row, unit, threshold)`, and scales it by `scale`.
#[derive(Clone, Debug, PartialEq)]
pub struct StepMasks {
    pub threshold: u32,
    pub scale: f32,
    pub words: Vec<u32>,
}

impl StepMasks {
    /// The factor of hidden layer `l`'s element (row, unit): `scale` or 0.
    #[inline(always)]
    pub fn factor(&self, l: usize, row: usize, unit: usize) -> f32 {
        if keeps(self.words[l], row as u32, unit as u32, self.threshold) { self.scale } else { 0.0 }
    }
}

/// `round(p * 2^32)`, capped at u32::MAX: a hash below it drops the element.
pub fn threshold(p: f32) -> u32 {
    (p.clamp(0.0, 1.0) as f64 * 4_294_967_296.0).round().min(u32::MAX as f64) as u32
}

/// Wellons' lowbias32: a bijective 32-bit integer hash (the twin of matmul.wgsl's `hash32`).
#[inline(always)]
pub fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// Whether element (row, unit) of the layer with mask word `word` is kept (the twin of
/// matmul.wgsl's `dropout_keeps`).
#[inline(always)]
pub fn keeps(word: u32, row: u32, unit: u32, threshold: u32) -> bool {
    hash32(hash32(word ^ row) ^ unit) >= threshold
}

/// The mask word of (seed, step, layer): SplitMix64's finaliser over the three, folded to 32 bits.
pub fn word(seed: u64, step: u64, layer: usize) -> u32 {
    let mut z = seed
        .wrapping_add(step.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add((layer as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z ^ (z >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_one_minus_p_of_the_units() {
        for p in [0.1f32, 0.25, 0.5, 0.8] {
            let m = Dropout { p, seed: 3 }.step(17, 2);
            let (rows, units) = (200, 300);
            for l in 0..2 {
                let kept = (0..rows)
                    .flat_map(|r| (0..units).map(move |u| (r, u)))
                    .filter(|&(r, u)| m.factor(l, r, u) != 0.0)
                    .count();
                let share = kept as f64 / (rows * units) as f64;
                // 60,000 Bernoulli draws: one standard deviation is at most 0.002.
                assert!((share - (1.0 - p as f64)).abs() < 0.01, "p {p} layer {l}: kept {share:.4}");
            }
            assert_eq!(m.scale, 1.0 / (1.0 - p));
        }
    }

    #[test]
    fn masks_differ_by_step_layer_and_seed_and_repeat_for_the_same() {
        let d = Dropout { p: 0.5, seed: 1 };
        let mask = |m: &StepMasks, l| {
            (0..64).flat_map(|r| (0..64).map(move |u| (r, u))).map(|(r, u)| m.factor(l, r, u)).collect::<Vec<_>>()
        };
        let a = d.step(5, 2);
        assert_eq!(mask(&a, 0), mask(&d.step(5, 2), 0));
        assert_ne!(mask(&a, 0), mask(&a, 1), "layers");
        assert_ne!(mask(&a, 0), mask(&d.step(6, 2), 0), "steps");
        assert_ne!(mask(&a, 0), mask(&Dropout { p: 0.5, seed: 2 }.step(5, 2), 0), "seeds");
    }

    #[test]
    fn thresholds_cover_the_ends() {
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(0.5), 1 << 31);
        assert_eq!(threshold(1.0), u32::MAX);
        assert!(keeps(0, 0, 0, 0), "p = 0 keeps everything");
    }

    #[test]
    fn hash_is_a_bijection_on_a_sample() {
        let mut seen: Vec<u32> = (0..100_000u32).map(hash32).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 100_000, "lowbias32 maps distinct words to distinct words");
    }
}
