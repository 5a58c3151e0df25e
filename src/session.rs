//! One training run on a backend: progress bar or plain lines, report points, `--metrics` and
//! `--plot`, and the model saved to `--out` at the end, on Ctrl-C (with the command to resume),
//! and, when training fails (divergence, a GPU fault), as of the last report point whose
//! parameters were all finite, so a failure never costs the work before it.

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use gpu_mnist::backend::{Backend, Split};
use gpu_mnist::checkpoint::{self, Model, Provenance, SavedOptimizer};
use gpu_mnist::cli::TrainArgs;
use gpu_mnist::cpu::CpuBackend;
use gpu_mnist::data::DatasetKind;
use gpu_mnist::model::{Activation, Params, Stats};
use gpu_mnist::plots::{self, CurvePoint};
use gpu_mnist::schedule::LrSchedule;
use gpu_mnist::train::{self, Event, Summary, TrainConfig, TrainError};

/// What a run saves besides its parameters.
pub struct RunInfo<'a> {
    pub args: &'a TrainArgs,
    pub activation: Activation,
    pub kind: DatasetKind,
    /// Iterations the starting model had already been trained for (`--init-from`).
    pub done_before: usize,
    /// Rows per step of a mini-batch run (`None`: full batches).
    pub batch_size: Option<usize>,
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

/// Parameters after `iteration`, all finite, and the test accuracy reported with them.
struct Snapshot {
    iteration: usize,
    params: Params,
    test_accuracy: Option<f64>,
}

/// Trains `b` (see the module documentation) and saves the model.
pub fn run<B: Backend>(b: &mut B, cfg: &TrainConfig, verifier: Option<&mut CpuBackend>, info: &RunInfo) -> Result<()> {
    let mut last_good = None;
    let args = info.args;
    match progress(b, cfg, verifier, info, &mut last_good) {
        Ok(s) => {
            let test_accuracy = (s.test.n > 0).then(|| s.test.accuracy());
            let optimizer = Some(SavedOptimizer { config: args.optimizer_config(), state: b.optimizer_state()? });
            save(b.params()?, optimizer, s.iterations, test_accuracy, b, info)?;
            if s.interrupted {
                let resume = resume_command(info, cfg.iterations - s.iterations);
                let out = args.out.display().to_string();
                return Err(Interrupted { iteration: s.iterations, planned: cfg.iterations, out, resume }.into());
            }
            Ok(())
        }
        Err(e) if e.is::<Failed>() => match last_good {
            Some(Snapshot { iteration, params, test_accuracy }) => {
                // The optimizer's state of that iteration is not kept: a resumed run starts it afresh.
                save(params, None, iteration, test_accuracy, b, info)
                    .with_context(|| format!("{e}; saving the model of iteration {iteration} also failed"))?;
                let resume = resume_command(info, cfg.iterations - iteration);
                let out = args.out.display();
                Err(anyhow::anyhow!(
                    "{e}; saved the last good model (iteration {iteration}) to {out}; to go on: {resume}"
                ))
            }
            None => Err(anyhow::anyhow!("{e}; no earlier model was good to save, {} is untouched", args.out.display())),
        },
        Err(e) => Err(e),
    }
}

/// `gpu-mnist train --init-from OUT` with the options that shaped this run.
fn resume_command(info: &RunInfo, remaining: usize) -> String {
    let args = info.args;
    let mut cmd = format!("gpu-mnist train --init-from {} --iterations {remaining}", args.out.display());
    if let Some(b) = info.batch_size {
        // The seed and the training rows decide each epoch's order: the same ones continue it.
        cmd += &format!(" --batch-size {b} --seed {}", args.seed);
        if let Some(n) = args.samples {
            cmd += &format!(" --samples {n}");
        }
    }
    cmd += &format!(" --lr {}", args.lr);
    // Schedules count the model's iterations, so the same options continue the same schedule.
    if args.lr_schedule != LrSchedule::Constant || args.warmup > 0 {
        cmd += &format!(" --lr-schedule {} --warmup {}", args.lr_schedule.name(), args.warmup);
        if args.lr_schedule == LrSchedule::Step {
            if let Some(n) = args.lr_step_every {
                cmd += &format!(" --lr-step-every {n}");
            }
            cmd += &format!(" --lr-gamma {}", args.lr_gamma);
        }
    }
    let o = args.optimizer_config();
    if o != gpu_mnist::optim::OptimizerConfig::default() {
        cmd += &format!(" --optimizer {}", o.kind.name());
        match o.kind {
            gpu_mnist::optim::Optimizer::Momentum | gpu_mnist::optim::Optimizer::Nesterov => {
                cmd += &format!(" --momentum {}", o.momentum)
            }
            gpu_mnist::optim::Optimizer::Adam => {
                cmd += &format!(" --beta1 {} --beta2 {} --eps {}", o.beta1, o.beta2, o.eps)
            }
            gpu_mnist::optim::Optimizer::Gd => {}
        }
        if o.weight_decay != 0.0 {
            cmd += &format!(" --weight-decay {}", o.weight_decay);
        }
    }
    if let Some(d) = &args.data.data {
        cmd += &format!(" --data {}", d.display());
    }
    if let Some(t) = &args.data.test_data {
        cmd += &format!(" --test-data {}", t.display());
    }
    if let Some(d) = args.data.dataset {
        cmd += &format!(" --dataset {}", if d == DatasetKind::Fashion { "fashion" } else { "mnist" });
    }
    if let Some(f) = args.val_split {
        // The seed picks the held-out images: the same seed holds out the same ones.
        cmd += &format!(" --val-split {f}");
        if info.batch_size.is_none() {
            cmd += &format!(" --seed {}", args.seed);
        }
    }
    if args.out.as_os_str() != "model.safetensors" {
        cmd += &format!(" --out {}", args.out.display());
    }
    cmd
}

