//! Models as ONNX graphs: `export` writes one that onnxruntime, Netron and other tools read, and
//! `import` reads it back, and the perceptrons other tools export.
//!
//! The graph `export` writes (opset `OPSET`): input `pixels` [batch, D] f32, prepared as `INPUT`
//! says; for each layer l, `Gemm(x, w<l>, b<l>)` (without bias `MatMul(x, w<l>)`), then on hidden
//! layers the activation (`Relu`, `Sigmoid`, or `Elu` with alpha 1); after the last layer
//! `Softmax(axis = 1)` into output `probabilities` [batch, K]. Weights are initializers in this
//! program's layout (w [fan_in, fan_out]); the model file's metadata travels in `metadata_props`.
//!
//! `import` reads chains of `Gemm` (any transB) or `MatMul` [+ `Add`] layers with one activation
//! between them, an optional `Flatten` first and an optional `Softmax` last (the model always ends
//! in a softmax, so a graph that ends in logits predicts the same); anything else is refused with
//! the node it met. It allocates only what the file's own tensors hold.

use std::collections::HashMap;

use prost::Message;

use super::file::{FORMAT, INPUT, Model, Provenance, RunRecord};
use super::metadata;
use super::onnx_proto as pb;
use crate::model::{Activation, Layer, MAX_HIDDEN_LAYERS, Params, Shape, transpose};

/// The ONNX operator set the export uses (Softmax over one axis, as since opset 13).
pub const OPSET: i64 = 13;
/// The IR version that goes with `OPSET` (ONNX 1.8).
const IR_VERSION: i64 = 7;
pub const INPUT_NAME: &str = "pixels";
pub const OUTPUT_NAME: &str = "probabilities";
const FLOAT: i32 = pb::tensor_proto::DataType::Float as i32;

