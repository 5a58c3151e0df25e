//! `bench` on the GPU: one step checked against the CPU, then the step and each kernel timed,
//! and (`--naive`) the large products under each tiling against the naive kernels.

use std::time::Instant;

use anyhow::{Result, bail};

use super::figures::{BackendFigures, LR, NaiveFigure, TuneFigure, figure, flops_per_iteration, median};
use crate::app::cli::BenchArgs;
use gpu_mnist::backend::Backend;
use gpu_mnist::cpu::fast::{self, SparseRows};
use gpu_mnist::data::{Dataset, Splits};
use gpu_mnist::gpu::dispatch::View;
use gpu_mnist::gpu::kernels::Kernels;
use gpu_mnist::gpu::matmul::NaiveKernels;
use gpu_mnist::gpu::shaders::{MatmulOp, optimizer_entry};
use gpu_mnist::gpu::uniforms::MatmulParams;
use gpu_mnist::gpu::{GpuBackend, GpuContext, GpuOptions, Tiles, Tiling, pack_rows, packed_row_bytes, profile};
use gpu_mnist::gpu::{tune, tune_cache};
use gpu_mnist::model::{Activation, Params, Shape};
use gpu_mnist::optim::{self, Optimizer, OptimizerConfig, OptimizerState};
use gpu_mnist::train::{VERIFY_TOLERANCE, relative_difference, worst};

/// Least bytes moved and FLOPs of each GPU dispatch of one step over `n` rows; `layer` counts
/// from 1 (the first layer, which reads the packed pixels) to the output layer.
fn gpu_cost(label: &str, layer: u8, n: f64, s: &Shape, rule: Optimizer) -> (String, Option<f64>, f64) {
    let (l, out) = (layer as usize, s.layer_count());
    let (fan_in, fan_out) = if l > 0 { s.layer(l - 1) } else { (0, 0) };
    let (fi, fo, k) = (fan_in as f64, fan_out as f64, s.k as f64);
    let p = s.parameter_count() as f64;
    // The layer's input: the packed pixels, or the activations of the layer below.
    let input = if l == 1 { "X".to_string() } else { format!("A{}", l.saturating_sub(1)) };
    let input_bytes = if l == 1 { n * packed_row_bytes(s.d) as f64 } else { 4.0 * n * fi };
    let (what, flops, bytes) = match label {
        "linear_forward" => {
            let z = format!("{input}·W{l} + b{l}");
            let what = if l == out { z } else { format!("act({z})") };
            (what, Some(2.0 * n * fi * fo), input_bytes + 4.0 * (fi * fo + fo + n * fo))
        }
        "softmax_xent_forward" => ("loss, correct".into(), None, 4.0 * (n * k + n) + 8.0 * n),
        "softmax_xent_backward" => (format!("dZ{out}"), None, 4.0 * (2.0 * n * k + n)),
        "linear_backward_weight" => {
            (format!("dW{l} = {input}^T·dZ{l}"), Some(2.0 * n * fi * fo), input_bytes + 4.0 * (n * fo + fi * fo))
        }
        "linear_backward_input" => (
            format!("dZ{} = dZ{l}·W{l}^T ⊙ act'", l - 1),
            Some(2.0 * n * fi * fo),
            4.0 * (n * fo + fi * fo + 2.0 * n * fi),
        ),
        "column_sum" => (format!("db{l}"), None, 4.0 * (n * fo + fo)),
        _ => {
            // The update: its own name carries the entry point already.
            let (name, flops, bytes) = super::cpu::update_cost(rule, p);
            return (name.to_string(), Some(flops), bytes);
        }
    };
    let name = if layer > 0 { format!("{label} L{layer}: {what}") } else { format!("{label}: {what}") };
    (name, flops, bytes)
}

