//! gpu-mnist: train a 784 -> H -> 10 perceptron (or a deeper one, 784 -> H1 -> H2 -> ... -> 10)
//! on MNIST with WGSL compute shaders (wgpu), full-batch or on mini-batches, with a readable CPU
//! reference backend that the GPU path is tested against.
//!
//! Shape letters used throughout: N samples (B in a mini-batch), D inputs (784 = 28x28 pixels),
//! H hidden units (H1, H2, ... layer by layer), K classes (10). Matrices are row-major: X is
//! N x D, W1 is D x H1, ..., the output layer's W is H_last x K.

// Checks are written `!(diff <= tolerance)` on purpose: a NaN difference must fail them.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod backend;
pub mod checkpoint;
pub mod cli;
pub mod cpu;
pub mod data;
pub mod digit;
pub mod gpu;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod plots;
pub mod schedule;
pub mod train;
