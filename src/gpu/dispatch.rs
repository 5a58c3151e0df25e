//! Pipelines made from their `PipelineSpec`s, and dispatches: a pipeline with its bind group and
//! grid, built once and recorded every step.

use std::collections::HashMap;
use std::sync::Arc;

use bytemuck::Pod;
use wgpu::util::DeviceExt;

use super::shaders::{Access, PipelineSpec};

/// Buffers and the views bound to them cover whole 16-byte quads: matmul.wgsl reads its operands
/// as arrays of vec4, which see only whole quads of a binding.
pub const QUAD_BYTES: u64 = 16;

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

    /// `size` bytes at `offset`, rounded up to whole quads but never past the buffer's end (the
    /// operands' views start on a quad, and buffers are whole quads, so theirs stay whole).
    pub fn bytes(buffer: &'a wgpu::Buffer, offset: u64, size: u64) -> Self {
        View { buffer, offset, size: size.max(1).next_multiple_of(QUAD_BYTES).min(buffer.size() - offset) }
    }

    /// `count` f32 starting at element `first`.
    pub fn floats(buffer: &'a wgpu::Buffer, first: usize, count: usize) -> Self {
        View::bytes(buffer, (first * 4) as u64, (count * 4) as u64)
    }

    fn entry(self, index: u32) -> wgpu::BindGroupEntry<'a> {
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

/// A pipeline and what its bind groups must hold.
#[derive(Clone)]
pub struct Pipeline {
    pub spec: Arc<PipelineSpec>,
    pipeline: wgpu::ComputePipeline,
}

/// Makes pipelines, compiling each shader source once.
pub struct PipelineMaker {
    device: wgpu::Device,
    modules: HashMap<String, wgpu::ShaderModule>,
}

impl PipelineMaker {
    pub fn new(device: &wgpu::Device) -> Self {
        PipelineMaker { device: device.clone(), modules: HashMap::new() }
    }

    /// The pipeline of `spec`, its layout holding exactly the spec's bindings.
    pub fn make(&mut self, spec: PipelineSpec) -> Pipeline {
        let device = &self.device;
        let module = self.modules.entry(spec.source.to_string()).or_insert_with(|| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(spec.files),
                source: wgpu::ShaderSource::Wgsl(spec.source.clone()),
            })
        });
        let entries: Vec<wgpu::BindGroupLayoutEntry> = spec
            .bindings
            .iter()
            .map(|b| wgpu::BindGroupLayoutEntry {
                binding: b.index,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match b.access {
                        Access::Uniform => wgpu::BufferBindingType::Uniform,
                        Access::Read => wgpu::BufferBindingType::Storage { read_only: true },
                        Access::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: None, entries: &entries });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: None,
            bind_group_layouts: &[Some(&bgl)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(spec.entry),
            layout: Some(&layout),
            module,
            entry_point: Some(spec.entry),
            compilation_options: wgpu::PipelineCompilationOptions { constants: &spec.constants, ..Default::default() },
            cache: None,
        });
        Pipeline { spec: Arc::new(spec), pipeline }
    }
}

/// A dispatch with everything bound: recording it is `set_pipeline`, `set_bind_group`, `dispatch`.
/// Built once, recorded every iteration. `params` is its uniform buffer (rewritable, e.g. the lr).
#[derive(Clone)]
pub struct Dispatch {
    /// The op it computes (the entry point without a variant suffix).
    pub label: &'static str,
    /// Which layer a layer's dispatch belongs to (1 for the first, up to the output layer); 0 for
    /// the others.
    pub layer: u8,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
    pub params: wgpu::Buffer,
    /// What it runs and binds, for a replay elsewhere (`replay.rs`).
    pub spec: Arc<PipelineSpec>,
    /// The storage bindings' (buffer, offset, size), in binding order after the uniform.
    pub views: Vec<(wgpu::Buffer, u64, u64)>,
}

impl Dispatch {
    /// `pipeline` over `grid` workgroups, with `params` as its uniform and `views` bound to its
    /// storage bindings in index order.
    pub fn new<P: Pod>(
        device: &wgpu::Device,
        pipeline: &Pipeline,
        params: &P,
        views: &[View<'_>],
        grid: [u32; 3],
    ) -> Self {
        let spec = &pipeline.spec;
        assert_eq!(views.len() + 1, spec.bindings.len(), "{}: one view per storage binding", spec.entry);
        assert_eq!(size_of::<P>(), spec.uniform.size, "{}: the uniform is a {}", spec.entry, spec.uniform.name);
        if let Some(why) = aliasing(views, &spec.bindings[1..]) {
            panic!("{}: {why}; WebGPU refuses a writable binding that overlaps another", spec.entry);
        }
        let params_buf = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(spec.op),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        });
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: params_buf.as_entire_binding() }];
        entries.extend(views.iter().zip(&spec.bindings[1..]).map(|(v, b)| v.entry(b.index)));
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(spec.op),
            layout: &pipeline.pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let views = views.iter().map(|v| (v.buffer.clone(), v.offset, v.size)).collect();
        Dispatch {
            label: spec.op,
            layer: 0,
            pipeline: pipeline.pipeline.clone(),
            bind_group,
            workgroups: grid,
            params: params_buf,
            spec: spec.clone(),
            views,
        }
    }

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

/// Two of `views` (bound to `bindings`) on overlapping bytes of one buffer, one of them writable:
/// which, if any (every implementation but wgpu-native's refuses them).
fn aliasing(views: &[View], bindings: &[super::shaders::Binding]) -> Option<String> {
    for (i, (a, ba)) in views.iter().zip(bindings).enumerate() {
        for (b, bb) in views.iter().zip(bindings).skip(i + 1) {
            let writable = ba.access == Access::ReadWrite || bb.access == Access::ReadWrite;
            let overlap = a.offset < b.offset + b.size && b.offset < a.offset + a.size;
            if writable && a.buffer == b.buffer && overlap {
                return Some(format!("bindings {} ({}) and {} ({}) overlap", ba.index, ba.name, bb.index, bb.name));
            }
        }
    }
    None
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

/// A small buffer to bind where a kernel's binding is unused (bindings cannot be left empty);
/// only ever bound read-only, so it never aliases a writable binding.
pub fn unused_binding(device: &wgpu::Device) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("unused binding"),
        size: 16,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// Workgroups for `count` elements of a one-dimensional kernel, `per_group` each: x up to 65535,
/// the rest in y (the kernel folds y back in: element = x + y · per_group · groups in x).
pub fn grid_1d(count: u32, per_group: u32) -> [u32; 3] {
    let groups = count.div_ceil(per_group);
    let x = groups.clamp(1, 65535);
    [x, groups.div_ceil(x).max(1), 1]
}
