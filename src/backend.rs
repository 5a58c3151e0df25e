//! What the training loop needs from a backend: one step on a batch of the training rows (the
//! whole set, or a mini-batch of a shuffled order), statistics, parameters.

use std::ops::Range;

use crate::model::{Params, Stats};
use crate::optim::{OptimizerState, StateMismatch};

/// Which backend a run asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// A hardware GPU when wgpu finds one, else the CPU.
    #[default]
    Auto,
    /// WGSL shaders on the best adapter wgpu finds, software ones included.
    Gpu,
    Cpu,
}

impl BackendChoice {
    pub const ALL: [BackendChoice; 3] = [BackendChoice::Auto, BackendChoice::Gpu, BackendChoice::Cpu];

    /// The name model files and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Gpu => "gpu",
            BackendChoice::Cpu => "cpu",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// Which data split to evaluate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    /// The part of the training data held out by `--val-split` (empty without it).
    Validation,
    Test,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("GPU error: {0} (use --backend cpu to train without the GPU)")]
    Gpu(String),
    #[error("{what}; wgpu sees: {seen} (use --backend cpu, or install a Vulkan driver such as mesa-vulkan-drivers)")]
    NoAdapter { what: String, seen: String },
    #[error("no GPU adapter named like {name:?}; wgpu sees: {seen} (gpu-mnist devices lists them)")]
    NoAdapterNamed { name: String, seen: String },
    #[error("{0}")]
    Unsupported(String),
}

impl From<StateMismatch> for BackendError {
    fn from(e: StateMismatch) -> Self {
        BackendError::Unsupported(e.0)
    }
}

pub trait Backend {
    /// "cpu" or "gpu".
    fn name(&self) -> &'static str;
    /// The device in words: thread count, or the adapter's name and API.
    fn device(&self) -> String;
    /// Training rows (N).
    fn train_rows(&self) -> usize;
    /// Mini-batches per epoch: `batch_count(N, batch size)`, 1 for full-batch training.
    fn batches(&self) -> usize;
    /// Sets the order in which steps visit the training rows (a permutation of 0..N): batch `b`
    /// is rows `order[batch_range(b)]`. The initial order is 0..N.
    fn shuffle(&mut self, order: &[u32]) -> Result<(), BackendError>;
    /// One iteration on batch `batch` (`< batches()`): the mean gradient over its rows at the
    /// current parameters, then the optimizer's update (`params -= lr * grads` for plain descent,
    /// see `optim`). Full-batch training passes batch 0, the whole set. Does not wait for a GPU.
    fn step(&mut self, batch: usize, lr: f32) -> Result<(), BackendError>;
    /// Training loss/accuracy of each batch position's latest forward pass (before that step's
    /// update), combined over the positions stepped on so far: the latest step's for full-batch
    /// training, the epoch's running mean at the end of a mini-batch epoch (mid-epoch, the later
    /// positions still hold the previous epoch's batches).
    fn step_stats(&self) -> Result<Stats, BackendError>;
    /// Loss/accuracy of batch `batch` at its latest forward pass (`step_stats` for full batches).
    fn batch_stats(&self, batch: usize) -> Result<Stats, BackendError>;
    /// An epoch (a step, for full batches) begins: a backend that augments its training images
    /// draws epoch `epoch`'s distortion of them here, before the epoch's `shuffle`.
    fn begin_epoch(&mut self, _epoch: usize) -> Result<(), BackendError> {
        Ok(())
    }
    /// The next `step` is the model's step `step` (0-based, counting a continued run's earlier
    /// steps): it decides that step's dropout masks.
    fn begin_step(&mut self, _step: u64) {}
    /// Waits until every step submitted so far has finished (a GPU's queue); the CPU's steps are
    /// done when `step` returns. Timers that time training call it before they stop.
    fn wait(&self) -> Result<(), BackendError> {
        Ok(())
    }
    /// Whether `step_stats` costs nothing (no device wait), so the loop may check every step.
    fn free_stats(&self) -> bool {
        false
    }
    /// Loss/accuracy of the current parameters on a split.
    fn evaluate(&self, split: Split) -> Result<Stats, BackendError>;
    fn params(&self) -> Result<Params, BackendError>;
    /// The gradients the latest step applied.
    fn gradients(&self) -> Result<Params, BackendError>;
    /// The optimizer's state after the latest step (what a model file saves to continue from).
    fn optimizer_state(&self) -> Result<OptimizerState, BackendError>;
}

/// A second backend that recomputes steps, for `--verify-every`: it visits the rows in the same
/// order as the trained backend and computes a batch's gradients at given parameters, leaving
/// itself unchanged.
pub trait Verifier {
    /// "cpu", or another backend's name.
    fn name(&self) -> &'static str;
    /// As `Backend::shuffle`.
    fn shuffle(&mut self, order: &[u32]) -> Result<(), BackendError>;
    /// As `Backend::begin_epoch`: the verifier must see the same images.
    fn begin_epoch(&mut self, _epoch: usize) -> Result<(), BackendError> {
        Ok(())
    }
    /// As `Backend::begin_step`: the verifier must draw the same dropout masks.
    fn begin_step(&mut self, _step: u64) {}
    /// The mean gradient over batch `batch`'s rows at `params`, and that forward pass's statistics.
    fn recompute(&self, params: &Params, batch: usize) -> Result<(Params, Stats), BackendError>;
}

/// Mini-batches of `batch_size` rows (the last one may be smaller) that cover `n` rows.
pub fn batch_count(n: usize, batch_size: usize) -> usize {
    n.div_ceil(batch_size.max(1)).max(1)
}

/// Positions (in the visiting order) of batch `b`'s rows.
pub fn batch_range(b: usize, batch_size: usize, n: usize) -> Range<usize> {
    let start = (b * batch_size).min(n);
    start..(start + batch_size).min(n)
}

/// Checks that `order` is a permutation of 0..n (what `Backend::shuffle` takes).
pub fn check_order(order: &[u32], n: usize) -> Result<(), BackendError> {
    let mut seen = vec![false; n];
    for &i in order {
        match seen.get_mut(i as usize) {
            Some(s) if !*s => *s = true,
            _ => return Err(BackendError::Unsupported(format!("row order is not a permutation of 0..{n}"))),
        }
    }
    if order.len() != n {
        return Err(BackendError::Unsupported(format!("row order has {} rows, the training set {n}", order.len())));
    }
    Ok(())
}
