use std::cell::Cell;
use std::time::Duration;

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

/// A backend whose gradients are the CPU's, times `gradient_scale`, and whose loss is `loss` (the
/// CPU's where `None`).
/// Like a GPU's, its steps return at once and leave `step_cost` of work each on a queue that
/// every read (and `wait`) first sleeps off.
struct Fake {
    cpu: CpuBackend,
    gradient_scale: f32,
    loss: Option<f64>,
    step_cost: Duration,
    queued: Cell<Duration>,
}

impl Fake {
    fn drain(&self) {
        std::thread::sleep(self.queued.take());
    }
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
        self.queued.set(self.queued.get() + self.step_cost);
        self.cpu.step(batch, lr)
    }
    fn wait(&self) -> Result<(), BackendError> {
        self.drain();
        Ok(())
    }
    fn batch_stats(&self, batch: usize) -> Result<Stats, BackendError> {
        self.drain();
        let s = self.cpu.batch_stats(batch)?;
        Ok(Stats { loss: self.loss.unwrap_or(s.loss), ..s })
    }
    fn step_stats(&self) -> Result<Stats, BackendError> {
        self.drain();
        let s = self.cpu.step_stats()?;
        Ok(Stats { loss: self.loss.unwrap_or(s.loss), ..s })
    }
    fn evaluate(&self, split: Split) -> Result<Stats, BackendError> {
        self.drain();
        self.cpu.evaluate(split)
    }
    fn params(&self) -> Result<Params, BackendError> {
        self.drain();
        self.cpu.params()
    }
    fn optimizer_state(&self) -> Result<crate::optim::OptimizerState, BackendError> {
        self.drain();
        self.cpu.optimizer_state()
    }
    fn gradients(&self) -> Result<Params, BackendError> {
        self.drain();
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
    let (step_cost, queued) = (Duration::ZERO, Cell::new(Duration::ZERO));
    let fake = Fake { cpu, gradient_scale, loss, step_cost, queued };
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
    let (mut b, mut v) = fake(1.01, None, Activation::Sigmoid, 40);
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
        let (mut b, mut v) = fake(scale, None, Activation::Relu, 4000);
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
    let (mut b, _) = fake(1.0, Some(f64::NAN), Activation::Relu, 40);
    match train(&mut b, &plan(3, false, Activation::Relu, 40), None, None, &mut |_| {}) {
        Err(e @ TrainError::Diverged { iteration: 1, .. }) => assert!(e.to_string().contains("smaller --lr")),
        other => panic!("expected divergence, got {other:?}"),
    }
}

/// A verifier that takes `cost` for each step it recomputes.
struct Slow {
    cpu: CpuBackend,
    cost: Duration,
}

impl Verifier for Slow {
    fn name(&self) -> &'static str {
        "slow"
    }
    fn shuffle(&mut self, order: &[u32]) -> Result<(), BackendError> {
        Verifier::shuffle(&mut self.cpu, order)
    }
    fn recompute(&self, params: &Params, batch: usize) -> Result<(Params, Stats), BackendError> {
        std::thread::sleep(self.cost);
        self.cpu.recompute(params, batch)
    }
}

#[test]
fn training_time_covers_the_queue_and_leaves_verification_out() {
    // Four steps of 60 ms queued work, each verified at a cost of 150 ms: the training clock must
    // hold the 240 ms of queue (even though `step` returns at once) and none of the 600 ms of
    // verification. A sleep never ends early; the margin above is half the verification, so a
    // loaded machine's late wake-ups cannot pass a clock that counts verification.
    let (mut b, cpu) = fake(1.0, None, Activation::Sigmoid, 40);
    b.step_cost = Duration::from_millis(60);
    let mut v = Slow { cpu, cost: Duration::from_millis(150) };
    let mut reported = Vec::new();
    let four = plan(4, true, Activation::Sigmoid, 40);
    let summary = train(&mut b, &four, Some(&mut v), None, &mut |e| {
        if let Event::Report { seconds, .. } = e {
            reported.push(seconds)
        }
    });
    let summary = summary.expect("the fake's steps are the CPU's");
    assert!(summary.seconds >= 0.24, "the queue's 240 ms are training time: {:.3} s", summary.seconds);
    assert!(summary.seconds < 0.54, "verification is not training time: {:.3} s", summary.seconds);
    assert_eq!(reported.len(), 4, "a report every step");
    assert!(reported.windows(2).all(|w| w[0] <= w[1]) && reported[0] >= 0.06, "{reported:?}");
}
