//! Training on real MNIST digits, GPU backend against CPU backend, at every step, over four
//! configurations (both tilings, several chunks or one, with and without bias):
//! * anchored: the GPU's step equals the CPU's step taken from the GPU's own parameters (loss,
//!   and every parameter after the update), tightly, for every configuration. Under ReLU, hidden
//!   units with a pre-activation within `KINK_BAND` of 0 for some sample are left out of the W1
//!   and b1 comparison of that step: there the two forward passes may round to different sides
//!   of the kink (seen: step 15, one unit's column off by 4e-6 with everything else at 1e-8);
//!   a real error, such as a sample lost at a chunk boundary, shows in every unit;
//! * independent: for the smooth activations (sigmoid, ELU) two runs started from the same
//!   parameters stay together for all 20 steps. ReLU's derivative jumps at 0, so a pre-activation
//!   within rounding distance of 0 can land on different sides in two runs; from then on they
//!   legitimately differ (measured: seed 7, H 64, workgroup-memory tiles, step 18: dW1 jumped by
//!   2e-3 relative while the anchored check still agreed to 1e-8), so ReLU is checked anchored only.

mod common;

use common::{assert_close, gpu, mnist, subset};
use gpu_mnist::backend::{Backend, Split};
use gpu_mnist::cpu::{CpuBackend, reference};
use gpu_mnist::data::Splits;
use gpu_mnist::gpu::{GpuBackend, GpuOptions, Tiling};
use gpu_mnist::model::{Activation, Params, Shape};

const STEPS: usize = 20;
/// Anchored: parameters after one step from identical parameters. Gradients agree to ~1e-8
/// absolute (summation order), times lr; ATOL 2e-7 leaves a 20x margin, while a wrong kernel
/// (a missing chunk, a wrong term) moves weights by > 1e-5.
const STEP_ATOL: f32 = 2e-7;
const STEP_RTOL: f32 = 1e-6;
/// Pre-activations differ between the backends by ~1e-6 (sums of ~150 products in another
/// order); a unit is "at the kink" when some sample's pre-activation is within 10x of that.
const KINK_BAND: f32 = 1e-5;
/// Independent runs: parameters after each step. The backends' gradients differ by ~1e-6 of their scale per step
/// (summation order); lr 0.5 and the shared starting point keep the drift after 20 steps at
/// ~1e-6 absolute on weights of size ~0.1, so ATOL 2e-5 and RTOL 1e-4 leave a 10x margin while a
/// wrong gradient (off by a factor, a missing term or a stale chunk) moves weights by >1e-3.
const PARAM_ATOL: f32 = 2e-5;
const PARAM_RTOL: f32 = 1e-4;
/// Mean loss of a step: a 3,000-term sum of per-sample losses, f32 on the GPU.
const LOSS_RTOL: f64 = 1e-5;
/// Correct predictions may differ by one sample: a digit whose two largest logits are within
/// rounding of each other can be called either way by the two backends.
const CORRECT_SLACK: usize = 1;

