//! What the training loop needs from a backend: one full-batch step, statistics, parameters.

use crate::model::{Params, Stats};
use crate::optim::OptimizerState;

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

pub trait Backend {
    /// "cpu" or "gpu".
    fn name(&self) -> &'static str;
    /// The device in words: thread count, or the adapter's name and API.
    fn device(&self) -> String;
    /// One iteration of full-batch training: the mean gradient over the whole training set at the
    /// current parameters, then the optimizer's update (`params -= lr * grads` for plain descent,
    /// see `optim`). Does not wait for a GPU.
    fn step(&mut self, lr: f32) -> Result<(), BackendError>;
    /// Training loss/accuracy measured by the latest step's forward pass (before its update).
    fn step_stats(&self) -> Result<Stats, BackendError>;
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
