//! The CPU reference against finite differences, and the fast CPU step against the reference.

mod common;

use common::tolerance::{FAST_PATH, FD_EPS, FINITE_DIFFERENCES, LOSS_RTOL};
use common::{assert_close, mnist, rng, subset, uniform};
use gpu_mnist::cpu::{fast, reference};
use gpu_mnist::data::Dataset;
use gpu_mnist::dropout::Dropout;
use gpu_mnist::model::{Activation, Params, Shape, Stats};
use rand::seq::SliceRandom;

const ACTIVATIONS: [Activation; 3] = [Activation::Sigmoid, Activation::Relu, Activation::Elu];

/// Hidden widths the finite-difference check runs: one, two and three hidden layers.
const FD_HIDDEN: [&[usize]; 3] = [&[5], &[5, 4], &[4, 3, 3]];

#[test]
fn reference_gradients_match_finite_differences() {
    for hidden in FD_HIDDEN {
        for act in ACTIVATIONS {
            for bias in [true, false] {
                let shape = Shape::new(7, hidden, 4, bias);
                let mut r = rng(11);
                let n = 9;
                let x = uniform(&mut r, n * shape.d, 0.0, 1.0);
                let labels: Vec<u8> = (0..n).map(|i| (i % shape.k) as u8).collect();
                let mut params = Params::init(shape.clone(), act, 3);
                if bias {
                    for layer in &mut params.layers {
                        layer.b = uniform(&mut r, layer.b.len(), -0.5, 0.5);
                    }
                }
                let (grads, _) = reference::forward_backward(&params, act, &x, &labels);
                let loss_at = |p: &Params| reference::evaluate(p, act, &x, &labels).loss as f32;
                let mut numeric = Params::zeros(shape.clone());
                // Tensors go w1, b1, w2, b2, ...: the odd ones are biases, whose gradients stay 0 without bias.
                for t in 0..numeric.tensors().len() {
                    if !bias && t % 2 == 1 {
                        continue;
                    }
                    let len = numeric.tensors()[t].1.len();
                    for i in 0..len {
                        let mut plus = params.clone();
                        plus.tensors_mut()[t].1[i] += FD_EPS;
                        let mut minus = params.clone();
                        minus.tensors_mut()[t].1[i] -= FD_EPS;
                        numeric.tensors_mut()[t].1[i] = (loss_at(&plus) - loss_at(&minus)) / (2.0 * FD_EPS);
                    }
                }
                for ((name, g), (_, num)) in grads.tensors().into_iter().zip(numeric.tensors()) {
                    assert_close(
                        &format!("d{name} ({}, {act:?}, bias {bias}) vs finite differences", shape.describe()),
                        g,
                        num,
                        FINITE_DIFFERENCES.atol,
                        FINITE_DIFFERENCES.rtol,
                    );
                }
            }
        }
    }
}

/// Random biases for every layer when the shape has them (initialisation leaves them 0).
fn with_random_biases(mut params: Params, seed: u64) -> Params {
    if params.shape.bias {
        let mut r = rng(seed);
        for layer in &mut params.layers {
            layer.b = uniform(&mut r, layer.b.len(), -0.3, 0.3);
        }
    }
    params
}

/// Class probabilities from the reference's building blocks (N x K), for `fast::probabilities`.
fn reference_probabilities(params: &Params, act: Activation, x: &[f32], n: usize) -> Vec<f32> {
    let s = &params.shape;
    let mut input = x.to_vec();
    for (l, layer) in params.layers.iter().enumerate() {
        let (fan_in, fan_out) = s.layer(l);
        let mut z = vec![0.0; n * fan_out];
        reference::linear_forward(&mut z, &input, &layer.w, s.bias.then_some(&layer.b[..]), n, fan_in, fan_out);
        input = z;
        if l + 1 < s.layer_count() {
            let z = input.clone();
            reference::activation_forward(&mut input, &z, act);
        }
    }
    let (mut probs, mut losses, mut correct) = (vec![0.0; n * s.k], vec![0.0; n], vec![false; n]);
    reference::softmax_xent_forward(&mut probs, &mut losses, &mut correct, &input, &vec![0; n], n, s.k);
    probs
}

