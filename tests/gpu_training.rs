//! Training on real MNIST digits: the GPU backend and the CPU backend, started from the same
//! parameters, agree on the loss and on every parameter at every step.

mod common;

use common::{assert_close, gpu, mnist, subset};
use gpu_mnist::backend::{Backend, Split};
use gpu_mnist::cpu::CpuBackend;
use gpu_mnist::gpu::GpuBackend;
use gpu_mnist::model::{Activation, Params, Shape};

const STEPS: usize = 20;
/// Parameters after each step. The backends' gradients differ by ~1e-6 of their scale per step
/// (summation order); lr 0.5 and the shared starting point keep the drift after 20 steps at
/// ~1e-6 absolute on weights of size ~0.1, so ATOL 2e-5 and RTOL 1e-4 leave a 10x margin while a
/// wrong gradient (off by a factor, a missing term or a stale chunk) moves weights by >1e-3.
const PARAM_ATOL: f32 = 2e-5;
const PARAM_RTOL: f32 = 1e-4;
/// Mean loss of a step: a 3,000-term sum of per-sample losses, f32 on the GPU.
const LOSS_RTOL: f64 = 1e-5;

fn parity(act: Activation, h: usize, bias: bool, chunk_rows: Option<usize>, lr: f32) {
    let Some(ctx) = gpu() else { return };
    let m = mnist();
    let (train, test) = (subset(&m.train, 3000), subset(&m.test, 500));
    let shape = Shape { d: train.d(), h, k: 10, bias };
    let params = Params::init(shape, act, 7);
    let mut gpu = GpuBackend::new(ctx, &train, &test, &params, act, chunk_rows).expect("GPU backend");
    if let Some(rows) = chunk_rows {
        assert!(gpu.chunk_rows() <= rows && gpu.chunk_rows() < train.n, "the test must span several chunks");
    }
    let mut cpu = CpuBackend::new(&train, &test, params, act);
    for step in 1..=STEPS {
        gpu.step(lr).expect("GPU step");
        cpu.step(lr).expect("CPU step");
        let (g, c) = (gpu.step_stats().expect("GPU stats"), cpu.step_stats().expect("CPU stats"));
        assert!((g.loss - c.loss).abs() <= LOSS_RTOL * c.loss, "step {step}: loss GPU {} vs CPU {}", g.loss, c.loss);
        assert!(g.correct.abs_diff(c.correct) <= 1, "step {step}: correct GPU {} vs CPU {}", g.correct, c.correct);
        let (gp, cp) = (gpu.params().expect("GPU params"), cpu.params().expect("CPU params"));
        for ((name, g), (_, c)) in gp.tensors().into_iter().zip(cp.tensors()) {
            assert_close(&format!("{name} after step {step} ({act:?}, H {h})"), g, c, PARAM_ATOL, PARAM_RTOL);
        }
    }
    let (g, c) = (gpu.evaluate(Split::Test).expect("GPU eval"), cpu.evaluate(Split::Test).expect("CPU eval"));
    assert!(
        g.correct.abs_diff(c.correct) <= 1 && (g.loss - c.loss).abs() <= LOSS_RTOL * c.loss,
        "test split: {g:?} vs {c:?}"
    );
    assert!(c.accuracy() > 0.6, "20 steps on 3,000 digits should learn something: {c:?}");
}

#[test]
fn relu_with_bias_over_several_chunks() {
    parity(Activation::Relu, 64, true, Some(1024), 0.5);
}

#[test]
fn sigmoid_without_bias_in_one_chunk() {
    parity(Activation::Sigmoid, 33, false, None, 1.0);
}

#[test]
fn elu_odd_width() {
    parity(Activation::Elu, 129, true, Some(700), 0.5);
}
