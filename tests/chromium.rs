//! Our kernels in a second WebGPU implementation: Chromium's (Dawn, with Tint compiling the WGSL;
//! SwiftShader where there is no GPU). The dispatches are the backend's own, built by the same
//! wrappers with the same uniforms and bind groups, kept on the local adapter without running
//! (src/gpu/replay.rs) and replayed by tests/chromium/replay.html on a device with WebGPU's
//! default limits, where any validation error fails the test. Results are checked against the
//! CPU reference with the tolerances the lavapipe tests use (tests/common/tolerance.rs):
//! * every kernel, in every configuration the tuner may choose and the naive twins, on shapes
//!   that are not multiples of any tile;
//! * three training steps of each update rule (full batches over chunks, split K, workgroup
//!   tiles, mini-batches), each checked anchored: the gradients at the parameters Chromium
//!   started the step from, and the update from them.
//!
//! Each test prints, by kernel, the largest difference from the CPU it saw.

mod common;

use std::collections::BTreeMap;

use common::chromium::{Chromium, Replayed};
use common::parity::{assert_gradients, assert_params, assert_state};
use common::tolerance::{COLUMN_SUM, GRADIENTS_BATCH, MATMUL, SOFTMAX, Tol, UPDATE};
use common::{assert_close, mnist, pixels, rng, subset, uniform};
use gpu_mnist::backend::{Backend, batch_range};
use gpu_mnist::cpu::reference;
use gpu_mnist::data::Splits;
use gpu_mnist::dropout::Dropout;
use gpu_mnist::gpu::dispatch::{Dispatch, View};
use gpu_mnist::gpu::kernels::Kernels;
use gpu_mnist::gpu::matmul::NaiveKernels;
use gpu_mnist::gpu::replay::Capture;
use gpu_mnist::gpu::shaders::{MatmulOp, activation_code};
use gpu_mnist::gpu::tiles::{MatmulConfig, RegisterTile, Tile};
use gpu_mnist::gpu::uniforms::{ColumnSumParams, MatmulParams, SoftmaxParams};
use gpu_mnist::gpu::{
    DeviceLimits, GpuBackend, GpuContext, GpuOptions, Tiles, Tiling, pack_rows, packed_row_bytes, tune,
};
use gpu_mnist::model::{Activation, Params, Shape};
use gpu_mnist::optim::{self, Optimizer, OptimizerConfig, OptimizerState};

fn webgpu() -> GpuContext {
    GpuContext::open(None, false, DeviceLimits::WebGpu).unwrap_or_else(|e| panic!("this test needs a GPU adapter: {e}"))
}

/// One output of one step and what the CPU reference says it holds.
struct Check {
    step: usize,
    kernel: &'static str,
    what: String,
    output: &'static str,
    want: Vec<f32>,
    tol: Tol,
}

/// Kernel cases, one step each, captured for one replay.
struct Cases<'a> {
    ctx: &'a GpuContext,
    capture: Capture,
    checks: Vec<Check>,
    steps: usize,
}

impl<'a> Cases<'a> {
    fn add(
        &mut self,
        kernel: &'static str,
        what: String,
        dispatches: &[Dispatch],
        out: &wgpu::Buffer,
        want: Vec<f32>,
        tol: Tol,
    ) {
        let view = View::floats(out, 0, want.len());
        self.capture.step(self.ctx, dispatches, &[("out", view)]).expect("captures");
        self.checks.push(Check { step: self.steps, kernel, what, output: "out", want, tol });
        self.steps += 1;
    }

    fn floats(&self, v: &[f32]) -> wgpu::Buffer {
        self.ctx.upload("input", bytemuck::cast_slice(v), wgpu::BufferUsages::empty())
    }
}

/// Checks every output against the CPU, and prints each kernel's largest differences.
fn check(replayed: &Replayed, checks: &[Check]) {
    let mut worst: BTreeMap<&str, (f32, f32, usize)> = BTreeMap::new();
    for c in checks {
        let got = &replayed.outputs[c.step][c.output];
        let got = &got[..c.want.len().min(got.len())];
        let w = worst.entry(c.kernel).or_default();
        for (g, r) in got.iter().zip(&c.want) {
            w.0 = w.0.max((g - r).abs());
            w.1 = w.1.max((g - r).abs() / r.abs().max(1e-3));
        }
        w.2 += c.want.len();
        assert_close(&format!("{} in Chromium: {}", c.kernel, c.what), got, &c.want, c.tol.atol, c.tol.rtol);
    }
    println!("{} in {:.2} s of replay:", replayed.adapter, replayed.seconds);
    for (kernel, (abs, rel, n)) in worst {
        println!("  {kernel:<28} max |GPU - CPU| {abs:.1e}, relative (to max(|CPU|, 1e-3)) {rel:.1e}, over {n} values");
    }
}

