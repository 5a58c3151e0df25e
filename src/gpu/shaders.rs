//! The contract between the Rust side and the WGSL kernels, in one place. For every compute
//! pipeline the backend can create: its shader source, entry point, pipeline-overridable constants
//! (every size a shader depends on is set here and nowhere else), bindings with their access, and
//! the workgroup size its dispatch formula assumes; and the codes the shaders switch on. The
//! uniform structs that mirror the shaders' `Params` are in `uniforms.rs`. `tests/shaders.rs`
//! parses every shader with naga and checks it against these declarations.

use std::borrow::Cow;

use super::tiles::{MATMUL_BLOCK, RegisterTile, SharedTile, Tile};
use super::uniforms::{ColumnSumParams, MatmulParams, OptimizerParams, SoftmaxParams, SplitKParams, UniformLayout};
use crate::model::Activation;
use crate::optim::Optimizer;

pub const MATMUL_WGSL: &str = include_str!("../../shaders/matmul.wgsl");
pub const MATMUL_SHARED_WGSL: &str = include_str!("../../shaders/matmul_shared.wgsl");
pub const MATMUL_NAIVE_WGSL: &str = include_str!("../../shaders/matmul_naive.wgsl");
pub const SOFTMAX_XENT_WGSL: &str = include_str!("../../shaders/softmax_xent.wgsl");
pub const COLUMN_SUM_WGSL: &str = include_str!("../../shaders/column_sum.wgsl");
pub const OPTIMIZER_UPDATE_WGSL: &str = include_str!("../../shaders/optimizer_update.wgsl");
pub const SPLIT_K_REDUCE_WGSL: &str = include_str!("../../shaders/split_k_reduce.wgsl");

/// Invocations per workgroup of the one-dimensional kernels (softmax_xent, column_sum,
/// optimizer_update): their override `WG`. A power of two, for column_sum's tree.
pub const WORKGROUP_1D: u32 = 256;
const _: () = assert!(WORKGROUP_1D.is_power_of_two());

/// matmul_naive.wgsl's workgroup: NAIVE_SIDE x NAIVE_SIDE invocations, one output each.
pub const NAIVE_SIDE: u32 = 16;

/// Codes of the activation in the matmul uniform's `act` (matmul.wgsl's `ACT_*`).
pub const ACT_IDENTITY: u32 = 0;
pub const ACT_SIGMOID: u32 = 1;
pub const ACT_RELU: u32 = 2;
pub const ACT_ELU: u32 = 3;

/// The `act` code of a layer: its activation, or none (the output layer's logits).
pub fn activation_code(act: Option<Activation>) -> u32 {
    match act {
        None => ACT_IDENTITY,
        Some(Activation::Sigmoid) => ACT_SIGMOID,
        Some(Activation::Relu) => ACT_RELU,
        Some(Activation::Elu) => ACT_ELU,
    }
}

/// The named `const`s each shader file must declare with these values: (file, name, value).
pub const SHADER_CONSTANTS: [(&str, &str, u32); 6] = [
    ("matmul.wgsl", "BLOCK", MATMUL_BLOCK),
    ("matmul.wgsl", "ACT_IDENTITY", ACT_IDENTITY),
    ("matmul.wgsl", "ACT_SIGMOID", ACT_SIGMOID),
    ("matmul.wgsl", "ACT_RELU", ACT_RELU),
    ("matmul.wgsl", "ACT_ELU", ACT_ELU),
    ("optimizer_update.wgsl", "MOMENT_FLOOR_BITS", crate::optim::MOMENT_FLOOR_BITS),
];

/// How an entry point uses a binding of group 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Uniform,
    Read,
    ReadWrite,
}

/// One binding of group 0: its index, its variable's name in the shader, its access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    pub index: u32,
    pub name: &'static str,
    pub access: Access,
}

const fn bind(index: u32, name: &'static str, access: Access) -> Binding {
    Binding { index, name, access }
}

const MATMUL_BINDINGS: [Binding; 5] = [
    bind(0, "p", Access::Uniform),
    bind(1, "a", Access::Read),
    bind(2, "b", Access::Read),
    bind(3, "aux", Access::Read),
    bind(4, "c", Access::ReadWrite),
];
/// The naive weight gradient reads no `aux`.
const MATMUL_NAIVE_WEIGHT_BINDINGS: [Binding; 4] = [
    bind(0, "p", Access::Uniform),
    bind(1, "a", Access::Read),
    bind(2, "b", Access::Read),
    bind(4, "c", Access::ReadWrite),
];
const SOFTMAX_XENT_BINDINGS: [Binding; 4] = [
    bind(0, "p", Access::Uniform),
    bind(1, "logits", Access::Read),
    bind(2, "labels", Access::Read),
    bind(3, "out", Access::ReadWrite),
];
const SPLIT_K_REDUCE_BINDINGS: [Binding; 3] =
    [bind(0, "p", Access::Uniform), bind(1, "partial", Access::Read), bind(2, "c", Access::ReadWrite)];
