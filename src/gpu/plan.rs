//! The dispatches of a split: the forward pass chunk by chunk as a loop over the layers (the
//! first reads the packed pixels, the hidden layers the previous layer's activations, the output
//! layer writes logits), and for training the backward pass down the layers, whose gradient
//! products add up over the chunks.

use std::ops::Range;

use super::GpuContext;
use super::kernels::{ColumnSumParams, Dispatch, Kernels, MatmulParams, SoftmaxParams, View};
use super::layout::{ALIGN_ROWS, ParamLayout, pack_rows};
use crate::data::Dataset;
use crate::model::{Activation, Shape};

/// Device buffers that hold one chunk's intermediate values, shared by every chunk and split:
/// for each layer `l` (0-based) its output (`outputs[l]`: the activations of a hidden layer, the
/// logits of the output layer) and `dz[l]` = dL/dZ_l, chunk rows x fan_out each.
pub(super) struct ChunkBuffers {
    pub outputs: Vec<wgpu::Buffer>,
    pub dz: Vec<wgpu::Buffer>,
}

impl ChunkBuffers {
    pub fn new(ctx: &GpuContext, s: &Shape, rows: usize) -> Self {
        let widths = &s.widths()[1..];
        let make = |what: &str| -> Vec<wgpu::Buffer> {
            let usage = wgpu::BufferUsages::empty();
            widths.iter().enumerate().map(|(l, &w)| ctx.zeros(&format!("{what} {}", l + 1), rows * w, usage)).collect()
        };
        ChunkBuffers { outputs: make("layer output"), dz: make("dZ") }
    }
}

/// One non-empty data split on the device: packed pixels, labels as u32, and per-row loss and
/// correctness (2 floats per row). Training forward passes write `row_stats`, evaluation writes
/// `eval_stats` (its own buffer for the training split, so that evaluating never overwrites what
/// `step_stats` reports; the same buffer for the other splits).
pub(super) struct SetBuffers {
    pub n: usize,
    pub x: wgpu::Buffer,
    pub labels: wgpu::Buffer,
    pub row_stats: wgpu::Buffer,
    pub eval_stats: wgpu::Buffer,
}

/// One data split on the device: its buffers (`None` for an empty split) and the dispatches
/// that evaluate it, with the sum of the per-row statistics into the stats buffer last.
pub(super) struct GpuSet {
    pub n: usize,
    pub buffers: Option<SetBuffers>,
    pub evaluate: Vec<Dispatch>,
    /// The sum of the row statistics the latest step's forward pass wrote (training split).
    pub total: Option<Dispatch>,
}

impl GpuSet {
    pub fn new(plan: &Plan, set: &Dataset, training: bool) -> Self {
        let buffers = plan.upload(set, training);
        let evaluate = buffers.as_ref().map_or_else(Vec::new, |b| plan.evaluate(b));
        let total = buffers.as_ref().filter(|_| training).map(|b| plan.total(&b.row_stats, b.n));
        GpuSet { n: set.n, buffers, evaluate, total }
    }
}

/// Builds dispatches over the parameter, gradient and chunk buffers.
pub(super) struct Plan<'a> {
    pub ctx: &'a GpuContext,
    pub k: &'a Kernels,
    pub s: &'a Shape,
    pub act: Activation,
    pub layout: &'a ParamLayout,
    /// Bytes per packed pixel row.
    pub lda: usize,
    /// Rows per chunk (at most what `cb` holds).
    pub rows: usize,
    pub params: &'a wgpu::Buffer,
    pub grads: &'a wgpu::Buffer,
    /// Where `total` writes its sums: loss and correct count.
    pub stats: &'a wgpu::Buffer,
    pub cb: &'a ChunkBuffers,
}

/// An `m x n` product over an inner dimension `k`, with row strides `lda` and `ldb`.
fn product(m: usize, n: usize, k: usize, lda: usize, ldb: usize) -> MatmulParams {
    MatmulParams { m: m as u32, n: n as u32, k: k as u32, lda: lda as u32, ldb: ldb as u32, ..Default::default() }
}

