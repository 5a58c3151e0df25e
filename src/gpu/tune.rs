//! The tuner. On an adapter it has not seen, it times every candidate configuration of each
//! product of a step (`tiles::tiles()`, and for the weight gradient the splits of K) on the
//! product's real shapes, keeps the fastest and caches the choice per adapter, driver and
//! product (`tune_cache.rs`). A budget bounds the timing: when the product's default takes
//! longer than its share, every candidate is timed on fewer rows. Times come from timestamp
//! queries where the adapter has them, else from the wall clock around submit-and-wait, always
//! after a warm-up run (which also compiles the pipeline).

use std::time::Instant;

use super::context::GpuContext;
use super::dispatch::{Dispatch, View};
use super::kernels::Kernels;
use super::matmul::{ProductKey, Tiles};
use super::profile;
use super::shaders::MatmulOp;
use super::tiles::{MatmulConfig, SPLIT_CANDIDATES, Tile, tiles};
use super::uniforms::MatmulParams;
use crate::backend::BackendError;

/// Seconds of timing (warm-ups and timed runs) the searches of a step may spend together;
/// compiling the candidates' pipelines comes on top (about as long again on lavapipe, far less
/// on a hardware GPU's driver).
pub const BUDGET_SECONDS: f64 = 1.0;
/// Timed runs per candidate after the warm-up; the median counts.
const RUNS: usize = 3;
/// Rows of the first timing, which sizes the rest.
const PROBE_ROWS: u32 = 256;
/// The fewest rows a candidate is timed on (a multiple of every tile's rows and K step), and
/// what the rows are rounded down to.
const LEAST_ROWS: u32 = 64;
/// A candidate this many times slower than the fastest so far in its first run is not run again.
const ABANDON_RATIO: f64 = 2.0;

/// A product of a step as its dispatch runs it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Product {
    pub op: MatmulOp,
    pub p: MatmulParams,
}

impl Product {
    pub fn key(&self) -> ProductKey {
        ProductKey::of(self.op, &self.p)
    }

    /// The rows it sums or produces: M for the forward pass and the input gradient, K for the
    /// weight gradient.
    pub fn rows(&self) -> u32 {
        if self.op == MatmulOp::BackwardWeight { self.p.k } else { self.p.m }
    }

    /// `linear_forward 6000x128x784 u8`: M x N x K.
    pub fn describe(&self) -> String {
        let u8 = if self.p.a_u8 == 1 { " u8" } else { "" };
        format!("{} {}x{}x{}{u8}", self.op.name(), self.p.m, self.p.n, self.p.k)
    }

    pub fn flops(&self) -> f64 {
        2.0 * self.p.m as f64 * self.p.n as f64 * self.p.k as f64
    }

    /// This product over `rows` rows instead.
    fn with_rows(self, rows: u32) -> Product {
        let p = if self.op == MatmulOp::BackwardWeight {
            MatmulParams { k: rows, ..self.p }
        } else {
            MatmulParams { m: rows, ..self.p }
        };
        Product { p, ..self }
    }
}

/// The candidates of `op` that fit `limits`: every tile, and for the weight gradient each of
/// them with every split.
pub fn candidates(op: MatmulOp, limits: &wgpu::Limits) -> Vec<MatmulConfig> {
    let fits = |t: &Tile| super::shaders::matmul(op, *t).exceeds(limits).is_none();
    let splits: &[u32] = if op == MatmulOp::BackwardWeight { &SPLIT_CANDIDATES } else { &[1] };
    tiles()
        .into_iter()
        .filter(fits)
        .flat_map(|tile| splits.iter().map(move |&split| MatmulConfig { tile, split }))
        .collect()
}

/// One candidate's time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    pub config: MatmulConfig,
    /// The median of its runs.
    pub seconds: f64,
    /// Timed runs (after the warm-up): 1 when abandoned.
    pub runs: usize,
}

