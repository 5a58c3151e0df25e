//! The plan of a training run: every default and every consistency rule, in pure functions.
//!
//! A [`TrainRequest`] holds what was asked for, each option `None` when not given. With the
//! facts of the loaded data and the model being continued, if any, [`TrainPlan::resolve`]
//! decides everything the run does. For each choice an option given wins; else the continued
//! model's saved plan (its [`RunRecord`]) decides, so that `train --init-from FILE` alone
//! continues a run exactly; else the default below. The data are chosen before they are loaded,
//! by [`DataPlan::resolve`] under the same rule. The plan's `record` is what the model file saves.

use std::path::PathBuf;

use crate::augment::{Augment, Augmentation};
use crate::backend::{BackendChoice, batch_count};
use crate::checkpoint::{Model, RunRecord};
use crate::data::{DataSource, DatasetKind, Selection, Splits};
use crate::dropout::Dropout;
use crate::model::{Activation, Shape};
use crate::optim::OptimizerConfig;
use crate::schedule::Schedule;

mod defaults;
mod request;
mod rules;
#[cfg(test)]
mod tests;

pub use defaults::*;
pub use request::{DataRequest, TrainRequest};

/// Which data a run uses: where from, and which rows (`--seed` picks the validation rows).
#[derive(Clone, Debug, PartialEq)]
pub struct DataPlan {
    pub source: DataSource,
    pub selection: Selection,
}

impl DataPlan {
    /// The data of `request`, else of the continued model's run, field by field: the saved
    /// `--data` unless one is given; the saved `--test-data` and `--format` unless they, or
    /// `--data`, are given (they belong to the data they came with); none of them when the data
    /// set changes. Row counts and the split are kept one by one.
    pub fn resolve(request: &TrainRequest, resumed: Option<&Model>) -> DataPlan {
        let r = &request.data;
        let saved_kind = resumed.map(|m| DatasetKind::from_name(&m.provenance.dataset));
        let kind = r.kind.or(saved_kind).unwrap_or_default();
        let saved = resumed.map(|m| &m.run);
        let same = saved.filter(|_| saved_kind == Some(kind));
        let anchored = same.filter(|_| r.path.is_none());
        let source = DataSource {
            path: r.path.clone().or_else(|| same.and_then(|s| s.data.clone())),
            test_path: r.test_path.clone().or_else(|| anchored.and_then(|s| s.test_data.clone())),
            format: r.format.or(anchored.and_then(|s| s.format)),
            kind,
        };
        let selection = Selection {
            samples: r.samples.or(saved.and_then(|s| s.samples)),
            test_samples: r.test_samples.or(saved.and_then(|s| s.test_samples)),
            val_split: r.val_split.or(saved.and_then(|s| s.val_split)),
            seed: seed(request, resumed),
        };
        DataPlan { source, selection }
    }
}

fn seed(request: &TrainRequest, resumed: Option<&Model>) -> u64 {
    request.seed.or(resumed.and_then(|m| m.run.seed)).unwrap_or(DEFAULT_SEED)
}

/// The sizes of the loaded data that the plan depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataFacts {
    /// Inputs per image (D).
    pub d: usize,
    pub train: usize,
    pub validation: usize,
    pub test: usize,
}

impl From<&Splits> for DataFacts {
    fn from(s: &Splits) -> Self {
        DataFacts { d: s.train.d(), train: s.train.n, validation: s.validation.n, test: s.test.n }
    }
}

/// Where the parameters start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// A fresh network, initialised from the seed (`Params::init`).
    Seeded(u64),
    /// The continued model's parameters; its optimizer state too when `keep_state` (same rule).
    Resumed { keep_state: bool },
}

/// Rows per step and where the current batching began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batching {
    /// Rows per step (B; N for full batches).
    pub size: usize,
    /// Steps per epoch: 1 for full batches.
    pub batches: usize,
    /// The model's step at which this batching began: epochs, their orders and each step's batch
    /// count from it (0, or where a continued model changed its batch size).
    pub origin: usize,
}

impl Batching {
    /// The batch size of a mini-batch run, `None` for full batches.
    pub fn mini(&self) -> Option<usize> {
        (self.batches > 1).then_some(self.size)
    }
}

/// Steps of the model's training, counted over its whole life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Steps {
    /// Steps the model had before this run.
    pub done: usize,
    /// Steps this run takes.
    pub count: usize,
}

