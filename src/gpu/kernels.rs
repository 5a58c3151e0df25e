//! The compute pipelines of a training step, created once, and one wrapper per op that builds a
//! ready-to-record dispatch. Each wrapper is named after its WGSL entry point (the
//! workgroup-memory variants `*_shared` are dispatched by the same wrappers, see `Tiling`) and
//! takes its views in binding order; the grid follows the shader header's dispatch formula.

use super::dispatch::{Dispatch, Pipeline, PipelineMaker, View, grid_1d, unused_binding};
use super::matmul::{Matmul, Tiling};
use super::shaders::{self, MatmulOp, WORKGROUP_1D};
use super::uniforms::{ColumnSumParams, MatmulParams, OptimizerParams, SoftmaxParams};
use crate::optim::Optimizer;

pub struct Kernels {
    tiling: Tiling,
    linear_forward: Matmul,
    linear_backward_weight: Matmul,
    linear_backward_input: Matmul,
    softmax_xent_forward: Pipeline,
    softmax_xent_backward: Pipeline,
    column_sum: Pipeline,
    gd_update: Pipeline,
    momentum_update: Pipeline,
    nesterov_update: Pipeline,
    adam_update: Pipeline,
    /// Bound where a kernel's (read-only) binding is unused.
    dummy: wgpu::Buffer,
}

impl Kernels {
    pub fn new(device: &wgpu::Device, tiling: Tiling) -> Self {
        let mut maker = PipelineMaker::new(device);
        let mut matmul = |op| Matmul::new(&mut maker, op, tiling);
        let [linear_forward, linear_backward_weight, linear_backward_input] = MatmulOp::ALL.map(&mut matmul);
        Kernels {
            tiling,
            linear_forward,
            linear_backward_weight,
            linear_backward_input,
            softmax_xent_forward: maker.make(shaders::softmax_xent(true)),
            softmax_xent_backward: maker.make(shaders::softmax_xent(false)),
            column_sum: maker.make(shaders::column_sum()),
            gd_update: maker.make(shaders::optimizer_update(Optimizer::Gd)),
            momentum_update: maker.make(shaders::optimizer_update(Optimizer::Momentum)),
            nesterov_update: maker.make(shaders::optimizer_update(Optimizer::Nesterov)),
            adam_update: maker.make(shaders::optimizer_update(Optimizer::Adam)),
            dummy: unused_binding(device),
        }
    }

    pub fn tiling(&self) -> Tiling {
        self.tiling
    }

    /// A read-only binding to fill where an op reads nothing (the bias of a bias-free layer).
    pub fn dummy(&self) -> View<'_> {
        View::all(&self.dummy)
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
        let (pipeline, grid) = self.linear_forward.pick(&p);
        Dispatch::new(device, pipeline, &p, &[a, b, bias, c], grid)
    }

    /// `c (+)= a^T · b` (a stored k x m).
    pub fn linear_backward_weight(
        &self,
        device: &wgpu::Device,
        p: MatmulParams,
        a: View,
        b: View,
        c: View,
    ) -> Dispatch {
        let (pipeline, grid) = self.linear_backward_weight.pick(&p);
        Dispatch::new(device, pipeline, &p, &[a, b, self.dummy(), c], grid)
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
        let (pipeline, grid) = self.linear_backward_input.pick(&p);
        Dispatch::new(device, pipeline, &p, &[a, b, below, c], grid)
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
