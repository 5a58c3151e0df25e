//! The fast step for a mini-batch, layer by layer over the whole batch.
//!
//! The shards of `run` each sum a whole set of gradients, which a batch of a few hundred rows
//! cannot pay for: zeroing, filling and adding 784 x H floats per shard costs as much as the
//! products. Here every phase runs in parallel pieces that write disjoint outputs, so there is
//! one set of gradients and no sum of sets:
//! * windows of W1's columns, one per thread, for the input layer's `A_1 = act(X·W1 + b1)`
//!   over all the batch's rows: W1 is the largest matrix, and each thread streams only its
//!   window of it;
//! * row pieces (`ROW_PIECE` rows) for what is computed row by row: each hidden layer above,
//!   the softmax, and `dZ_{l-1} = (dZ_l·W_l^T) ⊙ act'`;
//! * column pieces (`COL_PIECE` rows of dW) for the weight gradients `dW_l = A_{l-1}^T·dZ_l`:
//!   each element of dW sums its terms over the whole batch in row order.
//!
//! No element's sum depends on how the pieces are cut (the windows depend on the thread count, the
//! row and column pieces on the batch's size alone), so the results are the same bits on any number
//! of threads, and a batch of 128 rows keeps 16 threads busy. Each product picks the sparse or the
//! dense kernel by density as the shards do, with the same bits either way. Rayon runs its closures
//! at the baseline vector width, so each piece's work is a `simd_piece!` function.

use std::ops::Range;
use std::sync::OnceLock;
use std::time::Instant;

use rayon::prelude::*;

use super::block::{self, CH, Columns};
use super::dense::{self, Panels};
use super::head;
use super::lines::Lines;
use super::quads::{self, Quads};
use super::{Job, Kernels, PhaseTimes, Simd, activation_backward, dot, softmax_xent_row};
use crate::model::{Activation, Layer};

/// Rows per piece of the row-wise phases.
const ROW_PIECE: usize = 8;
/// Rows of a weight gradient (its layer's inputs) per piece: a multiple of this.
const COL_PIECE: usize = 4;
/// Fewest of W1's columns in a forward piece.
const MIN_WINDOW: usize = 32;

/// Loss sum, correct count, times.
pub(super) type BatchSums = (f64, usize, PhaseTimes);

