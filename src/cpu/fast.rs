//! The fast CPU training step: the same math as `reference`, arranged for speed, for any number
//! of hidden layers.
//!
//! * Input by quads: the training set is kept once as rows of quads (4 pixels side by side)
//!   with the blank quads left out (`SparseRows`); MNIST's digits are 81% blank pixels and 72%
//!   blank quads. The input-layer products X·W1 and X^T·dZ1 (98% of the dense FLOPs of a
//!   784-H-10 network) touch only the inked quads: `z1_i = b1 + Σ_p x_ip W1[p,:]` and
//!   `dW1[p,:] += x_ip dz1_i`.
//! * Blocks by quad: a block's quads are regrouped by quad (`quads::Quads`), and both products
//!   walk H in slices held in registers: forward, a quad's 4 rows of W1 are loaded once per
//!   block and added into every row that uses them; backward, the quad's 4 rows of dW1 are
//!   summed over the block's rows in registers and stored once per block. Dense inputs
//!   (Fashion-MNIST's garments, photos) take the same products, which beat register-tiled
//!   dense products at every density (docs/performance.md).
//! * Hidden-to-hidden layers run column-wise block products (`block`) on the non-zero
//!   activations and, backwards, on the non-zero gradients with W^T; a block with enough
//!   non-zeros (sigmoid's, and most ReLU blocks) takes register-tiled dense products instead
//!   (`dense`), from the density `dense_from` gives for the SIMD level (`crossover` measures
//!   it). Zeros add +0, so all of these give the same bits.
//! * The buffers the kernels load by vectors (a block's activations and their gradients, the
//!   packed panels) start on a cache line (`lines::Lines`), so no 8- or 16-float slice
//!   straddles two lines.
//! * The small output layer is vectorised over H with W_out transposed (K rows of length H).
//! * Rows go in blocks (`BLOCK`) through three phases (input forward | hidden layers, softmax
//!   and their backward | input backward), which keeps each phase's weights hot and lets `bench`
//!   time the phases.
//! * Threads: rows are cut into a fixed number of shards (independent of the thread count), each
//!   shard accumulates its own gradients in row order, and the shards are summed in order. The
//!   loops add every product by fused multiply-add and sum lanes in a fixed order, so results
//!   are bit-identical on any thread count and SIMD level (baseline, AVX2, AVX-512: the same
//!   code compiled three times; see `Simd`).
//! * Mini-batches (at most `BATCH_ROWS` rows) go layer by layer instead (`batch`): each phase
//!   in parallel pieces with disjoint outputs, one set of gradients and no sum of shards.
//!
//! Tested against `reference::forward_backward` in `tests/cpu_reference.rs`.

use std::ops::Range;
use std::time::Instant;

use rayon::prelude::*;

use block::{Columns, axpy};
use dense::Panels;

use crate::dropout::StepMasks;
use crate::model::{Activation, Layer, Params, Stats, transpose};

#[macro_use]
mod simd_piece;
mod batch;
mod block;
mod crossover;
mod dense;
mod head;
mod lines;
mod peak;
mod quads;
mod rows;

pub use crossover::{CrossoverPoint, crossover, dense_wins_from};
use lines::Lines;
pub use peak::peak_flops;
use quads::Quads;
pub use rows::SparseRows;

/// Gradients are summed in this many shards of consecutive rows, whatever the thread count.
const SHARDS: usize = 16;
/// Fewest rows per shard when a batch is too small for `SHARDS` of them.
const MIN_SHARD_ROWS: usize = 64;
/// Gradient passes over at most this many rows run layer by layer (`batch`), not in shards.
pub const BATCH_ROWS: usize = 1024;
/// Rows per block inside a shard: rows go through the phases a block at a time, the dense tiles
/// of hidden-to-hidden layers reuse each panel of weights over a block's rows, and each quad's
/// rows of W1 and dW1 are loaded once a block. With the input forward by slices once a block's
/// outputs pass L1, 784-128-10's full-batch step runs 10% faster in blocks of 256 than of 64, 5%
/// faster than of 128, and as fast as of 512 (docs/performance.md). Any length gives the same
/// bits: every sum runs over the rows in order whatever the blocks.
pub const BLOCK: usize = 256;

