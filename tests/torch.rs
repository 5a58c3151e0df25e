//! Models from PyTorch: a safetensors state dict of an `nn.Sequential` of `nn.Linear` layers
//! (`0.weight` [out, in], `0.bias`, `2.weight`, ...) reads as the same perceptron, its weights
//! transposed, with `--activation` naming what the file cannot say; `eval`, `predict`, `info`,
//! `export` and `train --init-from` take it.
//!
//! One test trains a model in PyTorch (tests/torch_model.py): it needs `GPU_MNIST_PYTHON` with
//! torch, numpy and safetensors (.ci/run's virtualenv has them); it is ignored unless asked for,
//! and fails when asked for without them. The others write the layout themselves.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::tolerance::RUNTIME_PROBABILITIES;
use common::{python_with, transposed, write_state_dict};
use gpu_mnist::checkpoint::{self, LoadOptions};
use gpu_mnist::cpu::fast::{self, SparseRows};
use gpu_mnist::model::{Activation, Params, Shape};
use safetensors::Dtype;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn gpu_mnist(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpu-mnist"));
    cmd.args(args).current_dir(root()).env("GPU_MNIST_HIDE_ADAPTERS", "1");
    cmd.output().expect("gpu-mnist runs")
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `params` as PyTorch stores them, under `prefix`, Linear layers at indices 0, 2, 4, ...
fn state_dict(params: &Params, prefix: &str) -> Tensors {
    let mut t = Vec::new();
    for (l, layer) in params.layers.iter().enumerate() {
        let (i, o) = params.shape.layer(l);
        t.push((format!("{prefix}{}.weight", 2 * l), Dtype::F32, vec![o, i], bytes(&transposed(&layer.w, i, o))));
        if params.shape.bias {
            t.push((format!("{prefix}{}.bias", 2 * l), Dtype::F32, vec![o], bytes(&layer.b)));
        }
    }
    t
}

/// A state dict's tensors: name, dtype, shape, bytes.
type Tensors = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;

fn write(path: &Path, tensors: &Tensors) {
    let t: Vec<_> = tensors.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone())).collect();
    write_state_dict(path, &t);
}

#[test]
fn a_state_dict_reads_as_the_same_perceptron() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (i, (hidden, bias, prefix)) in
        [(vec![12], true, ""), (vec![20, 9, 7], false, "net."), (vec![5, 6], true, "model.layers.")]
            .into_iter()
            .enumerate()
    {
        let mut want = Params::init(Shape::new(784, &hidden, 10, bias), Activation::Elu, i as u64);
        if bias {
            want.layers.iter_mut().for_each(|l| l.b.iter_mut().enumerate().for_each(|(j, b)| *b = j as f32 * 0.01));
        }
        let path = dir.path().join(format!("m{i}.safetensors"));
        write(&path, &state_dict(&want, prefix));
        let m = checkpoint::load_with(&path, LoadOptions { activation: Some(Activation::Elu) }).expect("loads");
        assert_eq!((&m.params, m.activation), (&want, Activation::Elu), "{hidden:?} bias {bias} prefix {prefix:?}");
        assert!(m.provenance.backend.contains("PyTorch"), "{:?}", m.provenance);
    }
}

#[test]
fn state_dicts_it_cannot_map_are_refused_in_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = Params::init(Shape::new(784, &[8], 10, true), Activation::Relu, 0);
    let good = state_dict(&p, "");
    let f64_weight = {
        let mut t = good.clone();
        t[0] = ("0.weight".into(), Dtype::F64, vec![8, 784], vec![0; 8 * 784 * 8]);
        t
    };
    let not_chaining = {
        let mut t = good.clone();
        t[2] = ("2.weight".into(), Dtype::F32, vec![10, 7], bytes(&[0.1; 70]));
        t
    };
    let batch_norm = {
        let mut t = good.clone();
        t.push(("1.running_mean".into(), Dtype::F32, vec![8], bytes(&[0.0; 8])));
        t
    };
    let one_layer = vec![good[0].clone(), good[1].clone()];
    let cases: Vec<(&str, Tensors, Option<Activation>, &str)> = vec![
        ("no activation given", good.clone(), None, "name it with --activation relu, sigmoid or elu"),
        ("a float64 weight", f64_weight, Some(Activation::Relu), "save the model as float32"),
        (
            "layers that do not chain",
            not_chaining,
            Some(Activation::Relu),
            "takes 7 inputs, but the layer below gives 8",
        ),
        ("a BatchNorm tensor", batch_norm, Some(Activation::Relu), "not an nn.Linear layer's"),
        ("one Linear layer", one_layer, Some(Activation::Relu), "at least one hidden layer"),
    ];
    for (i, (what, tensors, activation, says)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.safetensors"));
        write(&path, &tensors);
        let err = checkpoint::load_with(&path, LoadOptions { activation }).expect_err(what).to_string();
        assert!(err.contains(says) && !err.contains('\n'), "{what}: {err}");
    }
}

