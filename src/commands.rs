//! The subcommands: wiring the CLI to data, backends and the training loop, and printing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};

use gpu_mnist::backend::{BackendError, batch_count};
use gpu_mnist::checkpoint;
use gpu_mnist::cli::{BackendChoice, TrainArgs};
use gpu_mnist::cpu::CpuBackend;
use gpu_mnist::data::{self, Dataset, DatasetKind, Splits};
use gpu_mnist::gpu::{GpuBackend, GpuContext, GpuOptions, context};
use gpu_mnist::model::{K, MAX_HIDDEN_LAYERS, Params, Shape};
use gpu_mnist::optim::{Optimizer, OptimizerConfig};
use gpu_mnist::schedule::Schedule;
use gpu_mnist::train::TrainConfig;

use crate::session::{self, RunInfo};

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

/// Full-batch iterations when neither --iterations nor --epochs is given.
const DEFAULT_ITERATIONS: usize = 500;
/// Epochs of mini-batches when neither is given.
const DEFAULT_EPOCHS: usize = 10;

/// `10`, or `2.5` for a part of an epoch.
pub fn format_epochs(e: f64) -> String {
    if e.fract() == 0.0 { format!("{e:.0}") } else { format!("{e:.2}") }
}

/// Refuses a network whose model file (parameters and the optimizer's moments) would be larger
/// than a model file may be, before anything of its size is allocated.
fn check_model_size(shape: &Shape, optimizer: &OptimizerConfig) -> Result<()> {
    let file_bytes = (shape.parameter_count() as u64) * 4 * (1 + optimizer.kind.moments().len() as u64);
    if file_bytes > checkpoint::MAX_MODEL_BYTES {
        bail!(
            "{} with {} would save a {} MiB model file, more than the {} MiB a model may have; use narrower layers",
            shape.describe(),
            optimizer.kind.name(),
            file_bytes >> 20,
            checkpoint::MAX_MODEL_BYTES >> 20
        );
    }
    Ok(())
}

