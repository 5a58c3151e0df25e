//! Per-kernel GPU times for `bench`: timestamp queries around each dispatch where the adapter
//! supports them, otherwise wall time around submit-and-wait of each dispatch alone.

use super::context::GpuContext;
use super::dispatch::Dispatch;
use crate::backend::BackendError;

/// One dispatch's time: its op (entry point), layer (0 if none) and seconds.
pub type KernelTime = (&'static str, u8, f64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimingSource {
    Timestamps,
    WallClock,
}

impl TimingSource {
    pub fn describe(self) -> &'static str {
        match self {
            TimingSource::Timestamps => "GPU timestamp queries around each dispatch",
            TimingSource::WallClock => "wall time around submit-and-wait of each dispatch (no timestamp support)",
        }
    }
}

/// Runs `dispatches` once, in order, each in its own compute pass, and returns each one's
/// duration in seconds.
pub fn time_dispatches(ctx: &GpuContext, dispatches: &[&Dispatch]) -> Result<(Vec<f64>, TimingSource), BackendError> {
    if !ctx.has_timestamps() || dispatches.len() * 2 > wgpu::QUERY_SET_MAX_QUERIES as usize {
        let mut times = Vec::with_capacity(dispatches.len());
        for d in dispatches {
            let t = std::time::Instant::now();
            ctx.submit(&[d]);
            ctx.wait()?;
            times.push(t.elapsed().as_secs_f64());
        }
        return Ok((times, TimingSource::WallClock));
    }
    let count = (dispatches.len() * 2) as u32;
    let set = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("kernel timestamps"),
        ty: wgpu::QueryType::Timestamp,
        count,
    });
    let bytes = count as u64 * wgpu::QUERY_SIZE as u64;
    let resolved = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("resolved timestamps"),
        size: bytes,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let staging = ctx.staging((bytes / 4) as usize);
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    for (i, d) in dispatches.iter().enumerate() {
        let writes = wgpu::ComputePassTimestampWrites {
            query_set: &set,
            beginning_of_pass_write_index: Some(2 * i as u32),
            end_of_pass_write_index: Some(2 * i as u32 + 1),
        };
        let mut pass =
            enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: Some(writes) });
        d.record(&mut pass);
    }
    enc.resolve_query_set(&set, 0..count, &resolved, 0);
    ctx.queue.submit([enc.finish()]);
    let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&ctx.read_bytes(&resolved, 0, bytes, &staging)?);
    let period = ctx.queue.get_timestamp_period() as f64 * 1e-9;
    let times = ticks.chunks_exact(2).map(|t| t[1].saturating_sub(t[0]) as f64 * period).collect();
    Ok((times, TimingSource::Timestamps))
}
