//! Device buffers of the data and of one chunk's intermediate values.

use super::context::GpuContext;
use super::layout::pack_rows;
use crate::data::Dataset;
use crate::model::Shape;

/// Buffers that hold one chunk's intermediate values, shared by every chunk and split: for each
/// layer `l` (0-based) its output (`outputs[l]`: the activations A of a hidden layer, the logits
/// of the output layer) and `dz[l]` = dL/dZ_l, chunk rows x fan_out each.
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

impl SetBuffers {
    /// Uploads a split of D-pixel images; `None` for an empty one (nothing to dispatch).
    pub fn upload(ctx: &GpuContext, set: &Dataset, d: usize, training: bool) -> Option<Self> {
        if set.n == 0 {
            return None;
        }
        let none = wgpu::BufferUsages::empty();
        let x = ctx.upload("pixels", &pack_rows(&set.pixels, d), none);
        let labels: Vec<u32> = set.labels.iter().map(|&l| l as u32).collect();
        let labels = ctx.upload("labels", bytemuck::cast_slice(&labels), none);
        let row_stats = ctx.zeros("row stats", set.n * 2, none);
        let eval_stats = if training { ctx.zeros("evaluation row stats", set.n * 2, none) } else { row_stats.clone() };
        Some(SetBuffers { n: set.n, x, labels, row_stats, eval_stats })
    }
}