/// Dot product with 16 lanes summed in a fixed order (vectorisable, and the same on every CPU):
/// each lane by fused multiply-add, the last `len % 16` products rounded one by one and summed.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let (ac, bc) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for t in 0..16 {
            lanes[t] = x[t].mul_add(y[t], lanes[t]);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `out = act(b + input · w)` for a block of rows through a hidden-to-hidden layer (w is fan_in x
/// fan_out row-major), over the input's non-zeros (a ReLU row is about half zeros) or densely.
#[inline(always)]
fn dense_block_forward(
    out: &mut [f32],
    b: Option<&[f32]>,
    input: &[f32],
    w: &[f32],
    (fan_in, fan_out): (usize, usize),
    (nz, panels): (&mut Columns, &mut Option<Panels>),
    (act, kernels): (Activation, Kernels),
) {
    product_forward(out, b, input, w, (fan_in, fan_out), (nz, panels), kernels);
    act.apply_all(out);
}

/// Hidden-layer blocks with at least this fraction of non-zero inputs take the dense products,
/// the others the column-wise sparse ones (the results are the same; only the time differs).
/// AVX2 and the baseline: where `bench --crossover` found the dense ones winning for hidden
/// layers of 128 to 512 (128 -> 256, 256 -> 128, 256 -> 512, 512 -> 512) on a 2-core Zen 3, 30-35%
/// non-zero for AVX2 and 65-80% for SSE2 (whose tiles of 16 outputs take 4 of its 16 registers a
/// row). AVX-512: where the two took the same time for 784-128-10's input layer on a 2-core
/// Zen 5, before pixels went by quads. `--crossover` puts the hidden layers' crossover lower
/// (25-30% on a Zen 4, 20-25% on a Xeon), but 784-256-128-10's full-batch step ran 2.5% slower
/// with 25% on the Xeon (docs/performance.md), so 35% stays.
pub fn dense_from(simd: Simd) -> f64 {
    match simd {
        Simd::Avx512 => 0.35,
        Simd::Avx2 => 0.30,
        Simd::Baseline => 0.75,
    }
}

/// How the fast step runs: the SIMD level, and the density of a block's inputs (non-zeros per
/// value) from which it takes the dense products (0: always, above 1: never). Results are the
/// same bit for bit whatever these are; tests and `bench` set them, training detects them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Kernels {
    pub simd: Simd,
    pub dense_from: f64,
}

impl Kernels {
    pub fn detect() -> Kernels {
        let simd = Simd::detect();
        Kernels { simd, dense_from: dense_from(simd) }
    }

    /// Whether `nnz` non-zeros among `len` values make a block dense.
    #[inline(always)]
    fn is_dense(self, nnz: usize, len: usize) -> bool {
        nnz as f64 >= self.dense_from * len as f64
    }
}

/// `out = init + input · w` for a dense row-major block of `input` (rows of `fan_in`), by the
/// product its density calls for; `panels` keeps w's `Panels` once the dense product needs them.
#[inline(always)]
fn product_forward(
    out: &mut [f32],
    init: Option<&[f32]>,
    input: &[f32],
    w: &[f32],
    (fan_in, fan_out): (usize, usize),
    (nz, panels): (&mut Columns, &mut Option<Panels>),
    kernels: Kernels,
) {
    if kernels.is_dense(input.iter().filter(|&&v| v != 0.0).count(), input.len()) {
        let panels = panels.get_or_insert_with(|| Panels::pack(w, fan_in, fan_out, kernels.simd));
        dense::forward(out, init, input, fan_in, (w, panels), fan_out);
    } else {
        nz.set_dense(input, fan_in);
        block::forward(out, init, nz, w, fan_out);
    }
}

/// `dw += input^T · dz` for a dense row-major block of `input` (rows of `fan_in`), by the product
/// its density calls for.
#[inline(always)]
fn product_backward(
    dw: &mut [f32],
    dz: &[f32],
    input: &[f32],
    (fan_in, fan_out): (usize, usize),
    nz: &mut Columns,
    kernels: Kernels,
) {
    if kernels.is_dense(input.iter().filter(|&&v| v != 0.0).count(), input.len()) {
        dense::backward(dw, dz, input, fan_in, fan_out, kernels.simd);
    } else {
        nz.set_dense(input, fan_in);
        block::backward(dw, dz, nz, fan_out);
    }
}

