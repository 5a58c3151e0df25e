//! The GPU backend: the training step as WGSL compute shaders through wgpu.
//!
//! Everything is created once in `GpuBackend::new`: the device, the pipelines, the buffers (the
//! whole training and test sets as packed pixel bytes, parameters, gradients, per-chunk
//! activations) and every dispatch with its bind group. A step records the prepared dispatches
//! into one command buffer and submits it without waiting; the host reads back only at report
//! points (`step_stats`, `evaluate`, `params`, `gradients`).
//!
//! The training set is processed in chunks of rows so that no binding exceeds the device's
//! `max_storage_buffer_binding_size`; each chunk's gradient products add into the gradient
//! buffers (the first chunk overwrites them), and one `sgd_update` follows the last chunk.

pub mod context;
pub mod kernels;
pub mod profile;

use crate::backend::{Backend, BackendError, Split};
use crate::data::Dataset;
use crate::model::{Activation, Params, Shape, Stats};
pub use context::GpuContext;
pub use kernels::Tiling;
use kernels::{ColumnSumParams, Dispatch, Kernels, MatmulParams, SgdParams, SoftmaxParams, View};

/// Offsets (in f32) of the four tensors inside the flat parameter and gradient buffers; each
/// starts on a 256-byte boundary so it can be bound on its own on any device.
#[derive(Clone, Copy, Debug)]
pub struct ParamLayout {
    pub w1: usize,
    pub b1: usize,
    pub w2: usize,
    pub b2: usize,
    pub total: usize,
}

const ALIGN_FLOATS: usize = 64;

impl ParamLayout {
    pub fn new(s: Shape) -> Self {
        let w1 = 0;
        let b1 = (w1 + s.d * s.h).next_multiple_of(ALIGN_FLOATS);
        let w2 = (b1 + s.h).next_multiple_of(ALIGN_FLOATS);
        let b2 = (w2 + s.h * s.k).next_multiple_of(ALIGN_FLOATS);
        ParamLayout { w1, b1, w2, b2, total: b2 + s.k }
    }

    pub fn flatten(&self, p: &Params) -> Vec<f32> {
        let mut flat = vec![0.0; self.total];
        for ((_, t), at) in p.tensors().into_iter().zip([self.w1, self.b1, self.w2, self.b2]) {
            flat[at..at + t.len()].copy_from_slice(t);
        }
        flat
    }

    pub fn unflatten(&self, flat: &[f32], shape: Shape) -> Params {
        let mut p = Params::zeros(shape);
        for ((_, t), at) in p.tensors_mut().into_iter().zip([self.w1, self.b1, self.w2, self.b2]) {
            let len = t.len();
            t.copy_from_slice(&flat[at..at + len]);
        }
        p
    }
}

/// Pixel rows padded to a multiple of 4 bytes, so four pixels fill one u32 word.
pub fn packed_row_bytes(d: usize) -> usize {
    d.next_multiple_of(4)
}

pub fn pack_rows(pixels: &[u8], d: usize) -> Vec<u8> {
    let lda = packed_row_bytes(d);
    if lda == d {
        return pixels.to_vec();
    }
    let mut out = vec![0u8; pixels.len() / d.max(1) * lda];
    for (dst, src) in out.chunks_exact_mut(lda).zip(pixels.chunks_exact(d)) {
        dst[..d].copy_from_slice(src);
    }
    out
}

/// Rows per chunk: as many as the binding limit allows, a multiple of 64 so every chunk's byte
/// offset is 256-aligned; all rows at once when they fit.
pub fn chunk_rows(
    n: usize,
    per_row_bytes: usize,
    max_binding: u64,
    requested: Option<usize>,
) -> Result<usize, BackendError> {
    let fit = (max_binding / per_row_bytes.max(1) as u64) as usize;
    let want = requested.unwrap_or(usize::MAX).min(fit);
    if want >= n {
        return Ok(n.max(1));
    }
    let rows = want / 64 * 64;
    if rows == 0 {
        return Err(BackendError::Unsupported(format!(
            "a chunk of 64 rows needs {} bytes per binding, more than this device allows ({max_binding}); use a smaller --hidden or --backend cpu",
            64 * per_row_bytes
        )));
    }
    Ok(rows)
}

