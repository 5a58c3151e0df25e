//! Mini-batches on the GPU against the CPU, step by step: 1,050 real digits in batches of 100
//! (the eleventh has 50 rows), each epoch visited in `train::epoch_order`'s shuffled order, as the
//! training loop does, for 25 steps over three epochs; plain descent and Adam with weight decay,
//! one and two hidden layers, chunks inside batches and batches in one chunk, runs that start
//! at the first batch and runs resumed in the middle of an epoch. At each step:
//! * the GPU's gradients and `batch_stats` equal the CPU reference's on that batch's rows at the
//!   GPU's parameters before the step, and the update from them gives the GPU's new parameters
//!   (anchored, tightly);
//! * `step_stats` covers the rows of the batches visited so far: n counts them, and loss and
//!   accuracy combine those batches' latest forward passes (`cpu::combine`, as the CPU backend);
//! * for plain descent, an independent run of the CPU backend from the same start stays with the
//!   GPU.
//!
//! With dropout, every step's masks are drawn from (seed, step, layer, row, unit) on both sides:
//! the reference gets the step's masks, the CPU backend draws its own.
//!
//! Adam is checked anchored only: it divides by the root of the second moment, so an element
//! whose gradient is at rounding level moves by up to lr whichever sign the rounding gives it
//! (see tests/gpu_optimizers.rs). Sigmoid and ELU avoid ReLU's kink (see tests/gpu_training.rs).

mod common;

use common::parity::{Run, Setup, assert_gradients, assert_params, assert_stats};
use common::tolerance::{GRADIENTS_BATCH, RUNS, UPDATE};
use common::{mnist, subset};
use gpu_mnist::backend::{Backend, Split};
use gpu_mnist::cpu::{combine, reference};
use gpu_mnist::data::Splits;
use gpu_mnist::dropout::Dropout;
use gpu_mnist::gpu::{GpuOptions, Tiling};
use gpu_mnist::model::{Activation, Params, Shape, Stats};
use gpu_mnist::optim::{Optimizer, OptimizerConfig};

const ROWS: usize = 1050;
const BATCH: usize = 100;
const STEPS: usize = 25;
const SEED: u64 = 9;

struct Config {
    hidden: &'static [usize],
    act: Activation,
    bias: bool,
    cfg: OptimizerConfig,
    lr: f32,
    chunk: Option<usize>,
    tiling: Tiling,
    /// The model's steps before this run (a resumed run starts in the middle of an epoch).
    first_step: usize,
    /// Dropout's probability on the hidden layers (0: none).
    dropout: f32,
}