/// The forward and backward pass over the `n` positions of `job`'s visit order: `grads` get
/// every layer's gradients (dW as stored, fan_in x fan_out), whatever they held before, in the
/// buffers they have where those fit.
pub(super) fn run(job: &Job, n: usize, grads: &mut Vec<Layer>) -> BatchSums {
    let (p, act, kernels, simd) = (job.p, job.act, job.kernels, job.kernels.simd);
    let (hidden, d, k, bias) = (&p.shape.hidden, p.shape.d, p.shape.k, p.shape.bias);
    let last = hidden.len();
    let mut times = PhaseTimes { forward: vec![0; last], head: 0, backward: vec![0; last] };
    let mut clock = Clock::new(job.timed);
    let mut acts: Vec<Lines> = hidden.iter().map(|&h| Lines::zeros(n * h)).collect();
    let mut pre: Vec<Vec<f32>> = Vec::new(); // each hidden layer's outputs before dropout

    // Layer 0: A_0 = act(X·W1 + b1) by pieces of W1's columns, all rows each: every thread
    // streams only its columns of W1 (2.5 MB for 784-800, more than a core's L2), and the batch
    // is regrouped by quad once, for the backward pass too.
    let h1 = hidden[0];
    let mut quads = Quads::default();
    job.x.prefetch((0..n).map(|i| job.row(i)));
    quads.set_rows(d, (0..n).map(|i| job.x.row(job.row(i))));
    let windows: Vec<Range<usize>> = column_windows(h1).collect();
    if let [all] = &windows[..] {
        input_forward(simd, job, &mut acts[0], &quads, all.clone());
    } else {
        let mut outs: Vec<Lines> = windows.iter().map(|cols| Lines::zeros(n * cols.len())).collect();
        outs.par_iter_mut().zip(&windows).for_each(|(a, cols)| input_forward(simd, job, a, &quads, cols.clone()));
        acts[0].par_chunks_mut(ROW_PIECE * h1).enumerate().for_each(|(i, a)| {
            for (r, row) in piece(i, ROW_PIECE, a.len() / h1).zip(a.chunks_exact_mut(h1)) {
                for (cols, out) in windows.iter().zip(outs.iter()) {
                    row[cols.clone()].copy_from_slice(&out[r * cols.len()..][..cols.len()]);
                }
            }
        });
    }
    drop_out(job, &mut acts[0], &mut pre, 0);
    clock.lap(&mut times.forward[0]);

    // Hidden layers above: A_l = act(A_{l-1}·W_l + b_l) by row pieces.
    for l in 1..last {
        let (below, above) = acts.split_at_mut(l);
        let b = bias.then_some(&p.layers[l].b[..]);
        rows_product(&mut above[0], &below[l - 1], b, &p.layers[l].w, p.shape.layer(l), (Some(act), kernels));
        drop_out(job, &mut above[0], &mut pre, l);
        clock.lap(&mut times.forward[l]);
    }

    // The output layer by row pieces: softmax, cross-entropy, dZ_out = (P - onehot(y)) / N and
    // dZ_last = (dZ_out·W_out^T) ⊙ act'(A_last); then dW_out and db_out.
    let h = hidden[last - 1];
    let mut dz_out = vec![0.0f32; n * k];
    let mut dzs: Vec<Lines> = hidden.iter().map(|&h| Lines::zeros(n * h)).collect();
    let (a_last, pre_last) = (&acts[last - 1][..], pre.get(last - 1).map_or(&[][..], |v| &v[..]));
    let sums: Vec<(f64, usize)> =
        (dz_out.par_chunks_mut(ROW_PIECE * k).zip(dzs[last - 1].par_chunks_mut(ROW_PIECE * h)))
            .enumerate()
            .map(|(i, (z, dz))| head(simd, job, z, dz, piece(i, ROW_PIECE, z.len() / k), (a_last, pre_last)))
            .collect();
    let (loss, correct) = sums.iter().fold((0.0, 0), |(l, c), &(pl, pc)| (l + pl, c + pc));
    // Sized, not cleared: every phase below overwrites its gradients whole.
    grads.resize_with(last + 1, || Layer { w: Vec::new(), b: Vec::new() });
    for (l, g) in grads.iter_mut().enumerate() {
        let (fan_in, fan_out) = p.shape.layer(l);
        g.w.resize(fan_in * fan_out, 0.0);
        g.b.resize(fan_out, 0.0);
    }
    output_weight_gradient(simd, &mut grads[last].w, &dz_out, a_last, (k, h));
    column_sums(&mut grads[last].b, &dz_out, k, bias);
    let mut nz = Columns::default();
    clock.lap(&mut times.head);

    // Hidden layers, top down: dW_l = A_{l-1}^T·dZ_l by column pieces, then
    // dZ_{l-1} = (dZ_l·W_l^T) ⊙ act'(A_{l-1}) by row pieces.
    for l in (1..last).rev() {
        let (fan_in, fan_out) = p.shape.layer(l);
        let input = input_of(&acts[l - 1], fan_in, &mut nz, kernels);
        weight_gradient(&mut grads[l], &dzs[l], &input, (fan_in, fan_out), bias, simd);
        let (below, above) = dzs.split_at_mut(l);
        rows_product(&mut below[l - 1], &above[0], None, &job.wt[l - 1], (fan_out, fan_in), (None, kernels));
        let (a, pre) = (&acts[l - 1][..], pre.get(l - 1).map_or(&[][..], |v| &v[..]));
        below[l - 1].par_chunks_mut(ROW_PIECE * fan_in).enumerate().for_each(|(i, dz)| {
            hidden_backward(simd, job, dz, piece(i, ROW_PIECE, dz.len() / fan_in), (a, pre), l - 1);
        });
        clock.lap(&mut times.backward[l]);
    }

    // Layer 0: dW1 = X^T·dZ1 over the batch's pixels by quads.
    weight_gradient(&mut grads[0], &dzs[0], &Input::Pixels(&quads), (d, h1), bias, simd);
    clock.lap(&mut times.backward[0]);
    (loss, correct, times)
}

