//! The subcommands: wiring the CLI to data, backends and the training loop, and printing.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use gpu_mnist::backend::{Backend, BackendError};
use gpu_mnist::checkpoint::{self, Model, Provenance};
use gpu_mnist::cli::{BackendChoice, TrainArgs};
use gpu_mnist::cpu::CpuBackend;
use gpu_mnist::data::{self, Dataset, DatasetKind, Splits};
use gpu_mnist::gpu::{GpuBackend, GpuContext, GpuOptions, context};
use gpu_mnist::model::{Activation, K, Params, Shape, Stats};
use gpu_mnist::plots::{self, CurvePoint};
use gpu_mnist::train::{self, Event, Summary, TrainConfig};

/// A path as given, or, when it is the default relative `default` and missing here, the copy
/// bundled with the sources (so the defaults work from any folder).
pub fn bundled(arg: &Path, default: &str) -> PathBuf {
    let copy = Path::new(env!("CARGO_MANIFEST_DIR")).join(default);
    if arg == Path::new(default) && !arg.exists() && copy.exists() { copy } else { arg.to_path_buf() }
}

/// `--data` as given, or the bundled MNIST (see `bundled`).
pub fn data_dir(arg: &Path) -> PathBuf {
    bundled(arg, "data/mnist")
}

pub fn train(args: &TrainArgs) -> Result<()> {
    if let Some(t) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(t).build_global().context("setting the CPU thread count")?;
    }
    let (data, kind, from) = load_training_data(args)?;
    let (params, act, done) = match &args.init_from {
        Some(path) => {
            let m = checkpoint::load(path)?;
            if m.params.shape.d != data.train.d() || m.params.shape.k != K {
                bail!(
                    "{} has {} inputs and {} classes, the data {} and {K}",
                    path.display(),
                    m.params.shape.d,
                    m.params.shape.k,
                    data.train.d()
                );
            }
            println!("continuing {} ({} iterations so far)", path.display(), m.provenance.iterations);
            (m.params, m.activation, m.provenance.iterations)
        }
        None => {
            let shape = Shape { d: data.train.d(), h: args.hidden, k: K, bias: !args.no_bias };
            (Params::init(shape, args.activation, args.seed), args.activation, 0)
        }
    };
    let shape = params.shape;
    let cfg = TrainConfig {
        iterations: args.iterations,
        lr: args.lr,
        report_every: args.eval_every.unwrap_or((args.iterations / 20).max(1)),
        eval_test: args.eval_every.is_some() || args.plot.is_some() || args.metrics.is_some(),
        verify_every: args.verify_every,
    };
    println!("{from}");
    println!(
        "model: {} -> {} ({}) -> {}, {} parameters{}; lr {}, {} iterations, seed {}",
        shape.d,
        shape.h,
        act.name(),
        K,
        shape.parameter_count(),
        if shape.bias { "" } else { ", no bias" },
        args.lr,
        args.iterations,
        args.seed
    );
    let gpu = match args.backend {
        BackendChoice::Cpu => None,
        BackendChoice::Gpu => Some(GpuContext::open(args.adapter.as_deref(), false)?),
        BackendChoice::Auto => match GpuContext::open(args.adapter.as_deref(), true) {
            Ok(ctx) => Some(ctx),
            Err(BackendError::NoAdapter { what, seen }) => {
                let hint = if seen == "none" { "" } else { "; --backend gpu runs the shaders on a software adapter" };
                println!("{what} (wgpu sees: {seen}): using the CPU backend{hint}");
                None
            }
            Err(e) => {
                println!("{e}; using the CPU backend");
                None
            }
        },
    };
    match gpu {
        Some(ctx) => {
            let options = GpuOptions { max_chunk_rows: args.chunk_rows, tiling: args.tiling };
            let mut b = GpuBackend::new(ctx, &data, &params, act, options)?;
            println!("GPU: {:?} matmul tiling", b.tiling());
            if b.chunk_rows() < data.train.n {
                println!("GPU: training set processed in chunks of {} rows", b.chunk_rows());
            }
            let verifier = args.verify_every.map(|_| CpuBackend::new(&data, params.clone(), act));
            let summary = run(&mut b, &cfg, verifier.as_ref(), args)?;
            save(&b, &summary, act, done, kind, args)?;
        }
        None => {
            if args.verify_every.is_some() {
                println!(
                    "--verify-every compares the GPU with the CPU; on the CPU backend there is nothing to compare"
                );
            }
            let mut b = CpuBackend::new(&data, params, act);
            let summary = run(&mut b, &cfg, None, args)?;
            save(&b, &summary, act, done, kind, args)?;
        }
    }
    Ok(())
}

