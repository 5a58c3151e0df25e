//! gpu-mnist: train a 784 -> H -> 10 perceptron (or a deeper one, 784 -> H1 -> H2 -> ... -> 10)
//! on MNIST with WGSL compute shaders (wgpu), full-batch or on mini-batches, with a readable CPU
//! reference backend that the GPU path is tested against.
//!
//! Shape letters, used throughout the code, the shaders and the docs:
//! - N: samples (rows) of a split; B: rows of a mini-batch (B = N for full batches);
//! - D: inputs per sample (784 = 28x28 pixels);
//! - H: hidden units (H1, H2, ... layer by layer in a deeper network);
//! - K: classes (10).
//!
//! Matrices are row-major: X is N x D, W1 is D x H1, ..., the output layer's W is H_last x K.
//!
//! Dependencies flow one way, and the command line (the binary's `app`) sits on top:
//! - `data`, `model`, `optim`, `schedule`, `ranges`: data sets, the network, update rules, learning
//!   rates, the values options may take;
//! - `augment`, `dropout`: the training images' distortions and the hidden layers' masks, both
//!   counter-based so that every backend draws the same;
//! - `checkpoint`: model files; `plan`: a run's every default and consistency rule;
//! - `backend` and its implementations `cpu` (the readable reference and the fast path) and `gpu`;
//! - `train`: the loop that carries out a plan on a backend;
//! - `metrics`, `plots`, `digit`: evaluation figures, pictures, preparing photographed digits.

// Checks are written `!(diff <= tolerance)` on purpose: a NaN difference must fail them.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod augment;
pub mod backend;
pub mod checkpoint;
pub mod cpu;
pub mod data;
pub mod digit;
pub mod dropout;
pub mod gpu;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod plan;
pub mod plots;
pub mod ranges;
pub mod schedule;
pub mod train;
