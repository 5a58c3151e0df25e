//! Trained models as safetensors files, readable by PyTorch, NumPy and other tools.
//!
//! Tensors (f32, little-endian, row-major), layer by layer: `w1` [D, H1], `b1` [H1], ..., the
//! output layer's `wL` [H_last, K], `bL` [K] (L = hidden layers + 1; metadata `hidden` lists the
//! widths, "128" or "256,128"); a model trained with `--no-bias` has no `b` tensors. The forward
//! pass is `softmax(act(act(x·w1 + b1)·w2 + b2)···wL + bL)` with `x` the 784 grey levels of a
//! 28x28 image scaled to [0, 1] (byte / 255, 0 = background). The header's `__metadata__` holds, as strings, what is
//! needed to rebuild and trust the model: see `METADATA_KEYS`.
//!
//! A model trained with momentum, Nesterov or Adam also carries the optimizer's state, so that
//! `--init-from` continues where training stopped: the tensors `opt.m.<name>` (momentum's
//! velocity, Adam's first moment) and for Adam `opt.v.<name>`, shaped like the parameters, and
//! the metadata keys of `OPTIMIZER_KEYS` (`optimizer`, its hyper-parameters, Adam's step count
//! `adam_t`). Plain descent keeps no state and writes none of them. A mini-batch run also
//! records its `batch_size`, which a resumed run keeps.
//!
//! Saving is atomic: the bytes go to a temporary file beside the target, which is flushed to disk
//! and then renamed over it, so a crash or Ctrl-C never leaves a half-written model where a good
//! one was. Loading checks the format, every tensor's presence, dtype and shape against the
//! metadata, and refuses anything else with a one-line reason naming the file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors};

use crate::model::{Activation, MAX_HIDDEN_LAYERS, Params, Shape};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerState};

/// The value of the `format` metadata key this program writes and reads.
pub const FORMAT: &str = "gpu-mnist-mlp/1";

/// How inputs are prepared, as stored in the `input` metadata key.
pub const INPUT: &str = "grey levels of a 28x28 image, row-major, byte/255 in [0,1], 0 = background";

/// Metadata keys, in the order they are documented in the README.
pub const METADATA_KEYS: [&str; 14] = [
    "format",
    "inputs",
    "hidden",
    "classes",
    "activation",
    "bias",
    "input",
    "dataset",
    "iterations",
    "lr",
    "seed",
    "backend",
    "test_accuracy",
    "version",
];

/// Metadata keys of a model with optimizer state (see the module documentation).
pub const OPTIMIZER_KEYS: [&str; 7] = ["optimizer", "momentum", "beta1", "beta2", "eps", "weight_decay", "adam_t"];

/// Refuse files larger than this before reading them (a one-hidden-layer model at H = 65535 is
/// ~206 MB); `train` refuses to start a network whose file would be larger.
pub const MAX_MODEL_BYTES: u64 = 1 << 30;

