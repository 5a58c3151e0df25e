//! `GpuBackend`: what it holds, and `new`, which opens everything a run needs once.

use super::batches::Batches;
use super::buffers::ChunkBuffers;
use super::context::GpuContext;
use super::dispatch::{Dispatch, View};
use super::kernels::Kernels;
use super::layout::{ParamLayout, check_limits, chunk_rows, packed_row_bytes};
use super::matmul::{Tiles, Tiling};
use super::queue::Queue;
use super::step::{self, GpuSet, Steps};
use super::tiles::MatmulConfig;
use super::tune_cache;
use crate::augment::{Augment, Augmentation, EpochImages};
use crate::backend::BackendError;
use crate::data::Splits;
use crate::dropout::{self, Dropout};
use crate::model::{Activation, Params, Shape};
use crate::optim::{OptimizerConfig, OptimizerState};

/// The training step on a wgpu device (see the module documentation).
pub struct GpuBackend {
    pub(super) tiling: Tiling,
    /// Each product's configuration.
    pub(super) tiles: Tiles,
    pub(super) ctx: GpuContext,
    pub(super) shape: Shape,
    pub(super) layout: ParamLayout,
    pub(super) chunk_rows: usize,
    pub(super) params: wgpu::Buffer,
    pub(super) grads: wgpu::Buffer,
    pub(super) stats: wgpu::Buffer,
    pub(super) staging: wgpu::Buffer,
    pub(super) train: GpuSet,
    pub(super) validation: GpuSet,
    pub(super) test: GpuSet,
    /// Each batch's forward and backward dispatches (one batch, every row, for full batches).
    pub(super) steps: Vec<Vec<Dispatch>>,
    /// The updates that end the steps, and the steps recorded for the next submit.
    pub(super) queue: Queue,
    pub(super) batches: Batches,
    pub(super) optimizer: OptimizerConfig,
    /// The optimizer's moments `m` and `v` in the parameters' layout, where the rule keeps them.
    pub(super) moments: [Option<wgpu::Buffer>; 2],
    /// The original training images (row-major, rows x cols each) when each epoch distorts them,
    /// drawn on the host into the upload the epoch's order makes anyway.
    pub(super) augmenting: Option<EpochImages>,
    /// Dropout on the hidden layers, and the model's step the next `step` takes (its masks).
    pub(super) dropout: Option<Dropout>,
    pub(super) step_index: u64,
}

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
    /// Each epoch, train on this distortion of the training images, drawn from the seed.
    pub augment: Option<(Augment, u64)>,
    /// Inverted dropout on the hidden layers (`crate::dropout`), masks the CPU's twins.
    pub dropout: Option<Dropout>,
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
        let dropout = options.dropout.filter(Dropout::is_on);
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
            dropout: dropout.map(|d| (dropout::threshold(d.p), 1.0 / (1.0 - d.p))),
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
        // A software adapter computes on the cores that a draw ahead would take.
        let ahead = super::context::is_hardware(&ctx.info);
        let augmenting = options
            .augment
            .filter(|(a, _)| a.kind != Augmentation::None)
            .map(|(a, seed)| EpochImages::new(train.pixels.clone(), train.rows, train.cols, a, seed, ahead));
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
            augmenting,
            dropout,
            step_index: 0,
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
    pub(super) fn flush(&self) {
        self.queue.flush(&self.ctx, &self.steps);
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