impl Plan<'_> {
    /// Uploads a split; `None` for an empty one (nothing to dispatch, evaluation reads nothing).
    pub fn upload(&self, set: &Dataset, training: bool) -> Option<SetBuffers> {
        if set.n == 0 {
            return None;
        }
        let (ctx, none) = (self.ctx, wgpu::BufferUsages::empty());
        let x = ctx.upload("pixels", &pack_rows(&set.pixels, self.s.d), none);
        let labels: Vec<u32> = set.labels.iter().map(|&l| l as u32).collect();
        let labels = ctx.upload("labels", bytemuck::cast_slice(&labels), none);
        let row_stats = ctx.zeros("row stats", set.n * 2, none);
        let eval_stats = if training { ctx.zeros("evaluation row stats", set.n * 2, none) } else { row_stats.clone() };
        Some(SetBuffers { n: set.n, x, labels, row_stats, eval_stats })
    }

    /// Every row of `set` forward, chunk by chunk, into its evaluation statistics, then their sum
    /// into `stats`.
    pub fn evaluate(&self, set: &SetBuffers) -> Vec<Dispatch> {
        let mut out = Vec::new();
        for (c, r0, m) in self.chunks(0..set.n) {
            out.extend(self.forward(set, &set.eval_stats, r0, m, c > 0));
        }
        out.push(self.total(&set.eval_stats, set.n));
        out
    }

    /// One step's forward and backward passes over the training rows `rows` (a batch), chunk by
    /// chunk. The output's dZ is scaled by 1/rows.len(), so the gradients are the batch's mean;
    /// the first chunk's products overwrite the gradient buffers, later chunks add to them.
    pub fn step(&self, set: &SetBuffers, rows: Range<usize>) -> Vec<Dispatch> {
        let scale = 1.0 / rows.len().max(1) as f32;
        let mut out = Vec::new();
        for (c, r0, m) in self.chunks(rows) {
            out.extend(self.forward(set, &set.row_stats, r0, m, c > 0));
            out.extend(self.backward(set, r0, m, scale, c > 0));
        }
        out
    }

    /// The sum over the first `rows` rows of per-row statistics, into `stats` (its uniform, a
    /// `ColumnSumParams`, may be rewritten to sum other rows).
    pub fn total(&self, row_stats: &wgpu::Buffer, rows: usize) -> Dispatch {
        let sums = ColumnSumParams { rows: rows as u32, cols: 2, accumulate: 0, first_row: 0 };
        self.k.column_sum(&self.ctx.device, sums, View::all(row_stats), View::all(self.stats))
    }

    /// `(index, first row, rows)` of the chunks that cover `rows`.
    fn chunks(&self, rows: Range<usize>) -> impl Iterator<Item = (usize, usize, usize)> {
        let (chunk, end) = (self.rows, rows.end);
        rows.step_by(chunk).enumerate().map(move |(c, r0)| (c, r0, chunk.min(end - r0)))
    }

    fn weights<'b>(&self, buf: &'b wgpu::Buffer, l: usize) -> View<'b> {
        let (fan_in, fan_out) = self.s.layer(l);
        View::floats(buf, self.layout.w[l], fan_in * fan_out)
    }

    fn bias<'b>(&self, buf: &'b wgpu::Buffer, l: usize) -> View<'b> {
        View::floats(buf, self.layout.b[l], self.s.layer(l).1)
    }

    /// Layer `l`'s input for the chunk of `m` rows at `r0`, as matmul operand A of a product
    /// `p`: the packed pixels (u8) for the first layer, the chunk's activations of the layer below
    /// otherwise.
    fn input<'b>(
        &'b self,
        set: &'b SetBuffers,
        l: usize,
        r0: usize,
        m: usize,
        p: MatmulParams,
    ) -> (View<'b>, MatmulParams) {
        if l == 0 {
            // Bound from the 256-byte-aligned row at or before r0 (a mini-batch may start anywhere).
            let base = r0 / ALIGN_ROWS * ALIGN_ROWS;
            let size = ((r0 - base + m) * self.lda) as u64;
            let view = View { buffer: &set.x, offset: (base * self.lda) as u64, size };
            return (view, MatmulParams { a_u8: 1, lda: self.lda as u32, a_row0: (r0 - base) as u32, ..p });
        }
        let fan_in = self.s.layer(l).0;
        (View::floats(&self.cb.outputs[l - 1], 0, m * fan_in), MatmulParams { a_u8: 0, lda: fan_in as u32, ..p })
    }

    fn softmax(&self, r0: usize, m: usize, scale: f32) -> SoftmaxParams {
        SoftmaxParams { n: m as u32, k: self.s.k as u32, row_offset: r0 as u32, scale }
    }

    /// The chunk's forward pass, layer by layer, then its per-row loss and correctness into `stats`.
    fn forward(&self, set: &SetBuffers, stats: &wgpu::Buffer, r0: usize, m: usize, acc: bool) -> Vec<Dispatch> {
        let (k, dev, s) = (self.k, &self.ctx.device, self.s);
        let last = s.layer_count() - 1;
        let mut out = Vec::new();
        for l in 0..=last {
            let (fan_in, fan_out) = s.layer(l);
            let act = if l == last { 0 } else { self.act.shader_code() };
            let p = MatmulParams {
                bias: s.bias as u32,
                act,
                accumulate: acc as u32,
                ..product(m, fan_out, fan_in, 0, fan_out)
            };
            let (a, p) = self.input(set, l, r0, m, p);
            let aux = if s.bias { self.bias(self.params, l) } else { k.dummy() };
            let z = View::floats(&self.cb.outputs[l], 0, m * fan_out);
            out.push(k.linear_forward(dev, p, a, self.weights(self.params, l), aux, z).on_layer(l as u8 + 1));
        }
        let logits = View::floats(&self.cb.outputs[last], 0, m * s.k);
        let sm = self.softmax(r0, m, 1.0);
        out.push(k.softmax_xent_forward(dev, sm, logits, View::all(&set.labels), View::all(stats)));
        out
    }

    /// The chunk's backward pass after its forward pass: dZ of the output layer, then for each
    /// layer from the top dW_l (+)= A_{l-1}^T·dZ_l, db_l (+)= column sums of dZ_l, and below the
    /// top dZ_{l-1} = (dZ_l·W_l^T) ⊙ act'(A_{l-1}); dW_1 reads the pixels.
    fn backward(&self, set: &SetBuffers, r0: usize, m: usize, scale: f32, acc: bool) -> Vec<Dispatch> {
        let (k, dev, s) = (self.k, &self.ctx.device, self.s);
        let last = s.layer_count() - 1;
        let logits = View::floats(&self.cb.outputs[last], 0, m * s.k);
        let dz_out = View::floats(&self.cb.dz[last], 0, m * s.k);
        let sm = self.softmax(r0, m, scale);
        let mut out = vec![k.softmax_xent_backward(dev, sm, logits, View::all(&set.labels), dz_out)];
        for l in (0..=last).rev() {
            let (fan_in, fan_out) = s.layer(l);
            let layer = l as u8 + 1;
            let dz = View::floats(&self.cb.dz[l], 0, m * fan_out);
            let p = MatmulParams { accumulate: acc as u32, ..product(fan_in, fan_out, m, 0, fan_out) };
            let (a, p) = self.input(set, l, r0, m, p);
            out.push(k.linear_backward_weight(dev, p, a, dz, self.weights(self.grads, l)).on_layer(layer));
            if s.bias {
                let sums =
                    ColumnSumParams { rows: m as u32, cols: fan_out as u32, accumulate: acc as u32, first_row: 0 };
                out.push(k.column_sum(dev, sums, dz, self.bias(self.grads, l)).on_layer(layer));
            }
            if l > 0 {
                let p = MatmulParams { act: self.act.shader_code(), ..product(m, fan_in, fan_out, fan_out, fan_out) };
                let below = View::floats(&self.cb.outputs[l - 1], 0, m * fan_in);
                let dz_below = View::floats(&self.cb.dz[l - 1], 0, m * fan_in);
                out.push(
                    k.linear_backward_input(dev, p, dz, self.weights(self.params, l), below, dz_below).on_layer(layer),
                );
            }
        }
        out
    }
}
