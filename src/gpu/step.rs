//! One training step on the GPU as the dispatches that run it, in the order and with the names of
//! `cpu::reference::forward_backward`. Over a batch of training rows, chunk by chunk (so that no
//! binding outgrows the device; `A_0` is the chunk's packed pixels, `L` the output layer):
//!
//! ```text
//! forward, l = 1..L         linear_forward          A_l = act(A_{l-1}·W_l + b_l)   (Z_L: no act)
//!                           softmax_xent_forward    each row's loss and correctness, at its row
//!                                                   of the split's row statistics
//! backward                  softmax_xent_backward   dZ_L = (softmax(Z_L) - onehot(y)) / B
//!          l = L..1         linear_backward:
//!                             linear_backward_weight  dW_l (+)= A_{l-1}^T·dZ_l
//!                             (split_k_reduce         its slices of rows summed, when split)
//!                             column_sum              db_l (+)= Σ_rows dZ_l        (with bias)
//!                             linear_backward_input   dZ_{l-1} = (dZ_l·W_l^T) ⊙ act'(A_{l-1})
//!                                                                                (l > 1)
//! ```
//!
//! The first chunk's gradient products overwrite the gradient buffers, later chunks add to them;
//! B is the batch's rows. `GpuBackend::step` records these and then the optimizer's update once.
//! Evaluation runs the forward pass only, into the split's evaluation statistics, then sums them.

use std::ops::Range;

use super::buffers::{ChunkBuffers, SetBuffers};
use super::context::GpuContext;
use super::dispatch::{Dispatch, View};
use super::kernels::Kernels;
use super::layout::{ALIGN_ROWS, ParamLayout};
use super::shaders::{MatmulOp, activation_code};
use super::tiles::RegisterTile;
use super::tune::Product;
use super::uniforms::{ColumnSumParams, MatmulParams, SoftmaxParams};
use crate::data::Dataset;
use crate::model::{Activation, Shape};

/// One data split on the device: its buffers (`None` for an empty split) and the dispatches that
/// evaluate it, with the sum of the per-row statistics into the stats buffer last.
pub(super) struct GpuSet {
    pub n: usize,
    pub buffers: Option<SetBuffers>,
    pub evaluate: Vec<Dispatch>,
    /// The sum of the row statistics the latest step's forward pass wrote (training split).
    pub total: Option<Dispatch>,
}

impl GpuSet {
    pub fn new(steps: &Steps, set: &Dataset, training: bool) -> Self {
        let buffers = SetBuffers::upload(steps.ctx, set, steps.s.d, training);
        let evaluate = buffers.as_ref().map_or_else(Vec::new, |b| steps.evaluate(b));
        let total = buffers.as_ref().filter(|_| training).map(|b| steps.total(&b.row_stats, b.n));
        GpuSet { n: set.n, buffers, evaluate, total }
    }
}

/// Builds the dispatches of steps and evaluations over the parameter, gradient and chunk buffers.
pub(super) struct Steps<'a> {
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
    /// The slots of the weight gradients split into slices of rows (`None`: none is split).
    pub partials: Option<&'a wgpu::Buffer>,
    /// Dropout's threshold and scale for the steps' hidden layers (`None`: no dropout). Each
    /// step writes its mask words into the dispatches `masked_layer` names.
    pub dropout: Option<(u32, f32)>,
}

/// The hidden layer (0-based) whose dropout mask a step's dispatch applies, if any: the forward
/// product of a hidden layer, and the backward-input product that ends in its gradient.
pub(super) fn masked_layer(d: &Dispatch, layers: usize) -> Option<usize> {
    let l = (d.layer as usize).checked_sub(1)?;
    match d.label {
        "linear_forward" if l + 1 < layers => Some(l),
        "linear_backward_input" if l > 0 => Some(l - 1),
        _ => None,
    }
}

/// Dropout's threshold, scale, and the chunk's first row in its batch.
type Drop = (u32, f32, u32);

/// `p` with dropout's uniform fields set (its mask word is written every step).
fn with_drop(p: MatmulParams, drop: Option<Drop>) -> MatmulParams {
    match drop {
        Some((drop_threshold, drop_scale, drop_row0)) => MatmulParams { drop_threshold, drop_scale, drop_row0, ..p },
        None => p,
    }
}

/// An `m x n` product over an inner dimension `k`, with row strides `lda` and `ldb`.
fn product(m: usize, n: usize, k: usize, lda: usize, ldb: usize) -> MatmulParams {
    MatmulParams { m: m as u32, n: n as u32, k: k as u32, lda: lda as u32, ldb: ldb as u32, ..Default::default() }
}

