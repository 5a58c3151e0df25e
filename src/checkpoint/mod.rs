//! Trained models as safetensors files, readable by PyTorch, NumPy and other tools; the format
//! is documented in docs/model-format.md.
//!
//! Tensors (f32, little-endian, row-major), layer by layer: `w1` [D, H1], `b1` [H1], ..., the
//! output layer's `wL` [H_last, K], `bL` [K] (L = hidden layers + 1); a model trained with
//! `--no-bias` has no `b` tensors. The forward pass is `softmax(act(act(x·w1 + b1)·w2 + b2)···wL
//! + bL)` with `x` the 784 grey levels of a 28x28 image scaled to [0, 1] (byte / 255, 0 =
//! background). An optimizer that keeps state adds its moments, shaped like the parameters:
//! `opt.m.<name>` (momentum's velocity, Adam's first moment) and for Adam `opt.v.<name>`.
//!
//! The header's `__metadata__` holds, as strings, the network (`METADATA_KEYS`), how the model
//! was made (`Provenance`) and the plan of the run that made it (`RunRecord`, keys `RUN_KEYS`),
//! so that `train --init-from` continues the run exactly.
//!
//! Saving is atomic: the bytes go to a temporary file beside the target, which is flushed to disk
//! and then renamed over it, so a crash or Ctrl-C never leaves a half-written model where a good
//! one was. Loading checks the format, every tensor's presence, dtype and shape against the
//! metadata, and refuses anything else with a one-line reason naming the file.

mod file;
mod metadata;
pub mod onnx;
/// ONNX's messages (generated), for tools and tests that build or read graphs.
#[rustfmt::skip]
pub mod onnx_proto;
mod torch;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors};

use crate::model::{Activation, Params};
use crate::optim::OptimizerState;
pub use file::{FORMAT, INPUT, MAX_MODEL_BYTES, Model, Provenance, RunRecord};
pub use metadata::{METADATA_KEYS, RUN_KEYS};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a safetensors file ({reason})", path.display())]
    NotSafetensors { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// The metadata a model file of `model` holds (network, provenance, the run's plan), by key.
pub fn metadata(model: &Model) -> BTreeMap<&'static str, String> {
    metadata::write(model)
}

fn tensor_bytes(t: &[f32]) -> Vec<u8> {
    t.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes `model` to `path` atomically. Optimizer state must come with its rule in the run
/// record (the file names the rule once, for both).
pub fn save(path: &Path, model: &Model) -> Result<(), ModelError> {
    let io = |source| ModelError::Io { path: path.to_path_buf(), source };
    if let Some(state) = model.optimizer.as_ref().filter(|s| !s.kind.moments().is_empty())
        && model.run.optimizer.map(|o| o.kind) != Some(state.kind)
    {
        let reason = format!("optimizer state of {} without that rule in the run's record", state.kind.name());
        return Err(ModelError::Invalid { path: path.to_path_buf(), reason });
    }
    let bytes = encode(model, &metadata::write(model));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io)
}

/// The safetensors encoding, written here rather than by `safetensors::serialize`, whose metadata
/// is a `HashMap` (a different key order, so different bytes, on every run): an 8-byte
/// little-endian header length, the JSON header (metadata, then each tensor's dtype, shape and
/// byte range) padded with spaces to a multiple of 8, then the tensors' little-endian f32 data.
fn encode(model: &Model, meta: &BTreeMap<&str, String>) -> Vec<u8> {
    let s = &model.params.shape;
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!(meta));
    let mut data = Vec::new();
    let mut groups = vec![(String::new(), &model.params)];
    if let Some(state) = model.optimizer.as_ref() {
        groups.extend(state.kind.moments().iter().map(|m| (format!("opt.{m}."), state.moment(m))));
    }
    for (prefix, params) in groups {
        for ((name, t), (_, shape)) in params.tensors().into_iter().zip(s.tensor_shapes()) {
            if s.bias || name.starts_with('w') {
                let start = data.len();
                data.extend(tensor_bytes(t));
                let entry = serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]});
                header.insert(format!("{prefix}{name}"), entry);
            }
        }
    }
    let mut text = serde_json::Value::Object(header).to_string();
    text.extend(std::iter::repeat_n(' ', (8 - text.len() % 8) % 8));
    let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
    bytes.extend(text.as_bytes());
    bytes.extend(data);
    bytes
}

/// What a model file may not say, given by the user.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// The hidden layers' activation, for a PyTorch state dict (which cannot say it); a file that
    /// says its own must agree.
    pub activation: Option<Activation>,
}

/// Reads and checks a model file: this program's safetensors, a PyTorch state dict in safetensors
/// (`torch.rs`), or an ONNX perceptron (`onnx.rs`).
pub fn load(path: &Path) -> Result<Model, ModelError> {
    load_with(path, LoadOptions::default())
}

/// `load`, with what the file may not say.
pub fn load_with(path: &Path, options: LoadOptions) -> Result<Model, ModelError> {
    let invalid = |reason: String| ModelError::Invalid { path: path.to_path_buf(), reason };
    let io = |source| ModelError::Io { path: path.to_path_buf(), source };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_MODEL_BYTES {
        return Err(invalid(format!("{len} bytes is larger than any model this program writes")));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    parse_with(&bytes, path, options)
}

/// What a run's plan and the model's provenance must agree on.
fn consistent(run: &RunRecord, provenance: &Provenance) -> Result<(), String> {
    match run.batch_origin.filter(|&o| o > provenance.iterations) {
        Some(origin) => {
            let steps = provenance.iterations;
            Err(format!("metadata \"batch_origin\" is {origin}, after the model's {steps} steps"))
        }
        None => Ok(()),
    }
}

/// Checks and decodes a model file's bytes; `path` names it in messages.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Model, ModelError> {
    parse_with(bytes, path, LoadOptions::default())
}