/// Positions of row piece `i` of `per` rows, which has `len` rows.
fn piece(i: usize, per: usize, len: usize) -> Range<usize> {
    i * per..i * per + len
}

/// Rows per piece of a product: as few pieces as there are threads, since every piece reads
/// the whole weight matrix (the rows' results do not depend on how they are cut).
fn product_rows(n: usize) -> usize {
    n.div_ceil(rayon::current_num_threads()).next_multiple_of(ROW_PIECE)
}

/// Windows of `h` columns for the input layer's forward pieces: one per thread, a multiple of
/// 16 wide (whole AVX-512 registers) and at least `MIN_WINDOW`, the last one narrower.
fn column_windows(h: usize) -> impl Iterator<Item = Range<usize>> {
    let width = h.div_ceil(rayon::current_num_threads()).next_multiple_of(16).max(MIN_WINDOW);
    (0..h).step_by(width).map(move |c| c..(c + width).min(h))
}

simd_piece! {
    /// `a = act(X·W1 + b1)` for every row of `quads` and W1's columns `cols` (`a` is rows x
    /// |cols|).
    fn input_forward(job: &Job, a: &mut [f32], quads: &Quads, cols: Range<usize>) -> () {
        let p = job.p;
        let h1 = p.shape.hidden[0];
        let b1 = p.shape.bias.then(|| &p.layers[0].b[cols.clone()]);
        quads::forward(job.kernels.simd, a, b1, quads, (&p.layers[0].w, h1, cols), quads.rows());
        job.act.apply_all(a);
    }
}

simd_piece! {
    /// The output layer for the rows at positions `rows`: `z` gets dZ_out, `dz` gets dZ_last;
    /// returns their loss sum and correct count.
    fn head(job: &Job, z: &mut [f32], dz: &mut [f32], rows: Range<usize>, a_pre: (&[f32], &[f32])) -> (f64, usize) {
        let (a, pre) = a_pre;
        let (p, k) = (job.p, job.p.shape.k);
        let last = p.shape.hidden.len();
        let h = p.shape.hidden[last - 1];
        let (wt, b) = (&job.wt[last - 1], p.shape.bias.then_some(&p.layers[last].b[..]));
        let inv_n = job.inv_n.unwrap_or(1.0);
        let (mut loss, mut correct) = (0.0f64, 0usize);
        for (r, pos) in rows.clone().enumerate() {
            let (z, ar) = (&mut z[r * k..(r + 1) * k], &a[pos * h..(pos + 1) * h]);
            for (c, zc) in z.iter_mut().enumerate() {
                *zc = dot(ar, &wt[c * h..(c + 1) * h]) + b.map_or(0.0, |b| b[c]);
            }
            let y = job.labels[job.row(pos)] as usize;
            let (l, ok) = softmax_xent_row(z, y);
            loss += l as f64;
            correct += ok as usize;
            z[y] -= 1.0;
            for v in z.iter_mut() {
                *v *= inv_n;
            }
            head::input_gradient(&mut dz[r * h..(r + 1) * h], z, wt, h);
        }
        let span = rows.start * h..rows.end * h;
        let pre = pre.get(span.clone()).unwrap_or(&[]);
        activation_backward(dz, &a[span], pre, job.masks, last - 1, rows, h, job.act);
        (loss, correct)
    }
}

