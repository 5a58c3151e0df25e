//! The figures `bench` reports, and the arithmetic both backends' timings share.

use serde::Serialize;

use gpu_mnist::cpu::fast;
use gpu_mnist::model::Shape;

/// Learning rate of the timed steps (it does not change the work).
pub(crate) const LR: f32 = 0.8;

#[derive(Clone, Debug, Serialize)]
pub struct OpFigure {
    pub op: String,
    pub seconds: f64,
    /// Dense-equivalent FLOPs over the seconds: like for like with NumPy.
    pub gflops: Option<f64>,
    /// The FLOPs the op's kernels really run (the CPU's input layer: the inked quads' multiply-adds)
    /// over the seconds, where known.
    pub work_gflops: Option<f64>,
    /// `work_gflops` over the measured peak of the threads that ran it (`Report::peak_gflops`).
    pub of_peak: Option<f64>,
    pub gbytes_per_s: f64,
    pub share: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackendFigures {
    pub backend: String,
    pub device: String,
    pub timing: String,
    /// Seconds per step: the full batch, or one mini-batch of `Point::batch_size` rows.
    pub seconds_per_iteration: f64,
    /// `Point::steps_per_epoch` steps at `seconds_per_iteration` each.
    pub seconds_per_epoch: f64,
    pub gflops: f64,
    pub ops: Vec<OpFigure>,
    pub self_check: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub n: usize,
    /// The first hidden layer's width (`hidden[0]`).
    pub h: usize,
    /// Every hidden layer's width, input side first.
    pub hidden: Vec<usize>,
    /// Rows per step (`None`: the full batch, all N).
    pub batch_size: Option<usize>,
    /// `ceil(N / batch_size)`, 1 for the full batch.
    pub steps_per_epoch: usize,
    /// Of one step (one mini-batch with `batch_size`).
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
    /// FLOP/s of independent fused multiply-adds on every thread at `simd_used` (`cpu::fast::peak_flops`),
    /// when the CPU was timed: the highest of the measurements before the first point and after each, since
    /// another process taking cycles can only lower one.
    pub peak_gflops: Option<f64>,
    /// Every peak measurement, in GFLOP/s, in the order taken.
    pub peak_measurements: Vec<f64>,
    pub gpu: Option<String>,
    pub points: Vec<Point>,
    pub naive: Vec<NaiveFigure>,
    pub tuning: Vec<TuneFigure>,
    pub crossover: Vec<CrossoverFigure>,
}

/// `bench --crossover` for one hidden-to-hidden layer.
#[derive(Clone, Debug, Serialize)]
pub struct CrossoverFigure {
    pub fan_in: usize,
    pub fan_out: usize,
    pub simd: String,
    pub points: Vec<gpu_mnist::cpu::fast::CrossoverPoint>,
    /// The lowest density measured from which the dense products win at every density above.
    pub dense_wins_from: Option<f64>,
    /// The density from which this build takes the dense products at this SIMD level.
    pub dense_from: f64,
}

/// Dense-equivalent FLOPs of one iteration over `n` rows, as the NumPy peer counts them: every
/// layer's forward product and weight gradient, and the input gradient of every layer but the
/// first (`2N(DH+HK) + 2N(DH+2HK)` for one hidden layer).
pub fn flops_per_iteration(n: usize, shape: &Shape) -> f64 {
    let products: f64 = (0..shape.layer_count())
        .map(|l| {
            let (fan_in, fan_out) = shape.layer(l);
            let times = if l == 0 { 2.0 } else { 3.0 };
            times * (fan_in * fan_out) as f64
        })
        .sum();
    2.0 * n as f64 * products
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
        work_gflops: None,
        of_peak: None,
        gbytes_per_s: bytes / seconds / 1e9,
        share: seconds / total,
    }
}

impl OpFigure {
    /// With the FLOPs the op's kernels really run, where known.
    pub(crate) fn with_work(mut self, work: Option<f64>) -> OpFigure {
        self.work_gflops = work.map(|w| w / self.seconds / 1e9);
        self
    }
}

impl Report {
    /// Measures the threads' peak once more (`cpu::fast::peak_flops` at this CPU's SIMD level) and
    /// returns the highest so far: another process taking cycles can only lower a measurement.
    pub(crate) fn measure_peak(&mut self) -> f64 {
        let gflops = fast::peak_flops(fast::Simd::detect()) / 1e9;
        self.peak_measurements.push(gflops);
        let peak = self.peak_measurements.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        self.peak_gflops = Some(peak);
        peak
    }
}

impl BackendFigures {
    /// Sets each op's work against `peak_gflops`, the threads' peak, and says so in `timing`.
    pub(crate) fn set_peak(&mut self, peak_gflops: f64) {
        for o in &mut self.ops {
            o.of_peak = o.work_gflops.map(|w| w / peak_gflops);
        }
        self.timing.push_str(&format!(
            "; of peak: the work's FLOP/s over {peak_gflops:.0} GFLOP/s, the highest of the peak's measurements so \
             far (before the first point and after each)"
        ));
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
