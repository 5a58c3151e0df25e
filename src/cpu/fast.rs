//! The fast CPU training step: the same math as `reference`, arranged for speed.
//!
//! * Sparse input: MNIST pixels are ~81% zero, so the training set is kept once as compressed
//!   sparse rows (CSR) and the input-layer products X·W1 and X^T·dZ1 (98% of the dense FLOPs)
//!   touch only non-zero pixels: `z1_i = b1 + Σ_p x_ip W1[p,:]` and `dW1[p,:] += x_ip dz1_i`.
//! * One fused pass per sample: forward, softmax, backward and gradient accumulation while the
//!   sample's activations are in L1.
//! * Threads: the rows are cut into a fixed number of shards (independent of the thread count),
//!   each shard accumulates its own gradients in row order, and the shards are summed in order,
//!   so the same inputs give bit-identical results on any number of threads.
//!
//! Tested against `reference::forward_backward` in `tests/cpu_reference.rs`.

use rayon::prelude::*;

use crate::model::{Activation, Params, Stats};

/// Rows of u8 pixels with the zeros left out: row i holds entries `start[i]..start[i+1]` of
/// `col`/`val`, values already scaled to [0, 1].
#[derive(Clone, Debug)]
pub struct SparseRows {
    pub d: usize,
    pub start: Vec<usize>,
    pub col: Vec<u16>,
    pub val: Vec<f32>,
}

impl SparseRows {
    /// `pixels` is n x d bytes, row-major. Panics only on a programming error (d > 65536).
    pub fn from_pixels(pixels: &[u8], d: usize) -> Self {
        assert!(d <= u16::MAX as usize + 1, "input width {d} does not fit u16 column indices");
        let n = if d == 0 { 0 } else { pixels.len() / d };
        let nnz = pixels.iter().filter(|&&p| p != 0).count();
        let mut rows = SparseRows {
            d,
            start: Vec::with_capacity(n + 1),
            col: Vec::with_capacity(nnz),
            val: Vec::with_capacity(nnz),
        };
        rows.start.push(0);
        for row in pixels.chunks_exact(d) {
            for (c, &p) in row.iter().enumerate() {
                if p != 0 {
                    rows.col.push(c as u16);
                    rows.val.push(p as f32 / 255.0);
                }
            }
            rows.start.push(rows.col.len());
        }
        rows
    }

    pub fn n(&self) -> usize {
        self.start.len() - 1
    }

    #[inline]
    fn row(&self, i: usize) -> (&[u16], &[f32]) {
        let r = self.start[i]..self.start[i + 1];
        (&self.col[r.clone()], &self.val[r])
    }
}

/// Gradients are summed in this many shards of consecutive rows, whatever the thread count.
const SHARDS: usize = 16;

/// `acc += v * x`, the inner loop of both sparse products (auto-vectorised).
#[inline(always)]
fn axpy(acc: &mut [f32], v: f32, x: &[f32]) {
    for (a, &x) in acc.iter_mut().zip(x) {
        *a += v * x;
    }
}

/// Hidden activations of sample i: `a1 = act(b1 + Σ_p x_ip W1[p,:])`, then logits
/// `z2 = a1·W2 + b2`.
#[inline]
fn forward_row(a1: &mut [f32], z2: &mut [f32], x: &SparseRows, i: usize, p: &Params, act: Activation) {
    let (h, k) = (p.shape.h, p.shape.k);
    if p.shape.bias {
        a1.copy_from_slice(&p.b1)
    } else {
        a1.fill(0.0)
    }
    let (cols, vals) = x.row(i);
    for (&c, &v) in cols.iter().zip(vals) {
        let c = c as usize;
        axpy(a1, v, &p.w1[c * h..(c + 1) * h]);
    }
    for a in a1.iter_mut() {
        *a = act.apply(*a);
    }
    if p.shape.bias {
        z2.copy_from_slice(&p.b2)
    } else {
        z2.fill(0.0)
    }
    for (j, &a) in a1.iter().enumerate() {
        axpy(z2, a, &p.w2[j * k..(j + 1) * k]);
    }
}