/// The fast step, `evaluate` and `probabilities` against the reference on `pixels`/`labels`.
fn check_fast_against_reference(pixels: &[u8], labels: &[u8], params: &Params, act: Activation) {
    let (d, n) = (params.shape.d, labels.len());
    let what = format!("{} {act:?} bias {}, N {n}", params.shape.describe(), params.shape.bias);
    let x = reference::scale_pixels(pixels);
    let sparse = fast::SparseRows::from_pixels(pixels, d);
    let (want, want_stats) = reference::forward_backward(params, act, &x, labels);
    let (got, got_stats) = fast::forward_backward(params, act, &sparse, labels);
    for ((name, g), (_, w)) in got.tensors().into_iter().zip(want.tensors()) {
        assert_close(&format!("d{name} ({what}) fast vs reference"), g, w, FAST_PATH.atol, FAST_PATH.rtol);
    }
    assert!(
        (got_stats.loss - want_stats.loss).abs() <= LOSS_RTOL * want_stats.loss,
        "{what}: {got_stats:?} vs {want_stats:?}"
    );
    assert_eq!(got_stats.correct, want_stats.correct, "{what}");
    let eval = fast::evaluate(params, act, &sparse, labels);
    assert_eq!(eval.correct, want_stats.correct, "{what}");
    assert!((eval.loss - want_stats.loss).abs() <= LOSS_RTOL * want_stats.loss, "{what}: {eval:?} vs {want_stats:?}");
    let probs = fast::probabilities(params, act, &sparse);
    assert_close(
        &format!("probabilities ({what}) fast vs reference"),
        &probs,
        &reference_probabilities(params, act, &x, n),
        FAST_PATH.atol,
        FAST_PATH.rtol,
    );
}

/// Set sizes on either side of `fast::BATCH_ROWS`: 700 rows go layer by layer over the whole
/// set, 1,100 in shards (17 of them, the last block short).
const SIZES: [usize; 2] = [700, fast::BATCH_ROWS + 76];

#[test]
fn fast_step_matches_reference_on_real_digits() {
    let m = mnist();
    for n in SIZES {
        let train = subset(&m.train, n);
        for (act, h, bias) in
            [(Activation::Relu, 33, true), (Activation::Sigmoid, 7, false), (Activation::Elu, 129, true)]
        {
            let params = with_random_biases(Params::init(Shape::new(train.d(), &[h], 10, bias), act, 5), 2);
            check_fast_against_reference(&train.pixels, &train.labels, &params, act);
            // Inverted digits are 81% inked: every block takes the dense products.
            let inverted: Vec<u8> = train.pixels.iter().map(|p| 255 - p).collect();
            check_fast_against_reference(&inverted, &train.labels, &params, act);
        }
    }
}

/// Deeper networks with widths that are not multiples of the 8/16-float lanes or the 64-float
/// register chunks, at both `SIZES`. The one-layer
/// tolerances hold: the worst element measured used 1.4% of its bound (|diff| ~1e-6 of the
/// tensor's largest entry).
const DEEP_HIDDEN: [&[usize]; 4] = [&[37, 13], &[64, 33, 17], &[130, 70], &[20, 9, 11, 5, 7, 6, 12]];

#[test]
fn fast_step_matches_reference_for_deeper_networks() {
    let m = mnist();
    for n in SIZES {
        let train = subset(&m.train, n);
        for hidden in DEEP_HIDDEN {
            for act in ACTIVATIONS {
                for bias in [true, false] {
                    let params = with_random_biases(Params::init(Shape::new(train.d(), hidden, 10, bias), act, 6), 7);
                    check_fast_against_reference(&train.pixels, &train.labels, &params, act);
                }
            }
        }
    }
}

/// Rows `rows` of `set`, in that order: the mini-batch as the reference takes it.
fn gather(set: &Dataset, rows: &[u32]) -> (Vec<u8>, Vec<u8>) {
    let d = set.d();
    let pixels = rows.iter().flat_map(|&i| &set.pixels[i as usize * d..(i as usize + 1) * d]).copied().collect();
    (pixels, rows.iter().map(|&i| set.labels[i as usize]).collect())
}

/// A fast step's gradients and statistics against the reference's for the same rows.
fn assert_step_matches(what: &str, (got, got_stats): (&Params, Stats), (want, want_stats): (&Params, Stats)) {
    for ((name, g), (_, w)) in got.tensors().into_iter().zip(want.tensors()) {
        assert_close(&format!("d{name} ({what}) fast vs reference"), g, w, FAST_PATH.atol, FAST_PATH.rtol);
    }
    assert!(
        (got_stats.loss - want_stats.loss).abs() <= LOSS_RTOL * want_stats.loss,
        "{what}: {got_stats:?} vs {want_stats:?}"
    );
    assert_eq!((got_stats.correct, got_stats.n), (want_stats.correct, want_stats.n), "{what}");
}

