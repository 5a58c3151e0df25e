//! The output layer's two backward products, with their sums held in registers:
//! `dZ_last = dZ_out · W_out^T` row by row, and `dW_out^T += dZ_out^T · A_last` over a block.
//!
//! K = 10 classes is too few to tile, so these were K separate `axpy`s per row, each loading
//! and storing its H-float target: 2K stores of H floats per row, the head's bound. Here each
//! target slice stays in registers while the classes (`input_gradient`) or the block's rows
//! (`weight_gradient`) go by. Each element adds the same terms in the same order as the axpys
//! did (classes ascending from +0; rows ascending onto the running sum), so the same bits.

use std::ops::Range;

/// Outputs held in registers at a time.
const S: usize = 64;

/// `dz = Σ_c z[c] · wt[c, :]` (classes ascending from +0) for one row: `z` has K values, `wt`
/// is K x h (W_out^T), `dz` h floats.
#[inline(always)]
pub(super) fn input_gradient(dz: &mut [f32], z: &[f32], wt: &[f32], h: usize) {
    let mut c0 = 0;
    while c0 < h {
        c0 += match h - c0 {
            S.. => input_slice::<S>(dz, z, wt, h, c0),
            16.. => input_slice::<16>(dz, z, wt, h, c0),
            4.. => input_slice::<4>(dz, z, wt, h, c0),
            _ => input_slice::<1>(dz, z, wt, h, c0),
        };
    }
}

/// Outputs `c0..c0 + W` of `input_gradient`; returns W.
#[inline(always)]
fn input_slice<const W: usize>(dz: &mut [f32], z: &[f32], wt: &[f32], h: usize, c0: usize) -> usize {
    let mut acc = [0.0f32; W];
    for (c, &zc) in z.iter().enumerate() {
        let w = &wt[c * h + c0..][..W];
        for t in 0..W {
            acc[t] = zc.mul_add(w[t], acc[t]);
        }
    }
    dz[c0..c0 + W].copy_from_slice(&acc);
    W
}

/// `gw[c, j - cols.start] += Σ_r z[r, c] · a[r, j]` (rows ascending) for the columns `j` of
/// `cols` over a block: `z` is rows x K, `a` rows x h, `gw` K x |cols| (dW_out^T, or a window
/// of its columns). Two classes' slices at a time stay in registers.
#[inline(always)]
pub(super) fn weight_gradient(gw: &mut [f32], z: &[f32], a: &[f32], (k, h): (usize, usize), cols: Range<usize>) {
    let rows = z.len() / k.max(1);
    let width = cols.len();
    assert!(cols.end <= h && gw.len() >= k * width, "columns {cols:?} of {h} into {} floats", gw.len());
    for c in (0..k).step_by(2) {
        let pair = (k - c).min(2);
        let mut j0 = cols.start;
        while j0 < cols.end {
            let args = (&mut *gw, z, a, (k, h), (c, pair), rows, (j0, j0 - cols.start, width));
            j0 += match cols.end - j0 {
                S.. => weight_slice::<S>(args),
                16.. => weight_slice::<16>(args),
                4.. => weight_slice::<4>(args),
                _ => weight_slice::<1>(args),
            };
        }
    }
}

/// `weight_slice`'s gw, z, a, (K, h), (the first class, 1 or 2 classes), rows, and (the first
/// column in `a`, in `gw`, gw's row length).
type WeightArgs<'a> =
    (&'a mut [f32], &'a [f32], &'a [f32], (usize, usize), (usize, usize), usize, (usize, usize, usize));

/// Outputs `j0..j0 + W` of classes `c..c + pair` (pair 1 or 2) of `weight_gradient`; returns W.
#[inline(always)]
fn weight_slice<const W: usize>((gw, z, a, (k, h), (c, pair), rows, (j0, g0_at, width)): WeightArgs) -> usize {
    let mut g0 = [0.0f32; W];
    let mut g1 = [0.0f32; W];
    g0.copy_from_slice(&gw[c * width + g0_at..][..W]);
    if pair == 2 {
        g1.copy_from_slice(&gw[(c + 1) * width + g0_at..][..W]);
    }
    for r in 0..rows {
        let ar = &a[r * h + j0..][..W];
        let (z0, z1) = (z[r * k + c], if pair == 2 { z[r * k + c + 1] } else { 0.0 });
        for t in 0..W {
            g0[t] = z0.mul_add(ar[t], g0[t]);
            g1[t] = z1.mul_add(ar[t], g1[t]);
        }
    }
    gw[c * width + g0_at..][..W].copy_from_slice(&g0);
    if pair == 2 {
        gw[(c + 1) * width + g0_at..][..W].copy_from_slice(&g1);
    }
    W
}