/// Softmax in place over `z` (logits become probabilities); returns (loss, correct).
#[inline(always)]
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
    for v in z.iter_mut() {
        *v /= sum;
    }
    (sum.ln() - zy, arg == y)
}

/// Nanoseconds spent in each phase, summed over threads (`bench` reports their shares).
/// Layer 0 is the input layer; the head is the output layer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PhaseTimes {
    /// `forward[l]`: hidden layer l's `A_l = act(A_{l-1}·W_l + b_l)` (with dropout), A_0 = X.
    pub forward: Vec<u64>,
    /// The output layer: `Z = A_last·W_out + b_out`, softmax and cross-entropy, `dW_out`,
    /// `db_out` and `dZ_last`.
    pub head: u64,
    /// `backward[l]`: hidden layer l's `dW_l += A_{l-1}^T·dZ_l`, `db_l`, and `dZ_{l-1}` for l > 0.
    pub backward: Vec<u64>,
}

impl PhaseTimes {
    fn add(&mut self, o: &PhaseTimes) {
        for (mine, theirs) in [(&mut self.forward, &o.forward), (&mut self.backward, &o.backward)] {
            mine.resize(mine.len().max(theirs.len()), 0);
            mine.iter_mut().zip(theirs).for_each(|(a, b)| *a += b);
        }
        self.head += o.head;
    }

    /// All phases' nanoseconds.
    pub fn total(&self) -> u64 {
        self.forward.iter().chain(&self.backward).sum::<u64>() + self.head
    }
}

/// What every shard reads: parameters, each layer above the first transposed (`wt[l - 1]` is
/// layer l's W^T, fan_out rows of length fan_in), data, the rows of `x` to visit (`None`: all of
/// them in order; a mini-batch otherwise), and whether to run the backward pass (`inv_n` =
/// 1/(rows visited)) and time the phases. With `masks`, the hidden layers' outputs go through
/// dropout (row = position in the visit order), as in `reference::forward_backward_dropout`.
struct Job<'a> {
    p: &'a Params,
    wt: Vec<Vec<f32>>,
    act: Activation,
    x: &'a SparseRows,
    labels: &'a [u8],
    rows: Option<&'a [u32]>,
    inv_n: Option<f32>,
    timed: bool,
    masks: Option<&'a StepMasks>,
    kernels: Kernels,
}

impl Job<'_> {
    /// The row of `x` at position `i` of the visit order.
    #[inline(always)]
    pub(super) fn row(&self, i: usize) -> usize {
        self.rows.map_or(i, |r| r[i] as usize)
    }
}

/// Dropout of hidden layer `l`'s outputs `a` for the block's rows at positions `block`: `pre`
/// keeps them as they were (for act'), `a` gets its mask.
#[inline(always)]
fn drop_out(a: &mut [f32], pre: &mut [f32], masks: &StepMasks, l: usize, block: Range<usize>, h: usize) {
    pre.copy_from_slice(a);
    for (r, i) in block.enumerate() {
        for (j, v) in a[r * h..(r + 1) * h].iter_mut().enumerate() {
            *v *= masks.factor(l, i, j);
        }
    }
}

/// `dz ⊙= act'(a)` for hidden layer `l`'s gradient, through its mask first when dropping out
/// (then `pre` holds the outputs before the mask).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn activation_backward(
    dz: &mut [f32],
    a: &[f32],
    pre: &[f32],
    masks: Option<&StepMasks>,
    l: usize,
    block: Range<usize>,
    h: usize,
    act: Activation,
) {
    let Some(m) = masks else {
        dz.iter_mut().zip(a).for_each(|(d, &av)| *d *= act.derivative_from_output(av));
        return;
    };
    for (r, i) in block.enumerate() {
        let (dz, pre) = (&mut dz[r * h..(r + 1) * h], &pre[r * h..(r + 1) * h]);
        for (j, (d, &av)) in dz.iter_mut().zip(pre).enumerate() {
            *d = *d * m.factor(l, i, j) * act.derivative_from_output(av);
        }
    }
}