fn parity(c: Config) {
    let m = mnist();
    let data = Splits::new(subset(&m.train, ROWS), subset(&m.test, 200));
    let shape = Shape::new(data.train.d(), c.hidden, 10, c.bias);
    let start = Params::init(shape.clone(), c.act, 4);
    let options = GpuOptions {
        max_chunk_rows: c.chunk,
        tiling: Some(c.tiling),
        optimizer: c.cfg,
        batch_size: Some(BATCH),
        dropout: Some(Dropout { p: c.dropout, seed: SEED }),
        ..Default::default()
    };
    let setup = Setup { data, start, act: c.act, options, lr: c.lr, seed: SEED, first_step: c.first_step };
    let mut run = Run::new(setup);
    let batches = run.gpu.batches();
    assert_eq!(batches, ROWS.div_ceil(BATCH));
    if c.chunk.is_some() {
        assert!(run.gpu.chunk_rows() < BATCH, "the test must split batches into chunks");
    }
    assert_eq!(run.gpu.step_stats().expect("stats").n, 0, "nothing visited yet");
    let independent = c.cfg.kind == Optimizer::Gd;
    // At the GPU's parameters: each batch's statistics at its latest step.
    let mut anchored = vec![Stats::default(); batches];
    for _ in 0..STEPS {
        let s = run.step();
        let (step, b) = (c.first_step + s.number - 1, s.batch);
        let what = format!(
            "at step {step} (batch {b}, {:?}, {:?}, H {:?}, dropout {})",
            c.cfg.kind, c.act, c.hidden, c.dropout
        );
        let (want_grads, want) = run.reference(&s);
        anchored[b] = want;
        assert_gradients(&what, &s.grads, &want_grads, GRADIENTS_BATCH);
        assert_stats(&format!("batch_stats {what}"), s.batch_stats, want);
        assert_stats(&format!("step_stats {what}"), s.step_stats, combine(&anchored));
        assert_params(&format!("anchored {what}"), &s.after, &run.cpu_update(&s).0, UPDATE);
        let cpu = run.cpu.step_stats().expect("CPU stats");
        assert_eq!(cpu.n, s.step_stats.n, "rows the CPU backend's step_stats covers {what}");
        if independent {
            assert_stats(&format!("CPU backend step_stats {what}"), s.step_stats, cpu);
            assert_stats(
                &format!("CPU backend batch_stats {what}"),
                s.batch_stats,
                run.cpu.batch_stats(b).expect("stats"),
            );
            assert_params(&what, &s.after, &run.cpu.params().expect("CPU params"), RUNS);
        }
    }
    // A batch not yet visited has no statistics; evaluation covers every training row.
    let p = run.gpu.params().expect("GPU params");
    let train = run.gpu.evaluate(Split::Train).expect("GPU eval");
    let x = reference::scale_pixels(&run.data.train.pixels);
    assert_stats("evaluate(Train) after shuffles", train, reference::evaluate(&p, c.act, &x, &run.data.train.labels));
    assert!(train.accuracy() > 0.6, "25 mini-batch steps should learn something: {train:?}");
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn gd_one_hidden_layer_chunked_batches() {
    let cfg = OptimizerConfig::default();
    parity(Config {
        hidden: &[32],
        act: Activation::Sigmoid,
        bias: true,
        cfg,
        lr: 1.0,
        chunk: Some(64),
        tiling: Tiling::Register,
        first_step: 0,
        dropout: 0.0,
    });
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn adam_one_hidden_layer_resumed_mid_epoch() {
    let cfg = OptimizerConfig { kind: Optimizer::Adam, weight_decay: 0.05, ..Default::default() };
    parity(Config {
        hidden: &[32],
        act: Activation::Elu,
        bias: false,
        cfg,
        lr: 3e-3,
        chunk: None,
        tiling: Tiling::Register,
        first_step: 7,
        dropout: 0.0,
    });
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn gd_two_hidden_layers_resumed_mid_epoch() {
    let cfg = OptimizerConfig::default();
    parity(Config {
        hidden: &[37, 19],
        act: Activation::Elu,
        bias: true,
        cfg,
        lr: 0.2,
        chunk: None,
        tiling: Tiling::Shared,
        first_step: 4,
        dropout: 0.0,
    });
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn adam_two_hidden_layers_chunked_batches() {
    let cfg = OptimizerConfig { kind: Optimizer::Adam, weight_decay: 0.1, ..Default::default() };
    parity(Config {
        hidden: &[37, 19],
        act: Activation::Sigmoid,
        bias: true,
        cfg,
        lr: 1e-2,
        chunk: Some(64),
        tiling: Tiling::Register,
        first_step: 0,
        dropout: 0.0,
    });
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn gd_dropout_one_hidden_layer_chunked_batches() {
    parity(Config {
        hidden: &[32],
        act: Activation::Sigmoid,
        bias: true,
        cfg: OptimizerConfig::default(),
        lr: 1.0,
        chunk: Some(64),
        tiling: Tiling::Register,
        first_step: 0,
        dropout: 0.3,
    });
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn gd_dropout_two_hidden_layers_resumed_mid_epoch() {
    parity(Config {
        hidden: &[37, 19],
        act: Activation::Elu,
        bias: true,
        cfg: OptimizerConfig::default(),
        lr: 0.2,
        chunk: None,
        tiling: Tiling::Shared,
        first_step: 4,
        dropout: 0.5,
    });
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn adam_dropout_two_hidden_layers_chunked_batches() {
    parity(Config {
        hidden: &[37, 19],
        act: Activation::Sigmoid,
        bias: false,
        cfg: OptimizerConfig { kind: Optimizer::Adam, weight_decay: 0.1, ..Default::default() },
        lr: 1e-2,
        chunk: Some(64),
        tiling: Tiling::Register,
        first_step: 0,
        dropout: 0.2,
    });
}

/// Steps that one submit holds without a read between them and without the shuffles that submit
/// at every epoch in training: 3 batches an epoch, so the same batch's dispatches come back within
/// a submit, each time with its own step's masks (a queued uniform write lands before the whole
/// submit, so the backend must submit before rewriting them).
#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn dropout_masks_hold_across_the_steps_of_one_submit() {
    let m = mnist();
    let data = Splits::new(subset(&m.train, 300), subset(&m.test, 100));
    let (act, steps) = (Activation::Sigmoid, 10);
    let start = Params::init(Shape::new(data.train.d(), &[24, 16], 10, true), act, 5);
    let dropout = Dropout { p: 0.4, seed: SEED };
    let options = GpuOptions { batch_size: Some(BATCH), dropout: Some(dropout), ..Default::default() };
    let mut gpu = gpu_mnist::gpu::GpuBackend::new(common::gpu(), &data, &start, act, options).expect("GPU backend");
    assert!(gpu.steps_per_submit() > steps, "the steps must share a submit");
    let mut cpu = gpu_mnist::cpu::CpuBackend::new(&data, start, act).with_batch_size(BATCH).with_dropout(dropout);
    for step in 0..steps {
        gpu.begin_step(step as u64);
        cpu.begin_step(step as u64);
        gpu.step(step % 3, 0.5).expect("GPU step");
        cpu.step(step % 3, 0.5).expect("CPU step");
    }
    let (g, c) = (gpu.params().expect("GPU params"), cpu.params().expect("CPU params"));
    assert_params(&format!("{steps} dropout steps, read once"), &g, &c, RUNS);
}
