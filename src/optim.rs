//! Optimizers for the training step (full batch or mini-batch): plain descent, heavy-ball momentum, Nesterov momentum and
//! Adam, each with AdamW-style decoupled weight decay on the weights (w1, w2, ...), never the biases.
//!
//! The functions here are the readable CPU reference; `shaders/optimizer_update.wgsl` has one entry
//! point of the same name per update rule. Per element, with `g` the gradient and `p` the
//! parameter, one step is (PyTorch's conventions):
//!
//! * every rule on a weight first: `p -= lr * weight_decay * p` (decoupled decay);
//! * `gd_update`:       `p -= lr * g`;
//! * `momentum_update`: `m = momentum * m + g`, `p -= lr * m`;
//! * `nesterov_update`: `m = momentum * m + g`, `p -= lr * (g + momentum * m)`;
//! * `adam_update`:     `m = β1 m + (1-β1) g`, `v = β2 v + (1-β2) g²`,
//!   `p -= lr * (m c1) / (sqrt(v c2) + eps)` with the bias corrections `c1 = 1/(1-β1^t)`,
//!   `c2 = 1/(1-β2^t)` of step `t` (1 on the first step), computed once per step on the host
//!   (`adam_corrections`) so that both backends use the same f32 values.
//!
//! Every new moment (`m`, `v`) smaller in magnitude than `MOMENT_FLOOR` is stored as 0.

use rayon::prelude::*;

use crate::model::{Params, Shape};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Optimizer {
    /// Plain gradient descent.
    #[default]
    Gd,
    /// Heavy-ball momentum.
    Momentum,
    /// Nesterov momentum.
    Nesterov,
    /// Adam with bias correction.
    Adam,
}

impl Optimizer {
    pub const ALL: [Optimizer; 4] = [Optimizer::Gd, Optimizer::Momentum, Optimizer::Nesterov, Optimizer::Adam];

    /// The name model files and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            Optimizer::Gd => "gd",
            Optimizer::Momentum => "momentum",
            Optimizer::Nesterov => "nesterov",
            Optimizer::Adam => "adam",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == name)
    }

    /// The state tensors this rule keeps, by their prefix in a model file: momentum's velocity
    /// `m`, Adam's first and second moments `m` and `v`.
    pub fn moments(self) -> &'static [&'static str] {
        match self {
            Optimizer::Gd => &[],
            Optimizer::Momentum | Optimizer::Nesterov => &["m"],
            Optimizer::Adam => &["m", "v"],
        }
    }
}

/// The rule and its hyper-parameters (validated by the command line: finite, in range).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerConfig {
    pub kind: Optimizer,
    /// Momentum and Nesterov: the velocity's decay, in [0, 1).
    pub momentum: f32,
    /// Adam: decay of the first and second moments, in [0, 1).
    pub beta1: f32,
    pub beta2: f32,
    /// Adam: added to the root of the second moment, > 0.
    pub eps: f32,
    /// Decoupled weight decay on the weights (w1, w2, ...), >= 0.
    pub weight_decay: f32,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig { kind: Optimizer::Gd, momentum: 0.9, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

impl OptimizerConfig {
    /// This configuration with the hyper-parameters its rule does not use at their defaults, so
    /// that two configurations of one rule compare equal when they train alike (and a model file,
    /// which stores only the rule's own, reads back what was planned).
    pub fn normalized(self) -> Self {
        let d = OptimizerConfig::default();
        let momentum = matches!(self.kind, Optimizer::Momentum | Optimizer::Nesterov);
        let adam = self.kind == Optimizer::Adam;
        OptimizerConfig {
            momentum: if momentum { self.momentum } else { d.momentum },
            beta1: if adam { self.beta1 } else { d.beta1 },
            beta2: if adam { self.beta2 } else { d.beta2 },
            eps: if adam { self.eps } else { d.eps },
            ..self
        }
    }

    /// Adam's bias corrections `(1/(1-β1^t), 1/(1-β2^t))` for step `t >= 1`, in f64 then rounded.
    pub fn adam_corrections(&self, t: u64) -> (f32, f32) {
        let t = t.min(i32::MAX as u64) as i32;
        let c = |beta: f32| (1.0 / (1.0 - (beta as f64).powi(t))) as f32;
        (c(self.beta1), c(self.beta2))
    }
}

/// Saved optimizer state that cannot continue this run (another rule, other shapes).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StateMismatch(pub String);

/// What an optimizer carries from step to step: `m` (momentum's velocity, Adam's first moment),
/// `v` (Adam's second moment), shaped like the parameters, and the number of steps taken `t`.
/// Rules that do not use a tensor leave it zero.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState {
    pub kind: Optimizer,
    pub m: Params,
    pub v: Params,
    pub t: u64,
}

