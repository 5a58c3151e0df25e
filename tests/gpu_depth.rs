//! Networks with two hidden layers on the GPU against the CPU reference, step by step over 20
//! full-batch steps on 1,000 real digits, spread over several chunks, with awkward widths
//! (784-37-19-10: no width a multiple of the 8 x 8 register tile or of 4), with and without bias:
//! * each step's gradients equal `reference::forward_backward` at the GPU's parameters before the
//!   step, and its loss and accuracy equal that forward pass's;
//! * anchored: the update from those parameters with the GPU's gradients (the CPU rule,
//!   `optim::optimizer_update`) gives the GPU's new parameters, tightly;
//! * independent: a CPU run from the same start stays with the GPU for all 20 steps.
//!
//! The CPU side here is the readable reference (the CPU backend's fast path is held to it in
//! tests/cpu_reference.rs). Sigmoid and ELU have continuous derivatives: a pre-activation within rounding of 0
//! cannot send the two runs apart the way ReLU's kink can (see tests/gpu_training.rs).

mod common;

use common::{assert_close, gpu, mnist, subset};
use gpu_mnist::backend::{Backend, Split};
use gpu_mnist::cpu::reference;
use gpu_mnist::data::Splits;
use gpu_mnist::gpu::{GpuBackend, GpuOptions, Tiling};
use gpu_mnist::model::{Activation, Params, Shape};
use gpu_mnist::optim::{self, OptimizerConfig, OptimizerState};

const STEPS: usize = 20;
const HIDDEN: [usize; 2] = [37, 19];
/// Gradients at identical parameters: sums over 1,000 rows in another order (and over chunks),
/// through two hidden layers. Measured: at most 8e-6 of a tensor's largest element (db3, whose
/// column sums of P - Y cancel down to a small scale; the weights stay below 1e-6); the bound,
/// relative to that scale, leaves a 12x margin, while a wrong layer (a missing chunk, a stale
/// dZ, the wrong transpose) is off by more than 1e-2 of it.
const GRAD_SCALE_TOL: f32 = 1e-4;
const GRAD_RTOL: f32 = 1e-4;
/// Anchored: parameters after one update from identical parameters and gradients: one
/// multiply-add per element (fused or not), 1 ulp on weights of size <= ~1.
const STEP_ATOL: f32 = 2e-7;
const STEP_RTOL: f32 = 1e-6;
/// Independent runs after each step: the gradients' rounding differences, times lr, add up over
/// 20 steps to ~1e-6 absolute (measured: <= 1.9e-6); a wrong gradient moves weights by > 1e-3.
const PARAM_ATOL: f32 = 2e-5;
const PARAM_RTOL: f32 = 1e-4;
/// Mean loss of a step: a 1,000-term f32 sum on the GPU against f64 on the CPU (measured: 1e-7).
const LOSS_RTOL: f64 = 1e-5;
/// A digit whose two largest logits are within rounding may be called either way.
const CORRECT_SLACK: usize = 1;

/// `got` against `want` element-wise, the absolute tolerance scaled by `want`'s largest element.
fn assert_grad_close(what: &str, got: &[f32], want: &[f32]) {
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert_close(what, got, want, GRAD_SCALE_TOL * scale, GRAD_RTOL);
}

fn parity(act: Activation, bias: bool, chunk: usize, tiling: Tiling, lr: f32) {
    let Some(ctx) = gpu() else { return };
    let m = mnist();
    let data = Splits::new(subset(&m.train, 1000), subset(&m.test, 300));
    let train = &data.train;
    let shape = Shape::new(train.d(), &HIDDEN, 10, bias);
    let start = Params::init(shape.clone(), act, 3);
    let options = GpuOptions { max_chunk_rows: Some(chunk), tiling: Some(tiling), ..Default::default() };
    let mut gpu = GpuBackend::new(ctx, &data, &start, act, options).expect("GPU backend");
    assert!(gpu.chunk_rows() < train.n, "the test must span several chunks");
    let x = reference::scale_pixels(&train.pixels);
    let cfg = OptimizerConfig::default();
    let (mut cpu, mut cpu_state) = (start.clone(), OptimizerState::new(cfg.kind, shape.clone()));
    for step in 1..=STEPS {
        let what = |name: &str| format!("{name} at step {step} ({act:?}, bias {bias}, {tiling:?})");
        let before = gpu.params().expect("GPU params");
        let mut state = gpu.optimizer_state().expect("GPU state");
        gpu.step(0, lr).expect("GPU step");
        let (grads, stats) = (gpu.gradients().expect("GPU gradients"), gpu.step_stats().expect("GPU stats"));
        let (want_grads, want) = reference::forward_backward(&before, act, &x, &train.labels);
        for ((name, g), (_, w)) in grads.tensors().into_iter().zip(want_grads.tensors()) {
            assert_grad_close(&what(&format!("d{name}")), g, w);
        }
        assert!(
            stats.n == want.n
                && stats.correct.abs_diff(want.correct) <= CORRECT_SLACK
                && (stats.loss - want.loss).abs() <= LOSS_RTOL * want.loss,
            "{}: GPU {stats:?} vs CPU {want:?}",
            what("statistics")
        );
        // Anchored: the CPU rule from the GPU's parameters with the GPU's gradients.
        let mut expected = before;
        optim::optimizer_update(&mut expected, &grads, &mut state, &cfg, lr);
        let got = gpu.params().expect("GPU params");
        for ((name, g), (_, w)) in got.tensors().into_iter().zip(expected.tensors()) {
            assert_close(&what(&format!("{name} anchored")), g, w, STEP_ATOL, STEP_RTOL);
        }
        // Independent: the CPU's own run.
        let (cpu_grads, _) = reference::forward_backward(&cpu, act, &x, &train.labels);
        optim::optimizer_update(&mut cpu, &cpu_grads, &mut cpu_state, &cfg, lr);
        for ((name, g), (_, w)) in got.tensors().into_iter().zip(cpu.tensors()) {
            assert_close(&what(name), g, w, PARAM_ATOL, PARAM_RTOL);
        }
        if !bias {
            assert!(got.layers.iter().all(|l| l.b.iter().all(|&b| b == 0.0)), "{}", what("biases stay 0"));
        }
    }
    // Evaluation walks the same layers: the test split and the whole training split.
    let p = gpu.params().expect("GPU params");
    for (split, set) in [(Split::Test, &data.test), (Split::Train, &data.train)] {
        let g = gpu.evaluate(split).expect("GPU eval");
        let c = reference::evaluate(&p, act, &reference::scale_pixels(&set.pixels), &set.labels);
        assert!(
            g.n == c.n
                && g.correct.abs_diff(c.correct) <= CORRECT_SLACK
                && (g.loss - c.loss).abs() <= LOSS_RTOL * c.loss,
            "{split:?} split: GPU {g:?} vs CPU {c:?}"
        );
    }
    assert!(gpu.evaluate(Split::Test).expect("eval").accuracy() > 0.5, "20 steps should learn something");
}

#[test]
fn two_hidden_layers_sigmoid_with_bias_register_tiles() {
    parity(Activation::Sigmoid, true, 256, Tiling::Register, 2.0);
}

#[test]
fn two_hidden_layers_elu_without_bias_shared_tiles() {
    parity(Activation::Elu, false, 320, Tiling::Shared, 0.5);
}
