//! `gpu-mnist train`: wiring. Load the model it continues, choose and load the data, resolve the
//! plan (`gpu_mnist::plan`, where every default and rule lives), open a backend, run the session.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};

use super::cli::TrainArgs;
use super::report;
use super::serve::Page;
use super::session::{self, Session};
use gpu_mnist::augment::Augmentation;
use gpu_mnist::backend::{Backend, BackendChoice, BackendError, Verifier};
use gpu_mnist::checkpoint;
use gpu_mnist::cpu::CpuBackend;
use gpu_mnist::data::{self, Dataset, Splits};
use gpu_mnist::gpu::{DeviceLimits, GpuBackend, GpuContext, GpuOptions, Tiling};
use gpu_mnist::model::Params;
use gpu_mnist::optim::OptimizerConfig;
use gpu_mnist::plan::{DataFacts, DataPlan, Init, TrainPlan};
use gpu_mnist::plots;
use gpu_mnist::train::Event;

/// Where a new run saves its model; a continued run updates the file it continues.
const DEFAULT_OUT: &str = "model.safetensors";

pub fn run(args: &TrainArgs) -> Result<()> {
    if let Some(t) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(t).build_global().context("setting the CPU thread count")?;
    }
    let request = args.request();
    // A PyTorch state dict cannot say its activation: --activation does.
    let options = checkpoint::LoadOptions { activation: args.activation };
    let resumed = args.init_from.as_deref().map(|p| checkpoint::load_with(p, options)).transpose()?;
    let data_plan = DataPlan::resolve(&request, resumed.as_ref());
    let (data, from) = load_data(&data_plan)?;
    let facts = DataFacts::from(&data);
    let plan = TrainPlan::resolve(&request, resumed.as_ref(), data_plan, &facts);
    let plan = match &args.init_from {
        Some(path) => plan.with_context(|| format!("continuing {}", path.display()))?,
        None => plan?,
    };
    if let (Some(path), Some(m)) = (&args.init_from, &resumed) {
        println!("continuing {} ({} iterations so far)", path.display(), m.provenance.iterations);
        match (&m.optimizer, plan.init) {
            (Some(s), Init::Resumed { keep_state: true }) => {
                println!("optimizer: {} state restored ({} steps)", s.kind.name(), s.t)
            }
            (Some(s), _) => println!(
                "note: {} holds {} state; --optimizer {} starts from fresh state",
                path.display(),
                s.kind.name(),
                plan.optimizer.kind.name()
            ),
            (None, _) if !plan.optimizer.kind.moments().is_empty() => {
                let rule = plan.optimizer.kind.name();
                println!("note: {} holds no {rule} state; {rule} starts from fresh state", path.display())
            }
            (None, _) => {}
        }
    }
    for note in &plan.notes {
        println!("note: {note}");
    }
    println!("{from}");
    println!("{}", report::describe_model(&plan));
    if plan.optimizer != OptimizerConfig::default() {
        println!("optimizer: {}", report::describe_optimizer(&plan.optimizer));
    }
    if plan.augment.kind != Augmentation::None {
        println!("augment: {}", report::describe_augment(&plan.augment));
    }
    if plan.dropout.is_on() {
        println!(
            "dropout: {} of the hidden units of every row each step, the kept ones scaled by {:.4}",
            plan.dropout.p,
            1.0 / (1.0 - plan.dropout.p)
        );
    }
    // A continued run updates the file it continues, unless another tool wrote it: that file
    // keeps its format, and the model goes beside it.
    let foreign = resumed.as_ref().is_some_and(|m| m.provenance.is_imported());
    let (params, state) = match (plan.init, resumed) {
        (Init::Resumed { keep_state }, Some(m)) => (m.params, m.optimizer.filter(|_| keep_state)),
        (_, _) => (Params::init(plan.shape.clone(), plan.activation, plan.seed), None),
    };
    let out = match (&args.out, &args.init_from) {
        (Some(out), _) => out.clone(),
        (None, Some(from)) if foreign => {
            let stem = from.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
            let out = from.with_file_name(format!("{stem}.gpu-mnist.safetensors"));
            println!("note: {} was written by another tool; this run saves to {}", from.display(), out.display());
            out
        }
        (None, Some(from)) => from.clone(),
        (None, None) => PathBuf::from(DEFAULT_OUT),
    };
    let frames = args.weight_frames();
    if let Some(dir) = &frames {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let stop = stop_on_ctrl_c()?;
    let page = args.serve.map(|port| Page::start(&plan, &params, &data.test, &out, port, stop.clone())).transpose()?;
    let watch = |e: &Event| page.iter().for_each(|p| p.watch(e));
    let session = Session {
        plan: &plan,
        out: out.clone(),
        plot: args.plot.clone(),
        metrics: args.metrics.clone(),
        weight_frames: frames.clone(),
        watch: page.as_ref().map(|_| &watch as &dyn Fn(&Event)),
    };
    let tell_page = |b: &dyn Backend| page.iter().for_each(|p| p.backend(b.name(), &b.device()));
    let act = plan.activation;
    let trained = match open_gpu(plan.backend, args.adapter.as_deref(), args.limits)? {
        Some(ctx) => {
            let options = GpuOptions {
                max_chunk_rows: args.chunk_rows,
                tiling: Some(args.tiling.unwrap_or(Tiling::Auto)),
                on_tuning: Some(|line| println!("GPU: {line}")),
                optimizer: plan.optimizer,
                batch_size: Some(plan.batching.size),
                matmul: None,
                augment: Some((plan.augment, plan.seed)),
                dropout: Some(plan.dropout),
            };
            let mut b = GpuBackend::new(ctx, &data, &params, act, options)?;
            if let Some(state) = &state {
                b.set_optimizer_state(state)?;
            }
            println!("GPU: {} matmul tiling{}", b.tiling().name(), report::describe_tiles(b.tiles()));
            if b.chunk_rows() < plan.batching.size {
                println!("GPU: training set processed in chunks of {} rows", b.chunk_rows());
            }
            let mut verifier = plan.verify_every.map(|_| {
                CpuBackend::new(&data, params.clone(), act)
                    .with_batch_size(plan.batching.size)
                    .with_augment(&data.train, plan.augment, plan.seed)
                    .with_dropout(plan.dropout)
            });
            let verifier = verifier.as_mut().map(|v| v as &mut dyn Verifier);
            tell_page(&b);
            session::run(&mut b, &session, verifier, &stop)
        }
        None => {
            if plan.verify_every.is_some() {
                println!(
                    "--verify-every compares the GPU with the CPU; on the CPU backend there is nothing to compare"
                );
            }
            let batch_size = plan.batching.size;
            let mut b = CpuBackend::new(&data, params, act)
                .with_optimizer(plan.optimizer)
                .with_batch_size(batch_size)
                .with_augment(&data.train, plan.augment, plan.seed)
                .with_dropout(plan.dropout);
            if let Some(state) = state {
                b.set_optimizer_state(state)?;
            }
            tell_page(&b);
            session::run(&mut b, &session, None, &stop)
        }
    };
    if let (Some(png), None, Ok(_)) = (&args.plot_weights, &frames, &trained) {
        // The weights as saved: what the model file holds.
        let model = checkpoint::load(&out)?;
        plots::weight_tiles(png, &model.params)?;
        println!("plotted: {}", png.display());
    }
    if let (Some(dir), Ok(_)) = (&frames, &trained) {
        println!("plotted: the weights at each report point in {}", dir.display());
    }
    if let Some(p) = &page {
        p.finish(&trained, &stop);
    }
    trained.map(|_| ())
}