/// When the run reports, and what it measures there.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reports {
    /// A report point every this many steps of the batching (so mini-batch runs report at the
    /// ends of epochs).
    pub every: usize,
    /// Also measure validation and test accuracy at report points.
    pub held_out: bool,
    /// Stop at the first report point whose held-out accuracy (validation if there is a
    /// validation split, else test) reaches this fraction.
    pub target_accuracy: Option<f64>,
    /// Keep (save) the model of the report point with the best validation accuracy.
    pub keep_best: bool,
    /// Stop after this many report points in a row without a better validation accuracy.
    pub patience: Option<usize>,
}

/// Everything a training run does, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainPlan {
    pub data: DataPlan,
    /// Where it trains: `auto` takes a hardware GPU when there is one.
    pub backend: BackendChoice,
    /// Seeds the initialisation, the validation rows and every epoch's order.
    pub seed: u64,
    pub shape: Shape,
    pub activation: Activation,
    pub init: Init,
    pub optimizer: OptimizerConfig,
    /// The rate of every step, over the model's whole training (`total` is the last step planned).
    pub schedule: Schedule,
    pub batching: Batching,
    pub steps: Steps,
    pub reports: Reports,
    /// Recompute every K-th step on a second backend and stop if it differs.
    pub verify_every: Option<usize>,
    /// The distortion of the training images drawn at the start of every epoch (of every step
    /// for full batches); `kind` none: the images as they are.
    pub augment: Augment,
    /// Inverted dropout on the hidden layers (`p` 0: none), its masks seeded by `seed`.
    pub dropout: Dropout,
    /// What the model file saves so that a later run can continue this one.
    pub record: RunRecord,
    /// Decisions worth a line to the user.
    pub notes: Vec<String>,
}

/// A request that cannot be planned, and what to do instead.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

fn refuse<T>(message: String) -> Result<T, PlanError> {
    Err(PlanError(message))
}

