//! The optimizers on the GPU against the CPU reference (`optim::optimizer_update`), step by step
//! over 20 steps on 2,000 real digits, for every rule (with and without weight decay):
//! * the update, anchored: from the GPU's parameters, state and gradients of the step, the CPU
//!   rule gives the GPU's new parameters and new moments, tightly. The GPU's own gradients are
//!   used because Adam divides by the root of the second moment: an element whose gradient is at
//!   rounding level (~1e-8) moves by up to lr whichever sign the rounding gives it, so the update
//!   of a gradient that differs in the last bits cannot be compared tightly;
//! * the gradients the update used equal the CPU's at the same parameters (loosely: summation
//!   order), so the step around the new dispatch is still the training step;
//! * state written with `set_optimizer_state` is what the next step continues from.
//!
//! Sigmoid keeps every gradient smooth (no ReLU kink to round to either side of).

mod common;

use common::{assert_close, gpu, mnist, subset};
use gpu_mnist::backend::Backend;
use gpu_mnist::cpu::CpuBackend;
use gpu_mnist::data::Splits;
use gpu_mnist::gpu::{GpuBackend, GpuOptions, Tiling};
use gpu_mnist::model::{Activation, Params, Shape};
use gpu_mnist::optim::{self, Optimizer, OptimizerConfig, OptimizerState};
use gpu_mnist::train::relative_difference;

const STEPS: usize = 20;
/// Parameters after one update from identical inputs: a few multiply-adds and (Adam) a square
/// root and a division per element, each within 1-3 ulp on Vulkan, on weights of size <= ~1:
/// ~1e-7 absolute at most. A wrong term (a missing bias correction, decay on a bias, the wrong
/// momentum form) moves them by > lr * 1e-2 >= 1e-5.
const PARAM_ATOL: f32 = 2e-7;
const PARAM_RTOL: f32 = 1e-6;
/// Moments: one or two multiply-adds from identical inputs (fused or not): 1-2 ulp, so relative;
/// the tiny absolute term covers elements whose moment is ~0.
const MOMENT_ATOL: f32 = 1e-12;
const MOMENT_RTOL: f32 = 1e-5;
/// Gradients at identical parameters: 2,000-term sums in another order, ~1e-6 of each tensor's
/// scale (see train::VERIFY_TOLERANCE); a wrong gradient is off by far more.
const GRAD_RTOL: f64 = 1e-4;

fn configs() -> Vec<(OptimizerConfig, f32)> {
    let d = OptimizerConfig::default();
    vec![
        (OptimizerConfig { kind: Optimizer::Gd, weight_decay: 0.05, ..d }, 1.0),
        (OptimizerConfig { kind: Optimizer::Momentum, momentum: 0.9, ..d }, 0.3),
        (OptimizerConfig { kind: Optimizer::Nesterov, momentum: 0.8, weight_decay: 0.1, ..d }, 0.3),
        (OptimizerConfig { kind: Optimizer::Adam, ..d }, 3e-3),
        (OptimizerConfig { kind: Optimizer::Adam, beta1: 0.8, beta2: 0.99, eps: 1e-6, weight_decay: 0.5, ..d }, 1e-2),
    ]
}

fn data() -> Splits {
    let m = mnist();
    Splits::new(subset(&m.train, 2000), subset(&m.test, 200))
}

fn backend(ctx: gpu_mnist::gpu::GpuContext, data: &Splits, p: &Params, cfg: OptimizerConfig) -> GpuBackend {
    let options =
        GpuOptions { max_chunk_rows: Some(768), tiling: Some(Tiling::Register), optimizer: cfg, batch_size: None };
    GpuBackend::new(ctx, data, p, Activation::Sigmoid, options).expect("GPU backend")
}

fn check_state(what: &str, got: &OptimizerState, want: &OptimizerState) {
    assert_eq!(got.t, want.t, "{what}: step count");
    for m in want.kind.moments() {
        for ((name, g), (_, w)) in got.moment(m).tensors().into_iter().zip(want.moment(m).tensors()) {
            assert_close(&format!("{what}: {m}.{name}"), g, w, MOMENT_ATOL, MOMENT_RTOL);
        }
    }
}