impl OptimizerState {
    pub fn new(kind: Optimizer, shape: Shape) -> Self {
        OptimizerState { kind, m: Params::zeros(shape.clone()), v: Params::zeros(shape), t: 0 }
    }

    /// Refuses state of another rule than `cfg`'s or of other shapes than `shape`.
    pub fn fits(&self, cfg: &OptimizerConfig, shape: &Shape) -> Result<(), StateMismatch> {
        if self.kind != cfg.kind {
            return Err(StateMismatch(format!(
                "optimizer state of {} cannot continue as {}",
                self.kind.name(),
                cfg.kind.name()
            )));
        }
        if self.m.shape != *shape || self.v.shape != *shape {
            return Err(StateMismatch("optimizer state shaped unlike the parameters".into()));
        }
        Ok(())
    }

    /// The state tensor called `prefix` ("m" or "v").
    pub fn moment(&self, prefix: &str) -> &Params {
        if prefix == "v" { &self.v } else { &self.m }
    }

    pub fn moment_mut(&mut self, prefix: &str) -> &mut Params {
        if prefix == "v" { &mut self.v } else { &mut self.m }
    }
}

/// Whether the tensor called `name` is decayed: the weights, not the biases.
pub fn decays(name: &str) -> bool {
    name.starts_with('w')
}

/// One optimizer step on every tensor: `params` moves by `grads` under `cfg` at rate `lr`, and
/// `state` advances (its `t` by one).
pub fn optimizer_update(
    params: &mut Params,
    grads: &Params,
    state: &mut OptimizerState,
    cfg: &OptimizerConfig,
    lr: f32,
) {
    state.t += 1;
    let (c1, c2) = cfg.adam_corrections(state.t);
    let tensors =
        params.tensors_mut().into_iter().zip(grads.tensors()).zip(state.m.tensors_mut()).zip(state.v.tensors_mut());
    for ((((name, p), (_, g)), (_, m)), (_, v)) in tensors {
        let wd = if decays(name) { cfg.weight_decay } else { 0.0 };
        // Every rule is element-wise, so pieces of a tensor update in parallel with the same
        // results as one loop (mini-batch steps update 636,010 parameters 469 times an epoch).
        let pieces =
            p.par_chunks_mut(PIECE).zip(g.par_chunks(PIECE)).zip(m.par_chunks_mut(PIECE)).zip(v.par_chunks_mut(PIECE));
        pieces.for_each(|(((p, g), m), v)| update_piece_simd(Piece { p, g, m, v }, cfg, (lr, wd, c1, c2)));
    }
}

/// A piece of a tensor, its gradient and its two moments.
struct Piece<'a> {
    p: &'a mut [f32],
    g: &'a [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
}

#[inline(always)]
fn update_piece(x: Piece, cfg: &OptimizerConfig, (lr, wd, c1, c2): (f32, f32, f32, f32)) {
    match cfg.kind {
        Optimizer::Gd => gd_update(x.p, x.g, lr, wd),
        Optimizer::Momentum => momentum_update(x.p, x.g, x.m, lr, wd, cfg.momentum),
        Optimizer::Nesterov => nesterov_update(x.p, x.g, x.m, lr, wd, cfg.momentum),
        Optimizer::Adam => adam_update(x.p, x.g, x.m, x.v, lr, wd, cfg, c1, c2),
    }
}

/// `update_piece` compiled for AVX-512 or AVX2 where the CPU has them: Adam's square roots and
/// divisions run 16 or 8 lanes wide instead of SSE2's 4. Each is the same correctly rounded IEEE
/// operation at any width, and there are no fused multiply-adds, so the results are the same bit
/// for bit.
fn update_piece_simd(x: Piece, cfg: &OptimizerConfig, rates: (f32, f32, f32, f32)) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn avx512(x: Piece, cfg: &OptimizerConfig, rates: (f32, f32, f32, f32)) {
            update_piece(x, cfg, rates)
        }
        #[target_feature(enable = "avx2")]
        fn avx2(x: Piece, cfg: &OptimizerConfig, rates: (f32, f32, f32, f32)) {
            update_piece(x, cfg, rates)
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { avx512(x, cfg, rates) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { avx2(x, cfg, rates) };
        }
    }
    update_piece(x, cfg, rates)
}

