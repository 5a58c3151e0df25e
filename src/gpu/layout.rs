//! How the data sit in device memory: the flat parameter layout, pixel packing and chunk sizes.

use super::dispatch::QUAD_BYTES;
use crate::backend::BackendError;
use crate::data::Dataset;
use crate::model::{Params, Shape};

/// Offsets (in f32) of every tensor inside the flat parameter and gradient buffers: all layers'
/// weights first (W1, W2, ...), then all layers' biases (b1, b2, ...), each on a 256-byte boundary
/// so it can be bound on its own on any device. Everything below `weights_end` is a weight or the
/// zero padding between weights, which is what `optimizer_update.wgsl` decays.
#[derive(Clone, Debug)]
pub struct ParamLayout {
    /// Layer `l`'s (0-based) weights, fan_in x fan_out row-major, start at `w[l]`.
    pub w: Vec<usize>,
    /// Layer `l`'s bias, fan_out values, starts at `b[l]`.
    pub b: Vec<usize>,
    pub weights_end: usize,
    pub total: usize,
}

/// 256 bytes: the largest `min_storage_buffer_offset_alignment` wgpu allows.
pub(super) const ALIGN_FLOATS: usize = 64;
/// Rows of packed pixels (a multiple of 4 bytes each) that make a multiple of 256 bytes: a
/// binding of pixel rows starts at a multiple of this many rows.
pub(super) const ALIGN_ROWS: usize = 64;

impl ParamLayout {
    pub fn new(s: &Shape) -> Self {
        let layers = s.layer_count();
        let (mut w, mut b) = (Vec::with_capacity(layers), Vec::with_capacity(layers));
        let mut at = 0usize;
        for l in 0..layers {
            let (fan_in, fan_out) = s.layer(l);
            at = at.next_multiple_of(ALIGN_FLOATS);
            w.push(at);
            at += fan_in * fan_out;
        }
        let weights_end = at;
        for l in 0..layers {
            at = at.next_multiple_of(ALIGN_FLOATS);
            b.push(at);
            at += s.layer(l).1;
        }
        ParamLayout { w, b, weights_end, total: at }
    }

    pub fn flatten(&self, p: &Params) -> Vec<f32> {
        let mut flat = vec![0.0; self.total];
        for (l, layer) in p.layers.iter().enumerate() {
            flat[self.w[l]..self.w[l] + layer.w.len()].copy_from_slice(&layer.w);
            flat[self.b[l]..self.b[l] + layer.b.len()].copy_from_slice(&layer.b);
        }
        flat
    }

    pub fn unflatten(&self, flat: &[f32], shape: Shape) -> Params {
        let mut p = Params::zeros(shape);
        for (l, layer) in p.layers.iter_mut().enumerate() {
            let (nw, nb) = (layer.w.len(), layer.b.len());
            layer.w.copy_from_slice(&flat[self.w[l]..self.w[l] + nw]);
            layer.b.copy_from_slice(&flat[self.b[l]..self.b[l] + nb]);
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
/// offset is 256-aligned; all rows at once when they fit. (A mini-batch's chunks start anywhere
/// and are bound from the aligned row before them: pass a `max_binding` that leaves room for the
/// 63 rows more.)
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
    let rows = want / ALIGN_ROWS * ALIGN_ROWS;
    if rows == 0 {
        return Err(BackendError::Unsupported(format!(
            "a chunk of 64 rows needs {} bytes per binding, more than this device allows ({max_binding}); use a smaller --hidden or --backend cpu",
            64 * per_row_bytes
        )));
    }
    Ok(rows)
}

/// Refuses data or parameters beyond the device's buffer limits, with what to do instead, and
/// returns the largest binding (bytes). Each split's packed pixels live in one buffer and its
/// labels and per-row statistics are bound whole; the flat parameters are bound whole by the
/// update (each weight matrix on its own by the products): no chunking splits them.
pub(super) fn check_limits(
    limits: &wgpu::Limits,
    sets: [&Dataset; 3],
    s: &Shape,
    layout: &ParamLayout,
) -> Result<u64, BackendError> {
    // Views are whole 16-byte quads: count only whole quads of the limit.
    let max_binding = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size) / QUAD_BYTES * QUAD_BYTES;
    let lda = packed_row_bytes(s.d);
    for set in sets {
        let bytes = (set.n * lda) as u64;
        if bytes > limits.max_buffer_size || (set.n * 8) as u64 > max_binding {
            return Err(BackendError::Unsupported(format!(
                "{} images ({bytes} bytes) exceed this device's buffer limits; use fewer samples or --backend cpu",
                set.n
            )));
        }
    }
    let param_bytes = (layout.total * 4) as u64;
    if param_bytes > max_binding {
        return Err(BackendError::Unsupported(format!(
            "a {} network needs {} MiB of parameters in one buffer, more than this device's {} MiB binding limit; \
             use a smaller --hidden or --backend cpu",
            s.describe(),
            param_bytes >> 20,
            max_binding >> 20
        )));
    }
    Ok(max_binding)
}