pub fn bench(
    ctx: GpuContext,
    data: &Splits,
    shape: Shape,
    act: Activation,
    args: &BenchArgs,
) -> Result<BackendFigures> {
    let params = Params::init(shape.clone(), act, 0);
    let rule = OptimizerConfig { kind: args.optimizer, ..OptimizerConfig::default() };
    let mut gpu = GpuBackend::new(
        ctx,
        data,
        &params,
        act,
        GpuOptions {
            tiling: Some(args.tiling.unwrap_or(Tiling::Auto)),
            optimizer: rule,
            on_tuning: Some(|l| println!("GPU: {l}")),
            ..Default::default()
        },
    )?;
    let train = &data.train;
    // Self-check: one step against the CPU. Each kernel feeds one of these outputs.
    gpu.step(0, LR)?;
    let (grads, stats, after) = (gpu.gradients()?, gpu.step_stats()?, gpu.params()?);
    let x = SparseRows::from_pixels(&train.pixels, shape.d);
    let (want, want_stats) = fast::forward_backward(&params, act, &x, &train.labels);
    let mut expected = params.clone();
    let mut state = OptimizerState::new(rule.kind, shape.clone());
    optim::optimizer_update(&mut expected, &grads, &mut state, &rule, LR);
    let update_check = format!("params ({})", optimizer_entry(rule.kind));
    let checks = [
        ("loss (linear_forward, softmax_xent_forward)", (stats.loss - want_stats.loss).abs() / want_stats.loss),
        (
            "dW1 (linear_backward_weight L1, linear_backward_input, softmax_xent_backward)",
            relative_difference(&grads.layers[0].w, &want.layers[0].w),
        ),
        ("db1 (column_sum L1)", relative_difference(&grads.layers[0].b, &want.layers[0].b)),
        ("dW2 (linear_backward_weight L2)", relative_difference(&grads.layers[1].w, &want.layers[1].w)),
        ("db2 (column_sum L2)", relative_difference(&grads.layers[1].b, &want.layers[1].b)),
        (
            update_check.as_str(),
            worst(
                after
                    .tensors()
                    .into_iter()
                    .zip(expected.tensors())
                    .map(|((n, a), (_, e))| (n, relative_difference(a, e))),
            )
            .1,
        ),
    ];
    let worst = worst(checks);
    if !(worst.1 <= VERIFY_TOLERANCE) {
        bail!("GPU self-check failed: {} differs from the CPU by {:.2e} (relative)", worst.0, worst.1);
    }
    for _ in 0..args.warmup {
        gpu.step(0, LR)?;
    }
    gpu.wait()?;
    let mut iters = Vec::new();
    for _ in 0..args.repeats {
        let t = Instant::now();
        gpu.step(0, LR)?;
        gpu.wait()?;
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
            let (name, flops, bytes) = gpu_cost(label, *layer, train.n as f64, &shape, rule.kind);
            figure(name, *t, flops, bytes, total)
        })
        .collect();
    Ok(BackendFigures {
        backend: "gpu".into(),
        device: format!("{}, {} matmul tiling", gpu.device(), gpu.tiling().name()),
        timing: format!(
            "iteration: wall time of one submitted step until the device is idle; kernels: {} (sum {total:.4} s), shares of that sum",
            source.describe()
        ),
        seconds_per_iteration: iteration,
        gflops: flops_per_iteration(train.n, shape.d, shape.hidden[0], shape.k) / iteration / 1e9,
        ops,
        self_check: format!("passed: one step vs the CPU, worst {} {:.1e}", worst.0, worst.1),
    })
}

