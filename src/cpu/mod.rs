//! The CPU backend: the readable reference (`reference`) and the fast threaded sparse step
//! (`fast`) that training uses, tested against the reference.

pub mod fast;
pub mod reference;

use crate::augment::{Augment, Augmentation, EpochImages};
use crate::backend::{Backend, BackendError, Split, Verifier, batch_count, batch_range, check_order};
use crate::data::{Dataset, Splits};
use crate::dropout::Dropout;
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
    /// Rows per step (N for full-batch training), the visiting order, and each batch's latest
    /// forward-pass statistics (`n == 0` until visited).
    batch_size: usize,
    order: Vec<u32>,
    batch_stats: Vec<Stats>,
    train: SparseSet,
    validation: SparseSet,
    test: SparseSet,
    /// The original training images and how each epoch distorts them (`with_augment`).
    augmenting: Option<EpochImages>,
    /// Dropout on the hidden layers, and the model's step the next `step` takes (its masks).
    dropout: Option<Dropout>,
    step_index: u64,
}

impl CpuBackend {
    /// A backend over `data`'s splits (validation and test may be empty), starting at `params`,
    /// training by plain gradient descent (see `with_optimizer`).
    pub fn new(data: &Splits, params: Params, act: Activation) -> Self {
        let grads = Params::zeros(params.shape.clone());
        let optimizer = OptimizerConfig::default();
        let state = OptimizerState::new(optimizer.kind, params.shape.clone());
        let n = data.train.n;
        CpuBackend {
            act,
            params,
            grads,
            optimizer,
            state,
            batch_size: n.max(1),
            order: (0..n as u32).collect(),
            batch_stats: vec![Stats::default()],
            train: SparseSet::new(&data.train),
            validation: SparseSet::new(&data.validation),
            test: SparseSet::new(&data.test),
            augmenting: None,
            dropout: None,
            step_index: 0,
        }
    }

    /// Steps with inverted dropout of probability `dropout.p` on the hidden layers (off at 0).
    pub fn with_dropout(mut self, dropout: Dropout) -> Self {
        self.dropout = dropout.is_on().then_some(dropout);
        self
    }

    /// Trains each epoch on `augment`'s distortion of `train`'s images (the training split this
    /// backend was made with), drawn from `seed` and the epoch.
    pub fn with_augment(mut self, train: &Dataset, augment: Augment, seed: u64) -> Self {
        // No draw ahead: the step keeps every core busy but for moments too short to use.
        self.augmenting = (augment.kind != Augmentation::None)
            .then(|| EpochImages::new(train.pixels.clone(), train.rows, train.cols, augment, seed, false));
        self
    }

    /// Steps with `cfg`'s rule, from fresh state (zero moments, no steps taken).
    pub fn with_optimizer(mut self, cfg: OptimizerConfig) -> Self {
        self.state = OptimizerState::new(cfg.kind, self.params.shape.clone());
        self.optimizer = cfg;
        self
    }

    /// Continues from saved optimizer state (`--init-from`); it must be this rule's, for these shapes.
    pub fn set_optimizer_state(&mut self, state: OptimizerState) -> Result<(), BackendError> {
        state.fits(&self.optimizer, &self.params.shape)?;
        self.state = state;
        Ok(())
    }

    /// Steps on mini-batches of `batch_size` rows (at least 1; N or more is full-batch training).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        let n = self.order.len();
        self.batch_size = batch_size.clamp(1, n.max(1));
        self.batch_stats = vec![Stats::default(); batch_count(n, self.batch_size)];
        self
    }

    /// Gradients and loss of batch `batch` (`< batches()`) at `params`, leaving this backend
    /// unchanged (what `--verify-every` compares a GPU step with).
    pub fn gradients_at(&self, params: &Params, batch: usize) -> (Params, Stats) {
        let mut grads = Params::empty(params.shape.clone());
        let stats = self.gradients_into(&mut grads, params, batch);
        (grads, stats)
    }

    /// `gradients_at` into `grads`, reusing their buffers.
    fn gradients_into(&self, grads: &mut Params, params: &Params, batch: usize) -> Stats {
        let (x, labels) = (&self.train.x, &self.train.labels);
        let masks = self.dropout.map(|d| d.step(self.step_index, params.shape.hidden.len()));
        let rows =
            (self.batch_stats.len() > 1).then(|| &self.order[batch_range(batch, self.batch_size, self.order.len())]);
        fast::forward_backward_into(grads, params, self.act, x, labels, rows, masks.as_ref())
    }

    pub fn activation(&self) -> Activation {
        self.act
    }

    pub fn threads() -> usize {
        rayon::current_num_threads()
    }
}

