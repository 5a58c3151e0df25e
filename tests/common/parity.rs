//! The GPU-vs-CPU parity harness: a GPU backend and an independent CPU backend from the same
//! start, stepped together (mini-batch epochs in `train::epoch_order`'s order, as the training
//! loop visits them), and what each step saw, for the tests' checks against the CPU reference.

use gpu_mnist::backend::{Backend, batch_range};
use gpu_mnist::cpu::{CpuBackend, reference};
use gpu_mnist::data::Splits;
use gpu_mnist::dropout::Dropout;
use gpu_mnist::gpu::{GpuBackend, GpuContext, GpuOptions};
use gpu_mnist::model::{Activation, Params, Stats};
use gpu_mnist::optim::{self, OptimizerConfig, OptimizerState};
use gpu_mnist::train::{batch_position, epoch_order};

use super::tolerance::{CORRECT_SLACK, LOSS_RTOL, MOMENTS, Tol};
use super::{assert_close, gpu};

/// A run to compare.
pub struct Setup {
    pub data: Splits,
    pub start: Params,
    pub act: Activation,
    /// Chunking, tiling, the update rule and the batch size (`None`: full batches).
    pub options: GpuOptions,
    pub lr: f32,
    /// Seeds the epoch orders, as `--seed` does.
    pub seed: u64,
    /// The model's steps before the first (a run resumed in the middle of an epoch).
    pub first_step: usize,
}

/// One step as the GPU took it.
pub struct Step {
    /// The step's number in this run, from 1.
    pub number: usize,
    /// The batch it took (0 for full batches).
    pub batch: usize,
    pub before: Params,
    pub state_before: OptimizerState,
    pub grads: Params,
    pub after: Params,
    pub state_after: OptimizerState,
    pub batch_stats: Stats,
    pub step_stats: Stats,
}

pub struct Run {
    pub data: Splits,
    pub act: Activation,
    pub optimizer: OptimizerConfig,
    pub lr: f32,
    pub gpu: GpuBackend,
    /// The CPU backend's own run from the same start, stepped with the GPU.
    pub cpu: CpuBackend,
    seed: u64,
    batch_size: usize,
    next: usize,
    first_step: usize,
    order: Vec<u32>,
    x: Vec<f32>,
    dropout: Option<Dropout>,
}

impl Run {
    pub fn new(s: Setup) -> Run {
        Run::on(gpu(), s)
    }

    /// `new` on a device opened elsewhere (with other limits).
    pub fn on(ctx: GpuContext, s: Setup) -> Run {
        let n = s.data.train.n;
        let batch_size = s.options.batch_size.unwrap_or(n).clamp(1, n);
        let gpu = GpuBackend::new(ctx, &s.data, &s.start, s.act, s.options).expect("GPU backend");
        let mut cpu = CpuBackend::new(&s.data, s.start.clone(), s.act)
            .with_optimizer(s.options.optimizer)
            .with_batch_size(batch_size);
        if let Some(d) = s.options.dropout {
            cpu = cpu.with_dropout(d);
        }
        let x = reference::scale_pixels(&s.data.train.pixels);
        Run {
            act: s.act,
            optimizer: s.options.optimizer,
            lr: s.lr,
            gpu,
            cpu,
            seed: s.seed,
            batch_size,
            next: 0,
            first_step: s.first_step,
            order: (0..n as u32).collect(),
            x,
            dropout: s.options.dropout.filter(Dropout::is_on),
            data: s.data,
        }
    }

