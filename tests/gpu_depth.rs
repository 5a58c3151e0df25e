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

use common::parity::{Run, Setup, assert_gradients, assert_params, assert_stats};
use common::tolerance::{GRADIENTS_DEEP, RUNS, UPDATE};
use common::{mnist, subset};
use gpu_mnist::backend::{Backend, Split};
use gpu_mnist::cpu::reference;
use gpu_mnist::data::Splits;
use gpu_mnist::gpu::{GpuOptions, Tiling};
use gpu_mnist::model::{Activation, Params, Shape};
use gpu_mnist::optim::{self, OptimizerConfig, OptimizerState};

const STEPS: usize = 20;
const HIDDEN: [usize; 2] = [37, 19];

fn parity(act: Activation, bias: bool, chunk: usize, tiling: Tiling, lr: f32) {
    let m = mnist();
    let data = Splits::new(subset(&m.train, 1000), subset(&m.test, 300));
    let shape = Shape::new(data.train.d(), &HIDDEN, 10, bias);
    let start = Params::init(shape.clone(), act, 3);
    let options = GpuOptions { max_chunk_rows: Some(chunk), tiling: Some(tiling), ..Default::default() };
    let mut run = Run::new(Setup { data, start: start.clone(), act, options, lr, seed: 0, first_step: 0 });
    assert!(run.gpu.chunk_rows() < run.data.train.n, "the test must span several chunks");
    let (x, labels) = (reference::scale_pixels(&run.data.train.pixels), run.data.train.labels.clone());
    let cfg = OptimizerConfig::default();
    let (mut cpu, mut cpu_state) = (start, OptimizerState::new(cfg.kind, shape.clone()));
    for _ in 0..STEPS {
        let s = run.step();
        let what = format!("at step {} ({act:?}, bias {bias}, {tiling:?})", s.number);
        let (want_grads, want) = run.reference(&s);
        assert_gradients(&what, &s.grads, &want_grads, GRADIENTS_DEEP);
        assert_stats(&format!("statistics {what}"), s.step_stats, want);
        // Anchored: the CPU rule from the GPU's parameters with the GPU's gradients.
        assert_params(&format!("anchored {what}"), &s.after, &run.cpu_update(&s).0, UPDATE);
        // Independent: the readable reference's own run.
        let (cpu_grads, _) = reference::forward_backward(&cpu, act, &x, &labels);
        optim::optimizer_update(&mut cpu, &cpu_grads, &mut cpu_state, &cfg, lr);
        assert_params(&what, &s.after, &cpu, RUNS);
        if !bias {
            assert!(s.after.layers.iter().all(|l| l.b.iter().all(|&b| b == 0.0)), "biases stay 0 {what}");
        }
    }
    // Evaluation walks the same layers: the test split and the whole training split.
    let p = run.gpu.params().expect("GPU params");
    for (split, set) in [(Split::Test, &run.data.test), (Split::Train, &run.data.train)] {
        let g = run.gpu.evaluate(split).expect("GPU eval");
        let c = reference::evaluate(&p, act, &reference::scale_pixels(&set.pixels), &set.labels);
        assert_stats(&format!("{split:?} split"), g, c);
    }
    assert!(run.gpu.evaluate(Split::Test).expect("eval").accuracy() > 0.5, "20 steps should learn something");
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn two_hidden_layers_sigmoid_with_bias_register_tiles() {
    parity(Activation::Sigmoid, true, 256, Tiling::Register, 2.0);
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn two_hidden_layers_elu_without_bias_shared_tiles() {
    parity(Activation::Elu, false, 320, Tiling::Shared, 0.5);
}