/// The wide products of a step over chunks of `rows` rows, as `Steps` builds them, one per
/// op and layer: what the tuner times.
pub(super) fn products(s: &Shape, rows: usize, lda: usize) -> Vec<Product> {
    let mut out = Vec::new();
    for l in 0..s.layer_count() {
        let (fan_in, fan_out) = s.layer(l);
        let (a_u8, a_stride) = if l == 0 { (1, lda) } else { (0, fan_in) };
        let forward = MatmulParams { a_u8, ..product(rows, fan_out, fan_in, a_stride, fan_out) };
        let weight = MatmulParams { a_u8, ..product(fan_in, fan_out, rows, a_stride, fan_out) };
        out.push(Product { op: MatmulOp::Forward, p: forward });
        out.push(Product { op: MatmulOp::BackwardWeight, p: weight });
        if l > 0 {
            let input = product(rows, fan_in, fan_out, fan_out, fan_out);
            out.push(Product { op: MatmulOp::BackwardInput, p: input });
        }
    }
    out.retain(|p| p.p.n > RegisterTile::NARROW_MAX_N);
    out
}

/// Floats the slots of the largest split weight gradient need, over chunks of `rows` rows (0
/// when no product is split).
pub(super) fn partial_floats(k: &Kernels, s: &Shape, rows: usize) -> usize {
    (0..s.layer_count())
        .map(|l| {
            let (fan_in, fan_out) = s.layer(l);
            let p = MatmulParams { a_u8: (l == 0) as u32, ..product(fan_in, fan_out, rows, 0, fan_out) };
            match k.weight_slices(&p).1 {
                1 => 0,
                slices => slices as usize * fan_in * fan_out,
            }
        })
        .max()
        .unwrap_or(0)
}