#[test]
fn mini_batch_step_matches_reference_on_the_gathered_rows() {
    let m = mnist();
    let train = subset(&m.train, 3000);
    let sparse = fast::SparseRows::from_pixels(&train.pixels, train.d());
    let mut order: Vec<u32> = (0..train.n as u32).collect();
    order.shuffle(&mut rng(8));
    // 1 row, and batches of 128 and 300 rows (the last row piece short), layer by layer.
    for (hidden, batch) in [(&[40][..], 128), (&[37, 13], 1), (&[37, 13], 128), (&[64, 33, 17], 300)] {
        for act in ACTIVATIONS {
            let params = with_random_biases(Params::init(Shape::new(train.d(), hidden, 10, true), act, 3), 4);
            let rows = &order[500..500 + batch];
            let (pixels, labels) = gather(&train, rows);
            let x = reference::scale_pixels(&pixels);
            let what = format!("{} {act:?}, batch {batch}", params.shape.describe());
            let (want, want_stats) = reference::forward_backward(&params, act, &x, &labels);
            let (got, got_stats) = fast::forward_backward_rows(&params, act, &sparse, &train.labels, rows);
            assert_step_matches(&what, (&got, got_stats), (&want, want_stats));
        }
    }
}

#[test]
fn fast_step_is_bit_identical_on_any_thread_count() {
    let m = mnist();
    let train = subset(&m.train, 3000);
    let sparse = fast::SparseRows::from_pixels(&train.pixels, train.d());
    let mut order: Vec<u32> = (0..train.n as u32).collect();
    order.shuffle(&mut rng(5));
    for hidden in [&[64][..], &[64, 33, 17]] {
        let params = with_random_biases(Params::init(Shape::new(train.d(), hidden, 10, true), Activation::Relu, 9), 1);
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
            pool.install(|| {
                let full = fast::forward_backward(&params, Activation::Relu, &sparse, &train.labels);
                let batch =
                    fast::forward_backward_rows(&params, Activation::Relu, &sparse, &train.labels, &order[..300]);
                (full, batch)
            })
        };
        let one = run(1);
        // 16 threads cut a batch of 300 rows into 16 row pieces and 49 pieces of dW1.
        for threads in [2, 3, 16] {
            let many = run(threads);
            // Bits, not `==`: a 0.0 where there was a -0.0 would be a difference too.
            assert_eq!(bits(&one.0.0), bits(&many.0.0), "{hidden:?}: gradients differ between 1 and {threads} threads");
            assert_eq!(one.0.1, many.0.1);
            assert_eq!(
                bits(&one.1.0),
                bits(&many.1.0),
                "{hidden:?}: mini-batch gradients differ, 1 vs {threads} threads"
            );
            assert_eq!(one.1.1, many.1.1);
        }
    }
}

#[test]
fn gradient_buffers_reused_from_any_earlier_step_give_the_same_bits() {
    let m = mnist();
    let train = subset(&m.train, 3000);
    let sparse = fast::SparseRows::from_pixels(&train.pixels, train.d());
    let mut order: Vec<u32> = (0..train.n as u32).collect();
    order.shuffle(&mut rng(6));
    // One buffer through every case: NaNs left by a larger network, then each case's own
    // gradients, then those of a network of other widths, with and without biases.
    let mut grads = Params::zeros(Shape::new(train.d(), &[130, 70, 20], 10, true));
    grads.layers.iter_mut().for_each(|l| l.w.iter_mut().chain(&mut l.b).for_each(|v| *v = f32::NAN));
    for (hidden, bias) in [(&[64, 33][..], true), (&[40][..], false), (&[130, 70], true), (&[17], true)] {
        let params = Params::init(Shape::new(train.d(), hidden, 10, bias), Activation::Relu, 2);
        let params = if bias { with_random_biases(params, 3) } else { params };
        for rows in [Some(&order[..300]), Some(&order[7..8]), None] {
            let masks = None;
            let (fresh, fresh_stats) =
                fast::forward_backward_dropout(&params, Activation::Relu, &sparse, &train.labels, rows, masks);
            let stats =
                fast::forward_backward_into(&mut grads, &params, Activation::Relu, &sparse, &train.labels, rows, masks);
            let what = format!("{hidden:?} bias {bias}, {} rows", rows.map_or(train.n, |r| r.len()));
            assert_eq!(grads.shape, fresh.shape, "{what}");
            assert_eq!(bits(&grads), bits(&fresh), "{what}: reused buffers differ from fresh ones");
            assert_eq!(stats, fresh_stats, "{what}");
        }
    }
}

