//! `GpuBackend` as a `Backend`: steps, statistics, evaluation and what the host reads back.

use std::ops::Range;

use super::context;
use super::dispatch::Dispatch;
use super::gpu_backend::GpuBackend;
use super::layout::pack_rows;
use super::step;
use super::uniforms::{ColumnSumParams, MatmulParams};
use crate::backend::{Backend, BackendError, Split};
use crate::dropout::{self, Dropout};
use crate::model::{Params, Stats};
use crate::optim::OptimizerState;

impl GpuBackend {
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

    /// Writes this step's dropout mask words into batch `batch`'s masked dispatches. A queued
    /// write lands before the whole next submit, so a batch already recorded for it (a submit may
    /// hold an epoch and more of a small set) is submitted first.
    pub(super) fn write_mask_words(&self, batch: usize, d: Dropout) {
        if self.queue.is_pending(batch) {
            self.flush();
        }
        let layers = self.shape.layer_count();
        let offset = std::mem::offset_of!(MatmulParams, drop_word) as u64;
        for dispatch in &self.steps[batch] {
            if let Some(l) = step::masked_layer(dispatch, layers) {
                let word = dropout::word(d.seed, self.step_index, l);
                self.ctx.queue.write_buffer(&dispatch.params, offset, bytemuck::bytes_of(&word));
            }
        }
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

    fn begin_epoch(&mut self, epoch: usize) -> Result<(), BackendError> {
        let (Some(images), Some(buffers)) = (&mut self.augmenting, &self.train.buffers) else {
            return Ok(());
        };
        let d = images.d();
        let packed = pack_rows(images.take(epoch), d);
        // The recorded steps read the images before.
        self.flush();
        if self.batches.full() {
            self.ctx.queue.write_buffer(&buffers.x, 0, &packed);
        } else {
            // The epoch's shuffle uploads them in its order.
            self.batches.set_pixels(packed);
        }
        Ok(())
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
        if let Some(d) = self.dropout {
            self.write_mask_words(batch, d);
        }
        self.queue.step(&self.ctx, &self.steps, batch, lr);
        self.batches.visit(batch);
        self.step_index += 1;
        Ok(())
    }

    fn begin_step(&mut self, step: u64) {
        self.step_index = step;
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
