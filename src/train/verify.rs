//! `--verify-every`: a step recomputed by a second backend from the parameters before it, and
//! its loss and gradients compared with the trained backend's.

use super::events::{Event, TrainError};
use crate::backend::{Backend, Verifier};
use crate::model::{Activation, Params};

/// Largest relative difference `--verify-every` accepts between a step and the verifier's. Both
/// sum a batch's rows (60,000 f32 terms per gradient element for a full batch) in different
/// orders; measured differences are ~1e-7..1e-5 of each tensor's largest magnitude, so 1e-3
/// flags real errors without noise.
pub const VERIFY_TOLERANCE: f64 = 1e-3;

/// How many samples on ReLU's kink a verified step of `KINK_ROWS` rows may differ by (see
/// `verify_step`); a batch of n rows is allowed `max(1, KINK_SAMPLES · n / KINK_ROWS)`.
pub const KINK_SAMPLES: f64 = 8.0;
pub const KINK_ROWS: f64 = 60_000.0;

/// The larger of two differences, where NaN counts as larger than anything.
fn nan_max(a: f64, b: f64) -> f64 {
    if b.is_nan() || b > a { b } else { a }
}

/// `max |a - b| / max |b|` over a tensor: the difference relative to the reference's scale.
/// NaN anywhere in either tensor makes the result NaN, so checks written `!(d <= tol)` fail.
pub fn relative_difference(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, &v| nan_max(m, v.abs() as f64));
    let diff = a.iter().zip(b).fold(0.0f64, |m, (&x, &y)| nan_max(m, (x as f64 - y as f64).abs()));
    if scale == 0.0 { diff } else { diff / scale }
}

/// The named difference that is largest (NaN first): what a failed check reports.
pub fn worst<'a>(diffs: impl IntoIterator<Item = (&'a str, f64)>) -> (&'a str, f64) {
    diffs
        .into_iter()
        .fold(("", 0.0), |w, (name, d)| if (d.is_nan() && !w.1.is_nan()) || d > w.1 { (name, d) } else { w })
}

/// Recomputes the step just taken on `batch` from `before` on `verifier` and compares loss and
/// gradients.
pub(super) fn verify_step<B: Backend + ?Sized>(
    backend: &B,
    verifier: &dyn Verifier,
    act: Activation,
    before: &Params,
    batch: usize,
    it: usize,
) -> Result<Event, TrainError> {
    let grads = backend.gradients()?;
    let stats = backend.batch_stats(batch)?;
    let (ref_grads, ref_stats) = verifier.recompute(before, batch)?;
    let loss = (stats.loss - ref_stats.loss).abs() / ref_stats.loss.abs().max(1e-12);
    // Under ReLU a pre-activation within rounding of 0 can fall on different sides of the kink on
    // the two devices. In a one-hidden-layer network each such sample moves dW1[:, j] and db1[j]
    // by at most 2·max|W2| / N (|p - onehot(y)| sums to at most 2, x <= 1); late in training db1
    // is small enough for one sample to be 1e-3 of its scale (late in the 500-iteration default
    // run). Deeper networks get the same allowance, from the output layer's weights, on every
    // layer below the output.
    let out = before.layers.len() - 1;
    let max_w = before.layers[out].w.iter().fold(0.0f64, |m, &w| m.max(w.abs() as f64));
    // The samples near the kink are a fraction of the batch: KINK_SAMPLES of a 60,000-row full
    // batch, proportionally fewer (at least one) in a mini-batch, whose 1/B weighs each more.
    let n = ref_stats.n.max(1) as f64;
    let samples = (KINK_SAMPLES * n / KINK_ROWS).max(1.0);
    let kink = match act {
        Activation::Relu => samples * 2.0 * max_w / n,
        _ => 0.0,
    };
    let (mut diffs, mut checked) = (Vec::new(), Vec::new());
    let pairs = grads.tensors().into_iter().zip(ref_grads.tensors());
    for (i, ((name, g), (_, r))) in pairs.enumerate() {
        let rel = relative_difference(g, r);
        let scale = r.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
        let below_output = i / 2 < out;
        let allowance = if below_output && scale > 0.0 { kink / scale } else { 0.0 };
        diffs.push((name, rel));
        checked.push((name, if rel.is_nan() { rel } else { (rel - allowance).max(0.0) }));
    }
    let worst = worst(std::iter::once(("loss", loss)).chain(checked));
    if !(worst.1 <= VERIFY_TOLERANCE) {
        let what = if worst.0 == "loss" { "the loss".to_string() } else { format!("gradient d{}", worst.0) };
        let (verifier, diff, tolerance) = (verifier.name(), worst.1, VERIFY_TOLERANCE);
        return Err(TrainError::Verify { iteration: it, what, verifier, diff, tolerance });
    }
    Ok(Event::Verified { iteration: it, verifier: verifier.name(), loss, grads: diffs })
}