const COLUMN_SUM_BINDINGS: [Binding; 3] =
    [bind(0, "p", Access::Uniform), bind(1, "m", Access::Read), bind(2, "out", Access::ReadWrite)];
/// Every rule binds the parameters and gradients; momentum and Nesterov add `m`, Adam `m` and `v`.
const OPTIMIZER_BINDINGS: [Binding; 5] = [
    bind(0, "p", Access::Uniform),
    bind(1, "param", Access::ReadWrite),
    bind(2, "grad", Access::Read),
    bind(3, "m", Access::ReadWrite),
    bind(4, "v", Access::ReadWrite),
];

/// One compute pipeline as the backend creates it.
#[derive(Clone, Debug)]
pub struct PipelineSpec {
    /// The op it computes (the entry point without a variant suffix): what reports name.
    pub op: &'static str,
    /// The WGSL entry point.
    pub entry: &'static str,
    /// The shader file, and the files appended to it, for messages.
    pub files: &'static str,
    pub source: Cow<'static, str>,
    /// Values of the pipeline-overridable constants the entry point uses.
    pub constants: Vec<(&'static str, f64)>,
    /// The bindings the entry point uses, in index order; binding 0 is the uniform.
    pub bindings: &'static [Binding],
    pub uniform: UniformLayout,
    /// What the dispatch formulas assume.
    pub workgroup_size: [u32; 3],
    /// Bytes of workgroup memory the entry point declares.
    pub workgroup_bytes: u32,
}

impl PipelineSpec {
    /// Why this pipeline cannot run on a device with `limits`, if it cannot: its workgroup's size
    /// and memory, and its bindings per stage.
    pub fn exceeds(&self, limits: &wgpu::Limits) -> Option<String> {
        let [x, y, z] = self.workgroup_size;
        let uniforms = self.bindings.iter().filter(|b| b.access == Access::Uniform).count() as u32;
        let storage = self.bindings.len() as u32 - uniforms;
        let needs = [
            ("invocations in x", x, limits.max_compute_workgroup_size_x),
            ("invocations in y", y, limits.max_compute_workgroup_size_y),
            ("invocations in z", z, limits.max_compute_workgroup_size_z),
            ("invocations per workgroup", x * y * z, limits.max_compute_invocations_per_workgroup),
            ("bytes of workgroup memory", self.workgroup_bytes, limits.max_compute_workgroup_storage_size),
            ("storage buffers", storage, limits.max_storage_buffers_per_shader_stage),
            ("uniform buffers", uniforms, limits.max_uniform_buffers_per_shader_stage),
            ("bindings in its group", self.bindings.len() as u32, limits.max_bindings_per_bind_group),
        ];
        let (what, need, most) = needs.into_iter().find(|&(_, need, most)| need > most)?;
        Some(format!("{} needs {need} {what}, more than this device's {most}", self.entry))
    }
}

/// The three products of a linear layer (matmul.wgsl's entry points).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatmulOp {
    /// `C = act(A·B + bias)`.
    Forward,
    /// `C (+)= A^T·B`.
    BackwardWeight,
    /// `C = (A·B^T) ⊙ act'(aux)`.
    BackwardInput,
}

impl MatmulOp {
    pub const ALL: [MatmulOp; 3] = [MatmulOp::Forward, MatmulOp::BackwardWeight, MatmulOp::BackwardInput];

    pub fn name(self) -> &'static str {
        match self {
            MatmulOp::Forward => "linear_forward",
            MatmulOp::BackwardWeight => "linear_backward_weight",
            MatmulOp::BackwardInput => "linear_backward_input",
        }
    }

    fn shared_entry(self) -> &'static str {
        match self {
            MatmulOp::Forward => "linear_forward_shared",
            MatmulOp::BackwardWeight => "linear_backward_weight_shared",
            MatmulOp::BackwardInput => "linear_backward_input_shared",
        }
    }
}

/// `op` under `tile`.
pub fn matmul(op: MatmulOp, tile: Tile) -> PipelineSpec {
    match tile {
        Tile::Register(t) => matmul_register(op, t),
        Tile::Shared(t) => matmul_shared(op, t),
    }
}

/// `op` register-tiled by workgroups of `tile`.
pub fn matmul_register(op: MatmulOp, tile: RegisterTile) -> PipelineSpec {
    PipelineSpec {
        op: op.name(),
        entry: op.name(),
        files: "matmul.wgsl",
        source: Cow::Borrowed(MATMUL_WGSL),
        constants: vec![("WG_X", tile.wg_x as f64), ("WG_Y", tile.wg_y as f64), ("VEC4", tile.vec4 as u8 as f64)],
        bindings: &MATMUL_BINDINGS,
        uniform: MatmulParams::LAYOUT,
        workgroup_size: [tile.wg_x, tile.wg_y, 1],
        workgroup_bytes: 0,
    }
}

