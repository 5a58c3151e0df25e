//! The tuner and its cache: the cache keeps a choice per adapter, driver and product and sets a
//! corrupt or stale file aside with one line (no GPU needed); on an adapter, the search times
//! every distinct candidate, keeps the fastest, and a second run reads it back instead of timing.

mod common;

use std::path::Path;

use gpu_mnist::gpu::shaders::MatmulOp;
use gpu_mnist::gpu::tiles::{MatmulConfig, RegisterTile, SharedTile, Tile};
use gpu_mnist::gpu::tune::{self, Product, Search, Timing};
use gpu_mnist::gpu::tune_cache::{self, Cache};
use gpu_mnist::gpu::uniforms::MatmulParams;
use gpu_mnist::gpu::{Tiles, step_products};
use gpu_mnist::model::Shape;

fn adapter(driver_info: &str) -> wgpu::AdapterInfo {
    wgpu::AdapterInfo {
        name: "test adapter".into(),
        driver: "test driver".into(),
        driver_info: driver_info.into(),
        ..wgpu::AdapterInfo::new(wgpu::DeviceType::Cpu, wgpu::Backend::Vulkan)
    }
}

fn weight_product() -> Product {
    let p = MatmulParams { m: 784, n: 128, k: 6000, a_u8: 1, lda: 784, ldb: 128, ..Default::default() };
    Product { op: MatmulOp::BackwardWeight, p }
}

fn found(product: Product, best: MatmulConfig) -> Search {
    Search { product, rows: 1024, timings: vec![Timing { config: best, seconds: 0.01, runs: 3 }], best }
}

/// Opens the cache at `path`, and returns it with the lines it said.
fn open(path: &Path, info: &wgpu::AdapterInfo) -> (Cache, Vec<String>) {
    let mut lines = Vec::new();
    let cache =
        Cache::open_at(Some(path.to_path_buf()), info, &wgpu::Limits::default(), &mut |l| lines.push(l.to_string()));
    (cache, lines)
}

#[test]
fn a_choice_is_kept_per_adapter_and_driver() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sub").join("tuning.json");
    let split = MatmulConfig { tile: Tile::Shared(SharedTile::DEFAULT), split: 4 };
    let (mut cache, lines) = open(&path, &adapter("1.0"));
    assert!(lines.is_empty(), "a missing file is no news: {lines:?}");
    assert_eq!(cache.get(&weight_product()), None);
    cache.put(&found(weight_product(), split));
    cache.save().expect("saves, making its folder");
    let (cache, lines) = open(&path, &adapter("1.0"));
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(cache.get(&weight_product()), Some(split));
    // Another product of the same op, another row class, another driver: not tuned yet.
    let wider = Product { p: MatmulParams { n: 256, ..weight_product().p }, ..weight_product() };
    let fewer = Product { p: MatmulParams { k: 500, ..weight_product().p }, ..weight_product() };
    assert_eq!(cache.get(&wider), None);
    assert_eq!(cache.get(&fewer), None);
    assert_eq!(open(&path, &adapter("1.1")).0.get(&weight_product()), None);
}

#[test]
fn a_corrupt_cache_is_ignored_with_one_line_and_written_anew() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tuning.json");
    std::fs::write(&path, "{ not json").expect("writes");
    let (mut cache, lines) = open(&path, &adapter("1.0"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("unreadable") && lines[0].contains("tuning again"), "{lines:?}");
    assert_eq!(cache.get(&weight_product()), None);
    let register = MatmulConfig::new(Tile::Register(RegisterTile::WIDE));
    cache.put(&found(weight_product(), register));
    cache.save().expect("saves");
    let (cache, lines) = open(&path, &adapter("1.0"));
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(cache.get(&weight_product()), Some(register));
}

#[test]
fn a_cache_of_other_kernels_is_ignored_with_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tuning.json");
    let (mut cache, _) = open(&path, &adapter("1.0"));
    cache.put(&found(weight_product(), MatmulConfig::new(Tile::Register(RegisterTile::WIDE))));
    cache.save().expect("saves");
    let text = std::fs::read_to_string(&path).expect("reads");
    let other = text.replacen("register 16x128", "register 4x4", 1);
    assert_ne!(other, text, "the file names its candidates");
    std::fs::write(&path, other).expect("writes");
    let (cache, lines) = open(&path, &adapter("1.0"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("other kernels"), "{lines:?}");
    assert_eq!(cache.get(&weight_product()), None);
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn the_search_times_each_distinct_candidate_and_keeps_the_fastest() {
    let ctx = common::gpu();
    let products = step_products(&Shape::new(784, &[40], 10, true), 1500);
    for product in &products {
        let mut lines = Vec::new();
        let search = tune::search(&ctx, product, 0.3, &mut |l| lines.push(l.to_string())).expect("search");
        let all = tune::candidates(product.op, &ctx.limits);
        assert!(!search.timings.is_empty() && search.timings.len() <= all.len());
        let timed: Vec<MatmulConfig> = search.timings.iter().map(|t| t.config).collect();
        // Every tile that can run the product differently: vec4 loads need rows of whole quads.
        let tiles: Vec<Tile> = all.iter().filter(|c| tune::applies(c, product)).map(|c| c.tile).collect();
        let vec4 = |c: &MatmulConfig| matches!(c.tile, Tile::Register(t) if t.vec4);
        let quads = product.p.ldb % 4 == 0 || (product.p.a_u8 == 0 && product.p.lda % 4 == 0);
        assert_eq!(timed.iter().any(vec4), quads, "{}: vec4 tiles timed only with whole quads", product.describe());
        for tile in tiles {
            assert!(timed.iter().any(|c| c.tile == tile), "{}: {} was not timed", product.describe(), tile.name());
        }
        let fastest = search.timings.iter().min_by(|a, b| a.seconds.total_cmp(&b.seconds)).expect("timings");
        assert_eq!(search.best, fastest.config, "{}", product.describe());
        assert!(search.timings.iter().all(|t| t.seconds > 0.0 && t.runs >= 1));
        assert!(search.rows >= 64.min(product.rows()) && search.rows <= product.rows());
        assert!(lines.iter().any(|l| l.contains(&search.best.name())), "{lines:?}");
    }
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn a_tuned_adapter_reads_its_choices_back_instead_of_timing() {
    let ctx = common::gpu();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tuning.json");
    let products = step_products(&Shape::new(784, &[40], 10, true), 700);
    let tune = |lines: &mut Vec<String>| -> Tiles {
        let mut note = |l: &str| lines.push(l.to_string());
        let mut cache = Cache::open_at(Some(path.clone()), &ctx.info, &ctx.limits, &mut note);
        tune_cache::tiles_in(&ctx, &mut cache, &products, &mut note).expect("tunes")
    };
    let (mut first, mut second) = (Vec::new(), Vec::new());
    let tuned = tune(&mut first);
    assert!(first.iter().any(|l| l.starts_with("tuning ")), "{first:?}");
    assert!(path.exists(), "the choices are kept");
    let again = tune(&mut second);
    assert!(second.is_empty(), "a second run times nothing: {second:?}");
    assert_eq!(tuned, again);
    assert_eq!(tuned.chosen.len(), products.len());
}