/// `dw = A_last^T·dZ_out` (H x K, as stored) by windows of H: each thread sums every class of
/// its window, rows ascending from +0, in dW_out^T's layout (each class's row vectorises along
/// H; K = 10 is too few to), then stores them transposed into its rows of `dw`.
fn output_weight_gradient(simd: Simd, dw: &mut [f32], z: &[f32], a: &[f32], (k, h): (usize, usize)) {
    let windows: Vec<Range<usize>> = column_windows(h).collect();
    let width = windows[0].len();
    dw.par_chunks_mut(width * k).zip(windows).for_each(|(dw, cols)| output_window(simd, dw, z, a, (k, h), cols));
}

simd_piece! {
    /// The rows `cols` of `output_weight_gradient`'s dW_out, into `dw` (|cols| x K).
    fn output_window(dw: &mut [f32], z: &[f32], a: &[f32], kh: (usize, usize), cols: Range<usize>) -> () {
        let (k, h) = kh;
        let width = cols.len();
        let mut gw = vec![0.0f32; k * width];
        head::weight_gradient(&mut gw, z, a, (k, h), cols);
        for (j, row) in dw.chunks_exact_mut(k).enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = gw[c * width + j];
            }
        }
    }
}

simd_piece! {
    /// `dz ⊙= act'` of hidden layer `l` for the rows at positions `rows`, through its mask.
    fn hidden_backward(job: &Job, dz: &mut [f32], rows: Range<usize>, a_pre: (&[f32], &[f32]), l: usize) -> () {
        let (a, pre) = a_pre;
        let h = job.p.shape.hidden[l];
        let span = rows.start * h..rows.end * h;
        let pre = pre.get(span.clone()).unwrap_or(&[]);
        activation_backward(dz, &a[span], pre, job.masks, l, rows, h, job.act);
    }
}

/// `out = act(init + input · w)` (no act: `None`) by row pieces, `input` rows of `fan_in`, `w`
/// fan_in x fan_out; each piece by the product its density calls for, the dense one from
/// `Panels` packed once.
fn rows_product(
    out: &mut [f32],
    input: &[f32],
    init: Option<&[f32]>,
    w: &[f32],
    (fan_in, fan_out): (usize, usize),
    (act, kernels): (Option<Activation>, Kernels),
) {
    let (panels, per) = (OnceLock::new(), product_rows(out.len() / fan_out));
    out.par_chunks_mut(per * fan_out).enumerate().for_each_init(Columns::default, |nz, (i, o)| {
        let rows = piece(i, per, o.len() / fan_out);
        let x = &input[rows.start * fan_in..rows.end * fan_in];
        product_piece(kernels.simd, o, x, init, (w, &panels), (fan_in, fan_out), (act, kernels), nz);
    });
}

simd_piece! {
    /// One row piece of `rows_product`.
    fn product_piece(
        o: &mut [f32],
        x: &[f32],
        init: Option<&[f32]>,
        w_panels: (&[f32], &OnceLock<Panels>),
        fans: (usize, usize),
        act_kernels: (Option<Activation>, Kernels),
        nz: &mut Columns,
    ) -> () {
        let ((w, panels), (fan_in, fan_out), (act, kernels)) = (w_panels, fans, act_kernels);
        if kernels.is_dense(x.iter().filter(|&&v| v != 0.0).count(), x.len()) {
            let panels = panels.get_or_init(|| Panels::pack(w, fan_in, fan_out, kernels.simd));
            dense::forward(o, init, x, fan_in, (w, panels), fan_out);
        } else {
            nz.set_dense(x, fan_in);
            block::forward(o, init, nz, w, fan_out);
        }
        if let Some(act) = act {
            act.apply_all(o);
        }
    }
}

