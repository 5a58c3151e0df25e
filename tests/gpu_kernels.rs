//! Every WGSL kernel against its CPU reference counterpart, on random inputs over shapes that are
//! not multiples of the matmul tiles, the matmuls under every candidate configuration the tuner
//! may choose (register tiles of 16 x 128, 32 x 64 and 64 x 32 outputs, 8 x 8 per invocation;
//! workgroup-memory tiles of 64 x 64, 32 x 32 and 64 x 32, 4 x 4 per invocation; the weight
//! gradient also split into slices of K, reduced by split_k_reduce), and the narrow 128 x 16.

mod common;

use common::tolerance::{COLUMN_SUM, MATMUL, ONE_ULP, SOFTMAX};
use common::{assert_close, gpu, pixels, rng, uniform};
use gpu_mnist::cpu::reference;
use gpu_mnist::gpu::dispatch::{Dispatch, View, submit};
use gpu_mnist::gpu::kernels::Kernels;
use gpu_mnist::gpu::matmul::NaiveKernels;
use gpu_mnist::gpu::shaders::MatmulOp;
use gpu_mnist::gpu::shaders::activation_code;
use gpu_mnist::gpu::tiles::{MatmulConfig, SharedTile, Tile};
use gpu_mnist::gpu::uniforms::{ColumnSumParams, MatmulParams, OptimizerParams, SoftmaxParams};
use gpu_mnist::gpu::{GpuContext, Tiles, Tiling, pack_rows, packed_row_bytes, tune};
use gpu_mnist::model::Activation;
use gpu_mnist::optim::Optimizer;

/// (M, K, N) triples: 1, 7, 33, 129, 784 and mixes, most not multiples of 4 or of any tile; the
/// last ones have outputs at most 16 wide (the narrow tile) over more than one row of workgroups.
const SHAPES: [(usize, usize, usize); 9] = [
    (1, 1, 1),
    (7, 33, 129),
    (129, 784, 33),
    (33, 7, 10),
    (70, 784, 128),
    (5, 129, 3),
    (64, 64, 64),
    (300, 64, 10),
    (129, 784, 10),
];

fn floats(ctx: &GpuContext, data: &[f32]) -> wgpu::Buffer {
    ctx.upload("test input", bytemuck::cast_slice(data), wgpu::BufferUsages::COPY_SRC)
}

fn read(ctx: &GpuContext, buf: &wgpu::Buffer, n: usize) -> Vec<f32> {
    ctx.read_f32(buf, 0, n, &ctx.staging(n)).expect("readback")
}

/// The kernels of one configuration of every wide matmul.
fn kernels(ctx: &GpuContext, config: MatmulConfig) -> Kernels {
    Kernels::new(&ctx.device, Tiles { default: config, chosen: Default::default() })
}

/// Every configuration the tuner may choose for `op` on this device.
fn configs(ctx: &GpuContext, op: MatmulOp) -> Vec<MatmulConfig> {
    tune::candidates(op, &ctx.limits)
}

fn run_all(ctx: &GpuContext, dispatches: &[Dispatch]) {
    let all: Vec<&Dispatch> = dispatches.iter().collect();
    submit(&ctx.device, &ctx.queue, &all);
    ctx.wait().expect("dispatches ran without GPU errors");
}

fn run(ctx: &GpuContext, d: &Dispatch) {
    submit(&ctx.device, &ctx.queue, &[d]);
    ctx.wait().expect("dispatch ran without GPU errors");
}

