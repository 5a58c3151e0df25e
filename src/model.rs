//! The perceptron: shapes, parameters, activation functions and seeded initialisation.
//!
//! Layout (row-major): W1 is D x H, b1 is H, W2 is H x K, b2 is K. The forward pass is
//! `A1 = act(X·W1 + b1)`, `P = softmax(A1·W2 + b2)`, loss = mean cross-entropy.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Number of classes (digits 0..9).
pub const K: usize = 10;

/// Hidden-layer activation. Every derivative is written in terms of the activation's
/// output `a`, so the backward pass never needs the pre-activation `z`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Activation {
    Sigmoid,
    Relu,
    Elu,
}

impl Activation {
    pub fn name(self) -> &'static str {
        match self {
            Activation::Sigmoid => "sigmoid",
            Activation::Relu => "relu",
            Activation::Elu => "elu",
        }
    }

    /// The number the shaders use for this activation (see `shaders/matmul.wgsl`).
    pub fn shader_code(self) -> u32 {
        match self {
            Activation::Sigmoid => 1,
            Activation::Relu => 2,
            Activation::Elu => 3,
        }
    }

    #[inline]
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

/// Layer sizes: D inputs, H hidden units, K classes; `bias` says whether b1 and b2 are trained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub d: usize,
    pub h: usize,
    pub k: usize,
    pub bias: bool,
}

impl Shape {
    pub fn parameter_count(&self) -> usize {
        let b = if self.bias { self.h + self.k } else { 0 };
        self.d * self.h + self.h * self.k + b
    }
}

/// The four parameter tensors. Also used for their gradients (`dw1`, `db1`, `dw2`, `db2`).
/// Without bias, b1 and b2 stay zero and their gradients are zero.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub shape: Shape,
    pub w1: Vec<f32>,
    pub b1: Vec<f32>,
    pub w2: Vec<f32>,
    pub b2: Vec<f32>,
}

impl Params {
    pub fn zeros(shape: Shape) -> Self {
        Params {
            shape,
            w1: vec![0.0; shape.d * shape.h],
            b1: vec![0.0; shape.h],
            w2: vec![0.0; shape.h * shape.k],
            b2: vec![0.0; shape.k],
        }
    }

    /// Seeded initialisation: He-normal (std sqrt(2/fan_in)) for W1 under relu/elu, Xavier-normal
    /// (std sqrt(2/(fan_in+fan_out))) under sigmoid; W2 always Xavier (it feeds a softmax); biases 0.
    pub fn init(shape: Shape, activation: Activation, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut p = Params::zeros(shape);
        let std1 = match activation {
            Activation::Sigmoid => (2.0 / (shape.d + shape.h) as f64).sqrt(),
            Activation::Relu | Activation::Elu => (2.0 / shape.d as f64).sqrt(),
        };
        let std2 = (2.0 / (shape.h + shape.k) as f64).sqrt();
        for w in &mut p.w1 {
            let g: f64 = StandardNormal.sample(&mut rng);
            *w = (g * std1) as f32;
        }
        for w in &mut p.w2 {
            let g: f64 = StandardNormal.sample(&mut rng);
            *w = (g * std2) as f32;
        }
        p
    }

    /// The tensors by name, in a fixed order (the names reports use).
    pub fn tensors(&self) -> [(&'static str, &[f32]); 4] {
        [("w1", &self.w1), ("b1", &self.b1), ("w2", &self.w2), ("b2", &self.b2)]
    }

    pub fn tensors_mut(&mut self) -> [(&'static str, &mut Vec<f32>); 4] {
        [("w1", &mut self.w1), ("b1", &mut self.b1), ("w2", &mut self.w2), ("b2", &mut self.b2)]
    }

    /// `self -= lr * grads`, tensor by tensor (the CPU twin of the `sgd_update` kernel).
    pub fn sgd_update(&mut self, grads: &Params, lr: f32) {
        for ((_, p), (_, g)) in self.tensors_mut().into_iter().zip(grads.tensors()) {
            crate::cpu::reference::sgd_update(p, g, lr);
        }
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
