//! `bench` on the CPU: the fast step timed per phase, after a check against the reference. The
//! full batch, or (`--batch-size`) mini-batches of a shuffled order, a fresh one each epoch.

use std::time::Instant;

use anyhow::{Result, bail};

use super::figures::{BackendFigures, CrossoverFigure, LR, OpFigure, figure, flops_per_iteration, median};
use super::phases::{phase_nanos, phases, update_cost};
use crate::app::cli::BenchArgs;
use gpu_mnist::backend::{batch_count, batch_range};
use gpu_mnist::cpu;
use gpu_mnist::cpu::fast::{self, SparseRows};
use gpu_mnist::cpu::reference;
use gpu_mnist::data::Dataset;
use gpu_mnist::model::{Activation, Params, Shape};
use gpu_mnist::optim::{self, OptimizerConfig, OptimizerState};
use gpu_mnist::train::{batch_position, epoch_order, relative_difference, worst};

/// The fast CPU path against the reference on 2,000 digits: sums of up to 2,000 terms in another
/// order, measured ~1e-7 of each tensor's scale.
const CPU_CHECK_TOLERANCE: f64 = 1e-4;

/// The seed of the timed epochs' row orders.
pub const ORDER_SEED: u64 = 0;

/// The rows of the `position`-th step (0-based) of mini-batches of `batch` rows over `n` rows,
/// each epoch in `epoch_order`, as `train` visits them; `cache` keeps the latest epoch's order.
pub fn step_rows(position: usize, n: usize, batch: usize, cache: &mut Option<(usize, Vec<u32>)>) -> Vec<u32> {
    let (epoch, b) = batch_position(position, batch_count(n, batch));
    if cache.as_ref().is_none_or(|(e, _)| *e != epoch) {
        *cache = Some((epoch, epoch_order(n, ORDER_SEED, epoch)));
    }
    let order = cache.as_ref().map_or(&[][..], |(_, o)| &o[..]);
    order[batch_range(b, batch, n)].to_vec()
}

/// The fast step against the reference: on the first 2,000 rows, or on the first 2,000 rows of
/// the first mini-batch (the rows path) with `batch`. Returns the check's line.
fn self_check(train: &Dataset, params: &Params, act: Activation, batch: Option<usize>) -> Result<String> {
    let d = params.shape.d;
    let rows: Vec<u32> = match batch {
        Some(b) => step_rows(0, train.n, b, &mut None).into_iter().take(2000).collect(),
        None => (0..train.n.min(2000) as u32).collect(),
    };
    let pixels: Vec<u8> =
        rows.iter().flat_map(|&r| &train.pixels[r as usize * d..(r as usize + 1) * d]).copied().collect();
    let labels: Vec<u8> = rows.iter().map(|&r| train.labels[r as usize]).collect();
    let (want, want_stats) = reference::forward_backward(params, act, &reference::scale_pixels(&pixels), &labels);
    let (got, got_stats, what) = match batch {
        Some(_) => {
            let x = SparseRows::from_pixels(&train.pixels, d);
            let (g, s) = fast::forward_backward_rows(params, act, &x, &train.labels, &rows);
            (g, s, format!("fast mini-batch rows vs reference on {} digits", rows.len()))
        }
        None => {
            let (g, s) = fast::forward_backward(params, act, &SparseRows::from_pixels(&pixels, d), &labels);
            (g, s, format!("fast vs reference on {} digits", rows.len()))
        }
    };
    let loss = (got_stats.loss - want_stats.loss).abs() / want_stats.loss;
    let tensors =
        got.tensors().into_iter().zip(want.tensors()).map(|((name, g), (_, w))| (name, relative_difference(g, w)));
    let worst = worst(std::iter::once(("loss", loss)).chain(tensors));
    if !(worst.1 <= CPU_CHECK_TOLERANCE) {
        bail!("CPU self-check failed: {} differs from the reference by {:.2e} (relative)", worst.0, worst.1);
    }
    Ok(format!("passed: {what}, worst {} {:.1e}", worst.0, worst.1))
}

