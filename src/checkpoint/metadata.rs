//! The metadata of a model file: the network, how it was made, and the run's plan, as strings.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use super::file::{FORMAT, INPUT, Model, Provenance, RunRecord};
use crate::augment::{Augment, Augmentation};
use crate::backend::BackendChoice;
use crate::data::Format;
use crate::model::{Activation, MAX_HIDDEN_LAYERS, Shape};
use crate::optim::{Optimizer, OptimizerConfig};
use crate::ranges::{self, Range};
use crate::schedule::LrSchedule;

/// Keys every model file has: the network, its input and how it was made, in the order
/// docs/model-format.md lists them.
pub const METADATA_KEYS: [&str; 12] = [
    "format",
    "inputs",
    "hidden",
    "classes",
    "activation",
    "bias",
    "input",
    "dataset",
    "iterations",
    "backend",
    "test_accuracy",
    "version",
];

/// Keys of the run's plan (`RunRecord`), each written when the run had it; `adam_t` is Adam's
/// step count, written with its state.
pub const RUN_KEYS: [&str; 36] = [
    "seed",
    "backend_choice",
    "data",
    "test_data",
    "data_format",
    "samples",
    "test_samples",
    "val_split",
    "lr",
    "lr_schedule",
    "warmup",
    "lr_step_every",
    "lr_gamma",
    "planned_iterations",
    "optimizer",
    "momentum",
    "beta1",
    "beta2",
    "eps",
    "weight_decay",
    "batch_size",
    "batch_origin",
    "eval_every",
    "report_every",
    "target_accuracy",
    "augment",
    "augment_shift",
    "augment_rotate",
    "augment_scale",
    "augment_shear",
    "augment_alpha",
    "augment_sigma",
    "keep_best",
    "patience",
    "dropout",
    "best_of",
];

/// The metadata of `model`, in a fixed (sorted) order: the same model always makes the same bytes.
pub(super) fn write(model: &Model) -> BTreeMap<&'static str, String> {
    let s = &model.params.shape;
    let p = &model.provenance;
    let mut meta = BTreeMap::from([
        ("format", FORMAT.to_string()),
        ("inputs", s.d.to_string()),
        ("hidden", s.hidden_list()),
        ("classes", s.k.to_string()),
        ("activation", model.activation.name().to_string()),
        ("bias", s.bias.to_string()),
        ("input", INPUT.to_string()),
        ("dataset", p.dataset.clone()),
        ("iterations", p.iterations.to_string()),
        ("backend", p.backend.clone()),
        ("test_accuracy", format!("{:.4}", p.test_accuracy)),
        ("version", p.version.clone()),
    ]);
    let r = &model.run;
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
    let fields = [
        ("seed", r.seed.map(|v| v.to_string())),
        ("backend_choice", r.backend.map(|v| v.name().to_string())),
        ("data", path(&r.data)),
        ("test_data", path(&r.test_data)),
        ("data_format", r.format.map(|f| format_name(f).to_string())),
        ("samples", r.samples.map(|v| v.to_string())),
        ("test_samples", r.test_samples.map(|v| v.to_string())),
        ("val_split", r.val_split.map(|v| v.to_string())),
        ("lr", r.lr.map(|v| v.to_string())),
        ("lr_schedule", r.lr_schedule.map(|v| v.name().to_string())),
        ("warmup", r.warmup.map(|v| v.to_string())),
        ("lr_step_every", r.lr_step_every.map(|v| v.to_string())),
        ("lr_gamma", r.lr_gamma.map(|v| v.to_string())),
        ("planned_iterations", r.planned_iterations.map(|v| v.to_string())),
        ("batch_size", r.batch_size.map(|v| v.to_string())),
        ("batch_origin", r.batch_origin.map(|v| v.to_string())),
        ("eval_every", r.eval_every.map(|v| v.to_string())),
        ("report_every", r.report_every.map(|v| v.to_string())),
        ("target_accuracy", r.target_accuracy.map(|v| v.to_string())),
        ("keep_best", r.keep_best.map(|v| v.to_string())),
        ("patience", r.patience.map(|v| v.to_string())),
        ("dropout", r.dropout.map(|v| v.to_string())),
        ("best_of", r.best_of.map(|v| v.to_string())),
    ];
    meta.extend(fields.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    if let Some(c) = &r.optimizer {
        meta.insert("optimizer", c.kind.name().to_string());
        meta.insert("weight_decay", c.weight_decay.to_string());
        match c.kind {
            Optimizer::Gd => {}
            Optimizer::Momentum | Optimizer::Nesterov => {
                meta.insert("momentum", c.momentum.to_string());
            }
            Optimizer::Adam => {
                meta.insert("beta1", c.beta1.to_string());
                meta.insert("beta2", c.beta2.to_string());
                meta.insert("eps", c.eps.to_string());
            }
        }
    }
    if let Some(a) = &r.augment {
        meta.insert("augment", a.kind.name().to_string());
        let strengths = [("augment_shift", a.shift), ("augment_rotate", a.rotate), ("augment_scale", a.scale)];
        let more = [("augment_shear", a.shear), ("augment_alpha", a.alpha), ("augment_sigma", a.sigma)];
        meta.extend(strengths.into_iter().chain(more).map(|(k, v)| (k, v.to_string())));
    }
    if let Some(state) = model.optimizer.as_ref().filter(|s| s.kind == Optimizer::Adam) {
        meta.insert("adam_t", state.t.to_string());
    }
    meta
}

