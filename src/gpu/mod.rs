//! The GPU backend: the training step as WGSL compute shaders through wgpu.
//!
//! Reading path of one step: `GpuBackend::step` (`training.rs`) records the dispatches that
//! `step.rs` built, in the order and with the names of `cpu::reference::forward_backward`; each
//! comes from the wrapper of its WGSL entry point in `kernels.rs`, the matmuls in the
//! configuration `matmul.rs` chooses among `tiles.rs`'s (the tuner's choice, `tune.rs` and
//! `tune_cache.rs`, or one fixed tiling); `shaders.rs` and `uniforms.rs` declare every pipeline,
//! binding and uniform the WGSL files expect, and `dispatch.rs` turns those declarations into
//! pipelines and recorded dispatches. The data on the device: `buffers.rs`, `layout.rs` (the flat
//! parameters, packed pixels, chunk sizes) and `batches.rs` (mini-batch bookkeeping); the adapter,
//! the device and its limits: `context.rs`; what opens them all: `gpu_backend.rs`. Beside
//! training: `profile.rs` and `inspect.rs` (a step timed dispatch by dispatch), `replay.rs`
//! (dispatches as data for another WebGPU implementation).
//!
//! Everything is created once in `GpuBackend::new`: the device, the pipelines, the buffers (the
//! whole training and test sets as packed pixel bytes, parameters, gradients, per-chunk
//! activations) and every dispatch with its bind group. A step records the prepared dispatches
//! into a command buffer and submits it without waiting (mini-batch steps a few at a time, see
//! `queue.rs`); the host reads back only at report points (`step_stats`, `evaluate`, `params`,
//! `gradients`).
//!
//! A step is the forward pass up the layers (the first reads the packed pixels, each hidden
//! layer the activations below it, the output layer writes logits) and the backward pass down
//! them, over a batch of training rows in chunks of rows so that no binding exceeds the device's
//! `max_storage_buffer_binding_size`; each chunk's gradient products add into the gradient
//! buffers (the first chunk overwrites them), and one update follows the last chunk: the rule's
//! entry point of `optimizer_update.wgsl` (`gd_update` for plain descent), whose moments live in
//! buffers beside the parameters and whose uniform (lr, Adam's bias corrections of the step count
//! kept in `queue.rs`) is written for each step.
//!
//! Mini-batches (`GpuOptions::batch_size` below N): `shuffle(order)` writes the training pixels
//! and labels, permuted by `order`, into the same device buffers (one host-to-device write per
//! epoch, nothing read back), so batch `b` is always the contiguous device rows
//! `[b·B, min((b+1)·B, N))`. Each batch's dispatches are built once in `new` (its chunks, the
//! output's dZ scaled by 1/rows of the batch); `step(b, lr)` records batch `b`'s and an update. The forward pass writes each row's loss and correctness at its row, so
//! the per-row statistics hold every row's latest forward pass: `step_stats` sums the rows of the
//! batches stepped on so far (n = those rows, as the CPU backend counts them) and
//! `batch_stats(b)` batch `b`'s rows, with one column-sum dispatch whose uniform says which rows.
//! A batch may start at any row: its pixels are bound from the 256-byte-aligned row before it
//! and the matmuls skip `a_row0` rows. Full batches (None, or N and more) are one batch of every
//! row: the order never matters, so `shuffle` uploads nothing.

mod batches;
mod buffers;
pub mod context;
pub mod dispatch;
mod gpu_backend;
mod inspect;
pub mod kernels;
mod layout;
pub mod matmul;
pub mod profile;
mod queue;
pub mod replay;
pub mod shaders;
mod step;
pub mod tiles;
mod training;
pub mod tune;
pub mod tune_cache;
pub mod uniforms;

pub use context::{DeviceLimits, GpuContext};
pub use gpu_backend::{GpuBackend, GpuOptions};
pub use layout::{ParamLayout, chunk_rows, pack_rows, packed_row_bytes};
pub use matmul::{Tiles, Tiling};
pub use profile::KernelTime;

use crate::model::Shape;

/// The wide products of a step of network `s` over chunks of `rows` rows: what the tuner times.
pub fn step_products(s: &Shape, rows: usize) -> Vec<tune::Product> {
    step::products(s, rows, packed_row_bytes(s.d))
}
