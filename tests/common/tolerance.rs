//! Every tolerance the tests compare with, in one place. A check is
//! `|got - want| <= atol + rtol * |want|` element by element (`Tol`), or, for gradients, with
//! `atol` scaled by the largest magnitude of the wanted tensor (`scaled`), so that tensors of
//! any size compare alike. Each value says what it covers, what was measured (the GPU on
//! lavapipe, the CPU here) and why the bound separates rounding from a real error: f32 sums of
//! the same terms in another order differ by a few ulps of the partial sums, and that grows with
//! the number of terms, so the bounds for gradients depend on the rows a gradient sums.

/// `|got - want| <= atol + rtol * |want|`.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub atol: f32,
    pub rtol: f32,
}

impl Tol {
    /// This tolerance with `atol` relative to the largest magnitude of `want`.
    pub fn scaled(self, want: &[f32]) -> Tol {
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        Tol { atol: self.atol * scale, rtol: self.rtol }
    }
}

// ---- One kernel against its reference function, random inputs (tests/gpu_kernels.rs) ----

/// Matmuls: inputs in [-1, 1] (pixels in [0, 1]), K <= 784, outputs up to ~10; the GPU sums
/// with fma over blocks of 4, the CPU in one running sum: measured <= 3e-6. 10x margin; the
/// activations (exp) add a few ulps within it.
pub const MATMUL: Tol = Tol { atol: 5e-5, rtol: 1e-5 };
/// Softmax and cross-entropy: exp and log differ by 1-2 ulp between the shader and libm.
pub const SOFTMAX: Tol = Tol { atol: 1e-6, rtol: 1e-5 };
/// Column sums of up to 1,000 values in [-1, 1]: a tree against a sequential order, |sum| <= ~30.
pub const COLUMN_SUM: Tol = Tol { atol: 1e-5, rtol: 1e-5 };
/// One multiply-add per element (plain descent): at most 1 ulp apart, fused or not.
pub const ONE_ULP: Tol = Tol { atol: 1e-7, rtol: 1e-7 };

// ---- The CPU fast path against the reference (tests/cpu_reference.rs) ----

/// Central differences of the reference loss with step `FD_EPS`: truncation O(EPS²) ~1e-6, and
/// the f32 rounding of a loss near 2 (~2.4e-7) over 2·EPS adds ~1.2e-4 to each estimate; atol
/// leaves an 8x margin over that, rtol covers the curvature terms.
pub const FD_EPS: f32 = 1e-3;
pub const FINITE_DIFFERENCES: Tol = Tol { atol: 1e-3, rtol: 1e-2 };
/// Fast and reference gradients: per-shard partial sums of up to 60,000 terms against one
/// running sum, measured ~1e-7 of the gradient's scale; atol is above the f32 rounding of
/// gradients of size ~1e-2.
pub const FAST_PATH: Tol = Tol { atol: 1e-6, rtol: 1e-4 };

// ---- The GPU against the CPU, step by step (the parity harness, tests/gpu_*.rs) ----

/// Gradients at identical parameters over a mini-batch of <= 100 rows (`scaled`): measured
/// <= 7e-7 of a tensor's largest element, a 14x margin; a batch's wrong rows (a stale order, a
/// chunk bound at the wrong row) or a wrong scale are off by more than 1e-2 of it.
pub const GRADIENTS_BATCH: Tol = Tol { atol: 1e-5, rtol: 1e-4 };
/// Gradients at identical parameters over 1,000 rows in chunks through two hidden layers
/// (`scaled`): measured <= 8e-6 of the largest element (db3, whose column sums of P - Y cancel
/// to a small scale), a 12x margin; ten times the rows of `GRADIENTS_BATCH`, ten times the bound.
pub const GRADIENTS_DEEP: Tol = Tol { atol: 1e-4, rtol: 1e-4 };
/// Gradients over 2,000 rows, one hidden layer, as `train::relative_difference` (max |diff| over
/// max |want|): ~1e-6 measured; a wrong gradient is off by far more.
pub const GRADIENTS_RELATIVE: f64 = 1e-4;
/// Anchored: parameters after one update (or one CPU step) from identical parameters, state and
/// gradients: a few multiply-adds and, for Adam, a root and a division per element, 1-3 ulp on
/// weights of size <= ~1. A wrong term (a missing bias correction, decay on a bias, a missing
/// chunk) moves them by > 1e-5.
pub const UPDATE: Tol = Tol { atol: 2e-7, rtol: 1e-6 };
/// Optimizer moments after one update from identical inputs: 1-2 ulp, so relative; the tiny
/// absolute term covers moments near 0.
pub const MOMENTS: Tol = Tol { atol: 1e-12, rtol: 1e-5 };
/// Independent runs from the same start after each of 20-25 steps: the gradients' rounding
/// differences times lr add up to <= 2e-6 (measured); a wrong gradient moves weights by > 1e-3.
pub const RUNS: Tol = Tol { atol: 2e-5, rtol: 1e-4 };
/// Mean loss over up to 3,000 rows: f32 sums on the GPU, f64 on the CPU (measured <= 1.6e-7);
/// also the fast CPU path against the reference over 700 rows (f64 sums of per-sample f32
/// losses that differ by a few ulps).
pub const LOSS_RTOL: f64 = 1e-5;
/// Correct predictions may differ by one: a digit whose two largest logits are within rounding
/// of each other can be called either way.
pub const CORRECT_SLACK: usize = 1;
/// Pre-activations differ between the backends by ~1e-6 (sums of ~150 products in another
/// order): a ReLU unit is "at the kink" when some sample's pre-activation is within 10x of that.
pub const KINK_BAND: f32 = 1e-5;

// ---- Other tools reading our files (tests/interop.rs) ----

/// NumPy computes in f32 with BLAS summation orders: probabilities agree to a few ulps of 1.
pub const NUMPY_PROBABILITIES: f32 = 1e-5;
/// onnxruntime and PyTorch compute in f32 with their own summation orders (blocked GEMMs, fused
/// softmax): the same few ulps of 1 as NumPy, and the bound the ONNX issue states.
pub const RUNTIME_PROBABILITIES: f32 = 1e-5;
