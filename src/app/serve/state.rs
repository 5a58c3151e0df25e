//! What the page asks about, computed on the CPU: the model shown (the file's, or the live run's
//! latest report point), analyses of one image, the first layer's weight tiles and the test
//! set's confusion matrix and surest mistakes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine;
use serde::Serialize;
use serde_json::{Value, json};

use super::live::Live;
use gpu_mnist::checkpoint::{self, Model};
use gpu_mnist::cpu::fast::{self, SparseRows};
use gpu_mnist::cpu::reference;
use gpu_mnist::data::Dataset;
use gpu_mnist::digit;
use gpu_mnist::metrics::{self, Evaluation};
use gpu_mnist::model::{Activation, Params};
use gpu_mnist::plots;

/// The surest mistakes the test-set summary lists.
pub const MISTAKES: usize = 32;

/// The model the page shows; `version` counts the weights it has had (a live run's report points).
pub struct Shown {
    pub name: String,
    pub params: Params,
    pub activation: Activation,
    pub made: BTreeMap<&'static str, String>,
    pub version: u64,
}

impl Shown {
    pub fn new(name: String, model: &Model) -> Shown {
        let mut made = checkpoint::metadata(model);
        let network = ["format", "inputs", "hidden", "classes", "activation", "bias", "input"];
        made.retain(|k, v| !(network.contains(k) || v.is_empty() || v == "NaN"));
        Shown { name, params: model.params.clone(), activation: model.activation, made, version: 1 }
    }
}

pub struct State {
    pub model: RwLock<Shown>,
    pub classes: Vec<String>,
    pub test: Option<Dataset>,
    /// The test-set summary of one version of the weights.
    summary: Mutex<Option<(u64, Arc<Value>)>>,
    pub live: Option<Live>,
}

/// Why an image cannot be analysed: the page shows the message.
#[derive(Debug)]
pub struct Refused(pub String);

#[derive(Serialize)]
pub struct Analysis {
    image: Vec<u8>,
    inverted: bool,
    prediction: usize,
    class: String,
    probabilities: Vec<f32>,
    layers: Vec<Vec<f32>>,
    version: u64,
    index: Option<usize>,
    label: Option<u8>,
}

impl State {
    pub fn new(shown: Shown, classes: Vec<String>, test: Option<Dataset>, live: Option<Live>) -> State {
        State { model: RwLock::new(shown), classes, test, summary: Mutex::new(None), live }
    }

