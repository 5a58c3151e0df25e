//! Under WebGPU's default limits (what every implementation and browser grants), the device
//! opens with exactly those limits and training runs and agrees with the CPU: full batches over
//! several chunks and mini-batches with Adam, in both tilings and split K. Without a device: a
//! pipeline beyond a device's limits is refused with what to do, and the tuner leaves out the
//! candidates a device cannot run.

mod common;

use common::parity::{Run, Setup, assert_gradients, assert_params};
use common::tolerance::{GRADIENTS_BATCH, UPDATE};
use common::{mnist, subset};
use gpu_mnist::data::Splits;
use gpu_mnist::gpu::kernels::Kernels;
use gpu_mnist::gpu::shaders::MatmulOp;
use gpu_mnist::gpu::tiles::{self, MatmulConfig, RegisterTile, SharedTile, Tile};
use gpu_mnist::gpu::{DeviceLimits, GpuContext, GpuOptions, Tiles, Tiling, tune};
use gpu_mnist::model::{Activation, Params, Shape};
use gpu_mnist::optim::{Optimizer, OptimizerConfig};

const STEPS: usize = 6;

fn webgpu() -> GpuContext {
    GpuContext::open(None, false, DeviceLimits::WebGpu).unwrap_or_else(|e| {
        panic!("this test needs a GPU adapter with WebGPU's default limits (lavapipe has them): {e}")
    })
}

/// `STEPS` steps under WebGPU's limits, each checked anchored against the CPU reference.
fn parity(options: GpuOptions, act: Activation, lr: f32) {
    let m = mnist();
    let data = Splits::new(subset(&m.train, 1500), subset(&m.test, 100));
    let start = Params::init(Shape::new(data.train.d(), &[40], 10, true), act, 5);
    let what = format!("{:?} {:?} {:?}", options.tiling, options.matmul.map(|c| c.name()), options.optimizer.kind);
    let setup = Setup { data, start, act, options, lr, seed: 1, first_step: 0 };
    let mut run = Run::on(webgpu(), setup);
    for _ in 0..STEPS {
        let s = run.step();
        let what = format!("step {} batch {} under WebGPU limits, {what}", s.number, s.batch);
        let (want_grads, _) = run.reference(&s);
        assert_gradients(&what, &s.grads, &want_grads, GRADIENTS_BATCH);
        assert_params(&what, &s.after, &run.cpu_update(&s).0, UPDATE);
    }
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn the_device_opens_with_webgpu_defaults() {
    let ctx = webgpu();
    assert_eq!(ctx.limits, wgpu::Limits::default());
    let device = ctx.device.limits();
    assert_eq!(device.max_storage_buffer_binding_size, wgpu::Limits::default().max_storage_buffer_binding_size);
    assert_eq!(device.max_compute_workgroup_storage_size, 16384);
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn full_batches_over_chunks_in_each_tiling() {
    for tiling in [Tiling::Register, Tiling::Shared] {
        let options = GpuOptions { max_chunk_rows: Some(512), tiling: Some(tiling), ..Default::default() };
        parity(options, Activation::Relu, 0.5);
    }
    let split = MatmulConfig { tile: Tile::Shared(SharedTile::DEFAULT), split: 4 };
    parity(GpuOptions { matmul: Some(split), ..Default::default() }, Activation::Sigmoid, 1.0);
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn adam_mini_batches() {
    let optimizer = OptimizerConfig { kind: Optimizer::Adam, ..Default::default() };
    let options = GpuOptions { tiling: Some(Tiling::Register), optimizer, batch_size: Some(128), ..Default::default() };
    parity(options, Activation::Elu, 0.003);
}

#[test]
fn a_pipeline_beyond_the_device_limits_is_refused_with_what_to_do() {
    let small = wgpu::Limits { max_compute_workgroup_storage_size: 4096, ..wgpu::Limits::default() };
    let err = Kernels::check(&small, &Tiles::fixed(Tiling::Shared)).expect_err("8 KiB tiles do not fit");
    let msg = err.to_string();
    assert!(msg.contains("8192 bytes of workgroup memory") && msg.contains("4096"), "{msg}");
    assert!(msg.contains("--tiling register"), "{msg}");
    Kernels::check(&small, &Tiles::fixed(Tiling::Register)).expect("the register tiles fit");
    let few = wgpu::Limits { max_compute_invocations_per_workgroup: 128, ..wgpu::Limits::default() };
    let err = Kernels::check(&few, &Tiles::fixed(Tiling::Register)).expect_err("softmax's 256 invocations");
    assert!(err.to_string().contains("256 invocations per workgroup"), "{err}");
}

#[test]
fn the_tuner_leaves_out_what_the_device_cannot_run() {
    let all = tune::candidates(MatmulOp::Forward, &wgpu::Limits::default());
    assert_eq!(all.len(), tiles::tiles().len(), "every tile fits WebGPU's defaults");
    assert_eq!(all.len(), 9, "six register tiles (scalar and vec4 loads), three shared: {all:?}");
    let small = wgpu::Limits { max_compute_workgroup_storage_size: 4096, ..wgpu::Limits::default() };
    let fits = tune::candidates(MatmulOp::BackwardWeight, &small);
    let shared: Vec<Tile> = fits.iter().filter(|c| matches!(c.tile, Tile::Shared(_))).map(|c| c.tile).collect();
    assert!(shared.iter().all(|&t| t == Tile::Shared(SharedTile { m: 32, n: 32, k: 16 })), "{fits:?}");
    assert_eq!(shared.len(), 3, "the 4 KiB tile, in each split: {fits:?}");
    assert!(fits.iter().any(|c| c.tile == Tile::Register(RegisterTile::WIDE) && c.split == 16), "{fits:?}");
}