/// A (rows x cols) input as stored: packed pixels when `u8`, else f32; its row stride for the
/// kernel and the values the CPU sees.
fn input(
    cases: &Cases,
    r: &mut rand_chacha::ChaCha8Rng,
    rows: usize,
    cols: usize,
    u8: bool,
) -> (wgpu::Buffer, u32, Vec<f32>) {
    if u8 {
        let px = pixels(r, rows * cols);
        let buf = cases.ctx.upload("pixels", &pack_rows(&px, cols), wgpu::BufferUsages::empty());
        (buf, packed_row_bytes(cols) as u32, reference::scale_pixels(&px))
    } else {
        let v = uniform(r, rows * cols, -1.0, 1.0);
        (cases.floats(&v), cols as u32, v)
    }
}

fn kernels(ctx: &GpuContext, config: MatmulConfig) -> Kernels {
    Kernels::new(&ctx.device, Tiles { default: config, chosen: Default::default() })
}

#[test]
#[ignore = "needs Chromium (apt-get install chromium) and a GPU adapter (lavapipe will do)"]
fn every_kernel_matches_the_cpu_reference_in_chromium() {
    let ctx = webgpu();
    let mut cases = Cases { ctx: &ctx, capture: Capture::new(), checks: Vec::new(), steps: 0 };
    let mut r = rng(11);
    let dev = &ctx.device;
    let none = wgpu::BufferUsages::empty();
    let narrow = MatmulConfig::new(Tile::Register(RegisterTile::NARROW));
    let limits = wgpu::Limits::default();

    // Forward: C (m x n) = act(A (m x k) · W + b); the last shape takes the narrow tile.
    for (i, &(m, kd, n)) in [(33, 129, 40), (70, 784, 33), (5, 129, 3)].iter().enumerate() {
        let (a, lda, av) = input(&cases, &mut r, m, kd, i % 2 == 1);
        let (wv, bv) = (uniform(&mut r, kd * n, -1.0, 1.0), uniform(&mut r, n, -1.0, 1.0));
        let (w, b) = (cases.floats(&wv), cases.floats(&bv));
        let act = [Some(Activation::Relu), Some(Activation::Elu), Some(Activation::Sigmoid)][i];
        let p = MatmulParams {
            m: m as u32,
            n: n as u32,
            k: kd as u32,
            lda,
            ldb: n as u32,
            a_u8: (i % 2) as u32,
            bias: 1,
            act: activation_code(act),
            ..Default::default()
        };
        let mut want = vec![0.0; m * n];
        reference::linear_forward(&mut want, &av, &wv, Some(&bv), m, kd, n);
        if let Some(act) = act {
            let z = want.clone();
            reference::activation_forward(&mut want, &z, act);
        }
        let configs = if n <= 16 { vec![narrow] } else { tune::candidates(MatmulOp::Forward, &limits) };
        for config in configs {
            let (k, c) = (kernels(&ctx, config), ctx.zeros("c", m * n, none));
            let d = k.linear_forward(dev, p, View::all(&a), View::all(&w), View::all(&b), View::all(&c));
            cases.add("linear_forward", format!("{m}x{kd}x{n} {}", config.name()), &[d], &c, want.clone(), MATMUL);
        }
        let c = ctx.zeros("c", m * n, none);
        let d = NaiveKernels::new(dev).linear_forward_naive(
            dev,
            p,
            View::all(&a),
            View::all(&w),
            View::all(&b),
            View::all(&c),
        );
        cases.add("linear_forward_naive", format!("{m}x{kd}x{n}"), &[d], &c, want, MATMUL);
    }

    // Weight gradient: C (m x n) (+)= A^T · dZ, A stored rows x m; split K where rows allow.
    for (i, &(m, rows, n)) in [(40, 300, 33), (129, 70, 40), (33, 200, 10)].iter().enumerate() {
        let (a, lda, av) = input(&cases, &mut r, rows, m, i % 2 == 0);
        let (dzv, prior) = (uniform(&mut r, rows * n, -1.0, 1.0), uniform(&mut r, m * n, -1.0, 1.0));
        let dz = cases.floats(&dzv);
        let accumulate = i != 1;
        let p = MatmulParams {
            m: m as u32,
            n: n as u32,
            k: rows as u32,
            lda,
            ldb: n as u32,
            a_u8: (i % 2 == 0) as u32,
            accumulate: accumulate as u32,
            ..Default::default()
        };
        let mut want = vec![0.0; m * n];
        reference::linear_backward(None, &mut want, None, &dzv, &av, &[], rows, m, n);
        if accumulate {
            want.iter_mut().zip(&prior).for_each(|(w, p)| *w += p);
        }
        let configs = if n <= 16 { vec![narrow] } else { tune::candidates(MatmulOp::BackwardWeight, &limits) };
        for config in configs {
            let k = kernels(&ctx, config);
            let (c, slices) = (cases.floats(&prior), k.weight_slices(&p).1);
            let partials = ctx.zeros("partials", slices as usize * m * n, none);
            let d = k.linear_backward_weight(
                dev,
                p,
                View::all(&a),
                View::all(&dz),
                View::all(&c),
                Some(View::all(&partials)),
            );
            let what = format!("{m}x{rows}x{n} acc {accumulate} {}, {slices} slices", config.name());
            cases.add("linear_backward_weight", what, &d, &c, want.clone(), MATMUL);
        }
        let c = cases.floats(&prior);
        let d =
            NaiveKernels::new(dev).linear_backward_weight_naive(dev, p, View::all(&a), View::all(&dz), View::all(&c));
        cases.add("linear_backward_weight_naive", format!("{m}x{rows}x{n}"), &[d], &c, want, MATMUL);
    }

    // Input gradient: dZ1 (m x n) = (dZ2 (m x kd) · W^T) ⊙ act'(A1), W stored n x kd.
    for (i, &(m, kd, n)) in [(70, 33, 40), (129, 10, 33), (33, 10, 7)].iter().enumerate() {
        let act = [Activation::Sigmoid, Activation::Relu, Activation::Elu][i];
        let (dzv, wv, zv) =
            (uniform(&mut r, m * kd, -1.0, 1.0), uniform(&mut r, n * kd, -1.0, 1.0), uniform(&mut r, m * n, -2.0, 2.0));
        let mut a1 = vec![0.0; m * n];
        reference::activation_forward(&mut a1, &zv, act);
        let (dz, w, a) = (cases.floats(&dzv), cases.floats(&wv), cases.floats(&a1));
        let p = MatmulParams {
            m: m as u32,
            n: n as u32,
            k: kd as u32,
            lda: kd as u32,
            ldb: kd as u32,
            act: activation_code(Some(act)),
            ..Default::default()
        };
        let (mut da, mut unused) = (vec![0.0; m * n], vec![0.0; n * kd]);
        reference::linear_backward(Some(&mut da), &mut unused, None, &dzv, &vec![0.0; m * n], &wv, m, n, kd);
        let mut want = vec![0.0; m * n];
        reference::activation_backward(&mut want, &da, &a1, act);
        let configs = if n <= 16 { vec![narrow] } else { tune::candidates(MatmulOp::BackwardInput, &limits) };
        for config in configs {
            let (k, c) = (kernels(&ctx, config), ctx.zeros("c", m * n, none));
            let d = k.linear_backward_input(dev, p, View::all(&dz), View::all(&w), View::all(&a), View::all(&c));
            cases.add(
                "linear_backward_input",
                format!("{m}x{kd}x{n} {act:?} {}", config.name()),
                &[d],
                &c,
                want.clone(),
                MATMUL,
            );
        }
    }

    // Softmax and cross-entropy over n rows of k logits, the statistics from row `offset`.
    let k = Kernels::new(dev, Tiles::fixed(Tiling::Register));
    for (n, kk, offset) in [(7, 10, 3), (129, 10, 5), (33, 1, 0)] {
        let mut logits = uniform(&mut r, n * kk, -8.0, 8.0);
        logits[0] = 80.0;
        let labels: Vec<u8> = (0..offset + n).map(|i| ((i * 7) % kk) as u8).collect();
        let labels32: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
        let (z, lb) = (cases.floats(&logits), ctx.upload("labels", bytemuck::cast_slice(&labels32), none));
        let scale = 1.0 / 60000.0;
        let p = SoftmaxParams { n: n as u32, k: kk as u32, row_offset: offset as u32, scale, ..Default::default() };
        let (mut probs, mut losses, mut correct) = (vec![0.0; n * kk], vec![0.0; n], vec![false; n]);
        reference::softmax_xent_forward(&mut probs, &mut losses, &mut correct, &logits, &labels[offset..], n, kk);
        let mut stats = vec![0.0; 2 * (offset + n)];
        for i in 0..n {
            (stats[2 * (offset + i)], stats[2 * (offset + i) + 1]) = (losses[i], correct[i] as u8 as f32);
        }
        let out = ctx.zeros("stats", stats.len(), none);
        let d = k.softmax_xent_forward(dev, p, View::all(&z), View::all(&lb), View::all(&out));
        cases.add("softmax_xent_forward", format!("n {n} k {kk} from row {offset}"), &[d], &out, stats, SOFTMAX);
        let mut want = vec![0.0; n * kk];
        reference::softmax_xent_backward(&mut want, &probs, &labels[offset..], n, kk, scale);
        let out = ctx.zeros("dz", n * kk, none);
        let d = k.softmax_xent_backward(dev, p, View::all(&z), View::all(&lb), View::all(&out));
        let tol = Tol { atol: SOFTMAX.atol * scale, rtol: SOFTMAX.rtol };
        cases.add("softmax_xent_backward", format!("n {n} k {kk}"), &[d], &out, want, tol);
    }

    // Column sums, accumulating into what is there.
    for (rows, cols, accumulate) in [(257, 33, true), (1000, 10, false), (7, 129, true)] {
        let (mv, prior) = (uniform(&mut r, rows * cols, -1.0, 1.0), uniform(&mut r, cols, -1.0, 1.0));
        let (m, out) = (cases.floats(&mv), cases.floats(&prior));
        let p = ColumnSumParams {
            rows: rows as u32,
            cols: cols as u32,
            accumulate: accumulate as u32,
            ..Default::default()
        };
        let mut want = vec![0.0; cols];
        reference::column_sum(&mut want, &mv, rows, cols);
        if accumulate {
            want.iter_mut().zip(&prior).for_each(|(w, p)| *w += p);
        }
        let d = k.column_sum(dev, p, View::all(&m), View::all(&out));
        cases.add("column_sum", format!("{rows}x{cols} acc {accumulate}"), &[d], &out, want, COLUMN_SUM);
    }

    let fixture = std::mem::take(&mut cases.capture).finish(&ctx).expect("reads the buffers");
    let kernels_run: std::collections::BTreeSet<&str> =
        fixture.steps.iter().flat_map(|s| &s.dispatches).map(|d| d.label.as_str()).collect();
    println!(
        "{} pipelines, {} buffers, {} steps; ops: {kernels_run:?}",
        fixture.pipelines.len(),
        fixture.buffers.len(),
        fixture.steps.len()
    );
    let replayed = Chromium::start().replay(&fixture);
    check(&replayed, &cases.checks);
}

