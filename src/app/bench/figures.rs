//! The figures `bench` reports, and the arithmetic both backends' timings share.

use serde::Serialize;

/// Learning rate of the timed steps (it does not change the work).
pub(crate) const LR: f32 = 0.8;

#[derive(Clone, Debug, Serialize)]
pub struct OpFigure {
    pub op: String,
    pub seconds: f64,
    pub gflops: Option<f64>,
    pub gbytes_per_s: f64,
    pub share: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackendFigures {
    pub backend: String,
    pub device: String,
    pub timing: String,
    pub seconds_per_iteration: f64,
    pub gflops: f64,
    pub ops: Vec<OpFigure>,
    pub self_check: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub n: usize,
    pub h: usize,
    pub gflop_per_iteration: f64,
    pub results: Vec<BackendFigures>,
    /// GPU seconds per iteration divided by the CPU's (below 1: the GPU is faster).
    pub gpu_over_cpu: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NaiveFigure {
    pub product: String,
    pub naive_s: f64,
    pub register_s: f64,
    pub shared_s: f64,
    pub naive_gflops: f64,
    pub register_gflops: f64,
    pub shared_gflops: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub cpu: String,
    pub cores: usize,
    pub threads: usize,
    pub simd: String,
    pub simd_used: String,
    pub gpu: Option<String>,
    pub points: Vec<Point>,
    pub naive: Vec<NaiveFigure>,
    pub tuning: Vec<TuneFigure>,
}

/// Dense-equivalent FLOPs of one iteration, as the NumPy peer counts them.
pub fn flops_per_iteration(n: usize, d: usize, h: usize, k: usize) -> f64 {
    let (n, d, h, k) = (n as f64, d as f64, h as f64, k as f64);
    2.0 * n * (d * h + h * k) + 2.0 * n * (d * h + 2.0 * h * k)
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

pub(crate) fn figure(op: String, seconds: f64, flops: Option<f64>, bytes: f64, total: f64) -> OpFigure {
    OpFigure {
        op,
        seconds,
        gflops: flops.map(|f| f / seconds / 1e9),
        gbytes_per_s: bytes / seconds / 1e9,
        share: seconds / total,
    }
}

/// One candidate configuration of a product, as `bench --tune` timed it.
#[derive(Clone, Debug, Serialize)]
pub struct TuneFigure {
    pub product: String,
    pub rows: u32,
    pub config: String,
    pub seconds: f64,
    pub gflops: f64,
    pub chosen: bool,
}