/// The splits `train` uses (`--data`, `--test-data`, `--samples`, `--val-split`, `--test-samples`),
/// the data set, and a line saying what they are.
fn load_training_data(args: &TrainArgs) -> Result<(Splits, DatasetKind, String)> {
    let kind = args.data.dataset.unwrap_or_default();
    let loaded = data::source::open(&args.data, kind)?;
    for note in &loaded.notes {
        println!("note: {note}");
    }
    let path = loaded.path.display();
    if !loaded.train.labelled() {
        bail!("{path} has no labels (a file for predict); training needs labelled images");
    }
    let (rows, cols) = (loaded.train.rows, loaded.train.cols);
    let mut data = Splits::new(loaded.train, loaded.test.unwrap_or_else(|| Dataset::empty(rows, cols)));
    if let Some(n) = args.samples {
        data.train.truncate(n);
    }
    if let Some(f) = args.val_split {
        if data.train.n < 2 {
            bail!("--val-split needs at least 2 training images, there are {}", data.train.n);
        }
        data.hold_out(f, args.seed);
    }
    if let Some(n) = args.test_samples {
        data.test.truncate(n);
    }
    let counts = match (data.validation.n, data.test.n) {
        (0, 0) => format!("{} training", data.train.n),
        (0, t) => format!("{} training and {t} test", data.train.n),
        (v, 0) => format!("{} training and {v} validation", data.train.n),
        (v, t) => format!("{} training, {v} validation and {t} test", data.train.n),
    };
    let no_test = if data.test.n == 0 { "; no test set (pass --test-data to add one)" } else { "" };
    let format = loaded.format.name();
    let from = format!("{}: {counts} images of {rows}x{cols} from {path} ({format}){no_test}", kind.title());
    Ok((data, kind, from))
}

/// Saves the trained model to `--out`, with how it was made.
fn save<B: Backend>(
    b: &B,
    s: &Summary,
    act: Activation,
    done: usize,
    kind: DatasetKind,
    args: &TrainArgs,
) -> Result<()> {
    let provenance = Provenance {
        dataset: kind.name().into(),
        iterations: done + s.iterations,
        lr: args.lr,
        seed: args.seed,
        backend: format!("{} ({})", b.name(), b.device()),
        test_accuracy: s.test.accuracy(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    checkpoint::save(&args.out, &Model { params: b.params()?, activation: act, provenance })?;
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
fn run<B: Backend>(b: &mut B, cfg: &TrainConfig, verifier: Option<&CpuBackend>, args: &TrainArgs) -> Result<Summary> {
    let mut outputs = Outputs::new(args)?;
    let mut output_error = None;
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
            if let Err(e) = outputs.report(iteration, &train, validation.as_ref(), test.as_ref(), seconds) {
                output_error.get_or_insert(e);
            }
            let acc = |what: &str, s: Option<Stats>| s.map(|s| format!("  {what} acc {}", percent(s.accuracy())));
            let held_out = acc("val", validation).unwrap_or_default() + &acc("test", test).unwrap_or_default();
            let line = format!(
                "iter {iteration:>5}  loss {:.4}  train acc {}{held_out}",
                train.loss,
                percent(train.accuracy())
            );
            if tty {
                bar.set_message(line.clone());
            }
            if !tty || cfg.eval_test {
                say(format!("{line}  ({seconds:.1} s)"));
            }
        }
        Event::Verified { iteration, loss, grads } => {
            let g: Vec<String> = grads.iter().map(|(n, d)| format!("d{n} {d:.1e}")).collect();
            say(format!("verify iter {iteration}: relative difference to CPU: loss {loss:.1e}, {}", g.join(", ")));
        }
    };
    let summary = train::train(b, cfg, verifier, &mut on_event);
    bar.finish_and_clear();
    let s = summary?;
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
    println!(
        "time: {} iterations in {:.2} s, {:.2} it/s ({:.4} s/iteration) on {backend} ({device})",
        s.iterations,
        s.seconds,
        s.iterations as f64 / s.seconds,
        s.seconds / s.iterations as f64
    );
    Ok(s)
}

pub fn devices() -> Result<()> {
    let adapters = context::adapters();
    if adapters.is_empty() {
        println!(
            "wgpu sees no adapters: no Vulkan/Metal/DX12 driver is installed (on Debian: apt-get install mesa-vulkan-drivers for the software one), or {} is set",
            context::HIDE_ADAPTERS_ENV
        );
        return Ok(());
    }
    for (i, a) in adapters.iter().enumerate() {
        let (info, l) = (a.get_info(), a.limits());
        let kind = if context::is_hardware(&info) {
            "hardware"
        } else {
            "software: --backend auto skips it, --backend gpu uses it"
        };
        println!("{i}: {} ({kind})", context::describe(&info));
        println!("   driver: {} {}", info.driver, info.driver_info);
        println!(
            "   max_storage_buffer_binding_size {} MiB, max_buffer_size {} MiB",
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20
        );
        println!(
            "   max_compute_workgroup_storage_size {} KiB, max_compute_invocations_per_workgroup {}, max_compute_workgroups_per_dimension {}",
            l.max_compute_workgroup_storage_size >> 10,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroups_per_dimension
        );
    }
    match adapters.iter().find(|a| context::is_hardware(&a.get_info())) {
        Some(a) => println!("--backend auto uses: {}", context::describe(&a.get_info())),
        None => println!("--backend auto uses: the CPU (no hardware adapter)"),
    }
    Ok(())
}
