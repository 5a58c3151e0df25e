//! Other tools read the models this program writes: Python's `safetensors` and NumPy load a saved
//! model, run the forward pass on test images and predict what `gpu-mnist` predicts.
//!
//! The Python is `GPU_MNIST_PYTHON` (.ci/run makes a virtualenv with numpy and safetensors) or
//! `python3`. The tests are ignored unless asked for (`--include-ignored`); asked for without a
//! Python that imports both, they fail and say so.

mod common;

use std::path::Path;
use std::process::Command;

use common::python;
use common::tolerance::NUMPY_PROBABILITIES;
use gpu_mnist::checkpoint::{self, Model, Provenance, RunRecord};
use gpu_mnist::cpu::fast::{self, SparseRows};
use gpu_mnist::model::{Activation, Params, Shape};

const IMAGES: usize = 500;

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
    let (theirs, their_probs) = (common::json_u64s(&v, "predictions"), common::json_f32s(&v, "probabilities"));
    let m = checkpoint::load(model_path).expect("model loads");
    let test = gpu_mnist::data::load_split(&root.join("data/mnist"), "t10k").expect("test split");
    let x = SparseRows::from_pixels(&test.pixels[..IMAGES * test.d()], test.d());
    let ours = fast::probabilities(&m.params, m.activation, &x);
    common::assert_close(
        &format!("probabilities of {}", model_path.display()),
        &their_probs,
        &ours,
        NUMPY_PROBABILITIES,
        0.0,
    );
    assert_eq!(theirs, common::predictions(&ours, 10), "predictions differ");
}

#[test]
#[ignore = "needs Python with numpy and safetensors (GPU_MNIST_PYTHON); run with --include-ignored"]
fn numpy_reads_the_shipped_model() {
    let py = python();
    agree(&py, &Path::new(env!("CARGO_MANIFEST_DIR")).join("data/model.safetensors"));
}

#[test]
#[ignore = "needs Python with numpy and safetensors (GPU_MNIST_PYTHON); run with --include-ignored"]
fn numpy_reads_a_deeper_model() {
    let py = python();
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
#[ignore = "needs Python with numpy and safetensors (GPU_MNIST_PYTHON); run with --include-ignored"]
fn numpy_reads_a_model_without_bias() {
    let py = python();
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
