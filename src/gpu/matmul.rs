//! Which configuration each matmul of a step runs: one tiling for every wide product, or the
//! tuner's choice per product; outputs at most 16 wide (the 10 classes) always take the narrow
//! register tile. And the naive one-output-per-invocation twins, for `bench --naive`.

use std::collections::HashMap;

use super::dispatch::{Dispatch, Pipeline, PipelineMaker, View};
use super::shaders::{self, MatmulOp, NAIVE_SIDE};
use super::tiles::{MatmulConfig, RegisterTile, SharedTile, Tile};
use super::uniforms::MatmulParams;

/// How the wide products are tiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tiling {
    /// Each product as the tuner measured fastest on this adapter (cached per adapter).
    Auto,
    /// `matmul.wgsl`: 8 x 8 outputs per invocation in registers, no barriers.
    Register,
    /// `matmul_shared.wgsl`: 64 x 64 tiles staged through workgroup memory.
    Shared,
}

impl Tiling {
    pub const ALL: [Tiling; 3] = [Tiling::Auto, Tiling::Register, Tiling::Shared];

    pub fn name(self) -> &'static str {
        match self {
            Tiling::Auto => "auto",
            Tiling::Register => "register",
            Tiling::Shared => "shared",
        }
    }

    /// Without measurements: workgroup memory for hardware GPUs, registers where barriers are
    /// slow (software adapters).
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Self {
        if super::context::is_hardware(info) { Tiling::Shared } else { Tiling::Register }
    }
}

/// A product of a step, by what decides its configuration: the op, whether A is packed pixels,
/// the output's width N and the other dimension that is not a count of rows (K for the forward
/// pass and the input gradient, M for the weight gradient, whose K is the rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProductKey {
    pub op: MatmulOp,
    pub a_u8: bool,
    pub n: u32,
    pub other: u32,
}

impl ProductKey {
    pub fn of(op: MatmulOp, p: &MatmulParams) -> Self {
        let other = if op == MatmulOp::BackwardWeight { p.m } else { p.k };
        ProductKey { op, a_u8: p.a_u8 == 1, n: p.n, other }
    }
}

/// The configuration of every product.
#[derive(Clone, Debug, PartialEq)]
pub struct Tiles {
    /// For a product the tuner did not see (or every product of a fixed tiling).
    pub default: MatmulConfig,
    pub chosen: HashMap<ProductKey, MatmulConfig>,
}

impl Tiles {
    /// One tiling for every wide product, K never split.
    pub fn fixed(tiling: Tiling) -> Self {
        let tile = match tiling {
            Tiling::Shared => Tile::Shared(SharedTile::DEFAULT),
            Tiling::Register | Tiling::Auto => Tile::Register(RegisterTile::WIDE),
        };
        Tiles { default: MatmulConfig::new(tile), chosen: HashMap::new() }
    }

    /// Every configuration a product may run in: the default, the chosen ones, the narrow tile.
    pub fn configs(&self) -> impl Iterator<Item = MatmulConfig> + '_ {
        let narrow = MatmulConfig::new(Tile::Register(RegisterTile::NARROW));
        [self.default, narrow].into_iter().chain(self.chosen.values().copied())
    }

    /// The configuration of `op` over `p`'s shapes.
    pub fn choose(&self, op: MatmulOp, p: &MatmulParams) -> MatmulConfig {
        if p.n <= RegisterTile::NARROW_MAX_N {
            return MatmulConfig::new(Tile::Register(RegisterTile::NARROW));
        }
        let config = self.chosen.get(&ProductKey::of(op, p)).copied().unwrap_or(self.default);
        match op {
            MatmulOp::BackwardWeight => config,
            _ => MatmulConfig { split: 1, ..config },
        }
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
