//! `gpu-mnist bench`: the real full-batch training step, timed per backend and per kernel.
//!
//! Every figure names where it was measured. Before timing, each backend's results are checked
//! against the CPU reference; a mismatch is an error, not a number. FLOP counts are those of the
//! dense computation (what NumPy does, `2N(DH+HK) + 2N(DH+2HK)` per iteration), also for the
//! sparse CPU phases, so GFLOP/s compare like for like. Bytes are the least traffic an op needs:
//! its inputs read once and its outputs written once.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::backend::Backend;
use crate::cli::{BenchArgs, BenchBackends};
use crate::cpu::fast::{self, SparseRows};
use crate::cpu::reference;
use crate::data::Dataset;
use crate::gpu::kernels::{Kernels, MatmulParams, View};
use crate::gpu::{GpuBackend, GpuContext, GpuOptions, Tiling, context, pack_rows, packed_row_bytes, profile};
use crate::model::{Activation, K, Params, Shape};
use crate::train::{VERIFY_TOLERANCE, relative_difference};

/// Learning rate of the timed steps (it does not change the work).
const LR: f32 = 0.8;
/// The fast CPU path against the reference on 2,000 digits: sums of up to 2,000 terms in another
/// order, measured ~1e-7 of each tensor's scale.
const CPU_CHECK_TOLERANCE: f64 = 1e-4;