impl TrainPlan {
    /// The plan of `request` on data of `facts` (chosen by `data`, `DataPlan::resolve`'s answer
    /// for the same request), continuing `resumed` if given (see the module documentation for
    /// which value each choice takes).
    pub fn resolve(
        request: &TrainRequest,
        resumed: Option<&Model>,
        data: DataPlan,
        facts: &DataFacts,
    ) -> Result<Self, PlanError> {
        let r = request;
        let saved = resumed.map(|m| m.run.clone()).unwrap_or_default();
        let mut notes = Vec::new();
        let seed = seed(r, resumed);
        let backend = r.backend.or(saved.backend).unwrap_or_default();
        let (shape, activation) = rules::network(r, resumed, facts.d).map_err(PlanError)?;
        let optimizer = rules::optimizer(r, saved.optimizer);
        let lr = r.lr.or(saved.lr).unwrap_or(DEFAULT_LR);
        if lr * optimizer.weight_decay >= 1.0 {
            return refuse(format!(
                "--lr {lr} times --weight-decay {} must be below 1 (each step scales the weights by 1 - lr·decay)",
                optimizer.weight_decay
            ));
        }
        rules::check_model_size(&shape, &optimizer).map_err(PlanError)?;
        let augment = rules::augment(r, saved.augment).map_err(PlanError)?;
        let dropout = Dropout { p: r.dropout.or(saved.dropout).unwrap_or(0.0), seed };
        let init = match resumed {
            None => Init::Seeded(seed),
            Some(m) => Init::Resumed { keep_state: m.optimizer.as_ref().is_some_and(|s| s.kind == optimizer.kind) },
        };

        // A continued mini-batch model keeps its batch size unless told otherwise.
        let n = facts.train;
        let size = r.batch_size.or(saved.batch_size).unwrap_or(n).clamp(1, n.max(1));
        let batches = batch_count(n, size);
        let mini = (batches > 1).then_some(size);
        let done = resumed.map_or(0, |m| m.provenance.iterations);
        // Epochs and their orders count from the step where the current batching began: from the
        // start, or from here when a continued model was trained on other batches.
        let origin = match resumed {
            Some(_) if saved.batch_size != mini => {
                if mini.is_some() {
                    notes.push(format!(
                        "the model was trained on other batches; epochs of {size}-row batches start here"
                    ));
                }
                done
            }
            _ => saved.batch_origin.unwrap_or(0),
        };
        let batching = Batching { size, batches, origin };

        // Steps: as asked; else the rest of a continued run's plan; else the default.
        let unfinished = saved.planned_iterations.filter(|&p| p > done && resumed.is_some());
        let too_many = || PlanError("that many steps cannot be counted; give fewer --epochs or --iterations".into());
        let continuing = r.iterations.is_none() && r.epochs.is_none() && unfinished.is_some();
        let (count, total) = match (r.iterations, r.epochs, unfinished) {
            (Some(i), _, _) => (i, done.checked_add(i).ok_or_else(too_many)?),
            (None, Some(e), _) => {
                let i = e.checked_mul(batches).ok_or_else(too_many)?;
                (i, done.checked_add(i).ok_or_else(too_many)?)
            }
            (None, None, Some(planned)) => {
                notes.push(format!("continuing the planned {planned} steps: {} to go", planned - done));
                (planned - done, planned)
            }
            (None, None, None) => {
                let i = if batches == 1 { DEFAULT_ITERATIONS } else { DEFAULT_EPOCHS * batches };
                (i, done.checked_add(i).ok_or_else(too_many)?)
            }
        };

        let kind = r.lr_schedule.or(saved.lr_schedule).unwrap_or_default();
        let warmup = r.warmup.or(saved.warmup).unwrap_or(0);
        let step_every = r.lr_step_every.or(saved.lr_step_every);
        let schedule = Schedule {
            kind,
            base: lr,
            warmup,
            step_every: step_every.unwrap_or((total.saturating_sub(warmup) / 3).max(1)),
            gamma: r.lr_gamma.or(saved.lr_gamma).unwrap_or(DEFAULT_LR_GAMMA),
            total,
        };

        // Report points: every epoch of mini-batches, 20 per run for full batches (at least every
        // 10 iterations when chasing a target accuracy), unless --eval-every says otherwise; a
        // continued run keeps the points of the run it continues.
        let eval_every = r.eval_every.or(saved.eval_every);
        let target_accuracy = r.target_accuracy.or(saved.target_accuracy);
        if target_accuracy.is_some() && facts.test == 0 && facts.validation == 0 {
            return refuse(
                "--target-accuracy needs held-out data to measure: pass --test-data PATH or --val-split F".into(),
            );
        }
        let every = match (eval_every, continuing.then_some(saved.report_every).flatten(), batches, target_accuracy) {
            (Some(k), _, _, _) | (None, Some(k), _, _) => k,
            (None, None, 1, None) => (count / REPORTS_PER_RUN).max(1),
            (None, None, 1, Some(_)) => (count / REPORTS_PER_RUN).clamp(1, TARGET_REPORT_GAP),
            (None, None, b, _) => b,
        };
        let keep_best = r.keep_best || saved.keep_best == Some(true);
        let patience = r.patience.or(saved.patience);
        if (keep_best || patience.is_some()) && facts.validation == 0 {
            let option = if keep_best { "--keep-best" } else { "--patience" };
            return refuse(format!(
                "{option} judges the model on validation data, which this run has none of: add --val-split 0.1"
            ));
        }
        let held_out = eval_every.is_some()
            || r.curves
            || target_accuracy.is_some()
            || batches > 1
            || keep_best
            || patience.is_some();
        let reports = Reports { every, held_out, target_accuracy, keep_best, patience };

        // Paths are saved absolute, so that a continued run finds its data from any folder.
        let absolute = |p: &Option<PathBuf>| p.as_ref().map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()));
        let record = RunRecord {
            seed: Some(seed),
            backend: Some(backend),
            data: absolute(&data.source.path),
            test_data: absolute(&data.source.test_path),
            format: data.source.format,
            samples: data.selection.samples,
            test_samples: data.selection.test_samples,
            val_split: data.selection.val_split,
            lr: Some(lr),
            lr_schedule: Some(kind),
            warmup: Some(warmup),
            lr_step_every: step_every,
            lr_gamma: Some(schedule.gamma),
            planned_iterations: Some(total),
            optimizer: Some(optimizer),
            batch_size: mini,
            batch_origin: Some(origin),
            eval_every,
            report_every: Some(every),
            target_accuracy,
            augment: (augment.kind != Augmentation::None).then_some(augment),
            keep_best: keep_best.then_some(true),
            patience,
            dropout: dropout.is_on().then_some(dropout.p),
            best_of: None,
        };
        Ok(TrainPlan {
            data,
            backend,
            seed,
            shape,
            activation,
            init,
            optimizer,
            schedule,
            batching,
            steps: Steps { done, count },
            reports,
            verify_every: r.verify_every,
            augment,
            dropout,
            record,
            notes,
        })
    }
}
