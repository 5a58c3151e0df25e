//! `gpu-mnist info`: what a model is and how it was made, as text or JSON.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::cli::InfoArgs;
use super::report::percent;
use gpu_mnist::checkpoint::{self, METADATA_KEYS, Model};

#[derive(Serialize)]
struct LayerInfo {
    inputs: usize,
    outputs: usize,
    parameters: usize,
    /// Floating-point operations per image: a multiply-add counts 2, a bias add 1.
    flops: usize,
}

#[derive(Serialize)]
struct Info {
    model: String,
    layers: Vec<LayerInfo>,
    activation: &'static str,
    bias: bool,
    parameters: usize,
    flops_per_image: usize,
    input: &'static str,
    /// How the model was made (dataset, steps, backend, test accuracy, version), and the plan
    /// of the run that made it: the model file's metadata beyond the network.
    made: BTreeMap<&'static str, String>,
}

fn info(model: &Model, name: String) -> Info {
    let s = &model.params.shape;
    let layers: Vec<LayerInfo> = (0..s.layer_count())
        .map(|l| {
            let (i, o) = s.layer(l);
            let b = if s.bias { o } else { 0 };
            LayerInfo { inputs: i, outputs: o, parameters: i * o + b, flops: 2 * i * o + b }
        })
        .collect();
    let network = ["format", "inputs", "hidden", "classes", "activation", "bias", "input"];
    let mut made = checkpoint::metadata(model);
    made.retain(|k, v| !(network.contains(k) || v.is_empty() || v == "NaN"));
    Info {
        model: name,
        parameters: s.parameter_count(),
        flops_per_image: layers.iter().map(|l| l.flops).sum(),
        layers,
        activation: model.activation.name(),
        bias: s.bias,
        input: checkpoint::INPUT,
        made,
    }
}

pub fn run(args: &InfoArgs) -> Result<()> {
    let path = gpu_mnist::data::source::bundled(&args.model, "data/model.safetensors");
    let model = checkpoint::load_with(&path, args.model_options.load())?;
    let i = info(&model, path.display().to_string());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&i)?);
        return Ok(());
    }
    let s = &model.params.shape;
    let bias = if i.bias { "with bias" } else { "without bias" };
    println!("{}: {} perceptron, {} hidden layers, {bias}", i.model, s.describe(), i.activation);
    println!("  {:<8} {:>13} {:>12} {:>12}", "layer", "shape", "parameters", "FLOPs/image");
    for (l, layer) in i.layers.iter().enumerate() {
        let shape = format!("{} -> {}", layer.inputs, layer.outputs);
        println!("  {:<8} {shape:>13} {:>12} {:>12}", l + 1, layer.parameters, layer.flops);
    }
    println!("  {:<8} {:>13} {:>12} {:>12}", "total", "", i.parameters, i.flops_per_image);
    println!("  (FLOPs: a multiply-add counts 2, a bias add 1; the activations and softmax are not counted)");
    println!("input: {}", i.input);
    let p = &model.provenance;
    if p.iterations > 0 || !p.dataset.is_empty() {
        let acc = if p.test_accuracy.is_nan() { "not measured".into() } else { percent(p.test_accuracy) };
        println!(
            "made: {} steps on {} by {} (gpu-mnist {}); test accuracy {acc}",
            p.iterations, p.dataset, p.backend, p.version
        );
    } else {
        println!("made: {}; how it was trained is not recorded", p.backend);
    }
    let run: Vec<String> =
        i.made.iter().filter(|(k, _)| !METADATA_KEYS.contains(k)).map(|(k, v)| format!("{k} {v}")).collect();
    if !run.is_empty() {
        println!("run: {}", run.join(", "));
    }
    Ok(())
}
