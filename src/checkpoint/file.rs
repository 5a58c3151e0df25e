//! What a model file holds.

use std::path::PathBuf;

use crate::backend::BackendChoice;
use crate::data::Format;
use crate::model::{Activation, Params};
use crate::optim::{OptimizerConfig, OptimizerState};
use crate::schedule::LrSchedule;

/// The value of the `format` metadata key this program writes and reads.
pub const FORMAT: &str = "gpu-mnist-mlp/1";

/// How inputs are prepared, as stored in the `input` metadata key.
pub const INPUT: &str = "grey levels of a 28x28 image, row-major, byte/255 in [0,1], 0 = background";

/// Refuse files larger than this before reading them (a one-hidden-layer model at H = 65535 is
/// ~206 MB); `train` refuses to start a network whose file would be larger.
pub const MAX_MODEL_BYTES: u64 = 1 << 30;

/// How a model was made.
#[derive(Clone, Debug, PartialEq)]
pub struct Provenance {
    /// The data set's name (`DatasetKind::name`): it names the classes.
    pub dataset: String,
    /// Steps taken over the model's whole training.
    pub iterations: usize,
    /// Backend and device, e.g. "cpu (2 threads)".
    pub backend: String,
    /// Test accuracy in [0, 1] when training ended.
    pub test_accuracy: f64,
    /// The `gpu-mnist` version that wrote the file.
    pub version: String,
}

/// How `Provenance::backend` begins for a model made by another tool.
const IMPORTED: &str = "imported: ";

impl Provenance {
    /// A model made by another tool (`origin`): its data set, steps and accuracy are not known.
    pub fn imported(origin: &str) -> Self {
        let backend = format!("{IMPORTED}{origin}");
        Provenance { dataset: String::new(), iterations: 0, backend, test_accuracy: f64::NAN, version: String::new() }
    }

    /// Whether another tool made the model (a PyTorch state dict, a foreign ONNX graph).
    pub fn is_imported(&self) -> bool {
        self.backend.starts_with(IMPORTED)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub params: Params,
    pub activation: Activation,
    pub provenance: Provenance,
    /// The run's plan, as far as continuing it needs.
    pub run: RunRecord,
    /// The optimizer's state, for a rule that keeps state (its rule is `run.optimizer`'s). A
    /// model saved as of an earlier report point after a failure has none.
    pub optimizer: Option<OptimizerState>,
}

/// The plan of the run that made a model, as far as continuing it needs: what `TrainPlan::resolve`
/// takes for every option a continuing run does not give. `None` where the file does not say
/// (files of older versions say less); each field is a metadata key of the same name (the data's
/// format is `data_format`, the optimizer's rule `optimizer` with its hyper-parameters under their
/// own names, only those of the rule).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunRecord {
    pub seed: Option<u64>,
    /// The backend asked for (`backend_choice`): a continued run trains where the run did.
    pub backend: Option<BackendChoice>,
    /// `--data`, `--test-data` and `--format` (paths made absolute when saved).
    pub data: Option<PathBuf>,
    pub test_data: Option<PathBuf>,
    pub format: Option<Format>,
    pub samples: Option<usize>,
    pub test_samples: Option<usize>,
    pub val_split: Option<f64>,
    pub lr: Option<f32>,
    pub lr_schedule: Option<LrSchedule>,
    pub warmup: Option<usize>,
    /// Only when given: otherwise it follows from `planned_iterations`.
    pub lr_step_every: Option<usize>,
    pub lr_gamma: Option<f32>,
    /// The last step the run planned (where a cosine schedule reaches 0).
    pub planned_iterations: Option<usize>,
    pub optimizer: Option<OptimizerConfig>,
    /// Rows per step of mini-batch training (`None`: full batches).
    pub batch_size: Option<usize>,
    /// The model's step at which the current batching began.
    pub batch_origin: Option<usize>,
    /// Only when given: the default follows from the run's length.
    pub eval_every: Option<usize>,
    /// The report points the run used, given or not: a continued run keeps them.
    pub report_every: Option<usize>,
    pub target_accuracy: Option<f64>,
    /// The distortion drawn each epoch, with its strengths (`None`: no augmentation).
    pub augment: Option<crate::augment::Augment>,
    /// Dropout's probability on the hidden layers, when above 0.
    pub dropout: Option<f32>,
    /// `--keep-best` and `--patience`, when the run had them.
    pub keep_best: Option<bool>,
    pub patience: Option<usize>,
    /// Set in a file `--keep-best` chose: the step the run went on to (the file holds the best
    /// report point before it, its `iterations`).
    pub best_of: Option<usize>,
}
