//! The CPU reference against finite differences, and the fast CPU step against the reference.

mod common;

use common::{assert_close, mnist, rng, subset, uniform};
use gpu_mnist::cpu::{fast, reference};
use gpu_mnist::model::{Activation, Params, Shape};

const ACTIVATIONS: [Activation; 3] = [Activation::Sigmoid, Activation::Relu, Activation::Elu];

/// Central differences of the reference loss (f32) with step EPS. Truncation error is O(EPS²)
/// ~1e-6 here; the f32 rounding of a loss near 2 (~2.4e-7) divided by 2·EPS adds ~1.2e-4 to each
/// estimate. FD_ATOL = 1e-3 leaves an 8x margin over that, FD_RTOL = 1e-2 covers the curvature terms.
const EPS: f32 = 1e-3;
const FD_ATOL: f32 = 1e-3;
const FD_RTOL: f32 = 1e-2;

#[test]
fn reference_gradients_match_finite_differences() {
    for act in ACTIVATIONS {
        for bias in [true, false] {
            let shape = Shape::new(7, &[5], 4, bias);
            let mut r = rng(11);
            let n = 9;
            let x = uniform(&mut r, n * shape.d, 0.0, 1.0);
            let labels: Vec<u8> = (0..n).map(|i| (i % shape.k) as u8).collect();
            let mut params = Params::init(shape.clone(), act, 3);
            if bias {
                params.layers[0].b = uniform(&mut r, shape.hidden[0], -0.5, 0.5);
                params.layers[1].b = uniform(&mut r, shape.k, -0.5, 0.5);
            }
            let (grads, _) = reference::forward_backward(&params, act, &x, &labels);
            let loss_at = |p: &Params| reference::evaluate(p, act, &x, &labels).loss as f32;
            let mut numeric = Params::zeros(shape.clone());
            for t in 0..4 {
                if !bias && (t == 1 || t == 3) {
                    continue;
                }
                let len = numeric.tensors()[t].1.len();
                for i in 0..len {
                    let mut plus = params.clone();
                    plus.tensors_mut()[t].1[i] += EPS;
                    let mut minus = params.clone();
                    minus.tensors_mut()[t].1[i] -= EPS;
                    numeric.tensors_mut()[t].1[i] = (loss_at(&plus) - loss_at(&minus)) / (2.0 * EPS);
                }
            }
            for ((name, g), (_, num)) in grads.tensors().into_iter().zip(numeric.tensors()) {
                assert_close(
                    &format!("d{name} ({act:?}, bias {bias}) vs finite differences"),
                    g,
                    num,
                    FD_ATOL,
                    FD_RTOL,
                );
            }
        }
    }
}

/// Fast and reference sum the same products in different orders (per-shard partial sums of up
/// to 60,000 terms vs one running sum). Observed differences are ~1e-7 of the gradient scale;
/// ATOL 1e-6 is above the f32 rounding of gradients of size ~1e-2, RTOL 1e-4 covers the rest.
const FAST_ATOL: f32 = 1e-6;
const FAST_RTOL: f32 = 1e-4;
/// Mean losses over 700 digits: f64 sums of f32 per-sample losses that differ by a few ulps.
const LOSS_RTOL: f64 = 1e-5;

#[test]
fn fast_step_matches_reference_on_real_digits() {
    let m = mnist();
    let train = subset(&m.train, 700);
    let x = reference::scale_pixels(&train.pixels);
    let sparse = fast::SparseRows::from_pixels(&train.pixels, train.d());
    for (act, h, bias) in [(Activation::Relu, 33, true), (Activation::Sigmoid, 7, false), (Activation::Elu, 129, true)]
    {
        let shape = Shape::new(train.d(), &[h], 10, bias);
        let mut params = Params::init(shape.clone(), act, 5);
        if bias {
            params.layers[0].b = uniform(&mut rng(2), h, -0.3, 0.3);
            params.layers[1].b = uniform(&mut rng(3), 10, -0.3, 0.3);
        }
        let (want, want_stats) = reference::forward_backward(&params, act, &x, &train.labels);
        let (got, got_stats) = fast::forward_backward(&params, act, &sparse, &train.labels);
        for ((name, g), (_, w)) in got.tensors().into_iter().zip(want.tensors()) {
            assert_close(&format!("d{name} ({act:?}, H {h}) fast vs reference"), g, w, FAST_ATOL, FAST_RTOL);
        }
        assert!(
            (got_stats.loss - want_stats.loss).abs() <= LOSS_RTOL * want_stats.loss,
            "{got_stats:?} vs {want_stats:?}"
        );
        assert_eq!(got_stats.correct, want_stats.correct);
        let eval = fast::evaluate(&params, act, &sparse, &train.labels);
        assert_eq!(eval.correct, want_stats.correct);
        assert!((eval.loss - want_stats.loss).abs() <= LOSS_RTOL * want_stats.loss);
    }
}

#[test]
fn fast_step_is_bit_identical_on_any_thread_count() {
    let m = mnist();
    let train = subset(&m.train, 3000);
    let sparse = fast::SparseRows::from_pixels(&train.pixels, train.d());
    let shape = Shape::new(train.d(), &[64], 10, true);
    let params = Params::init(shape.clone(), Activation::Relu, 9);
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
        pool.install(|| fast::forward_backward(&params, Activation::Relu, &sparse, &train.labels))
    };
    let (g1, s1) = run(1);
    let (g3, s3) = run(3);
    assert_eq!(g1, g3, "gradients differ between 1 and 3 threads");
    assert_eq!(s1, s3);
}

#[test]
fn fast_step_is_bit_identical_on_every_simd_level() {
    if fast::Simd::detect() == fast::Simd::Baseline {
        eprintln!("skipped: this CPU has no AVX2, only the baseline build runs");
        return;
    }
    let m = mnist();
    let train = subset(&m.train, 1000);
    let sparse = fast::SparseRows::from_pixels(&train.pixels, train.d());
    for h in [128, 100] {
        let shape = Shape::new(train.d(), &[h], 10, true);
        let params = Params::init(shape.clone(), Activation::Elu, 4);
        let run = |simd| fast::forward_backward_with(simd, false, &params, Activation::Elu, &sparse, &train.labels);
        let (g0, s0, _) = run(fast::Simd::Baseline);
        let (g2, s2, _) = run(fast::Simd::Avx2);
        assert_eq!(g2, g0, "H {h}: the AVX2 build differs from the baseline build");
        assert_eq!(s2, s0);
    }
}

#[test]
fn same_seed_same_parameters() {
    let shape = Shape::new(784, &[16], 10, true);
    assert_eq!(Params::init(shape.clone(), Activation::Relu, 42), Params::init(shape.clone(), Activation::Relu, 42));
    assert_ne!(Params::init(shape.clone(), Activation::Relu, 42), Params::init(shape.clone(), Activation::Relu, 43));
}