/// Whether `config` runs `product` differently from the others: vec4 loads need f32 operand
/// rows of a multiple of 4 elements (A's, or B's, as stored); without them the vec4 tile is the
/// scalar one again, and is not timed (a pipeline compiled for nothing).
pub fn applies(config: &MatmulConfig, product: &Product) -> bool {
    match config.tile {
        Tile::Register(t) if t.vec4 => {
            (product.p.a_u8 == 0 && product.p.lda.is_multiple_of(4)) || product.p.ldb.is_multiple_of(4)
        }
        _ => true,
    }
}

/// What a search of one product found.
#[derive(Clone, Debug)]
pub struct Search {
    pub product: Product,
    /// The rows the candidates were timed on (fewer than the product's when it is slow here).
    pub rows: u32,
    pub timings: Vec<Timing>,
    pub best: MatmulConfig,
}

/// Random inputs and outputs for one product, and the dispatches of one configuration over them.
struct Bench {
    a: wgpu::Buffer,
    b: wgpu::Buffer,
    aux: wgpu::Buffer,
    c: wgpu::Buffer,
    partials: wgpu::Buffer,
}

impl Bench {
    fn new(ctx: &GpuContext, product: &Product, most_splits: u32) -> Self {
        let p = &product.p;
        let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
        let mut seed = 0x9E37_79B9u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        let floats = |count: usize, next: &mut dyn FnMut() -> f32| -> Vec<f32> { (0..count).map(|_| next()).collect() };
        let none = wgpu::BufferUsages::empty();
        let a = if p.a_u8 == 1 {
            let bytes: Vec<u8> = (0..p.lda as usize * if product.op == MatmulOp::BackwardWeight { k } else { m })
                .map(|i| (i * 37 % 251) as u8)
                .collect();
            ctx.upload("tune a", &bytes, none)
        } else {
            ctx.upload("tune a", bytemuck::cast_slice(&floats(m * k, &mut next)), none)
        };
        let b = ctx.upload("tune b", bytemuck::cast_slice(&floats(k * n, &mut next)), none);
        let aux = ctx.upload("tune aux", bytemuck::cast_slice(&floats(m * n, &mut next)), none);
        let c = ctx.zeros("tune c", m * n, none);
        let partials = ctx.zeros("tune partials", most_splits as usize * m * n, none);
        Bench { a, b, aux, c, partials }
    }

    fn dispatches(&self, ctx: &GpuContext, k: &Kernels, product: &Product) -> Vec<Dispatch> {
        let dev = &ctx.device;
        let (a, b, aux, c) = (View::all(&self.a), View::all(&self.b), View::all(&self.aux), View::all(&self.c));
        match product.op {
            MatmulOp::Forward => vec![k.linear_forward(dev, product.p, a, b, aux, c)],
            MatmulOp::BackwardWeight => {
                k.linear_backward_weight(dev, product.p, a, b, c, Some(View::all(&self.partials)))
            }
            MatmulOp::BackwardInput => vec![k.linear_backward_input(dev, product.p, a, b, aux, c)],
        }
    }
}

/// Seconds of one run of `dispatches`: summed timestamps, or wall time around submit-and-wait.
fn time(ctx: &GpuContext, dispatches: &[Dispatch]) -> Result<f64, BackendError> {
    let all: Vec<&Dispatch> = dispatches.iter().collect();
    if ctx.has_timestamps() {
        return Ok(profile::time_dispatches(ctx, &all)?.0.iter().sum());
    }
    let t = Instant::now();
    ctx.submit(&all);
    ctx.wait()?;
    Ok(t.elapsed().as_secs_f64())
}