/// One data split on the device. Its buffers (packed pixels, labels as u32, and per-row loss and
/// correctness written by softmax_xent_forward) live as long as the bind groups that use them.
struct GpuSet {
    n: usize,
    /// Forward dispatches over all chunks into the evaluation row statistics, then their sum
    /// into `stats`.
    evaluate: Vec<Dispatch>,
    /// The sum of the row statistics the latest step's forward pass wrote (training split).
    total: Dispatch,
}

pub struct GpuBackend {
    tiling: Tiling,
    ctx: GpuContext,
    shape: Shape,
    layout: ParamLayout,
    chunk_rows: usize,
    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    stats: wgpu::Buffer,
    staging: wgpu::Buffer,
    train: GpuSet,
    test: GpuSet,
    step: Vec<Dispatch>,
    lr: f32,
}

/// Device buffers that hold one chunk's activations, shared by every chunk and both splits.
struct ChunkBuffers {
    a1: wgpu::Buffer,
    z2: wgpu::Buffer,
    dz2: wgpu::Buffer,
    dz1: wgpu::Buffer,
}

/// One dispatch's time: its op (entry point), layer (0 if none) and seconds.
pub type KernelTime = (&'static str, u8, f64);

/// Choices for the GPU backend; the defaults fit the adapter.
#[derive(Clone, Copy, Debug, Default)]
pub struct GpuOptions {
    /// At most this many rows per chunk (tests use it to exercise accumulation across chunks).
    pub max_chunk_rows: Option<usize>,
    /// The matmul tiling; by default `Tiling::for_adapter`.
    pub tiling: Option<Tiling>,
}

impl GpuBackend {
    /// Uploads both splits and `params` and prepares every dispatch.
    pub fn new(
        ctx: GpuContext,
        train: &Dataset,
        test: &Dataset,
        params: &Params,
        act: Activation,
        options: GpuOptions,
    ) -> Result<Self, BackendError> {
        let s = params.shape;
        let lda = packed_row_bytes(s.d);
        let max_binding = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size);
        let per_row = lda.max(s.h * 4).max(s.k * 4).max(8);
        let rows = chunk_rows(train.n.max(test.n), per_row, max_binding, options.max_chunk_rows)?;
        for set in [train, test] {
            let bytes = (set.n * lda) as u64;
            if bytes > ctx.limits.max_buffer_size || (set.n * 8) as u64 > max_binding {
                return Err(BackendError::Unsupported(format!(
                    "{} images ({bytes} bytes) exceed this device's buffer limits; use fewer samples or --backend cpu",
                    set.n
                )));
            }
        }
        let layout = ParamLayout::new(s);
        let kernels = Kernels::new(&ctx.device, options.tiling.unwrap_or_else(|| Tiling::for_adapter(&ctx.info)));
        let usage = wgpu::BufferUsages::empty();
        let params_buf =
            ctx.upload("params", bytemuck::cast_slice(&layout.flatten(params)), wgpu::BufferUsages::COPY_SRC);
        let grads = ctx.zeros("grads", layout.total, usage);
        let stats = ctx.zeros("stats", 2, usage);
        let staging = ctx.staging(layout.total.max(2));
        let cb = ChunkBuffers {
            a1: ctx.zeros("a1", rows * s.h, usage),
            z2: ctx.zeros("z2", rows * s.k, usage),
            dz2: ctx.zeros("dz2", rows * s.k, usage),
            dz1: ctx.zeros("dz1", rows * s.h, usage),
        };
        let mut plan = Plan {
            ctx: &ctx,
            k: &kernels,
            s,
            act,
            layout,
            lda,
            params: &params_buf,
            grads: &grads,
            stats: &stats,
            cb: &cb,
        };
        let (train_set, mut step) = plan.set(train, rows, true);
        let (test_set, _) = plan.set(test, rows, false);
        let update = SgdParams { count: layout.total as u32, lr: 0.0, _pad: [0; 2] };
        step.push(kernels.sgd_update(&ctx.device, update, View::all(&params_buf), View::all(&grads)));
        ctx.check()?;
        Ok(GpuBackend {
            tiling: kernels.tiling(),
            ctx,
            shape: s,
            layout,
            chunk_rows: rows,
            params: params_buf,
            grads,
            stats,
            staging,
            train: train_set,
            test: test_set,
            step,
            lr: 0.0,
        })
    }

    pub fn tiling(&self) -> Tiling {
        self.tiling
    }

    pub fn chunk_rows(&self) -> usize {
        self.chunk_rows
    }

    /// Waits until every submitted step has finished (for wall-clock timing).
    pub fn finish(&self) -> Result<(), BackendError> {
        self.ctx.wait()
    }

    /// Runs one training step with every dispatch timed on its own (see `profile`): the dispatches
    /// (entry point and layer) with their seconds. The step's update is applied like `step`'s.
    pub fn profile_step(&mut self, lr: f32) -> Result<(Vec<KernelTime>, profile::TimingSource), BackendError> {
        self.set_lr(lr);
        let all: Vec<&Dispatch> = self.step.iter().collect();
        let (times, source) = profile::time_dispatches(&self.ctx, &all)?;
        Ok((self.step.iter().zip(times).map(|(d, t)| (d.label, d.layer, t)).collect(), source))
    }

    fn set_lr(&mut self, lr: f32) {
        if lr != self.lr {
            if let Some(update) = self.step.last() {
                let p = SgdParams { count: self.layout.total as u32, lr, _pad: [0; 2] };
                self.ctx.queue.write_buffer(&update.params, 0, bytemuck::bytes_of(&p));
            }
            self.lr = lr;
        }
    }

    fn read_stats(&self, n: usize) -> Result<Stats, BackendError> {
        let v = self.ctx.read_f32(&self.stats, 0, 2, &self.staging)?;
        Ok(Stats { loss: v[0] as f64 / n.max(1) as f64, correct: v[1].round() as usize, n })
    }

    fn read_params(&self, buf: &wgpu::Buffer) -> Result<Params, BackendError> {
        let flat = self.ctx.read_f32(buf, 0, self.layout.total, &self.staging)?;
        Ok(self.layout.unflatten(&flat, self.shape))
    }
}

