//! What a training run asks for: every option, `None` (or `false`) where not given, so that
//! `TrainPlan::resolve` can tell an option given from a default.

use std::path::PathBuf;

use crate::augment::Augmentation;
use crate::backend::BackendChoice;
use crate::data::{DatasetKind, Format};
use crate::model::Activation;
use crate::optim::Optimizer;
use crate::schedule::LrSchedule;

/// The data options as asked for (`None`: not given).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DataRequest {
    pub path: Option<PathBuf>,
    pub test_path: Option<PathBuf>,
    pub format: Option<Format>,
    pub kind: Option<DatasetKind>,
    pub samples: Option<usize>,
    pub test_samples: Option<usize>,
    pub val_split: Option<f64>,
}

/// A training run as asked for: every option, `None` (or `false`) where not given.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainRequest {
    pub data: DataRequest,
    pub backend: Option<BackendChoice>,
    pub seed: Option<u64>,
    pub hidden: Option<Vec<usize>>,
    pub activation: Option<Activation>,
    pub no_bias: bool,
    pub iterations: Option<usize>,
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub lr: Option<f32>,
    pub lr_schedule: Option<LrSchedule>,
    pub warmup: Option<usize>,
    pub lr_step_every: Option<usize>,
    pub lr_gamma: Option<f32>,
    pub optimizer: Option<Optimizer>,
    pub momentum: Option<f32>,
    pub beta1: Option<f32>,
    pub beta2: Option<f32>,
    pub eps: Option<f32>,
    pub weight_decay: Option<f32>,
    pub eval_every: Option<usize>,
    pub target_accuracy: Option<f64>,
    pub verify_every: Option<usize>,
    /// `--augment` and its strengths (`--shift`, `--rotate`, `--scale`, `--shear`, `--alpha`,
    /// `--sigma`).
    pub augment: Option<Augmentation>,
    /// `--dropout P`: inverted dropout of the hidden layers' units with probability P in training.
    pub dropout: Option<f32>,
    /// `--keep-best`: save the model of the best validation accuracy at a report point.
    pub keep_best: bool,
    /// `--patience K`: stop after K report points without a better validation accuracy.
    pub patience: Option<usize>,
    pub shift: Option<f32>,
    pub rotate: Option<f32>,
    pub scale: Option<f32>,
    pub shear: Option<f32>,
    pub alpha: Option<f32>,
    pub sigma: Option<f32>,
    /// Outputs that draw held-out figures at every report point (`--plot`, `--metrics`).
    pub curves: bool,
}