/// `op` tiled through workgroup memory in tiles of `tile`.
pub fn matmul_shared(op: MatmulOp, tile: SharedTile) -> PipelineSpec {
    PipelineSpec {
        op: op.name(),
        entry: op.shared_entry(),
        files: "matmul.wgsl + matmul_shared.wgsl",
        source: Cow::Owned([MATMUL_WGSL, MATMUL_SHARED_WGSL].concat()),
        constants: vec![("TILE_M", tile.m as f64), ("TILE_N", tile.n as f64), ("TILE_K", tile.k as f64)],
        bindings: &MATMUL_BINDINGS,
        uniform: MatmulParams::LAYOUT,
        workgroup_size: tile.workgroup_size(),
        workgroup_bytes: tile.workgroup_bytes(),
    }
}

/// The naive one-output-per-invocation twin of `op` (forward or weight gradient; `bench --naive`).
pub fn matmul_naive(op: MatmulOp) -> PipelineSpec {
    let (entry, bindings): (_, &'static [Binding]) = match op {
        MatmulOp::Forward => ("linear_forward_naive", &MATMUL_BINDINGS),
        _ => ("linear_backward_weight_naive", &MATMUL_NAIVE_WEIGHT_BINDINGS),
    };
    PipelineSpec {
        op: entry,
        entry,
        files: "matmul.wgsl + matmul_naive.wgsl",
        source: Cow::Owned([MATMUL_WGSL, MATMUL_NAIVE_WGSL].concat()),
        constants: vec![("WG_X", NAIVE_SIDE as f64), ("WG_Y", NAIVE_SIDE as f64)],
        bindings,
        uniform: MatmulParams::LAYOUT,
        workgroup_size: [NAIVE_SIDE, NAIVE_SIDE, 1],
        workgroup_bytes: 0,
    }
}

fn one_dimensional(
    entry: &'static str,
    file: &'static str,
    source: &'static str,
    bindings: &'static [Binding],
    uniform: UniformLayout,
) -> PipelineSpec {
    PipelineSpec {
        op: entry,
        entry,
        files: file,
        source: Cow::Borrowed(source),
        constants: vec![("WG", WORKGROUP_1D as f64)],
        bindings,
        uniform,
        workgroup_size: [WORKGROUP_1D, 1, 1],
        workgroup_bytes: 0,
    }
}

/// `softmax_xent_forward` or `softmax_xent_backward`.
pub fn softmax_xent(forward: bool) -> PipelineSpec {
    let entry = if forward { "softmax_xent_forward" } else { "softmax_xent_backward" };
    one_dimensional(entry, "softmax_xent.wgsl", SOFTMAX_XENT_WGSL, &SOFTMAX_XENT_BINDINGS, SoftmaxParams::LAYOUT)
}

/// Column sums: its tree of partial sums lives in workgroup memory, WG floats.
pub fn column_sum() -> PipelineSpec {
    let spec = one_dimensional(
        "column_sum",
        "column_sum.wgsl",
        COLUMN_SUM_WGSL,
        &COLUMN_SUM_BINDINGS,
        ColumnSumParams::LAYOUT,
    );
    PipelineSpec { workgroup_bytes: 4 * WORKGROUP_1D, ..spec }
}

/// The second pass of a split weight gradient: the slots' sum.
pub fn split_k_reduce() -> PipelineSpec {
    let file = "split_k_reduce.wgsl";
    one_dimensional("split_k_reduce", file, SPLIT_K_REDUCE_WGSL, &SPLIT_K_REDUCE_BINDINGS, SplitKParams::LAYOUT)
}

/// The entry point of `kind`'s update rule.
pub fn optimizer_entry(kind: Optimizer) -> &'static str {
    match kind {
        Optimizer::Gd => "gd_update",
        Optimizer::Momentum => "momentum_update",
        Optimizer::Nesterov => "nesterov_update",
        Optimizer::Adam => "adam_update",
    }
}

/// `kind`'s update rule, binding only the state it keeps.
pub fn optimizer_update(kind: Optimizer) -> PipelineSpec {
    let bindings: &'static [Binding] = match kind {
        Optimizer::Gd => &OPTIMIZER_BINDINGS[..3],
        Optimizer::Momentum | Optimizer::Nesterov => &OPTIMIZER_BINDINGS[..4],
        Optimizer::Adam => &OPTIMIZER_BINDINGS,
    };
    let file = "optimizer_update.wgsl";
    one_dimensional(optimizer_entry(kind), file, OPTIMIZER_UPDATE_WGSL, bindings, OptimizerParams::LAYOUT)
}

/// Every pipeline the backend can create: each op under every candidate tile and the narrow
/// one, every update rule, the reduction of split products, the naive matmuls of `bench --naive`.
pub fn all() -> Vec<PipelineSpec> {
    let mut all = Vec::new();
    for op in MatmulOp::ALL {
        all.extend(super::tiles::tiles().into_iter().map(|t| matmul(op, t)));
        all.push(matmul_register(op, RegisterTile::NARROW));
    }
    all.extend([matmul_naive(MatmulOp::Forward), matmul_naive(MatmulOp::BackwardWeight)]);
    all.extend([softmax_xent(true), softmax_xent(false), column_sum(), split_k_reduce()]);
    all.extend(Optimizer::ALL.map(optimizer_update));
    all
}