/// A shard's gradient sums, layer by layer, the output layer's dW held transposed (K x H_last)
/// like the `wt` it comes from.
struct GradSums {
    layers: Vec<Layer>,
}

struct ShardSums {
    grads: Option<GradSums>,
    loss: f64,
    correct: usize,
    times: PhaseTimes,
}

/// The rows of one shard in blocks of `BLOCK`: the forward pass, and the backward pass too when
/// `job.inv_n` is set. `acts[l]` and `dzs[l]` hold hidden layer l's outputs and their gradients
/// for the block's rows.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // class c indexes z, W_out^T, dW_out^T and b_out together
fn shard(job: &Job, rows: Range<usize>, cached: Option<&[Quads]>) -> ShardSums {
    let (p, act) = (job.p, job.act);
    let (hidden, k, bias) = (&p.shape.hidden, p.shape.k, p.shape.bias);
    let last = hidden.len(); // the output layer
    let h = hidden[last - 1]; // the last hidden layer
    let (w1, b1, b_out) = (&p.layers[0].w, bias.then_some(&p.layers[0].b[..]), &p.layers[last].b);
    let wt_out = &job.wt[last - 1];
    let mut grads = job.inv_n.map(|_| GradSums {
        layers: (0..=last)
            .map(|l| {
                let (fan_in, fan_out) = p.shape.layer(l);
                Layer { w: vec![0.0; fan_in * fan_out], b: vec![0.0; fan_out] }
            })
            .collect(),
    });
    let (mut loss, mut correct) = (0.0f64, 0usize);
    let mut times = PhaseTimes { forward: vec![0; last], head: 0, backward: vec![0; last] };
    let rows_per = BLOCK;
    let mut acts: Vec<Lines> = hidden.iter().map(|&w| Lines::zeros(rows_per * w)).collect();
    let mut dzs: Vec<Lines> = hidden.iter().map(|&w| Lines::zeros(rows_per * w)).collect();
    let mut pre: Vec<Vec<f32>> =
        hidden.iter().map(|&w| vec![0.0; if job.masks.is_some() { rows_per * w } else { 0 }]).collect();
    let (mut z, mut nz) = (vec![0.0; k], Columns::default());
    let mut quads = Quads::default();
    let mut zs = vec![0.0; rows_per * k]; // the block's dZ_out, for dW_out
    // Each hidden-to-hidden weight matrix's `Panels` once a dense product needs them: layer l's
    // W at l and its W^T at last + l.
    let mut panels: Vec<Option<Panels>> = (0..2 * last + 1).map(|_| None).collect();
    let lap = |t: &mut Option<Instant>, acc: &mut u64| {
        if let Some(t0) = t {
            let t1 = Instant::now();
            *acc += (t1 - *t0).as_nanos() as u64;
            *t = Some(t1);
        }
    };
    for (b, block) in blocks(rows.clone(), rows_per).enumerate() {
        let mut t = job.timed.then(Instant::now);
        let (h1, d) = (hidden[0], p.shape.d);
        let a = &mut acts[0][..block.len() * h1];
        let quads = match cached {
            Some(blocks) => &blocks[b],
            None => {
                quads.set_rows(d, block.clone().map(|i| job.x.row(job.row(i))));
                &quads
            }
        };
        quads::forward(job.kernels.simd, a, b1, quads, (w1, h1, 0..h1), block.len());
        act.apply_all(a);
        if let Some(m) = job.masks {
            drop_out(a, &mut pre[0][..block.len() * h1], m, 0, block.clone(), h1);
        }
        lap(&mut t, &mut times.forward[0]);
        for l in 1..last {
            let (fan_in, fan_out) = (hidden[l - 1], hidden[l]);
            let (below, above) = acts.split_at_mut(l);
            let (input, out) = (&below[l - 1][..block.len() * fan_in], &mut above[0][..block.len() * fan_out]);
            let b = bias.then_some(&p.layers[l].b[..]);
            let cache = (&mut nz, &mut panels[l]);
            dense_block_forward(out, b, input, &p.layers[l].w, (fan_in, fan_out), cache, (act, job.kernels));
            if let Some(m) = job.masks {
                drop_out(out, &mut pre[l][..block.len() * fan_out], m, l, block.clone(), fan_out);
            }
            lap(&mut t, &mut times.forward[l]);
        }
        let (a_last, dz_last) = (&acts[last - 1], &mut dzs[last - 1]);
        for (r, i) in block.clone().enumerate() {
            let a = &a_last[r * h..(r + 1) * h];
            for c in 0..k {
                z[c] = dot(a, &wt_out[c * h..(c + 1) * h]) + if bias { b_out[c] } else { 0.0 };
            }
            let y = job.labels[job.row(i)] as usize;
            let (l, ok) = softmax_xent_row(&mut z, y);
            loss += l as f64;
            correct += ok as usize;
            let (Some(inv_n), Some(g)) = (job.inv_n, grads.as_mut()) else { continue };
            // dz_out = (p - onehot(y)) / N ; dW_out^T += dz_out ⊗ a ;
            // dz = (Σ_c dz_out_c W_out^T[c]) ⊙ act'(a)
            z[y] -= 1.0;
            z.iter_mut().for_each(|v| *v *= inv_n);
            zs[r * k..(r + 1) * k].copy_from_slice(&z);
            let dz = &mut dz_last[r * h..(r + 1) * h];
            head::input_gradient(dz, &z, wt_out, h);
            let g_out = &mut g.layers[last];
            let pre = if job.masks.is_some() { &pre[last - 1][r * h..(r + 1) * h] } else { &[][..] };
            activation_backward(dz, a, pre, job.masks, last - 1, i..i + 1, h, act);
            if bias {
                axpy(&mut g_out.b, 1.0, &z);
            }
        }
        if let Some(g) = grads.as_mut() {
            let span = ..block.len();
            head::weight_gradient(&mut g.layers[last].w, &zs[..span.end * k], &a_last[..span.end * h], (k, h), 0..h);
        }
        lap(&mut t, &mut times.head);
        if let Some(g) = grads.as_mut() {
            // Hidden layer l, top down: dW_l += a_{l-1} ⊗ dz_l ; db_l += dz_l ;
            // dz_{l-1} = (dz_l · W_l^T) ⊙ act'(a_{l-1}), both products over the rows' non-zeros.
            for l in (1..last).rev() {
                let (fan_in, fan_out) = (hidden[l - 1], hidden[l]);
                let (below, above) = dzs.split_at_mut(l);
                let gl = &mut g.layers[l];
                let input = &acts[l - 1][..block.len() * fan_in];
                let (dz_in, dz) = (&mut below[l - 1][..block.len() * fan_in], &above[0][..block.len() * fan_out]);
                product_backward(&mut gl.w, dz, input, (fan_in, fan_out), &mut nz, job.kernels);
                if bias {
                    dz.chunks_exact(fan_out).for_each(|dz| axpy(&mut gl.b, 1.0, dz));
                }
                let cache = (&mut nz, &mut panels[last + l]);
                product_forward(dz_in, None, dz, &job.wt[l - 1], (fan_out, fan_in), cache, job.kernels);
                let pre = &pre[l - 1][..if job.masks.is_some() { block.len() * fan_in } else { 0 }];
                activation_backward(dz_in, input, pre, job.masks, l - 1, block.clone(), fan_in, act);
                lap(&mut t, &mut times.backward[l]);
            }
        }
        if let Some(g) = grads.as_mut() {
            let (g1, dz) = (&mut g.layers[0], &dzs[0][..block.len() * h1]);
            quads::backward(job.kernels.simd, &mut g1.w, dz, quads, h1, 0..quads.quads());
            if bias {
                dz.chunks_exact(h1).for_each(|dz| axpy(&mut g1.b, 1.0, dz));
            }
            lap(&mut t, &mut times.backward[0]);
        }
    }
    ShardSums { grads, loss, correct, times }
}