#[test]
fn every_optimizer_matches_the_cpu_rule_for_20_steps() {
    let data = data();
    for (i, (cfg, lr)) in configs().into_iter().enumerate() {
        let Some(ctx) = gpu() else { return };
        let bias = i % 2 == 0;
        let shape = Shape::new(data.train.d(), &[24], 10, bias);
        let params = Params::init(shape.clone(), Activation::Sigmoid, 11);
        let mut gpu = backend(ctx, &data, &params, cfg);
        let cpu = CpuBackend::new(&data, params, Activation::Sigmoid);
        for step in 1..=STEPS {
            let what = format!("{:?} (decay {}, bias {bias}) step {step}", cfg.kind, cfg.weight_decay);
            let before = gpu.params().expect("params");
            let mut state = gpu.optimizer_state().expect("state");
            gpu.step(0, lr).expect("step");
            let grads = gpu.gradients().expect("gradients");
            let (want_grads, _) = cpu.gradients_at(&before, 0);
            for ((name, g), (_, w)) in grads.tensors().into_iter().zip(want_grads.tensors()) {
                let d = relative_difference(g, w);
                assert!(d <= GRAD_RTOL, "{what}: gradient d{name} differs from the CPU's by {d:e}");
            }
            let mut want = before;
            optim::optimizer_update(&mut want, &grads, &mut state, &cfg, lr);
            let got = gpu.params().expect("params");
            for ((name, g), (_, w)) in got.tensors().into_iter().zip(want.tensors()) {
                assert_close(&format!("{what}: {name}"), g, w, PARAM_ATOL, PARAM_RTOL);
            }
            check_state(&what, &gpu.optimizer_state().expect("state"), &state);
        }
        if !bias {
            let p = gpu.params().expect("params");
            assert!(
                p.layers[0].b.iter().chain(&p.layers[1].b).all(|&b| b == 0.0),
                "{:?}: a bias-free model's biases stay 0",
                cfg.kind
            );
        }
    }
}

#[test]
fn restored_state_is_where_the_gpu_continues() {
    let data = data();
    let Some(ctx) = gpu() else { return };
    let cfg = OptimizerConfig { kind: Optimizer::Adam, weight_decay: 0.1, ..Default::default() };
    let lr = 3e-3;
    let shape = Shape::new(data.train.d(), &[16], 10, true);
    let params = Params::init(shape.clone(), Activation::Sigmoid, 5);
    // Five CPU steps make the state; the GPU takes step six from it, as the CPU does.
    let mut cpu = CpuBackend::new(&data, params, Activation::Sigmoid).with_optimizer(cfg);
    for _ in 0..5 {
        cpu.step(0, lr).expect("CPU step");
    }
    let (p5, s5) = (cpu.params().expect("params"), cpu.optimizer_state().expect("state"));
    let mut gpu = backend(ctx, &data, &p5, cfg);
    gpu.set_optimizer_state(&s5).expect("state fits");
    check_state("restored", &gpu.optimizer_state().expect("state"), &s5);
    gpu.step(0, lr).expect("GPU step");
    let mut want = p5;
    let mut state = s5;
    optim::optimizer_update(&mut want, &gpu.gradients().expect("gradients"), &mut state, &cfg, lr);
    for ((name, g), (_, w)) in gpu.params().expect("params").tensors().into_iter().zip(want.tensors()) {
        assert_close(&format!("step 6: {name}"), g, w, PARAM_ATOL, PARAM_RTOL);
    }
    check_state("step 6", &gpu.optimizer_state().expect("state"), &state);
    // Another rule's state is refused.
    let momentum = OptimizerState::new(Optimizer::Momentum, shape);
    assert!(gpu.set_optimizer_state(&momentum).is_err());
}
