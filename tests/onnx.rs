//! ONNX: `export` writes models that `onnx.checker` accepts and onnxruntime runs to the same
//! predictions and probabilities as `gpu-mnist eval`; the models it writes, and the perceptrons
//! other tools write (Gemm with transB, MatMul + Add, Flatten, no Softmax), read back; other
//! graphs are refused with the node they hold.
//!
//! The onnxruntime tests need `GPU_MNIST_PYTHON` with numpy, onnx and onnxruntime (.ci/run's
//! virtualenv has them); they are ignored unless asked for, and fail when asked for without them.

mod common;

use std::path::Path;
use std::process::Command;

use common::tolerance::RUNTIME_PROBABILITIES;
use common::{python_with, transposed};
use gpu_mnist::checkpoint::onnx_proto as pb;
use gpu_mnist::checkpoint::{self, LoadOptions, Model, Provenance, RunRecord, onnx};
use gpu_mnist::cpu::fast::{self, SparseRows};
use gpu_mnist::model::{Activation, Params, Shape};
use prost::Message;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A model of `hidden` layers with seeded weights and non-zero biases.
fn model(hidden: &[usize], activation: Activation, bias: bool, seed: u64) -> Model {
    let mut params = Params::init(Shape::new(784, hidden, 10, bias), activation, seed);
    if bias {
        for (l, layer) in params.layers.iter_mut().enumerate() {
            layer.b.iter_mut().enumerate().for_each(|(i, b)| *b = (i as f32 - 5.0) * 0.03 * (l + 1) as f32);
        }
    }
    let provenance = Provenance {
        dataset: "mnist".into(),
        iterations: 7,
        backend: "cpu (2 threads)".into(),
        test_accuracy: 0.125,
        version: "test".into(),
    };
    let run = RunRecord { lr: Some(0.5), seed: Some(seed), batch_size: Some(64), ..Default::default() };
    Model { params, activation, provenance, run, optimizer: None }
}

fn parse(bytes: &[u8]) -> Result<Model, String> {
    checkpoint::parse(bytes, Path::new("m.onnx")).map_err(|e| e.to_string())
}

#[test]
fn exported_models_read_back_bit_for_bit() {
    let cases = [
        (vec![128], Activation::Relu, true),
        (vec![48, 21, 13], Activation::Sigmoid, true),
        (vec![40], Activation::Elu, false),
        (vec![9, 7], Activation::Relu, false),
    ];
    for (i, (hidden, act, bias)) in cases.into_iter().enumerate() {
        let m = model(&hidden, act, bias, i as u64);
        let got = parse(&onnx::export(&m)).unwrap_or_else(|e| panic!("{hidden:?} {act:?}: {e}"));
        assert_eq!(got, m, "{hidden:?} {act:?} bias {bias}: weights, activation, provenance and run");
    }
}

#[test]
fn the_graph_is_named_and_shaped_as_documented() {
    let m = model(&[16], Activation::Elu, true, 1);
    let g = pb::ModelProto::decode(&onnx::export(&m)[..]).expect("decodes").graph.expect("a graph");
    let ops: Vec<&str> = g.node.iter().filter_map(|n| n.op_type.as_deref()).collect();
    assert_eq!(ops, ["Gemm", "Elu", "Gemm", "Softmax"]);
    assert_eq!(g.input[0].name.as_deref(), Some(onnx::INPUT_NAME));
    assert_eq!(g.output[0].name.as_deref(), Some(onnx::OUTPUT_NAME));
    let no_bias = model(&[16], Activation::Relu, false, 1);
    let g = pb::ModelProto::decode(&onnx::export(&no_bias)[..]).expect("decodes").graph.expect("a graph");
    let ops: Vec<&str> = g.node.iter().filter_map(|n| n.op_type.as_deref()).collect();
    assert_eq!(ops, ["MatMul", "Relu", "MatMul", "Softmax"]);
}

// ---- graphs as other tools write them ----