/// A as stored: packed bytes when `u8`, else f32 bit patterns; returns the buffer, its row
/// stride for the kernel and the values the CPU sees.
fn matrix_a(
    ctx: &GpuContext,
    r: &mut rand_chacha::ChaCha8Rng,
    rows: usize,
    cols: usize,
    u8: bool,
) -> (wgpu::Buffer, u32, Vec<f32>) {
    if u8 {
        let px = pixels(r, rows * cols);
        let buf = ctx.upload("a", &pack_rows(&px, cols), wgpu::BufferUsages::empty());
        (buf, packed_row_bytes(cols) as u32, reference::scale_pixels(&px))
    } else {
        let v = uniform(r, rows * cols, -1.0, 1.0);
        (floats(ctx, &v), cols as u32, v)
    }
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn linear_forward_matches_reference() {
    let ctx = gpu();
    let naive_k = NaiveKernels::new(&ctx.device);
    for (c_i, config) in configs(&ctx, MatmulOp::Forward).into_iter().enumerate() {
        let k = kernels(&ctx, config);
        let tiling = config.name();
        let mut r = rng(1);
        // Narrow outputs take one tile whatever the configuration: checked once.
        for (i, &(m, kd, n)) in SHAPES.iter().enumerate().filter(|(_, s)| c_i == 0 || s.2 > 16) {
            for a_u8 in [true, false] {
                let act = [None, Some(Activation::Sigmoid), Some(Activation::Relu), Some(Activation::Elu)][i % 4];
                let bias = i % 3 != 0;
                let (a, lda, av) = matrix_a(&ctx, &mut r, m, kd, a_u8);
                let wv = uniform(&mut r, kd * n, -1.0, 1.0);
                let bv = uniform(&mut r, n, -1.0, 1.0);
                let (w, b, c) =
                    (floats(&ctx, &wv), floats(&ctx, &bv), ctx.zeros("c", m * n, wgpu::BufferUsages::empty()));
                let p = MatmulParams {
                    m: m as u32,
                    n: n as u32,
                    k: kd as u32,
                    lda,
                    ldb: n as u32,
                    a_u8: a_u8 as u32,
                    bias: bias as u32,
                    act: activation_code(act),
                    ..Default::default()
                };
                let naive = ctx.zeros("c naive", m * n, wgpu::BufferUsages::empty());
                run(
                    &ctx,
                    &k.linear_forward(&ctx.device, p, View::all(&a), View::all(&w), View::all(&b), View::all(&c)),
                );
                run(
                    &ctx,
                    &naive_k.linear_forward_naive(
                        &ctx.device,
                        p,
                        View::all(&a),
                        View::all(&w),
                        View::all(&b),
                        View::all(&naive),
                    ),
                );
                let mut z = vec![0.0; m * n];
                reference::linear_forward(&mut z, &av, &wv, bias.then_some(&bv[..]), m, kd, n);
                let mut want = z.clone();
                if let Some(act) = act {
                    reference::activation_forward(&mut want, &z, act);
                }
                let what = format!("{m}x{kd}x{n} u8 {a_u8} {act:?} bias {bias} {tiling}");
                assert_close(
                    &format!("linear_forward {what}"),
                    &read(&ctx, &c, m * n),
                    &want,
                    MATMUL.atol,
                    MATMUL.rtol,
                );
                assert_close(
                    &format!("linear_forward_naive {what}"),
                    &read(&ctx, &naive, m * n),
                    &want,
                    MATMUL.atol,
                    MATMUL.rtol,
                );
            }
        }
    }
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn linear_backward_weight_matches_reference() {
    let ctx = gpu();
    let naive_k = NaiveKernels::new(&ctx.device);
    for (c_i, config) in configs(&ctx, MatmulOp::BackwardWeight).into_iter().enumerate() {
        let k = kernels(&ctx, config);
        let tiling = config.name();
        let mut r = rng(2);
        for &(m, kd, n) in SHAPES.iter().filter(|s| c_i == 0 || s.2 > 16) {
            for a_u8 in [true, false] {
                for accumulate in [false, true] {
                    // C (m x n) = A^T B with A stored kd x m (the layer input: kd samples of m features).
                    let (a, lda, av) = matrix_a(&ctx, &mut r, kd, m, a_u8);
                    let dzv = uniform(&mut r, kd * n, -1.0, 1.0);
                    let prior = uniform(&mut r, m * n, -1.0, 1.0);
                    let (dz, c) = (floats(&ctx, &dzv), floats(&ctx, &prior));
                    let p = MatmulParams {
                        m: m as u32,
                        n: n as u32,
                        k: kd as u32,
                        lda,
                        ldb: n as u32,
                        a_u8: a_u8 as u32,
                        accumulate: accumulate as u32,
                        ..Default::default()
                    };
                    let naive = floats(&ctx, &prior);
                    let slots = ctx.zeros("slots", k.weight_slices(&p).1 as usize * m * n, wgpu::BufferUsages::empty());
                    let dispatches = k.linear_backward_weight(
                        &ctx.device,
                        p,
                        View::all(&a),
                        View::all(&dz),
                        View::all(&c),
                        Some(View::all(&slots)),
                    );
                    run_all(&ctx, &dispatches);
                    run(
                        &ctx,
                        &naive_k.linear_backward_weight_naive(
                            &ctx.device,
                            p,
                            View::all(&a),
                            View::all(&dz),
                            View::all(&naive),
                        ),
                    );
                    let mut want = vec![0.0; m * n];
                    reference::linear_backward(None, &mut want, None, &dzv, &av, &[], kd, m, n);
                    if accumulate {
                        want.iter_mut().zip(&prior).for_each(|(w, p)| *w += p);
                    }
                    let what =
                        format!("{m}x{kd}x{n} u8 {a_u8} acc {accumulate} {tiling}, {} slices", k.weight_slices(&p).1);
                    let (got, got_naive) = (read(&ctx, &c, m * n), read(&ctx, &naive, m * n));
                    assert_close(&format!("linear_backward_weight {what}"), &got, &want, MATMUL.atol, MATMUL.rtol);
                    assert_close(
                        &format!("linear_backward_weight_naive {what}"),
                        &got_naive,
                        &want,
                        MATMUL.atol,
                        MATMUL.rtol,
                    );
                }
            }
        }
    }
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn linear_backward_input_matches_reference() {
    let ctx = gpu();
    for (c_i, config) in configs(&ctx, MatmulOp::BackwardInput).into_iter().enumerate() {
        let k = kernels(&ctx, config);
        let tiling = config.name();
        let mut r = rng(3);
        for (i, &(m, kd, n)) in SHAPES.iter().enumerate().filter(|(_, s)| c_i == 0 || s.2 > 16) {
            // dz1 (m x n) = (dz2 (m x kd) · W^T) ⊙ act'(a1), W stored n x kd.
            let act = [Activation::Sigmoid, Activation::Relu, Activation::Elu][i % 3];
            let dzv = uniform(&mut r, m * kd, -1.0, 1.0);
            let wv = uniform(&mut r, n * kd, -1.0, 1.0);
            let zv = uniform(&mut r, m * n, -2.0, 2.0);
            let mut a1 = vec![0.0; m * n];
            reference::activation_forward(&mut a1, &zv, act);
            let (dz, w, a, c) = (
                floats(&ctx, &dzv),
                floats(&ctx, &wv),
                floats(&ctx, &a1),
                ctx.zeros("c", m * n, wgpu::BufferUsages::empty()),
            );
            let p = MatmulParams {
                m: m as u32,
                n: n as u32,
                k: kd as u32,
                lda: kd as u32,
                ldb: kd as u32,
                act: activation_code(Some(act)),
                ..Default::default()
            };
            run(
                &ctx,
                &k.linear_backward_input(&ctx.device, p, View::all(&dz), View::all(&w), View::all(&a), View::all(&c)),
            );
            // The reference's linear_backward gives dx = dz · w^T for w stored (inputs x outputs) = n x kd.
            let mut da = vec![0.0; m * n];
            let mut unused = vec![0.0; n * kd];
            reference::linear_backward(Some(&mut da), &mut unused, None, &dzv, &vec![0.0; m * n], &wv, m, n, kd);
            let mut want = vec![0.0; m * n];
            reference::activation_backward(&mut want, &da, &a1, act);
            assert_close(
                &format!("linear_backward_input {m}x{kd}x{n} {act:?} {tiling}"),
                &read(&ctx, &c, m * n),
                &want,
                MATMUL.atol,
                MATMUL.rtol,
            );
        }
    }
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn softmax_xent_matches_reference() {
    let ctx = gpu();
    let k = Kernels::new(&ctx.device, Tiles::fixed(Tiling::Register));
    let mut r = rng(4);
    for (n, kk, offset) in [(1, 10, 0), (7, 10, 3), (300, 10, 17), (33, 1, 0), (129, 3, 5)] {
        let mut logits = uniform(&mut r, n * kk, -8.0, 8.0);
        logits[0] = 80.0; // large logits must not overflow
        let labels: Vec<u8> = (0..offset + n).map(|i| ((i * 7) % kk) as u8).collect();
        let labels32: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
        let lb = ctx.upload("labels", bytemuck::cast_slice(&labels32), wgpu::BufferUsages::empty());
        let (zb, stats, dz) = (
            floats(&ctx, &logits),
            ctx.zeros("stats", 2 * (offset + n), wgpu::BufferUsages::empty()),
            ctx.zeros("dz", n * kk, wgpu::BufferUsages::empty()),
        );
        let scale = 1.0 / 60000.0;
        let p = SoftmaxParams { n: n as u32, k: kk as u32, row_offset: offset as u32, scale, ..Default::default() };
        run(&ctx, &k.softmax_xent_forward(&ctx.device, p, View::all(&zb), View::all(&lb), View::all(&stats)));
        run(&ctx, &k.softmax_xent_backward(&ctx.device, p, View::all(&zb), View::all(&lb), View::all(&dz)));
        let (mut probs, mut losses, mut correct) = (vec![0.0; n * kk], vec![0.0; n], vec![false; n]);
        reference::softmax_xent_forward(&mut probs, &mut losses, &mut correct, &logits, &labels[offset..], n, kk);
        let mut want_dz = vec![0.0; n * kk];
        reference::softmax_xent_backward(&mut want_dz, &probs, &labels[offset..], n, kk, scale);
        let got = read(&ctx, &stats, 2 * (offset + n));
        let got_loss: Vec<f32> = (0..n).map(|i| got[2 * (offset + i)]).collect();
        let got_correct: Vec<f32> = (0..n).map(|i| got[2 * (offset + i) + 1]).collect();
        let want_correct: Vec<f32> = correct.iter().map(|&c| c as u8 as f32).collect();
        assert_close(
            &format!("softmax_xent_forward loss n {n} k {kk}"),
            &got_loss,
            &losses,
            SOFTMAX.atol,
            SOFTMAX.rtol,
        );
        assert_close(&format!("softmax_xent_forward correct n {n} k {kk}"), &got_correct, &want_correct, 0.0, 0.0);
        assert_close(
            &format!("softmax_xent_backward n {n} k {kk}"),
            &read(&ctx, &dz, n * kk),
            &want_dz,
            SOFTMAX.atol * scale,
            SOFTMAX.rtol,
        );
    }
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn column_sum_matches_reference() {
    let ctx = gpu();
    let k = Kernels::new(&ctx.device, Tiles::fixed(Tiling::Register));
    let mut r = rng(5);
    for (rows, cols) in [(1, 1), (7, 129), (1000, 10), (257, 33), (33, 784)] {
        for accumulate in [false, true] {
            let mv = uniform(&mut r, rows * cols, -1.0, 1.0);
            let prior = uniform(&mut r, cols, -1.0, 1.0);
            let (mb, out) = (floats(&ctx, &mv), floats(&ctx, &prior));
            let p = ColumnSumParams {
                rows: rows as u32,
                cols: cols as u32,
                accumulate: accumulate as u32,
                ..Default::default()
            };
            run(&ctx, &k.column_sum(&ctx.device, p, View::all(&mb), View::all(&out)));
            let mut want = vec![0.0; cols];
            reference::column_sum(&mut want, &mv, rows, cols);
            if accumulate {
                want.iter_mut().zip(&prior).for_each(|(w, p)| *w += p);
            }
            assert_close(
                &format!("column_sum {rows}x{cols} acc {accumulate}"),
                &read(&ctx, &out, cols),
                &want,
                COLUMN_SUM.atol,
                COLUMN_SUM.rtol,
            );
        }
    }
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn gd_update_matches_reference() {
    let ctx = gpu();
    let k = Kernels::new(&ctx.device, Tiles::fixed(Tiling::Register));
    let mut r = rng(6);
    // 16,777,500 > 65535 workgroups x 256: the dispatch needs a second grid dimension.
    for count in [1, 7, 255, 257, 100_003, 16_777_500] {
        let pv = uniform(&mut r, count, -1.0, 1.0);
        let gv = uniform(&mut r, count, -1.0, 1.0);
        let (pb, gb) = (floats(&ctx, &pv), floats(&ctx, &gv));
        let lr = 0.37;
        // Plain descent: no weight decay, no moments (the other rules: tests/gpu_optimizers.rs).
        let p = OptimizerParams { count: count as u32, lr, ..Default::default() };
        let (param, grad) = (View::all(&pb), View::all(&gb));
        run(&ctx, &k.optimizer_update(&ctx.device, Optimizer::Gd, p, param, grad, &[]));
        let mut want = pv.clone();
        reference::sgd_update(&mut want, &gv, lr);
        // One multiply-add per element: at most 1 ulp apart (fma vs separate rounding).
        assert_close(&format!("gd_update {count}"), &read(&ctx, &pb, count), &want, ONE_ULP.atol, ONE_ULP.rtol);
    }
}

/// A mini-batch's chunk may start between two 256-byte-aligned pixel rows: it is bound from the
/// aligned row before it, and `a_row0` skips the rows in between (forward: rows of the M x K
/// input; weight gradient: rows of the K x M input), as `first_row` skips rows of a column sum
/// (a batch's per-row statistics). The skipped rows hold other values, so reading them shows.
#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn row_offsets_skip_the_rows_before_a_chunk() {
    let ctx = gpu();
    const SKIP: usize = 37;
    let mut r = rng(7);
    let naive_k = NaiveKernels::new(&ctx.device);
    let split = MatmulConfig { tile: Tile::Shared(SharedTile::DEFAULT), split: 4 };
    for config in [Tiles::fixed(Tiling::Register).default, Tiles::fixed(Tiling::Shared).default, split] {
        let (k, tiling) = (kernels(&ctx, config), config.name());
        for &(rows, d, n) in &[(70, 784, 33), (33, 129, 10), (200, 129, 40)] {
            for a_u8 in [true, false] {
                let (a, lda, av) = matrix_a(&ctx, &mut r, SKIP + rows, d, a_u8);
                let x = &av[SKIP * d..];
                let what = format!("{rows}x{d}x{n} u8 {a_u8} from row {SKIP} {tiling}");
                let base =
                    MatmulParams { lda, ldb: n as u32, a_u8: a_u8 as u32, a_row0: SKIP as u32, ..Default::default() };
                // Forward: C (rows x n) = A[SKIP..] · W.
                let wv = uniform(&mut r, d * n, -1.0, 1.0);
                let p = MatmulParams { m: rows as u32, n: n as u32, k: d as u32, ..base };
                let (w, none) = (floats(&ctx, &wv), wgpu::BufferUsages::empty());
                let (c, naive) = (ctx.zeros("c", rows * n, none), ctx.zeros("c naive", rows * n, none));
                let (av_, wv_) = (View::all(&a), View::all(&w));
                run(&ctx, &k.linear_forward(&ctx.device, p, av_, wv_, k.dummy(), View::all(&c)));
                run(&ctx, &naive_k.linear_forward_naive(&ctx.device, p, av_, wv_, k.dummy(), View::all(&naive)));
                let mut want = vec![0.0; rows * n];
                reference::linear_forward(&mut want, x, &wv, None, rows, d, n);
                assert_close(
                    &format!("linear_forward {what}"),
                    &read(&ctx, &c, rows * n),
                    &want,
                    MATMUL.atol,
                    MATMUL.rtol,
                );
                let got = read(&ctx, &naive, rows * n);
                assert_close(&format!("linear_forward_naive {what}"), &got, &want, MATMUL.atol, MATMUL.rtol);
                // Weight gradient: C (d x n) = A[SKIP..]^T · dZ.
                let dzv = uniform(&mut r, rows * n, -1.0, 1.0);
                let p = MatmulParams { m: d as u32, n: n as u32, k: rows as u32, ..base };
                let dz = floats(&ctx, &dzv);
                let (c, naive) = (ctx.zeros("c", d * n, none), ctx.zeros("c naive", d * n, none));
                let slots = ctx.zeros("slots", k.weight_slices(&p).1 as usize * d * n, none);
                let dzv_ = View::all(&dz);
                run_all(
                    &ctx,
                    &k.linear_backward_weight(&ctx.device, p, av_, dzv_, View::all(&c), Some(View::all(&slots))),
                );
                let naive_run =
                    naive_k.linear_backward_weight_naive(&ctx.device, p, av_, View::all(&dz), View::all(&naive));
                run(&ctx, &naive_run);
                let mut want = vec![0.0; d * n];
                reference::linear_backward(None, &mut want, None, &dzv, x, &[], rows, d, n);
                let got = read(&ctx, &c, d * n);
                assert_close(&format!("linear_backward_weight {what}"), &got, &want, MATMUL.atol, MATMUL.rtol);
                let got = read(&ctx, &naive, d * n);
                assert_close(&format!("linear_backward_weight_naive {what}"), &got, &want, MATMUL.atol, MATMUL.rtol);
            }
        }
    }
    let k = Kernels::new(&ctx.device, Tiles::fixed(Tiling::Register));
    let (rows, cols) = (300, 2);
    let mv = uniform(&mut r, (SKIP + rows) * cols, -1.0, 1.0);
    let (mb, out) = (floats(&ctx, &mv), ctx.zeros("sums", cols, wgpu::BufferUsages::empty()));
    let p = ColumnSumParams { rows: rows as u32, cols: cols as u32, first_row: SKIP as u32, ..Default::default() };
    run(&ctx, &k.column_sum(&ctx.device, p, View::all(&mb), View::all(&out)));
    let mut want = vec![0.0; cols];
    reference::column_sum(&mut want, &mv[SKIP * cols..], rows, cols);
    assert_close(
        &format!("column_sum from row {SKIP}"),
        &read(&ctx, &out, cols),
        &want,
        COLUMN_SUM.atol,
        COLUMN_SUM.rtol,
    );
}

/// WebGPU refuses a writable binding that overlaps another binding of the same buffer (Dawn says
/// "Writable storage buffer binding aliasing"); wgpu-native does not check, so the host does.
#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
#[should_panic(expected = "WebGPU refuses a writable binding that overlaps another")]
fn a_writable_binding_overlapping_another_is_refused() {
    let ctx = gpu();
    let k = Kernels::new(&ctx.device, Tiles::fixed(Tiling::Register));
    let buf = ctx.zeros("one buffer", 100, wgpu::BufferUsages::empty());
    let p = ColumnSumParams { rows: 5, cols: 10, ..Default::default() };
    k.column_sum(&ctx.device, p, View::floats(&buf, 0, 50), View::floats(&buf, 45, 10));
}