type Meta = HashMap<String, String>;

fn get<'a>(meta: &'a Meta, key: &str) -> Result<&'a str, String> {
    meta.get(key).map(String::as_str).ok_or_else(|| format!("metadata lacks \"{key}\" (not written by gpu-mnist?)"))
}

fn whole(meta: &Meta, key: &str) -> Result<usize, String> {
    get(meta, key)?.parse().map_err(|_| format!("metadata \"{key}\" is not a whole number"))
}

/// The layer sizes and the activation.
pub(super) fn read_network(meta: &Meta) -> Result<(Shape, Activation), String> {
    if get(meta, "format")? != FORMAT {
        return Err(format!("format \"{}\", expected \"{FORMAT}\"", get(meta, "format")?));
    }
    let bias = match get(meta, "bias")? {
        "true" => true,
        "false" => false,
        other => return Err(format!("metadata \"bias\" is \"{other}\", expected true or false")),
    };
    // "hidden" is one width, or several separated by commas for a deeper network.
    let hidden: Vec<usize> = get(meta, "hidden")?
        .split(',')
        .map(|w| w.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|_| "metadata \"hidden\" is not a list of whole numbers".to_string())?;
    if hidden.len() > MAX_HIDDEN_LAYERS {
        return Err(format!("{} hidden layers, more than the {MAX_HIDDEN_LAYERS} supported", hidden.len()));
    }
    let shape = Shape::new(whole(meta, "inputs")?, &hidden, whole(meta, "classes")?, bias);
    if shape.d == 0 || shape.hidden.contains(&0) || shape.k < 2 {
        return Err(format!("layer sizes {} cannot make a classifier", shape.describe()));
    }
    let name = get(meta, "activation")?;
    let activation = Activation::from_name(name).ok_or_else(|| format!("unknown activation \"{name}\""))?;
    Ok((shape, activation))
}

/// How the model was made; what the file does not say reads as unknown (empty, 0, NaN), but the
/// step count, which a continued run counts on, must be a whole number when it is there.
pub(super) fn read_provenance(meta: &Meta) -> Result<Provenance, String> {
    let text = |key: &str| meta.get(key).cloned().unwrap_or_default();
    Ok(Provenance {
        dataset: text("dataset"),
        iterations: optional(meta, "iterations", "a whole number", |_| true)?.unwrap_or(0),
        backend: text("backend"),
        test_accuracy: text("test_accuracy").parse().unwrap_or(f64::NAN),
        version: text("version"),
    })
}

/// `key` parsed when present; a value that does not parse, or fails `ok`, is refused.
fn optional<T: std::str::FromStr>(
    meta: &Meta,
    key: &str,
    what: &str,
    ok: impl Fn(&T) -> bool,
) -> Result<Option<T>, String> {
    match meta.get(key) {
        None => Ok(None),
        Some(v) => match v.parse::<T>() {
            Ok(x) if ok(&x) => Ok(Some(x)),
            _ => Err(format!("metadata \"{key}\" is \"{v}\", not {what}")),
        },
    }
}

