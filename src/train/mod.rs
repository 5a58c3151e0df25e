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
pub use events::{Event, Reached, Summary, TrainError};
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
    let batches = backend.batches();
    for it in 1..=steps.count {
        // The model's step count so far decides the epoch and batch, so a resumed run goes on
        // with the epoch it stopped in.
        let step = steps.done + it - 1;
        let position = step - origin.min(step);
        let (epoch, batch) = batch_position(position, batches);
        if batches > 1 && (batch == 0 || it == 1) {
            let order = epoch_order(backend.train_rows(), plan.seed, epoch);
            backend.shuffle(&order)?;
            if let Some(v) = verifier.as_deref_mut() {
                v.shuffle(&order)?;
            }
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
    let interrupted = done < steps.count && reached.is_none();
    Ok(Summary { iterations: done, reached, train, validation, test, seconds, interrupted })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendError;
    use crate::cpu::CpuBackend;
    use crate::model::{Activation, Params, Shape, Stats};
    use crate::plan::{DataFacts, TrainRequest};

    #[test]
    fn relative_difference_propagates_nan() {
        assert!(relative_difference(&[f32::NAN], &[1.0]).is_nan());
        assert!(relative_difference(&[1.0, 2.0], &[1.0, f32::NAN]).is_nan());
        assert_eq!(relative_difference(&[1.0, 2.5], &[1.0, 2.0]), 0.25);
        assert_eq!(worst([("a", 0.1), ("b", f64::NAN), ("c", 0.5)]).0, "b");
        assert_eq!(worst([("a", 0.1), ("c", 0.5)]).0, "c");
        assert_eq!(worst([("a", f64::NAN), ("b", 0.5)]).0, "a");
    }

    /// A backend whose gradients are the CPU's, times `gradient_scale`, and whose loss is `loss`.
    struct Fake {
        cpu: CpuBackend,
        gradient_scale: f32,
        loss: f64,
    }

    impl Backend for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn device(&self) -> String {
            "none".into()
        }
        fn train_rows(&self) -> usize {
            self.cpu.train_rows()
        }
        fn batches(&self) -> usize {
            self.cpu.batches()
        }
        fn shuffle(&mut self, order: &[u32]) -> Result<(), BackendError> {
            Backend::shuffle(&mut self.cpu, order)
        }
        fn step(&mut self, batch: usize, lr: f32) -> Result<(), BackendError> {
            self.cpu.step(batch, lr)
        }
        fn batch_stats(&self, batch: usize) -> Result<Stats, BackendError> {
            Ok(Stats { loss: self.loss, ..self.cpu.batch_stats(batch)? })
        }
        fn step_stats(&self) -> Result<Stats, BackendError> {
            Ok(Stats { loss: self.loss, ..self.cpu.step_stats()? })
        }
        fn evaluate(&self, split: Split) -> Result<Stats, BackendError> {
            self.cpu.evaluate(split)
        }
        fn params(&self) -> Result<Params, BackendError> {
            self.cpu.params()
        }
        fn optimizer_state(&self) -> Result<crate::optim::OptimizerState, BackendError> {
            self.cpu.optimizer_state()
        }
        fn gradients(&self) -> Result<Params, BackendError> {
            let mut g = self.cpu.gradients()?;
            g.layers[0].w.iter_mut().for_each(|v| *v *= self.gradient_scale);
            Ok(g)
        }
    }

    fn fake(gradient_scale: f32, loss: Option<f64>, act: Activation, n: usize) -> (Fake, CpuBackend) {
        let mut r = 1u32;
        let mut px = || {
            r = r.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (r >> 24) as u8
        };
        let set = crate::data::Dataset {
            n,
            rows: 2,
            cols: 4,
            pixels: (0..n * 8).map(|_| px()).collect(),
            labels: (0..n).map(|i| (i % 10) as u8).collect(),
        };
        let shape = Shape::new(8, &[5], 10, true);
        let params = Params::init(shape, act, 1);
        let data = crate::data::Splits::new(set.clone(), set);
        let cpu = CpuBackend::new(&data, params.clone(), act);
        let verifier = CpuBackend::new(&data, params, act);
        let fake = Fake { cpu, gradient_scale, loss: loss.unwrap_or(f64::NAN) };
        (fake, verifier)
    }

    /// `iterations` steps at lr 0.1 on the fake's data, reporting every step, each verified if
    /// `verify`.
    fn plan(iterations: usize, verify: bool, act: Activation, n: usize) -> TrainPlan {
        let request = TrainRequest {
            iterations: Some(iterations),
            lr: Some(0.1),
            hidden: Some(vec![5]),
            activation: Some(act),
            eval_every: Some(1),
            verify_every: verify.then_some(1),
            ..Default::default()
        };
        let facts = DataFacts { d: 8, train: n, validation: 0, test: n };
        let data = crate::plan::DataPlan::resolve(&request, None);
        TrainPlan::resolve(&request, None, data, &facts).expect("a valid plan")
    }

    #[test]
    fn verification_catches_a_wrong_gradient() {
        // Sigmoid: no kink allowance, a 1% error fails.
        let (mut b, mut v) = fake(1.01, Some(2.3), Activation::Sigmoid, 40);
        // The fake's loss is made up, so only compare gradients: make the loss match the CPU's.
        b.loss = v.gradients_at(&b.cpu.params().unwrap(), 0).1.loss;
        match train(&mut b, &plan(3, true, Activation::Sigmoid, 40), Some(&mut v), None, &mut |_| {}) {
            Err(TrainError::Verify { iteration: 1, what, diff, .. }) => {
                assert_eq!(what, "gradient dw1");
                assert!((diff - 0.01).abs() < 1e-4, "{diff}");
            }
            other => panic!("expected a verification failure, got {other:?}"),
        }
    }

    #[test]
    fn verification_under_relu_allows_only_kink_sized_differences() {
        // 4,000 samples: one on the kink (8 per 60,000 rows, at least one) may move dW1 by
        // 2·max|W2|/4000, so exact gradients pass and gradients off by half do not.
        for (scale, fails) in [(1.0, false), (1.5, true)] {
            let (mut b, mut v) = fake(scale, Some(2.3), Activation::Relu, 4000);
            b.loss = v.gradients_at(&b.cpu.params().unwrap(), 0).1.loss;
            // One step: the fake's loss is the CPU's only before the first update.
            let one = plan(1, true, Activation::Relu, 4000);
            let r = train(&mut b, &one, Some(&mut v), None, &mut |_| {});
            assert_eq!(matches!(r, Err(TrainError::Verify { .. })), fails, "gradient x{scale}: {r:?}");
        }
    }

    #[test]
    fn epoch_orders_are_seeded_permutations() {
        let a = epoch_order(1000, 7, 3);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert!(sorted.iter().enumerate().all(|(i, &r)| r as usize == i), "a permutation of 0..1000");
        assert_eq!(a, epoch_order(1000, 7, 3), "the same seed and epoch give the same order");
        assert_ne!(a, epoch_order(1000, 7, 4), "each epoch has its own order");
        assert_ne!(a, epoch_order(1000, 8, 3), "each seed has its own orders");
        assert!(crate::backend::check_order(&a, 1000).is_ok());
        assert!(crate::backend::check_order(&a[1..], 1000).is_err());
        assert!(crate::backend::check_order(&[0, 0, 1], 3).is_err());
    }

    #[test]
    fn a_nan_loss_stops_training_with_advice() {
        let (mut b, _) = fake(1.0, None, Activation::Relu, 40);
        match train(&mut b, &plan(3, false, Activation::Relu, 40), None, None, &mut |_| {}) {
            Err(e @ TrainError::Diverged { iteration: 1, .. }) => assert!(e.to_string().contains("smaller --lr")),
            other => panic!("expected divergence, got {other:?}"),
        }
    }
}
