//! The training loop, generic over the backend: it carries out a `TrainPlan`. Full-batch or
//! mini-batch steps (each epoch visits the training rows in a fresh seeded order), report points,
//! optional evaluation on the held-out splits with an optional target accuracy that ends the run,
//! and optional step-by-step verification against a second backend.

mod events;
mod verify;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::backend::{Backend, Split, Verifier};
use crate::plan::TrainPlan;
pub use events::{Best, Event, Reached, Summary, TrainError};
pub use verify::{KINK_ROWS, KINK_SAMPLES, VERIFY_TOLERANCE, relative_difference, worst};

/// The order in which mini-batch epoch `epoch` visits `n` training rows: a permutation seeded by
/// the run's seed and the epoch, the same on every backend and machine.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    order.shuffle(&mut rng);
    order
}

/// The epoch and the batch of the `position`-th step (0-based) of training on `batches` batches
/// an epoch.
pub fn batch_position(position: usize, batches: usize) -> (usize, usize) {
    (position / batches.max(1), position % batches.max(1))
}

/// Takes `plan`'s steps on `backend`, verifying every `plan.verify_every`-th on `verifier`, until
/// the plan is done, its target accuracy is reached or `stop` is set (by Ctrl-C).
pub fn train<B: Backend + ?Sized>(
    backend: &mut B,
    plan: &TrainPlan,
    mut verifier: Option<&mut dyn Verifier>,
    stop: Option<&AtomicBool>,
    on_event: &mut dyn FnMut(Event),
) -> Result<Summary, TrainError> {
    let (steps, reports, origin) = (plan.steps, plan.reports, plan.batching.origin);
    let lr = plan.schedule.base;
    let start = Instant::now();
    // Time spent checking rather than training (verification, test evaluation) is left out.
    let mut checking = 0.0;
    let mut done = 0;
    let mut reached = None;
    // The best validation accuracy so far, and the report points since it (for --patience).
    let (mut best, mut since_best): (Option<Best>, usize) = (None, 0);
    let mut patience_ran_out = None;
    let batches = backend.batches();
    for it in 1..=steps.count {
        // The model's step count so far decides the epoch and batch, so a resumed run goes on
        // with the epoch it stopped in.
        let step = steps.done + it - 1;
        let position = step - origin.min(step);
        let (epoch, batch) = batch_position(position, batches);
        if batch == 0 || it == 1 {
            backend.begin_epoch(epoch)?;
            if let Some(v) = verifier.as_deref_mut() {
                v.begin_epoch(epoch)?;
            }
        }
        if batches > 1 && (batch == 0 || it == 1) {
            let order = epoch_order(backend.train_rows(), plan.seed, epoch);
            backend.shuffle(&order)?;
            if let Some(v) = verifier.as_deref_mut() {
                v.shuffle(&order)?;
            }
        }
        backend.begin_step(step as u64);
        if let Some(v) = verifier.as_deref_mut() {
            v.begin_step(step as u64);
        }
        let verify = verifier.as_deref().filter(|_| plan.verify_every.is_some_and(|k| it % k == 0 || it == 1));
        // Reading from a GPU waits for its queue: the steps still running finish on the training
        // clock first, so that checking never absorbs training work.
        let before = match verify {
            Some(_) => {
                backend.wait()?;
                let t = Instant::now();
                let p = backend.params()?;
                checking += t.elapsed().as_secs_f64();
                Some(p)
            }
            None => None,
        };
        backend.step(batch, plan.schedule.lr(step + 1))?;
        done = it;
        if let (Some(v), Some(before)) = (verify, before) {
            backend.wait()?;
            let t = Instant::now();
            let event = verify::verify_step(backend, v, plan.activation, &before, batch, it)?;
            checking += t.elapsed().as_secs_f64();
            on_event(event);
        }
        on_event(Event::Step { iteration: it });
        let stop = stop.is_some_and(|s| s.load(Ordering::Relaxed));
        // Report points fall on multiples of `reports.every` of the batching's steps, so a resumed
        // mini-batch run still reports at the ends of epochs.
        let report = (position + 1) % reports.every == 0 || it == steps.count || stop;
        // Reading a GPU's statistics waits for it, so it diverges unnoticed until a report point;
        // the CPU's are free and its latest batch is checked every iteration.
        if !report && backend.free_stats() {
            let latest = backend.batch_stats(batch)?;
            if !latest.loss.is_finite() {
                return Err(TrainError::Diverged { iteration: it, loss: latest.loss, lr });
            }
        }
        if report {
            // The statistics wait for the device: on the training clock.
            let train = backend.step_stats()?;
            if !train.loss.is_finite() {
                return Err(TrainError::Diverged { iteration: it, loss: train.loss, lr });
            }
            let t = Instant::now();
            let held_out = |split| match reports.held_out {
                true => backend.evaluate(split).map(|s| (s.n > 0).then_some(s)),
                false => Ok(None),
            };
            let (validation, test) = (held_out(Split::Validation)?, held_out(Split::Test)?);
            let (params, state) = (backend.params()?, backend.optimizer_state()?);
            checking += t.elapsed().as_secs_f64();
            let seconds = start.elapsed().as_secs_f64() - checking;
            on_event(Event::Report { iteration: it, train, validation, test, seconds });
            if params.is_finite() {
                on_event(Event::Snapshot { iteration: it, params, state });
            }
            if let (Some(patience), Some(v)) = (reports.patience, validation) {
                if best.is_none_or(|b| v.accuracy() > b.accuracy) {
                    (best, since_best) = (Some(Best { iteration: it, accuracy: v.accuracy() }), 0);
                } else {
                    since_best += 1;
                    if since_best >= patience {
                        patience_ran_out = best;
                        break;
                    }
                }
            }
            let judged = validation.map(|s| (s, Split::Validation)).or(test.map(|s| (s, Split::Test)));
            if let (Some(target), Some((stats, split))) = (reports.target_accuracy, judged)
                && stats.accuracy() >= target
            {
                let epochs = (position + 1) as f64 / batches as f64;
                let wall_seconds = start.elapsed().as_secs_f64();
                let accuracy = stats.accuracy();
                reached = Some(Reached { iteration: it, epochs, accuracy, split, seconds, wall_seconds });
                break;
            }
        }
        if stop {
            break;
        }
    }
    let seconds = reached.map_or_else(|| start.elapsed().as_secs_f64() - checking, |r| r.seconds);
    let train = backend.evaluate(Split::Train)?;
    if !train.loss.is_finite() {
        return Err(TrainError::Diverged { iteration: done, loss: train.loss, lr });
    }
    let validation = backend.evaluate(Split::Validation)?;
    let test = backend.evaluate(Split::Test)?;
    let interrupted = done < steps.count && reached.is_none() && patience_ran_out.is_none();
    Ok(Summary { iterations: done, reached, train, validation, test, seconds, interrupted, patience_ran_out })
}

#[cfg(test)]
mod tests;
