//! Finding an adapter, opening the device with the adapter's limits or WebGPU's defaults, reading buffers back,
//! and turning wgpu's asynchronous errors into `BackendError`s instead of panics.

use std::sync::{Arc, Mutex};

use super::dispatch::{self, Dispatch, QUAD_BYTES};
use crate::backend::BackendError;

/// Set this variable (to anything but "0") to make wgpu's adapters invisible to this program:
/// the way to test the no-GPU paths on a machine that has one.
pub const HIDE_ADAPTERS_ENV: &str = "GPU_MNIST_HIDE_ADAPTERS";

/// All adapters wgpu can see (any backend the build supports, or `WGPU_BACKEND` if set).
pub fn adapters() -> Vec<wgpu::Adapter> {
    if std::env::var(HIDE_ADAPTERS_ENV).is_ok_and(|v| v != "0") {
        return Vec::new();
    }
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
    let mut list = pollster::block_on(instance.enumerate_adapters(backends));
    list.sort_by_key(|a| rank(&a.get_info()));
    list
}

/// Lower is better: hardware before software, Vulkan/Metal/DX12 before GL.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let api = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (kind, api)
}

/// True for adapters that run on a real GPU (not a software rasteriser such as llvmpipe).
pub fn is_hardware(info: &wgpu::AdapterInfo) -> bool {
    !matches!(info.device_type, wgpu::DeviceType::Cpu)
}

/// One line per adapter: "NAME (TYPE, API)".
pub fn describe(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {:?})", info.name, info.device_type, info.backend)
}

/// The adapter to use: the best one whose name contains `name` (case-insensitive) if given,
/// whatever its kind; else the best one, skipping software adapters with `hardware_only`.
pub fn select(name: Option<&str>, hardware_only: bool) -> Result<wgpu::Adapter, BackendError> {
    let all = adapters();
    let seen = if all.is_empty() {
        "none".to_string()
    } else {
        all.iter().map(|a| describe(&a.get_info())).collect::<Vec<_>>().join("; ")
    };
    let found = match name.map(str::to_lowercase) {
        Some(wanted) => all.into_iter().find(|a| a.get_info().name.to_lowercase().contains(&wanted)),
        None => all.into_iter().find(|a| !hardware_only || is_hardware(&a.get_info())),
    };
    found.ok_or_else(|| match name {
        Some(n) => BackendError::NoAdapterNamed { name: n.to_string(), seen },
        None => {
            let what = if hardware_only { "no hardware GPU adapter" } else { "no GPU adapter" };
            BackendError::NoAdapter { what: what.to_string(), seen }
        }
    })
}

/// The limits a device is opened with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceLimits {
    /// Everything the adapter offers.
    #[default]
    Adapter,
    /// WebGPU's defaults (`wgpu::Limits::default()`), what every conforming implementation and
    /// every browser grants: 128 MiB per storage binding, 256 MiB buffers, 8 storage buffers per
    /// stage, 256 invocations and 16 KiB of memory per workgroup.
    WebGpu,
}

impl DeviceLimits {
    pub fn name(self) -> &'static str {
        match self {
            DeviceLimits::Adapter => "adapter",
            DeviceLimits::WebGpu => "webgpu",
        }
    }

    /// The limits to ask `adapter` for, or which of them it lacks.
    fn request(self, info: &wgpu::AdapterInfo, offered: wgpu::Limits) -> Result<wgpu::Limits, BackendError> {
        let wanted = match self {
            DeviceLimits::Adapter => return Ok(offered),
            DeviceLimits::WebGpu => wgpu::Limits::default(),
        };
        let mut short = Vec::new();
        wanted.check_limits_with_fail_fn(&offered, false, |name, want, have| {
            short.push(format!("{name} {have} (WebGPU's default: {want})"))
        });
        if short.is_empty() {
            return Ok(wanted);
        }
        Err(BackendError::Unsupported(format!(
            "{} offers less than WebGPU's default limits: {}; use --limits adapter",
            describe(info),
            short.join(", ")
        )))
    }
}

/// An open device with its queue and a sink for errors wgpu reports asynchronously.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    errors: Arc<Mutex<Vec<String>>>,
    /// While `record` runs: the dispatches `submit` was given, which it then does not submit.
    recording: Mutex<Option<Vec<Dispatch>>>,
}