/// Elements per parallel piece of `optimizer_update`.
const PIECE: usize = 1 << 15;

/// The bits of `MOMENT_FLOOR`, 2^-100; `shaders/optimizer_update.wgsl` declares the same.
pub const MOMENT_FLOOR_BITS: u32 = 27 << 23;
/// Moments smaller than this in magnitude are kept as 0. A moment whose gradients stay 0 decays
/// geometrically (by β1 = 0.9: from 1e-6 to the subnormal range in about 700 steps, common for
/// the weights of rarely inked pixels in mini-batches) and then through the subnormals, whose
/// every operation costs an x86 core a microcode assist: past 1,500 steps the 784-800-10 Adam
/// update took 2.4 ms instead of 0.22. Above 2^-100 every product of a moment stays normal, and
/// what the floor drops moves a weight by at most lr · 2^-100 / eps (Adam) or lr · 2^-100
/// (momentum), or changes `sqrt(v) + eps` by at most an ulp: far below an ulp of any weight.
pub const MOMENT_FLOOR: f32 = f32::from_bits(MOMENT_FLOOR_BITS);

/// `x`, or 0 below `MOMENT_FLOOR` in magnitude.
#[inline(always)]
fn floored(x: f32) -> f32 {
    if x.abs() < MOMENT_FLOOR { 0.0 } else { x }
}

/// `p -= lr * wd * p`; nothing at all when `wd` is 0 (so plain descent stays bit-identical).
#[inline(always)]
fn decay(p: &mut f32, lr: f32, wd: f32) {
    if wd != 0.0 {
        *p -= lr * wd * *p;
    }
}

/// `p -= lr * g` after the decay.
#[inline(always)]
pub fn gd_update(param: &mut [f32], grad: &[f32], lr: f32, wd: f32) {
    for (p, &g) in param.iter_mut().zip(grad) {
        decay(p, lr, wd);
        *p -= lr * g;
    }
}

/// `m = mu m + g` (floored), `p -= lr m` after the decay.
#[inline(always)]
pub fn momentum_update(param: &mut [f32], grad: &[f32], m: &mut [f32], lr: f32, wd: f32, mu: f32) {
    for ((p, &g), m) in param.iter_mut().zip(grad).zip(m) {
        decay(p, lr, wd);
        *m = floored(mu * *m + g);
        *p -= lr * *m;
    }
}

/// `m = mu m + g` (floored), `p -= lr (g + mu m)` after the decay.
#[inline(always)]
pub fn nesterov_update(param: &mut [f32], grad: &[f32], m: &mut [f32], lr: f32, wd: f32, mu: f32) {
    for ((p, &g), m) in param.iter_mut().zip(grad).zip(m) {
        decay(p, lr, wd);
        *m = floored(mu * *m + g);
        *p -= lr * (g + mu * *m);
    }
}

