//! `bench` on the GPU: one step checked against the CPU, then the step and each kernel timed,
//! and (`--naive`) the large products under each tiling against the naive kernels. With
//! `--batch-size`, epochs of mini-batch steps, each in a fresh shuffled order, as training takes them.

use std::time::Instant;

use anyhow::{Result, bail};

use super::cpu::{ORDER_SEED, step_rows};
use super::figures::{BackendFigures, LR, NaiveFigure, OpFigure, figure, flops_per_iteration, median};
use crate::app::cli::BenchArgs;
use gpu_mnist::backend::Backend;
use gpu_mnist::cpu::fast::{self, SparseRows};
use gpu_mnist::data::{Dataset, Splits};
use gpu_mnist::gpu::dispatch::View;
use gpu_mnist::gpu::kernels::Kernels;
use gpu_mnist::gpu::matmul::NaiveKernels;
use gpu_mnist::gpu::shaders::optimizer_entry;
use gpu_mnist::gpu::uniforms::MatmulParams;
use gpu_mnist::gpu::{GpuBackend, GpuContext, GpuOptions, Tiles, Tiling, pack_rows, packed_row_bytes, profile};
use gpu_mnist::model::{Activation, Params, Shape};
use gpu_mnist::optim::{self, Optimizer, OptimizerConfig, OptimizerState};
use gpu_mnist::train::{VERIFY_TOLERANCE, epoch_order, relative_difference, worst};

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
            let (name, flops, bytes) = super::phases::update_cost(rule, p);
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
    batch: Option<usize>,
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
            batch_size: batch,
            ..Default::default()
        },
    )?;
    let train = &data.train;
    let steps = gpu.batches();
    // The rows of the first step: batch 0 of epoch 0's order, or all of them.
    let first: Vec<u32> = match batch {
        Some(b) if steps > 1 => {
            gpu.shuffle(&epoch_order(train.n, ORDER_SEED, 0))?;
            step_rows(0, train.n, b, &mut None)
        }
        _ => (0..train.n as u32).collect(),
    };
    // Self-check: one step against the CPU. Each kernel feeds one of these outputs.
    gpu.step(0, LR)?;
    let (grads, stats, after) = (gpu.gradients()?, gpu.batch_stats(0)?, gpu.params()?);
    let x = SparseRows::from_pixels(&train.pixels, shape.d);
    let (want, want_stats) = match steps {
        1 => fast::forward_backward(&params, act, &x, &train.labels),
        _ => fast::forward_backward_rows(&params, act, &x, &train.labels, &first),
    };
    let mut expected = params.clone();
    let mut state = OptimizerState::new(rule.kind, shape.clone());
    optim::optimizer_update(&mut expected, &grads, &mut state, &rule, LR);
    let mut checks = vec![(
        "loss (linear_forward, softmax_xent_forward)".to_string(),
        (stats.loss - want_stats.loss).abs() / want_stats.loss,
    )];
    for (l, (g, w)) in grads.layers.iter().zip(&want.layers).enumerate() {
        let below = if l == 0 { ", linear_backward_input, softmax_xent_backward" } else { "" };
        checks
            .push((format!("dW{} (linear_backward_weight L{}{below})", l + 1, l + 1), relative_difference(&g.w, &w.w)));
        checks.push((format!("db{} (column_sum L{})", l + 1, l + 1), relative_difference(&g.b, &w.b)));
    }
    let update =
        after.tensors().into_iter().zip(expected.tensors()).map(|((n, a), (_, e))| (n, relative_difference(a, e)));
    checks.push((format!("params ({})", optimizer_entry(rule.kind)), worst(update).1));
    let worst = worst(checks.iter().map(|(name, v)| (name.as_str(), *v)));
    if !(worst.1 <= VERIFY_TOLERANCE) {
        bail!("GPU self-check failed: {} differs from the CPU by {:.2e} (relative)", worst.0, worst.1);
    }
    let worst = (worst.0.to_string(), worst.1);
    // Steps as training takes them: the full batch alone, or each epoch's batches in a fresh
    // order, recorded and submitted together; a repeat is one step, or one epoch.
    let mut epoch = 1;
    let mut run = |gpu: &mut GpuBackend| -> Result<()> {
        if steps > 1 {
            gpu.shuffle(&epoch_order(train.n, ORDER_SEED, epoch))?;
            epoch += 1;
        }
        for b in 0..steps {
            gpu.step(b, LR)?;
        }
        Ok(gpu.wait()?)
    };
    for _ in 0..args.warmup {
        run(&mut gpu)?;
    }
    let mut iters = Vec::new();
    for _ in 0..args.repeats {
        let t = Instant::now();
        run(&mut gpu)?;
        iters.push(t.elapsed().as_secs_f64() / steps as f64);
    }
    let iteration = median(&mut iters);
    let (source, ops, total) = per_kernel(&mut gpu, first.len(), &shape, rule.kind, args.repeats)?;
    let what = match batch {
        Some(b) if steps > 1 => format!(
            "step: median over {} epochs of an epoch's wall time ({steps} steps of {b} rows, a fresh shuffled order \
             each, submitted as training submits them) / {steps}; kernels: the first batch's step alone,",
            args.repeats
        ),
        _ => "iteration: wall time of one submitted step until the device is idle; kernels:".to_string(),
    };
    Ok(BackendFigures {
        backend: "gpu".into(),
        device: format!("{}, {} matmul tiling", gpu.device(), gpu.tiling().name()),
        timing: format!("{what} {} (sum {total:.4} s), shares of that sum", source.describe()),
        seconds_per_iteration: iteration,
        seconds_per_epoch: steps as f64 * iteration,
        gflops: flops_per_iteration(first.len(), &shape) / iteration / 1e9,
        ops,
        self_check: format!("passed: one step vs the CPU, worst {} {:.1e}", worst.0, worst.1),
    })
}

/// Per-kernel times of the first batch's step over `rows` rows: every dispatch timed on its own,
/// chunks of the same kernel added up, the median of `repeats`.
fn per_kernel(
    gpu: &mut GpuBackend,
    rows: usize,
    shape: &Shape,
    rule: Optimizer,
    repeats: usize,
) -> Result<(profile::TimingSource, Vec<OpFigure>, f64)> {
    let mut per_kernel: Vec<((&'static str, u8), Vec<f64>)> = Vec::new();
    let mut source = profile::TimingSource::WallClock;
    for _ in 0..repeats {
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
    let medians: Vec<((&'static str, u8), f64)> =
        per_kernel.into_iter().map(|(k, mut v)| (k, median(&mut v))).collect();
    let total: f64 = medians.iter().map(|(_, t)| t).sum();
    let ops = medians
        .iter()
        .map(|((label, layer), t)| {
            let (name, flops, bytes) = gpu_cost(label, *layer, rows as f64, shape, rule);
            figure(name, *t, flops, bytes, total)
        })
        .collect();
    Ok((source, ops, total))
}

/// The two large products on the real pixels: one output per invocation, register tiles and
/// workgroup-memory tiles, each checked against the naive result before it is timed.
pub fn bench_naive(ctx: &GpuContext, train: &Dataset, args: &BenchArgs) -> Result<Vec<NaiveFigure>> {
    let (n, d, h) = (args.samples.min(train.n), train.d(), args.hidden[0]);
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