/// Every parameter's bit pattern, tensor after tensor.
fn bits(p: &Params) -> Vec<u32> {
    p.tensors().iter().flat_map(|(_, t)| t.iter().map(|v| v.to_bits())).collect()
}

#[test]
fn fast_step_is_bit_identical_on_every_simd_level_and_product() {
    let levels: Vec<fast::Simd> =
        [fast::Simd::Avx2, fast::Simd::Avx512].into_iter().filter(|&s| s <= fast::Simd::detect()).collect();
    if levels.is_empty() {
        eprintln!("skipped: this CPU has no AVX2, only the baseline build runs");
        return;
    }
    if !levels.contains(&fast::Simd::Avx512) {
        eprintln!("note: this CPU has no AVX-512; its build is not compared");
    }
    let m = mnist();
    for n in SIZES {
        simd_levels_agree(&subset(&m.train, n), &levels);
    }
}

fn simd_levels_agree(train: &Dataset, levels: &[fast::Simd]) {
    // Every other block of 64 rows inverted: about 80% of its pixels inked, so blocks go dense
    // or sparse by their own density.
    let mut pixels = train.pixels.clone();
    for (i, row) in pixels.chunks_exact_mut(train.d()).enumerate() {
        if (i / 64) % 2 == 1 {
            row.iter_mut().for_each(|p| *p = 255 - *p);
        }
    }
    for (what, pixels) in [("digits", &train.pixels), ("half inverted", &pixels)] {
        let sparse = fast::SparseRows::from_pixels(pixels, train.d());
        for hidden in [&[128][..], &[100], &[130, 70], &[64, 33, 17]] {
            for act in ACTIVATIONS {
                let params = with_random_biases(Params::init(Shape::new(train.d(), hidden, 10, true), act, 4), 2);
                let run = |simd, dense_from| {
                    let kernels = fast::Kernels { simd, dense_from };
                    let mut g = Params::empty(params.shape.clone());
                    let (s, _) =
                        fast::forward_backward_with(&mut g, kernels, false, &params, act, &sparse, &train.labels, None);
                    (g, s)
                };
                let (g0, s0) = run(fast::Simd::Baseline, 2.0);
                for &simd in levels {
                    // Sparse only, dense only, and chosen by density.
                    for dense_from in [2.0, 0.0, fast::dense_from(simd)] {
                        let (g, s) = run(simd, dense_from);
                        let how = format!("{what} {hidden:?} {act:?}: {simd:?} dense from {dense_from}");
                        assert_eq!(bits(&g), bits(&g0), "{how} differs from the sparse baseline build");
                        assert_eq!(s, s0, "{how}");
                    }
                }
            }
        }
    }
}

#[test]
fn same_seed_same_parameters() {
    let shape = Shape::new(784, &[16], 10, true);
    assert_eq!(Params::init(shape.clone(), Activation::Relu, 42), Params::init(shape.clone(), Activation::Relu, 42));
    assert_ne!(Params::init(shape.clone(), Activation::Relu, 42), Params::init(shape.clone(), Activation::Relu, 43));
}

#[test]
fn plain_descent_is_bit_identical_to_sgd_update() {
    use gpu_mnist::model::Layer;
    use gpu_mnist::optim::{self, OptimizerConfig, OptimizerState};
    // A 1 -> 1 -> 2 network: w1 [1], b1 [1], w2 [2], b2 [2].
    let tiny = |w1: f32, b1: f32, w2: [f32; 2], b2: [f32; 2]| Params {
        shape: Shape::new(1, &[1], 2, true),
        layers: vec![Layer { w: vec![w1], b: vec![b1] }, Layer { w: w2.to_vec(), b: b2.to_vec() }],
    };
    let start = tiny(0.3, -0.7, [1.1, 0.123], [-2.5, 1e-3]);
    let grads = tiny(0.017, -3.3, [0.25, 7.0], [1e-5, -0.4]);
    let mut want = start.clone();
    common::sgd_step(&mut want, &grads, 0.8);
    let cfg = OptimizerConfig::default();
    let mut got = start;
    let mut state = OptimizerState::new(cfg.kind, got.shape.clone());
    optim::optimizer_update(&mut got, &grads, &mut state, &cfg, 0.8);
    assert_eq!(got, want);
}