/// The SIMD level the fast path runs at: the widest the CPU has. The sparse products are bound
/// by loading weight rows and gain little from AVX-512; the dense tiles double their width.
/// Ordered from narrowest to widest.
///
/// Every product adds its terms by fused multiply-add, `a.mul_add(b, acc)`: one rounding per
/// term, half the floating-point instructions of a multiply and an add. AVX2 comes with FMA3
/// (and is taken only with it) and AVX-512 includes it; the baseline build has no FMA
/// instruction and calls libm's `fmaf`, which rounds correctly too, so every level gives the
/// same bits, the baseline slowly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Simd {
    Baseline,
    Avx2,
    Avx512,
}

impl Simd {
    pub fn detect() -> Simd {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Simd::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Simd::Avx2;
            }
        }
        Simd::Baseline
    }

    pub fn name(self) -> &'static str {
        match self {
            Simd::Avx512 => "AVX-512",
            Simd::Avx2 => "AVX2",
            Simd::Baseline if cfg!(target_arch = "x86_64") => "SSE2",
            Simd::Baseline => "baseline",
        }
    }
}

/// Runs `shard` compiled for AVX-512, AVX2 or the baseline target. The code is the same, only the
/// vector width differs, and not the results, bit for bit.
fn shard_simd(simd: Simd, job: &Job, rows: Range<usize>, cached: Option<&[Quads]>) -> ShardSums {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        fn avx2(job: &Job, rows: Range<usize>, cached: Option<&[Quads]>) -> ShardSums {
            shard(job, rows, cached)
        }
        #[target_feature(enable = "avx512f")]
        fn avx512(job: &Job, rows: Range<usize>, cached: Option<&[Quads]>) -> ShardSums {
            shard(job, rows, cached)
        }
        match simd.min(Simd::detect()) {
            // SAFETY: `Simd::detect` found these features on this CPU.
            Simd::Avx512 => return unsafe { avx512(job, rows, cached) },
            // SAFETY: as above.
            Simd::Avx2 => return unsafe { avx2(job, rows, cached) },
            Simd::Baseline => {}
        }
    }
    shard(job, rows, cached)
}