/// Softmax in place over `z` (turning logits into probabilities); returns (loss, correct).
#[inline]
fn softmax_xent_row(z: &mut [f32], y: usize) -> (f32, bool) {
    let (mut zmax, mut arg) = (z[0], 0);
    for (j, &v) in z.iter().enumerate() {
        if v > zmax {
            zmax = v;
            arg = j;
        }
    }
    let zy = z[y] - zmax;
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - zmax).exp();
        sum += *v;
    }
    let loss = sum.ln() - zy;
    for v in z.iter_mut() {
        *v /= sum;
    }
    (loss, arg == y)
}

/// Loss and accuracy of `params` on `x` (forward only, threaded).
pub fn evaluate(params: &Params, act: Activation, x: &SparseRows, labels: &[u8]) -> Stats {
    let n = x.n();
    let shard_stats: Vec<(f64, usize)> = shards(n)
        .into_par_iter()
        .map(|rows| {
            let mut a1 = vec![0.0; params.shape.h];
            let mut z2 = vec![0.0; params.shape.k];
            let (mut loss, mut correct) = (0.0f64, 0usize);
            for i in rows {
                forward_row(&mut a1, &mut z2, x, i, params, act);
                let (l, c) = softmax_xent_row(&mut z2, labels[i] as usize);
                loss += l as f64;
                correct += c as usize;
            }
            (loss, correct)
        })
        .collect();
    let (loss, correct) = shard_stats.iter().fold((0.0, 0), |(l, c), &(sl, sc)| (l + sl, c + sc));
    Stats { loss: loss / n.max(1) as f64, correct, n }
}

/// Gradients of the mean cross-entropy over all rows of `x`, and the forward pass's loss/accuracy.
pub fn forward_backward(params: &Params, act: Activation, x: &SparseRows, labels: &[u8]) -> (Params, Stats) {
    let s = params.shape;
    let n = x.n();
    let inv_n = 1.0 / n.max(1) as f32;
    let partial: Vec<(Params, f64, usize)> = shards(n)
        .into_par_iter()
        .map(|rows| {
            let mut g = Params::zeros(s);
            let (mut a1, mut dz1, mut z2) = (vec![0.0; s.h], vec![0.0; s.h], vec![0.0; s.k]);
            let (mut loss, mut correct) = (0.0f64, 0usize);
            for i in rows {
                forward_row(&mut a1, &mut z2, x, i, params, act);
                let y = labels[i] as usize;
                let (l, c) = softmax_xent_row(&mut z2, y);
                loss += l as f64;
                correct += c as usize;
                // dz2 = (p - onehot(y)) / N, in place of the probabilities.
                z2[y] -= 1.0;
                z2.iter_mut().for_each(|v| *v *= inv_n);
                if s.bias {
                    axpy(&mut g.b2, 1.0, &z2);
                }
                // dW2 += a1^T dz2 ; dz1 = (dz2 · W2^T) * act'(a1)
                for j in 0..s.h {
                    let w2j = &params.w2[j * s.k..(j + 1) * s.k];
                    axpy(&mut g.w2[j * s.k..(j + 1) * s.k], a1[j], &z2);
                    let da: f32 = w2j.iter().zip(&z2).map(|(w, d)| w * d).sum();
                    dz1[j] = da * act.derivative_from_output(a1[j]);
                }
                if s.bias {
                    axpy(&mut g.b1, 1.0, &dz1);
                }
                // dW1[p,:] += x_ip dz1 over the non-zero pixels only.
                let (cols, vals) = x.row(i);
                for (&c, &v) in cols.iter().zip(vals) {
                    let c = c as usize;
                    axpy(&mut g.w1[c * s.h..(c + 1) * s.h], v, &dz1);
                }
            }
            (g, loss, correct)
        })
        .collect();
    let mut grads = Params::zeros(s);
    let (mut loss, mut correct) = (0.0, 0);
    for (g, l, c) in &partial {
        for ((_, acc), (_, part)) in grads.tensors_mut().into_iter().zip(g.tensors()) {
            axpy(acc, 1.0, part);
        }
        loss += l;
        correct += c;
    }
    (grads, Stats { loss: loss / n.max(1) as f64, correct, n })
}

/// Row ranges of the fixed shards.
fn shards(n: usize) -> Vec<std::ops::Range<usize>> {
    let per = n.div_ceil(SHARDS).max(1);
    (0..n).step_by(per).map(|r| r..(r + per).min(n)).collect()
}
