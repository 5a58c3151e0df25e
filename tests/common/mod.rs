//! Helpers shared by the integration tests: comparisons that explain failures (with the one set
//! of tolerances in `tolerance`), the GPU-vs-CPU harness (`parity`), the GPU and Python the
//! ignored tests need, random inputs and small slices of the real data.
//!
//! Tests that need a GPU adapter or Python are `#[ignore]`d with the reason, so a run without
//! them shows them as not run; `cargo test -- --include-ignored` (what CI runs) runs them, and
//! then a missing adapter or Python is a failure that says what to install.
#![allow(dead_code)]

pub mod chromium;
pub mod http;
pub mod parity;
pub mod photo;
pub mod tolerance;

use gpu_mnist::data::{self, Dataset, Mnist};
use gpu_mnist::gpu::{DeviceLimits, GpuContext};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Asserts `|got - want| <= atol + rtol * |want|` element-wise (a NaN is never within). On failure the message gives the
/// worst element (by excess over its bound) and the first few mismatches.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let mut bad = Vec::new();
    let mut worst: Option<(usize, f32)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let bound = atol + rtol * w.abs();
        let err = (g - w).abs();
        if !(err <= bound) {
            let excess = if err.is_nan() { f32::INFINITY } else { err - bound };
            if worst.is_none_or(|(_, e)| excess > e) {
                worst = Some((i, excess));
            }
            bad.push(i);
        }
    }
    if let Some((wi, _)) = worst {
        let first: Vec<String> =
            bad.iter().take(5).map(|&i| format!("[{i}] got {} want {}", got[i], want[i])).collect();
        panic!(
            "{what}: {} of {} elements outside atol {atol:e} + rtol {rtol:e}; worst [{wi}] got {} want {} (|diff| {:e}); first: {}",
            bad.len(),
            got.len(),
            got[wi],
            want[wi],
            (got[wi] - want[wi]).abs(),
            first.join(", ")
        );
    }
}

/// The GPU to test on (lavapipe on CI). Only tests marked `#[ignore = "needs a GPU adapter ..."]`
/// call it, so it runs only when asked for, and then a missing adapter fails the test.
pub fn gpu() -> GpuContext {
    GpuContext::open(None, false, DeviceLimits::Adapter).unwrap_or_else(|e| {
        panic!("this test needs a GPU adapter (on Debian, apt-get install mesa-vulkan-drivers gives lavapipe): {e}")
    })
}

/// The Python that the interoperability tests run: `GPU_MNIST_PYTHON`, else `python3`, which
/// must import numpy and safetensors (tests that need it are ignored unless asked for).
pub fn python() -> String {
    python_with(&["numpy", "safetensors"])
}

/// `python()`, which must also import each of `modules` (onnx, onnxruntime, torch).
pub fn python_with(modules: &[&str]) -> String {
    let exe = std::env::var("GPU_MNIST_PYTHON").unwrap_or_else(|_| "python3".into());
    let import = format!("import {}", modules.join(", "));
    let ok = std::process::Command::new(&exe).args(["-c", &import]).output().is_ok_and(|o| o.status.success());
    let list = modules.join(", ");
    assert!(ok, "this test needs {exe} with {list} (set GPU_MNIST_PYTHON to a virtualenv's python that has them)");
    exe
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn uniform(rng: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// Bytes with MNIST's mix: ~80% zeros, the rest anywhere in 1..=255.
pub fn pixels(rng: &mut ChaCha8Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| if rng.random_bool(0.8) { 0 } else { rng.random_range(1..=255) }).collect()
}

pub fn mnist() -> Mnist {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    data::load_mnist(&dir).expect("the bundled MNIST in data/mnist loads")
}

pub fn subset(set: &Dataset, n: usize) -> Dataset {
    let mut s = set.clone();
    s.truncate(n);
    s
}

/// A safetensors model file with gpu-mnist's metadata for `inputs -> hidden -> classes` (ReLU, no
/// bias), overridden by `meta` (an empty value removes the key), and `tensors` (name, dtype,
/// shape, bytes): the way to write the malformed models the loader must refuse.
pub fn write_model_file(
    path: &std::path::Path,
    [inputs, hidden, classes]: [usize; 3],
    meta: &[(&str, &str)],
    tensors: &[(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)],
) {
    let sizes = [inputs, hidden, classes].map(|v| v.to_string());
    let mut m: std::collections::HashMap<String, String> = [
        ("format", gpu_mnist::checkpoint::FORMAT),
        ("inputs", &sizes[0]),
        ("hidden", &sizes[1]),
        ("classes", &sizes[2]),
        ("activation", "relu"),
        ("bias", "false"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in meta {
        if v.is_empty() {
            m.remove(*k);
        } else {
            m.insert(k.to_string(), v.to_string());
        }
    }
    let views: Vec<(&str, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (*n, safetensors::tensor::TensorView::new(*d, s.clone(), b).expect("view")))
        .collect();
    std::fs::write(path, safetensors::tensor::serialize(views, Some(m)).expect("serialize")).expect("write");
}

/// A safetensors file as `safetensors.torch.save_file` writes a state dict: the tensors, and
/// the metadata `{"format": "pt"}`.
pub fn write_state_dict(path: &std::path::Path, tensors: &[(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(&str, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (*n, safetensors::tensor::TensorView::new(*d, s.clone(), b).expect("view")))
        .collect();
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    std::fs::write(path, safetensors::tensor::serialize(views, Some(meta)).expect("serialize")).expect("write");
}

/// `v[key]`, a JSON array of numbers that a Python helper printed, as f32s.
pub fn json_f32s(v: &serde_json::Value, key: &str) -> Vec<f32> {
    let all = v[key].as_array().unwrap_or_else(|| panic!("no array \"{key}\" in the JSON"));
    all.iter().map(|x| x.as_f64().unwrap_or_else(|| panic!("\"{key}\" holds {x}")) as f32).collect()
}

/// `v[key]`, a JSON array of whole numbers (predicted classes).
pub fn json_u64s(v: &serde_json::Value, key: &str) -> Vec<u64> {
    let all = v[key].as_array().unwrap_or_else(|| panic!("no array \"{key}\" in the JSON"));
    all.iter().map(|x| x.as_u64().unwrap_or_else(|| panic!("\"{key}\" holds {x}"))).collect()
}

/// The class `eval` predicts for each row of `k` probabilities.
pub fn predictions(probs: &[f32], k: usize) -> Vec<u64> {
    probs.chunks_exact(k).map(|r| gpu_mnist::metrics::argmax(r) as u64).collect()
}

/// `m` (rows x cols, row-major) transposed: the tests' own twin of `model::transpose`, so that
/// fixtures written in another layout do not lean on the code they test.
pub fn transposed(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols).flat_map(|c| (0..rows).map(move |r| m[r * cols + c])).collect()
}

/// `n` little-endian f32 copies of `v`.
pub fn f32s(n: usize, v: f32) -> Vec<u8> {
    (0..n).flat_map(|_| v.to_le_bytes()).collect()
}

/// `params -= lr * grads`, tensor by tensor, through the reference's `sgd_update`: plain
/// descent without weight decay.
pub fn sgd_step(params: &mut gpu_mnist::model::Params, grads: &gpu_mnist::model::Params, lr: f32) {
    for ((_, p), (_, g)) in params.tensors_mut().into_iter().zip(grads.tensors()) {
        gpu_mnist::cpu::reference::sgd_update(p, g, lr);
    }
}