/// Loss and accuracy of `params` on `x` (forward only, threaded).
pub fn evaluate(params: &Params, act: Activation, x: &SparseRows, labels: &[u8]) -> Stats {
    run(Kernels::detect(), params, act, x, labels, None, None, false, None).0
}

/// Class probabilities of every row of `x` (N x K, row-major), threaded: what `eval` reports.
pub fn probabilities(p: &Params, act: Activation, x: &SparseRows) -> Vec<f32> {
    let (hidden, k, bias) = (&p.shape.hidden, p.shape.k, p.shape.bias);
    let last = hidden.len();
    let h = hidden[last - 1];
    let wt_out = transpose(&p.layers[last].w, h, k);
    let b = |l: usize| bias.then_some(&p.layers[l].b[..]);
    let mut out = vec![0.0; x.n() * k];
    let block = BLOCK;
    out.par_chunks_mut(k * block).enumerate().for_each(|(c, probs)| {
        let rows = c * block..c * block + probs.len() / k;
        let mut acts: Vec<Vec<f32>> = hidden.iter().map(|&w| vec![0.0; rows.len() * w]).collect();
        let (mut quads, mut nz, kernels) = (Quads::default(), Columns::default(), Kernels::detect());
        quads.set_rows(p.shape.d, rows.clone().map(|i| x.row(i)));
        quads::forward(kernels.simd, &mut acts[0], b(0), &quads, (&p.layers[0].w, hidden[0], 0..hidden[0]), rows.len());
        act.apply_all(&mut acts[0]);
        for l in 1..last {
            let (below, above) = acts.split_at_mut(l);
            let (input, w, cache) = (&below[l - 1], &p.layers[l].w, (&mut nz, &mut None));
            dense_block_forward(&mut above[0], b(l), input, w, p.shape.layer(l), cache, (act, kernels));
        }
        for (a, z) in acts[last - 1].chunks_exact(h).zip(probs.chunks_mut(k)) {
            for (j, z) in z.iter_mut().enumerate() {
                *z = dot(a, &wt_out[j * h..(j + 1) * h]) + if bias { p.layers[last].b[j] } else { 0.0 };
            }
            softmax_xent_row(z, 0);
        }
    });
    out
}