fn tensor(name: &str, dims: &[usize], data: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(pb::tensor_proto::DataType::Float as i32),
        float_data: data.to_vec(),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attrs: &[(&str, i64)]) -> pb::NodeProto {
    let attribute = attrs
        .iter()
        .map(|&(n, i)| pb::AttributeProto { name: Some(n.into()), i: Some(i), r#type: Some(2), ..Default::default() })
        .collect();
    pb::NodeProto {
        op_type: Some(op.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

fn graph_bytes(nodes: Vec<pb::NodeProto>, inits: Vec<pb::TensorProto>, output: &str) -> Vec<u8> {
    let vi = |n: &str| pb::ValueInfoProto { name: Some(n.into()), ..Default::default() };
    let graph = pb::GraphProto {
        node: nodes,
        initializer: inits,
        input: vec![vi("x")],
        output: vec![vi(output)],
        ..Default::default()
    };
    let opset_import = vec![pb::OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }];
    pb::ModelProto {
        ir_version: Some(8),
        producer_name: Some("pytorch".into()),
        graph: Some(graph),
        opset_import,
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn perceptrons_of_other_exporters_are_read() {
    let want = model(&[6], Activation::Relu, true, 4).params;
    let (w1, b1, w2, b2) = (&want.layers[0].w, &want.layers[0].b, &want.layers[1].w, &want.layers[1].b);
    // PyTorch's exporter: Flatten, Gemm with transB = 1 ([out, in] weights), no Softmax.
    let torch_like = graph_bytes(
        vec![
            node("Flatten", &["x"], "f", &[("axis", 1)]),
            node("Gemm", &["f", "W1", "B1"], "z1", &[("transB", 1)]),
            node("Relu", &["z1"], "a1", &[]),
            node("Gemm", &["a1", "W2", "B2"], "logits", &[("transB", 1)]),
        ],
        vec![
            tensor("W1", &[6, 784], &transposed(w1, 784, 6)),
            tensor("B1", &[6], b1),
            tensor("W2", &[10, 6], &transposed(w2, 6, 10)),
            tensor("B2", &[10], b2),
        ],
        "logits",
    );
    // MatMul + Add layers, then Softmax.
    let matmul_add = graph_bytes(
        vec![
            node("MatMul", &["x", "W1"], "m1", &[]),
            node("Add", &["m1", "B1"], "z1", &[]),
            node("Relu", &["z1"], "a1", &[]),
            node("MatMul", &["a1", "W2"], "m2", &[]),
            node("Add", &["B2", "m2"], "z2", &[]),
            node("Softmax", &["z2"], "p", &[("axis", -1)]),
        ],
        vec![tensor("W1", &[784, 6], w1), tensor("B1", &[6], b1), tensor("W2", &[6, 10], w2), tensor("B2", &[10], b2)],
        "p",
    );
    for (what, bytes) in [("Gemm transB", torch_like), ("MatMul + Add", matmul_add)] {
        let m = parse(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!((&m.params, m.activation), (&want, Activation::Relu), "{what}");
        assert!(m.provenance.backend.contains("ONNX from pytorch"), "{what}: {:?}", m.provenance);
    }
}

#[test]
fn graphs_that_are_not_perceptrons_are_refused_with_the_node() {
    let w = vec![0.1; 784 * 4];
    let cases: Vec<(&str, Vec<pb::NodeProto>, Vec<pb::TensorProto>, &str)> = vec![
        (
            "a convolution",
            vec![node("Conv", &["x", "K"], "c", &[]), node("Relu", &["c"], "y", &[])],
            vec![tensor("K", &[4, 1, 3, 3], &[0.1; 36])],
            "node 0 (Conv): not read here",
        ),
        (
            "a single layer",
            vec![node("MatMul", &["x", "W"], "y", &[])],
            vec![tensor("W", &[784, 10], &[0.1; 7840])],
            "at least one hidden layer",
        ),
        (
            "layers that do not chain",
            vec![
                node("MatMul", &["x", "W"], "z", &[]),
                node("Relu", &["z"], "a", &[]),
                node("MatMul", &["a", "V"], "y", &[]),
            ],
            vec![tensor("W", &[784, 4], &w), tensor("V", &[5, 10], &[0.1; 50])],
            "takes 5 inputs, but the layer below gives 4",
        ),
        (
            "a weight that is an input, not stored",
            vec![node("MatMul", &["x", "W"], "z", &[]), node("Relu", &["z"], "y", &[])],
            vec![],
            "\"W\" is not a stored tensor",
        ),
        (
            "values that do not fill the dims",
            vec![node("MatMul", &["x", "W"], "z", &[]), node("Relu", &["z"], "y", &[])],
            vec![tensor("W", &[784, 4], &[0.1; 10])],
            "holds 10 values for dims [784, 4]",
        ),
    ];
    for (what, nodes, inits, says) in cases {
        let out = nodes.last().map(|n| n.output[0].clone()).unwrap_or_default();
        let err = parse(&graph_bytes(nodes, inits, &out)).expect_err(what);
        assert!(err.contains(says) && !err.contains('\n'), "{what}: {err}");
    }
    // Stored tensors of one name twice; a bias that is a column, not a row.
    let two = graph_bytes(
        vec![node("MatMul", &["x", "W"], "z", &[]), node("Relu", &["z"], "y", &[])],
        vec![tensor("W", &[784, 4], &w), tensor("W", &[784, 4], &w)],
        "y",
    );
    assert!(parse(&two).expect_err("duplicates").contains("two stored tensors named \"W\""));
    let column = graph_bytes(
        vec![node("Gemm", &["x", "W", "B"], "z", &[]), node("Relu", &["z"], "y", &[])],
        vec![tensor("W", &[784, 4], &w), tensor("B", &[4, 1], &[0.0; 4])],
        "y",
    );
    assert!(parse(&column).expect_err("column bias").contains("a bias of dims [4, 1] for 4 outputs"));
    // Cut short: inside a field, and exactly after the graph (the opsets and metadata lost).
    let exported = onnx::export(&model(&[8], Activation::Relu, true, 0));
    let err = parse(&exported[..exported.len() / 2]).expect_err("cut short");
    assert!(err.contains("nor a whole ONNX model") && err.contains("cut short?"), "{err}");
    let mut m = pb::ModelProto::decode(&exported[..]).expect("decodes");
    (m.opset_import, m.metadata_props) = (vec![], vec![]);
    let err = parse(&m.encode_to_vec()).expect_err("no opsets");
    assert!(err.contains("without ONNX's operator set (cut short?)"), "{err}");
}

#[test]
fn activation_given_for_a_model_that_says_another_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("m.onnx");
    std::fs::write(&path, onnx::export(&model(&[8], Activation::Sigmoid, true, 0))).expect("write");
    let err = checkpoint::load_with(&path, LoadOptions { activation: Some(Activation::Relu) }).expect_err("differs");
    assert!(err.to_string().contains("--activation relu differs from the model's sigmoid"), "{err}");
}

// ---- onnxruntime ----

/// onnxruntime's probabilities and predictions for the first `n` test images under the ONNX
/// file `path`, with its input and output as it reports them.
fn onnxruntime(path: &Path, n: usize) -> (Vec<f32>, Vec<u64>, serde_json::Value) {
    let py = python_with(&["numpy", "onnx", "onnxruntime"]);
    let images = root().join("data/mnist/t10k-images-idx3-ubyte.gz");
    let o = Command::new(py).arg(root().join("tests/onnx_check.py")).arg(path).arg(&images).arg(n.to_string()).output();
    let o = o.expect("python runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON from python");
    let (probs, preds) = (common::json_f32s(&v, "probabilities"), common::json_u64s(&v, "predictions"));
    (probs, preds, serde_json::json!([v["input"], v["output"]]))
}

/// What `gpu-mnist eval` computes for the first `n` test images: probabilities and predictions.
fn ours(m: &Model, n: usize) -> (Vec<f32>, Vec<u64>) {
    let test = gpu_mnist::data::load_split(&root().join("data/mnist"), "t10k").expect("test split");
    let x = SparseRows::from_pixels(&test.pixels[..n * test.d()], test.d());
    let p = fast::probabilities(&m.params, m.activation, &x);
    let preds = common::predictions(&p, 10);
    (p, preds)
}

fn agree(m: &Model, n: usize, what: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("m.onnx");
    std::fs::write(&path, onnx::export(m)).expect("write");
    let (probs, preds, io) = onnxruntime(&path, n);
    assert_eq!(io, serde_json::json!([["pixels", ["batch", 784]], ["probabilities", ["batch", 10]]]), "{what}");
    let (our_probs, our_preds) = ours(m, n);
    common::assert_close(
        &format!("onnxruntime's probabilities, {what}"),
        &probs,
        &our_probs,
        RUNTIME_PROBABILITIES,
        0.0,
    );
    assert_eq!(preds, our_preds, "{what}: predictions differ");
    let worst = probs.iter().zip(&our_probs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    println!("onnxruntime vs eval, {what}: max |diff| of probabilities {worst:.1e}, all {n} predictions equal");
}

#[test]
#[ignore = "needs Python with numpy, onnx and onnxruntime (GPU_MNIST_PYTHON); run with --include-ignored"]
fn onnxruntime_runs_the_exported_shipped_model_like_eval() {
    let shipped = root().join("data/model.safetensors");
    let m = checkpoint::load(&shipped).expect("shipped model");
    agree(&m, 10_000, "the shipped model on MNIST's 10,000 test images");
    // The same accuracy as `gpu-mnist eval` prints.
    let eval = Command::new(env!("CARGO_BIN_EXE_gpu-mnist")).args(["eval", "--json"]).current_dir(root()).output();
    let eval: serde_json::Value = serde_json::from_slice(&eval.expect("eval runs").stdout).expect("eval JSON");
    let (_, preds) = ours(&m, 10_000);
    let test = gpu_mnist::data::load_split(&root().join("data/mnist"), "t10k").expect("test split");
    let correct = preds.iter().zip(&test.labels).filter(|(p, y)| **p == **y as u64).count();
    assert_eq!(eval["accuracy"].as_f64(), Some(correct as f64 / 10_000.0), "eval's accuracy");
}

#[test]
#[ignore = "needs Python with numpy, onnx and onnxruntime (GPU_MNIST_PYTHON); run with --include-ignored"]
fn onnxruntime_runs_deeper_models_every_activation_with_and_without_bias() {
    agree(&model(&[48, 21, 13], Activation::Sigmoid, true, 3), 500, "784-48-21-13-10 sigmoid");
    agree(&model(&[40], Activation::Elu, false, 5), 500, "784-40-10 elu without bias");
    agree(&model(&[33, 17], Activation::Relu, false, 6), 500, "784-33-17-10 relu without bias");
}
