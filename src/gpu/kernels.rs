//! The compute pipelines of a training step, and one wrapper per op that builds a
//! ready-to-record dispatch. Each wrapper is named after its WGSL entry point (the
//! workgroup-memory variants `*_shared` are dispatched by the same wrappers), takes its views in
//! binding order, and computes the grid from the shader header's dispatch formula. Matmul
//! pipelines are made when a product first needs them, in the configuration `Tiles` chooses.

use std::cell::RefCell;
use std::collections::HashMap;

use super::dispatch::{Dispatch, Pipeline, PipelineMaker, View, grid_1d, unused_binding};
use super::matmul::Tiles;
use super::shaders::{self, MatmulOp, WORKGROUP_1D};
use super::tiles::{MatmulConfig, Tile};
use super::uniforms::{ColumnSumParams, MatmulParams, OptimizerParams, SoftmaxParams, SplitKParams};
use crate::backend::BackendError;
use crate::optim::Optimizer;

pub struct Kernels {
    tiles: Tiles,
    maker: RefCell<PipelineMaker>,
    matmuls: RefCell<HashMap<(MatmulOp, Tile), Pipeline>>,
    softmax_xent_forward: Pipeline,
    softmax_xent_backward: Pipeline,
    column_sum: Pipeline,
    split_k_reduce: Pipeline,
    gd_update: Pipeline,
    momentum_update: Pipeline,
    nesterov_update: Pipeline,
    adam_update: Pipeline,
    /// Bound where a kernel's (read-only) binding is unused.
    dummy: wgpu::Buffer,
}

impl Kernels {
    /// Refuses, before anything is compiled, a pipeline that `limits` cannot run: any of the
    /// fixed kernels, or a matmul of a configuration `tiles` may choose.
    pub fn check(limits: &wgpu::Limits, tiles: &Tiles) -> Result<(), BackendError> {
        let fixed = [shaders::softmax_xent(true), shaders::softmax_xent(false), shaders::column_sum()];
        let fixed =
            fixed.into_iter().chain([shaders::split_k_reduce()]).chain(Optimizer::ALL.map(shaders::optimizer_update));
        let configs: Vec<MatmulConfig> = tiles.configs().collect();
        let matmuls = MatmulOp::ALL.into_iter().flat_map(|op| configs.iter().map(move |c| shaders::matmul(op, c.tile)));
        for spec in fixed.chain(matmuls) {
            if let Some(why) = spec.exceeds(limits) {
                let hint = if spec.entry.starts_with("linear_") { "--tiling register" } else { "--backend cpu" };
                return Err(BackendError::Unsupported(format!("{why}; use {hint}")));
            }
        }
        Ok(())
    }

    pub fn new(device: &wgpu::Device, tiles: Tiles) -> Self {
        let mut maker = PipelineMaker::new(device);
        Kernels {
            tiles,
            softmax_xent_forward: maker.make(shaders::softmax_xent(true)),
            softmax_xent_backward: maker.make(shaders::softmax_xent(false)),
            column_sum: maker.make(shaders::column_sum()),
            split_k_reduce: maker.make(shaders::split_k_reduce()),
            gd_update: maker.make(shaders::optimizer_update(Optimizer::Gd)),
            momentum_update: maker.make(shaders::optimizer_update(Optimizer::Momentum)),
            nesterov_update: maker.make(shaders::optimizer_update(Optimizer::Nesterov)),
            adam_update: maker.make(shaders::optimizer_update(Optimizer::Adam)),
            maker: RefCell::new(maker),
            matmuls: RefCell::new(HashMap::new()),
            dummy: unused_binding(device),
        }
    }

    pub fn tiles(&self) -> &Tiles {
        &self.tiles
    }

