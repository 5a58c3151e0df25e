//! The GPU backend: the training step as WGSL compute shaders through wgpu.
//!
//! Reading path of one step: `GpuBackend::step` (here) records the dispatches that `step.rs`
//! built, in the order and with the names of `cpu::reference::forward_backward`; each comes from
//! the wrapper of its WGSL entry point in `kernels.rs` (the matmul tilings in `matmul.rs`);
//! `shaders.rs` and `uniforms.rs` declare every pipeline, binding and uniform the WGSL files expect, and
//! `dispatch.rs` turns those declarations into pipelines and recorded dispatches. The data on the
//! device: `buffers.rs`, `layout.rs` (the flat parameters, packed pixels, chunk sizes) and
//! `batches.rs` (mini-batch bookkeeping); the adapter and device: `context.rs`.
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
pub mod kernels;
mod layout;
pub mod matmul;
pub mod profile;
mod queue;
pub mod replay;
pub mod shaders;
mod step;
pub mod tiles;
pub mod tune;
pub mod tune_cache;
pub mod uniforms;

use std::ops::Range;

use crate::backend::{Backend, BackendError, Split};
use crate::data::Splits;
use crate::model::{Activation, Params, Shape, Stats};
use crate::optim::{OptimizerConfig, OptimizerState};
use batches::Batches;
use buffers::ChunkBuffers;
pub use context::{DeviceLimits, GpuContext};
use dispatch::{Dispatch, View};
use kernels::Kernels;
use layout::check_limits;
pub use layout::{ParamLayout, chunk_rows, pack_rows, packed_row_bytes};
pub use matmul::{Tiles, Tiling};
use queue::Queue;
use step::{GpuSet, Steps};
use tiles::MatmulConfig;
use uniforms::ColumnSumParams;

/// The training step on a wgpu device (see the module documentation).
pub struct GpuBackend {
    tiling: Tiling,
    /// Each product's configuration.
    tiles: Tiles,
    ctx: GpuContext,
    shape: Shape,
    layout: ParamLayout,
    chunk_rows: usize,
    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    stats: wgpu::Buffer,
    staging: wgpu::Buffer,
    train: GpuSet,
    validation: GpuSet,
    test: GpuSet,
    /// Each batch's forward and backward dispatches (one batch, every row, for full batches).
    steps: Vec<Vec<Dispatch>>,
    /// The updates that end the steps, and the steps recorded for the next submit.
    queue: Queue,
    batches: Batches,
    optimizer: OptimizerConfig,
    /// The optimizer's moments `m` and `v` in the parameters' layout, where the rule keeps them.
    moments: [Option<wgpu::Buffer>; 2],
}

