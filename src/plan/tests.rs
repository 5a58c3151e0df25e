//! One test per rule of `TrainPlan::resolve` and `DataPlan::resolve`.

use super::*;
use crate::backend::BackendChoice;
use crate::checkpoint::Provenance;
use crate::model::{K, Params};
use crate::optim::{Optimizer, OptimizerState};
use crate::schedule::LrSchedule;

/// 1,000 training images of 16 pixels, 200 test images, no validation split.
const FACTS: DataFacts = DataFacts { d: 16, train: 1000, validation: 0, test: 200 };

fn hidden(h: &[usize]) -> TrainRequest {
    TrainRequest { hidden: Some(h.to_vec()), ..Default::default() }
}

/// `TrainPlan::resolve` with the data `DataPlan::resolve` chooses, as the program calls them.
fn resolve(request: &TrainRequest, resumed: Option<&Model>, facts: &DataFacts) -> Result<TrainPlan, PlanError> {
    TrainPlan::resolve(request, resumed, DataPlan::resolve(request, resumed), facts)
}

fn plan(request: &TrainRequest) -> TrainPlan {
    resolve(request, None, &FACTS).expect("a valid plan")
}

fn refused(request: &TrainRequest, resumed: Option<&Model>, facts: &DataFacts) -> String {
    match resolve(request, resumed, facts) {
        Err(PlanError(m)) => m,
        Ok(p) => panic!("expected a refusal, got {p:?}"),
    }
}

/// The model file `plan` would save after `done` of its steps (parameters zero), with the
/// optimizer state of its rule.
fn saved(plan: &TrainPlan, done: usize) -> Model {
    let provenance = Provenance {
        dataset: plan.data.source.kind.name().into(),
        iterations: plan.steps.done + done,
        backend: "test".into(),
        test_accuracy: 0.5,
        version: "test".into(),
    };
    let state = OptimizerState::new(plan.optimizer.kind, plan.shape.clone());
    let optimizer = (!plan.optimizer.kind.moments().is_empty()).then_some(state);
    let params = Params::zeros(plan.shape.clone());
    Model { params, activation: plan.activation, provenance, run: plan.record.clone(), optimizer }
}

fn resume(request: &TrainRequest, model: &Model) -> TrainPlan {
    resolve(request, Some(model), &FACTS).expect("a valid plan")
}

#[test]
fn a_new_run_takes_the_defaults() {
    let p = plan(&TrainRequest::default());
    assert_eq!(p.shape, Shape::new(16, &DEFAULT_HIDDEN, K, true));
    assert_eq!((p.activation, p.seed, p.init), (DEFAULT_ACTIVATION, DEFAULT_SEED, Init::Seeded(DEFAULT_SEED)));
    assert_eq!(p.optimizer, OptimizerConfig::default());
    assert_eq!(
        p.schedule,
        Schedule { step_every: 166, gamma: DEFAULT_LR_GAMMA, total: 500, ..Schedule::constant(DEFAULT_LR) }
    );
    assert_eq!(p.batching, Batching { size: 1000, batches: 1, origin: 0 });
    assert_eq!(p.steps, Steps { done: 0, count: DEFAULT_ITERATIONS });
    assert_eq!(
        p.reports,
        Reports { every: 25, held_out: false, target_accuracy: None, keep_best: false, patience: None }
    );
    assert!(p.notes.is_empty());
}

#[test]
fn epochs_count_batches_and_iterations_count_steps() {
    let batch = |b: usize, iterations: Option<usize>, epochs: Option<usize>| {
        plan(&TrainRequest { batch_size: Some(b), iterations, epochs, ..Default::default() })
    };
    // 1,000 rows in batches of 128: 8 steps an epoch, the last of 104 rows.
    let p = batch(128, None, Some(3));
    assert_eq!((p.batching.batches, p.steps.count, p.schedule.total), (8, 24, 24));
    assert_eq!(batch(128, None, None).steps.count, DEFAULT_EPOCHS * 8, "10 epochs by default");
    assert_eq!(batch(128, Some(5), None).steps.count, 5, "iterations are steps");
    // A batch of every row or more is full-batch training.
    let full = batch(5000, None, None);
    assert_eq!((full.batching.size, full.batching.batches, full.batching.mini()), (1000, 1, None));
    assert_eq!(full.steps.count, DEFAULT_ITERATIONS);
    let e =
        refused(&TrainRequest { batch_size: Some(1), epochs: Some(usize::MAX), ..Default::default() }, None, &FACTS);
    assert!(e.contains("cannot be counted"), "{e}");
}