    /// A read-only binding to fill where an op reads nothing (the bias of a bias-free layer).
    pub fn dummy(&self) -> View<'_> {
        View::all(&self.dummy)
    }

    /// `op` under `config` over `p`'s shapes, `views` in binding order; the grid's z counts K's
    /// slices.
    fn matmul(
        &self,
        device: &wgpu::Device,
        op: MatmulOp,
        config: MatmulConfig,
        p: &MatmulParams,
        views: &[View],
    ) -> Dispatch {
        let mut matmuls = self.matmuls.borrow_mut();
        let pipeline = matmuls
            .entry((op, config.tile))
            .or_insert_with(|| self.maker.borrow_mut().make(shaders::matmul(op, config.tile)));
        let (rows, cols) = config.tile.outputs();
        let slices = p.k.div_ceil(p.k_slice.max(1)).max(1);
        let z = if op == MatmulOp::BackwardWeight { slices } else { 1 };
        Dispatch::new(device, pipeline, p, views, [p.n.div_ceil(cols), p.m.div_ceil(rows), z])
    }

    /// `c = act(a·b + bias)`; `bias` is `dummy()` when `p.bias == 0`.
    pub fn linear_forward(
        &self,
        device: &wgpu::Device,
        p: MatmulParams,
        a: View,
        b: View,
        bias: View,
        c: View,
    ) -> Dispatch {
        let config = self.tiles.choose(MatmulOp::Forward, &p);
        self.matmul(device, MatmulOp::Forward, config, &MatmulParams { k_slice: p.k, ..p }, &[a, b, bias, c])
    }

    /// The weight gradient's slices of K under the chosen configuration: `(k_slice, slices)`.
    pub fn weight_slices(&self, p: &MatmulParams) -> (u32, u32) {
        self.tiles.choose(MatmulOp::BackwardWeight, p).slices(p.k)
    }

    /// `c (+)= a^T · b` (a stored k x m). Split into slices of K, the product writes one slot
    /// of `partials` per slice (room for `weight_slices(p).1 · m · n` floats) and
    /// `split_k_reduce` sums them into `c`; unsplit, it writes `c` itself.
    pub fn linear_backward_weight(
        &self,
        device: &wgpu::Device,
        p: MatmulParams,
        a: View,
        b: View,
        c: View,
        partials: Option<View>,
    ) -> Vec<Dispatch> {
        let config = self.tiles.choose(MatmulOp::BackwardWeight, &p);
        let (k_slice, slices) = config.slices(p.k);
        let op = MatmulOp::BackwardWeight;
        match partials.filter(|_| slices > 1) {
            None => {
                vec![self.matmul(device, op, config, &MatmulParams { k_slice: p.k, ..p }, &[a, b, self.dummy(), c])]
            }
            Some(slots) => {
                let split = MatmulParams { k_slice, accumulate: 0, ..p };
                let count = p.m * p.n;
                let sums = SplitKParams { count, splits: slices, accumulate: p.accumulate, ..Default::default() };
                let grid = grid_1d(count, WORKGROUP_1D);
                vec![
                    self.matmul(device, op, config, &split, &[a, b, self.dummy(), slots]),
                    Dispatch::new(device, &self.split_k_reduce, &sums, &[slots, c], grid),
                ]
            }
        }
    }

    /// `c = (a · b^T) ⊙ act'(below)` (b stored n x k; `below` = the layer's input activations, m x n).
    pub fn linear_backward_input(
        &self,
        device: &wgpu::Device,
        p: MatmulParams,
        a: View,
        b: View,
        below: View,
        c: View,
    ) -> Dispatch {
        let config = self.tiles.choose(MatmulOp::BackwardInput, &p);
        let p = MatmulParams { k_slice: p.k, ..p };
        self.matmul(device, MatmulOp::BackwardInput, config, &p, &[a, b, below, c])
    }

    pub fn softmax_xent_forward(
        &self,
        device: &wgpu::Device,
        p: SoftmaxParams,
        logits: View,
        labels: View,
        row_stats: View,
    ) -> Dispatch {
        let grid = [p.n.div_ceil(WORKGROUP_1D), 1, 1];
        Dispatch::new(device, &self.softmax_xent_forward, &p, &[logits, labels, row_stats], grid)
    }

    pub fn softmax_xent_backward(
        &self,
        device: &wgpu::Device,
        p: SoftmaxParams,
        logits: View,
        labels: View,
        dlogits: View,
    ) -> Dispatch {
        let grid = [p.n.div_ceil(WORKGROUP_1D), 1, 1];
        Dispatch::new(device, &self.softmax_xent_backward, &p, &[logits, labels, dlogits], grid)
    }

    /// One workgroup per column.
    pub fn column_sum(&self, device: &wgpu::Device, p: ColumnSumParams, m: View, out: View) -> Dispatch {
        Dispatch::new(device, &self.column_sum, &p, &[m, out], [p.cols, 1, 1])
    }

    /// One step of `kind`'s rule (`shaders::optimizer_entry`): `state` holds the moments the rule
    /// keeps (none, `m`, or `m` and `v`).
    pub fn optimizer_update(
        &self,
        device: &wgpu::Device,
        kind: Optimizer,
        p: OptimizerParams,
        param: View,
        grad: View,
        state: &[View],
    ) -> Dispatch {
        let pipeline = match kind {
            Optimizer::Gd => &self.gd_update,
            Optimizer::Momentum => &self.momentum_update,
            Optimizer::Nesterov => &self.nesterov_update,
            Optimizer::Adam => &self.adam_update,
        };
        let views: Vec<View> = [param, grad].into_iter().chain(state.iter().copied()).collect();
        Dispatch::new(device, pipeline, &p, &views, grid_1d(p.count, WORKGROUP_1D))
    }
}
