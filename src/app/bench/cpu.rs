//! `bench` on the CPU: the fast step timed per phase, after a check against the reference.

use std::time::Instant;

use anyhow::{Result, bail};

use super::figures::{BackendFigures, LR, OpFigure, figure, flops_per_iteration, median};
use crate::app::cli::BenchArgs;
use gpu_mnist::cpu::fast::{self, SparseRows};
use gpu_mnist::cpu::reference;
use gpu_mnist::data::Dataset;
use gpu_mnist::model::{Activation, Params, Shape};
use gpu_mnist::optim::{self, Optimizer, OptimizerConfig, OptimizerState};
use gpu_mnist::train::{relative_difference, worst};

/// The fast CPU path against the reference on 2,000 digits: sums of up to 2,000 terms in another
/// order, measured ~1e-7 of each tensor's scale.
const CPU_CHECK_TOLERANCE: f64 = 1e-4;

pub fn bench(train: &Dataset, shape: Shape, act: Activation, args: &BenchArgs) -> Result<BackendFigures> {
    let (n, d, h, k) = (train.n, shape.d, shape.hidden[0], shape.k);
    let x = SparseRows::from_pixels(&train.pixels, d);
    let mut params = Params::init(shape.clone(), act, 0);
    let check_n = n.min(2000);
    let sub = SparseRows::from_pixels(&train.pixels[..check_n * d], d);
    let xs = reference::scale_pixels(&train.pixels[..check_n * d]);
    let (want, want_stats) = reference::forward_backward(&params, act, &xs, &train.labels[..check_n]);
    let (got, got_stats) = fast::forward_backward(&params, act, &sub, &train.labels[..check_n]);
    let loss = (got_stats.loss - want_stats.loss).abs() / want_stats.loss;
    let tensors =
        got.tensors().into_iter().zip(want.tensors()).map(|((name, g), (_, w))| (name, relative_difference(g, w)));
    let worst = worst(std::iter::once(("loss", loss)).chain(tensors));
    if !(worst.1 <= CPU_CHECK_TOLERANCE) {
        bail!("CPU self-check failed: {} differs from the reference by {:.2e} (relative)", worst.0, worst.1);
    }
    let kernels = fast::Kernels::detect();
    let rule = OptimizerConfig { kind: args.optimizer, ..OptimizerConfig::default() };
    let mut state = OptimizerState::new(rule.kind, shape.clone());
    for _ in 0..args.warmup {
        let (g, _, _) = fast::forward_backward_with(kernels, false, &params, act, &x, &train.labels);
        optim::optimizer_update(&mut params, &g, &mut state, &rule, LR);
    }
    let (mut iters, mut phases, mut updates) = (Vec::new(), [Vec::new(), Vec::new(), Vec::new()], Vec::new());
    for _ in 0..args.repeats {
        let t0 = Instant::now();
        let (g, _, times) = fast::forward_backward_with(kernels, true, &params, act, &x, &train.labels);
        let t1 = Instant::now();
        optim::optimizer_update(&mut params, &g, &mut state, &rule, LR);
        let t2 = Instant::now();
        // Phase shares of the threads' busy time, applied to the wall time of the gradient pass.
        let busy = times.total().max(1) as f64;
        let fb = (t1 - t0).as_secs_f64();
        for (v, ns) in phases.iter_mut().zip([
            times.forward[0],
            times.total() - times.forward[0] - times.backward[0],
            times.backward[0],
        ]) {
            v.push(fb * ns as f64 / busy);
        }
        updates.push((t2 - t1).as_secs_f64());
        iters.push((t2 - t0).as_secs_f64());
    }
    let iteration = median(&mut iters);
    let (nf, df, hf, kf, nnz) = (n as f64, d as f64, h as f64, k as f64, x.col.len() as f64);
    let p = shape.parameter_count() as f64;
    let costs = [
        ("input forward: act(X·W1 + b1)", Some(2.0 * nf * df * hf), 6.0 * nnz + 4.0 * (df * hf + nf * hf)),
        ("layers above: forward, softmax, back to dZ1", Some(6.0 * nf * hf * kf), 8.0 * nf * hf + 4.0 * hf * kf + nf),
        ("input backward: X^T·dZ1, db1", Some(2.0 * nf * df * hf), 6.0 * nnz + 4.0 * (nf * hf + df * hf)),
    ];
    let mut times: Vec<f64> = phases.iter_mut().map(|v| median(v)).collect();
    times.push(median(&mut updates));
    let total: f64 = times.iter().sum();
    let mut ops: Vec<OpFigure> = costs
        .iter()
        .zip(&times)
        .map(|((name, flops, bytes), &t)| figure(name.to_string(), t, *flops, *bytes, total))
        .collect();
    let (name, flops, bytes) = update_cost(args.optimizer, p);
    ops.push(figure(name.into(), times[3], Some(flops), bytes, total));
    Ok(BackendFigures {
        backend: "cpu".into(),
        device: format!("{} threads, {}", rayon::current_num_threads(), kernels.simd.name()),
        timing: format!(
            "iteration: median wall time; phases: the gradient pass's wall time split by each phase's share of the \
             threads' busy time (phases alternate in blocks of 64 rows), shares of their sum; {:.1}% of the pixels \
             are non-zero, so the input layer's products are {} (dense from {:.0}% at {})",
            100.0 * nnz / (nf * df),
            if nnz >= kernels.dense_from * nf * df { "mostly dense" } else { "mostly sparse" },
            100.0 * kernels.dense_from,
            kernels.simd.name()
        ),
        seconds_per_iteration: iteration,
        gflops: flops_per_iteration(n, d, h, k) / iteration / 1e9,
        ops,
        self_check: format!("passed: fast vs reference on {check_n} digits, worst {} {:.1e}", worst.0, worst.1),
    })
}

/// The update of `p` parameters by `rule`: its name, FLOPs and bytes moved (f32 reads and writes
/// of the parameters, gradients and the rule's moments).
pub fn update_cost(rule: Optimizer, p: f64) -> (&'static str, f64, f64) {
    match rule {
        Optimizer::Gd => ("gd_update: w -= lr·g", 2.0 * p, 12.0 * p),
        Optimizer::Momentum => ("momentum_update: m = μm + g, w -= lr·m", 4.0 * p, 20.0 * p),
        Optimizer::Nesterov => ("nesterov_update: m = μm + g, w -= lr·(g + μm)", 6.0 * p, 20.0 * p),
        Optimizer::Adam => ("adam_update: m, v moments, w -= lr·m̂/(√v̂ + ε)", 13.0 * p, 28.0 * p),
    }
}