/// A layer's input for its weight gradient: by column when sparse, by quads for pixels, else
/// dense rows.
enum Input<'a> {
    Sparse(&'a Columns),
    Pixels(&'a Quads),
    Dense(&'a [f32]),
}

/// A layer's input (rows of `width`) for its weight gradient, by its density.
fn input_of<'a>(a: &'a [f32], width: usize, nz: &'a mut Columns, kernels: Kernels) -> Input<'a> {
    if kernels.is_dense(a.iter().filter(|&&v| v != 0.0).count(), a.len()) {
        Input::Dense(a)
    } else {
        nz.set_dense(a, width);
        Input::Sparse(nz)
    }
}

/// `g.w = input^T · dz` by column pieces (rows of dW), and `g.b = Σ_r dz[r, :]` (zeros without
/// `bias`), whatever `g` held. Each row of dW is one piece's whole work, so the pieces can follow
/// the thread count: four per thread, of a multiple of `COL_PIECE` rows (the dense tiles'
/// height) up to 64.
fn weight_gradient(
    g: &mut Layer,
    dz: &[f32],
    input: &Input,
    (fan_in, fan_out): (usize, usize),
    bias: bool,
    simd: Simd,
) {
    let per = fan_in.div_ceil(4 * rayon::current_num_threads()).next_multiple_of(COL_PIECE).min(64);
    g.w.par_chunks_mut(per * fan_out).enumerate().for_each(|(i, dw)| {
        let cols = i * per..i * per + dw.len() / fan_out;
        weight_piece(simd, dw, dz, input, (fan_in, fan_out), cols, simd);
    });
    column_sums(&mut g.b, dz, fan_out, bias);
}

/// `b = Σ_r dz[r, :]` over dz's rows of `width`, rows in order, in parallel over columns; zeros
/// without `bias`.
fn column_sums(b: &mut [f32], dz: &[f32], width: usize, bias: bool) {
    b.fill(0.0);
    if !bias {
        return;
    }
    b.par_chunks_mut(CH).enumerate().for_each(|(i, b)| {
        for row in dz.chunks_exact(width) {
            block::axpy(b, 1.0, &row[i * CH..][..b.len()]);
        }
    });
}

simd_piece! {
    /// Rows `cols` of `input^T · dz` into `dw`, whatever it held, the dense tiles as wide as
    /// `tiles` calls for. The quads write dW once; the others sum onto its rows cleared just
    /// before, while they are in this core's cache.
    fn weight_piece(dw: &mut [f32], dz: &[f32], input: &Input, fans: (usize, usize), cols: Range<usize>, tiles: Simd) -> () {
        let (fan_in, fan_out) = fans;
        match input {
            Input::Pixels(x) => quads::backward_into(tiles, dw, dz, x, fan_out, cols.start / 4..cols.end.div_ceil(4)),
            Input::Sparse(x) => {
                dw.fill(0.0);
                block::backward_range(dw, dz, x, fan_out, cols)
            }
            Input::Dense(x) => {
                dw.fill(0.0);
                dense::backward_range(dw, dz, x, fan_in, fan_out, tiles, cols)
            }
        }
    }
}

/// Dropout of hidden layer `l`'s outputs `a` (all n rows); `pre` gets them as they were.
fn drop_out(job: &Job, a: &mut [f32], pre: &mut Vec<Vec<f32>>, l: usize) {
    let Some(m) = job.masks else { return };
    pre.push(a.to_vec());
    let h = job.p.shape.hidden[l];
    a.par_chunks_mut(ROW_PIECE * h).enumerate().for_each(|(i, a)| {
        for (r, pos) in piece(i, ROW_PIECE, a.len() / h).enumerate() {
            for (j, v) in a[r * h..(r + 1) * h].iter_mut().enumerate() {
                *v *= m.factor(l, pos, j);
            }
        }
    });
}

/// Wall time of each phase times the threads that share it, so that phases compare with the
/// shards' (summed over threads).
struct Clock(Option<Instant>);

impl Clock {
    fn new(on: bool) -> Clock {
        Clock(on.then(Instant::now))
    }

    fn lap(&mut self, acc: &mut u64) {
        if let Some(t0) = self.0 {
            let t1 = Instant::now();
            *acc += (t1 - t0).as_nanos() as u64 * rayon::current_num_threads() as u64;
            self.0 = Some(t1);
        }
    }
}
