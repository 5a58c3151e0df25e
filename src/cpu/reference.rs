//! The readable reference: the whole training step as plain loops, one forward/backward pair per
//! layer. Every fast path (the threaded sparse CPU step, the WGSL kernels) is tested against these
//! functions. Arguments go outputs first, then inputs, then sizes. Matrices are row-major.

use crate::model::{Activation, Params, Stats};

/// `z[n x m] = x[n x d] · w[d x m] + b[m]` (no bias term when `b` is `None`).
pub fn linear_forward(z: &mut [f32], x: &[f32], w: &[f32], b: Option<&[f32]>, n: usize, d: usize, m: usize) {
    for i in 0..n {
        let zi = &mut z[i * m..(i + 1) * m];
        match b {
            Some(b) => zi.copy_from_slice(b),
            None => zi.fill(0.0),
        }
        for p in 0..d {
            let xv = x[i * d + p];
            for j in 0..m {
                zi[j] += xv * w[p * m + j];
            }
        }
    }
}

/// Backward of `linear_forward` given `dz = dL/dz` (n x m):
/// `dw[d x m] = x^T · dz`, `db[m] = Σ_i dz[i]`, `dx[n x d] = dz · w^T` (skipped when `None`).
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    dz: &[f32],
    x: &[f32],
    w: &[f32],
    n: usize,
    d: usize,
    m: usize,
) {
    dw.fill(0.0);
    for i in 0..n {
        for p in 0..d {
            let xv = x[i * d + p];
            for j in 0..m {
                dw[p * m + j] += xv * dz[i * m + j];
            }
        }
    }
    if let Some(db) = db {
        column_sum(db, dz, n, m);
    }
    if let Some(dx) = dx {
        for i in 0..n {
            for p in 0..d {
                let mut s = 0.0;
                for j in 0..m {
                    s += dz[i * m + j] * w[p * m + j];
                }
                dx[i * d + p] = s;
            }
        }
    }
}

/// `out[j] = Σ_i m[i][j]` over an n x cols matrix (bias gradients).
pub fn column_sum(out: &mut [f32], m: &[f32], n: usize, cols: usize) {
    out.fill(0.0);
    for i in 0..n {
        for j in 0..cols {
            out[j] += m[i * cols + j];
        }
    }
}

/// `a = act(z)`, element-wise.
pub fn activation_forward(a: &mut [f32], z: &[f32], act: Activation) {
    for (a, &z) in a.iter_mut().zip(z) {
        *a = act.apply(z);
    }
}

/// `dz = da * act'(z)`, with the derivative taken from the forward output `a`.
pub fn activation_backward(dz: &mut [f32], da: &[f32], a: &[f32], act: Activation) {
    for ((dz, &da), &a) in dz.iter_mut().zip(da).zip(a) {
        *dz = da * act.derivative_from_output(a);
    }
}

/// Row softmax and cross-entropy: `probs[i] = softmax(logits[i])`, `losses[i] = -log probs[i][y_i]`
/// (computed as logsumexp - logit, stable for large logits), `correct[i]` = arg-max equals label.
pub fn softmax_xent_forward(
    probs: &mut [f32],
    losses: &mut [f32],
    correct: &mut [bool],
    logits: &[f32],
    labels: &[u8],
    n: usize,
    k: usize,
) {
    for i in 0..n {
        let z = &logits[i * k..(i + 1) * k];
        let (mut zmax, mut arg) = (z[0], 0);
        for (j, &v) in z.iter().enumerate() {
            if v > zmax {
                zmax = v;
                arg = j;
            }
        }
        let sum: f32 = z.iter().map(|&v| (v - zmax).exp()).sum();
        for j in 0..k {
            probs[i * k + j] = (z[j] - zmax).exp() / sum;
        }
        let y = labels[i] as usize;
        losses[i] = sum.ln() + zmax - z[y];
        correct[i] = arg == y;
    }
}

