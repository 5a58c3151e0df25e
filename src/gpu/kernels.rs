//! The compute pipelines, created once, and builders for ready-to-record dispatches. Each op has
//! a wrapper named after its WGSL entry point (the workgroup-memory variants `*_shared` are
//! dispatched by the same wrappers, see `Tiling`); sizes travel in `#[repr(C)]` uniform structs
//! that mirror the shaders' `Params`.

use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

use super::matmul::Matmul;
pub use super::matmul::{MatmulParams, NaiveKernels, Tiling};
use crate::optim::Optimizer;

/// A dispatch with everything bound: recording it is `set_pipeline`, `set_bind_group`, `dispatch`.
/// Built once, recorded every iteration. `params` is its uniform buffer (rewritable, e.g. the lr).
#[derive(Clone)]
pub struct Dispatch {
    /// The op: its WGSL entry point (without the `_shared` suffix of the workgroup-memory tiling).
    pub label: &'static str,
    /// Which layer a layer's dispatch belongs to (1 for the first, up to the output layer); 0 for
    /// the others.
    pub layer: u8,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    pub params: wgpu::Buffer,
}

impl Dispatch {
    pub fn on_layer(mut self, layer: u8) -> Self {
        self.layer = layer;
        self
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.workgroups[0], self.workgroups[1], self.workgroups[2]);
    }
}

/// Records `dispatches` into one compute pass of one command buffer and submits it (no wait).
pub fn submit(device: &wgpu::Device, queue: &wgpu::Queue, dispatches: &[&Dispatch]) {
    let mut enc = device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
        for d in dispatches {
            d.record(&mut pass);
        }
    }
    queue.submit([enc.finish()]);
}

/// A byte range of a buffer, as bound to one binding.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
}

impl<'a> View<'a> {
    pub fn all(buffer: &'a wgpu::Buffer) -> Self {
        View { buffer, offset: 0, size: buffer.size() }
    }
    /// `count` f32 starting at element `first`.
    pub fn floats(buffer: &'a wgpu::Buffer, first: usize, count: usize) -> Self {
        View { buffer, offset: (first * 4) as u64, size: (count.max(1) * 4) as u64 }
    }
    fn binding(self, index: u32) -> wgpu::BindGroupEntry<'a> {
        wgpu::BindGroupEntry {
            binding: index,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: self.buffer,
                offset: self.offset,
                size: std::num::NonZeroU64::new(self.size),
            }),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct SoftmaxParams {
    pub n: u32,
    pub k: u32,
    pub row_offset: u32,
    pub scale: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ColumnSumParams {
    pub rows: u32,
    pub cols: u32,
    pub accumulate: u32,
    /// The first row summed.
    pub first_row: u32,
}

/// Mirrors `Params` of `shaders/optimizer_update.wgsl`: the rule's hyper-parameters, this step's
/// lr and Adam bias corrections `c1`, `c2`, and where the weights end in the flat parameter
/// buffer (every weight lies in `[0, weights_end)`, the biases after it: only weights decay).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct OptimizerParams {
    pub count: u32,
    pub lr: f32,
    pub momentum: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub c1: f32,
    pub c2: f32,
    pub weights_end: u32,
    pub _pad: [u32; 2],
}

/// Workgroup size of the one-dimensional kernels (softmax_xent, optimizer_update).
const WORKGROUP_1D: u32 = 256;

pub struct Kernels {
    tiling: Tiling,
    linear_forward: Matmul,
    linear_backward_weight: Matmul,
    linear_backward_input: Matmul,
    softmax_xent_forward: wgpu::ComputePipeline,
    softmax_xent_backward: wgpu::ComputePipeline,
    column_sum: wgpu::ComputePipeline,
    /// `gd_update`, `momentum_update`, `nesterov_update`, `adam_update`, by `Optimizer` order.
    optimizer_update: [wgpu::ComputePipeline; 4],
    /// Bound where a kernel's binding is unused.
    dummy: wgpu::Buffer,
}

/// A small buffer to bind where a kernel's binding is unused (bindings cannot be left empty).
pub(super) fn unused_binding(device: &wgpu::Device) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("unused binding"),
        size: 16,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    })
}

/// Binding 0 is the uniform; then storage buffers, `true` = read-only.
pub(super) fn layout(device: &wgpu::Device, storage: &[bool]) -> wgpu::BindGroupLayout {
    let mut entries = vec![wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }];
    for (i, &read_only) in storage.iter().enumerate() {
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: i as u32 + 1,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        });
    }
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: None, entries: &entries })
}

pub(super) fn pipelines<const N: usize>(
    device: &wgpu::Device,
    source: &str,
    storage: &[bool],
    entries: [&str; N],
) -> [wgpu::ComputePipeline; N] {
    pipelines_with(device, source, storage, entries, &[])
}

/// Pipelines for `entries` with the given pipeline-overridable constants.
pub(super) fn pipelines_with<const N: usize>(
    device: &wgpu::Device,
    source: &str,
    storage: &[bool],
    entries: [&str; N],
    constants: &[(&str, f64)],
) -> [wgpu::ComputePipeline; N] {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let bgl = layout(device, storage);
    let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: None,
        bind_group_layouts: &[Some(&bgl)],
        immediate_size: 0,
    });
    entries.map(|entry| {
        device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&pl),
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions { constants, ..Default::default() },
            cache: None,
        })
    })
}

