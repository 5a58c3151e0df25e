//! Dispatches as data, to run on another WebGPU implementation: the pipelines (WGSL, entry point,
//! override constants, binding layout), every buffer they bind with its contents when captured,
//! each dispatch's bind group (buffer, offset and size per binding, the uniform first) and grid,
//! in steps, and the byte ranges to read back after each step. tests/chromium.rs runs fixtures in
//! Chromium's WebGPU (Dawn) with tests/chromium/replay.html, which builds exactly these objects,
//! so what Dawn validates is what this backend really binds.
//!
//! Keep a step's dispatches with `GpuContext::record` (which runs none of them) and add them to a
//! `Capture`, which reads their uniforms then and every buffer at the end: as they are before any
//! of the captured work runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::context::GpuContext;
use super::dispatch::{Dispatch, View};
use super::shaders::{Access, PipelineSpec};
use crate::backend::BackendError;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Fixture {
    pub pipelines: Vec<PipelineRecord>,
    pub buffers: Vec<BufferRecord>,
    /// Each step writes its dispatches' uniforms, runs them in one compute pass, then reads its
    /// outputs.
    pub steps: Vec<StepRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepRecord {
    pub dispatches: Vec<DispatchRecord>,
    pub outputs: Vec<OutputRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PipelineRecord {
    pub entry: String,
    pub source: String,
    pub constants: BTreeMap<String, f64>,
    /// (binding index, "uniform" | "read-only-storage" | "storage"): WebGPU's buffer binding types.
    pub bindings: Vec<(u32, String)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BufferRecord {
    pub size: u64,
    /// Its bytes, base64.
    pub data: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DispatchRecord {
    pub label: String,
    pub pipeline: usize,
    /// (binding index, buffer, offset, size).
    pub bindings: Vec<(u32, usize, u64, u64)>,
    /// The uniform's bytes for this step, base64 (the Rust side may rewrite a uniform between
    /// steps, as it does Adam's step count).
    pub uniform: String,
    pub workgroups: [u32; 3],
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutputRecord {
    pub name: String,
    pub buffer: usize,
    pub offset: u64,
    pub size: u64,
}

/// The same entry point of the same source with the same constants (made by another `Kernels`).
fn same_pipeline(a: &PipelineSpec, b: &PipelineSpec) -> bool {
    a.entry == b.entry && a.source == b.source && a.constants == b.constants
}

fn binding_type(access: Access) -> &'static str {
    match access {
        Access::Uniform => "uniform",
        Access::Read => "read-only-storage",
        Access::ReadWrite => "storage",
    }
}

/// Steps being captured: their dispatches with their uniforms as they are when each step is
/// added, then every buffer's contents as they are at `finish` (nothing captured has run).
#[derive(Default)]
pub struct Capture {
    pipelines: Vec<Arc<PipelineSpec>>,
    buffers: HashMap<wgpu::Buffer, usize>,
    order: Vec<wgpu::Buffer>,
    steps: Vec<StepRecord>,
}

impl Capture {
    pub fn new() -> Self {
        Self::default()
    }

    /// A step of `dispatches` (kept by `GpuContext::record`, or built and not submitted), and
    /// `outputs` to read back after it.
    pub fn step(
        &mut self,
        ctx: &GpuContext,
        dispatches: &[Dispatch],
        outputs: &[(&str, View)],
    ) -> Result<(), BackendError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let staging = ctx.staging(dispatches.iter().map(|d| d.params.size() as usize).max().unwrap_or(4).div_ceil(4));
        let mut records = Vec::with_capacity(dispatches.len());
        for d in dispatches {
            let pipeline = match self.pipelines.iter().position(|p| same_pipeline(p, &d.spec)) {
                Some(i) => i,
                None => {
                    self.pipelines.push(d.spec.clone());
                    self.pipelines.len() - 1
                }
            };
            let mut bindings = vec![(0, self.index_of(&d.params), 0, d.params.size())];
            for ((buffer, offset, size), b) in d.views.iter().zip(&d.spec.bindings[1..]) {
                bindings.push((b.index, self.index_of(buffer), *offset, *size));
            }
            let uniform = b64.encode(ctx.read_bytes(&d.params, 0, d.params.size(), &staging)?);
            records.push(DispatchRecord {
                label: d.label.into(),
                pipeline,
                bindings,
                uniform,
                workgroups: d.workgroups,
            });
        }
        let outputs = outputs
            .iter()
            .map(|(name, v)| OutputRecord {
                name: name.to_string(),
                buffer: self.index_of(v.buffer),
                offset: v.offset,
                size: v.size,
            })
            .collect();
        self.steps.push(StepRecord { dispatches: records, outputs });
        Ok(())
    }

    fn index_of(&mut self, b: &wgpu::Buffer) -> usize {
        *self.buffers.entry(b.clone()).or_insert_with(|| {
            self.order.push(b.clone());
            self.order.len() - 1
        })
    }

    /// The fixture, with every buffer's bytes as they are now.
    pub fn finish(self, ctx: &GpuContext) -> Result<Fixture, BackendError> {
        let largest = self.order.iter().map(wgpu::Buffer::size).max().unwrap_or(4);
        let staging = ctx.staging(largest.div_ceil(4) as usize);
        let b64 = base64::engine::general_purpose::STANDARD;
        let buffers = self
            .order
            .iter()
            .map(|b| Ok(BufferRecord { size: b.size(), data: b64.encode(ctx.read_bytes(b, 0, b.size(), &staging)?) }))
            .collect::<Result<_, BackendError>>()?;
        let pipelines = self
            .pipelines
            .iter()
            .map(|p| PipelineRecord {
                entry: p.entry.into(),
                source: p.source.to_string(),
                constants: p.constants.iter().map(|&(k, v)| (k.to_string(), v)).collect(),
                bindings: p.bindings.iter().map(|b| (b.index, binding_type(b.access).to_string())).collect(),
            })
            .collect();
        Ok(Fixture { pipelines, buffers, steps: self.steps })
    }
}

/// The f32 values of a base64 string of little-endian bytes (an output read back elsewhere).
pub fn floats(b64: &str) -> Result<Vec<f32>, String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| e.to_string())?;
    if bytes.len() % 4 != 0 {
        return Err(format!("{} bytes are not whole f32 values", bytes.len()));
    }
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}
