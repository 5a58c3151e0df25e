//! Other tools read the models this program writes: Python's `safetensors` and NumPy load a saved
//! model, run the forward pass on test images and predict what `gpu-mnist` predicts.
//!
//! The Python is `GPU_MNIST_PYTHON` (.ci/run makes a virtualenv with numpy and safetensors) or
//! `python3`. Without one that imports both, the test says it was skipped, except under CI=true.

mod common;

use std::path::Path;
use std::process::Command;

use gpu_mnist::checkpoint::{self, Model, Provenance, RunRecord};
use gpu_mnist::cpu::fast::{self, SparseRows};
use gpu_mnist::model::{Activation, Params, Shape};

const IMAGES: usize = 500;
/// NumPy computes in f32 with BLAS summation orders; probabilities agree to a few ulps of 1.
const PROB_ATOL: f32 = 1e-5;

fn python() -> Option<String> {
    let exe = std::env::var("GPU_MNIST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&exe).args(["-c", "import numpy, safetensors"]).output().is_ok_and(|o| o.status.success());
    if ok {
        return Some(exe);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but {exe} cannot import numpy and safetensors (set GPU_MNIST_PYTHON)");
    }
    eprintln!("skipped: {exe} cannot import numpy and safetensors");
    None
}

fn agree(py: &str, model_path: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let images = root.join("data/mnist/t10k-images-idx3-ubyte.gz");
    let o = Command::new(py)
        .arg(root.join("tests/interop.py"))
        .arg(model_path)
        .arg(&images)
        .arg(IMAGES.to_string())
        .output()
        .expect("python runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON from python");
    let theirs: Vec<u64> =
        v["predictions"].as_array().expect("predictions").iter().filter_map(|p| p.as_u64()).collect();
    let their_probs: Vec<f32> = v["probabilities"]
        .as_array()
        .expect("probabilities")
        .iter()
        .filter_map(|p| p.as_f64())
        .map(|p| p as f32)
        .collect();
    let m = checkpoint::load(model_path).expect("model loads");
    let test = gpu_mnist::data::load_split(&root.join("data/mnist"), "t10k").expect("test split");
    let x = SparseRows::from_pixels(&test.pixels[..IMAGES * test.d()], test.d());
    let ours = fast::probabilities(&m.params, m.activation, &x);
    common::assert_close(&format!("probabilities of {}", model_path.display()), &their_probs, &ours, PROB_ATOL, 0.0);
    let ours_pred: Vec<u64> = ours
        .chunks_exact(10)
        .map(|r| r.iter().enumerate().fold(0, |b, (j, &p)| if p > r[b] { j } else { b }) as u64)
        .collect();
    assert_eq!(theirs, ours_pred, "predictions differ");
}

#[test]
fn numpy_reads_the_shipped_model() {
    let Some(py) = python() else { return };
    agree(&py, &Path::new(env!("CARGO_MANIFEST_DIR")).join("data/model.safetensors"));
}

#[test]
fn numpy_reads_a_deeper_model() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("deep.safetensors");
    let mut params = Params::init(Shape::new(784, &[48, 21, 13], 10, true), Activation::Sigmoid, 3);
    for (l, layer) in params.layers.iter_mut().enumerate() {
        layer.b.iter_mut().enumerate().for_each(|(i, b)| *b = (i as f32 - 5.0) * 0.03 * (l + 1) as f32);
    }
    let provenance = Provenance {
        dataset: "mnist".into(),
        iterations: 0,
        backend: "none".into(),
        test_accuracy: 0.1,
        version: "test".into(),
    };
    let run = RunRecord { lr: Some(0.8), seed: Some(3), batch_size: Some(128), ..Default::default() };
    checkpoint::save(&path, &Model { params, activation: Activation::Sigmoid, provenance, run, optimizer: None })
        .expect("saves");
    agree(&py, &path);
}

#[test]
fn numpy_reads_a_model_without_bias() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("elu.safetensors");
    let params = Params::init(Shape::new(784, &[40], 10, false), Activation::Elu, 5);
    let provenance = Provenance {
        dataset: "mnist".into(),
        iterations: 0,
        backend: "none".into(),
        test_accuracy: 0.1,
        version: "test".into(),
    };
    let run = RunRecord { lr: Some(0.8), seed: Some(5), ..Default::default() };
    checkpoint::save(&path, &Model { params, activation: Activation::Elu, provenance, run, optimizer: None })
        .expect("saves");
    agree(&py, &path);
}