impl Kernels {
    pub fn new(device: &wgpu::Device, tiling: Tiling) -> Self {
        let [linear_forward, linear_backward_weight, linear_backward_input] = Matmul::ops(device, tiling);
        let [softmax_xent_forward, softmax_xent_backward] = pipelines(
            device,
            include_str!("../../shaders/softmax_xent.wgsl"),
            &[true, true, false],
            ["softmax_xent_forward", "softmax_xent_backward"],
        );
        let [column_sum] =
            pipelines(device, include_str!("../../shaders/column_sum.wgsl"), &[true, false], ["column_sum"]);
        let optimizer_update = pipelines(
            device,
            include_str!("../../shaders/optimizer_update.wgsl"),
            &[false, true, false, false],
            OPTIMIZER_ENTRIES,
        );
        let dummy = unused_binding(device);
        Kernels {
            tiling,
            linear_forward,
            linear_backward_weight,
            linear_backward_input,
            softmax_xent_forward,
            softmax_xent_backward,
            column_sum,
            optimizer_update,
            dummy,
        }
    }

    pub fn tiling(&self) -> Tiling {
        self.tiling
    }

    pub fn dummy(&self) -> View<'_> {
        View::all(&self.dummy)
    }

    pub(super) fn build<P: Pod>(
        device: &wgpu::Device,
        label: &'static str,
        pipeline: &wgpu::ComputePipeline,
        params: &P,
        views: &[View<'_>],
        workgroups: [u32; 3],
    ) -> Dispatch {
        let params_buf = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        });
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: params_buf.as_entire_binding() }];
        entries.extend(views.iter().enumerate().map(|(i, v)| v.binding(i as u32 + 1)));
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Dispatch { label, layer: 0, pipeline: pipeline.clone(), bind_group, workgroups, params: params_buf }
    }

    /// `c = act(op(a)·b + bias)`; `aux` is the bias (or `dummy()` when `p.bias == 0`).
    pub fn linear_forward(
        &self,
        device: &wgpu::Device,
        p: MatmulParams,
        a: View,
        b: View,
        aux: View,
        c: View,
    ) -> Dispatch {
        let (pipeline, grid) = self.linear_forward.pick(&p);
        Self::build(device, "linear_forward", pipeline, &p, &[a, b, aux, c], grid)
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
        Self::build(device, "linear_backward_weight", pipeline, &p, &[a, b, self.dummy(), c], grid)
    }

    /// `c = (a · b^T) ⊙ act'(aux)` (b stored n x k; aux = the activations, m x n).
    pub fn linear_backward_input(
        &self,
        device: &wgpu::Device,
        p: MatmulParams,
        a: View,
        b: View,
        aux: View,
        c: View,
    ) -> Dispatch {
        let (pipeline, grid) = self.linear_backward_input.pick(&p);
        Self::build(device, "linear_backward_input", pipeline, &p, &[a, b, aux, c], grid)
    }

    pub fn softmax_xent_forward(
        &self,
        device: &wgpu::Device,
        p: SoftmaxParams,
        logits: View,
        labels: View,
        stats: View,
    ) -> Dispatch {
        let grid = [p.n.div_ceil(WORKGROUP_1D), 1, 1];
        Self::build(device, "softmax_xent_forward", &self.softmax_xent_forward, &p, &[logits, labels, stats], grid)
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
        Self::build(device, "softmax_xent_backward", &self.softmax_xent_backward, &p, &[logits, labels, dlogits], grid)
    }

    pub fn column_sum(&self, device: &wgpu::Device, p: ColumnSumParams, m: View, out: View) -> Dispatch {
        Self::build(device, "column_sum", &self.column_sum, &p, &[m, out], [p.cols, 1, 1])
    }

    /// One step of `kind`'s rule (entry point `OPTIMIZER_ENTRIES[kind]`); `m` and `v` are the
    /// moments, or `dummy()` for a rule that keeps none.
    #[allow(clippy::too_many_arguments)]
    pub fn optimizer_update(
        &self,
        device: &wgpu::Device,
        kind: Optimizer,
        p: OptimizerParams,
        param: View,
        grad: View,
        m: View,
        v: View,
    ) -> Dispatch {
        let k = kind.shader_code() as usize;
        Self::build(device, OPTIMIZER_ENTRIES[k], &self.optimizer_update[k], &p, &[param, grad, m, v], grid_1d(p.count))
    }
}

/// The entry points of `shaders/optimizer_update.wgsl`, indexed by `Optimizer::shader_code`.
pub const OPTIMIZER_ENTRIES: [&str; 4] = ["gd_update", "momentum_update", "nesterov_update", "adam_update"];

/// Workgroups for `count` elements, 256 each: x up to 65535, the rest in y.
fn grid_1d(count: u32) -> [u32; 3] {
    let groups = count.div_ceil(WORKGROUP_1D);
    let x = groups.clamp(1, 65535);
    [x, groups.div_ceil(x).max(1), 1]
}
