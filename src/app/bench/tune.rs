//! `bench --tune`: the tuner's search over every candidate of each product of the step, printed
//! as a table, the fastest kept in the tuning cache.

use anyhow::Result;

use super::figures::TuneFigure;
use gpu_mnist::gpu::shaders::MatmulOp;
use gpu_mnist::gpu::uniforms::MatmulParams;
use gpu_mnist::gpu::{GpuContext, tune, tune_cache};
use gpu_mnist::model::Shape;

/// Every candidate of each wide product of the step of `shape` over `rows` rows, timed anew
/// (the search the tuner runs), printed as a table; the fastest go into the tuning cache.
pub fn tune(ctx: &GpuContext, shape: &Shape, rows: usize, seconds: f64) -> Result<Vec<TuneFigure>> {
    let products = gpu_mnist::gpu::step_products(shape, rows);
    let mut cache = tune_cache::Cache::open(&ctx.info, &ctx.limits, &mut |l| println!("{l}"));
    let share = seconds / products.len().max(1) as f64;
    let mut out = Vec::new();
    println!("\ntuning ({}): every candidate of each product, timed on the rows shown", timing_source(ctx));
    for product in &products {
        let search = tune::search(ctx, product, share, &mut |_| {})?;
        let timed = tune::Product { p: search_params(product, search.rows), ..*product };
        println!("  {} on {} rows:", product.describe(), search.rows);
        for t in &search.timings {
            let chosen = t.config == search.best;
            let gflops = timed.flops() / t.seconds / 1e9;
            let mark = match (chosen, t.runs) {
                (true, _) => "  <- chosen".to_string(),
                (false, 1) => "  (1 run: slower than twice the fastest)".to_string(),
                _ => String::new(),
            };
            println!("    {:<28} {:>10.3} ms {:>8.1} GFLOP/s{mark}", t.config.name(), 1e3 * t.seconds, gflops);
            let (product, config, rows) = (product.describe(), t.config.name(), search.rows);
            out.push(TuneFigure { product, rows, config, seconds: t.seconds, gflops, chosen });
        }
        cache.put(&search);
    }
    match cache.save() {
        Ok(()) => println!("kept in {}", cache.location()),
        Err(e) => println!("the tuning cache was not written: {e}"),
    }
    Ok(out)
}

/// `product`'s shapes over `rows` rows (M of the forward pass and input gradient, K of the
/// weight gradient).
fn search_params(product: &tune::Product, rows: u32) -> MatmulParams {
    match product.op {
        MatmulOp::BackwardWeight => MatmulParams { k: rows, ..product.p },
        _ => MatmulParams { m: rows, ..product.p },
    }
}

fn timing_source(ctx: &GpuContext) -> &'static str {
    if ctx.has_timestamps() { "GPU timestamp queries" } else { "wall time around submit-and-wait" }
}
