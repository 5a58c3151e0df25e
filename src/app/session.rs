//! One training run on a backend: progress bar or plain lines, report points, `--metrics` and
//! `--plot`, and the model saved to `--out` at the end, on Ctrl-C (with the command to resume),
//! and, when training fails (divergence, a GPU fault), as of the last report point whose
//! parameters were all finite, so a failure never costs the work before it.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::report::{format_epochs, percent};
use gpu_mnist::backend::{Backend, Split, Verifier};
use gpu_mnist::checkpoint::{self, Model, Provenance, RunRecord};
use gpu_mnist::model::{Params, Stats};
use gpu_mnist::optim::OptimizerState;
use gpu_mnist::plan::TrainPlan;
use gpu_mnist::plots::{self, CurvePoint};
use gpu_mnist::train::{self, Event, Summary, TrainError};

/// A run: its plan and where its results go.
pub struct Session<'a> {
    pub plan: &'a TrainPlan,
    /// The model file written at the end (and on Ctrl-C or a failure).
    pub out: PathBuf,
    pub plot: Option<PathBuf>,
    pub metrics: Option<PathBuf>,
    /// A folder for one weight-tile frame per report point (`--plot-weights DIR/`).
    pub weight_frames: Option<PathBuf>,
    /// Sees every event of the loop before the session handles it (`train --serve`'s page).
    pub watch: Option<&'a dyn Fn(&Event)>,
}

/// Training stopped by Ctrl-C; the model was saved. `main` exits with status 130 for it.
#[derive(Debug, thiserror::Error)]
#[error("interrupted at iteration {iteration} of {planned}; the model is saved in {out}; resume with: {resume}")]
pub struct Interrupted {
    pub iteration: usize,
    pub planned: usize,
    pub out: String,
    pub resume: String,
}

/// The training loop itself failed (not an output file): the last good parameters get saved.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct Failed(TrainError);

/// Parameters after `iteration`, all finite, the optimizer's state with them, and the test
/// accuracy reported with them.
#[derive(Clone)]
struct Snapshot {
    iteration: usize,
    params: Params,
    state: OptimizerState,
    test_accuracy: Option<f64>,
}

/// Trains `b` (see the module documentation) and saves the model.
pub fn run<B: Backend>(
    b: &mut B,
    s: &Session,
    verifier: Option<&mut dyn Verifier>,
    stop: &AtomicBool,
) -> Result<Summary> {
    let mut last_good = None;
    let mut best = None;
    // The saved plan continues the run, so the model file alone is what resuming needs.
    let resume = format!("gpu-mnist train --init-from {}", s.out.display());
    let out = s.out.display().to_string();
    match progress(b, s, verifier, stop, &mut last_good, &mut best) {
        Ok(summary) => {
            let test_accuracy = (summary.test.n > 0).then(|| summary.test.accuracy());
            match best.filter(|(snap, _)| s.plan.reports.keep_best && snap.iteration != summary.iterations) {
                Some((Snapshot { iteration, params, state, test_accuracy }, accuracy)) => {
                    let to = s.plan.steps.done + summary.iterations;
                    save(s, b, params, Some(state), iteration, test_accuracy, Some(to))?;
                    println!(
                        "kept: the model of step {} (validation accuracy {}), the best report point of the run to step {to}",
                        s.plan.steps.done + iteration,
                        percent(accuracy)
                    );
                }
                _ => {
                    let state = b.optimizer_state()?;
                    save(s, b, b.params()?, Some(state), summary.iterations, test_accuracy, None)?;
                }
            }
            if summary.interrupted {
                let (iteration, planned) = (summary.iterations, s.plan.steps.count);
                return Err(Interrupted { iteration, planned, out, resume }.into());
            }
            Ok(summary)
        }
        Err(e) if e.is::<Failed>() => match last_good {
            Some(Snapshot { iteration, params, state, test_accuracy }) => {
                save(s, b, params, Some(state), iteration, test_accuracy, None)
                    .with_context(|| format!("{e}; saving the model of iteration {iteration} also failed"))?;
                Err(anyhow::anyhow!(
                    "{e}; saved the last good model (iteration {iteration}) to {out}; to go on: {resume}"
                ))
            }
            None => Err(anyhow::anyhow!("{e}; no earlier model was good to save, {out} is untouched")),
        },
        Err(e) => Err(e),
    }
}

