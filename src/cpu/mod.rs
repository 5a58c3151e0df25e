//! The CPU backend: the readable reference (`reference`) and the fast threaded sparse step
//! (`fast`) that training uses, tested against the reference.

pub mod fast;
pub mod reference;

use crate::backend::{Backend, BackendError, Split};
use crate::data::{Dataset, Splits};
use crate::model::{Activation, Params, Stats};
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
    last: Stats,
    train: SparseSet,
    validation: SparseSet,
    test: SparseSet,
}

impl CpuBackend {
    /// A backend over `data`'s splits (validation and test may be empty), starting at `params`.
    pub fn new(data: &Splits, params: Params, act: Activation) -> Self {
        let grads = Params::zeros(params.shape);
        CpuBackend {
            act,
            params,
            grads,
            last: Stats::default(),
            train: SparseSet::new(&data.train),
            validation: SparseSet::new(&data.validation),
            test: SparseSet::new(&data.test),
        }
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
        self.params.sgd_update(&grads, lr);
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
}
