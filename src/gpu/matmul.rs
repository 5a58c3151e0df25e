//! The matmul family: its uniform struct, the two tilings and their tile shapes, pipeline
//! choice per output width, and the naive one-output-per-invocation twins (for `bench --naive`).

use bytemuck::{Pod, Zeroable};

use super::kernels::{Dispatch, Kernels, View, pipelines, pipelines_with, unused_binding};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub lda: u32,
    pub ldb: u32,
    pub a_u8: u32,
    pub bias: u32,
    pub act: u32,
    pub accumulate: u32,
    /// Row of binding `a` where A's first stored row lies.
    pub a_row0: u32,
    pub _pad: [u32; 2],
}

/// Invocations of `matmul.wgsl` compute 8 x 8 outputs. Wide workgroups are 16 x 2 invocations
/// (16 rows x 128 columns of C); narrow ones, for outputs at most `NARROW_N` wide, 2 x 16.
const MATMUL_BLOCK: u32 = 8;
const WIDE: (u32, u32) = (16, 2);
const NARROW: (u32, u32) = (2, 16);
const NARROW_N: u32 = 16;
/// Rows x columns of C per workgroup in `matmul_shared.wgsl` (16 x 16 invocations of 4 x 4).
const SHARED_TILE: (u32, u32) = (64, 64);

/// How the matmuls with wide outputs are tiled (outputs at most `NARROW_N` wide always use the
/// narrow register tile).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Tiling {
    /// `matmul.wgsl`: 8 x 8 outputs per invocation in registers, no barriers (software adapters).
    Register,
    /// `matmul_shared.wgsl`: 64 x 64 tiles staged through workgroup memory (hardware GPUs).
    Shared,
}

impl Tiling {
    /// Workgroup memory for hardware GPUs; registers where barriers are slow (software adapters).
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Self {
        if super::context::is_hardware(info) { Tiling::Shared } else { Tiling::Register }
    }
}

/// A matmul op: the pipeline for wide outputs and its tile (rows, columns of C per workgroup),
/// and the narrow register-tiled pipeline.
pub(super) struct Matmul {
    wide: wgpu::ComputePipeline,
    wide_tile: (u32, u32),
    narrow: wgpu::ComputePipeline,
}

impl Matmul {
    /// linear_forward, linear_backward_weight and linear_backward_input for `tiling`.
    pub(super) fn ops(device: &wgpu::Device, tiling: Tiling) -> [Matmul; 3] {
        const MATMUL: &str = include_str!("../../shaders/matmul.wgsl");
        let storage = [true, true, true, false];
        let entries = ["linear_forward", "linear_backward_weight", "linear_backward_input"];
        let shaped = |(x, y): (u32, u32)| {
            pipelines_with(device, MATMUL, &storage, entries, &[("WG_X", x as f64), ("WG_Y", y as f64)])
        };
        let ([fw, bw, bi], wide_tile) = match tiling {
            Tiling::Register => (shaped(WIDE), (MATMUL_BLOCK * WIDE.1, MATMUL_BLOCK * WIDE.0)),
            Tiling::Shared => {
                let source = [MATMUL, include_str!("../../shaders/matmul_shared.wgsl")].concat();
                let shared = entries.map(|e| format!("{e}_shared"));
                (pipelines(device, &source, &storage, shared.each_ref().map(|e| e.as_str())), SHARED_TILE)
            }
        };
        let [fn_, bn, bin] = shaped(NARROW);
        [
            Matmul { wide: fw, wide_tile, narrow: fn_ },
            Matmul { wide: bw, wide_tile, narrow: bn },
            Matmul { wide: bi, wide_tile, narrow: bin },
        ]
    }

    /// The pipeline and the grid for an output of p.m x p.n.
    pub(super) fn pick(&self, p: &MatmulParams) -> (&wgpu::ComputePipeline, [u32; 3]) {
        let (pipeline, (rows, cols)) = if p.n <= NARROW_N {
            (&self.narrow, (MATMUL_BLOCK * NARROW.1, MATMUL_BLOCK * NARROW.0))
        } else {
            (&self.wide, self.wide_tile)
        };
        (pipeline, [p.n.div_ceil(cols), p.m.div_ceil(rows), 1])
    }
}

/// The naive one-output-per-invocation matmuls (`matmul_naive.wgsl`), which `bench --naive`
/// times against the tiled ones; training never builds them.
pub struct NaiveKernels {
    linear_forward_naive: wgpu::ComputePipeline,
    linear_backward_weight_naive: wgpu::ComputePipeline,
    dummy: wgpu::Buffer,
}

impl NaiveKernels {
    pub fn new(device: &wgpu::Device) -> Self {
        let source =
            [include_str!("../../shaders/matmul.wgsl"), include_str!("../../shaders/matmul_naive.wgsl")].concat();
        let entries = ["linear_forward_naive", "linear_backward_weight_naive"];
        let [linear_forward_naive, linear_backward_weight_naive] =
            pipelines(device, &source, &[true, true, true, false], entries);
        let dummy = unused_binding(device);
        NaiveKernels { linear_forward_naive, linear_backward_weight_naive, dummy }
    }

    fn dummy(&self) -> View<'_> {
        View::all(&self.dummy)
    }

    /// The one-output-per-invocation twin of `linear_forward` (for `bench --naive`).
    pub fn linear_forward_naive(
        &self,
        device: &wgpu::Device,
        p: MatmulParams,
        a: View,
        b: View,
        aux: View,
        c: View,
    ) -> Dispatch {
        let grid = [p.n.div_ceil(16), p.m.div_ceil(16), 1];
        Kernels::build(device, "linear_forward_naive", &self.linear_forward_naive, &p, &[a, b, aux, c], grid)
    }

    /// The one-output-per-invocation twin of `linear_backward_weight` (for `bench --naive`).
    pub fn linear_backward_weight_naive(
        &self,
        device: &wgpu::Device,
        p: MatmulParams,
        a: View,
        b: View,
        c: View,
    ) -> Dispatch {
        let grid = [p.n.div_ceil(16), p.m.div_ceil(16), 1];
        let views = [a, b, self.dummy(), c];
        Kernels::build(device, "linear_backward_weight_naive", &self.linear_backward_weight_naive, &p, &views, grid)
    }
}
