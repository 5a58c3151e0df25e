//! The CPU backend: the readable reference (`reference`) and the fast threaded sparse step
//! (`fast`) that training uses, tested against the reference.

pub mod fast;
pub mod reference;

use crate::backend::{Backend, BackendError, Split};
use crate::data::{Dataset, Splits};
use crate::model::{Activation, Params, Stats};
use crate::optim::{self, OptimizerConfig, OptimizerState};
use fast::SparseRows;

/// One data split prepared for the fast path.
struct SparseSet {
    x: SparseRows,
    labels: Vec<u8>,
}

impl SparseSet {
    fn new(set: &Dataset) -> Self {
        SparseSet { x: SparseRows::from_pixels(&set.pixels, set.d()), labels: set.labels.clone() }
    }
}

pub struct CpuBackend {
    act: Activation,
    params: Params,
    grads: Params,
    optimizer: OptimizerConfig,
    state: OptimizerState,
    last: Stats,
    train: SparseSet,
    validation: SparseSet,
    test: SparseSet,
}

impl CpuBackend {
    /// A backend over `data`'s splits (validation and test may be empty), starting at `params`,
    /// training by plain gradient descent (see `with_optimizer`).
    pub fn new(data: &Splits, params: Params, act: Activation) -> Self {
        let grads = Params::zeros(params.shape);
        let optimizer = OptimizerConfig::default();
        let state = OptimizerState::new(optimizer.kind, params.shape);
        CpuBackend {
            act,
            params,
            grads,
            optimizer,
            state,
            last: Stats::default(),
            train: SparseSet::new(&data.train),
            validation: SparseSet::new(&data.validation),
            test: SparseSet::new(&data.test),
        }
    }

    /// Steps with `cfg`'s rule, from fresh state (zero moments, no steps taken).
    pub fn with_optimizer(mut self, cfg: OptimizerConfig) -> Self {
        self.state = OptimizerState::new(cfg.kind, self.params.shape);
        self.optimizer = cfg;
        self
    }

    /// Continues from saved optimizer state (`--init-from`); it must be this rule's, for these shapes.
    pub fn set_optimizer_state(&mut self, state: OptimizerState) -> Result<(), BackendError> {
        state.fits(&self.optimizer, self.params.shape)?;
        self.state = state;
        Ok(())
    }

    /// Gradients and loss of the whole training set at `params`, leaving this backend unchanged
    /// (what `--verify-every` compares a GPU step with).
    pub fn gradients_at(&self, params: &Params) -> (Params, Stats) {
        fast::forward_backward(params, self.act, &self.train.x, &self.train.labels)
    }

    pub fn activation(&self) -> Activation {
        self.act
    }

    pub fn threads() -> usize {
        rayon::current_num_threads()
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn device(&self) -> String {
        let threads = Self::threads();
        format!("{threads} thread{}", if threads == 1 { "" } else { "s" })
    }

    fn step(&mut self, lr: f32) -> Result<(), BackendError> {
        let (grads, stats) = self.gradients_at(&self.params);
        optim::optimizer_update(&mut self.params, &grads, &mut self.state, &self.optimizer, lr);
        self.grads = grads;
        self.last = stats;
        Ok(())
    }

    fn step_stats(&self) -> Result<Stats, BackendError> {
        Ok(self.last)
    }

    fn free_stats(&self) -> bool {
        true
    }

    fn evaluate(&self, split: Split) -> Result<Stats, BackendError> {
        let set = match split {
            Split::Train => &self.train,
            Split::Validation => &self.validation,
            Split::Test => &self.test,
        };
        if set.labels.is_empty() {
            return Ok(Stats::default());
        }
        Ok(fast::evaluate(&self.params, self.act, &set.x, &set.labels))
    }

    fn params(&self) -> Result<Params, BackendError> {
        Ok(self.params.clone())
    }

    fn gradients(&self) -> Result<Params, BackendError> {
        Ok(self.grads.clone())
    }

    fn optimizer_state(&self) -> Result<OptimizerState, BackendError> {
        Ok(self.state.clone())
    }
}