#[test]
#[ignore = "needs Python with torch, numpy and safetensors (GPU_MNIST_PYTHON); run with --include-ignored"]
fn a_model_trained_in_pytorch_is_evaluated_exported_and_trained_further() {
    const N: usize = 2000;
    let py = python_with(&["torch", "numpy", "safetensors"]);
    let dir = tempfile::tempdir().expect("temp dir");
    for (act, bias) in [(Activation::Relu, "bias"), (Activation::Sigmoid, "nobias")] {
        let path = dir.path().join(format!("torch-{}.safetensors", act.name()));
        let (model, name) = (path.to_str().expect("UTF-8"), act.name());
        let o = Command::new(&py)
            .arg(root().join("tests/torch_model.py"))
            .args([root().join("data/mnist").to_str().expect("UTF-8"), model, name, bias, &N.to_string()])
            .output()
            .expect("python runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON from python");
        let (theirs, their_preds) = (common::json_f32s(&v, "probabilities"), common::json_u64s(&v, "predictions"));

        let m = checkpoint::load_with(&path, LoadOptions { activation: Some(act) }).expect("loads");
        assert_eq!(m.params.shape.describe(), "784-64-32-10");
        let test = gpu_mnist::data::load_split(&root().join("data/mnist"), "t10k").expect("test split");
        let ours = fast::probabilities(&m.params, act, &SparseRows::from_pixels(&test.pixels[..N * 784], 784));
        common::assert_close(
            &format!("PyTorch's probabilities, {name} {bias}"),
            &theirs,
            &ours,
            RUNTIME_PROBABILITIES,
            0.0,
        );
        assert_eq!(their_preds, common::predictions(&ours, 10), "{name}: predictions");
        let worst = theirs.iter().zip(&ours).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        println!("PyTorch vs gpu-mnist, 784-64-32-10 {name} {bias}: max |diff| {worst:.1e} over {N} images");

        // eval reads it right as often as PyTorch does on all 10,000 (a near-tie may fall the
        // other way in a different summation order: at most one image).
        let o = gpu_mnist(&["eval", "--model", model, "--activation", name, "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let e: serde_json::Value = serde_json::from_slice(&o.stdout).expect("eval JSON");
        let (ours, torch) = (e["correct"].as_i64().expect("correct"), v["correct"].as_i64().expect("correct"));
        assert!((ours - torch).abs() <= 1, "{name}: eval reads {ours} right, PyTorch {torch}");
        println!("eval: {ours} of 10000 right; PyTorch: {torch}");

        let o = gpu_mnist(&["eval", "--model", model]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains("--activation") && err.lines().count() == 1, "{err}");

        // predict reads the first test digit (a 7) from a CSV row.
        let csv = dir.path().join("first.csv");
        let row: Vec<String> = test.pixels[..784].iter().map(|p| p.to_string()).collect();
        std::fs::write(&csv, row.join(",") + "\n").expect("write");
        let o = gpu_mnist(&["predict", csv.to_str().expect("UTF-8"), "--model", model, "--activation", name, "--json"]);
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(text.contains(&format!("\"digit\": {}", their_preds[0])), "{text}");

        let o = gpu_mnist(&["info", model, "--activation", name]);
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && text.contains("784-64-32-10") && text.contains("imported: PyTorch"), "{text}");

        let onnx = dir.path().join("torch.onnx");
        let o = gpu_mnist(&["export", model, "--activation", name, "--onnx", onnx.to_str().expect("UTF-8")]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let back = checkpoint::load(&onnx).expect("the export reads back");
        assert_eq!((&back.params, back.activation), (&m.params, act));

        // Without --out the PyTorch file is kept and the model goes beside it.
        let before = std::fs::read(&path).expect("read");
        let args = ["train", "--init-from", model, "--activation", name, "--iterations", "3", "--samples", "2000"];
        let o = gpu_mnist(&[&args[..], &["--backend", "cpu"]].concat());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(std::fs::read(&path).expect("read"), before, "the PyTorch file is left as it was");
        let out = dir.path().join(format!("torch-{name}.gpu-mnist.safetensors"));
        assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("this run saves to {}", out.display())));
        let further = checkpoint::load(&out).expect("the continued model loads without --activation");
        assert_eq!(
            (further.params.shape.describe(), further.activation, further.provenance.iterations),
            ("784-64-32-10".into(), act, 3)
        );
    }
}