#[test]
fn report_points_and_what_they_measure() {
    let p = plan(&TrainRequest { iterations: Some(200), ..Default::default() });
    assert_eq!((p.reports.every, p.reports.held_out), (10, false), "20 per full-batch run, train figures only");
    let p = plan(&TrainRequest { iterations: Some(200), eval_every: Some(7), ..Default::default() });
    assert_eq!((p.reports.every, p.reports.held_out), (7, true), "--eval-every also measures held-out data");
    let p = plan(&TrainRequest { iterations: Some(3), curves: true, ..Default::default() });
    assert_eq!((p.reports.every, p.reports.held_out), (1, true), "at least every step; --plot needs held-out data");
    let p = plan(&TrainRequest { iterations: Some(1000), target_accuracy: Some(0.9), ..Default::default() });
    assert_eq!((p.reports.every, p.reports.held_out), (TARGET_REPORT_GAP, true), "a target is checked often");
    let p = plan(&TrainRequest { batch_size: Some(300), ..Default::default() });
    assert_eq!((p.reports.every, p.reports.held_out), (4, true), "mini-batches report every epoch");
}

#[test]
fn a_target_accuracy_needs_held_out_data() {
    let target = TrainRequest { target_accuracy: Some(0.9), ..Default::default() };
    let none = DataFacts { test: 0, ..FACTS };
    assert!(refused(&target, None, &none).contains("--target-accuracy needs held-out data"));
    assert!(resolve(&target, None, &DataFacts { validation: 100, ..none }).is_ok());
    assert!(resolve(&target, None, &FACTS).is_ok());
}

#[test]
fn schedules_span_the_models_whole_training() {
    let r = TrainRequest {
        iterations: Some(90),
        lr: Some(0.3),
        lr_schedule: Some(LrSchedule::Step),
        warmup: Some(9),
        lr_gamma: Some(0.5),
        ..Default::default()
    };
    let p = plan(&r);
    assert_eq!(
        p.schedule,
        Schedule { kind: LrSchedule::Step, base: 0.3, warmup: 9, step_every: 27, gamma: 0.5, total: 90 }
    );
    assert_eq!(plan(&TrainRequest { lr_step_every: Some(4), ..r.clone() }).schedule.step_every, 4);
    // Continued for 30 more: the same rate and schedule, re-planned to end at iteration 120.
    let more = resume(&TrainRequest { iterations: Some(30), ..Default::default() }, &saved(&p, 90));
    assert_eq!(more.schedule, Schedule { step_every: 37, total: 120, ..p.schedule });
    assert_eq!(more.steps, Steps { done: 90, count: 30 });
    let faster = resume(&TrainRequest { iterations: Some(30), lr: Some(0.1), ..Default::default() }, &saved(&p, 90));
    assert_eq!(faster.schedule.base, 0.1, "an option given wins over the saved plan");
}

#[test]
fn a_continued_run_goes_on_exactly_as_planned() {
    let r = TrainRequest {
        epochs: Some(5),
        batch_size: Some(300),
        lr: Some(0.002),
        lr_schedule: Some(LrSchedule::Cosine),
        optimizer: Some(Optimizer::Adam),
        beta1: Some(0.8),
        weight_decay: Some(0.1),
        seed: Some(7),
        hidden: Some(vec![6, 5]),
        activation: Some(Activation::Elu),
        no_bias: true,
        target_accuracy: Some(0.99),
        data: DataRequest { samples: Some(900), val_split: Some(0.1), ..Default::default() },
        ..Default::default()
    };
    let p = plan(&r);
    assert_eq!(p.steps.count, 20);
    // Interrupted after 7 of its 20 steps, continued with no options at all.
    let q = resume(&TrainRequest::default(), &saved(&p, 7));
    assert_eq!(q.steps, Steps { done: 7, count: 13 });
    assert_eq!(q.schedule, p.schedule, "the same rates, to the same planned end");
    assert_eq!((q.batching, q.seed, q.optimizer, q.reports), (p.batching, p.seed, p.optimizer, p.reports));
    assert_eq!((&q.shape, q.activation, &q.data), (&p.shape, p.activation, &p.data));
    assert_eq!(q.init, Init::Resumed { keep_state: true });
    assert_eq!(q.record, p.record, "and it saves the same plan");
    assert_eq!(q.notes, vec!["continuing the planned 20 steps: 13 to go".to_string()]);
    // A finished run continued without a count trains the default amount more.
    let done = resume(&TrainRequest::default(), &saved(&p, 20));
    assert_eq!((done.steps.count, done.schedule.total), (DEFAULT_EPOCHS * 4, 20 + DEFAULT_EPOCHS * 4));
}

