//! What the training loop reports as it goes and when it ends.

use crate::backend::{BackendError, Split};
use crate::model::{Params, Stats};
use crate::optim::OptimizerState;

/// What the loop tells its caller as it goes.
pub enum Event {
    /// An iteration finished (submitted, for a GPU).
    Step { iteration: usize },
    /// A report point: training statistics of the latest step; validation and test statistics
    /// if asked for and the split is not empty.
    Report { iteration: usize, train: Stats, validation: Option<Stats>, test: Option<Stats>, seconds: f64 },
    /// A verified step: largest relative differences of loss and of each gradient tensor to the
    /// verifier's.
    Verified { iteration: usize, verifier: &'static str, loss: f64, grads: Vec<(&'static str, f64)> },
    /// Finite parameters and the optimizer's state after `iteration` (taken at report points):
    /// what to save if a later iteration diverges or the device fails.
    Snapshot { iteration: usize, params: Params, state: OptimizerState },
}

/// When a run reached its target accuracy.
#[derive(Clone, Copy, Debug)]
pub struct Reached {
    pub iteration: usize,
    /// Epochs completed (fractional for a report point inside an epoch).
    pub epochs: f64,
    /// The held-out accuracy measured, and on which split.
    pub accuracy: f64,
    pub split: Split,
    /// Training seconds until then (as `Summary::seconds`) and wall seconds including evaluations.
    pub seconds: f64,
    pub wall_seconds: f64,
}

#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub iterations: usize,
    /// Set when the run stopped on reaching the plan's target accuracy.
    pub reached: Option<Reached>,
    pub train: Stats,
    /// Statistics of the held-out splits; `n == 0` for a split the run does not have.
    pub validation: Stats,
    pub test: Stats,
    /// Wall time of the iterations up to the last one's statistics (which waits for the device),
    /// without verification, test evaluations and the final evaluation.
    pub seconds: f64,
    /// Stopped early by the stop flag after `iterations` of the planned iterations.
    pub interrupted: bool,
    /// Set when the run stopped because `plan.reports.patience` report points in a row brought
    /// no better validation accuracy.
    pub patience_ran_out: Option<Best>,
}

/// The best validation accuracy a run measured, and where.
#[derive(Clone, Copy, Debug)]
pub struct Best {
    pub iteration: usize,
    pub accuracy: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("the training loss became {loss} at iteration {iteration}; try a smaller --lr (now {lr})")]
    Diverged { iteration: usize, loss: f64, lr: f32 },
    #[error(
        "verification failed at iteration {iteration}: {what} differs from the {verifier} backend's by {diff:.3e} (relative), more than {tolerance:.0e}"
    )]
    Verify { iteration: usize, what: String, verifier: &'static str, diff: f64, tolerance: f64 },
}