#[derive(Clone, Debug, Serialize)]
pub struct OpFigure {
    pub op: String,
    pub seconds: f64,
    pub gflops: Option<f64>,
    pub gbytes_per_s: f64,
    pub share: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackendFigures {
    pub backend: String,
    pub device: String,
    pub timing: String,
    pub seconds_per_iteration: f64,
    pub gflops: f64,
    pub ops: Vec<OpFigure>,
    pub self_check: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub n: usize,
    pub h: usize,
    pub gflop_per_iteration: f64,
    pub results: Vec<BackendFigures>,
    /// GPU seconds per iteration divided by the CPU's (below 1: the GPU is faster).
    pub gpu_over_cpu: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NaiveFigure {
    pub product: String,
    pub naive_s: f64,
    pub register_s: f64,
    pub shared_s: f64,
    pub naive_gflops: f64,
    pub register_gflops: f64,
    pub shared_gflops: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub cpu: String,
    pub cores: usize,
    pub threads: usize,
    pub simd: String,
    pub simd_used: String,
    pub gpu: Option<String>,
    pub points: Vec<Point>,
    pub naive: Vec<NaiveFigure>,
}

/// Dense-equivalent FLOPs of one iteration, as the NumPy peer counts them.
pub fn flops_per_iteration(n: usize, d: usize, h: usize, k: usize) -> f64 {
    let (n, d, h, k) = (n as f64, d as f64, h as f64, k as f64);
    2.0 * n * (d * h + h * k) + 2.0 * n * (d * h + 2.0 * h * k)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

fn figure(op: String, seconds: f64, flops: Option<f64>, bytes: f64, total: f64) -> OpFigure {
    OpFigure {
        op,
        seconds,
        gflops: flops.map(|f| f / seconds / 1e9),
        gbytes_per_s: bytes / seconds / 1e9,
        share: seconds / total,
    }
}

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

pub fn run(args: &BenchArgs) -> Result<()> {
    let dir = crate::commands::data_dir(&args.data);
    let mnist = crate::data::load_mnist(&dir).with_context(|| format!("loading MNIST from {}", dir.display()))?;
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
        simd: fast::Simd::detect().name().into(),
        simd_used: fast::best_simd().name().into(),
        gpu: report_gpu.clone(),
        points: Vec::new(),
        naive: Vec::new(),
    };
    println!(
        "CPU: {}, {} cores, {} threads, {} (fast path built for {})",
        report.cpu, report.cores, report.threads, report.simd, report.simd_used
    );
    if let Some(g) = &report_gpu {
        println!("GPU: {g}");
    }
    let mut points = vec![(args.samples, args.hidden)];
    if args.sweep {
        points = [32, 64, 128, 256, 512, 1024].iter().map(|&h| (args.samples, h)).collect();
        for n in [1000, 5000, 10000, 30000, 60000] {
            if n < args.samples && !points.contains(&(n, args.hidden)) {
                points.push((n, args.hidden));
            }
        }
    }
    for &(n, h) in &points {
        let mut train = mnist.train.clone();
        train.truncate(n);
        let mut test = mnist.test.clone();
        test.truncate(1000);
        let shape = Shape { d: train.d(), h, k: K, bias: true };
        let gflop = flops_per_iteration(n, shape.d, h, K) / 1e9;
        println!("\nN {n}, D {}, H {h}, K {K}: {gflop:.2} GFLOP per iteration (dense-equivalent)", shape.d);
        let mut results = Vec::new();
        if args.backend != BenchBackends::Gpu {
            results.push(bench_cpu(&train, shape, args.activation, args)?);
        }
        if gpu_info.is_some() {
            let ctx = GpuContext::open(args.adapter.as_deref(), false)?;
            results.push(bench_gpu(ctx, &train, &test, shape, args.activation, args)?);
        }
        for r in &results {
            print_figures(r, !args.sweep);
        }
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
            println!("GPU/CPU time ratio {r:.2}: {verdict}");
        }
        report.points.push(Point { n, h, gflop_per_iteration: gflop, results, gpu_over_cpu: ratio });
    }
    if args.naive && gpu_info.is_some() {
        let ctx = GpuContext::open(args.adapter.as_deref(), false)?;
        report.naive = bench_naive(&ctx, &mnist.train, args)?;
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("encoding the report as JSON")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}

fn print_figures(r: &BackendFigures, per_op: bool) {
    println!(
        "{} ({}): {:.4} s per iteration, {:.1} GFLOP/s; self-check: {}",
        r.backend, r.device, r.seconds_per_iteration, r.gflops, r.self_check
    );
    if !per_op {
        return;
    }
    println!("  timing: {}", r.timing);
    println!("  {:<52} {:>9} {:>8} {:>7} {:>6}", "op", "seconds", "GFLOP/s", "GB/s", "share");
    for o in &r.ops {
        let gf = o.gflops.map_or("-".to_string(), |g| format!("{g:.1}"));
        println!("  {:<52} {:>9.5} {:>8} {:>7.2} {:>5.1}%", o.op, o.seconds, gf, o.gbytes_per_s, 100.0 * o.share);
    }
}

fn bench_cpu(train: &Dataset, shape: Shape, act: Activation, args: &BenchArgs) -> Result<BackendFigures> {
    let (n, d, h, k) = (train.n, shape.d, shape.h, shape.k);
    let x = SparseRows::from_pixels(&train.pixels, d);
    let mut params = Params::init(shape, act, 0);
    let check_n = n.min(2000);
    let sub = SparseRows::from_pixels(&train.pixels[..check_n * d], d);
    let xs = reference::scale_pixels(&train.pixels[..check_n * d]);
    let (want, want_stats) = reference::forward_backward(&params, act, &xs, &train.labels[..check_n]);
    let (got, got_stats) = fast::forward_backward(&params, act, &sub, &train.labels[..check_n]);
    let mut worst = ("loss", (got_stats.loss - want_stats.loss).abs() / want_stats.loss);
    for ((name, g), (_, w)) in got.tensors().into_iter().zip(want.tensors()) {
        let diff = relative_difference(g, w);
        if !(diff <= worst.1) {
            worst = (name, diff);
        }
    }
    if !(worst.1 <= CPU_CHECK_TOLERANCE) {
        bail!("CPU self-check failed: {} differs from the reference by {:.2e} (relative)", worst.0, worst.1);
    }
    let simd = fast::best_simd();
    for _ in 0..args.warmup {
        let (g, _, _) = fast::forward_backward_with(simd, false, &params, act, &x, &train.labels);
        params.sgd_update(&g, LR);
    }
    let (mut iters, mut phases, mut updates) = (Vec::new(), [Vec::new(), Vec::new(), Vec::new()], Vec::new());
    for _ in 0..args.repeats {
        let t0 = Instant::now();
        let (g, _, times) = fast::forward_backward_with(simd, true, &params, act, &x, &train.labels);
        let t1 = Instant::now();
        params.sgd_update(&g, LR);
        let t2 = Instant::now();
        // Phase shares of the threads' busy time, applied to the wall time of the gradient pass.
        let busy = (times.sparse_forward + times.dense + times.sparse_backward).max(1) as f64;
        let fb = (t1 - t0).as_secs_f64();
        for (v, ns) in phases.iter_mut().zip([times.sparse_forward, times.dense, times.sparse_backward]) {
            v.push(fb * ns as f64 / busy);
        }
        updates.push((t2 - t1).as_secs_f64());
        iters.push((t2 - t0).as_secs_f64());
    }
    let iteration = median(&mut iters);
    let (nf, df, hf, kf, nnz) = (n as f64, d as f64, h as f64, k as f64, x.col.len() as f64);
    let p = shape.parameter_count() as f64;
    let costs = [
        ("sparse forward: act(X·W1 + b1)", Some(2.0 * nf * df * hf), 6.0 * nnz + 4.0 * (df * hf + nf * hf)),
        ("dense: layer 2, softmax, dZ1", Some(6.0 * nf * hf * kf), 8.0 * nf * hf + 4.0 * hf * kf + nf),
        ("sparse backward: X^T·dZ1, db1", Some(2.0 * nf * df * hf), 6.0 * nnz + 4.0 * (nf * hf + df * hf)),
    ];
    let mut times: Vec<f64> = phases.iter_mut().map(|v| median(v)).collect();
    times.push(median(&mut updates));
    let total: f64 = times.iter().sum();
    let mut ops: Vec<OpFigure> = costs
        .iter()
        .zip(&times)
        .map(|((name, flops, bytes), &t)| figure(name.to_string(), t, *flops, *bytes, total))
        .collect();
    ops.push(figure("sgd_update: params -= lr·grads".into(), times[3], Some(2.0 * p), 12.0 * p, total));
    Ok(BackendFigures {
        backend: "cpu".into(),
        device: format!("{} threads, {}", rayon::current_num_threads(), simd.name()),
        timing: format!(
            "iteration: median wall time; phases: the gradient pass's wall time split by each phase's share of the \
             threads' busy time (phases alternate in blocks of 64 rows), shares of their sum; sparse phases touch \
             {:.1}% of the pixels",
            100.0 * nnz / (nf * df)
        ),
        seconds_per_iteration: iteration,
        gflops: flops_per_iteration(n, d, h, k) / iteration / 1e9,
        ops,
        self_check: format!("passed: fast vs reference on {check_n} digits, worst {} {:.1e}", worst.0, worst.1),
    })
}

/// Least bytes moved and FLOPs of each GPU dispatch of one step over `n` rows.
fn gpu_cost(label: &str, layer: u8, n: f64, s: Shape) -> (String, Option<f64>, f64) {
    let (d, h, k) = (s.d as f64, s.h as f64, s.k as f64);
    let lda = packed_row_bytes(s.d) as f64;
    let p = s.parameter_count() as f64;
    let (what, flops, bytes) = match (label, layer) {
        ("linear_forward", 1) => ("act(X·W1 + b1)", Some(2.0 * n * d * h), n * lda + 4.0 * (d * h + h + n * h)),
        ("linear_forward", _) => ("A1·W2 + b2", Some(2.0 * n * h * k), 4.0 * (n * h + h * k + k + n * k)),
        ("softmax_xent_forward", _) => ("loss, correct", None, 4.0 * (n * k + n) + 8.0 * n),
        ("softmax_xent_backward", _) => ("dZ2", None, 4.0 * (2.0 * n * k + n)),
        ("linear_backward_weight", 2) => ("dW2 = A1^T·dZ2", Some(2.0 * n * h * k), 4.0 * (n * h + n * k + h * k)),
        ("linear_backward_input", _) => {
            ("dZ1 = dZ2·W2^T ⊙ act'", Some(2.0 * n * h * k), 4.0 * (n * k + h * k + 2.0 * n * h))
        }
        ("linear_backward_weight", _) => ("dW1 = X^T·dZ1", Some(2.0 * n * d * h), n * lda + 4.0 * (n * h + d * h)),
        ("column_sum", 1) => ("db1", None, 4.0 * (n * h + h)),
        ("column_sum", _) => ("db2", None, 4.0 * (n * k + k)),
        _ => ("params -= lr·grads", Some(2.0 * p), 12.0 * p),
    };
    let name = if layer > 0 { format!("{label} L{layer}: {what}") } else { format!("{label}: {what}") };
    (name, flops, bytes)
}

fn bench_gpu(
    ctx: GpuContext,
    train: &Dataset,
    test: &Dataset,
    shape: Shape,
    act: Activation,
    args: &BenchArgs,
) -> Result<BackendFigures> {
    let params = Params::init(shape, act, 0);
    let mut gpu =
        GpuBackend::new(ctx, train, test, &params, act, GpuOptions { max_chunk_rows: None, tiling: args.tiling })?;
    // Self-check: one step against the CPU. Each kernel feeds one of these outputs.
    gpu.step(LR)?;
    let (grads, stats, after) = (gpu.gradients()?, gpu.step_stats()?, gpu.params()?);
    let x = SparseRows::from_pixels(&train.pixels, shape.d);
    let (want, want_stats) = fast::forward_backward(&params, act, &x, &train.labels);
    let mut expected = params.clone();
    expected.sgd_update(&grads, LR);
    let checks = [
        ("loss (linear_forward, softmax_xent_forward)", (stats.loss - want_stats.loss).abs() / want_stats.loss),
        (
            "dW1 (linear_backward_weight L1, linear_backward_input, softmax_xent_backward)",
            relative_difference(&grads.w1, &want.w1),
        ),
        ("db1 (column_sum L1)", relative_difference(&grads.b1, &want.b1)),
        ("dW2 (linear_backward_weight L2)", relative_difference(&grads.w2, &want.w2)),
        ("db2 (column_sum L2)", relative_difference(&grads.b2, &want.b2)),
        (
            "params (sgd_update)",
            relative_difference(&after.w1, &expected.w1).max(relative_difference(&after.w2, &expected.w2)),
        ),
    ];
    let worst = checks.iter().fold(("", 0.0f64), |w, &(n, d)| if !(d <= w.1) { (n, d) } else { w });
    if !(worst.1 <= VERIFY_TOLERANCE) {
        bail!("GPU self-check failed: {} differs from the CPU by {:.2e} (relative)", worst.0, worst.1);
    }
    for _ in 0..args.warmup {
        gpu.step(LR)?;
    }
    gpu.finish()?;
    let mut iters = Vec::new();
    for _ in 0..args.repeats {
        let t = Instant::now();
        gpu.step(LR)?;
        gpu.finish()?;
        iters.push(t.elapsed().as_secs_f64());
    }
    let iteration = median(&mut iters);
    // Per-kernel times: every dispatch timed on its own, chunks of the same kernel added up.
    let mut per_kernel: Vec<((&'static str, u8), Vec<f64>)> = Vec::new();
    let mut source = profile::TimingSource::WallClock;
    for _ in 0..args.repeats {
        let (times, src) = gpu.profile_step(LR)?;
        source = src;
        let mut sums: Vec<((&'static str, u8), f64)> = Vec::new();
        for (label, layer, t) in times {
            match sums.iter_mut().find(|(key, _)| *key == (label, layer)) {
                Some((_, s)) => *s += t,
                None => sums.push(((label, layer), t)),
            }
        }
        for (key, t) in sums {
            match per_kernel.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(t),
                None => per_kernel.push((key, vec![t])),
            }
        }
    }
    let mut medians: Vec<((&'static str, u8), f64)> =
        per_kernel.into_iter().map(|(k, mut v)| (k, median(&mut v))).collect();
    let total: f64 = medians.iter().map(|(_, t)| t).sum();
    let ops = medians
        .iter_mut()
        .map(|((label, layer), t)| {
            let (name, flops, bytes) = gpu_cost(label, *layer, train.n as f64, shape);
            figure(name, *t, flops, bytes, total)
        })
        .collect();
    Ok(BackendFigures {
        backend: "gpu".into(),
        device: format!("{}, {:?} matmul tiling", gpu.device(), gpu.tiling()),
        timing: format!(
            "iteration: wall time of one submitted step until the device is idle; kernels: {} (sum {total:.4} s), shares of that sum",
            source.describe()
        ),
        seconds_per_iteration: iteration,
        gflops: flops_per_iteration(train.n, shape.d, shape.h, shape.k) / iteration / 1e9,
        ops,
        self_check: format!("passed: one step vs the CPU, worst {} {:.1e}", worst.0, worst.1),
    })
}

/// The two large products on the real pixels: one output per invocation, register tiles and
/// workgroup-memory tiles, each checked against the naive result before it is timed.
fn bench_naive(ctx: &GpuContext, train: &Dataset, args: &BenchArgs) -> Result<Vec<NaiveFigure>> {
    let (n, d, h) = (args.samples.min(train.n), train.d(), args.hidden);
    let (register, shared) = (Kernels::new(&ctx.device, Tiling::Register), Kernels::new(&ctx.device, Tiling::Shared));
    let lda = packed_row_bytes(d) as u32;
    let none = wgpu::BufferUsages::empty();
    let x = ctx.upload("pixels", &pack_rows(&train.pixels[..n * d], d), none);
    let wv: Vec<f32> = (0..d * h).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let dzv: Vec<f32> = (0..n * h).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
    let (w, dz) =
        (ctx.upload("w", bytemuck::cast_slice(&wv), none), ctx.upload("dz", bytemuck::cast_slice(&dzv), none));
    let b = ctx.zeros("b", h, none);
    let fwd = MatmulParams {
        m: n as u32,
        n: h as u32,
        k: d as u32,
        lda,
        ldb: h as u32,
        a_u8: 1,
        bias: 1,
        ..Default::default()
    };
    let bwd = MatmulParams { m: d as u32, n: h as u32, k: n as u32, lda, ldb: h as u32, a_u8: 1, ..Default::default() };
    let flops = 2.0 * (n * d * h) as f64;
    let dev = &ctx.device;
    let mut out = Vec::new();
    for (name, len, weight) in
        [("X·W1 (linear_forward L1)", n * h, false), ("X^T·dZ1 (linear_backward_weight L1)", d * h, true)]
    {
        let outputs = [ctx.zeros("naive", len, none), ctx.zeros("register", len, none), ctx.zeros("shared", len, none)];
        let dispatch = |k: &Kernels, c: &wgpu::Buffer, naive: bool| match (weight, naive) {
            (false, false) => k.linear_forward(dev, fwd, View::all(&x), View::all(&w), View::all(&b), View::all(c)),
            (false, true) => {
                k.linear_forward_naive(dev, fwd, View::all(&x), View::all(&w), View::all(&b), View::all(c))
            }
            (true, false) => k.linear_backward_weight(dev, bwd, View::all(&x), View::all(&dz), View::all(c)),
            (true, true) => k.linear_backward_weight_naive(dev, bwd, View::all(&x), View::all(&dz), View::all(c)),
        };
        let runs = [
            dispatch(&register, &outputs[0], true),
            dispatch(&register, &outputs[1], false),
            dispatch(&shared, &outputs[2], false),
        ];
        let mut seconds = [0.0; 3];
        for (i, run) in runs.iter().enumerate() {
            let mut v: Vec<f64> = Vec::new();
            for _ in 0..args.repeats.clamp(1, 3) {
                v.push(profile::time_dispatches(ctx, &[run])?.0[0]);
            }
            seconds[i] = median(&mut v);
        }
        let staging = ctx.staging(len);
        let naive = ctx.read_f32(&outputs[0], 0, len, &staging)?;
        for (tiled, what) in [(&outputs[1], "register"), (&outputs[2], "shared")] {
            let diff = relative_difference(&ctx.read_f32(tiled, 0, len, &staging)?, &naive);
            if !(diff <= VERIFY_TOLERANCE) {
                bail!("{what}-tiled and naive {name} disagree by {diff:.2e} (relative)");
            }
        }
        let gf = seconds.map(|t| flops / t / 1e9);
        println!(
            "{name}: naive {:.3} s ({:.1} GFLOP/s), register tiles {:.3} s ({:.1}, {:.1}x), workgroup-memory tiles {:.3} s ({:.1}, {:.1}x)",
            seconds[0],
            gf[0],
            seconds[1],
            gf[1],
            seconds[0] / seconds[1],
            seconds[2],
            gf[2],
            seconds[0] / seconds[2]
        );
        out.push(NaiveFigure {
            product: name.to_string(),
            naive_s: seconds[0],
            register_s: seconds[1],
            shared_s: seconds[2],
            naive_gflops: gf[0],
            register_gflops: gf[1],
            shared_gflops: gf[2],
        });
    }
    Ok(out)
}