pub fn train(args: &TrainArgs) -> Result<()> {
    if let Some(t) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(t).build_global().context("setting the CPU thread count")?;
    }
    let optimizer = args.optimizer_config();
    if args.lr * optimizer.weight_decay >= 1.0 {
        bail!(
            "--lr {} times --weight-decay {} must be below 1 (each step scales the weights by 1 - lr·decay)",
            args.lr,
            optimizer.weight_decay
        );
    }
    let (data, kind, from) = load_training_data(args)?;
    let (params, act, done, state, saved_batch) = match &args.init_from {
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
            let state = match m.optimizer {
                Some(o) if o.state.kind == optimizer.kind => {
                    println!("optimizer: {} state restored ({} steps)", o.state.kind.name(), o.state.t);
                    Some(o.state)
                }
                Some(o) => {
                    println!(
                        "note: {} holds {} state; --optimizer {} starts from fresh state",
                        path.display(),
                        o.state.kind.name(),
                        optimizer.kind.name()
                    );
                    None
                }
                None => None,
            };
            (m.params, m.activation, m.provenance.iterations, state, m.provenance.batch_size)
        }
        None => {
            if args.hidden.len() > MAX_HIDDEN_LAYERS {
                bail!("--hidden lists {} layers; at most {MAX_HIDDEN_LAYERS} are supported", args.hidden.len());
            }
            let shape = Shape::new(data.train.d(), &args.hidden, K, !args.no_bias);
            check_model_size(&shape, &optimizer)?;
            (Params::init(shape, args.activation, args.seed), args.activation, 0, None, None)
        }
    };
    let shape = params.shape.clone();
    check_model_size(&shape, &optimizer)?;
    let n = data.train.n;
    if args.target_accuracy.is_some() && data.test.n == 0 && data.validation.n == 0 {
        bail!("--target-accuracy needs held-out data to measure: pass --test-data PATH or --val-split F");
    }
    // A resumed mini-batch model keeps its batch size unless told otherwise.
    let batch_size = args.batch_size.or(saved_batch).unwrap_or(n).clamp(1, n.max(1));
    let batches = batch_count(n, batch_size);
    let iterations = match (args.iterations, args.epochs) {
        (Some(i), _) => Some(i),
        (None, Some(e)) => e.checked_mul(batches),
        (None, None) if batches == 1 => Some(DEFAULT_ITERATIONS),
        (None, None) => Some(DEFAULT_EPOCHS * batches),
    };
    let (Some(iterations), Some(total)) = (iterations, iterations.and_then(|i| i.checked_add(done))) else {
        bail!("that many steps cannot be counted; give fewer --epochs or --iterations");
    };
    // Epochs and their orders count from the step where the current batching began: from the
    // start, or from here when a resumed model was trained on other batches (or full batches).
    let mini_batch = (batches > 1).then_some(batch_size);
    let batch_origin = if args.init_from.is_some() && saved_batch != mini_batch {
        if mini_batch.is_some() {
            println!("note: the model was trained on other batches; epochs of {batch_size}-row batches start here");
        }
        done
    } else {
        0
    };
    let schedule = Schedule {
        kind: args.lr_schedule,
        base: args.lr,
        warmup: args.warmup,
        step_every: args.lr_step_every.unwrap_or((total.saturating_sub(args.warmup) / 3).max(1)),
        gamma: args.lr_gamma,
        total,
    };
    // Report points: every epoch of mini-batches (or 20 per run for full batches, at least every
    // 10 iterations when chasing a target accuracy), unless --eval-every says otherwise.
    let report_every = match (args.eval_every, batches, args.target_accuracy) {
        (Some(k), _, _) => k,
        (None, 1, None) => (iterations / 20).max(1),
        (None, 1, Some(_)) => (iterations / 20).clamp(1, 10),
        (None, b, _) => b,
    };
    let cfg = TrainConfig {
        iterations,
        schedule,
        first_iteration: done,
        batch_origin,
        seed: args.seed,
        target_accuracy: args.target_accuracy,
        report_every,
        eval_test: args.eval_every.is_some()
            || args.plot.is_some()
            || args.metrics.is_some()
            || args.target_accuracy.is_some()
            || batches > 1,
        verify_every: args.verify_every,
        stop: Some(stop_on_ctrl_c()?),
    };
    println!("{from}");
    let steps = match batches {
        1 => format!("{iterations} full-batch iterations"),
        b => format!(
            "{iterations} steps of {batch_size}-row mini-batches ({} epochs of {b} steps)",
            format_epochs(iterations as f64 / b as f64)
        ),
    };
    println!(
        "model: {} ({}), {} parameters{}; lr {}{}, {steps}, seed {}",
        shape.describe(),
        act.name(),
        shape.parameter_count(),
        if shape.bias { "" } else { ", no bias" },
        args.lr,
        schedule.describe(),
        args.seed
    );
    if optimizer != OptimizerConfig::default() {
        println!("optimizer: {}", describe_optimizer(&optimizer));
    }
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
    let info = RunInfo { args, activation: act, kind, done_before: done, batch_size: mini_batch };
    match gpu {
        Some(ctx) => {
            let options = GpuOptions {
                max_chunk_rows: args.chunk_rows,
                tiling: args.tiling,
                optimizer,
                batch_size: Some(batch_size),
            };
            let mut b = GpuBackend::new(ctx, &data, &params, act, options)?;
            if let Some(state) = &state {
                b.set_optimizer_state(state)?;
            }
            println!("GPU: {:?} matmul tiling", b.tiling());
            if b.chunk_rows() < batch_size {
                println!("GPU: training set processed in chunks of {} rows", b.chunk_rows());
            }
            let mut verifier =
                args.verify_every.map(|_| CpuBackend::new(&data, params.clone(), act).with_batch_size(batch_size));
            session::run(&mut b, &cfg, verifier.as_mut(), &info)?;
        }
        None => {
            if args.verify_every.is_some() {
                println!(
                    "--verify-every compares the GPU with the CPU; on the CPU backend there is nothing to compare"
                );
            }
            let mut b = CpuBackend::new(&data, params, act).with_optimizer(optimizer).with_batch_size(batch_size);
            if let Some(state) = state {
                b.set_optimizer_state(state)?;
            }
            session::run(&mut b, &cfg, None, &info)?;
        }
    }
    Ok(())
}

/// The rule and the hyper-parameters it uses, in words.
fn describe_optimizer(o: &OptimizerConfig) -> String {
    let rule = match o.kind {
        Optimizer::Gd => "gd".to_string(),
        Optimizer::Momentum | Optimizer::Nesterov => format!("{} {}", o.kind.name(), o.momentum),
        Optimizer::Adam => format!("adam (beta1 {}, beta2 {}, eps {:e})", o.beta1, o.beta2, o.eps),
    };
    if o.weight_decay == 0.0 { rule } else { format!("{rule}, weight decay {}", o.weight_decay) }
}

/// A flag Ctrl-C sets: training stops after the current iteration and saves. A second Ctrl-C
/// exits at once.
fn stop_on_ctrl_c() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
    .context("installing the Ctrl-C handler")?;
    Ok(stop)
}

/// The splits `train` uses (`--data`, `--test-data`, `--samples`, `--val-split`, `--test-samples`),
/// the data set, and a line saying what they are.
fn load_training_data(args: &TrainArgs) -> Result<(Splits, DatasetKind, String)> {
    let kind = args.data.dataset.unwrap_or_default();
    let started = std::time::Instant::now();
    let loaded = data::source::open(&args.data, kind)?;
    let seconds = started.elapsed().as_secs_f64();
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
    let from = format!(
        "{}: {counts} images of {rows}x{cols} from {path} ({format}, read in {seconds:.2} s){no_test}",
        kind.title()
    );
    Ok((data, kind, from))
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