/// The two large products on the real pixels: one output per invocation, register tiles and
/// workgroup-memory tiles, each checked against the naive result before it is timed.
pub fn bench_naive(ctx: &GpuContext, train: &Dataset, args: &BenchArgs) -> Result<Vec<NaiveFigure>> {
    let (n, d, h) = (args.samples.min(train.n), train.d(), args.hidden);
    let [register, shared] = [Tiling::Register, Tiling::Shared].map(|t| Kernels::new(&ctx.device, Tiles::fixed(t)));
    let naive = NaiveKernels::new(&ctx.device);
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
        let tiled = |k: &Kernels, c: &wgpu::Buffer| match weight {
            false => k.linear_forward(dev, fwd, View::all(&x), View::all(&w), View::all(&b), View::all(c)),
            // Never split: one dispatch.
            true => k.linear_backward_weight(dev, bwd, View::all(&x), View::all(&dz), View::all(c), None).remove(0),
        };
        let naive_run = match weight {
            false => naive.linear_forward_naive(
                dev,
                fwd,
                View::all(&x),
                View::all(&w),
                View::all(&b),
                View::all(&outputs[0]),
            ),
            true => naive.linear_backward_weight_naive(dev, bwd, View::all(&x), View::all(&dz), View::all(&outputs[0])),
        };
        let runs = [naive_run, tiled(&register, &outputs[1]), tiled(&shared, &outputs[2])];
        let mut seconds = [0.0; 3];
        for (i, run) in runs.iter().enumerate() {
            let mut v: Vec<f64> = Vec::new();
            for _ in 0..args.repeats.clamp(1, 3) {
                v.push(profile::time_dispatches(ctx, &[run])?.0[0]);
            }
            seconds[i] = median(&mut v);
        }
        let staging = ctx.staging(len);
        let naive_out = ctx.read_f32(&outputs[0], 0, len, &staging)?;
        for (tiled, what) in [(&outputs[1], "register"), (&outputs[2], "shared")] {
            let diff = relative_difference(&ctx.read_f32(tiled, 0, len, &staging)?, &naive_out);
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

/// Every candidate of each wide product of the step of `shape` over `rows` rows, timed anew
/// (the search the tuner runs), printed as a table; the fastest go into the tuning cache.
pub fn tune(ctx: &GpuContext, shape: &Shape, rows: usize, seconds: f64) -> Result<Vec<TuneFigure>> {
    let products = gpu_mnist::gpu::step_products(shape, rows);
    let mut cache = tune_cache::Cache::open(&ctx.info, &ctx.limits, &mut |l| println!("{l}"));
    let share = seconds / products.len().max(1) as f64;
    let mut out = Vec::new();
    println!("\ntuning ({}): every candidate of each product, timed on the rows shown", timing_source(ctx));
    for product in &products {
        let search = tune::search(ctx, product, share, &mut |_| {})?;
        let timed = tune::Product { p: search_params(product, search.rows), ..*product };
        println!("  {} on {} rows:", product.describe(), search.rows);
        for t in &search.timings {
            let chosen = t.config == search.best;
            let gflops = timed.flops() / t.seconds / 1e9;
            let mark = match (chosen, t.runs) {
                (true, _) => "  <- chosen".to_string(),
                (false, 1) => "  (1 run: slower than twice the fastest)".to_string(),
                _ => String::new(),
            };
            println!("    {:<28} {:>10.3} ms {:>8.1} GFLOP/s{mark}", t.config.name(), 1e3 * t.seconds, gflops);
            let (product, config, rows) = (product.describe(), t.config.name(), search.rows);
            out.push(TuneFigure { product, rows, config, seconds: t.seconds, gflops, chosen });
        }
        cache.put(&search);
    }
    match cache.save() {
        Ok(()) => println!("kept in {}", cache.location()),
        Err(e) => println!("the tuning cache was not written: {e}"),
    }
    Ok(out)
}

/// `product`'s shapes over `rows` rows (M of the forward pass and input gradient, K of the
/// weight gradient).
fn search_params(product: &tune::Product, rows: u32) -> MatmulParams {
    match product.op {
        MatmulOp::BackwardWeight => MatmulParams { k: rows, ..product.p },
        _ => MatmulParams { m: rows, ..product.p },
    }
}

fn timing_source(ctx: &GpuContext) -> &'static str {
    if ctx.has_timestamps() { "GPU timestamp queries" } else { "wall time around submit-and-wait" }
}