/// `parse`, with what the file may not say. Nothing is allocated from the metadata's layer sizes
/// before they are checked against the bytes really there.
pub fn parse_with(bytes: &[u8], path: &Path, options: LoadOptions) -> Result<Model, ModelError> {
    // Reasons quote the file's own strings (metadata values, tensor names, JSON): keep them one line.
    let one_line = |reason: String| reason.replace(['\n', '\r'], " ");
    let invalid = |reason: String| ModelError::Invalid { path: path.to_path_buf(), reason: one_line(reason) };
    let not_st = |e: safetensors::SafeTensorError| ModelError::NotSafetensors {
        path: path.to_path_buf(),
        reason: one_line(e.to_string()),
    };
    // Another tool's model, or an ONNX export: held to this program's own files' checks.
    let finite = |m: Model| {
        if !m.params.is_finite() {
            return Err("holds NaN or infinite weights".to_string());
        }
        consistent(&m.run, &m.provenance)?;
        Ok(m)
    };
    let agrees = |m: Model| match options.activation.filter(|&a| a != m.activation) {
        Some(a) => Err(invalid(format!("--activation {} differs from the model's {}", a.name(), m.activation.name()))),
        None => Ok(m),
    };
    let header = match SafeTensors::read_metadata(bytes) {
        Ok((_, header)) => header,
        Err(e) => match onnx::import(bytes) {
            onnx::Onnx::Model(model) => return (*model).and_then(finite).map_err(invalid).and_then(agrees),
            onnx::Onnx::Damaged(why) => {
                return Err(invalid(format!(
                    "not a safetensors file ({e}), nor a whole ONNX model ({why}): cut short?"
                )));
            }
            onnx::Onnx::Not => return Err(not_st(e)),
        },
    };
    let file = SafeTensors::deserialize(bytes).map_err(not_st)?;
    let meta = header.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(FORMAT) && torch::looks_like_torch(&file) {
        return torch::import(&file, options.activation).and_then(finite).map_err(invalid);
    }
    let (shape, activation) = metadata::read_network(&meta).map_err(invalid)?;
    let run = metadata::read_run(&meta).map_err(invalid)?;
    let provenance = metadata::read_provenance(&meta).map_err(invalid)?;
    consistent(&run, &provenance).map_err(invalid)?;
    // Optimizer state is there when any `opt.` tensor is; it is the saved rule's, whole.
    let kind = run.optimizer.map(|o| o.kind).unwrap_or_default();
    let has_state = !kind.moments().is_empty() && file.names().iter().any(|n| n.starts_with("opt."));
    let prefixes: Vec<String> = std::iter::once(String::new())
        .chain(kind.moments().iter().filter(|_| has_state).map(|m| format!("opt.{m}.")))
        .collect();
    // Every tensor is checked against the metadata before anything of the metadata's sizes is
    // allocated: the file must really hold what it claims.
    let mut views = Vec::new();
    let tensor_shapes = shape.tensor_shapes();
    let names = prefixes.iter().flat_map(|p| tensor_shapes.iter().map(move |(n, s)| (p, *n, s)));
    for (prefix, base, want) in names {
        if !shape.bias && base.starts_with('b') {
            continue;
        }
        let name = format!("{prefix}{base}");
        let view = file.tensor(&name).map_err(|_| invalid(format!("lacks tensor \"{name}\"")))?;
        if view.dtype() != Dtype::F32 {
            return Err(invalid(format!("tensor \"{name}\" is {:?}, expected F32", view.dtype())));
        }
        if view.shape() != want.as_slice() {
            return Err(invalid(format!(
                "tensor \"{name}\" has shape {:?}, but the metadata says {want:?}",
                view.shape()
            )));
        }
        views.push((name, view));
    }
    let expected: Vec<&str> = views.iter().map(|(n, _)| n.as_str()).collect();
    if let Some(extra) = file.names().into_iter().find(|n| !expected.contains(n)) {
        return Err(invalid(format!("unexpected tensor \"{extra}\"")));
    }
    let read = |prefix: &str| {
        let mut params = Params::zeros(shape.clone());
        for (name, t) in params.tensors_mut() {
            if let Some((_, view)) = views.iter().find(|(n, _)| *n == format!("{prefix}{name}")) {
                for (v, b) in t.iter_mut().zip(view.data().chunks_exact(4)) {
                    *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
        }
        params
    };
    let params = read("");
    if !params.is_finite() {
        return Err(invalid("holds NaN or infinite weights".into()));
    }
    let optimizer = match has_state {
        false => None,
        true => {
            let mut state = OptimizerState::new(kind, shape.clone());
            for m in kind.moments() {
                *state.moment_mut(m) = read(&format!("opt.{m}."));
                if !state.moment(m).is_finite() {
                    return Err(invalid(format!("optimizer state \"opt.{m}\" holds NaN or infinite values")));
                }
            }
            state.t = metadata::read_steps(&meta, kind).map_err(invalid)?;
            Some(state)
        }
    };
    agrees(Model { params, activation, provenance, run, optimizer })
}