/// Times every candidate of `product` within about `seconds` (compiling not counted), after one
/// warm-up run each; `progress` hears what it found.
///
/// The default, timed on a few rows first, says how many rows every candidate can be timed on
/// within its share: all of them on a fast adapter, fewer on a slow one (down to `LEAST_ROWS`).
/// Splits of K that those rows cannot make are the unsplit product again and are left out, and a
/// candidate whose first run is `ABANDON_RATIO` times the fastest so far is not run again.
pub fn search(
    ctx: &GpuContext,
    product: &Product,
    seconds: f64,
    progress: &mut dyn FnMut(&str),
) -> Result<Search, BackendError> {
    let mut configs = candidates(product.op, &ctx.limits);
    configs.retain(|c| applies(c, product));
    if configs.is_empty() {
        configs.push(configs_default(product));
    }
    let full = product.rows();
    let probe_rows = full.min(PROBE_ROWS);
    let probe = product.with_rows(probe_rows);
    let d = Bench::new(ctx, &probe, 1).dispatches(ctx, &kernels(ctx, configs_default(product)), &probe);
    time(ctx, &d)?;
    let per_row = time(ctx, &d)? / probe_rows as f64;
    let per_run = seconds / configs.len() as f64 / (RUNS + 1) as f64;
    let fit = (per_run / per_row.max(1e-12)).min(u32::MAX as f64) as u32 / LEAST_ROWS * LEAST_ROWS;
    let rows = fit.clamp(LEAST_ROWS.min(full), full);
    let all = configs.len();
    // Candidates come tile by tile, splits in increasing order: a split making no more slices
    // than the one before it at these rows is the same work.
    configs.dedup_by_key(|c| (c.tile, c.slices(rows).1));
    let timed = product.with_rows(rows);
    let most_splits = configs.iter().map(|c| c.slices(rows).1).max().unwrap_or(1);
    let bench = Bench::new(ctx, &timed, most_splits);
    let left_out = match all - configs.len() {
        0 => String::new(),
        n => format!(" ({n} splits of K need more rows)"),
    };
    progress(&format!("timing {} configurations of {} on {rows} rows{left_out}", configs.len(), product.describe()));
    let mut timings: Vec<Timing> = Vec::with_capacity(configs.len());
    let mut fastest = f64::INFINITY;
    for (config, d) in prepare(ctx, &bench, &timed, &configs) {
        time(ctx, &d)?;
        let mut runs = vec![time(ctx, &d)?];
        if runs[0] < ABANDON_RATIO * fastest {
            for _ in 1..RUNS {
                runs.push(time(ctx, &d)?);
            }
        }
        runs.sort_by(f64::total_cmp);
        let seconds = runs[runs.len() / 2];
        fastest = fastest.min(seconds);
        timings.push(Timing { config, seconds, runs: runs.len() });
        ctx.check()?;
    }
    let best = timings.iter().min_by(|a, b| a.seconds.total_cmp(&b.seconds)).copied();
    let best = best.map_or(configs_default(product), |t| t.config);
    progress(&format!("{}: {} ({:.3} ms on {rows} rows)", product.describe(), best.name(), 1e3 * fastest));
    Ok(Search { product: *product, rows, timings, best })
}

/// The dispatches of every config, their pipelines compiled on as many threads as there are
/// cores (compiling is most of a search's time on a software adapter).
fn prepare(
    ctx: &GpuContext,
    bench: &Bench,
    product: &Product,
    configs: &[MatmulConfig],
) -> Vec<(MatmulConfig, Vec<Dispatch>)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(configs.len()).max(1);
    let per_thread = configs.len().div_ceil(threads);
    std::thread::scope(|s| {
        let workers: Vec<_> = configs
            .chunks(per_thread)
            .map(|chunk| {
                s.spawn(move || {
                    chunk.iter().map(|&c| (c, bench.dispatches(ctx, &kernels(ctx, c), product))).collect::<Vec<_>>()
                })
            })
            .collect();
        // A worker only panics where the main thread would have.
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// The kernels running `config` for every product.
fn kernels(ctx: &GpuContext, config: MatmulConfig) -> Kernels {
    Kernels::new(&ctx.device, Tiles { default: config, chosen: Default::default() })
}

fn configs_default(product: &Product) -> MatmulConfig {
    Tiles::fixed(super::matmul::Tiling::Register).choose(product.op, &product.p)
}
