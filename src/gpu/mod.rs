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
//! buffers (the first chunk overwrites them), and one update follows the last chunk: the rule's
//! entry point of `optimizer_update.wgsl` (`gd_update` for plain descent), whose moments live in
//! buffers beside the parameters and whose uniform (lr, Adam's bias corrections of the step count
//! kept here) is rewritten before a step that changes it.

pub mod context;
pub mod kernels;
mod layout;
pub mod matmul;
mod plan;
pub mod profile;

use crate::backend::{Backend, BackendError, Split};
use crate::data::Splits;
use crate::model::{Activation, Params, Shape, Stats};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerState};
pub use context::GpuContext;
pub use kernels::Tiling;
use kernels::{Dispatch, Kernels, OptimizerParams, View};
pub use layout::{ParamLayout, chunk_rows, pack_rows, packed_row_bytes};
use plan::{ChunkBuffers, Plan, SetBuffers};

/// The training step on a wgpu device (see the module documentation).
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
    validation: GpuSet,
    test: GpuSet,
    /// The step's forward and backward dispatches.
    step: Vec<Dispatch>,
    /// The optimizer's update that ends every step.
    update: Dispatch,
    lr: f32,
    optimizer: OptimizerConfig,
    /// The optimizer's moments `m` and `v` in the parameters' layout, where the rule keeps them.
    moments: [Option<wgpu::Buffer>; 2],
    /// Steps taken (Adam's t).
    t: u64,
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
    /// The update rule (default: plain gradient descent); its state starts at zero.
    pub optimizer: OptimizerConfig,
    /// Rows per step: mini-batches of this many rows (default: the whole training set).
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
        if options.batch_size.is_some_and(|b| b < data.train.n) {
            return Err(BackendError::Unsupported("the GPU backend trains full batches; use --backend cpu".into()));
        }
        let lda = packed_row_bytes(s.d);
        let max_binding = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size);
        let widest = s.widths()[1..].iter().max().copied().unwrap_or(1);
        let per_row = lda.max(widest * 4).max(8);
        let (train, validation, test) = (&data.train, &data.validation, &data.test);
        let most = train.n.max(validation.n).max(test.n);
        let rows = chunk_rows(most, per_row, max_binding, options.max_chunk_rows)?;
        for set in [train, validation, test] {
            let bytes = (set.n * lda) as u64;
            if bytes > ctx.limits.max_buffer_size || (set.n * 8) as u64 > max_binding {
                return Err(BackendError::Unsupported(format!(
                    "{} images ({bytes} bytes) exceed this device's buffer limits; use fewer samples or --backend cpu",
                    set.n
                )));
            }
        }
        let layout = ParamLayout::new(s);
        // The flat parameters are bound whole by the update (and each weight matrix on its own by
        // the products); no chunking splits them, so refuse clearly.
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
        let kernels = Kernels::new(&ctx.device, options.tiling.unwrap_or_else(|| Tiling::for_adapter(&ctx.info)));
        let usage = wgpu::BufferUsages::empty();
        let params_buf =
            ctx.upload("params", bytemuck::cast_slice(&layout.flatten(params)), wgpu::BufferUsages::COPY_SRC);
        let grads = ctx.zeros("grads", layout.total, usage);
        let stats = ctx.zeros("stats", 2, usage);
        let staging = ctx.staging(layout.total.max(2));
        let cb = ChunkBuffers::new(&ctx, s, rows);
        let plan = Plan {
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
        };
        let [train_set, validation_set, test_set] = [(train, true), (validation, false), (test, false)]
            .map(|(set, training)| GpuSet::new(&plan, set, training));
        let step = train_set.buffers.as_ref().map_or_else(Vec::new, |b| plan.step(b, 0..b.n));
        let cfg = options.optimizer;
        let moments = ["m", "v"].map(|name| {
            cfg.kind.moments().contains(&name).then(|| ctx.zeros(&format!("optimizer {name}"), layout.total, usage))
        });
        let (param_view, grad_view) = (View::all(&params_buf), View::all(&grads));
        let [m, v] = moments.each_ref().map(|b| b.as_ref().map_or(kernels.dummy(), View::all));
        let p = optimizer_params(&cfg, &layout, 0.0, 1);
        let update = kernels.optimizer_update(&ctx.device, cfg.kind, p, param_view, grad_view, m, v);
        ctx.check()?;
        Ok(GpuBackend {
            tiling: kernels.tiling(),
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
            step,
            update,
            lr: 0.0,
            optimizer: cfg,
            moments,
            t: 0,
        })
    }

    /// Continues from saved optimizer state (`--init-from`): the rule must be this backend's and
    /// the shapes the parameters'.
    pub fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<(), BackendError> {
        state.fits(&self.optimizer, &self.shape)?;
        for (buf, name) in self.moments.iter().zip(["m", "v"]) {
            if let Some(buf) = buf {
                let flat = self.layout.flatten(state.moment(name));
                self.ctx.queue.write_buffer(buf, 0, bytemuck::cast_slice(&flat));
            }
        }
        self.t = state.t;
        Ok(())
    }

    /// The device and queue (tests use it to provoke device faults).
    pub fn context(&self) -> &GpuContext {
        &self.ctx
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
        self.prepare_update(lr);
        let all: Vec<&Dispatch> = self.step.iter().chain([&self.update]).collect();
        let (times, source) = profile::time_dispatches(&self.ctx, &all)?;
        Ok((all.iter().zip(times).map(|(d, t)| (d.label, d.layer, t)).collect(), source))
    }

    /// Writes the coming step's update uniform when it changes: a new lr, or for Adam the bias
    /// corrections of the step count, which advances every step.
    fn prepare_update(&mut self, lr: f32) {
        self.t += 1;
        if lr != self.lr || self.optimizer.kind == Optimizer::Adam {
            let p = optimizer_params(&self.optimizer, &self.layout, lr, self.t);
            self.ctx.queue.write_buffer(&self.update.params, 0, bytemuck::bytes_of(&p));
        }
        self.lr = lr;
    }

    fn read_stats(&self, n: usize) -> Result<Stats, BackendError> {
        let v = self.ctx.read_f32(&self.stats, 0, 2, &self.staging)?;
        Ok(Stats { loss: v[0] as f64 / n.max(1) as f64, correct: v[1].round() as usize, n })
    }

    fn read_params(&self, buf: &wgpu::Buffer) -> Result<Params, BackendError> {
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

    fn batch_stats(&self, _batch: usize) -> Result<Stats, BackendError> {
        self.step_stats()
    }

    fn batches(&self) -> usize {
        1
    }

    fn shuffle(&mut self, order: &[u32]) -> Result<(), BackendError> {
        crate::backend::check_order(order, self.train.n)
    }

    fn step(&mut self, _batch: usize, lr: f32) -> Result<(), BackendError> {
        self.prepare_update(lr);
        let all: Vec<&Dispatch> = self.step.iter().chain([&self.update]).collect();
        kernels::submit(&self.ctx.device, &self.ctx.queue, &all);
        Ok(())
    }

    fn step_stats(&self) -> Result<Stats, BackendError> {
        if let Some(total) = &self.train.total {
            kernels::submit(&self.ctx.device, &self.ctx.queue, &[total]);
        }
        self.read_stats(self.train.n)
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

    fn optimizer_state(&self) -> Result<OptimizerState, BackendError> {
        let mut state = OptimizerState::new(self.optimizer.kind, self.shape.clone());
        for (buf, name) in self.moments.iter().zip(["m", "v"]) {
            if let Some(buf) = buf {
                *state.moment_mut(name) = self.read_params(buf)?;
            }
        }
        state.t = self.t;
        Ok(state)
    }
}

/// The uniform of step `t` of `cfg`'s rule at rate `lr`.
fn optimizer_params(cfg: &OptimizerConfig, layout: &ParamLayout, lr: f32, t: u64) -> OptimizerParams {
    let (c1, c2) = cfg.adam_corrections(t.max(1));
    OptimizerParams {
        count: layout.total as u32,
        lr,
        momentum: cfg.momentum,
        beta1: cfg.beta1,
        beta2: cfg.beta2,
        eps: cfg.eps,
        weight_decay: cfg.weight_decay,
        c1,
        c2,
        weights_end: layout.weights_end as u32,
        _pad: [0; 2],
    }
}

/// One data split on the device: its buffers (`None` for an empty split) and the dispatches
/// that evaluate it, with the sum of the per-row statistics into the stats buffer last.
struct GpuSet {
    n: usize,
    buffers: Option<SetBuffers>,
    evaluate: Vec<Dispatch>,
    /// The sum of the row statistics the latest step's forward pass wrote (training split).
    total: Option<Dispatch>,
}

impl GpuSet {
    fn new(plan: &Plan, set: &crate::data::Dataset, training: bool) -> Self {
        let buffers = plan.upload(set, training);
        let evaluate = buffers.as_ref().map_or_else(Vec::new, |b| plan.evaluate(b));
        let total = buffers.as_ref().filter(|_| training).map(|b| plan.total(&b.row_stats, b.n));
        GpuSet { n: set.n, buffers, evaluate, total }
    }
}