impl Steps<'_> {
    /// One step's forward and backward passes over the training rows `rows` (a batch), chunk by
    /// chunk (see the module documentation).
    pub fn step(&self, set: &SetBuffers, rows: Range<usize>) -> Vec<Dispatch> {
        let scale = 1.0 / rows.len().max(1) as f32;
        let first = rows.start;
        let mut out = Vec::new();
        for (c, r0, m) in self.chunks(rows) {
            let drop = self.dropout.map(|(threshold, scale)| (threshold, scale, (r0 - first) as u32));
            out.extend(self.forward(set, &set.row_stats, r0, m, c > 0, drop));
            out.extend(self.backward(set, r0, m, scale, c > 0, drop));
        }
        out
    }

    /// Every row of `set` forward, chunk by chunk, into its evaluation statistics, then their sum
    /// into `stats`.
    pub fn evaluate(&self, set: &SetBuffers) -> Vec<Dispatch> {
        let mut out = Vec::new();
        for (c, r0, m) in self.chunks(0..set.n) {
            out.extend(self.forward(set, &set.eval_stats, r0, m, c > 0, None));
        }
        out.push(self.total(&set.eval_stats, set.n));
        out
    }

    /// The sum over the first `rows` rows of per-row statistics, into `stats` (its uniform, a
    /// `ColumnSumParams`, may be rewritten to sum other rows).
    pub fn total(&self, row_stats: &wgpu::Buffer, rows: usize) -> Dispatch {
        let sums = ColumnSumParams { rows: rows as u32, cols: 2, ..Default::default() };
        self.k.column_sum(&self.ctx.device, sums, View::all(row_stats), View::all(self.stats))
    }

    /// `(index, first row, rows)` of the chunks that cover `rows`.
    fn chunks(&self, rows: Range<usize>) -> impl Iterator<Item = (usize, usize, usize)> {
        let (chunk, end) = (self.rows, rows.end);
        rows.step_by(chunk).enumerate().map(move |(c, r0)| (c, r0, chunk.min(end - r0)))
    }

    /// The chunk's forward pass: `linear_forward` up the layers, then each row's loss and
    /// correctness into `row_stats`. `drop`: dropout's threshold, scale and the chunk's first row
    /// in the batch, for a training step with dropout.
    fn forward(
        &self,
        set: &SetBuffers,
        row_stats: &wgpu::Buffer,
        r0: usize,
        m: usize,
        acc: bool,
        drop: Option<Drop>,
    ) -> Vec<Dispatch> {
        let last = self.s.layer_count() - 1;
        let mut out: Vec<Dispatch> = (0..=last).map(|l| self.linear_forward(set, l, r0, m, acc, drop)).collect();
        let logits = View::floats(&self.cb.outputs[last], 0, m * self.s.k);
        let sm = self.softmax(r0, m, 1.0);
        let labels = View::all(&set.labels);
        out.push(self.k.softmax_xent_forward(&self.ctx.device, sm, logits, labels, View::all(row_stats)));
        out
    }

    /// Layer `l`'s output for the chunk: `act(A_{l-1}·W_l + b_l)`, the activation fused into the
    /// product's epilogue (none on the output layer, whose output is the logits), and on a hidden
    /// layer dropout's mask with `drop`.
    fn linear_forward(
        &self,
        set: &SetBuffers,
        l: usize,
        r0: usize,
        m: usize,
        acc: bool,
        drop: Option<Drop>,
    ) -> Dispatch {
        let (s, k) = (self.s, self.k);
        let (fan_in, fan_out) = s.layer(l);
        let hidden = l + 1 < s.layer_count();
        let act = hidden.then_some(self.act);
        let p = MatmulParams {
            bias: s.bias as u32,
            act: activation_code(act),
            accumulate: acc as u32,
            ..with_drop(product(m, fan_out, fan_in, 0, fan_out), drop.filter(|_| hidden))
        };
        let (a, p) = self.input(set, l, r0, m, p);
        let bias = if s.bias { self.bias(self.params, l) } else { k.dummy() };
        let z = View::floats(&self.cb.outputs[l], 0, m * fan_out);
        k.linear_forward(&self.ctx.device, p, a, self.weights(self.params, l), bias, z).on_layer(l as u8 + 1)
    }

    /// The chunk's backward pass after its forward pass: dZ of the output layer, then
    /// `linear_backward` down the layers.
    fn backward(
        &self,
        set: &SetBuffers,
        r0: usize,
        m: usize,
        scale: f32,
        acc: bool,
        drop: Option<Drop>,
    ) -> Vec<Dispatch> {
        let last = self.s.layer_count() - 1;
        let logits = View::floats(&self.cb.outputs[last], 0, m * self.s.k);
        let dz_out = View::floats(&self.cb.dz[last], 0, m * self.s.k);
        let sm = self.softmax(r0, m, scale);
        let labels = View::all(&set.labels);
        let mut out = vec![self.k.softmax_xent_backward(&self.ctx.device, sm, logits, labels, dz_out)];
        for l in (0..=last).rev() {
            out.extend(self.linear_backward(set, l, r0, m, acc, drop));
        }
        out
    }

    /// Layer `l`'s gradients from its dZ: dW_l (+)= A_{l-1}^T·dZ_l, db_l (+)= its column sums,
    /// and below the first layer dZ_{l-1} = (dZ_l·W_l^T) ⊙ act'(A_{l-1}), the derivative fused
    /// (and with `drop`, the mask of hidden layer l - 1 before it).
    fn linear_backward(
        &self,
        set: &SetBuffers,
        l: usize,
        r0: usize,
        m: usize,
        acc: bool,
        drop: Option<Drop>,
    ) -> Vec<Dispatch> {
        let (s, k, dev) = (self.s, self.k, &self.ctx.device);
        let (fan_in, fan_out) = s.layer(l);
        let layer = l as u8 + 1;
        let dz = View::floats(&self.cb.dz[l], 0, m * fan_out);
        let p = MatmulParams { accumulate: acc as u32, ..product(fan_in, fan_out, m, 0, fan_out) };
        let (a, p) = self.input(set, l, r0, m, p);
        let partials = self.partials.map(View::all);
        let weight = k.linear_backward_weight(dev, p, a, dz, self.weights(self.grads, l), partials);
        let mut out: Vec<Dispatch> = weight.into_iter().map(|d| d.on_layer(layer)).collect();
        if s.bias {
            let sums =
                ColumnSumParams { rows: m as u32, cols: fan_out as u32, accumulate: acc as u32, ..Default::default() };
            out.push(k.column_sum(dev, sums, dz, self.bias(self.grads, l)).on_layer(layer));
        }
        if l > 0 {
            let p = MatmulParams {
                act: activation_code(Some(self.act)),
                ..with_drop(product(m, fan_in, fan_out, fan_out, fan_out), drop)
            };
            let below = View::floats(&self.cb.outputs[l - 1], 0, m * fan_in);
            let dz_below = View::floats(&self.cb.dz[l - 1], 0, m * fan_in);
            let w = self.weights(self.params, l);
            out.push(k.linear_backward_input(dev, p, dz, w, below, dz_below).on_layer(layer));
        }
        out
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
            let view = View::bytes(&set.x, (base * self.lda) as u64, size);
            return (view, MatmulParams { a_u8: 1, lda: self.lda as u32, a_row0: (r0 - base) as u32, ..p });
        }
        let fan_in = self.s.layer(l).0;
        (View::floats(&self.cb.outputs[l - 1], 0, m * fan_in), MatmulParams { a_u8: 0, lda: fan_in as u32, ..p })
    }

    fn weights<'b>(&self, buf: &'b wgpu::Buffer, l: usize) -> View<'b> {
        let (fan_in, fan_out) = self.s.layer(l);
        View::floats(buf, self.layout.w[l], fan_in * fan_out)
    }

    fn bias<'b>(&self, buf: &'b wgpu::Buffer, l: usize) -> View<'b> {
        View::floats(buf, self.layout.b[l], self.s.layer(l).1)
    }

    fn softmax(&self, r0: usize, m: usize, scale: f32) -> SoftmaxParams {
        SoftmaxParams { n: m as u32, k: self.s.k as u32, row_offset: r0 as u32, scale, ..Default::default() }
    }
}
