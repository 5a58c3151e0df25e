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

use common::parity::{Run, Setup, assert_params, assert_state};
use common::tolerance::{GRADIENTS_RELATIVE, UPDATE};
use common::{gpu, mnist, subset};
use gpu_mnist::backend::Backend;
use gpu_mnist::cpu::CpuBackend;
use gpu_mnist::data::Splits;
use gpu_mnist::gpu::{GpuBackend, GpuOptions, Tiling};
use gpu_mnist::model::{Activation, Params, Shape};
use gpu_mnist::optim::{self, Optimizer, OptimizerConfig, OptimizerState};
use gpu_mnist::train::relative_difference;

const STEPS: usize = 20;

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

fn options(optimizer: OptimizerConfig) -> GpuOptions {
    GpuOptions { max_chunk_rows: Some(768), tiling: Some(Tiling::Register), optimizer, ..Default::default() }
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn every_optimizer_matches_the_cpu_rule_for_20_steps() {
    for (i, (cfg, lr)) in configs().into_iter().enumerate() {
        let bias = i % 2 == 0;
        let shape = Shape::new(784, &[24], 10, bias);
        let start = Params::init(shape.clone(), Activation::Sigmoid, 11);
        let setup =
            Setup { data: data(), start, act: Activation::Sigmoid, options: options(cfg), lr, seed: 0, first_step: 0 };
        let mut run = Run::new(setup);
        for _ in 0..STEPS {
            let s = run.step();
            let what = format!("{:?} (decay {}, bias {bias}) step {}", cfg.kind, cfg.weight_decay, s.number);
            let (want_grads, _) = run.cpu.gradients_at(&s.before, 0);
            for ((name, g), (_, w)) in s.grads.tensors().into_iter().zip(want_grads.tensors()) {
                let d = relative_difference(g, w);
                assert!(d <= GRADIENTS_RELATIVE, "{what}: gradient d{name} differs from the CPU's by {d:e}");
            }
            let (want, state) = run.cpu_update(&s);
            assert_params(&what, &s.after, &want, UPDATE);
            assert_state(&what, &s.state_after, &state);
        }
        if !bias {
            let p = run.gpu.params().expect("params");
            assert!(
                p.layers[0].b.iter().chain(&p.layers[1].b).all(|&b| b == 0.0),
                "{:?}: a bias-free model's biases stay 0",
                cfg.kind
            );
        }
    }
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn restored_state_is_where_the_gpu_continues() {
    let data = data();
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
    let mut gpu = GpuBackend::new(gpu(), &data, &p5, Activation::Sigmoid, options(cfg)).expect("GPU backend");
    gpu.set_optimizer_state(&s5).expect("state fits");
    assert_state("restored", &gpu.optimizer_state().expect("state"), &s5);
    gpu.step(0, lr).expect("GPU step");
    let mut want = p5;
    let mut state = s5;
    optim::optimizer_update(&mut want, &gpu.gradients().expect("gradients"), &mut state, &cfg, lr);
    assert_params("at step 6", &gpu.params().expect("params"), &want, UPDATE);
    assert_state("step 6", &gpu.optimizer_state().expect("state"), &state);
    // Another rule's state is refused.
    let momentum = OptimizerState::new(Optimizer::Momentum, shape);
    assert!(gpu.set_optimizer_state(&momentum).is_err());
}