/// The run's plan. Every key is optional, but one that is there must make sense.
pub(super) fn read_run(meta: &Meta) -> Result<RunRecord, String> {
    let count = |key| optional::<usize>(meta, key, "a whole number", |_| true);
    let positive = |key| optional::<usize>(meta, key, "a whole number above 0", |&v| v > 0);
    let in_range = |key, r: &Range<f32>| optional::<f32>(meta, key, r.what, r.ok);
    let fraction = |key| optional::<f64>(meta, key, ranges::FRACTION.what, ranges::FRACTION.ok);
    let named = |key: &str| meta.get(key).map(String::as_str);
    let backend = match named("backend_choice") {
        None => None,
        Some(n) => Some(BackendChoice::from_name(n).ok_or_else(|| format!("unknown backend_choice \"{n}\""))?),
    };
    let lr_schedule = match named("lr_schedule") {
        None => None,
        Some(n) => Some(LrSchedule::from_name(n).ok_or_else(|| format!("unknown lr_schedule \"{n}\""))?),
    };
    let format = match named("data_format") {
        None => None,
        Some(n) => Some(
            Format::ALL
                .into_iter()
                .find(|&f| format_name(f) == n)
                .ok_or_else(|| format!("unknown data_format \"{n}\""))?,
        ),
    };
    let optimizer = match named("optimizer") {
        None => None,
        Some(n) => {
            let kind = Optimizer::from_name(n).ok_or_else(|| format!("unknown optimizer \"{n}\""))?;
            let d = OptimizerConfig::default();
            Some(OptimizerConfig {
                kind,
                momentum: in_range("momentum", &ranges::DECAY_RATE)?.unwrap_or(d.momentum),
                beta1: in_range("beta1", &ranges::DECAY_RATE)?.unwrap_or(d.beta1),
                beta2: in_range("beta2", &ranges::DECAY_RATE)?.unwrap_or(d.beta2),
                eps: in_range("eps", &ranges::ABOVE_ZERO)?.unwrap_or(d.eps),
                weight_decay: in_range("weight_decay", &ranges::WEIGHT_DECAY)?.unwrap_or(d.weight_decay),
            })
        }
    };
    let augment = match named("augment") {
        None => None,
        Some(n) => {
            let kind = Augmentation::from_name(n).ok_or_else(|| format!("unknown augment \"{n}\""))?;
            let d = Augment::default();
            Some(Augment {
                kind,
                shift: in_range("augment_shift", &ranges::STRENGTH)?.unwrap_or(d.shift),
                rotate: in_range("augment_rotate", &ranges::ANGLE)?.unwrap_or(d.rotate),
                scale: in_range("augment_scale", &ranges::SCALE)?.unwrap_or(d.scale),
                shear: in_range("augment_shear", &ranges::ANGLE)?.unwrap_or(d.shear),
                alpha: in_range("augment_alpha", &ranges::STRENGTH)?.unwrap_or(d.alpha),
                sigma: in_range("augment_sigma", &ranges::SIGMA)?.unwrap_or(d.sigma),
            })
        }
    };
    let keep_best = match named("keep_best") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(v) => return Err(format!("metadata \"keep_best\" is \"{v}\", not true or false")),
    };
    Ok(RunRecord {
        augment,
        keep_best,
        patience: positive("patience")?,
        dropout: in_range("dropout", &ranges::DROPOUT)?,
        best_of: count("best_of")?,
        seed: optional(meta, "seed", "a whole number", |_| true)?,
        backend,
        data: named("data").map(PathBuf::from),
        test_data: named("test_data").map(PathBuf::from),
        format,
        samples: positive("samples")?,
        test_samples: positive("test_samples")?,
        val_split: fraction("val_split")?,
        lr: in_range("lr", &ranges::ABOVE_ZERO)?,
        lr_schedule,
        warmup: count("warmup")?,
        lr_step_every: positive("lr_step_every")?,
        lr_gamma: in_range("lr_gamma", &ranges::DECAY_FACTOR)?,
        planned_iterations: count("planned_iterations")?,
        optimizer,
        batch_size: positive("batch_size")?,
        batch_origin: count("batch_origin")?,
        eval_every: positive("eval_every")?,
        report_every: positive("report_every")?,
        target_accuracy: fraction("target_accuracy")?,
    })
}

/// The steps a rule's state has taken: Adam's `adam_t` (required with Adam's state), 0 for the
/// others (their rules do not use it).
pub(super) fn read_steps(meta: &Meta, kind: Optimizer) -> Result<u64, String> {
    match kind {
        Optimizer::Adam => Ok(whole(meta, "adam_t")? as u64),
        _ => Ok(0),
    }
}

/// The name `data_format` stores (the command line's `--format` value).
fn format_name(f: Format) -> &'static str {
    match f {
        Format::Idx => "idx",
        Format::Csv => "csv",
        Format::Images => "images",
    }
}