    /// The next step on both backends (a mini-batch epoch's order first when one begins).
    pub fn step(&mut self) -> Step {
        let batches = self.gpu.batches();
        let (epoch, batch) = batch_position(self.first_step + self.next, batches);
        if batches > 1 && (batch == 0 || self.next == 0) {
            self.order = epoch_order(self.data.train.n, self.seed, epoch);
            self.gpu.shuffle(&self.order).expect("GPU shuffle");
            Backend::shuffle(&mut self.cpu, &self.order).expect("CPU shuffle");
        }
        let model_step = (self.first_step + self.next) as u64;
        self.gpu.begin_step(model_step);
        self.cpu.begin_step(model_step);
        self.next += 1;
        let before = self.gpu.params().expect("GPU params");
        let state_before = self.gpu.optimizer_state().expect("GPU state");
        self.gpu.step(batch, self.lr).expect("GPU step");
        self.cpu.step(batch, self.lr).expect("CPU step");
        Step {
            number: self.next,
            batch,
            before,
            state_before,
            grads: self.gpu.gradients().expect("GPU gradients"),
            after: self.gpu.params().expect("GPU params"),
            state_after: self.gpu.optimizer_state().expect("GPU state"),
            batch_stats: self.gpu.batch_stats(batch).expect("GPU batch stats"),
            step_stats: self.gpu.step_stats().expect("GPU step stats"),
        }
    }

    /// The readable reference's gradients and statistics of the step's batch at the
    /// parameters the GPU started the step from (with the step's dropout masks).
    pub fn reference(&self, s: &Step) -> (Params, Stats) {
        let d = s.before.shape.d;
        let rows = &self.order[batch_range(s.batch, self.batch_size, self.order.len())];
        let x: Vec<f32> = rows.iter().flat_map(|&i| &self.x[i as usize * d..(i as usize + 1) * d]).copied().collect();
        let labels: Vec<u8> = rows.iter().map(|&i| self.data.train.labels[i as usize]).collect();
        let masks = self.dropout.map(|d| d.step(self.model_step(s), s.before.shape.hidden.len()));
        reference::forward_backward_dropout(&s.before, self.act, &x, &labels, masks.as_ref())
    }

    /// The model's step (0-based) that `s` took.
    pub fn model_step(&self, s: &Step) -> u64 {
        (self.first_step + s.number - 1) as u64
    }

    /// The CPU rule's update from the step's starting parameters and state, with the GPU's
    /// gradients: what the GPU's update must give.
    pub fn cpu_update(&self, s: &Step) -> (Params, OptimizerState) {
        let (mut params, mut state) = (s.before.clone(), s.state_before.clone());
        optim::optimizer_update(&mut params, &s.grads, &mut state, &self.optimizer, self.lr);
        (params, state)
    }
}

/// Every tensor of `got` against `want`'s.
pub fn assert_params(what: &str, got: &Params, want: &Params, tol: Tol) {
    for ((name, g), (_, w)) in got.tensors().into_iter().zip(want.tensors()) {
        assert_close(&format!("{name} {what}"), g, w, tol.atol, tol.rtol);
    }
}

/// Gradients, each tensor's absolute tolerance scaled by its largest element.
pub fn assert_gradients(what: &str, got: &Params, want: &Params, tol: Tol) {
    for ((name, g), (_, w)) in got.tensors().into_iter().zip(want.tensors()) {
        let t = tol.scaled(w);
        assert_close(&format!("d{name} {what}"), g, w, t.atol, t.rtol);
    }
}

/// The moments and step count of an optimizer's state.
pub fn assert_state(what: &str, got: &OptimizerState, want: &OptimizerState) {
    assert_eq!(got.t, want.t, "{what}: step count");
    for m in want.kind.moments() {
        for ((name, g), (_, w)) in got.moment(m).tensors().into_iter().zip(want.moment(m).tensors()) {
            assert_close(&format!("{what}: {m}.{name}"), g, w, MOMENTS.atol, MOMENTS.rtol);
        }
    }
}

/// Loss and accuracy over the same rows: n equal, correct within `CORRECT_SLACK`, loss within
/// `LOSS_RTOL`.
pub fn assert_stats(what: &str, got: Stats, want: Stats) {
    assert!(
        got.n == want.n
            && got.correct.abs_diff(want.correct) <= CORRECT_SLACK
            && (got.loss - want.loss).abs() <= LOSS_RTOL * want.loss.abs(),
        "{what}: GPU {got:?} vs CPU {want:?}"
    );
}