/// A run to replay: its rule, batching and matmul configuration.
struct Run {
    name: &'static str,
    optimizer: OptimizerConfig,
    lr: f32,
    options: GpuOptions,
}

#[test]
#[ignore = "needs Chromium (apt-get install chromium) and a GPU adapter (lavapipe will do)"]
fn training_steps_in_chromium_agree_with_the_cpu() {
    const STEPS: usize = 3;
    let m = mnist();
    let data = Splits::new(subset(&m.train, 300), subset(&m.test, 50));
    let act = Activation::Sigmoid;
    let start = Params::init(Shape::new(data.train.d(), &[24], 10, true), act, 2);
    let x = reference::scale_pixels(&data.train.pixels);
    let rule = |kind| OptimizerConfig { kind, weight_decay: 0.01, ..Default::default() };
    let split = MatmulConfig { tile: Tile::Register(RegisterTile::WIDE), split: 4 };
    let runs = [
        Run {
            name: "descent, full batches in chunks of 128 rows",
            optimizer: OptimizerConfig::default(),
            lr: 1.0,
            options: GpuOptions { max_chunk_rows: Some(128), tiling: Some(Tiling::Register), ..Default::default() },
        },
        Run {
            name: "momentum, full batches, split K",
            optimizer: rule(Optimizer::Momentum),
            lr: 0.5,
            options: GpuOptions { matmul: Some(split), ..Default::default() },
        },
        Run {
            name: "Nesterov, full batches, workgroup tiles",
            optimizer: rule(Optimizer::Nesterov),
            lr: 0.5,
            options: GpuOptions { tiling: Some(Tiling::Shared), max_chunk_rows: Some(256), ..Default::default() },
        },
        Run {
            name: "Adam, mini-batches of 100",
            optimizer: rule(Optimizer::Adam),
            lr: 0.003,
            options: GpuOptions { tiling: Some(Tiling::Register), batch_size: Some(100), ..Default::default() },
        },
        Run {
            name: "descent with dropout 0.3, mini-batches of 100",
            optimizer: OptimizerConfig::default(),
            lr: 1.0,
            options: GpuOptions {
                tiling: Some(Tiling::Register),
                batch_size: Some(100),
                dropout: Some(Dropout { p: 0.3, seed: 5 }),
                ..Default::default()
            },
        },
    ];
    let mut browser = Chromium::start();
    for run in runs {
        let options = GpuOptions { optimizer: run.optimizer, ..run.options };
        let mut gpu = GpuBackend::new(webgpu(), &data, &start, act, options).expect("GPU backend");
        let (batches, batch_size) = (gpu.batches(), options.batch_size.unwrap_or(data.train.n).min(data.train.n));
        let mut capture = Capture::new();
        for s in 0..STEPS {
            let dispatches = gpu.record_step(s % batches, run.lr).expect("records a step");
            let outputs: Vec<(&str, View)> = gpu.result_views().into_iter().filter(|(n, _)| *n != "stats").collect();
            capture.step(gpu.context(), &dispatches, &outputs).expect("captures");
        }
        let fixture = capture.finish(gpu.context()).expect("reads the buffers");
        let replayed = browser.replay(&fixture);
        let (layout, shape) = (gpu.layout(), &start.shape);
        let (mut params, mut state) = (start.clone(), OptimizerState::new(run.optimizer.kind, shape.clone()));
        let mut worst = (0.0f32, 0.0f32);
        for (s, out) in replayed.outputs.iter().enumerate() {
            let what = format!("{}: step {} in Chromium", run.name, s + 1);
            let rows = batch_range(s % batches, batch_size, data.train.n);
            let xb = &x[rows.start * shape.d..rows.end * shape.d];
            // record_step draws step s's masks (the run's steps count from 0).
            let masks = options.dropout.map(|d| d.step(s as u64, shape.hidden.len()));
            let labels = &data.train.labels[rows];
            let (want_grads, _) = reference::forward_backward_dropout(&params, act, xb, labels, masks.as_ref());
            let grads = layout.unflatten(&out["grads"], shape.clone());
            assert_gradients(&what, &grads, &want_grads, GRADIENTS_BATCH);
            optim::optimizer_update(&mut params, &grads, &mut state, &run.optimizer, run.lr);
            let got = layout.unflatten(&out["params"], shape.clone());
            assert_params(&what, &got, &params, UPDATE);
            let mut got_state = OptimizerState { t: state.t, ..OptimizerState::new(run.optimizer.kind, shape.clone()) };
            for name in run.optimizer.kind.moments() {
                *got_state.moment_mut(name) = layout.unflatten(&out[*name], shape.clone());
            }
            assert_state(&what, &got_state, &state);
            for ((_, g), (_, w)) in got.tensors().into_iter().zip(params.tensors()) {
                for (a, b) in g.iter().zip(w) {
                    worst = (worst.0.max((a - b).abs()), worst.1.max((a - b).abs() / b.abs().max(1e-3)));
                }
            }
            // Anchored: the next step starts from Chromium's parameters and state.
            (params, state) = (got, got_state);
        }
        println!(
            "{}: {STEPS} steps in {:.2} s on {}; parameters within {:.1e} of the CPU's update ({:.1e} relative)",
            run.name, replayed.seconds, replayed.adapter, worst.0, worst.1
        );
    }
}