#[test]
fn a_continued_model_keeps_its_layers() {
    let p = plan(&TrainRequest { activation: Some(Activation::Sigmoid), ..hidden(&[12, 8]) });
    let m = saved(&p, 10);
    let same = TrainRequest { activation: Some(Activation::Sigmoid), ..hidden(&[12, 8]) };
    assert_eq!(resume(&same, &m).shape, p.shape, "repeating the layers is fine");
    let e = refused(&hidden(&[12]), Some(&m), &FACTS);
    assert!(e.contains("--hidden 12 differs from the model's 12,8") && e.contains("new run"), "{e}");
    let e = refused(&TrainRequest { activation: Some(Activation::Relu), ..Default::default() }, Some(&m), &FACTS);
    assert!(e.contains("--activation relu differs from the model's sigmoid"), "{e}");
    let e = refused(&TrainRequest { no_bias: true, ..Default::default() }, Some(&m), &FACTS);
    assert!(e.contains("--no-bias"), "{e}");
    let e = refused(&TrainRequest::default(), Some(&m), &DataFacts { d: 784, ..FACTS });
    assert!(e.contains("16 inputs") && e.contains("the data 784"), "{e}");
}

#[test]
fn the_batch_origin_moves_when_the_batching_changes() {
    let full = plan(&TrainRequest { iterations: Some(3), ..Default::default() });
    let mini = resume(&TrainRequest { batch_size: Some(300), ..Default::default() }, &saved(&full, 3));
    assert_eq!(mini.batching, Batching { size: 300, batches: 4, origin: 3 }, "epochs count from here");
    assert!(mini.notes.iter().any(|n| n.contains("epochs of 300-row batches start here")), "{:?}", mini.notes);
    // Continued again on the same batches: the origin stays where it was.
    let again = resume(&TrainRequest { iterations: Some(2), ..Default::default() }, &saved(&mini, 4));
    assert_eq!(again.batching, Batching { size: 300, batches: 4, origin: 3 }, "the saved batch size and origin");
    assert!(again.notes.is_empty(), "{:?}", again.notes);
    // Back to full batches: a new origin, no epochs to announce.
    let back =
        resume(&TrainRequest { batch_size: Some(1000), iterations: Some(1), ..Default::default() }, &saved(&again, 2));
    assert_eq!(back.batching, Batching { size: 1000, batches: 1, origin: 9 });
}

#[test]
fn optimizer_state_continues_only_under_its_own_rule() {
    let adam = plan(&TrainRequest { optimizer: Some(Optimizer::Adam), beta2: Some(0.99), ..Default::default() });
    let m = saved(&adam, 5);
    let same = resume(&TrainRequest { iterations: Some(1), ..Default::default() }, &m);
    assert_eq!((same.optimizer, same.init), (adam.optimizer, Init::Resumed { keep_state: true }));
    let tuned = resume(&TrainRequest { iterations: Some(1), beta1: Some(0.5), ..Default::default() }, &m);
    assert_eq!((tuned.optimizer.beta1, tuned.optimizer.beta2), (0.5, 0.99), "options given win, the rest is kept");
    let other =
        resume(&TrainRequest { iterations: Some(1), optimizer: Some(Optimizer::Momentum), ..Default::default() }, &m);
    assert_eq!((other.optimizer.kind, other.init), (Optimizer::Momentum, Init::Resumed { keep_state: false }));
}

