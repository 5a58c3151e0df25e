//! What tools beside training ask of `GpuBackend`: a step timed dispatch by dispatch (`bench`),
//! and a step kept as data with the buffers it leaves its results in (`replay.rs`).

use super::dispatch::{Dispatch, View};
use super::gpu_backend::GpuBackend;
use super::layout::ParamLayout;
use super::profile::{self, KernelTime};
use crate::backend::BackendError;

impl GpuBackend {
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
        if let Some(d) = self.dropout {
            self.write_mask_words(batch, d);
        }
        let (ctx, queue, steps) = (&self.ctx, &mut self.queue, &self.steps);
        let ((), kept) = ctx.record(|| {
            queue.step(ctx, steps, batch, lr);
            queue.flush(ctx, steps);
        });
        self.batches.visit(batch);
        self.step_index += 1;
        Ok(kept)
    }

    pub fn layout(&self) -> &ParamLayout {
        &self.layout
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
}
