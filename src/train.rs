//! The training loop, generic over the backend: full-batch gradient descent with report points,
//! optional evaluation on the test set, and optional step-by-step verification against the CPU.

use std::time::Instant;

use crate::backend::{Backend, BackendError, Split};
use crate::cpu::CpuBackend;
use crate::model::{Params, Stats};

/// Largest relative difference `--verify-every` accepts between a GPU step and the CPU's. Both
/// sum 60,000 f32 terms per gradient element in different orders; measured differences are
/// ~1e-6..1e-5 of each tensor's largest magnitude, so 1e-3 flags real errors without noise.
pub const VERIFY_TOLERANCE: f64 = 1e-3;

#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub iterations: usize,
    pub lr: f32,
    /// Report (train loss/accuracy) every this many iterations.
    pub report_every: usize,
    /// Also measure test accuracy at report points.
    pub eval_test: bool,
    pub verify_every: Option<usize>,
}

/// What the loop tells its caller as it goes.
pub enum Event {
    /// An iteration finished (submitted, for a GPU).
    Step { iteration: usize },
    /// A report point: training statistics of the latest step, test statistics if asked for.
    Report { iteration: usize, train: Stats, test: Option<Stats>, seconds: f64 },
    /// A verified step: largest relative differences of loss and of each gradient tensor.
    Verified { iteration: usize, loss: f64, grads: [(&'static str, f64); 4] },
}

#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub iterations: usize,
    pub train: Stats,
    pub test: Stats,
    /// Wall time of the iterations (with a final wait for the device), without the final evaluation.
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("the training loss became {loss} by iteration {iteration}; try a smaller --lr (now {lr})")]
    Diverged { iteration: usize, loss: f64, lr: f32 },
    #[error(
        "verification failed at iteration {iteration}: {what} differs from the CPU by {diff:.3e} (relative), more than {VERIFY_TOLERANCE:.0e}"
    )]
    Verify { iteration: usize, what: String, diff: f64 },
}

/// `max |a - b| / max |b|` over a tensor: the difference relative to the reference's scale.
pub fn relative_difference(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
    let diff = a.iter().zip(b).fold(0.0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
    if scale == 0.0 { diff } else { diff / scale }
}

pub fn train<B: Backend>(
    backend: &mut B,
    cfg: &TrainConfig,
    verifier: Option<&CpuBackend>,
    on_event: &mut dyn FnMut(Event),
) -> Result<Summary, TrainError> {
    let start = Instant::now();
    for it in 1..=cfg.iterations {
        let verify = verifier.filter(|_| cfg.verify_every.is_some_and(|k| it % k == 0 || it == 1));
        let before = match verify {
            Some(_) => Some(backend.params()?),
            None => None,
        };
        backend.step(cfg.lr)?;
        if let (Some(cpu), Some(before)) = (verify, before) {
            on_event(verify_step(backend, cpu, &before, it)?);
        }
        on_event(Event::Step { iteration: it });
        if it % cfg.report_every == 0 || it == cfg.iterations {
            let train = backend.step_stats()?;
            if !train.loss.is_finite() {
                return Err(TrainError::Diverged { iteration: it, loss: train.loss, lr: cfg.lr });
            }
            let test = if cfg.eval_test { Some(backend.evaluate(Split::Test)?) } else { None };
            on_event(Event::Report { iteration: it, train, test, seconds: start.elapsed().as_secs_f64() });
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let train = backend.evaluate(Split::Train)?;
    let test = backend.evaluate(Split::Test)?;
    if !train.loss.is_finite() {
        return Err(TrainError::Diverged { iteration: cfg.iterations, loss: train.loss, lr: cfg.lr });
    }
    Ok(Summary { iterations: cfg.iterations, train, test, seconds })
}

/// Recomputes the step just taken from `before` on the CPU and compares loss and gradients.
fn verify_step<B: Backend>(backend: &mut B, cpu: &CpuBackend, before: &Params, it: usize) -> Result<Event, TrainError> {
    let grads = backend.gradients()?;
    let stats = backend.step_stats()?;
    let (ref_grads, ref_stats) = cpu.gradients_at(before);
    let loss = (stats.loss - ref_stats.loss).abs() / ref_stats.loss.abs().max(1e-12);
    let mut diffs = [("", 0.0); 4];
    for (slot, ((name, g), (_, r))) in diffs.iter_mut().zip(grads.tensors().into_iter().zip(ref_grads.tensors())) {
        *slot = (name, relative_difference(g, r));
    }
    let worst = std::iter::once(("loss", loss))
        .chain(diffs.iter().map(|&(n, d)| (n, d)))
        .fold(("", 0.0), |a, b| if b.1 > a.1 || b.1.is_nan() { b } else { a });
    if !(worst.1 <= VERIFY_TOLERANCE) {
        let what = if worst.0 == "loss" { "the loss".to_string() } else { format!("gradient d{}", worst.0) };
        return Err(TrainError::Verify { iteration: it, what, diff: worst.1 });
    }
    Ok(Event::Verified { iteration: it, loss, grads: diffs })
}
