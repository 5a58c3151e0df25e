//! The rules of a plan that concern the network and its update: what a continued model fixes,
//! and what no run may ask for.

use super::defaults::{DEFAULT_ACTIVATION, DEFAULT_HIDDEN};
use super::request::TrainRequest;
use crate::augment::{Augment, Augmentation};
use crate::checkpoint::{MAX_MODEL_BYTES, Model};
use crate::model::{Activation, K, MAX_HIDDEN_LAYERS, Shape};
use crate::optim::OptimizerConfig;

/// The layer sizes and activation: the continued model's (options may only repeat them), or
/// those asked for.
pub(super) fn network(r: &TrainRequest, resumed: Option<&Model>, d: usize) -> Result<(Shape, Activation), String> {
    let Some(m) = resumed else {
        let hidden = r.hidden.as_deref().unwrap_or(&DEFAULT_HIDDEN);
        if hidden.len() > MAX_HIDDEN_LAYERS {
            return Err(format!("--hidden lists {} layers; at most {MAX_HIDDEN_LAYERS} are supported", hidden.len()));
        }
        return Ok((Shape::new(d, hidden, K, !r.no_bias), r.activation.unwrap_or(DEFAULT_ACTIVATION)));
    };
    let s = &m.params.shape;
    let conflict = |what: String| {
        Err(format!("{what}: a continued model keeps its layers; leave the option out, or start a new run"))
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
    if s.d != d || s.k != K {
        return Err(format!("the model has {} inputs and {} classes, the data {d} and {K}", s.d, s.k));
    }
    Ok((s.clone(), m.activation))
}

/// The update rule: as asked, else the saved one; each hyper-parameter as asked, else saved,
/// else the rule's default.
pub(super) fn optimizer(r: &TrainRequest, saved: Option<OptimizerConfig>) -> OptimizerConfig {
    let base = saved.unwrap_or_default();
    OptimizerConfig {
        kind: r.optimizer.unwrap_or(base.kind),
        momentum: r.momentum.unwrap_or(base.momentum),
        beta1: r.beta1.unwrap_or(base.beta1),
        beta2: r.beta2.unwrap_or(base.beta2),
        eps: r.eps.unwrap_or(base.eps),
        weight_decay: r.weight_decay.unwrap_or(base.weight_decay),
    }
    .normalized()
}

/// The distortion each epoch draws: as asked, else the saved run's; each strength as asked, else
/// saved, else the default. Strengths without a distortion are refused, as they would do nothing.
pub(super) fn augment(r: &TrainRequest, saved: Option<Augment>) -> Result<Augment, String> {
    let base = saved.unwrap_or_default();
    let a = Augment {
        kind: r.augment.unwrap_or(base.kind),
        shift: r.shift.unwrap_or(base.shift),
        rotate: r.rotate.unwrap_or(base.rotate),
        scale: r.scale.unwrap_or(base.scale),
        shear: r.shear.unwrap_or(base.shear),
        alpha: r.alpha.unwrap_or(base.alpha),
        sigma: r.sigma.unwrap_or(base.sigma),
    };
    let affine = [("--shift", r.shift), ("--rotate", r.rotate), ("--scale", r.scale), ("--shear", r.shear)];
    let elastic = [("--alpha", r.alpha), ("--sigma", r.sigma)];
    let given = |opts: &[(&'static str, Option<f32>)]| opts.iter().find(|(_, v)| v.is_some()).map(|(n, _)| *n);
    match (a.kind, given(&affine), given(&elastic)) {
        (Augmentation::None, Some(o), _) | (Augmentation::None, None, Some(o)) => {
            Err(format!("{o} sets a distortion's strength: add --augment affine or --augment elastic"))
        }
        (Augmentation::Affine, _, Some(o)) => Err(format!("{o} is for --augment elastic, not affine")),
        _ => Ok(a),
    }
}

/// Refuses a network whose model file (parameters and the optimizer's moments) would be larger
/// than a model file may be, before anything of its size is allocated.
pub(super) fn check_model_size(shape: &Shape, optimizer: &OptimizerConfig) -> Result<(), String> {
    let file_bytes = (shape.parameter_count() as u64) * 4 * (1 + optimizer.kind.moments().len() as u64);
    if file_bytes > MAX_MODEL_BYTES {
        return Err(format!(
            "{} with {} would save a {} MiB model file, more than the {} MiB a model may have; use narrower layers",
            shape.describe(),
            optimizer.kind.name(),
            file_bytes >> 20,
            MAX_MODEL_BYTES >> 20
        ));
    }
    Ok(())
}