fn parity(act: Activation, h: usize, bias: bool, chunk_rows: Option<usize>, tiling: Tiling, lr: f32) {
    let Some(ctx) = gpu() else { return };
    let m = mnist();
    // 3,000 training images after a seeded 10% validation hold-out of 3,333.
    let mut data = Splits::new(subset(&m.train, 3333), subset(&m.test, 500));
    data.hold_out(0.1, 7);
    let train = &data.train;
    let shape = Shape::new(train.d(), &[h], 10, bias);
    let params = Params::init(shape.clone(), act, 7);
    let options = GpuOptions { max_chunk_rows: chunk_rows, tiling: Some(tiling), ..Default::default() };
    let mut gpu = GpuBackend::new(ctx, &data, &params, act, options).expect("GPU backend");
    if let Some(rows) = chunk_rows {
        assert!(gpu.chunk_rows() <= rows && gpu.chunk_rows() < train.n, "the test must span several chunks");
    }
    let mut cpu = CpuBackend::new(&data, params, act);
    let x = reference::scale_pixels(&train.pixels);
    for step in 1..=STEPS {
        let before = gpu.params().expect("GPU params");
        gpu.step(0, lr).expect("GPU step");
        cpu.step(0, lr).expect("CPU step");
        let g = gpu.step_stats().expect("GPU stats");
        // Evaluating the training split must not change what the step reports.
        gpu.evaluate(Split::Train).expect("GPU eval");
        assert_eq!(gpu.step_stats().expect("GPU stats"), g, "step {step}: evaluate(Train) changed step_stats");
        let gp = gpu.params().expect("GPU params");
        // Anchored: the CPU's step from the GPU's parameters.
        let (grads, want) = cpu.gradients_at(&before, 0);
        let mut expected = before.clone();
        common::sgd_step(&mut expected, &grads, lr);
        assert!(
            (g.loss - want.loss).abs() <= LOSS_RTOL * want.loss,
            "step {step}: loss GPU {} vs CPU {}",
            g.loss,
            want.loss
        );
        assert!(
            g.correct.abs_diff(want.correct) <= CORRECT_SLACK,
            "step {step}: correct GPU {} vs CPU {}",
            g.correct,
            want.correct
        );
        let kinks = if act == Activation::Relu { units_at_kink(&before, &x) } else { vec![false; h] };
        let left_out = kinks.iter().filter(|&&k| k).count();
        // Measured: 0-5 of 64 units per step; more than an eighth would leave too much unchecked.
        assert!(left_out <= h / 8, "step {step}: {left_out} of {h} units at the kink: too many to leave out");
        for ((name, g), (_, c)) in gp.tensors().into_iter().zip(expected.tensors()) {
            let keep = |i: usize| !matches!(name, "w1" | "b1") || !kinks[i % h];
            let (g, c): (Vec<f32>, Vec<f32>) =
                g.iter().zip(c).enumerate().filter(|&(i, _)| keep(i)).map(|(_, (a, b))| (*a, *b)).unzip();
            let what =
                format!("{name} after anchored step {step} ({act:?}, H {h}, {tiling:?}, {left_out} units at the kink)");
            assert_close(&what, &g, &c, STEP_ATOL, STEP_RTOL);
        }
        // Independent: the CPU's own run.
        if act != Activation::Relu {
            let c = cpu.step_stats().expect("CPU stats");
            assert!(
                (g.loss - c.loss).abs() <= LOSS_RTOL * c.loss,
                "step {step}: loss GPU {} vs CPU run {}",
                g.loss,
                c.loss
            );
            let cp = cpu.params().expect("CPU params");
            for ((name, g), (_, c)) in gp.tensors().into_iter().zip(cp.tensors()) {
                assert_close(
                    &format!("{name} after step {step} ({act:?}, H {h}, {tiling:?})"),
                    g,
                    c,
                    PARAM_ATOL,
                    PARAM_RTOL,
                );
            }
        }
    }
    // The held-out splits evaluated on both devices from the GPU's final parameters.
    let at_gpu_params = CpuBackend::new(&data, gpu.params().expect("GPU params"), act);
    for (split, n) in [(Split::Validation, 333), (Split::Test, 500)] {
        let (g, c) = (gpu.evaluate(split).expect("GPU eval"), at_gpu_params.evaluate(split).expect("CPU eval"));
        assert!(
            g.n == n
                && c.n == n
                && g.correct.abs_diff(c.correct) <= CORRECT_SLACK
                && (g.loss - c.loss).abs() <= LOSS_RTOL * c.loss,
            "{split:?} split: {g:?} vs {c:?}"
        );
        assert!(c.accuracy() > 0.6, "20 steps on 3,000 digits should learn something: {c:?}");
    }
}

/// Hidden units whose pre-activation for some sample lies within KINK_BAND of 0 at `p`.
fn units_at_kink(p: &Params, x: &[f32]) -> Vec<bool> {
    let (n, s) = (x.len() / p.shape.d, &p.shape);
    let mut z = vec![0.0; n * s.hidden[0]];
    reference::linear_forward(&mut z, x, &p.layers[0].w, s.bias.then_some(&p.layers[0].b[..]), n, s.d, s.hidden[0]);
    (0..s.hidden[0]).map(|j| (0..n).any(|i| z[i * s.hidden[0] + j].abs() < KINK_BAND)).collect()
}

#[test]
fn relu_with_bias_over_several_chunks_shared_tiles() {
    parity(Activation::Relu, 64, true, Some(1024), Tiling::Shared, 0.5);
}

#[test]
fn sigmoid_without_bias_in_one_chunk() {
    parity(Activation::Sigmoid, 33, false, None, Tiling::Register, 1.0);
}

#[test]
fn sigmoid_shared_tiles_over_several_chunks() {
    parity(Activation::Sigmoid, 100, true, Some(1024), Tiling::Shared, 1.0);
}

#[test]
fn elu_odd_width() {
    parity(Activation::Elu, 129, true, Some(700), Tiling::Register, 0.5);
}
