//! The matmul family's choices: the two tilings of the wide products, the narrow register tile
//! for outputs at most 16 wide, the grid of each, and the naive one-output-per-invocation twins
//! (for `bench --naive`).

use super::dispatch::{Dispatch, Pipeline, PipelineMaker, View};
use super::shaders::{self, MatmulOp, NAIVE_SIDE, RegisterTile, SharedTile};
use super::uniforms::MatmulParams;

/// How the matmuls with wide outputs are tiled (outputs at most `RegisterTile::NARROW_MAX_N`
/// wide always use the narrow register tile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tiling {
    /// `matmul.wgsl`: 8 x 8 outputs per invocation in registers, no barriers (software adapters).
    Register,
    /// `matmul_shared.wgsl`: 64 x 64 tiles staged through workgroup memory (hardware GPUs).
    Shared,
}

impl Tiling {
    pub const ALL: [Tiling; 2] = [Tiling::Register, Tiling::Shared];

    pub fn name(self) -> &'static str {
        match self {
            Tiling::Register => "register",
            Tiling::Shared => "shared",
        }
    }

    /// Workgroup memory for hardware GPUs; registers where barriers are slow (software adapters).
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Self {
        if super::context::is_hardware(info) { Tiling::Shared } else { Tiling::Register }
    }
}

/// One matmul op: the pipeline for wide outputs with its (rows, columns) of C per workgroup, and
/// the narrow register-tiled pipeline.
pub(super) struct Matmul {
    wide: Pipeline,
    wide_outputs: (u32, u32),
    narrow: Pipeline,
}

impl Matmul {
    pub(super) fn new(maker: &mut PipelineMaker, op: MatmulOp, tiling: Tiling) -> Self {
        let (wide, wide_outputs) = match tiling {
            Tiling::Register => (shaders::matmul_register(op, RegisterTile::WIDE), RegisterTile::WIDE.outputs()),
            Tiling::Shared => {
                let tile = SharedTile::DEFAULT;
                (shaders::matmul_shared(op, tile), (tile.m, tile.n))
            }
        };
        let narrow = maker.make(shaders::matmul_register(op, RegisterTile::NARROW));
        Matmul { wide: maker.make(wide), wide_outputs, narrow }
    }

    /// The pipeline and the grid for an output of p.m x p.n.
    pub(super) fn pick(&self, p: &MatmulParams) -> (&Pipeline, [u32; 3]) {
        let (pipeline, (rows, cols)) = if p.n <= RegisterTile::NARROW_MAX_N {
            (&self.narrow, RegisterTile::NARROW.outputs())
        } else {
            (&self.wide, self.wide_outputs)
        };
        (pipeline, [p.n.div_ceil(cols), p.m.div_ceil(rows), 1])
    }
}

/// The naive one-output-per-invocation matmuls (`matmul_naive.wgsl`), which `bench --naive`
/// times against the tiled ones; training never builds them.
pub struct NaiveKernels {
    linear_forward_naive: Pipeline,
    linear_backward_weight_naive: Pipeline,
}

impl NaiveKernels {
    pub fn new(device: &wgpu::Device) -> Self {
        let mut maker = PipelineMaker::new(device);
        NaiveKernels {
            linear_forward_naive: maker.make(shaders::matmul_naive(MatmulOp::Forward)),
            linear_backward_weight_naive: maker.make(shaders::matmul_naive(MatmulOp::BackwardWeight)),
        }
    }

    fn grid(p: &MatmulParams) -> [u32; 3] {
        [p.n.div_ceil(NAIVE_SIDE), p.m.div_ceil(NAIVE_SIDE), 1]
    }

    /// The one-output-per-invocation twin of `linear_forward`.
    pub fn linear_forward_naive(
        &self,
        device: &wgpu::Device,
        p: MatmulParams,
        a: View,
        b: View,
        aux: View,
        c: View,
    ) -> Dispatch {
        Dispatch::new(device, &self.linear_forward_naive, &p, &[a, b, aux, c], Self::grid(&p))
    }

    /// The one-output-per-invocation twin of `linear_backward_weight`.
    pub fn linear_backward_weight_naive(
        &self,
        device: &wgpu::Device,
        p: MatmulParams,
        a: View,
        b: View,
        c: View,
    ) -> Dispatch {
        Dispatch::new(device, &self.linear_backward_weight_naive, &p, &[a, b, c], Self::grid(&p))
    }
}