/// "1 thread", "2 threads": how the CPU backend and `bench` name a thread count.
pub fn threads_phrase(n: usize) -> String {
    if n == 1 { "1 thread".into() } else { format!("{n} threads") }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn device(&self) -> String {
        threads_phrase(Self::threads())
    }

    fn train_rows(&self) -> usize {
        self.order.len()
    }

    fn batches(&self) -> usize {
        self.batch_stats.len()
    }

    fn begin_epoch(&mut self, epoch: usize) -> Result<(), BackendError> {
        if let Some(images) = &mut self.augmenting {
            let d = images.d();
            self.train.x.refill(images.take(epoch), d);
        }
        Ok(())
    }

    fn begin_step(&mut self, step: u64) {
        self.step_index = step;
    }

    fn shuffle(&mut self, order: &[u32]) -> Result<(), BackendError> {
        check_order(order, self.order.len())?;
        self.order.copy_from_slice(order);
        Ok(())
    }

    fn step(&mut self, batch: usize, lr: f32) -> Result<(), BackendError> {
        if batch >= self.batches() {
            return Err(BackendError::Unsupported(format!("batch {batch} of {}", self.batches())));
        }
        let mut grads = std::mem::replace(&mut self.grads, Params::empty(self.params.shape.clone()));
        let stats = in_pool(|| {
            let stats = self.gradients_into(&mut grads, &self.params, batch);
            optim::optimizer_update(&mut self.params, &grads, &mut self.state, &self.optimizer, lr);
            stats
        });
        self.grads = grads;
        self.batch_stats[batch] = stats;
        self.step_index += 1;
        Ok(())
    }

    fn step_stats(&self) -> Result<Stats, BackendError> {
        Ok(combine(&self.batch_stats))
    }

    fn batch_stats(&self, batch: usize) -> Result<Stats, BackendError> {
        self.batch_stats.get(batch).copied().ok_or_else(|| BackendError::Unsupported(format!("no batch {batch}")))
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

impl Verifier for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn shuffle(&mut self, order: &[u32]) -> Result<(), BackendError> {
        Backend::shuffle(self, order)
    }

    fn begin_epoch(&mut self, epoch: usize) -> Result<(), BackendError> {
        Backend::begin_epoch(self, epoch)
    }

    fn begin_step(&mut self, step: u64) {
        Backend::begin_step(self, step)
    }

    fn recompute(&self, params: &Params, batch: usize) -> Result<(Params, Stats), BackendError> {
        if batch >= self.batches() {
            return Err(BackendError::Unsupported(format!("batch {batch} of {}", self.batches())));
        }
        Ok(self.gradients_at(params, batch))
    }
}

/// Runs `op` on one of rayon's threads, so that the parallel phases inside it start from within
/// the pool. From any other thread each phase is handed to the pool while the caller sleeps until
/// it is done, two thread switches a phase, and a mini-batch step has a dozen phases
/// (docs/performance.md has what that cost).
pub fn in_pool<R: Send>(op: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| op())
}

/// The statistics of several disjoint sets of rows, as one.
pub fn combine(parts: &[Stats]) -> Stats {
    if let [one] = parts {
        return *one;
    }
    let n: usize = parts.iter().map(|s| s.n).sum();
    let loss: f64 = parts.iter().map(|s| s.loss * s.n as f64).sum();
    Stats { loss: loss / n.max(1) as f64, correct: parts.iter().map(|s| s.correct).sum(), n }
}
