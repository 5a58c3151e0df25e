//! How the training step is laid out on the device: the flat parameter layout, pixel packing,
//! chunk sizes, and the dispatches of each split (forward chunk by chunk, and for the training
//! split the backward pass that accumulates gradients over the chunks).

use super::GpuContext;
use super::kernels::{ColumnSumParams, Dispatch, Kernels, MatmulParams, SoftmaxParams, View};
use crate::backend::BackendError;
use crate::data::Dataset;
use crate::model::{Activation, Params, Shape};

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
        let b1 = (w1 + s.d * s.hidden[0]).next_multiple_of(ALIGN_FLOATS);
        let w2 = (b1 + s.hidden[0]).next_multiple_of(ALIGN_FLOATS);
        let b2 = (w2 + s.hidden[0] * s.k).next_multiple_of(ALIGN_FLOATS);
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

/// Device buffers that hold one chunk's activations, shared by every chunk and both splits.
pub(super) struct ChunkBuffers {
    pub a1: wgpu::Buffer,
    pub z2: wgpu::Buffer,
    pub dz2: wgpu::Buffer,
    pub dz1: wgpu::Buffer,
}

/// One data split on the device. Its buffers (packed pixels, labels as u32, and per-row loss and
/// correctness written by softmax_xent_forward) live as long as the bind groups that use them.
pub(super) struct GpuSet {
    pub n: usize,
    /// Forward dispatches over all chunks into the evaluation row statistics, then their sum
    /// into `stats`.
    pub evaluate: Vec<Dispatch>,
    /// The sum of the row statistics the latest step's forward pass wrote (a non-empty split).
    pub total: Option<Dispatch>,
}

/// Builds the dispatches of one split: its forward pass chunk by chunk and, for the training
/// split, the backward pass that accumulates gradients over the chunks.
pub(super) struct Plan<'a> {
    pub ctx: &'a GpuContext,
    pub k: &'a Kernels,
    pub s: Shape,
    pub act: Activation,
    pub layout: ParamLayout,
    pub lda: usize,
    pub params: &'a wgpu::Buffer,
    pub grads: &'a wgpu::Buffer,
    pub stats: &'a wgpu::Buffer,
    pub cb: &'a ChunkBuffers,
}

impl Plan<'_> {
    pub fn set(&mut self, set: &Dataset, rows: usize, training: bool) -> (GpuSet, Vec<Dispatch>) {
        let (ctx, k, s, dev) = (self.ctx, self.k, &self.s, &self.ctx.device);
        if set.n == 0 {
            // Nothing to upload or dispatch: evaluating an empty split reads nothing.
            return (GpuSet { n: 0, evaluate: Vec::new(), total: None }, Vec::new());
        }
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
        let (w1, b1) =
            (View::floats(self.params, l.w1, s.d * s.hidden[0]), View::floats(self.params, l.b1, s.hidden[0]));
        let (w2, b2) = (View::floats(self.params, l.w2, s.hidden[0] * s.k), View::floats(self.params, l.b2, s.k));
        let (dw1, db1) =
            (View::floats(self.grads, l.w1, s.d * s.hidden[0]), View::floats(self.grads, l.b1, s.hidden[0]));
        let (dw2, db2) = (View::floats(self.grads, l.w2, s.hidden[0] * s.k), View::floats(self.grads, l.b2, s.k));
        let (mut forward, mut step) = (Vec::new(), Vec::new());
        for (c, r0) in (0..set.n).step_by(rows).enumerate() {
            let m = rows.min(set.n - r0);
            let xw = View { buffer: &x, offset: (r0 * self.lda) as u64, size: (m * self.lda) as u64 };
            let a1 = View::floats(&self.cb.a1, 0, m * s.hidden[0]);
            let z2 = View::floats(&self.cb.z2, 0, m * s.k);
            let (dz2, dz1) = (View::floats(&self.cb.dz2, 0, m * s.k), View::floats(&self.cb.dz1, 0, m * s.hidden[0]));
            let (m32, d, h, kk, acc) = (m as u32, s.d as u32, s.hidden[0] as u32, s.k as u32, (c > 0) as u32);
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
        (GpuSet { n: set.n, evaluate: forward, total: Some(total) }, step)
    }
}
