//! The output layer's products, with their sums held in registers: the logits
//! `Z_out = A_last · W_out` row by row, and the two backward products `dZ_last = dZ_out · W_out^T`
//! row by row and `dW_out^T += dZ_out^T · A_last` over a block.
//!
//! The logits are K dot products of one row with the rows of W_out^T, each summed in 16 lanes
//! and folded in halves (lane t += lane t + 8, then + 4, + 2, + 1; each fold is one vector add
//! at any width), plus the tail in order. One at a time, each chunk's add waits on the last; a group of
//! classes at a time loads the row's chunk once and runs the groups' sums side by side, each
//! still in its own fixed order, so the same bits either way.
//!
//! K = 10 classes is too few to tile, so these were K separate `axpy`s per row, each loading
//! and storing its H-float target: 2K stores of H floats per row, the head's bound. Here each
//! target slice stays in registers while the classes (`input_gradient`) or the block's rows
//! (`weight_gradient`) go by. Each element adds the same terms in the same order as the axpys
//! did (classes ascending from +0; rows ascending onto the running sum), so the same bits.

/// Outputs held in registers at a time.
const S: usize = 64;
/// Lanes of a dot product's partial sums.
const LANES: usize = 16;
/// Classes whose dot products run side by side: 5 x 16 lanes are 5 AVX-512 or 10 AVX2 registers.
const GROUP: usize = 5;

/// `z[c] = b[c] + a · wt[c, :]` for one row: `a` has h values, `wt` is K x h (W_out^T), `z` K.
#[inline(always)]
pub(super) fn logits(z: &mut [f32], a: &[f32], wt: &[f32], b: Option<&[f32]>, h: usize) {
    let mut c = 0;
    while c < z.len() {
        c += match z.len() - c {
            GROUP.. => logit_group::<GROUP>(z, a, wt, h, c),
            _ => logit_group::<1>(z, a, wt, h, c),
        };
    }
    if let Some(b) = b {
        z.iter_mut().zip(b).for_each(|(z, b)| *z += b);
    }
}

/// `z[c] = a · wt[c, :]` for classes `c0..c0 + G`, their lanes side by side (a fixed order, so
/// the same bits on every CPU); returns G.
#[inline(always)]
fn logit_group<const G: usize>(z: &mut [f32], a: &[f32], wt: &[f32], h: usize, c0: usize) -> usize {
    let full = h / LANES * LANES;
    let mut lanes = [[0.0f32; LANES]; G];
    for j in (0..full).step_by(LANES) {
        let x = &a[j..j + LANES];
        for (g, lanes) in lanes.iter_mut().enumerate() {
            let w = &wt[(c0 + g) * h + j..][..LANES];
            for t in 0..LANES {
                lanes[t] += x[t] * w[t];
            }
        }
    }
    for (g, lanes) in lanes.iter_mut().enumerate() {
        let w = &wt[(c0 + g) * h..(c0 + g + 1) * h];
        let tail: f32 = a[full..h].iter().zip(&w[full..]).map(|(x, y)| x * y).sum();
        let mut half = LANES;
        while half > 1 {
            half /= 2;
            for t in 0..half {
                lanes[t] += lanes[t + half];
            }
        }
        z[c0 + g] = lanes[0] + tail;
    }
    G
}

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
            acc[t] += zc * w[t];
        }
    }
    dz[c0..c0 + W].copy_from_slice(&acc);
    W
}

/// `gw[c, :] += Σ_r z[r, c] · a[r, :]` (rows ascending) over a block: `z` is rows x K, `a` rows
/// x h, `gw` K x h (dW_out^T). Two classes' slices at a time stay in registers.
#[inline(always)]
pub(super) fn weight_gradient(gw: &mut [f32], z: &[f32], a: &[f32], k: usize, h: usize) {
    let rows = z.len() / k.max(1);
    for c in (0..k).step_by(2) {
        let pair = (k - c).min(2);
        let mut j0 = 0;
        while j0 < h {
            j0 += match h - j0 {
                S.. => weight_slice::<S>(gw, z, a, (k, h), (c, pair), rows, j0),
                16.. => weight_slice::<16>(gw, z, a, (k, h), (c, pair), rows, j0),
                4.. => weight_slice::<4>(gw, z, a, (k, h), (c, pair), rows, j0),
                _ => weight_slice::<1>(gw, z, a, (k, h), (c, pair), rows, j0),
            };
        }
    }
}

/// Outputs `j0..j0 + W` of classes `c..c + pair` (pair 1 or 2) of `weight_gradient`; returns W.
#[inline(always)]
fn weight_slice<const W: usize>(
    gw: &mut [f32],
    z: &[f32],
    a: &[f32],
    (k, h): (usize, usize),
    (c, pair): (usize, usize),
    rows: usize,
    j0: usize,
) -> usize {
    let mut g0 = [0.0f32; W];
    let mut g1 = [0.0f32; W];
    g0.copy_from_slice(&gw[c * h + j0..][..W]);
    if pair == 2 {
        g1.copy_from_slice(&gw[(c + 1) * h + j0..][..W]);
    }
    for r in 0..rows {
        let ar = &a[r * h + j0..][..W];
        let (z0, z1) = (z[r * k + c], if pair == 2 { z[r * k + c + 1] } else { 0.0 });
        for t in 0..W {
            g0[t] += z0 * ar[t];
            g1[t] += z1 * ar[t];
        }
    }
    gw[c * h + j0..][..W].copy_from_slice(&g0);
    if pair == 2 {
        gw[(c + 1) * h + j0..][..W].copy_from_slice(&g1);
    }
    W
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One class at a time, as the module doc defines it.
    fn dot(a: &[f32], w: &[f32]) -> f32 {
        let full = a.len() / LANES * LANES;
        let mut lanes = [0.0f32; LANES];
        for j in 0..full {
            lanes[j % LANES] += a[j] * w[j];
        }
        let tail: f32 = a[full..].iter().zip(&w[full..]).map(|(x, y)| x * y).sum();
        for half in [8, 4, 2, 1] {
            for t in 0..half {
                lanes[t] += lanes[t + half];
            }
        }
        lanes[0] + tail
    }

    #[test]
    fn grouped_logits_have_the_bits_of_one_class_at_a_time() {
        let value = |i: usize| ((i * 7919 % 1000) as f32 - 500.0) / 97.0;
        for h in [1, 15, 16, 17, 100, 128, 130] {
            for k in 1..=12 {
                let a: Vec<f32> = (0..h).map(value).collect();
                let wt: Vec<f32> = (0..k * h).map(|i| value(i + 31)).collect();
                let b: Vec<f32> = (0..k).map(|c| value(c + 5)).collect();
                let mut z = vec![f32::NAN; k];
                logits(&mut z, &a, &wt, Some(&b), h);
                for c in 0..k {
                    let want = dot(&a, &wt[c * h..(c + 1) * h]) + b[c];
                    assert_eq!(z[c].to_bits(), want.to_bits(), "h {h}, K {k}, class {c}: {} vs {want}", z[c]);
                }
                logits(&mut z, &a, &wt, None, h);
                assert_eq!(z[k - 1].to_bits(), dot(&a, &wt[(k - 1) * h..]).to_bits(), "h {h}, K {k}, no bias");
            }
        }
    }
}