    fn shown(&self) -> std::sync::RwLockReadGuard<'_, Shown> {
        // A panic while holding the lock cannot leave a half-written model: writers swap whole values.
        self.model.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the weights shown (a live run's report point).
    pub fn update(&self, params: Params) {
        let mut m = self.model.write().unwrap_or_else(|e| e.into_inner());
        m.params = params;
        m.version += 1;
    }

    pub fn version(&self) -> u64 {
        self.shown().version
    }

    pub fn model_json(&self) -> Value {
        let m = self.shown();
        let s = &m.params.shape;
        json!({
            "name": m.name,
            "live": self.live.is_some(),
            "widths": s.widths(),
            "activation": m.activation.name(),
            "bias": s.bias,
            "parameters": s.parameter_count(),
            "classes": self.classes,
            "side": side(s.d),
            "made": m.made,
            "version": m.version,
        })
    }

    /// The first layer's incoming weights, unit-major (`tiles[u * D + i]`), in base64 f32.
    pub fn weights_json(&self) -> Value {
        let m = self.shown();
        let (d, h) = m.params.shape.layer(0);
        let w = &m.params.layers[0].w;
        let tiles = gpu_mnist::model::transpose(w, d, h);
        let scale = w.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let contribution = plots::contributions(&m.params);
        let bytes: &[u8] = bytemuck::cast_slice(&tiles);
        json!({
            "version": m.version,
            "units": h,
            "inputs": d,
            "side": side(d),
            "scale": scale,
            "order": plots::units_by_contribution(&m.params),
            "contribution": contribution,
            "tiles": base64::engine::general_purpose::STANDARD.encode(bytes),
        })
    }

    /// An image file's digit, prepared as `predict` prepares it.
    pub fn analyse_image(&self, bytes: &[u8]) -> Result<Analysis, Refused> {
        let img = digit::decode(bytes).map_err(|e| Refused(e.to_string()))?;
        let prepared = digit::prepare(&img).map_err(|e| Refused(e.to_string()))?;
        self.analyse(&prepared.pixels, prepared.inverted, None, None)
    }

    /// Grey levels the network reads as they are (0 = background), `side` x `side`.
    pub fn analyse(
        &self,
        pixels: &[u8],
        inverted: bool,
        index: Option<usize>,
        label: Option<u8>,
    ) -> Result<Analysis, Refused> {
        let m = self.shown();
        let d = m.params.shape.d;
        if pixels.len() != d {
            return Err(Refused(format!("the image has {} pixels; the model reads {d}", pixels.len())));
        }
        let (layers, probabilities) = reference::activations(&m.params, m.activation, &reference::scale_pixels(pixels));
        let prediction = metrics::argmax(&probabilities);
        Ok(Analysis {
            image: pixels.to_vec(),
            inverted,
            prediction,
            class: self.class(prediction),
            probabilities,
            layers,
            version: m.version,
            index,
            label,
        })
    }

    pub fn analyse_test(&self, index: usize) -> Result<Analysis, Refused> {
        let test = self.test.as_ref().ok_or_else(|| Refused("no test set: start serve with --data".into()))?;
        if index >= test.n {
            return Err(Refused(format!("no test image {index}: the test set has {} (0 to {})", test.n, test.n - 1)));
        }
        self.analyse(test.image(index), false, Some(index), Some(test.labels[index]))
    }

    pub fn test_size(&self) -> usize {
        self.test.as_ref().map_or(0, |t| t.n)
    }

    fn class(&self, c: usize) -> String {
        self.classes.get(c).cloned().unwrap_or_else(|| c.to_string())
    }

    /// Accuracy, confusion matrix and surest mistakes on the test set, for the current weights
    /// (computed once per version).
    pub fn summary(&self) -> Arc<Value> {
        let version = self.version();
        let mut cached = self.summary.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((v, s)) = cached.as_ref()
            && *v == version
        {
            return s.clone();
        }
        let summary = Arc::new(match &self.test {
            None => json!({ "n": 0, "version": version }),
            Some(test) => {
                let m = self.shown();
                let k = m.params.shape.k;
                let probs =
                    fast::probabilities(&m.params, m.activation, &SparseRows::from_pixels(&test.pixels, test.d()));
                let e = Evaluation::new(&probs, &test.labels, k);
                let mut wrong: Vec<(usize, usize, f32)> = probs
                    .chunks_exact(k)
                    .enumerate()
                    .map(|(i, row)| (i, metrics::argmax(row), row))
                    .filter(|&(i, p, _)| p != test.labels[i] as usize)
                    .map(|(i, p, row)| (i, p, row[p]))
                    .collect();
                wrong.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
                let mistakes: Vec<Value> = wrong
                    .iter()
                    .take(MISTAKES)
                    .map(|&(i, p, c)| {
                        json!({ "index": i, "label": test.labels[i], "prediction": p, "confidence": c, "image": test.image(i) })
                    })
                    .collect();
                json!({
                    "n": test.n,
                    "accuracy": e.accuracy,
                    "confusion": e.confusion,
                    "mistakes": mistakes,
                    "version": m.version,
                })
            }
        });
        *cached = Some((version, summary.clone()));
        summary
    }
}

/// The side of a square input image (28 for 784 inputs).
fn side(d: usize) -> usize {
    (d as f64).sqrt().round() as usize
}