/// `model` as the bytes of an ONNX file.
pub fn export(model: &Model) -> Vec<u8> {
    let s = &model.params.shape;
    let mut nodes = Vec::new();
    let mut initializers = Vec::new();
    let mut x = INPUT_NAME.to_string();
    let last = s.layer_count() - 1;
    for (l, layer) in model.params.layers.iter().enumerate() {
        let (fan_in, fan_out) = s.layer(l);
        let (w, b, z) = (format!("w{}", l + 1), format!("b{}", l + 1), format!("z{}", l + 1));
        initializers.push(tensor(&w, &[fan_in, fan_out], &layer.w));
        if s.bias {
            initializers.push(tensor(&b, &[fan_out], &layer.b));
            nodes.push(node("Gemm", &[&x, &w, &b], &z, vec![]));
        } else {
            nodes.push(node("MatMul", &[&x, &w], &z, vec![]));
        }
        x = if l < last {
            let a = format!("a{}", l + 1);
            let (op, attrs) = match model.activation {
                Activation::Relu => ("Relu", vec![]),
                Activation::Sigmoid => ("Sigmoid", vec![]),
                Activation::Elu => ("Elu", vec![float_attr("alpha", 1.0)]),
            };
            nodes.push(node(op, &[&z], &a, attrs));
            a
        } else {
            z
        };
    }
    nodes.push(node("Softmax", &[&x], OUTPUT_NAME, vec![int_attr("axis", 1)]));
    let meta = metadata::write(model).into_iter().filter(|(k, _)| *k != "adam_t");
    let graph = pb::GraphProto {
        name: Some(format!("gpu-mnist {}", s.describe())),
        node: nodes,
        initializer: initializers,
        input: vec![value_info(INPUT_NAME, s.d)],
        output: vec![value_info(OUTPUT_NAME, s.k)],
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![pb::OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
        producer_name: Some("gpu-mnist".into()),
        producer_version: Some(model.provenance.version.clone()),
        doc_string: Some(format!("{} perceptron; input: {INPUT}", s.describe())),
        graph: Some(graph),
        metadata_props: meta.map(|(k, v)| entry(k, &v)).collect(),
        ..Default::default()
    }
    .encode_to_vec()
}

fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<pb::AttributeProto>) -> pb::NodeProto {
    pb::NodeProto {
        name: Some(format!("{op} -> {output}")),
        op_type: Some(op.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

fn float_attr(name: &str, v: f32) -> pb::AttributeProto {
    let ty = Some(pb::attribute_proto::AttributeType::Float as i32);
    pb::AttributeProto { name: Some(name.into()), f: Some(v), r#type: ty, ..Default::default() }
}

fn int_attr(name: &str, v: i64) -> pb::AttributeProto {
    let ty = Some(pb::attribute_proto::AttributeType::Int as i32);
    pb::AttributeProto { name: Some(name.into()), i: Some(v), r#type: ty, ..Default::default() }
}

fn tensor(name: &str, dims: &[usize], data: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(FLOAT),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// A [batch, width] f32 tensor, the batch named "batch".
fn value_info(name: &str, width: usize) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let dim = |value| Dimension { value: Some(value), ..Default::default() };
    let shape =
        pb::TensorShapeProto { dim: vec![dim(Value::DimParam("batch".into())), dim(Value::DimValue(width as i64))] };
    let tensor = pb::type_proto::Tensor { elem_type: Some(FLOAT), shape: Some(shape) };
    let ty = pb::TypeProto { value: Some(pb::type_proto::Value::TensorType(tensor)), ..Default::default() };
    pb::ValueInfoProto { name: Some(name.into()), r#type: Some(ty), ..Default::default() }
}

fn entry(key: &str, value: &str) -> pb::StringStringEntryProto {
    pb::StringStringEntryProto { key: Some(key.into()), value: Some(value.into()) }
}

/// How `bytes` read as ONNX: a model with a graph, a damaged one (ONNX models begin with field
/// 1, the IR version), or something else.
pub(super) enum Onnx {
    Model(Box<Result<Model, String>>),
    Damaged(String),
    Not,
}

/// The perceptron an ONNX file holds.
pub(super) fn import(bytes: &[u8]) -> Onnx {
    match pb::ModelProto::decode(bytes) {
        Ok(m) if m.graph.as_ref().is_some_and(|g| !g.node.is_empty()) => Onnx::Model(Box::new(read(m))),
        Err(e) if bytes.first() == Some(&0x08) => Onnx::Damaged(e.to_string()),
        _ => Onnx::Not,
    }
}

fn read(model: pb::ModelProto) -> Result<Model, String> {
    // Fields are written in order: a file cut after its graph lacks the opsets (and metadata).
    let default_domain = |d: &Option<String>| matches!(d.as_deref(), None | Some("") | Some("ai.onnx"));
    if !model.opset_import.iter().any(|o| default_domain(&o.domain)) {
        return Err("an ONNX model without ONNX's operator set (cut short?)".into());
    }
    let graph = model.graph.ok_or("an ONNX model without a graph")?;
    let mut names = std::collections::HashSet::new();
    if let Some(t) = graph.initializer.iter().find(|t| !names.insert(t.name.as_deref().unwrap_or(""))) {
        return Err(format!("two stored tensors named \"{}\"", t.name.as_deref().unwrap_or("")));
    }
    let inits: HashMap<&str, &pb::TensorProto> =
        graph.initializer.iter().map(|t| (t.name.as_deref().unwrap_or(""), t)).collect();
    let data_inputs: Vec<&str> =
        graph.input.iter().filter_map(|v| v.name.as_deref()).filter(|n| !inits.contains_key(n)).collect();
    let [input] = data_inputs[..] else {
        return Err(format!("the graph has {} data inputs; a perceptron has one", data_inputs.len()));
    };
    let mut chain = Chain { x: input.to_string(), inits: &inits, layers: vec![], biases: vec![], acts: vec![] };
    let mut nodes = graph.node.iter().enumerate().peekable();
    let mut softmax = false;
    while let Some((i, n)) = nodes.next() {
        let op = n.op_type.as_deref().unwrap_or("");
        let at = |what: String| format!("ONNX node {i} ({op}): {what}");
        if softmax {
            return Err(at("comes after the Softmax, which must be last".into()));
        }
        if !default_domain(&n.domain) {
            return Err(at(format!("an operator of domain \"{}\", not ONNX's", n.domain.as_deref().unwrap_or(""))));
        }
        if n.input.first().map(String::as_str) != Some(chain.x.as_str()) || n.output.len() != 1 {
            return Err(at("does not continue the chain of layers from the input".into()));
        }
        // An Add right after a MatMul is its bias.
        let next_add = nodes.next_if(|(_, a)| op == "MatMul" && a.op_type.as_deref() == Some("Add"));
        match op {
            "Gemm" => chain.gemm(n).map_err(at)?,
            "MatMul" => chain.matmul(n, next_add.map(|(_, a)| a)).map_err(at)?,
            "Relu" | "Sigmoid" | "Elu" => chain.activation(n, op).map_err(at)?,
            "Flatten" if chain.layers.is_empty() && attr_i(n, "axis", 1) == 1 => {}
            "Flatten" => return Err(at("only a Flatten with axis 1, before the first layer, is read".into())),
            "Softmax" if [1, -1].contains(&attr_i(n, "axis", -1)) => softmax = true,
            "Softmax" => return Err(at(format!("a Softmax over axis {}, not the classes'", attr_i(n, "axis", -1)))),
            _ => {
                return Err(at(
                    "not read here: only Gemm, MatMul + Add, Relu, Sigmoid, Elu, Flatten and Softmax".into()
                ));
            }
        }
        chain.x = next_add.map_or(&n.output[0], |(_, a)| &a.output[0]).clone();
    }
    let outputs: Vec<&str> = graph.output.iter().filter_map(|v| v.name.as_deref()).collect();
    if outputs != [chain.x.as_str()] {
        return Err(format!("the graph's outputs {outputs:?} are not the end of its chain of layers ({})", chain.x));
    }
    let (params, activation) = chain.finish()?;
    let meta: HashMap<String, String> = model
        .metadata_props
        .iter()
        .map(|e| (e.key.clone().unwrap_or_default(), e.value.clone().unwrap_or_default()))
        .collect();
    if meta.get("format").map(String::as_str) == Some(FORMAT) {
        let (shape, saved) = metadata::read_network(&meta)?;
        if shape != params.shape || saved != activation {
            return Err(format!(
                "its metadata describes {} {}, its graph {} {}",
                shape.describe(),
                saved.name(),
                params.shape.describe(),
                activation.name()
            ));
        }
        let (provenance, run) = (metadata::read_provenance(&meta)?, metadata::read_run(&meta)?);
        return Ok(Model { params, activation, provenance, run, optimizer: None });
    }
    let provenance = Provenance::imported(&format!("ONNX from {}", model.producer_name.as_deref().unwrap_or("?")));
    Ok(Model { params, activation, provenance, run: RunRecord::default(), optimizer: None })
}

fn attr<'a>(n: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    n.attribute.iter().find(|a| a.name.as_deref() == Some(name))
}

fn attr_i(n: &pb::NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).and_then(|a| a.i).unwrap_or(default)
}

fn attr_f(n: &pb::NodeProto, name: &str, default: f32) -> f32 {
    attr(n, name).and_then(|a| a.f).unwrap_or(default)
}

/// The layers read so far, and the name of the tensor the next node must take.
struct Chain<'a> {
    x: String,
    inits: &'a HashMap<&'a str, &'a pb::TensorProto>,
    /// Each layer's (fan_in, fan_out, w as fan_in x fan_out).
    layers: Vec<(usize, usize, Vec<f32>)>,
    biases: Vec<Option<Vec<f32>>>,
    acts: Vec<Activation>,
}

impl Chain<'_> {
    /// Initializer `name`'s dims and values (f32, raw or listed).
    fn tensor(&self, name: Option<&String>) -> Result<(Vec<usize>, Vec<f32>), String> {
        let name = name.map(String::as_str).unwrap_or("");
        let t = self.inits.get(name).ok_or_else(|| format!("\"{name}\" is not a stored tensor (initializer)"))?;
        if t.data_type != Some(FLOAT) {
            return Err(format!("tensor \"{name}\" is not float32"));
        }
        let dims: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<_, _>>()
            .map_err(|_| format!("tensor \"{name}\" has a negative dimension"))?;
        let count =
            dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or(format!("tensor \"{name}\" is too large"))?;
        let values: Vec<f32> = match &t.raw_data {
            Some(raw) => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            None => t.float_data.clone(),
        };
        if values.len() != count || t.raw_data.as_ref().is_some_and(|r| r.len() % 4 != 0) {
            return Err(format!("tensor \"{name}\" holds {} values for dims {dims:?}", values.len()));
        }
        Ok((dims, values))
    }

    fn push(
        &mut self,
        dims: &[usize],
        w: Vec<f32>,
        transposed: bool,
        bias: Option<(Vec<usize>, Vec<f32>)>,
    ) -> Result<(), String> {
        let &[rows, cols] = dims else { return Err(format!("weights of dims {dims:?}, not a matrix")) };
        let (fan_in, fan_out) = if transposed { (cols, rows) } else { (rows, cols) };
        let w = if transposed { transpose(&w, rows, cols) } else { w };
        if let Some(&(_, below, _)) = self.layers.last()
            && below != fan_in
        {
            return Err(format!("takes {fan_in} inputs, but the layer below gives {below}"));
        }
        if self.layers.len() != self.acts.len() {
            return Err("two layers without an activation between them".into());
        }
        let bias = match bias {
            None => None,
            Some((d, b)) if d == [fan_out] || d == [1, fan_out] => Some(b),
            Some((d, _)) => return Err(format!("a bias of dims {d:?} for {fan_out} outputs")),
        };
        self.layers.push((fan_in, fan_out, w));
        self.biases.push(bias);
        Ok(())
    }

    fn gemm(&mut self, n: &pb::NodeProto) -> Result<(), String> {
        if attr_f(n, "alpha", 1.0) != 1.0 || attr_f(n, "beta", 1.0) != 1.0 || attr_i(n, "transA", 0) != 0 {
            return Err("only alpha = beta = 1 and transA = 0 are read".into());
        }
        let (dims, w) = self.tensor(n.input.get(1))?;
        let bias = n.input.get(2).filter(|c| !c.is_empty()).map(|c| self.tensor(Some(c))).transpose()?;
        self.push(&dims, w, attr_i(n, "transB", 0) == 1, bias)
    }

    fn matmul(&mut self, n: &pb::NodeProto, add: Option<&pb::NodeProto>) -> Result<(), String> {
        let (dims, w) = self.tensor(n.input.get(1))?;
        let bias = match add {
            None => None,
            Some(a) => {
                let other = a.input.iter().find(|i| **i != n.output[0]);
                if a.input.len() != 2 || !a.input.contains(&n.output[0]) || a.output.len() != 1 {
                    return Err("the Add after it is not its bias".into());
                }
                Some(self.tensor(other)?)
            }
        };
        self.push(&dims, w, false, bias)
    }

    fn activation(&mut self, n: &pb::NodeProto, op: &str) -> Result<(), String> {
        let act = match op {
            "Relu" => Activation::Relu,
            "Sigmoid" => Activation::Sigmoid,
            _ if attr_f(n, "alpha", 1.0) == 1.0 => Activation::Elu,
            _ => return Err("only Elu with alpha = 1 is read".into()),
        };
        if self.acts.len() + 1 != self.layers.len() {
            return Err("an activation that does not follow a layer".into());
        }
        self.acts.push(act);
        Ok(())
    }

    fn finish(mut self) -> Result<(Params, Activation), String> {
        if self.layers.len() < 2 || self.acts.len() + 1 != self.layers.len() {
            return Err("a perceptron has at least one hidden layer, with an activation after each".into());
        }
        let activation = self.acts[0];
        if self.acts.iter().any(|&a| a != activation) {
            return Err("its hidden layers use different activations; every layer here uses one".into());
        }
        if self.layers.len() > MAX_HIDDEN_LAYERS + 1 {
            return Err(format!(
                "{} hidden layers, more than the {MAX_HIDDEN_LAYERS} supported",
                self.layers.len() - 1
            ));
        }
        let bias = self.biases[0].is_some();
        if self.biases.iter().any(|b| b.is_some() != bias) {
            return Err("some layers have a bias and others not".into());
        }
        let widths: Vec<usize> = self.layers.iter().map(|l| l.1).collect();
        let (d, k) = (self.layers[0].0, *widths.last().unwrap_or(&0));
        let shape = Shape::new(d, &widths[..widths.len() - 1], k, bias);
        if d == 0 || shape.hidden.contains(&0) || k < 2 {
            return Err(format!("layer sizes {} cannot make a classifier", shape.describe()));
        }
        let layers = self
            .layers
            .drain(..)
            .zip(self.biases)
            .map(|((_, fan_out, w), b)| Layer { w, b: b.unwrap_or_else(|| vec![0.0; fan_out]) })
            .collect();
        Ok((Params { shape, layers }, activation))
    }
}