/// Gradient of `scale * Σ_i loss_i` w.r.t. the logits: `dlogits = scale * (probs - onehot(y))`.
/// The training step uses `scale = 1/N` (mean loss over the whole training set).
pub fn softmax_xent_backward(dlogits: &mut [f32], probs: &[f32], labels: &[u8], n: usize, k: usize, scale: f32) {
    for i in 0..n {
        for j in 0..k {
            let y = if labels[i] as usize == j { 1.0 } else { 0.0 };
            dlogits[i * k + j] = scale * (probs[i * k + j] - y);
        }
    }
}

/// `param -= lr * grad`.
pub fn sgd_update(param: &mut [f32], grad: &[f32], lr: f32) {
    for (p, &g) in param.iter_mut().zip(grad) {
        *p -= lr * g;
    }
}

/// Forward pass only: loss and accuracy of `params` on `x` (n x D, scaled to [0,1]).
pub fn evaluate(params: &Params, act: Activation, x: &[f32], labels: &[u8]) -> Stats {
    let t = Trace::forward(params, act, x, labels);
    t.stats()
}

/// Activations of one forward pass, kept for the backward pass.
struct Trace {
    a1: Vec<f32>,
    probs: Vec<f32>,
    losses: Vec<f32>,
    correct: Vec<bool>,
}

impl Trace {
    fn forward(params: &Params, act: Activation, x: &[f32], labels: &[u8]) -> Trace {
        let s = params.shape;
        let n = labels.len();
        let (b1, b2) = if s.bias { (Some(&params.b1[..]), Some(&params.b2[..])) } else { (None, None) };
        let mut z1 = vec![0.0; n * s.h];
        linear_forward(&mut z1, x, &params.w1, b1, n, s.d, s.h);
        let mut a1 = vec![0.0; n * s.h];
        activation_forward(&mut a1, &z1, act);
        let mut z2 = vec![0.0; n * s.k];
        linear_forward(&mut z2, &a1, &params.w2, b2, n, s.h, s.k);
        let mut probs = vec![0.0; n * s.k];
        let mut losses = vec![0.0; n];
        let mut correct = vec![false; n];
        softmax_xent_forward(&mut probs, &mut losses, &mut correct, &z2, labels, n, s.k);
        Trace { a1, probs, losses, correct }
    }

    fn stats(&self) -> Stats {
        Stats {
            loss: self.losses.iter().map(|&l| l as f64).sum::<f64>() / self.losses.len().max(1) as f64,
            correct: self.correct.iter().filter(|&&c| c).count(),
            n: self.losses.len(),
        }
    }
}

/// One full-batch step's gradients: the mean cross-entropy over all n samples of `x`
/// differentiated w.r.t. every parameter, and the loss/accuracy of that forward pass.
pub fn forward_backward(params: &Params, act: Activation, x: &[f32], labels: &[u8]) -> (Params, Stats) {
    let s = params.shape;
    let n = labels.len();
    let t = Trace::forward(params, act, x, labels);
    let mut grads = Params::zeros(s);
    let mut dz2 = vec![0.0; n * s.k];
    softmax_xent_backward(&mut dz2, &t.probs, labels, n, s.k, 1.0 / n as f32);
    let mut da1 = vec![0.0; n * s.h];
    let db2 = if s.bias { Some(&mut grads.b2[..]) } else { None };
    linear_backward(Some(&mut da1), &mut grads.w2, db2, &dz2, &t.a1, &params.w2, n, s.h, s.k);
    let mut dz1 = vec![0.0; n * s.h];
    activation_backward(&mut dz1, &da1, &t.a1, act);
    let db1 = if s.bias { Some(&mut grads.b1[..]) } else { None };
    linear_backward(None, &mut grads.w1, db1, &dz1, x, &params.w1, n, s.d, s.h);
    (grads, t.stats())
}

/// Pixels as the network sees them: bytes scaled to [0, 1].
pub fn scale_pixels(pixels: &[u8]) -> Vec<f32> {
    pixels.iter().map(|&p| p as f32 / 255.0).collect()
}