/// Times the step of `shape` on `train` (`batch`: rows per mini-batch, `None` for the full batch);
/// the caller sets each phase's work against the threads' peak (`BackendFigures::set_peak`).
pub fn bench(
    train: &Dataset,
    shape: Shape,
    act: Activation,
    batch: Option<usize>,
    args: &BenchArgs,
) -> Result<BackendFigures> {
    let (n, d) = (train.n, shape.d);
    let x = SparseRows::from_pixels(&train.pixels, d);
    let mut params = Params::init(shape.clone(), act, 0);
    let self_check = self_check(train, &params, act, batch)?;
    let kernels = fast::Kernels::detect();
    let rule = OptimizerConfig { kind: args.optimizer, ..OptimizerConfig::default() };
    let mut state = OptimizerState::new(rule.kind, shape.clone());
    // Reused from step to step, as training does.
    let mut g = Params::zeros(shape.clone());
    let mut order = None;
    let mut position = 0;
    let mut next_rows = |position: &mut usize| {
        let rows = batch.map(|b| step_rows(*position, n, b, &mut order));
        *position += 1;
        rows
    };
    for _ in 0..args.warmup {
        let rows = next_rows(&mut position);
        cpu::in_pool(|| {
            fast::forward_backward_with(&mut g, kernels, false, &params, act, &x, &train.labels, rows.as_deref());
            optim::optimizer_update(&mut params, &g, &mut state, &rule, LR);
        });
    }
    let count = 2 * shape.hidden.len() + 1;
    let (mut iters, mut phase_s, mut updates) = (Vec::new(), vec![Vec::new(); count], Vec::new());
    let mut step_rows_seen = Vec::new();
    for _ in 0..args.repeats {
        let rows = next_rows(&mut position);
        step_rows_seen.push(rows.as_ref().map_or(n, |r| r.len()) as f64);
        // As `CpuBackend::step` runs it: inside the thread pool.
        let t0 = Instant::now();
        let (times, t1) = cpu::in_pool(|| {
            let (_, times) =
                fast::forward_backward_with(&mut g, kernels, true, &params, act, &x, &train.labels, rows.as_deref());
            let t1 = Instant::now();
            optim::optimizer_update(&mut params, &g, &mut state, &rule, LR);
            (times, t1)
        });
        let t2 = Instant::now();
        // Phase shares of the threads' busy time, applied to the wall time of the gradient pass.
        let busy = times.total().max(1) as f64;
        let fb = (t1 - t0).as_secs_f64();
        for (v, ns) in phase_s.iter_mut().zip(phase_nanos(&times, shape.hidden.len())) {
            v.push(fb * ns as f64 / busy);
        }
        updates.push((t2 - t1).as_secs_f64());
        iters.push((t2 - t0).as_secs_f64());
    }
    let iteration = median(&mut iters);
    let rows = median(&mut step_rows_seen);
    let nnz_per_row = x.nnz() as f64 / n.max(1) as f64;
    // A mini-batch's inked quads: the set's mean per row times its rows.
    let quads_per_row = x.inked_quads() as f64 / n.max(1) as f64;
    let quad_share = 4.0 * quads_per_row / d.max(1) as f64;
    let p = shape.parameter_count() as f64;
    let times: Vec<f64> = phase_s.iter_mut().map(|v| median(v)).collect();
    let update = median(&mut updates);
    let total: f64 = times.iter().sum::<f64>() + update;
    let mut ops: Vec<OpFigure> = phases(&shape, rows, nnz_per_row * rows, quads_per_row * rows)
        .into_iter()
        .zip(&times)
        .map(|(ph, &t)| figure(ph.name, t, Some(ph.flops), ph.bytes, total).with_work(ph.work))
        .collect();
    let (name, flops, bytes) = update_cost(args.optimizer, p);
    ops.push(figure(name.into(), update, Some(flops), bytes, total));
    let steps = batch.map_or(1, |b| batch_count(n, b));
    let what = match batch {
        Some(b) => format!(
            "step: median wall time of {} steps on batches of {b} rows (a fresh shuffled order each epoch), gradient \
             pass and update",
            args.repeats
        ),
        None => "iteration: median wall time".to_string(),
    };
    Ok(BackendFigures {
        backend: "cpu".into(),
        device: format!("{}, {}", cpu::threads_phrase(rayon::current_num_threads()), kernels.simd.name()),
        timing: format!(
            "{what}; phases: the gradient pass's wall time split by each phase's share of the threads' busy time \
             ({}), shares of their sum with the update; {:.1}% of the pixels are non-zero and {:.1}% lie in quads (4 \
             side by side) with ink, which the input layer's products take (work: their multiply-adds, blank \
             pixels included, and the output layer's dense products; a hidden-to-hidden layer's blocks take dense or \
             sparse products by their density, its work not counted)",
            if rows as usize <= fast::BATCH_ROWS {
                "the phases go layer by layer over the batch".to_string()
            } else {
                format!("phases alternate in blocks of {} rows", fast::BLOCK)
            },
            100.0 * nnz_per_row / d as f64,
            100.0 * quad_share,
        ),
        seconds_per_iteration: iteration,
        seconds_per_epoch: steps as f64 * iteration,
        gflops: flops_per_iteration(rows as usize, &shape) / iteration / 1e9,
        ops,
        self_check,
    })
}

