//! The perceptron: shapes, parameters, activation functions and seeded initialisation.
//!
//! Shape letters as in the crate documentation (N, D, H, K). Layout (row-major): W1 is D x H1,
//! b1 is H1, ..., the last W is H_last x K. The forward pass is `A1 = act(X·W1 + b1)`,
//! `A2 = act(A1·W2 + b2)`, ..., `P = softmax(A_last·W_out + b_out)`, loss = mean cross-entropy;
//! every hidden layer uses the same activation.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Number of classes (digits 0..9).
pub const K: usize = 10;

/// Hidden-layer activation. Every derivative is written in terms of the activation's
/// output `a`, so the backward pass never needs the pre-activation `z`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Sigmoid,
    Relu,
    Elu,
}

impl Activation {
    pub const ALL: [Activation; 3] = [Activation::Sigmoid, Activation::Relu, Activation::Elu];

    /// The name model files and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Sigmoid => "sigmoid",
            Activation::Relu => "relu",
            Activation::Elu => "elu",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    #[inline(always)]
    pub fn apply(self, z: f32) -> f32 {
        match self {
            Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
            Activation::Relu => z.max(0.0),
            Activation::Elu => {
                if z > 0.0 {
                    z
                } else {
                    z.exp_m1()
                }
            }
        }
    }

    /// `v = act(v)` for every value. The match is outside the loop, so ReLU's loop is one
    /// vector max per slice (a match inside kept it scalar).
    #[inline(always)]
    pub fn apply_all(self, values: &mut [f32]) {
        match self {
            Activation::Sigmoid => values.iter_mut().for_each(|v| *v = Activation::Sigmoid.apply(*v)),
            Activation::Relu => values.iter_mut().for_each(|v| *v = Activation::Relu.apply(*v)),
            Activation::Elu => values.iter_mut().for_each(|v| *v = Activation::Elu.apply(*v)),
        }
    }

    /// d act / dz expressed through a = act(z): sigmoid a(1-a); relu [a > 0]; elu 1 or a + 1.
    #[inline]
    pub fn derivative_from_output(self, a: f32) -> f32 {
        match self {
            Activation::Sigmoid => a * (1.0 - a),
            Activation::Relu => {
                if a > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::Elu => {
                if a > 0.0 {
                    1.0
                } else {
                    a + 1.0
                }
            }
        }
    }
}

/// An m (rows x cols, row-major) as cols rows of length rows: a weight matrix in the other
/// layout (PyTorch's [out, in] against this program's [in, out]; the fast path's row blocks).
pub fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    // In tiles of 16 x 16: a column of `t` is written `rows` floats apart, and walking whole
    // columns would map those writes onto a few cache sets (the CPU step transposes every layer
    // above the first at each mini-batch step).
    const TILE: usize = 16;
    let mut t = vec![0.0; m.len()];
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    t[c * rows + r] = m[r * cols + c];
                }
            }
        }
    }
    t
}

/// The most hidden layers a network may have (the tensor names run w1..w8, b1..b8).
pub const MAX_HIDDEN_LAYERS: usize = 7;

const WEIGHT_NAMES: [&str; MAX_HIDDEN_LAYERS + 1] = ["w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8"];
const BIAS_NAMES: [&str; MAX_HIDDEN_LAYERS + 1] = ["b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8"];

/// Layer sizes: D inputs, the hidden widths H1, H2, ... (at least one, at most
/// `MAX_HIDDEN_LAYERS`), K classes; `bias` says whether the biases are trained.
/// Layer `l` (0-based) maps `widths()[l]` inputs to `widths()[l + 1]` outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    pub d: usize,
    pub hidden: Vec<usize>,
    pub k: usize,
    pub bias: bool,
}

impl Shape {
    pub fn new(d: usize, hidden: &[usize], k: usize, bias: bool) -> Self {
        Shape { d, hidden: hidden.to_vec(), k, bias }
    }

    /// `[D, H1, ..., K]`.
    pub fn widths(&self) -> Vec<usize> {
        let mut w = Vec::with_capacity(self.hidden.len() + 2);
        w.push(self.d);
        w.extend_from_slice(&self.hidden);
        w.push(self.k);
        w
    }

    /// Number of weight layers: hidden layers + 1.
    pub fn layer_count(&self) -> usize {
        self.hidden.len() + 1
    }

    /// `(fan_in, fan_out)` of layer `l` (0-based).
    pub fn layer(&self, l: usize) -> (usize, usize) {
        let w = self.widths();
        (w[l], w[l + 1])
    }

