//! The readable reference: the whole training step as plain loops, one forward/backward pair per
//! layer. Every fast path (the threaded sparse CPU step, the WGSL kernels) is tested against these
//! functions. Arguments go outputs first, then inputs, then sizes. Matrices are row-major.
//!
//! The products add each term by a fused multiply-add (`a.mul_add(b, acc)`, one rounding), as
//! the fast CPU path does in the same order. The two then compute the same pre-activations, and
//! a ReLU unit whose pre-activation is within rounding of 0 cannot be on for one and off for
//! the other, which would move a row's whole gradient for that unit.

use crate::dropout::StepMasks;
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
                zi[j] = xv.mul_add(w[p * m + j], zi[j]);
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
                dw[p * m + j] = xv.mul_add(dz[i * m + j], dw[p * m + j]);
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
                    s = dz[i * m + j].mul_add(w[p * m + j], s);
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

/// Inverted dropout of hidden layer `l`'s output `a` (n x h): `out = a ⊙ mask_l`, each element
/// kept and scaled by 1/(1-p) or set to 0 (`StepMasks::factor`).
pub fn dropout_forward(out: &mut [f32], a: &[f32], masks: &StepMasks, l: usize, n: usize, h: usize) {
    for i in 0..n {
        for j in 0..h {
            out[i * h + j] = a[i * h + j] * masks.factor(l, i, j);
        }
    }
}