/// Builds the dispatches of one split: its forward pass chunk by chunk and, for the training
/// split, the backward pass that accumulates gradients over the chunks.
struct Plan<'a> {
    ctx: &'a GpuContext,
    k: &'a Kernels,
    s: Shape,
    act: Activation,
    layout: ParamLayout,
    lda: usize,
    params: &'a wgpu::Buffer,
    grads: &'a wgpu::Buffer,
    stats: &'a wgpu::Buffer,
    cb: &'a ChunkBuffers,
}

impl Plan<'_> {
    fn set(&mut self, set: &Dataset, rows: usize, training: bool) -> (GpuSet, Vec<Dispatch>) {
        let (ctx, k, s, dev) = (self.ctx, self.k, self.s, &self.ctx.device);
        let x = ctx.upload("pixels", &pack_rows(&set.pixels, s.d), wgpu::BufferUsages::empty());
        let labels: Vec<u32> = set.labels.iter().map(|&l| l as u32).collect();
        let labels = ctx.upload("labels", bytemuck::cast_slice(&labels), wgpu::BufferUsages::empty());
        // Per-row loss and correctness: the step's forward pass writes `row_stats`, evaluation
        // writes `eval_stats` (its own buffer for the training split, so that evaluating never
        // overwrites what `step_stats` reports).
        let row_stats = ctx.zeros("row stats", set.n * 2, wgpu::BufferUsages::empty());
        let eval_stats = if training {
            ctx.zeros("evaluation row stats", set.n * 2, wgpu::BufferUsages::empty())
        } else {
            row_stats.clone()
        };
        let l = self.layout;
        let bias = s.bias as u32;
        let (w1, b1) = (View::floats(self.params, l.w1, s.d * s.h), View::floats(self.params, l.b1, s.h));
        let (w2, b2) = (View::floats(self.params, l.w2, s.h * s.k), View::floats(self.params, l.b2, s.k));
        let (dw1, db1) = (View::floats(self.grads, l.w1, s.d * s.h), View::floats(self.grads, l.b1, s.h));
        let (dw2, db2) = (View::floats(self.grads, l.w2, s.h * s.k), View::floats(self.grads, l.b2, s.k));
        let (mut forward, mut step) = (Vec::new(), Vec::new());
        for (c, r0) in (0..set.n).step_by(rows).enumerate() {
            let m = rows.min(set.n - r0);
            let xw = View { buffer: &x, offset: (r0 * self.lda) as u64, size: (m * self.lda) as u64 };
            let a1 = View::floats(&self.cb.a1, 0, m * s.h);
            let z2 = View::floats(&self.cb.z2, 0, m * s.k);
            let (dz2, dz1) = (View::floats(&self.cb.dz2, 0, m * s.k), View::floats(&self.cb.dz1, 0, m * s.h));
            let (m32, d, h, kk, acc) = (m as u32, s.d as u32, s.h as u32, s.k as u32, (c > 0) as u32);
            let (aux1, aux2) = if s.bias { (b1, b2) } else { (k.dummy(), k.dummy()) };
            let mm = |m, n, kdim, lda, ldb, a_u8, act| MatmulParams {
                m,
                n,
                k: kdim,
                lda,
                ldb,
                a_u8,
                bias,
                act,
                accumulate: acc,
                _pad: [0; 3],
            };
            let sm = SoftmaxParams { n: m32, k: kk, row_offset: r0 as u32, scale: 1.0 / set.n as f32 };
            let forward_into = |stats: &wgpu::Buffer| {
                let layer1 = mm(m32, h, d, self.lda as u32, h, 1, self.act.shader_code());
                [
                    k.linear_forward(dev, layer1, xw, w1, aux1, a1).on_layer(1),
                    k.linear_forward(dev, mm(m32, kk, h, h, kk, 0, 0), a1, w2, aux2, z2).on_layer(2),
                    k.softmax_xent_forward(dev, sm, z2, View::all(&labels), View::all(stats)),
                ]
            };
            forward.extend(forward_into(&eval_stats));
            if training {
                step.extend(forward_into(&row_stats));
                let sums = |cols| ColumnSumParams { rows: m32, cols, accumulate: acc, _pad: 0 };
                step.push(k.softmax_xent_backward(dev, sm, z2, View::all(&labels), dz2));
                step.push(k.linear_backward_weight(dev, mm(h, kk, m32, h, kk, 0, 0), a1, dz2, dw2).on_layer(2));
                if s.bias {
                    step.push(k.column_sum(dev, sums(kk), dz2, db2).on_layer(2));
                }
                let input_grad = mm(m32, h, kk, kk, kk, 0, self.act.shader_code());
                step.push(k.linear_backward_input(dev, input_grad, dz2, w2, a1, dz1).on_layer(2));
                let weight_grad = mm(d, h, m32, self.lda as u32, h, 1, 0);
                step.push(k.linear_backward_weight(dev, weight_grad, xw, dz1, dw1).on_layer(1));
                if s.bias {
                    step.push(k.column_sum(dev, sums(h), dz1, db1).on_layer(1));
                }
            }
        }
        let sums = ColumnSumParams { rows: set.n as u32, cols: 2, accumulate: 0, _pad: 0 };
        let total = k.column_sum(dev, sums, View::all(&row_stats), View::all(self.stats));
        forward.push(k.column_sum(dev, sums, View::all(&eval_stats), View::all(self.stats)));
        (GpuSet { n: set.n, evaluate: forward, total }, step)
    }
}

impl Backend for GpuBackend {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn device(&self) -> String {
        context::describe(&self.ctx.info)
    }

    fn step(&mut self, lr: f32) -> Result<(), BackendError> {
        self.set_lr(lr);
        let all: Vec<&Dispatch> = self.step.iter().collect();
        kernels::submit(&self.ctx.device, &self.ctx.queue, &all);
        Ok(())
    }

    fn step_stats(&self) -> Result<Stats, BackendError> {
        kernels::submit(&self.ctx.device, &self.ctx.queue, &[&self.train.total]);
        self.read_stats(self.train.n)
    }

    fn evaluate(&self, split: Split) -> Result<Stats, BackendError> {
        let set = match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
        };
        if set.n == 0 {
            return Ok(Stats::default());
        }
        let all: Vec<&Dispatch> = set.evaluate.iter().collect();
        kernels::submit(&self.ctx.device, &self.ctx.queue, &all);
        self.read_stats(set.n)
    }

    fn params(&self) -> Result<Params, BackendError> {
        self.read_params(&self.params)
    }

    fn gradients(&self) -> Result<Params, BackendError> {
        self.read_params(&self.grads)
    }
}