/// Gradients of the mean cross-entropy over all rows of `x`, and the forward pass's loss/accuracy.
pub fn forward_backward(params: &Params, act: Activation, x: &SparseRows, labels: &[u8]) -> (Params, Stats) {
    forward_backward_dropout(params, act, x, labels, None, None)
}

/// `forward_backward` over a mini-batch: the rows of `x` listed in `rows`, the mean taken over them.
pub fn forward_backward_rows(
    params: &Params,
    act: Activation,
    x: &SparseRows,
    labels: &[u8],
    rows: &[u32],
) -> (Params, Stats) {
    forward_backward_dropout(params, act, x, labels, Some(rows), None)
}

/// `forward_backward` (over `rows`, or all of `x` when `None`) with one step's dropout masks on
/// the hidden layers, row = position in the visit order.
pub fn forward_backward_dropout(
    params: &Params,
    act: Activation,
    x: &SparseRows,
    labels: &[u8],
    rows: Option<&[u32]>,
    masks: Option<&StepMasks>,
) -> (Params, Stats) {
    let mut grads = Params::empty(params.shape.clone());
    let stats = forward_backward_into(&mut grads, params, act, x, labels, rows, masks);
    (grads, stats)
}

/// `forward_backward_dropout` into `grads`, whatever they held: a training step's gradients
/// reuse the last step's buffers, which a mini-batch would otherwise allocate and zero (784 x H
/// floats on the main thread between two parallel phases).
pub fn forward_backward_into(
    grads: &mut Params,
    params: &Params,
    act: Activation,
    x: &SparseRows,
    labels: &[u8],
    rows: Option<&[u32]>,
    masks: Option<&StepMasks>,
) -> Stats {
    run(Kernels::detect(), params, act, x, labels, rows, Some(grads), false, masks).0
}

/// `forward_backward_into` (over `rows`, or all of `x` when `None`, no dropout) with given
/// kernels (the SIMD level capped at what the CPU has), optionally timing its phases: for tests
/// and `bench`.
#[allow(clippy::too_many_arguments)]
pub fn forward_backward_with(
    grads: &mut Params,
    kernels: Kernels,
    timed: bool,
    params: &Params,
    act: Activation,
    x: &SparseRows,
    labels: &[u8],
    rows: Option<&[u32]>,
) -> (Stats, PhaseTimes) {
    run(kernels, params, act, x, labels, rows, Some(grads), timed, None)
}

/// The forward pass, and the backward pass into `grads` when given (their old contents
/// ignored): all shards in parallel, then their sums in shard order, or a mini-batch layer by
/// layer.
#[allow(clippy::too_many_arguments)]
fn run(
    kernels: Kernels,
    p: &Params,
    act: Activation,
    x: &SparseRows,
    labels: &[u8],
    rows: Option<&[u32]>,
    mut grads: Option<&mut Params>,
    timed: bool,
    masks: Option<&StepMasks>,
) -> (Stats, PhaseTimes) {
    let (s, backward) = (&p.shape, grads.is_some());
    let (last, n) = (s.hidden.len(), rows.map_or(x.n(), |r| r.len()));
    let h = s.hidden[last - 1];
    let inv_n = backward.then(|| 1.0 / n.max(1) as f32);
    let wt = (1..p.layers.len())
        .map(|l| {
            let (fan_in, fan_out) = s.layer(l);
            transpose(&p.layers[l].w, fan_in, fan_out)
        })
        .collect();
    // The level the shards will run at, which sets the dense tiles' width too.
    let kernels = Kernels { simd: kernels.simd.min(Simd::detect()), ..kernels };
    let block = BLOCK;
    let job = Job { p, wt, act, x, labels, rows, inv_n, timed, masks, kernels };
    if let Some(grads) = grads.as_deref_mut().filter(|_| n <= BATCH_ROWS) {
        grads.shape = s.clone();
        let (loss, correct, times) = batch::run(&job, n, &mut grads.layers);
        return (Stats { loss: loss / n.max(1) as f64, correct, n }, times);
    }
    // A pass over all of x in order reuses x's blocks by quad, built on the first such pass.
    let cached = rows.is_none().then(|| x.blocks());
    let work: Vec<_> = shards(n)
        .into_iter()
        .scan(0, |first, rows| {
            let count = blocks(rows.clone(), block).count();
            *first += count;
            Some((rows, cached.map(|c| &c[*first - count..*first])))
        })
        .collect();
    let mut parts: Vec<ShardSums> =
        work.into_par_iter().map(|(rows, cached)| shard_simd(kernels.simd, &job, rows, cached)).collect();
    let (mut loss, mut correct, mut times) = (0.0, 0, PhaseTimes::default());
    for part in &parts {
        loss += part.loss;
        correct += part.correct;
        times.add(&part.times);
    }
    if let Some(grads) = grads {
        let sums: Vec<GradSums> = parts.iter_mut().filter_map(|part| part.grads.take()).collect();
        *grads =
            sum_in_order(sums).map_or_else(|| Params::zeros(s.clone()), |layers| Params { shape: s.clone(), layers });
        grads.layers[last].w = transpose(&grads.layers[last].w, s.k, h);
    }
    (Stats { loss: loss / n.max(1) as f64, correct, n }, times)
}

