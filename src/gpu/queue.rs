//! Steps on their way to the device: the optimizer's update that ends every step, and the steps
//! recorded for one submit.
//!
//! A submit has a fixed cost (tens of microseconds to milliseconds on real drivers), which a
//! mini-batch step's few milliseconds of work cannot hide, so small steps are recorded and
//! submitted together, up to `ROWS_PER_SUBMIT` rows of work (`MAX_STEPS_PER_SUBMIT` steps) in one
//! command buffer; a full-batch step goes alone. Anything that reads the device or changes its
//! inputs submits what is recorded first (`flush`), so no readback ever happens between the steps
//! of one submit. Each step a submit may hold has its own update dispatch with its own uniform
//! (that step's lr and Adam's bias corrections): a uniform written with `write_buffer` lands
//! before the whole command buffer, so steps in one command buffer cannot share one.

use std::cell::RefCell;

use super::context::GpuContext;
use super::dispatch::{Dispatch, View};
use super::kernels::Kernels;
use super::layout::ParamLayout;
use super::uniforms::OptimizerParams;
use crate::optim::OptimizerConfig;

/// Rows of mini-batch work per submit (at least one step)...
const ROWS_PER_SUBMIT: usize = 8192;
/// ...and at most this many steps.
const MAX_STEPS_PER_SUBMIT: usize = 64;

pub(super) struct Queue {
    /// One update per step a submit may hold.
    updates: Vec<Dispatch>,
    cfg: OptimizerConfig,
    layout: ParamLayout,
    /// The batch of each step recorded and not yet submitted; step i uses `updates[i]`.
    pending: RefCell<Vec<usize>>,
    /// Steps taken (Adam's t).
    pub t: u64,
}

impl Queue {
    /// Updates of `cfg`'s rule on the parameters `param` with gradients `grad` and the moments
    /// the rule keeps (`state`), for steps of `batch_rows` rows.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        device: &wgpu::Device,
        kernels: &Kernels,
        cfg: OptimizerConfig,
        layout: &ParamLayout,
        param: View,
        grad: View,
        state: &[View],
        batch_rows: usize,
    ) -> Self {
        let per_submit = (ROWS_PER_SUBMIT / batch_rows.max(1)).clamp(1, MAX_STEPS_PER_SUBMIT);
        let p = uniform(&cfg, layout, 0.0, 1);
        let updates =
            (0..per_submit).map(|_| kernels.optimizer_update(device, cfg.kind, p, param, grad, state)).collect();
        Queue { updates, cfg, layout: layout.clone(), pending: RefCell::new(Vec::new()), t: 0 }
    }

    /// Whether a step on batch `batch` is recorded and not yet submitted.
    pub fn is_pending(&self, batch: usize) -> bool {
        self.pending.borrow().contains(&batch)
    }

    /// Steps one submit holds.
    pub fn per_submit(&self) -> usize {
        self.updates.len()
    }

    /// Records a step on batch `batch` (its dispatches `steps[batch]`) at rate `lr`, and submits
    /// the recorded steps when a submit is full.
    pub fn step(&mut self, ctx: &GpuContext, steps: &[Vec<Dispatch>], batch: usize, lr: f32) {
        self.t += 1;
        let slot = self.pending.borrow().len();
        let p = uniform(&self.cfg, &self.layout, lr, self.t);
        ctx.queue.write_buffer(&self.updates[slot].params, 0, bytemuck::bytes_of(&p));
        self.pending.borrow_mut().push(batch);
        if slot + 1 == self.updates.len() {
            self.flush(ctx, steps);
        }
    }

    /// Submits the steps recorded so far, in one command buffer, without waiting.
    pub fn flush(&self, ctx: &GpuContext, steps: &[Vec<Dispatch>]) {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        let all: Vec<&Dispatch> =
            pending.iter().enumerate().flat_map(|(slot, &b)| steps[b].iter().chain([&self.updates[slot]])).collect();
        if !all.is_empty() {
            ctx.submit(&all);
        }
    }

    /// The next step's update with its uniform written, for timing dispatches one by one
    /// (`GpuBackend::profile_step`); call after `flush`.
    pub fn next_update(&mut self, ctx: &GpuContext, lr: f32) -> &Dispatch {
        self.t += 1;
        let p = uniform(&self.cfg, &self.layout, lr, self.t);
        ctx.queue.write_buffer(&self.updates[0].params, 0, bytemuck::bytes_of(&p));
        &self.updates[0]
    }
}

/// The update's uniform for step `t` of `cfg`'s rule at rate `lr`.
fn uniform(cfg: &OptimizerConfig, layout: &ParamLayout, lr: f32, t: u64) -> OptimizerParams {
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
        ..Default::default()
    }
}