#[test]
fn impossible_networks_are_refused_before_anything_is_allocated() {
    let e = refused(&TrainRequest { lr: Some(2.0), weight_decay: Some(0.5), ..Default::default() }, None, &FACTS);
    assert!(e.contains("must be below 1"), "{e}");
    let e = refused(&hidden(&[2; 8]), None, &FACTS);
    assert!(e.contains("at most 7"), "{e}");
    let big = TrainRequest { optimizer: Some(Optimizer::Adam), ..hidden(&[20000, 20000]) };
    let e = refused(&big, None, &DataFacts { d: 784, ..FACTS });
    assert!(e.contains("784-20000-20000-10 with adam would save a 4759 MiB model file"), "{e}");
}

#[test]
fn data_come_from_the_request_else_from_the_continued_run() {
    let r = TrainRequest {
        data: DataRequest {
            path: Some("train.csv".into()),
            test_path: Some("test.csv".into()),
            kind: Some(DatasetKind::Fashion),
            samples: Some(500),
            val_split: Some(0.2),
            ..Default::default()
        },
        seed: Some(4),
        ..Default::default()
    };
    let p = plan(&r);
    let m = saved(&p, 1);
    let kept = DataPlan::resolve(&TrainRequest::default(), Some(&m));
    let absolute = |p: &str| Some(std::path::absolute(p).expect("a path"));
    assert_eq!(
        (kept.source.path.clone(), kept.source.test_path.clone()),
        (absolute("train.csv"), absolute("test.csv"))
    );
    assert_eq!(kept.source.kind, DatasetKind::Fashion, "the whole source, its paths made absolute");
    assert_eq!(kept.selection, Selection { samples: Some(500), test_samples: None, val_split: Some(0.2), seed: 4 });
    // `--data` given: the saved test set and format belonged to the old data and are dropped.
    let data = |r: DataRequest| DataPlan::resolve(&TrainRequest { data: r, ..Default::default() }, Some(&m)).source;
    let other = data(DataRequest { path: Some("other".into()), ..Default::default() });
    assert_eq!((other.path, other.test_path, other.kind), (Some("other".into()), None, DatasetKind::Fashion));
    // Only `--test-data` given: the saved data are kept.
    let test = data(DataRequest { test_path: Some("t.csv".into()), ..Default::default() });
    assert_eq!((test.path, test.test_path), (absolute("train.csv"), Some("t.csv".into())));
    // Another data set: its own default folder.
    let other = TrainRequest {
        data: DataRequest { kind: Some(DatasetKind::Mnist), ..Default::default() },
        ..Default::default()
    };
    assert_eq!(
        DataPlan::resolve(&other, Some(&m)).source,
        DataSource { kind: DatasetKind::Mnist, ..Default::default() }
    );
}

#[test]
fn a_continued_run_keeps_its_report_points_and_backend() {
    // 100 full-batch iterations report every 5 (20 a run); interrupted at 37, the rest of the run
    // reports at the same steps, not every 63 / 20 = 3, and trains where the run did.
    let r = TrainRequest { iterations: Some(100), backend: Some(BackendChoice::Cpu), ..Default::default() };
    let p = plan(&r);
    assert_eq!((p.reports.every, p.backend), (5, BackendChoice::Cpu));
    let q = resume(&TrainRequest::default(), &saved(&p, 37));
    assert_eq!((q.steps.count, q.reports, q.backend), (63, p.reports, BackendChoice::Cpu));
    // A new length is a new run: its own report points; `--backend` given wins.
    let more = resume(
        &TrainRequest { iterations: Some(40), backend: Some(BackendChoice::Gpu), ..Default::default() },
        &saved(&p, 100),
    );
    assert_eq!((more.reports.every, more.backend), (2, BackendChoice::Gpu));
}

#[test]
fn hyper_parameters_a_rule_does_not_use_are_not_planned() {
    let p = plan(&TrainRequest { momentum: Some(0.5), beta1: Some(0.1), ..Default::default() });
    assert_eq!(p.optimizer, OptimizerConfig::default(), "plain descent uses neither");
    let m = plan(&TrainRequest {
        optimizer: Some(Optimizer::Momentum),
        momentum: Some(0.5),
        beta1: Some(0.1),
        ..Default::default()
    });
    assert_eq!((m.optimizer.momentum, m.optimizer.beta1), (0.5, OptimizerConfig::default().beta1));
}