/// Input densities `bench --crossover` times: 5% to 100% in steps of 5%.
const CROSSOVER_DENSITIES: usize = 20;
/// Runs per density; the fastest counts.
const CROSSOVER_REPEATS: usize = 15;

/// `bench --crossover`: each hidden-to-hidden layer of `hidden` (256 -> 128 when there is none),
/// its two products timed over densities at this CPU's SIMD level and then the baseline's,
/// printed line by line as they are measured.
pub fn crossover(hidden: &[usize]) -> Vec<CrossoverFigure> {
    let mut layers: Vec<(usize, usize)> = hidden.windows(2).map(|w| (w[0], w[1])).collect();
    if layers.is_empty() {
        layers.push((256, 128));
    }
    // This CPU's level, and the baseline build's as well where that differs.
    let mut levels = vec![fast::Simd::detect()];
    if levels[0] != fast::Simd::Baseline {
        levels.push(fast::Simd::Baseline);
    }
    let densities: Vec<f64> = (1..=CROSSOVER_DENSITIES).map(|i| i as f64 / CROSSOVER_DENSITIES as f64).collect();
    let mut figures = Vec::new();
    for (simd, (fan_in, fan_out)) in levels.into_iter().flat_map(|s| layers.iter().map(move |&l| (s, l))) {
        println!(
            "\nhidden layer {fan_in} -> {fan_out}, a block of {} rows on one thread, {}: its forward product and \
             weight gradient over the non-zero inputs (sparse) and by register tiles (dense), fastest of {} runs",
            fast::BLOCK,
            simd.name(),
            CROSSOVER_REPEATS
        );
        println!("  density  sparse ms  dense ms  dense/sparse");
        let mut points = Vec::new();
        for &d in &densities {
            let p = fast::crossover(simd, fan_in, fan_out, d, CROSSOVER_REPEATS);
            let bits = if p.same_bits { "" } else { "  DIFFERENT BITS: a bug, please report it" };
            println!(
                "  {:>6.0}%  {:>9.3}  {:>8.3}  {:>12.2}{bits}",
                100.0 * d,
                1e3 * p.sparse_s,
                1e3 * p.dense_s,
                p.dense_s / p.sparse_s
            );
            points.push(p);
        }
        let wins = fast::dense_wins_from(&points);
        let dense_from = fast::dense_from(simd);
        match wins {
            Some(w) => println!(
                "  the dense products win from {:.0}% non-zero inputs; this build takes them from {:.0}%",
                100.0 * w,
                100.0 * dense_from
            ),
            None => {
                println!("  the dense products never win here; this build takes them from {:.0}%", 100.0 * dense_from)
            }
        }
        figures.push(CrossoverFigure {
            fan_in,
            fan_out,
            simd: simd.name().into(),
            points,
            dense_wins_from: wins,
            dense_from,
        });
    }
    figures
}