    pub fn parameter_count(&self) -> usize {
        let w = self.widths();
        w.windows(2).map(|p| p[0] * p[1] + if self.bias { p[1] } else { 0 }).sum()
    }

    /// `784-256-128-10`.
    pub fn describe(&self) -> String {
        self.widths().iter().map(|w| w.to_string()).collect::<Vec<_>>().join("-")
    }

    /// The hidden widths as `--hidden` takes them: `256,128`.
    pub fn hidden_list(&self) -> String {
        self.hidden.iter().map(|w| w.to_string()).collect::<Vec<_>>().join(",")
    }

    /// Every tensor's name and shape, layer by layer: `w1 [D, H1]`, `b1 [H1]`, `w2 [H1, H2]`, ...
    pub fn tensor_shapes(&self) -> Vec<(&'static str, Vec<usize>)> {
        (0..self.layer_count())
            .flat_map(|l| {
                let (fan_in, fan_out) = self.layer(l);
                [(WEIGHT_NAMES[l], vec![fan_in, fan_out]), (BIAS_NAMES[l], vec![fan_out])]
            })
            .collect()
    }
}

/// One layer's parameters: `w` is fan_in x fan_out (row-major), `b` has fan_out entries.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

/// The parameters, layer by layer. Also used for their gradients (`dw1`, `db1`, ...) and the
/// optimizer's moments. Without bias, the biases stay zero and their gradients are zero.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub shape: Shape,
    pub layers: Vec<Layer>,
}

impl Params {
    /// The shape and no buffers: what a gradient pass that sizes its output
    /// (`cpu::fast::forward_backward_into`) starts from.
    pub fn empty(shape: Shape) -> Self {
        Params { shape, layers: Vec::new() }
    }

    pub fn zeros(shape: Shape) -> Self {
        let layers = (0..shape.layer_count())
            .map(|l| {
                let (fan_in, fan_out) = shape.layer(l);
                Layer { w: vec![0.0; fan_in * fan_out], b: vec![0.0; fan_out] }
            })
            .collect();
        Params { shape, layers }
    }

    /// Seeded initialisation, layer by layer from one generator: He-normal (std sqrt(2/fan_in))
    /// for the hidden layers under relu/elu, Xavier-normal (std sqrt(2/(fan_in+fan_out))) under
    /// sigmoid; the output layer always Xavier (it feeds a softmax); biases 0.
    pub fn init(shape: Shape, activation: Activation, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut p = Params::zeros(shape);
        let last = p.layers.len() - 1;
        for (l, layer) in p.layers.iter_mut().enumerate() {
            let (fan_in, fan_out) = p.shape.layer(l);
            let std = match activation {
                Activation::Relu | Activation::Elu if l < last => (2.0 / fan_in as f64).sqrt(),
                _ => (2.0 / (fan_in + fan_out) as f64).sqrt(),
            };
            for w in &mut layer.w {
                let g: f64 = StandardNormal.sample(&mut rng);
                *w = (g * std) as f32;
            }
        }
        p
    }

    /// The tensors by name, layer by layer (`w1`, `b1`, `w2`, `b2`, ...): the names reports and
    /// model files use.
    pub fn tensors(&self) -> Vec<(&'static str, &[f32])> {
        let names = WEIGHT_NAMES.iter().zip(BIAS_NAMES);
        self.layers.iter().zip(names).flat_map(|(l, (w, b))| [(*w, &l.w[..]), (b, &l.b[..])]).collect()
    }

    pub fn tensors_mut(&mut self) -> Vec<(&'static str, &mut Vec<f32>)> {
        let names = WEIGHT_NAMES.iter().zip(BIAS_NAMES);
        self.layers.iter_mut().zip(names).flat_map(|(l, (w, b))| [(*w, &mut l.w), (b, &mut l.b)]).collect()
    }

    /// Whether every parameter is finite.
    pub fn is_finite(&self) -> bool {
        self.tensors().iter().all(|(_, t)| t.iter().all(|v| v.is_finite()))
    }
}

/// Loss and accuracy over a set of samples.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Number of samples whose arg-max prediction equals the label.
    pub correct: usize,
    pub n: usize,
}

impl Stats {
    pub fn accuracy(&self) -> f64 {
        if self.n == 0 { 0.0 } else { self.correct as f64 / self.n as f64 }
    }
}