/// One dispatch's time: its op (entry point), layer (0 if none) and seconds.
pub type KernelTime = (&'static str, u8, f64);

/// Choices for the GPU backend; the defaults fit the adapter.
#[derive(Clone, Copy, Debug, Default)]
pub struct GpuOptions {
    /// At most this many rows per chunk (tests use it to exercise accumulation across chunks).
    pub max_chunk_rows: Option<usize>,
    /// The matmul tiling; by default `Tiling::for_adapter` (`Auto` tunes, see `tune.rs`).
    pub tiling: Option<Tiling>,
    /// Every wide product in this one configuration instead (tests force split K this way).
    pub matmul: Option<MatmulConfig>,
    /// Hears the tuner's progress, a line at a time.
    pub on_tuning: Option<fn(&str)>,
    /// The update rule (default: plain gradient descent); its state starts at zero.
    pub optimizer: OptimizerConfig,
    /// Rows per step: mini-batches of this many rows (default, or N and more: the whole training
    /// set in every step).
    pub batch_size: Option<usize>,
}

impl GpuBackend {
    /// Uploads the splits (validation and test may be empty) and `params`, and prepares every
    /// dispatch.
    pub fn new(
        ctx: GpuContext,
        data: &Splits,
        params: &Params,
        act: Activation,
        options: GpuOptions,
    ) -> Result<Self, BackendError> {
        let s = &params.shape;
        let lda = packed_row_bytes(s.d);
        let (train, validation, test) = (&data.train, &data.validation, &data.test);
        let layout = ParamLayout::new(s);
        let max_binding = check_limits(&ctx.limits, [train, validation, test], s, &layout)?;
        let widest = s.widths()[1..].iter().max().copied().unwrap_or(1);
        let per_row = lda.max(widest * 4).max(8);
        let batches = Batches::new(train, options.batch_size);
        // A mini-batch's chunk is bound from up to 63 pixel rows before it (see `chunk_rows`).
        let chunk_binding = if batches.full() { max_binding } else { max_binding.saturating_sub(63 * lda as u64) };
        let most = train.n.max(validation.n).max(test.n);
        let rows = chunk_rows(most, per_row, chunk_binding, options.max_chunk_rows)?;
        let tiling = options.tiling.unwrap_or_else(|| Tiling::for_adapter(&ctx.info));
        let step_rows = rows.min(batches.size);
        let tiles = match (options.matmul, tiling) {
            (Some(config), _) => Tiles { default: config, chosen: Default::default() },
            (None, Tiling::Auto) => {
                let mut progress = |line: &str| {
                    if let Some(report) = options.on_tuning {
                        report(line)
                    }
                };
                tune_cache::tiles(&ctx, &step::products(s, step_rows, lda), &mut progress)?
            }
            (None, fixed) => Tiles::fixed(fixed),
        };
        Kernels::check(&ctx.limits, &tiles)?;
        let kernels = Kernels::new(&ctx.device, tiles);
        let usage = wgpu::BufferUsages::empty();
        // The slots of split weight gradients, unless they would outgrow a binding (then the
        // products run unsplit).
        let partial_floats = step::partial_floats(&kernels, s, step_rows);
        let partials = (partial_floats > 0 && (partial_floats * 4) as u64 <= max_binding)
            .then(|| ctx.zeros("split-K slots", partial_floats, usage));
        let params_buf =
            ctx.upload("params", bytemuck::cast_slice(&layout.flatten(params)), wgpu::BufferUsages::COPY_SRC);
        let grads = ctx.zeros("grads", layout.total, usage);
        let stats = ctx.zeros("stats", 2, usage);
        let staging = ctx.staging(layout.total.max(2));
        let cb = ChunkBuffers::new(&ctx, s, rows);
        let builder = Steps {
            ctx: &ctx,
            k: &kernels,
            s,
            act,
            layout: &layout,
            lda,
            rows,
            params: &params_buf,
            grads: &grads,
            stats: &stats,
            cb: &cb,
            partials: partials.as_ref(),
        };
        let [train_set, validation_set, test_set] = [(train, true), (validation, false), (test, false)]
            .map(|(set, training)| GpuSet::new(&builder, set, training));
        let steps: Vec<Vec<Dispatch>> = (0..batches.count())
            .map(|b| train_set.buffers.as_ref().map_or_else(Vec::new, |set| builder.step(set, batches.range(b))))
            .collect();
        let cfg = options.optimizer;
        let moments = ["m", "v"].map(|name| {
            cfg.kind.moments().contains(&name).then(|| ctx.zeros(&format!("optimizer {name}"), layout.total, usage))
        });
        let (param_view, grad_view) = (View::all(&params_buf), View::all(&grads));
        let state: Vec<View> = moments.iter().flatten().map(View::all).collect();
        let queue = Queue::new(&ctx.device, &kernels, cfg, &layout, param_view, grad_view, &state, batches.size);
        let every = steps.iter().flatten().chain(train_set.evaluate.iter()).chain(validation_set.evaluate.iter());
        check_grids(&ctx.limits, every.chain(test_set.evaluate.iter()))?;
        ctx.check()?;
        Ok(GpuBackend {
            tiling,
            tiles: kernels.tiles().clone(),
            ctx,
            shape: s.clone(),
            layout,
            chunk_rows: rows,
            params: params_buf,
            grads,
            stats,
            staging,
            train: train_set,
            validation: validation_set,
            test: test_set,
            steps,
            queue,
            batches,
            optimizer: cfg,
            moments,
        })
    }

    /// Continues from saved optimizer state (`--init-from`): the rule must be this backend's and
    /// the shapes the parameters'.
    pub fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<(), BackendError> {
        state.fits(&self.optimizer, &self.shape)?;
        self.flush();
        for (buf, name) in self.moments.iter().zip(["m", "v"]) {
            if let Some(buf) = buf {
                let flat = self.layout.flatten(state.moment(name));
                self.ctx.queue.write_buffer(buf, 0, bytemuck::cast_slice(&flat));
            }
        }
        self.queue.t = state.t;
        Ok(())
    }

    /// Steps recorded in one submit (1 for full batches).
    pub fn steps_per_submit(&self) -> usize {
        self.queue.per_submit()
    }

    /// Submits the steps recorded so far (see `queue`): before anything reads the device or
    /// changes its inputs.
    fn flush(&self) {
        self.queue.flush(&self.ctx, &self.steps);
    }

    /// Where a step leaves its results, for a replay elsewhere (`replay.rs`): the parameters,
    /// gradients and the rule's moments `m` and `v` where it keeps them, flat in `layout()`'s
    /// order, and the last column sum's loss and correct count as `stats`.
    pub fn result_views(&self) -> Vec<(&'static str, View<'_>)> {
        let mut views = vec![("params", View::all(&self.params)), ("grads", View::all(&self.grads))];
        views.extend(["m", "v"].into_iter().zip(&self.moments).filter_map(|(n, b)| Some((n, View::all(b.as_ref()?)))));
        views.push(("stats", View::all(&self.stats)));
        views
    }

    /// One step's dispatches on batch `batch` at rate `lr`, kept instead of submitted
    /// (`GpuContext::record`), to replay elsewhere: the update's uniform is written, nothing runs.
    pub fn record_step(&mut self, batch: usize, lr: f32) -> Result<Vec<Dispatch>, BackendError> {
        if batch >= self.batches.count() {
            return Err(BackendError::Unsupported(format!("batch {batch} of {}", self.batches.count())));
        }
        self.flush();
        let (ctx, queue, steps) = (&self.ctx, &mut self.queue, &self.steps);
        let ((), kept) = ctx.record(|| {
            queue.step(ctx, steps, batch, lr);
            queue.flush(ctx, steps);
        });
        self.batches.visit(batch);
        Ok(kept)
    }

    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    /// The device and queue (tests use it to provoke device faults).
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    pub fn tiling(&self) -> Tiling {
        self.tiling
    }

    /// Each product's configuration (`tiling()`'s, or the tuner's).
    pub fn tiles(&self) -> &Tiles {
        &self.tiles
    }

    pub fn chunk_rows(&self) -> usize {
        self.chunk_rows
    }

    /// Runs one training step with every dispatch timed on its own (see `profile`): the dispatches
    /// (entry point and layer) with their seconds. The step's update is applied like `step`'s.
    pub fn profile_step(&mut self, lr: f32) -> Result<(Vec<KernelTime>, profile::TimingSource), BackendError> {
        self.flush();
        let update = self.queue.next_update(&self.ctx, lr);
        let all: Vec<&Dispatch> = self.steps[0].iter().chain([update]).collect();
        let (times, source) = profile::time_dispatches(&self.ctx, &all)?;
        Ok((all.iter().zip(times).map(|(d, t)| (d.label, d.layer, t)).collect(), source))
    }

    /// Loss and accuracy over runs of training rows, from each row's latest forward pass: one
    /// column sum per run by the training split's sum dispatch, its uniform rewritten before each
    /// submit (a queued write lands before the commands of the next submit).
    fn sum_rows(&self, runs: &[Range<usize>]) -> Result<Stats, BackendError> {
        self.flush();
        let Some(total) = self.train.total.as_ref().filter(|_| !runs.is_empty()) else {
            return Ok(Stats::default());
        };
        for (i, r) in runs.iter().enumerate() {
            let p = ColumnSumParams {
                rows: r.len() as u32,
                cols: 2,
                accumulate: (i > 0) as u32,
                first_row: r.start as u32,
                ..Default::default()
            };
            self.ctx.queue.write_buffer(&total.params, 0, bytemuck::bytes_of(&p));
            self.ctx.submit(&[total]);
        }
        self.read_stats(runs.iter().map(|r| r.len()).sum())
    }

    fn read_stats(&self, n: usize) -> Result<Stats, BackendError> {
        let v = self.ctx.read_f32(&self.stats, 0, 2, &self.staging)?;
        Ok(Stats { loss: v[0] as f64 / n.max(1) as f64, correct: v[1].round() as usize, n })
    }

    fn read_params(&self, buf: &wgpu::Buffer) -> Result<Params, BackendError> {
        self.flush();
        let flat = self.ctx.read_f32(buf, 0, self.layout.total, &self.staging)?;
        Ok(self.layout.unflatten(&flat, self.shape.clone()))
    }
}

impl Backend for GpuBackend {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn device(&self) -> String {
        context::describe(&self.ctx.info)
    }

    fn train_rows(&self) -> usize {
        self.train.n
    }

    fn wait(&self) -> Result<(), BackendError> {
        self.flush();
        self.ctx.wait()
    }

    fn batches(&self) -> usize {
        self.batches.count()
    }

    fn shuffle(&mut self, order: &[u32]) -> Result<(), BackendError> {
        crate::backend::check_order(order, self.train.n)?;
        // The recorded steps visit the rows in the order before.
        self.flush();
        if let (Some((pixels, labels)), Some(set)) = (self.batches.permuted(order), &self.train.buffers) {
            self.ctx.queue.write_buffer(&set.x, 0, &pixels);
            self.ctx.queue.write_buffer(&set.labels, 0, bytemuck::cast_slice(&labels));
        }
        Ok(())
    }

    fn step(&mut self, batch: usize, lr: f32) -> Result<(), BackendError> {
        if batch >= self.batches.count() {
            return Err(BackendError::Unsupported(format!("batch {batch} of {}", self.batches.count())));
        }
        self.queue.step(&self.ctx, &self.steps, batch, lr);
        self.batches.visit(batch);
        Ok(())
    }

    fn step_stats(&self) -> Result<Stats, BackendError> {
        self.flush();
        if self.batches.full() {
            if let Some(total) = &self.train.total {
                self.ctx.submit(&[total]);
            }
            return self.read_stats(self.train.n);
        }
        self.sum_rows(&self.batches.visited_rows())
    }

    fn batch_stats(&self, batch: usize) -> Result<Stats, BackendError> {
        if self.batches.full() {
            return self.step_stats();
        }
        if batch >= self.batches.count() {
            return Err(BackendError::Unsupported(format!("no batch {batch}")));
        }
        match self.batches.visited(batch) {
            true => self.sum_rows(&[self.batches.range(batch)]),
            false => Ok(Stats::default()),
        }
    }

    fn evaluate(&self, split: Split) -> Result<Stats, BackendError> {
        let set = match split {
            Split::Train => &self.train,
            Split::Validation => &self.validation,
            Split::Test => &self.test,
        };
        if set.n == 0 {
            return Ok(Stats::default());
        }
        self.flush();
        let all: Vec<&Dispatch> = set.evaluate.iter().collect();
        self.ctx.submit(&all);
        self.read_stats(set.n)
    }

    fn params(&self) -> Result<Params, BackendError> {
        self.read_params(&self.params)
    }

    fn gradients(&self) -> Result<Params, BackendError> {
        self.read_params(&self.grads)
    }

    fn optimizer_state(&self) -> Result<OptimizerState, BackendError> {
        let mut state = OptimizerState::new(self.optimizer.kind, self.shape.clone());
        for (buf, name) in self.moments.iter().zip(["m", "v"]) {
            if let Some(buf) = buf {
                *state.moment_mut(name) = self.read_params(buf)?;
            }
        }
        state.t = self.queue.t;
        Ok(state)
    }
}

/// The wide products of a step of network `s` over chunks of `rows` rows: what the tuner times.
pub fn step_products(s: &Shape, rows: usize) -> Vec<tune::Product> {
    step::products(s, rows, packed_row_bytes(s.d))
}

/// Refuses dispatches beyond the device's workgroup-count limit, before any runs.
fn check_grids<'a>(limits: &wgpu::Limits, dispatches: impl Iterator<Item = &'a Dispatch>) -> Result<(), BackendError> {
    let most = limits.max_compute_workgroups_per_dimension;
    for d in dispatches {
        if let Some(&w) = d.workgroups.iter().find(|&&w| w > most) {
            return Err(BackendError::Unsupported(format!(
                "{} needs {w} workgroups in one dimension, more than this device's {most}; use a smaller --hidden or --chunk-rows, or --backend cpu",
                d.label
            )));
        }
    }
    Ok(())
}