/// Saves `params` after `iterations` of this run, atomically, with how it was made and the plan
/// that continues it.
fn save<B: Backend>(
    s: &Session,
    b: &B,
    params: Params,
    state: Option<OptimizerState>,
    iterations: usize,
    test_accuracy: Option<f64>,
    best_of: Option<usize>,
) -> Result<()> {
    let plan = s.plan;
    let provenance = Provenance {
        dataset: plan.data.source.kind.name().into(),
        iterations: plan.steps.done + iterations,
        backend: format!("{} ({})", b.name(), b.device()),
        test_accuracy: test_accuracy.unwrap_or(f64::NAN),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let optimizer = state.filter(|st| !st.kind.moments().is_empty());
    let run = RunRecord { best_of, ..plan.record.clone() };
    let model = Model { params, activation: plan.activation, provenance, run, optimizer };
    checkpoint::save(&s.out, &model)?;
    println!("saved: {}", s.out.display());
    Ok(())
}

/// Where the report points go besides the screen: `--metrics` (JSON lines, appended as training
/// goes) and `--plot` (the curve, drawn at the end).
struct Outputs {
    metrics: Option<(PathBuf, std::fs::File)>,
    curve: Vec<CurvePoint>,
}

impl Outputs {
    fn new(s: &Session) -> Result<Self> {
        let metrics = match &s.metrics {
            Some(p) => {
                let f = std::fs::OpenOptions::new().create(true).append(true).open(p);
                Some((p.clone(), f.with_context(|| format!("opening {} for --metrics", p.display()))?))
            }
            None => None,
        };
        Ok(Outputs { metrics, curve: Vec::new() })
    }

    fn report(
        &mut self,
        iteration: usize,
        train: &Stats,
        validation: Option<&Stats>,
        test: Option<&Stats>,
        seconds: f64,
    ) -> Result<()> {
        let point = CurvePoint {
            iteration,
            loss: train.loss,
            train_accuracy: train.accuracy(),
            validation_accuracy: validation.map(|v| v.accuracy()),
            test_accuracy: test.map(|t| t.accuracy()),
        };
        self.curve.push(point);
        if let Some((path, f)) = &mut self.metrics {
            let line = serde_json::json!({
                "iteration": iteration, "loss": train.loss, "train_accuracy": train.accuracy(),
                "validation_accuracy": point.validation_accuracy, "test_accuracy": point.test_accuracy,
                "seconds": seconds,
            });
            writeln!(f, "{line}").and_then(|_| f.flush()).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}

/// Trains with a progress bar on a terminal, plain lines otherwise, then prints the summary.
fn progress<B: Backend>(
    b: &mut B,
    s: &Session,
    verifier: Option<&mut dyn Verifier>,
    stop: &AtomicBool,
    last_good: &mut Option<Snapshot>,
    best: &mut Option<(Snapshot, f64)>,
) -> Result<Summary> {
    let plan = s.plan;
    let batches = b.batches();
    let mut outputs = Outputs::new(s)?;
    let mut output_error = None;
    let (mut last_test, mut last_validation) = (None, None);
    let (backend, device) = (b.name(), b.device());
    println!("backend: {backend} ({device})");
    let tty = std::io::stdout().is_terminal();
    let bar = if tty {
        let bar = ProgressBar::new(plan.steps.count as u64);
        let style = ProgressStyle::with_template(
            "{bar:30} {pos}/{len} iterations  {msg}  {per_sec} [{elapsed_precise}<{eta_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar
    } else {
        ProgressBar::hidden()
    };
    let say = |line: String| if tty { bar.println(line) } else { println!("{line}") };
    let mut handle = |e: Event| match e {
        Event::Step { .. } => bar.inc(1),
        Event::Report { iteration, train, validation, test, seconds } => {
            last_test = test.map(|t| t.accuracy());
            last_validation = validation.map(|v| v.accuracy());
            if let Err(e) = outputs.report(iteration, &train, validation.as_ref(), test.as_ref(), seconds) {
                output_error.get_or_insert(e);
            }
            let acc = |what: &str, s: Option<Stats>| s.map(|s| format!("  {what} acc {}", percent(s.accuracy())));
            let held_out = acc("val", validation).unwrap_or_default() + &acc("test", test).unwrap_or_default();
            // Mini-batch runs count epochs (of the model's steps, so a resumed run goes on counting);
            // their train loss/accuracy is the epoch's running mean.
            let position = match batches {
                1 => format!("iter {iteration:>5}"),
                n => {
                    let steps = plan.steps.done + iteration - plan.batching.origin;
                    format!("epoch {:>3}  step {iteration:>6}", format_epochs(steps as f64 / n as f64))
                }
            };
            let line = format!("{position}  loss {:.4}  train acc {}{held_out}", train.loss, percent(train.accuracy()));
            if tty {
                bar.set_message(line.clone());
            }
            if !tty || plan.reports.held_out {
                say(format!("{line}  ({seconds:.1} s)"));
            }
        }
        Event::Snapshot { iteration, params, state } => {
            if let Some(dir) = &s.weight_frames {
                // Named by the model's step, so a continued run's frames sort after the first's.
                let frame = dir.join(format!("weights-{:06}.png", plan.steps.done + iteration));
                if let Err(e) = plots::weight_tiles(&frame, &params) {
                    output_error.get_or_insert(e.into());
                }
            }
            let snapshot = Snapshot { iteration, params, state, test_accuracy: last_test };
            if let Some(v) = last_validation.filter(|_| plan.reports.keep_best)
                && best.as_ref().is_none_or(|(_, b)| v > *b)
            {
                *best = Some((snapshot.clone(), v));
            }
            *last_good = Some(snapshot);
        }
        Event::Verified { iteration, verifier, loss, grads } => {
            let g: Vec<String> = grads.iter().map(|(n, d)| format!("d{n} {d:.1e}")).collect();
            say(format!(
                "verify iter {iteration}: relative difference to {verifier}: loss {loss:.1e}, {}",
                g.join(", ")
            ));
        }
    };
    let mut on_event = |e: Event| {
        if let Some(watch) = s.watch {
            watch(&e);
        }
        handle(e)
    };
    let summary = train::train(b, plan, verifier, Some(stop), &mut on_event);
    bar.finish_and_clear();
    let r = summary.map_err(Failed)?;
    if let Some(e) = output_error {
        return Err(e);
    }
    if let Some(path) = &s.plot {
        plots::training_curve(path, &outputs.curve)?;
        println!("plotted: {}", path.display());
    }
    print_summary(&r, plan, batches, backend, &device);
    Ok(r)
}

fn print_summary(s: &Summary, plan: &TrainPlan, batches: usize, backend: &str, device: &str) {
    let held_out = |what: &str, s: &Stats| match s.n {
        0 => String::new(),
        n => format!(", {what} accuracy {} ({} of {n})", percent(s.accuracy()), s.correct),
    };
    println!(
        "final: train loss {:.4}, train accuracy {}{}{}",
        s.train.loss,
        percent(s.train.accuracy()),
        held_out("validation", &s.validation),
        if s.test.n == 0 { ", no test set".to_string() } else { held_out("test", &s.test) }
    );
    if let Some(r) = s.reached {
        let split = if r.split == Split::Validation { "validation" } else { "test" };
        println!(
            "reached {} {split} accuracy (target {}) at iteration {} (epoch {}) in {:.2} s of training, {:.2} s with evaluations",
            percent(r.accuracy),
            percent(plan.reports.target_accuracy.unwrap_or(0.0)),
            r.iteration,
            format_epochs(r.epochs),
            r.seconds,
            r.wall_seconds
        );
    } else if let Some(b) = s.patience_ran_out {
        println!(
            "stopped at iteration {}: {} report points without a better validation accuracy than {} (iteration {})",
            s.iterations,
            plan.reports.patience.unwrap_or(0),
            percent(b.accuracy),
            b.iteration
        );
    } else if let Some(target) = plan.reports.target_accuracy {
        println!("target {} not reached in {} iterations", percent(target), s.iterations);
    }
    let per_epoch = match batches {
        1 => String::new(),
        n => format!(", {:.2} s/epoch", s.seconds * n as f64 / s.iterations.max(1) as f64),
    };
    println!(
        "time: {} iterations in {:.2} s, {:.2} it/s ({:.4} s/iteration{per_epoch}) on {backend} ({device})",
        s.iterations,
        s.seconds,
        s.iterations as f64 / s.seconds,
        s.seconds / s.iterations as f64
    );
}