/// Backward of `dropout_forward`: `da = dout ⊙ mask_l`.
pub fn dropout_backward(da: &mut [f32], dout: &[f32], masks: &StepMasks, l: usize, n: usize, h: usize) {
    for i in 0..n {
        for j in 0..h {
            da[i * h + j] = dout[i * h + j] * masks.factor(l, i, j);
        }
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
/// The training step uses `scale = 1/B`: the mean loss over the step's B rows (B = N for a
/// full batch).
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
    let t = Trace::forward(params, act, x, labels, None);
    t.stats()
}

/// One forward pass over the n rows of `x` (n x D, scaled to [0,1]): every hidden layer's
/// activations (`[l]` is hidden layer `l + 1`'s, n x H_{l+1}) and the probabilities (n x K).
pub fn activations(params: &Params, act: Activation, x: &[f32]) -> (Vec<Vec<f32>>, Vec<f32>) {
    let n = x.len() / params.shape.d.max(1);
    let t = Trace::forward(params, act, x, &vec![0; n], None);
    (t.acts, t.probs)
}

/// Activations of one forward pass, kept for the backward pass: `acts[l]` is hidden layer
/// `l + 1`'s output (N x H_{l+1}); with dropout, `dropped[l]` is that output after its mask, the
/// next layer's input.
struct Trace {
    acts: Vec<Vec<f32>>,
    dropped: Option<Vec<Vec<f32>>>,
    probs: Vec<f32>,
    losses: Vec<f32>,
    correct: Vec<bool>,
}

impl Trace {
    fn forward(params: &Params, act: Activation, x: &[f32], labels: &[u8], masks: Option<&StepMasks>) -> Trace {
        let s = &params.shape;
        let n = labels.len();
        let last = s.layer_count() - 1;
        let mut acts: Vec<Vec<f32>> = Vec::with_capacity(last);
        let mut dropped: Vec<Vec<f32>> = Vec::new();
        let mut logits = Vec::new();
        for (l, layer) in params.layers.iter().enumerate() {
            let (fan_in, fan_out) = s.layer(l);
            let input = match (l, masks) {
                (0, _) => x,
                (_, Some(_)) => &dropped[l - 1][..],
                (_, None) => &acts[l - 1][..],
            };
            let b = s.bias.then_some(&layer.b[..]);
            let mut z = vec![0.0; n * fan_out];
            linear_forward(&mut z, input, &layer.w, b, n, fan_in, fan_out);
            if l == last {
                logits = z;
            } else {
                let mut a = vec![0.0; n * fan_out];
                activation_forward(&mut a, &z, act);
                if let Some(m) = masks {
                    let mut d = vec![0.0; n * fan_out];
                    dropout_forward(&mut d, &a, m, l, n, fan_out);
                    dropped.push(d);
                }
                acts.push(a);
            }
        }
        let mut probs = vec![0.0; n * s.k];
        let mut losses = vec![0.0; n];
        let mut correct = vec![false; n];
        softmax_xent_forward(&mut probs, &mut losses, &mut correct, &logits, labels, n, s.k);
        Trace { acts, dropped: masks.map(|_| dropped), probs, losses, correct }
    }

    /// Layer `l`'s input: the pixels, or the layer below's output after any dropout.
    fn input<'a>(&'a self, l: usize, x: &'a [f32]) -> &'a [f32] {
        match (l, &self.dropped) {
            (0, _) => x,
            (_, Some(d)) => &d[l - 1],
            (_, None) => &self.acts[l - 1],
        }
    }

    fn stats(&self) -> Stats {
        Stats {
            loss: self.losses.iter().map(|&l| l as f64).sum::<f64>() / self.losses.len().max(1) as f64,
            correct: self.correct.iter().filter(|&&c| c).count(),
            n: self.losses.len(),
        }
    }
}

/// One step's gradients over the B rows of `x` (a mini-batch, or the whole training set): the
/// mean cross-entropy differentiated w.r.t. every parameter, and the loss/accuracy of that
/// forward pass. Backward from the output layer: `dZ_out = (P - onehot(Y)) / B`; for each layer,
/// `dW = A_in^T · dZ`, `db = Σ_rows dZ`, and below it `dZ_in = (dZ · W^T) ⊙ act'(A_in)`.
pub fn forward_backward(params: &Params, act: Activation, x: &[f32], labels: &[u8]) -> (Params, Stats) {
    forward_backward_dropout(params, act, x, labels, None)
}

/// `forward_backward` with dropout's masks of one step on the hidden layers (`None`: none): a
/// hidden layer's output goes through `dropout_forward` into the layer above, and its gradient
/// back through `dropout_backward`, `dZ_in = ((dZ · W^T) ⊙ mask) ⊙ act'(A_in)`, with `A_in`
/// the output before its mask.
pub fn forward_backward_dropout(
    params: &Params,
    act: Activation,
    x: &[f32],
    labels: &[u8],
    masks: Option<&StepMasks>,
) -> (Params, Stats) {
    let s = &params.shape;
    let n = labels.len();
    let t = Trace::forward(params, act, x, labels, masks);
    let mut grads = Params::zeros(s.clone());
    let mut dz = vec![0.0; n * s.k];
    softmax_xent_backward(&mut dz, &t.probs, labels, n, s.k, 1.0 / n as f32);
    for l in (0..s.layer_count()).rev() {
        let (fan_in, fan_out) = s.layer(l);
        let input = t.input(l, x);
        let g = &mut grads.layers[l];
        let db = s.bias.then_some(&mut g.b[..]);
        if l == 0 {
            linear_backward(None, &mut g.w, db, &dz, input, &params.layers[l].w, n, fan_in, fan_out);
        } else {
            let mut da = vec![0.0; n * fan_in];
            linear_backward(Some(&mut da), &mut g.w, db, &dz, input, &params.layers[l].w, n, fan_in, fan_out);
            if let Some(m) = masks {
                let mut d = vec![0.0; n * fan_in];
                dropout_backward(&mut d, &da, m, l - 1, n, fan_in);
                da = d;
            }
            let mut dz_in = vec![0.0; n * fan_in];
            activation_backward(&mut dz_in, &da, &t.acts[l - 1], act);
            dz = dz_in;
        }
    }
    (grads, t.stats())
}

/// Pixels as the network sees them: bytes scaled to [0, 1].
pub fn scale_pixels(pixels: &[u8]) -> Vec<f32> {
    pixels.iter().map(|&p| p as f32 / 255.0).collect()
}
