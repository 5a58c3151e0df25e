//! The compute pipelines, created once, and builders for ready-to-record dispatches. Each op has
//! a wrapper named after its WGSL entry point (the workgroup-memory variants `*_shared` are
//! dispatched by the same wrappers, see `Tiling`); sizes travel in `#[repr(C)]` uniform structs
//! that mirror the shaders' `Params`.

use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

/// A dispatch with everything bound: recording it is `set_pipeline`, `set_bind_group`, `dispatch`.
/// Built once, recorded every iteration. `params` is its uniform buffer (rewritable, e.g. the lr).
#[derive(Clone)]
pub struct Dispatch {
    /// The op: its WGSL entry point (without the `_shared` suffix of the workgroup-memory tiling).
    pub label: &'static str,
    /// Which layer a linear-layer dispatch belongs to (1 or 2); 0 for the others.
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
    pub _pad: [u32; 3],
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
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct SgdParams {
    pub count: u32,
    pub lr: f32,
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
const WORKGROUP_1D: u32 = 256;

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
struct Matmul {
    wide: wgpu::ComputePipeline,
    wide_tile: (u32, u32),
    narrow: wgpu::ComputePipeline,
}

impl Matmul {
    /// The pipeline and the grid for an output of p.m x p.n.
    fn pick(&self, p: &MatmulParams) -> (&wgpu::ComputePipeline, [u32; 3]) {
        let (pipeline, (rows, cols)) = if p.n <= NARROW_N {
            (&self.narrow, (MATMUL_BLOCK * NARROW.1, MATMUL_BLOCK * NARROW.0))
        } else {
            (&self.wide, self.wide_tile)
        };
        (pipeline, [p.n.div_ceil(cols), p.m.div_ceil(rows), 1])
    }
}

pub struct Kernels {
    tiling: Tiling,
    linear_forward: Matmul,
    linear_backward_weight: Matmul,
    linear_backward_input: Matmul,
    softmax_xent_forward: wgpu::ComputePipeline,
    softmax_xent_backward: wgpu::ComputePipeline,
    column_sum: wgpu::ComputePipeline,
    sgd_update: wgpu::ComputePipeline,
    /// Bound where a kernel's binding is unused.
    dummy: wgpu::Buffer,
}

/// Binding 0 is the uniform; then storage buffers, `true` = read-only.
fn layout(device: &wgpu::Device, storage: &[bool]) -> wgpu::BindGroupLayout {
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

fn pipelines<const N: usize>(
    device: &wgpu::Device,
    source: &str,
    storage: &[bool],
    entries: [&str; N],
) -> [wgpu::ComputePipeline; N] {
    pipelines_with(device, source, storage, entries, &[])
}

/// Pipelines for `entries` with the given pipeline-overridable constants.
fn pipelines_with<const N: usize>(
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
        let linear_forward = Matmul { wide: fw, wide_tile, narrow: fn_ };
        let linear_backward_weight = Matmul { wide: bw, wide_tile, narrow: bn };
        let linear_backward_input = Matmul { wide: bi, wide_tile, narrow: bin };
        let [softmax_xent_forward, softmax_xent_backward] = pipelines(
            device,
            include_str!("../../shaders/softmax_xent.wgsl"),
            &[true, true, false],
            ["softmax_xent_forward", "softmax_xent_backward"],
        );
        let [column_sum] =
            pipelines(device, include_str!("../../shaders/column_sum.wgsl"), &[true, false], ["column_sum"]);
        let [sgd_update] =
            pipelines(device, include_str!("../../shaders/sgd_update.wgsl"), &[false, true], ["sgd_update"]);
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unused binding"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Kernels {
            tiling,
            linear_forward,
            linear_backward_weight,
            linear_backward_input,
            softmax_xent_forward,
            softmax_xent_backward,
            column_sum,
            sgd_update,
            dummy,
        }
    }

    pub fn tiling(&self) -> Tiling {
        self.tiling
    }

    pub fn dummy(&self) -> View<'_> {
        View::all(&self.dummy)
    }

    fn build<P: Pod>(
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

    pub fn sgd_update(&self, device: &wgpu::Device, p: SgdParams, param: View, grad: View) -> Dispatch {
        let groups = p.count.div_ceil(WORKGROUP_1D);
        let x = groups.clamp(1, 65535);
        Self::build(device, "sgd_update", &self.sgd_update, &p, &[param, grad], [x, groups.div_ceil(x).max(1), 1])
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
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unused binding"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
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
