//! The defaults of a run: what a new run takes for an option not given.

use crate::model::Activation;

/// Full-batch iterations when neither `--iterations` nor `--epochs` is given.
pub const DEFAULT_ITERATIONS: usize = 500;
/// Epochs of mini-batches when neither is given.
pub const DEFAULT_EPOCHS: usize = 10;
pub const DEFAULT_HIDDEN: [usize; 1] = [128];
pub const DEFAULT_ACTIVATION: Activation = Activation::Relu;
pub const DEFAULT_LR: f32 = 0.8;
/// The step schedule's factor per decay.
pub const DEFAULT_LR_GAMMA: f32 = 0.1;
pub const DEFAULT_SEED: u64 = 0;
/// A full-batch run without `--eval-every` reports this many times...
pub const REPORTS_PER_RUN: usize = 20;
/// ...and at least every this many iterations when it chases a target accuracy.
pub const TARGET_REPORT_GAP: usize = 10;