/// The shards' gradient sums added element by element in shard order, `s0 + s1 + ...` (the
/// same for every thread count), in parallel over pieces of each tensor: a mini-batch's step
/// would otherwise spend a good part of its time summing 784 x H floats per shard on one thread.
fn sum_in_order(mut sums: Vec<GradSums>) -> Option<Vec<Layer>> {
    const PIECE: usize = 16 * 1024;
    if sums.is_empty() {
        return None;
    }
    let rest = sums.split_off(1);
    let mut acc = sums.pop()?.layers;
    for (l, layer) in acc.iter_mut().enumerate() {
        for (t, tensor) in [&mut layer.w, &mut layer.b].into_iter().enumerate() {
            tensor.par_chunks_mut(PIECE).enumerate().for_each(|(i, piece)| {
                for other in &rest {
                    let o = if t == 0 { &other.layers[l].w } else { &other.layers[l].b };
                    axpy(piece, 1.0, &o[i * PIECE..][..piece.len()]);
                }
            });
        }
    }
    Some(acc)
}

/// The blocks of `len` rows that a shard's rows go through.
fn blocks(rows: Range<usize>, len: usize) -> impl Iterator<Item = Range<usize>> + Clone {
    rows.clone().step_by(len).map(move |r| r..(r + len).min(rows.end))
}

/// Position ranges of the shards: `SHARDS` of them, fewer for small mini-batches so each has at
/// least `MIN_SHARD_ROWS` rows (every shard zeroes and sums a whole set of gradients). The count
/// depends on n only, never on the thread count.
fn shards(n: usize) -> Vec<Range<usize>> {
    let count = n.div_ceil(MIN_SHARD_ROWS).clamp(1, SHARDS);
    let per = n.div_ceil(count).max(1);
    (0..n).step_by(per).map(|r| r..(r + per).min(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::SparseRows;
    use crate::model::{Activation, Params, Shape};

    #[test]
    fn a_pass_over_refilled_rows_regroups_them_again() {
        // Enough rows for several shards of several blocks, so that passes reuse the blocks.
        let (n, d) = (3 * super::BLOCK * super::SHARDS / 2 + 7, 30);
        let pixels = |seed: usize| -> Vec<u8> { (0..n * d).map(|i| ((i * 7919 + seed) % 5 * 60) as u8).collect() };
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let params = Params::init(Shape::new(d, &[20], 10, true), Activation::Relu, 1);
        let pass = |x: &SparseRows| super::forward_backward(&params, Activation::Relu, x, &labels);
        let (a, b) = (pixels(1), pixels(2));
        let mut rows = SparseRows::from_pixels(&a, d);
        let first = pass(&rows);
        assert_eq!(pass(&rows), first, "a second pass over the same rows");
        rows.refill(&b, d);
        assert_eq!(pass(&rows), pass(&SparseRows::from_pixels(&b, d)), "a pass after refill");
        assert_ne!(pass(&rows), first, "the two sets of pixels differ");
    }
}