/// How a model was made.
#[derive(Clone, Debug, PartialEq)]
pub struct Provenance {
    pub dataset: String,
    pub iterations: usize,
    pub lr: f32,
    pub seed: u64,
    /// Backend and device, e.g. "cpu (2 threads)".
    pub backend: String,
    /// Test accuracy in [0, 1] when training ended.
    pub test_accuracy: f64,
    /// The `gpu-mnist` version that wrote the file.
    pub version: String,
    /// Rows per step of mini-batch training (`None`: full batches).
    pub batch_size: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub params: Params,
    pub activation: Activation,
    pub provenance: Provenance,
    /// The optimizer's rule and state, for a rule that keeps state (not plain descent).
    pub optimizer: Option<SavedOptimizer>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SavedOptimizer {
    pub config: OptimizerConfig,
    pub state: OptimizerState,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a safetensors file ({reason})", path.display())]
    NotSafetensors { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

fn tensor_bytes(t: &[f32]) -> Vec<u8> {
    t.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes `model` to `path` atomically.
pub fn save(path: &Path, model: &Model) -> Result<(), ModelError> {
    let io = |source| ModelError::Io { path: path.to_path_buf(), source };
    let s = &model.params.shape;
    let p = &model.provenance;
    // A BTreeMap and tensors in a fixed order: the same model always makes the same bytes.
    let mut meta: BTreeMap<&str, String> = BTreeMap::from([
        ("format", FORMAT.to_string()),
        ("inputs", s.d.to_string()),
        ("hidden", s.hidden_list()),
        ("classes", s.k.to_string()),
        ("activation", model.activation.name().to_string()),
        ("bias", s.bias.to_string()),
        ("input", INPUT.to_string()),
        ("dataset", p.dataset.clone()),
        ("iterations", p.iterations.to_string()),
        ("lr", p.lr.to_string()),
        ("seed", p.seed.to_string()),
        ("backend", p.backend.clone()),
        ("test_accuracy", format!("{:.4}", p.test_accuracy)),
        ("version", p.version.clone()),
    ]);
    if let Some(b) = p.batch_size {
        meta.insert("batch_size", b.to_string());
    }
    if let Some(SavedOptimizer { config: c, state }) =
        model.optimizer.as_ref().filter(|o| o.state.kind != Optimizer::Gd)
    {
        meta.insert("optimizer", state.kind.name().to_string());
        meta.insert("weight_decay", c.weight_decay.to_string());
        match state.kind {
            Optimizer::Adam => {
                meta.insert("beta1", c.beta1.to_string());
                meta.insert("beta2", c.beta2.to_string());
                meta.insert("eps", c.eps.to_string());
                meta.insert("adam_t", state.t.to_string());
            }
            _ => {
                meta.insert("momentum", c.momentum.to_string());
            }
        }
    }
    let bytes = encode(model, &meta);
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
    if let Some(o) = model.optimizer.as_ref() {
        groups.extend(o.state.kind.moments().iter().map(|m| (format!("opt.{m}."), o.state.moment(m))));
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

/// Reads and checks a model file.
pub fn load(path: &Path) -> Result<Model, ModelError> {
    let invalid = |reason: String| ModelError::Invalid { path: path.to_path_buf(), reason };
    let io = |source| ModelError::Io { path: path.to_path_buf(), source };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_MODEL_BYTES {
        return Err(invalid(format!("{len} bytes is larger than any model this program writes")));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    parse(&bytes, path)
}

/// Checks and decodes a model file's bytes; `path` names it in messages. Nothing is allocated
/// from the metadata's layer sizes before they are checked against the bytes really there.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Model, ModelError> {
    // Reasons quote the file's own strings (metadata values, tensor names, JSON): keep them one line.
    let one_line = |reason: String| reason.replace(['\n', '\r'], " ");
    let invalid = |reason: String| ModelError::Invalid { path: path.to_path_buf(), reason: one_line(reason) };
    let not_st = |e: safetensors::SafeTensorError| ModelError::NotSafetensors {
        path: path.to_path_buf(),
        reason: one_line(e.to_string()),
    };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(not_st)?;
    let file = SafeTensors::deserialize(bytes).map_err(not_st)?;
    let meta = header.metadata().clone().unwrap_or_default();
    let get = |key: &str| {
        meta.get(key).ok_or_else(|| invalid(format!("metadata lacks \"{key}\" (not written by gpu-mnist?)")))
    };
    let num = |key: &str| -> Result<usize, ModelError> {
        get(key)?.parse().map_err(|_| invalid(format!("metadata \"{key}\" is not a whole number")))
    };
    if get("format")? != FORMAT {
        return Err(invalid(format!("format \"{}\", expected \"{FORMAT}\"", get("format")?)));
    }
    let bias = match get("bias")?.as_str() {
        "true" => true,
        "false" => false,
        other => return Err(invalid(format!("metadata \"bias\" is \"{other}\", expected true or false"))),
    };
    // "hidden" is one width, or several separated by commas for a deeper network.
    let hidden: Vec<usize> = get("hidden")?
        .split(',')
        .map(|w| w.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|_| invalid("metadata \"hidden\" is not a list of whole numbers".into()))?;
    if hidden.len() > MAX_HIDDEN_LAYERS {
        return Err(invalid(format!("{} hidden layers, more than the {MAX_HIDDEN_LAYERS} supported", hidden.len())));
    }
    let shape = Shape::new(num("inputs")?, &hidden, num("classes")?, bias);
    if shape.d == 0 || shape.hidden.contains(&0) || shape.k < 2 {
        return Err(invalid(format!("layer sizes {} cannot make a classifier", shape.describe())));
    }
    let activation = match get("activation")?.as_str() {
        "sigmoid" => Activation::Sigmoid,
        "relu" => Activation::Relu,
        "elu" => Activation::Elu,
        other => return Err(invalid(format!("unknown activation \"{other}\""))),
    };
    let kind = match meta.get("optimizer") {
        None => Optimizer::Gd,
        Some(name) => Optimizer::from_name(name).ok_or_else(|| invalid(format!("unknown optimizer \"{name}\"")))?,
    };
    let prefixes: Vec<String> =
        std::iter::once(String::new()).chain(kind.moments().iter().map(|m| format!("opt.{m}."))).collect();
    // Every tensor is checked against the metadata before anything of the metadata's sizes is
    // allocated: the file must really hold what it claims.
    let mut views = Vec::new();
    let tensor_shapes = shape.tensor_shapes();
    let names = prefixes.iter().flat_map(|p| tensor_shapes.iter().map(move |(n, s)| (p, *n, s)));
    for (prefix, base, want) in names {
        if !bias && base.starts_with('b') {
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
    let optimizer = match kind {
        Optimizer::Gd => None,
        _ => {
            let mut state = OptimizerState::new(kind, shape.clone());
            for m in kind.moments() {
                *state.moment_mut(m) = read(&format!("opt.{m}."));
                if !state.moment(m).is_finite() {
                    return Err(invalid(format!("optimizer state \"opt.{m}\" holds NaN or infinite values")));
                }
            }
            if kind == Optimizer::Adam {
                state.t = num("adam_t")? as u64;
            }
            let real = |key: &str, default: f32| meta.get(key).and_then(|v| v.parse().ok()).unwrap_or(default);
            let d = OptimizerConfig::default();
            let config = OptimizerConfig {
                kind,
                momentum: real("momentum", d.momentum),
                beta1: real("beta1", d.beta1),
                beta2: real("beta2", d.beta2),
                eps: real("eps", d.eps),
                weight_decay: real("weight_decay", d.weight_decay),
            };
            Some(SavedOptimizer { config, state })
        }
    };
    let text = |key: &str| meta.get(key).cloned().unwrap_or_default();
    let provenance = Provenance {
        dataset: text("dataset"),
        iterations: text("iterations").parse().unwrap_or(0),
        lr: text("lr").parse().unwrap_or(f32::NAN),
        seed: text("seed").parse().unwrap_or(0),
        backend: text("backend"),
        test_accuracy: text("test_accuracy").parse().unwrap_or(f64::NAN),
        version: text("version"),
        batch_size: match meta.get("batch_size") {
            None => None,
            Some(b) => match b.parse() {
                Ok(b) if b > 0 => Some(b),
                _ => return Err(invalid(format!("metadata \"batch_size\" is \"{b}\", not a whole number above 0"))),
            },
        },
    };
    Ok(Model { params, activation, provenance, optimizer })
}