/// Saves `params` after `iterations` of this run to `--out`, atomically, with how it was made.
fn save<B: Backend>(
    params: Params,
    optimizer: Option<SavedOptimizer>,
    iterations: usize,
    test_accuracy: Option<f64>,
    b: &B,
    info: &RunInfo,
) -> Result<()> {
    let args = info.args;
    let provenance = Provenance {
        dataset: info.kind.name().into(),
        iterations: info.done_before + iterations,
        lr: args.lr,
        seed: args.seed,
        backend: format!("{} ({})", b.name(), b.device()),
        test_accuracy: test_accuracy.unwrap_or(f64::NAN),
        version: env!("CARGO_PKG_VERSION").into(),
        batch_size: info.batch_size,
    };
    checkpoint::save(&args.out, &Model { params, activation: info.activation, provenance, optimizer })?;
    println!("saved: {}", args.out.display());
    Ok(())
}

fn percent(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// Where the report points go besides the screen: `--metrics` (JSON lines, appended as training
/// goes) and `--plot` (the curve, drawn at the end).
struct Outputs {
    metrics: Option<(std::path::PathBuf, std::fs::File)>,
    curve: Vec<CurvePoint>,
}

impl Outputs {
    fn new(args: &TrainArgs) -> Result<Self> {
        let metrics = match &args.metrics {
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
    cfg: &TrainConfig,
    verifier: Option<&mut CpuBackend>,
    info: &RunInfo,
    last_good: &mut Option<Snapshot>,
) -> Result<Summary> {
    let args = info.args;
    let batches = b.batches();
    let mut outputs = Outputs::new(args)?;
    let mut output_error = None;
    let mut last_test = None;
    let (backend, device) = (b.name(), b.device());
    println!("backend: {backend} ({device})");
    let tty = std::io::stdout().is_terminal();
    let bar = if tty {
        let bar = ProgressBar::new(cfg.iterations as u64);
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
    let mut on_event = |e: Event| match e {
        Event::Step { .. } => bar.inc(1),
        Event::Report { iteration, train, validation, test, seconds } => {
            last_test = test.map(|t| t.accuracy());
            if let Err(e) = outputs.report(iteration, &train, validation.as_ref(), test.as_ref(), seconds) {
                output_error.get_or_insert(e);
            }
            let acc = |what: &str, s: Option<Stats>| s.map(|s| format!("  {what} acc {}", percent(s.accuracy())));
            let held_out = acc("val", validation).unwrap_or_default() + &acc("test", test).unwrap_or_default();
            // Mini-batch runs count epochs (of the model's steps, so a resumed run goes on counting);
            // their train loss/accuracy is the epoch's running mean.
            let position = match batches {
                1 => format!("iter {iteration:>5}"),
                n => format!(
                    "epoch {:>3}  step {iteration:>6}",
                    crate::commands::format_epochs(
                        (cfg.first_iteration + iteration - cfg.batch_origin) as f64 / n as f64,
                    )
                ),
            };
            let line = format!("{position}  loss {:.4}  train acc {}{held_out}", train.loss, percent(train.accuracy()));
            if tty {
                bar.set_message(line.clone());
            }
            if !tty || cfg.eval_test {
                say(format!("{line}  ({seconds:.1} s)"));
            }
        }
        Event::Snapshot { iteration, params } => {
            *last_good = Some(Snapshot { iteration, params, test_accuracy: last_test });
        }
        Event::Verified { iteration, loss, grads } => {
            let g: Vec<String> = grads.iter().map(|(n, d)| format!("d{n} {d:.1e}")).collect();
            say(format!("verify iter {iteration}: relative difference to CPU: loss {loss:.1e}, {}", g.join(", ")));
        }
    };
    let summary = train::train(b, cfg, verifier, &mut on_event);
    bar.finish_and_clear();
    let s = summary.map_err(Failed)?;
    if let Some(e) = output_error {
        return Err(e);
    }
    if let Some(path) = &args.plot {
        plots::training_curve(path, &outputs.curve)?;
        println!("plotted: {}", path.display());
    }
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
            percent(cfg.target_accuracy.unwrap_or(0.0)),
            r.iteration,
            crate::commands::format_epochs(r.epochs),
            r.seconds,
            r.wall_seconds
        );
    } else if let Some(target) = cfg.target_accuracy {
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
    Ok(s)
}