/// `m = β1 m + (1-β1) g`, `v = β2 v + (1-β2) g²` (both floored), `p -= lr (m c1) / (sqrt(v c2)
/// + eps)` after the decay; `c1`, `c2` are the step's bias corrections.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn adam_update(
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    lr: f32,
    wd: f32,
    cfg: &OptimizerConfig,
    c1: f32,
    c2: f32,
) {
    for (((p, &g), m), v) in param.iter_mut().zip(grad).zip(m).zip(v) {
        decay(p, lr, wd);
        *m = floored(cfg.beta1 * *m + (1.0 - cfg.beta1) * g);
        *v = floored(cfg.beta2 * *v + (1.0 - cfg.beta2) * g * g);
        *p -= lr * (*m * c1) / ((*v * c2).sqrt() + cfg.eps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Layer;

    /// Hand-computed values carry 6-7 significant digits; f32 arithmetic on numbers of size ~1
    /// rounds at ~1e-7, so 1e-6 absolute plus 1e-6 relative separates rounding from a wrong term
    /// (any wrong coefficient below moves a value by > 1e-3).
    const ATOL: f32 = 1e-6;
    const RTOL: f32 = 1e-6;

    fn close(what: &str, got: &[f32], want: &[f32]) {
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= ATOL + RTOL * w.abs(), "{what}[{i}]: got {g}, want {w}");
        }
    }

    /// A 1 -> 1 -> 2 network: w1 [1], b1 [1], w2 [2], b2 [2].
    fn tiny(w1: f32, b1: f32, w2: [f32; 2], b2: [f32; 2]) -> Params {
        let shape = Shape::new(1, &[1], 2, true);
        let layers = vec![Layer { w: vec![w1], b: vec![b1] }, Layer { w: w2.to_vec(), b: b2.to_vec() }];
        Params { shape, layers }
    }

    fn run(cfg: OptimizerConfig, lr: f32, steps: &[Params], start: Params) -> (Params, OptimizerState) {
        let mut p = start;
        let mut state = OptimizerState::new(cfg.kind, p.shape.clone());
        for g in steps {
            optimizer_update(&mut p, g, &mut state, &cfg, lr);
        }
        (p, state)
    }

    /// A moment whose gradients stay 0 decays to exactly 0 once below the floor, never through
    /// the subnormals; the weights it moves stop moving by more than rounding.
    #[test]
    fn decaying_moments_stop_at_the_floor() {
        let normal_or_zero = |x: f32| x == 0.0 || x.abs() >= MOMENT_FLOOR;
        let (mut p, mut m) = ([0.5f32], [1.0f32]);
        let mut steps = 0;
        while m[0] != 0.0 {
            momentum_update(&mut p, &[0.0], &mut m, 0.1, 0.0, 0.9);
            assert!(normal_or_zero(m[0]), "velocity {:e} after {steps} steps", m[0]);
            steps += 1;
        }
        // 0.9^k passes 2^-100 at k = 658, and f32's smallest normal, 2^-126, at k = 829.
        assert_eq!(steps, 658);
        let cfg = OptimizerConfig { kind: Optimizer::Adam, ..Default::default() };
        let (mut p, mut m, mut v) = ([0.5f32], [1e-3f32], [1e-6f32]);
        for step in 0..100_000 {
            adam_update(&mut p, &[0.0], &mut m, &mut v, 1e-3, 0.0, &cfg, 1.0, 1.0);
            assert!(normal_or_zero(m[0]) && normal_or_zero(v[0]), "m {:e}, v {:e} at step {step}", m[0], v[0]);
        }
        assert_eq!((m[0], v[0]), (0.0, 0.0), "both moments end at 0");
        // The weight stopped where the first moment's steps added up (below 1e-3 · 1 / (1 - 0.9)).
        assert!(p[0] < 0.5 && p[0] > 0.49, "{}", p[0]);
    }

    #[test]
    fn adam_matches_a_hand_computed_reference() {
        // β1 0.9, β2 0.999, eps 1e-8, lr 0.1, no decay; parameter w1 = 1, gradients 0.5 then -0.25
        // then 1.0:
        // t=1: m = 0.05, v = 0.00025; c1 = 10, c2 = 1000: m̂ = 0.5, v̂ = 0.25, step 0.1·0.5/0.5 = 0.1
        //      -> w1 = 0.9 (Adam's first step is lr·sign(g)).
        // t=2: m = 0.045 - 0.025 = 0.02, v = 0.00024975 + 0.0000625 = 0.00031225;
        //      c1 = 1/0.19 = 5.2631579, c2 = 1/0.001999 = 500.25013: m̂ = 0.10526316,
        //      v̂ = 0.15620310, sqrt 0.39522538; step 0.1·0.10526316/0.39522538 = 0.026633711
        //      -> w1 = 0.87336629.
        // t=3: m = 0.018 + 0.1 = 0.118, v = 0.00031193775 + 0.001 = 0.00131193775;
        //      c1 = 1/0.271 = 3.6900369, c2 = 1/0.002997001 = 333.66689: m̂ = 0.43542435,
        //      v̂ = 0.43775019, sqrt 0.66162692; step 0.1·0.43542435/0.66162692 = 0.065811160
        //      -> w1 = 0.80755514.
        let cfg = OptimizerConfig { kind: Optimizer::Adam, ..Default::default() };
        let g = |x: f32| tiny(x, 0.0, [0.0, 0.0], [0.0, 0.0]);
        let (p1, _) = run(cfg, 0.1, &[g(0.5)], tiny(1.0, 0.0, [0.0; 2], [0.0; 2]));
        close("w1 after 1", &p1.layers[0].w, &[0.9]);
        let (p2, _) = run(cfg, 0.1, &[g(0.5), g(-0.25)], tiny(1.0, 0.0, [0.0; 2], [0.0; 2]));
        close("w1 after 2", &p2.layers[0].w, &[0.873_366_3]);
        let (p3, s3) = run(cfg, 0.1, &[g(0.5), g(-0.25), g(1.0)], tiny(1.0, 0.0, [0.0; 2], [0.0; 2]));
        close("w1 after 3", &p3.layers[0].w, &[0.80755514]);
        close("m after 3", &s3.m.layers[0].w, &[0.118]);
        close("v after 3", &s3.v.layers[0].w, &[0.001_311_937_7]);
        assert_eq!(s3.t, 3);
        // Zero gradients (and zero moments) leave a parameter where it is: 0 / (0 + eps).
        close("b2 untouched", &p3.layers[1].b, &[0.0, 0.0]);
    }

    #[test]
    fn momentum_and_nesterov_match_hand_computed_references() {
        // mu 0.9, lr 0.5, w1 = 1, gradients 1.0 then 0.5 then -1.0:
        // momentum: m = 1 -> w1 = 0.5; m = 1.4 -> w1 = -0.2; m = 0.26 -> w1 = -0.33.
        // nesterov: m = 1, step 0.5·(1 + 0.9) = 0.95 -> w1 = 0.05; m = 1.4, step 0.5·(0.5 + 1.26)
        //           = 0.88 -> w1 = -0.83; m = 0.26, step 0.5·(-1 + 0.234) = -0.383 -> w1 = -0.447.
        let g = |x: f32| tiny(x, 0.0, [0.0, 0.0], [0.0, 0.0]);
        let grads = [g(1.0), g(0.5), g(-1.0)];
        for (kind, want) in [(Optimizer::Momentum, [0.5, -0.2, -0.33]), (Optimizer::Nesterov, [0.05, -0.83, -0.447])] {
            let cfg = OptimizerConfig { kind, momentum: 0.9, ..Default::default() };
            for steps in 1..=3 {
                let (p, s) = run(cfg, 0.5, &grads[..steps], tiny(1.0, 0.0, [0.0; 2], [0.0; 2]));
                close(&format!("{kind:?} w1 after {steps}"), &p.layers[0].w, &[want[steps - 1]]);
                assert_eq!(s.t, steps as u64);
            }
        }
    }

    #[test]
    fn the_wide_update_is_the_baseline_update_bit_for_bit() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let n = 1003; // not a multiple of any vector width
        let mut draw = |scale: f32| -> Vec<f32> { (0..n).map(|_| scale * rng.random_range(-1.0f32..1.0)).collect() };
        let (p0, g, m0) = (draw(1.0), draw(0.1), draw(0.01));
        let v0: Vec<f32> = draw(0.01).iter().map(|v| v * v).collect();
        for kind in [Optimizer::Gd, Optimizer::Momentum, Optimizer::Nesterov, Optimizer::Adam] {
            let cfg = OptimizerConfig { kind, weight_decay: 0.05, ..OptimizerConfig::default() };
            let rates = (0.01, 0.05, 1.3, 7.1);
            let run = |wide: bool| {
                let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
                let x = Piece { p: &mut p, g: &g, m: &mut m, v: &mut v };
                if wide {
                    update_piece_simd(x, &cfg, rates)
                } else {
                    update_piece(x, &cfg, rates)
                }
                [p, m, v].map(|t| t.iter().map(|f| f.to_bits()).collect::<Vec<u32>>())
            };
            assert_eq!(run(true), run(false), "{kind:?}");
        }
    }

    #[test]
    fn weight_decay_reaches_weights_only() {
        // Zero gradients: each step multiplies a weight by (1 - lr·wd) = 0.95 and leaves biases.
        for kind in [Optimizer::Gd, Optimizer::Momentum, Optimizer::Nesterov, Optimizer::Adam] {
            let cfg = OptimizerConfig { kind, weight_decay: 0.1, ..Default::default() };
            let zero = tiny(0.0, 0.0, [0.0; 2], [0.0; 2]);
            let (p, _) = run(cfg, 0.5, &[zero.clone(), zero], tiny(2.0, 3.0, [4.0, -1.0], [5.0, -6.0]));
            close(&format!("{kind:?} w1"), &p.layers[0].w, &[2.0 * 0.9025]);
            close(&format!("{kind:?} w2"), &p.layers[1].w, &[4.0 * 0.9025, -0.9025]);
            assert_eq!(
                (p.layers[0].b.as_slice(), p.layers[1].b.as_slice()),
                (&[3.0][..], &[5.0, -6.0][..]),
                "{kind:?} biases"
            );
        }
    }
}