/// The GPU the backend choice asks for, or `None` for the CPU: `auto` takes a hardware adapter
/// when there is one and says why it falls back otherwise.
fn open_gpu(choice: BackendChoice, adapter: Option<&str>, limits: DeviceLimits) -> Result<Option<GpuContext>> {
    Ok(match choice {
        BackendChoice::Cpu => None,
        BackendChoice::Gpu => Some(GpuContext::open(adapter, false, limits)?),
        BackendChoice::Auto => match GpuContext::open(adapter, true, limits) {
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
    })
}

/// A flag Ctrl-C sets: training stops after the current iteration and saves. A second Ctrl-C
/// exits at once.
pub(super) fn stop_on_ctrl_c() -> Result<Arc<AtomicBool>> {
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

/// The splits the plan chooses, and a line saying what they are.
fn load_data(plan: &DataPlan) -> Result<(Splits, String)> {
    let started = std::time::Instant::now();
    let loaded = data::source::open(&plan.source)?;
    let seconds = started.elapsed().as_secs_f64();
    for note in &loaded.notes {
        println!("note: {note}");
    }
    if !loaded.train.labelled() {
        let path = loaded.path.display();
        anyhow::bail!("{path} has no labels (a file for predict); training needs labelled images");
    }
    let (rows, cols) = (loaded.train.rows, loaded.train.cols);
    let (path, format) = (loaded.path, loaded.format);
    let test = loaded.test.unwrap_or_else(|| Dataset::empty(rows, cols));
    let data = Splits::select(loaded.train, test, &plan.selection)?;
    let from = report::describe_data(plan.source.kind, &data, &path, format, seconds);
    Ok((data, from))
}