impl GpuContext {
    pub fn new(adapter: &wgpu::Adapter, limits: DeviceLimits) -> Result<Self, BackendError> {
        let info = adapter.get_info();
        let limits = limits.request(&info, adapter.limits())?;
        let desc = wgpu::DeviceDescriptor {
            label: Some("gpu-mnist"),
            // Timestamps let `bench` time each kernel on the device; nothing else needs a feature.
            required_features: adapter.features() & wgpu::Features::TIMESTAMP_QUERY,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| BackendError::Gpu(format!("cannot open {}: {e}", describe(&info))))?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut list) = sink.lock() {
                list.push(e.to_string());
            }
        }));
        let sink = errors.clone();
        device.set_device_lost_callback(move |reason, message| {
            // Dropping the device at exit reports `Destroyed`; only an unexpected loss is an error.
            if reason != wgpu::DeviceLostReason::Destroyed
                && let Ok(mut list) = sink.lock()
            {
                list.push(format!("the GPU device was lost ({reason:?}): {message}"));
            }
        });
        Ok(GpuContext { device, queue, info, limits, errors, recording: Mutex::new(None) })
    }

    /// Opens the adapter `select` picks, with `limits`.
    pub fn open(name: Option<&str>, hardware_only: bool, limits: DeviceLimits) -> Result<Self, BackendError> {
        Self::new(&select(name, hardware_only)?, limits)
    }

    /// Records `dispatches` into one compute pass of one command buffer and submits it (no wait);
    /// while `record` runs, keeps them instead.
    pub fn submit(&self, dispatches: &[&Dispatch]) {
        if let Ok(mut recording) = self.recording.lock()
            && let Some(kept) = recording.as_mut()
        {
            kept.extend(dispatches.iter().map(|&d| d.clone()));
            return;
        }
        dispatch::submit(&self.device, &self.queue, dispatches);
    }

    /// Runs `f` and returns what it submitted, in order, without running any of it: the device's
    /// buffers stay as they were (writes with `write_buffer` still land), so the dispatches can
    /// be replayed elsewhere from here (`replay.rs`).
    pub fn record<R>(&self, f: impl FnOnce() -> R) -> (R, Vec<Dispatch>) {
        let set = |to: Option<Vec<Dispatch>>| self.recording.lock().map(|mut r| std::mem::replace(&mut *r, to));
        let _ = set(Some(Vec::new()));
        let out = f();
        let kept = set(None).ok().flatten().unwrap_or_default();
        (out, kept)
    }

    /// Fails with the first error wgpu reported since the last check (validation, out of memory,
    /// device lost), so a GPU fault stops training with a message instead of garbage numbers.
    pub fn check(&self) -> Result<(), BackendError> {
        let mut list = self.errors.lock().map_err(|_| BackendError::Gpu("error sink poisoned".into()))?;
        match list.drain(..).next() {
            Some(e) => Err(BackendError::Gpu(e)),
            None => Ok(()),
        }
    }

    pub fn has_timestamps(&self) -> bool {
        self.device.features().contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    pub fn wait(&self) -> Result<(), BackendError> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| BackendError::Gpu(format!("waiting for the GPU: {e}")))?;
        self.check()
    }

    /// Copies `count` f32 from `src` at byte `offset` through `staging` (a MAP_READ buffer at least
    /// that large) and waits for them. Only called at report points, never inside a step.
    pub fn read_f32(
        &self,
        src: &wgpu::Buffer,
        offset: u64,
        count: usize,
        staging: &wgpu::Buffer,
    ) -> Result<Vec<f32>, BackendError> {
        Ok(bytemuck::pod_collect_to_vec(&self.read_bytes(src, offset, (count * 4) as u64, staging)?))
    }

    /// Copies `bytes` bytes (a multiple of 4) from `src` at `offset` through `staging` and waits.
    pub fn read_bytes(
        &self,
        src: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
        staging: &wgpu::Buffer,
    ) -> Result<Vec<u8>, BackendError> {
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(src, offset, staging, 0, bytes);
        self.queue.submit([enc.finish()]);
        let slice = staging.slice(0..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| BackendError::Gpu("buffer map callback never ran".into()))?
            .map_err(|e| BackendError::Gpu(format!("mapping a buffer for reading: {e}")))?;
        let out = {
            let view =
                slice.get_mapped_range().map_err(|e| BackendError::Gpu(format!("reading a mapped buffer: {e:?}")))?;
            view.to_vec()
        };
        staging.unmap();
        Ok(out)
    }

    /// A storage buffer holding `data`, padded with zeros to whole quads (`QUAD_BYTES`).
    pub fn upload(&self, label: &str, data: &[u8], extra: wgpu::BufferUsages) -> wgpu::Buffer {
        let size = (data.len().max(1) as u64).next_multiple_of(QUAD_BYTES);
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC | extra,
            mapped_at_creation: false,
        });
        let whole = data.len() / 4 * 4;
        self.queue.write_buffer(&buf, 0, &data[..whole]);
        if whole < data.len() {
            let mut tail = [0u8; 4];
            tail[..data.len() - whole].copy_from_slice(&data[whole..]);
            self.queue.write_buffer(&buf, whole as u64, &tail);
        }
        buf
    }

    /// A storage buffer of `floats` zeros, padded to whole quads (`QUAD_BYTES`).
    pub fn zeros(&self, label: &str, floats: usize, extra: wgpu::BufferUsages) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (floats.max(1) as u64 * 4).next_multiple_of(QUAD_BYTES),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC | extra,
            mapped_at_creation: false,
        })
    }

    pub fn staging(&self, floats: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: (floats.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }
}