#[test]
fn augmentation_is_asked_for_kept_by_a_continued_run_and_turned_off_by_none() {
    use crate::augment::{Augment, Augmentation};
    assert_eq!(plan(&TrainRequest::default()).augment.kind, Augmentation::None);
    assert_eq!(plan(&TrainRequest::default()).record.augment, None, "nothing saved without augmentation");
    let asked = TrainRequest { augment: Some(Augmentation::Elastic), rotate: Some(5.0), ..Default::default() };
    let p = plan(&asked);
    let want = Augment { kind: Augmentation::Elastic, rotate: 5.0, ..Augment::default() };
    assert_eq!((p.augment, p.record.augment), (want, Some(want)));
    // Continued: the saved distortion and strengths, each option still winning.
    let model = saved(&p, 10);
    assert_eq!(resume(&TrainRequest::default(), &model).augment, want);
    let stronger = TrainRequest { shift: Some(3.0), ..Default::default() };
    assert_eq!(resume(&stronger, &model).augment, Augment { shift: 3.0, ..want });
    let off = TrainRequest { augment: Some(Augmentation::None), ..Default::default() };
    assert_eq!(resume(&off, &model).record.augment, None, "--augment none turns it off");
}

#[test]
fn a_strength_without_its_distortion_is_refused() {
    use crate::augment::Augmentation;
    let shift = TrainRequest { shift: Some(2.0), ..Default::default() };
    assert!(refused(&shift, None, &FACTS).contains("--shift sets a distortion's strength: add --augment"));
    let sigma = TrainRequest { sigma: Some(2.0), ..Default::default() };
    assert!(refused(&sigma, None, &FACTS).contains("--sigma sets a distortion's strength"));
    let affine = TrainRequest { augment: Some(Augmentation::Affine), alpha: Some(9.0), ..Default::default() };
    assert!(refused(&affine, None, &FACTS).contains("--alpha is for --augment elastic, not affine"));
}

#[test]
fn keep_best_and_patience_need_validation_data_and_a_continued_run_keeps_them() {
    let with_val = DataFacts { validation: 100, ..FACTS };
    let asked = TrainRequest { keep_best: true, patience: Some(3), ..Default::default() };
    let p = resolve(&asked, None, &with_val).expect("a valid plan");
    assert!(p.reports.keep_best && p.reports.patience == Some(3) && p.reports.held_out);
    assert_eq!((p.record.keep_best, p.record.patience), (Some(true), Some(3)));
    let continued = resolve(&TrainRequest::default(), Some(&saved(&p, 10)), &with_val).expect("a valid plan");
    assert_eq!((continued.reports.keep_best, continued.reports.patience), (true, Some(3)));
    assert!(refused(&asked, None, &FACTS).contains("--keep-best judges the model on validation data"));
    let patience = TrainRequest { patience: Some(2), ..Default::default() };
    assert!(refused(&patience, None, &FACTS).contains("--patience judges the model on validation data"));
}

#[test]
fn dropout_is_asked_for_seeded_kept_by_a_continued_run_and_turned_off_by_zero() {
    let p = plan(&TrainRequest::default());
    assert!(!p.dropout.is_on() && p.record.dropout.is_none(), "no dropout unless asked, nothing saved");
    let asked = TrainRequest { dropout: Some(0.3), seed: Some(4), ..Default::default() };
    let p = plan(&asked);
    assert_eq!((p.dropout.p, p.dropout.seed, p.record.dropout), (0.3, 4, Some(0.3)));
    let model = saved(&p, 10);
    let continued = resume(&TrainRequest::default(), &model);
    assert_eq!((continued.dropout.p, continued.dropout.seed), (0.3, 4), "the same masks' seed");
    let off = resume(&TrainRequest { dropout: Some(0.0), ..Default::default() }, &model);
    assert!(!off.dropout.is_on() && off.record.dropout.is_none(), "--dropout 0 turns it off");
}
