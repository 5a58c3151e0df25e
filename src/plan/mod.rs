//! The plan of a training run: every default and every consistency rule, in pure functions.
//!
//! A [`TrainRequest`] holds what was asked for, each option `None` when not given. With the
//! facts of the loaded data and the model being continued, if any, [`TrainPlan::resolve`]
//! decides everything the run does. For each choice an option given wins; else the continued
//! model's saved plan (its [`RunRecord`]) decides, so that `train --init-from FILE` alone
//! continues a run exactly; else the default below. The data are chosen before they are loaded,
//! by [`DataPlan::resolve`] under the same rule. The plan's `record` is what the model file saves.

use crate::backend::batch_count;
use crate::checkpoint::{MAX_MODEL_BYTES, Model, RunRecord};
use crate::data::{DataSource, DatasetKind, Selection, Splits};
use crate::model::{Activation, K, MAX_HIDDEN_LAYERS, Shape};
use crate::optim::OptimizerConfig;
use crate::schedule::Schedule;

mod request;
#[cfg(test)]
mod tests;

pub use request::{DataRequest, TrainRequest};

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

/// Which data a run uses: where from, and which rows (`--seed` picks the validation rows).
#[derive(Clone, Debug, PartialEq)]
pub struct DataPlan {
    pub source: DataSource,
    pub selection: Selection,
}

impl DataPlan {
    /// The data of `request`, or of the continued model's run where `request` names none: a
    /// saved source (path, test path, format) is kept as a whole unless any part of it is given
    /// or the data set changes; row counts and the split are kept one by one.
    pub fn resolve(request: &TrainRequest, resumed: Option<&Model>) -> DataPlan {
        let r = &request.data;
        let saved = resumed.map(|m| &m.run);
        let saved_kind = resumed.map(|m| DatasetKind::from_name(&m.provenance.dataset));
        let kind = r.kind.or(saved_kind).unwrap_or_default();
        let given = r.path.is_some() || r.test_path.is_some() || r.format.is_some();
        let source = match saved {
            Some(s) if !given && saved_kind == Some(kind) => {
                DataSource { path: s.data.clone(), test_path: s.test_data.clone(), format: s.format, kind }
            }
            _ => DataSource { path: r.path.clone(), test_path: r.test_path.clone(), format: r.format, kind },
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
}

/// Everything a training run does, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainPlan {
    pub data: DataPlan,
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
    /// The plan of `request` on data of `facts`, continuing `resumed` if given (see the module
    /// documentation for which value each choice takes).
    pub fn resolve(request: &TrainRequest, resumed: Option<&Model>, facts: &DataFacts) -> Result<Self, PlanError> {
        let r = request;
        let saved = resumed.map(|m| m.run.clone()).unwrap_or_default();
        let mut notes = Vec::new();
        let seed = seed(r, resumed);
        let (shape, activation) = network(r, resumed, facts)?;
        let optimizer = optimizer(r, saved.optimizer);
        let lr = r.lr.or(saved.lr).unwrap_or(DEFAULT_LR);
        if lr * optimizer.weight_decay >= 1.0 {
            return refuse(format!(
                "--lr {lr} times --weight-decay {} must be below 1 (each step scales the weights by 1 - lr·decay)",
                optimizer.weight_decay
            ));
        }
        check_model_size(&shape, &optimizer)?;
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
        // 10 iterations when chasing a target accuracy), unless --eval-every says otherwise.
        let eval_every = r.eval_every.or(saved.eval_every);
        let target_accuracy = r.target_accuracy.or(saved.target_accuracy);
        if target_accuracy.is_some() && facts.test == 0 && facts.validation == 0 {
            return refuse(
                "--target-accuracy needs held-out data to measure: pass --test-data PATH or --val-split F".into(),
            );
        }
        let every = match (eval_every, batches, target_accuracy) {
            (Some(k), _, _) => k,
            (None, 1, None) => (count / REPORTS_PER_RUN).max(1),
            (None, 1, Some(_)) => (count / REPORTS_PER_RUN).clamp(1, TARGET_REPORT_GAP),
            (None, b, _) => b,
        };
        let held_out = eval_every.is_some() || r.curves || target_accuracy.is_some() || batches > 1;
        let reports = Reports { every, held_out, target_accuracy };

        let data = DataPlan::resolve(r, resumed);
        let record = RunRecord {
            seed: Some(seed),
            data: data.source.path.clone(),
            test_data: data.source.test_path.clone(),
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
            target_accuracy,
        };
        Ok(TrainPlan {
            data,
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
            record,
            notes,
        })
    }
}

/// The layer sizes and activation: the continued model's (options may only repeat them), or
/// those asked for.
fn network(r: &TrainRequest, resumed: Option<&Model>, facts: &DataFacts) -> Result<(Shape, Activation), PlanError> {
    let Some(m) = resumed else {
        let hidden = r.hidden.as_deref().unwrap_or(&DEFAULT_HIDDEN);
        if hidden.len() > MAX_HIDDEN_LAYERS {
            return refuse(format!(
                "--hidden lists {} layers; at most {MAX_HIDDEN_LAYERS} are supported",
                hidden.len()
            ));
        }
        return Ok((Shape::new(facts.d, hidden, K, !r.no_bias), r.activation.unwrap_or(DEFAULT_ACTIVATION)));
    };
    let s = &m.params.shape;
    let conflict = |what: String| {
        refuse(format!("{what}: a continued model keeps its layers; leave the option out, or start a new run"))
    };
    if let Some(h) = r.hidden.as_ref().filter(|h| **h != s.hidden) {
        let h: Vec<String> = h.iter().map(|w| w.to_string()).collect();
        return conflict(format!("--hidden {} differs from the model's {}", h.join(","), s.hidden_list()));
    }
    if let Some(a) = r.activation.filter(|a| *a != m.activation) {
        return conflict(format!("--activation {} differs from the model's {}", a.name(), m.activation.name()));
    }
    if r.no_bias && s.bias {
        return conflict("--no-bias, but the model has biases".into());
    }
    if s.d != facts.d || s.k != K {
        return refuse(format!("the model has {} inputs and {} classes, the data {} and {K}", s.d, s.k, facts.d));
    }
    Ok((s.clone(), m.activation))
}

/// The update rule: as asked, else the saved one; each hyper-parameter as asked, else saved,
/// else the rule's default.
fn optimizer(r: &TrainRequest, saved: Option<OptimizerConfig>) -> OptimizerConfig {
    let base = saved.unwrap_or_default();
    OptimizerConfig {
        kind: r.optimizer.unwrap_or(base.kind),
        momentum: r.momentum.unwrap_or(base.momentum),
        beta1: r.beta1.unwrap_or(base.beta1),
        beta2: r.beta2.unwrap_or(base.beta2),
        eps: r.eps.unwrap_or(base.eps),
        weight_decay: r.weight_decay.unwrap_or(base.weight_decay),
    }
}

/// Refuses a network whose model file (parameters and the optimizer's moments) would be larger
/// than a model file may be, before anything of its size is allocated.
fn check_model_size(shape: &Shape, optimizer: &OptimizerConfig) -> Result<(), PlanError> {
    let file_bytes = (shape.parameter_count() as u64) * 4 * (1 + optimizer.kind.moments().len() as u64);
    if file_bytes > MAX_MODEL_BYTES {
        return refuse(format!(
            "{} with {} would save a {} MiB model file, more than the {} MiB a model may have; use narrower layers",
            shape.describe(),
            optimizer.kind.name(),
            file_bytes >> 20,
            MAX_MODEL_BYTES >> 20
        ));
    }
    Ok(())
}
