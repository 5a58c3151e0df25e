//! PyTorch's layout: the safetensors file `safetensors.torch.save_file(model.state_dict(), ...)`
//! writes for an `nn.Sequential` of `nn.Linear` layers and activations: tensors `<i>.weight`
//! [fan_out, fan_in] and `<i>.bias` [fan_out] for the Linear layer at index `i` (the activations
//! between them hold no tensors), all under one prefix (`net.0.weight` ...). The weights are
//! transposed into this program's layout on load. The file cannot say its activation: the caller
//! names it.

use safetensors::tensor::{Dtype, SafeTensors};

use super::file::{Model, Provenance, RunRecord};
use crate::model::{Activation, Layer, MAX_HIDDEN_LAYERS, Params, Shape, transpose};

/// Whether the tensors are named like a state dict's (`....weight`).
pub(super) fn looks_like_torch(file: &SafeTensors) -> bool {
    let names = file.names();
    names.iter().any(|n| n.ends_with(".weight"))
}

/// A tensor's place: (prefix, index, "weight" or "bias").
fn place(name: &str) -> Option<(&str, usize, &str)> {
    let (rest, kind) = name.rsplit_once('.')?;
    let (prefix, index) = match rest.rsplit_once('.') {
        Some((p, i)) => (p, i),
        None => ("", rest),
    };
    Some((prefix, index.parse().ok()?, kind))
}

fn floats(file: &SafeTensors, name: &str) -> Result<(Vec<usize>, Vec<f32>), String> {
    let t = file.tensor(name).map_err(|e| format!("tensor \"{name}\": {e}"))?;
    if t.dtype() != Dtype::F32 {
        return Err(format!("tensor \"{name}\" is {:?}: save the model as float32 (model.float())", t.dtype()));
    }
    let values = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    Ok((t.shape().to_vec(), values))
}

/// The perceptron a PyTorch state dict holds, its hidden layers under `activation`.
pub(super) fn import(file: &SafeTensors, activation: Option<Activation>) -> Result<Model, String> {
    let activation = activation
        .ok_or("a PyTorch state dict does not say its activation: name it with --activation relu, sigmoid or elu")?;
    let mut names: Vec<(&str, usize, &str, String)> = Vec::new();
    for name in file.names() {
        let (prefix, index, kind) = place(name).ok_or_else(|| {
            format!("tensor \"{name}\" is not an nn.Sequential layer's (<index>.weight or <index>.bias)")
        })?;
        if kind != "weight" && kind != "bias" {
            return Err(format!(
                "tensor \"{name}\" is not an nn.Linear layer's: only Linear layers (and activations) are read"
            ));
        }
        names.push((prefix, index, kind, name.to_string()));
    }
    names.sort_by_key(|n| (n.1, n.2 == "bias"));
    if let Some(other) = names.iter().find(|n| n.0 != names[0].0) {
        return Err(format!(
            "tensors under two prefixes (\"{}\" and \"{}\"): one nn.Sequential is read",
            names[0].0, other.0
        ));
    }
    let indices: Vec<usize> = names.iter().filter(|n| n.2 == "weight").map(|n| n.1).collect();
    let bias = names.iter().any(|n| n.2 == "bias");
    if indices.len() < 2 {
        return Err(format!("{} Linear layer(s); a perceptron has at least one hidden layer", indices.len()));
    }
    if indices.len() > MAX_HIDDEN_LAYERS + 1 {
        return Err(format!("{} hidden layers, more than the {MAX_HIDDEN_LAYERS} supported", indices.len() - 1));
    }
    let mut layers = Vec::new();
    let mut widths = Vec::new();
    for &i in &indices {
        let name = |kind: &str| names.iter().find(|n| n.1 == i && n.2 == kind).map(|n| n.3.clone());
        let w_name = name("weight").unwrap_or_default();
        let (dims, w) = floats(file, &w_name)?;
        let &[fan_out, fan_in] = &dims[..] else {
            return Err(format!("tensor \"{w_name}\" has shape {dims:?}, not an nn.Linear weight [out, in]"));
        };
        if let Some(&below) = widths.last()
            && below != fan_in
        {
            return Err(format!("tensor \"{w_name}\" takes {fan_in} inputs, but the layer below gives {below}"));
        }
        if widths.is_empty() {
            widths.push(fan_in);
        }
        widths.push(fan_out);
        let b = match (bias, name("bias")) {
            (false, _) => vec![0.0; fan_out],
            (true, None) => return Err(format!("layer {i} has no bias, but others have one")),
            (true, Some(b_name)) => match floats(file, &b_name)? {
                (d, b) if d == [fan_out] => b,
                (d, _) => return Err(format!("tensor \"{b_name}\" has shape {d:?}, expected [{fan_out}]")),
            },
        };
        layers.push(Layer { w: transpose(&w, fan_out, fan_in), b });
    }
    if let Some(n) = names.iter().find(|n| n.2 == "bias" && !indices.contains(&n.1)) {
        return Err(format!("tensor \"{}\" is a bias without a weight", n.3));
    }
    let (d, k) = (widths[0], widths[widths.len() - 1]);
    let shape = Shape::new(d, &widths[1..widths.len() - 1], k, bias);
    if d == 0 || shape.hidden.contains(&0) || k < 2 {
        return Err(format!("layer sizes {} cannot make a classifier", shape.describe()));
    }
    let params = Params { shape, layers };
    let provenance = Provenance::imported("PyTorch state dict");
    Ok(Model { params, activation, provenance, run: RunRecord::default(), optimizer: None })
}