/// Dropout probability of the dropout checks: high enough that every layer drops many units.
const DROPOUT_P: f32 = 0.4;

#[test]
fn reference_gradients_with_dropout_match_finite_differences() {
    for hidden in FD_HIDDEN {
        for act in ACTIVATIONS {
            let shape = Shape::new(7, hidden, 4, true);
            let mut r = rng(12);
            let n = 9;
            let x = uniform(&mut r, n * shape.d, 0.0, 1.0);
            let labels: Vec<u8> = (0..n).map(|i| (i % shape.k) as u8).collect();
            let params = with_random_biases(Params::init(shape.clone(), act, 3), 13);
            // One step's masks, held fixed: the loss is then a smooth function of the parameters.
            let masks = Dropout { p: DROPOUT_P, seed: 5 }.step(3, hidden.len());
            let dropped = (0..hidden.len())
                .map(|l| {
                    (0..n)
                        .flat_map(|i| (0..hidden[l]).map(move |j| (i, j)))
                        .filter(|&(i, j)| masks.factor(l, i, j) == 0.0)
                        .count()
                })
                .collect::<Vec<_>>();
            assert!(dropped.iter().all(|&d| d > 0), "every layer drops some units: {dropped:?}");
            let (grads, _) = reference::forward_backward_dropout(&params, act, &x, &labels, Some(&masks));
            let loss_at =
                |p: &Params| reference::forward_backward_dropout(p, act, &x, &labels, Some(&masks)).1.loss as f32;
            let mut numeric = Params::zeros(shape.clone());
            for t in 0..numeric.tensors().len() {
                for i in 0..numeric.tensors()[t].1.len() {
                    let (mut plus, mut minus) = (params.clone(), params.clone());
                    plus.tensors_mut()[t].1[i] += FD_EPS;
                    minus.tensors_mut()[t].1[i] -= FD_EPS;
                    numeric.tensors_mut()[t].1[i] = (loss_at(&plus) - loss_at(&minus)) / (2.0 * FD_EPS);
                }
            }
            for ((name, g), (_, num)) in grads.tensors().into_iter().zip(numeric.tensors()) {
                let what =
                    format!("d{name} ({}, {act:?}, dropout {DROPOUT_P}) vs finite differences", shape.describe());
                assert_close(&what, g, num, FINITE_DIFFERENCES.atol, FINITE_DIFFERENCES.rtol);
            }
            let (plain, _) = reference::forward_backward(&params, act, &x, &labels);
            assert!(plain != grads, "dropout changes the gradients");
        }
    }
}

#[test]
fn fast_step_with_dropout_matches_reference() {
    let m = mnist();
    let train = subset(&m.train, SIZES[1]);
    let sparse = fast::SparseRows::from_pixels(&train.pixels, train.d());
    let mut order: Vec<u32> = (0..train.n as u32).collect();
    order.shuffle(&mut rng(9));
    // The whole set (in shards), and mini-batches of 1 and 300 rows (layer by layer).
    for (hidden, batch) in [(&[33][..], None), (&[37, 13], Some(300)), (&[20, 9, 11], Some(1)), (&[64, 33, 17], None)] {
        for act in ACTIVATIONS {
            let params = with_random_biases(Params::init(Shape::new(train.d(), hidden, 10, true), act, 6), 7);
            let masks = Dropout { p: DROPOUT_P, seed: 1 }.step(11, hidden.len());
            let rows = batch.map(|b| &order[100..100 + b]);
            let (pixels, labels) = match rows {
                Some(rows) => gather(&train, rows),
                None => (train.pixels.clone(), train.labels.clone()),
            };
            let x = reference::scale_pixels(&pixels);
            let what = format!("{} {act:?}, batch {batch:?}, dropout {DROPOUT_P}", params.shape.describe());
            let (want, want_stats) = reference::forward_backward_dropout(&params, act, &x, &labels, Some(&masks));
            let (got, got_stats) =
                fast::forward_backward_dropout(&params, act, &sparse, &train.labels, rows, Some(&masks));
            assert_step_matches(&what, (&got, got_stats), (&want, want_stats));
        }
    }
}
