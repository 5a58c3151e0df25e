//! `gpu-mnist bench`: the real training step, timed per backend and per kernel or phase: the
//! full batch, or (`--batch-size`) mini-batches of a fresh shuffled order each epoch, as `train`
//! takes them, with the update of `--optimizer`; one hidden layer or more (`--hidden 256,128`).
//!
//! Every figure names where it was measured. Before timing, each backend's results are checked:
//! the fast CPU step against the reference, one GPU step (every kernel's output feeds the loss,
//! a gradient or the update) against the fast CPU step; a mismatch is an error, not a number. FLOP
//! counts are those of the dense computation (what NumPy does: each layer's forward product and
//! weight gradient, and the input gradient of each layer above the first; `2N(DH+HK) +
//! 2N(DH+2HK)` per iteration for one hidden layer), also for the sparse CPU phases, so GFLOP/s
//! compare like for like. Bytes are the least traffic an op needs: its inputs read once and its
//! outputs written once.

mod cpu;
mod figures;
mod gpu;
mod phases;
mod tune;

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};

use crate::app::cli::{BenchArgs, BenchBackends};
use figures::{BackendFigures, Point, Report, flops_per_iteration};
use gpu_mnist::backend::batch_count;
use gpu_mnist::cpu::fast;
use gpu_mnist::gpu::{GpuContext, context};
use gpu_mnist::model::{K, MAX_HIDDEN_LAYERS, Shape};

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The widest vector instruction set the CPU reports.
fn cpu_simd() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "AVX-512";
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return "AVX2";
        }
    }
    fast::Simd::Baseline.name()
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if let Some(t) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(t).build_global().context("setting the CPU thread count")?;
    }
    let dir = gpu_mnist::data::source::bundled(&args.data, "data/mnist");
    let mnist = gpu_mnist::data::load_mnist(&dir).with_context(|| format!("loading MNIST from {}", dir.display()))?;
    if args.hidden.len() > MAX_HIDDEN_LAYERS {
        bail!(
            "--hidden lists {} layers; at most {MAX_HIDDEN_LAYERS} are supported: give a shorter list",
            args.hidden.len()
        );
    }
    if args.samples > mnist.train.n {
        bail!("--samples {} is more than the {} training images in {}", args.samples, mnist.train.n, dir.display());
    }
    let gpu_wanted = args.backend != BenchBackends::Cpu;
    let adapter = if gpu_wanted { Some(context::select(args.adapter.as_deref(), false)) } else { None };
    let gpu_info = match adapter {
        Some(Ok(a)) => Some(a.get_info()),
        Some(Err(e)) if args.backend == BenchBackends::Gpu => return Err(e.into()),
        Some(Err(e)) => {
            println!("{e}; timing the CPU only");
            None
        }
        None => None,
    };
    let report_gpu =
        gpu_info.as_ref().map(|i| format!("{} driver {} {}", context::describe(i), i.driver, i.driver_info));
    let mut report = Report {
        cpu: cpu_name(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        threads: rayon::current_num_threads(),
        simd: cpu_simd().into(),
        simd_used: fast::Simd::detect().name().into(),
        peak_gflops: None,
        peak_measurements: Vec::new(),
        gpu: report_gpu.clone(),
        points: Vec::new(),
        naive: Vec::new(),
        tuning: Vec::new(),
        crossover: Vec::new(),
    };
    println!(
        "CPU: {}, {} cores, {}, {} (fast path built for {})",
        report.cpu,
        report.cores,
        gpu_mnist::cpu::threads_phrase(report.threads),
        report.simd,
        report.simd_used
    );
    if args.backend != BenchBackends::Gpu {
        let peak = report.measure_peak();
        println!(
            "CPU peak: {peak:.1} GFLOP/s, measured: independent {} fused multiply-adds on {} at once (again after \
             each CPU measurement; the highest counts)",
            report.simd_used,
            gpu_mnist::cpu::threads_phrase(report.threads)
        );
    }
    if let Some(g) = &report_gpu {
        println!("GPU: {g}");
    }
    // Tuned first, so that the timings below run what the search chose.
    let rows = args.batch_size.map_or(args.samples, |b| b.min(args.samples));
    if args.tune && gpu_info.is_some() {
        let ctx = GpuContext::open(args.adapter.as_deref(), false, args.limits)?;
        let shape = Shape::new(mnist.train.d(), &args.hidden, K, true);
        report.tuning = tune::tune(&ctx, &shape, rows, args.tune_seconds)?;
    }
    let mut points = vec![(args.samples, args.hidden.clone())];
    if args.sweep {
        let depth = args.hidden.len();
        points = [32, 64, 128, 256, 512, 1024].iter().map(|&h| (args.samples, vec![h; depth])).collect();
        for n in [1000, 5000, 10000, 30000, 60000] {
            if n < args.samples && !points.contains(&(n, args.hidden.clone())) {
                points.push((n, args.hidden.clone()));
            }
        }
    }
    let backends = usize::from(args.backend != BenchBackends::Gpu) + usize::from(gpu_info.is_some());
    let bar = if std::io::stdout().is_terminal() {
        let bar = indicatif::ProgressBar::new((points.len() * backends) as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} measurements  {msg}  [{elapsed_precise}]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    for (n, hidden) in &points {
        let n = *n;
        let mut train = mnist.train.clone();
        train.truncate(n);
        let mut test = mnist.test.clone();
        test.truncate(1000);
        let data = gpu_mnist::data::Splits::new(train.clone(), test);
        let shape = Shape::new(train.d(), hidden, K, true);
        // A batch of N rows or more is the full batch, as in `train`.
        let batch = args.batch_size.filter(|&b| b < n);
        let (rows, steps) = batch.map_or((n, 1), |b| (b, batch_count(n, b)));
        let gflop = flops_per_iteration(rows, &shape) / 1e9;
        let name = shape.describe();
        bar.suspend(|| match batch {
            Some(b) => println!(
                "\n{name}, N {n} in mini-batches of {b} ({steps} steps per epoch, a fresh shuffled order each epoch), \
                 {} update: {gflop:.3} GFLOP per iteration (one step, dense-equivalent)",
                args.optimizer.name(),
            ),
            None => {
                let given = args.batch_size.map_or(String::new(), |b| format!(" (--batch-size {b} is at least N)"));
                println!("\n{name}, N {n}, full batch{given}: {gflop:.2} GFLOP per iteration (dense-equivalent)")
            }
        });
        let mut results = Vec::new();
        if args.backend != BenchBackends::Gpu {
            bar.set_message(format!("cpu, N {n}, {name}"));
            let mut r = cpu::bench(&train, shape.clone(), args.activation, batch, args)?;
            r.set_peak(report.measure_peak());
            results.push(r);
            bar.inc(1);
        }
        if gpu_info.is_some() {
            bar.set_message(format!("gpu, N {n}, {name}"));
            let ctx = GpuContext::open(args.adapter.as_deref(), false, args.limits)?;
            results.push(gpu::bench(ctx, &data, shape, args.activation, batch, args)?);
            bar.inc(1);
        }
        bar.suspend(|| {
            for r in &results {
                print_figures(r, !args.sweep, batch.map(|_| steps));
            }
        });
        let ratio = match (results.iter().find(|r| r.backend == "cpu"), results.iter().find(|r| r.backend == "gpu")) {
            (Some(c), Some(g)) => Some(g.seconds_per_iteration / c.seconds_per_iteration),
            _ => None,
        };
        if let Some(r) = ratio {
            let verdict = if r < 1.0 {
                format!("the GPU is {:.1}x faster", 1.0 / r)
            } else {
                format!("the CPU is {r:.1}x faster")
            };
            bar.suspend(|| println!("GPU/CPU time ratio {r:.2}: {verdict}"));
        }
        report.points.push(Point {
            n,
            h: hidden[0],
            hidden: hidden.clone(),
            batch_size: batch,
            steps_per_epoch: steps,
            gflop_per_iteration: gflop,
            results,
            gpu_over_cpu: ratio,
        });
    }
    bar.finish_and_clear();
    if args.crossover && args.backend != BenchBackends::Gpu {
        report.crossover = cpu::crossover(&args.hidden);
    }
    if args.naive && gpu_info.is_some() {
        let ctx = GpuContext::open(args.adapter.as_deref(), false, args.limits)?;
        report.naive = gpu::bench_naive(&ctx, &mnist.train, args)?;
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("encoding the report as JSON")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}

/// `r`'s line (with `steps` per epoch: the step's and the epoch's seconds), and its op table.
fn print_figures(r: &BackendFigures, per_op: bool, steps: Option<usize>) {
    match steps {
        Some(steps) => println!(
            "{} ({}): {:.6} s per step, {:.4} s per epoch ({steps} steps), {:.1} GFLOP/s; self-check: {}",
            r.backend, r.device, r.seconds_per_iteration, r.seconds_per_epoch, r.gflops, r.self_check
        ),
        None => println!(
            "{} ({}): {:.4} s per iteration, {:.1} GFLOP/s; self-check: {}",
            r.backend, r.device, r.seconds_per_iteration, r.gflops, r.self_check
        ),
    }
    if !per_op {
        return;
    }
    println!("  timing: {}", r.timing);
    let work = r.ops.iter().any(|o| o.work_gflops.is_some());
    let (work_head, peak_head) = if work { ("   work", "of peak") } else { ("", "") };
    println!(
        "  {:<52} {:>9} {:>8}{work_head:>8}{peak_head:>8} {:>7} {:>6}",
        "op", "seconds", "GFLOP/s", "GB/s", "share"
    );
    let or_dash =
        |v: Option<f64>, scale: f64, unit: &str| v.map_or("-".to_string(), |g| format!("{:.1}{unit}", scale * g));
    for o in &r.ops {
        let work_cols = if work {
            format!("{:>8}{:>8}", or_dash(o.work_gflops, 1.0, ""), or_dash(o.of_peak, 100.0, "%"))
        } else {
            String::new()
        };
        println!(
            "  {:<52} {:>9.5} {:>8}{work_cols} {:>7.2} {:>5.1}%",
            o.op,
            o.seconds,
            or_dash(o.gflops, 1.0, ""),
            o.gbytes_per_s,
            100.0 * o.share
        );
    }
}
