//! Products of a block of rows held densely (row-major) with a weight matrix: the hidden layers
//! of the fast step whose inputs have few zeros (sigmoid activations, wide ReLU layers).
//!
//! Register tiles: `forward` keeps `MR` rows x `NR` outputs of `out` in registers while the
//! inputs go by (per input column: `NR` weights loaded once, used by `MR` rows); `backward` keeps
//! `MR` weight rows x `NR` outputs of `dW` while the block's rows go by. Every element adds its
//! terms in the order of `block::forward` / `block::backward` (columns ascending, rows
//! ascending), and the terms those skip are zeros, whose products add +0: the results are those
//! of the sparse products, bit for bit, so choosing between the two never changes a run.

use std::ops::Range;

use super::Simd;
use super::lines::Lines;

/// Rows (forward) or weight rows (backward) of a tile.
const MR: usize = 4;

/// Outputs of a tile (`NR` below): two vector registers per row at the SIMD level the step runs
/// at, so that the `MR` x `NR` accumulators and the operands fit the 16 (AVX2) or 32 (AVX-512)
/// registers.
pub(super) fn tile_width(simd: Simd) -> usize {
    if simd == Simd::Avx512 { 32 } else { 16 }
}

/// A weight matrix (d x h) rearranged for `forward`: its first `NR` columns as d rows of `NR`,
/// then the next `NR`, and so on, so that a tile reads its weights in order (columns of a
/// row-major matrix are `h` floats apart, which maps them onto a few cache sets). Columns past
/// the last whole group of `NR` are read from the matrix itself.
pub(super) struct Panels {
    data: Lines,
    width: usize,
}

impl Panels {
    pub(super) fn pack(w: &[f32], d: usize, h: usize, simd: Simd) -> Panels {
        let width = tile_width(simd);
        let mut data = Lines::zeros(h / width * width * d);
        let targets = data.chunks_exact_mut(width);
        let sources =
            (0..h / width * width).step_by(width).flat_map(|j0| w.chunks_exact(h).take(d).map(move |row| &row[j0..]));
        for (t, row) in targets.zip(sources) {
            t.copy_from_slice(&row[..width]);
        }
        Panels { data, width }
    }
}

/// `forward_n` with the tile width of the level `panels` were packed for.
#[inline(always)]
pub(super) fn forward(out: &mut [f32], init: Option<&[f32]>, x: &[f32], d: usize, w: (&[f32], &Panels), h: usize) {
    if w.1.width == 32 { forward_n::<32>(out, init, x, d, w, h) } else { forward_n::<16>(out, init, x, d, w, h) }
}

/// `backward_n` with the tile width of `simd`.
#[inline(always)]
pub(super) fn backward(dw: &mut [f32], dz: &[f32], x: &[f32], d: usize, h: usize, simd: Simd) {
    backward_range(dw, dz, x, d, h, simd, 0..d);
}

/// `backward` for x's columns `cols` only, `dw` holding their rows (`cols.len()` x h).
#[inline(always)]
pub(super) fn backward_range(
    dw: &mut [f32],
    dz: &[f32],
    x: &[f32],
    d: usize,
    h: usize,
    simd: Simd,
    cols: Range<usize>,
) {
    if tile_width(simd) == 32 {
        backward_n::<32>(dw, dz, x, d, h, cols)
    } else {
        backward_n::<16>(dw, dz, x, d, h, cols)
    }
}

/// `out[r, :] = init + Σ_c x[r, c] · w[c, :]` for the rows of `x` (rows x d, row-major; `out`
/// is rows x h, `w` is d x h and `panels` its `Panels`).
#[inline(always)]
fn forward_n<const NR: usize>(
    out: &mut [f32],
    init: Option<&[f32]>,
    x: &[f32],
    d: usize,
    (w, panels): (&[f32], &Panels),
    h: usize,
) {
    let rows = x.len() / d.max(1);
    for j0 in (0..h).step_by(NR) {
        let nr = (h - j0).min(NR);
        let panel = panels.data.get(j0 * d..(j0 + NR) * d).filter(|_| nr == NR && panels.width == NR);
        for r0 in (0..rows).step_by(MR) {
            let mr = (rows - r0).min(MR);
            let mut acc = [[0.0f32; NR]; MR];
            if let Some(b) = init {
                for a in acc.iter_mut() {
                    a[..nr].copy_from_slice(&b[j0..j0 + nr]);
                }
            }
            match panel {
                Some(panel) if mr == MR => forward_tile(&mut acc, &x[r0 * d..(r0 + MR) * d], d, panel),
                _ => {
                    for (c, wc) in w.chunks_exact(h).take(d).enumerate() {
                        for (i, a) in acc.iter_mut().take(mr).enumerate() {
                            let v = x[(r0 + i) * d + c];
                            for (a, &w) in a[..nr].iter_mut().zip(&wc[j0..j0 + nr]) {
                                *a = v.mul_add(w, *a);
                            }
                        }
                    }
                }
            }
            for (i, a) in acc.iter().take(mr).enumerate() {
                out[(r0 + i) * h + j0..][..nr].copy_from_slice(&a[..nr]);
            }
        }
    }
}

/// A full tile of `forward`: `MR` rows of `x` (each of length d) against a panel (d rows of `NR`).
#[inline(always)]
fn forward_tile<const NR: usize>(acc: &mut [[f32; NR]; MR], x: &[f32], d: usize, panel: &[f32]) {
    let (x0, rest) = x.split_at(d);
    let (x1, rest) = rest.split_at(d);
    let (x2, x3) = rest.split_at(d);
    let [mut a0, mut a1, mut a2, mut a3] = *acc;
    let panel = panel.chunks_exact(NR).map(|row| row.first_chunk::<NR>());
    for ((((wc, &v0), &v1), &v2), &v3) in panel.zip(x0).zip(x1).zip(x2).zip(x3) {
        let Some(wc) = wc else { break };
        for t in 0..NR {
            a0[t] = v0.mul_add(wc[t], a0[t]);
            a1[t] = v1.mul_add(wc[t], a1[t]);
            a2[t] = v2.mul_add(wc[t], a2[t]);
            a3[t] = v3.mul_add(wc[t], a3[t]);
        }
    }
    *acc = [a0, a1, a2, a3];
}

/// `dw[c - cols.start, :] += Σ_r x[r, c] · dz[r, :]` for c in `cols`, over the rows of `x`
/// (rows x d; `dz` is rows x h, `dw` is cols.len() x h).
#[inline(always)]
fn backward_n<const NR: usize>(dw: &mut [f32], dz: &[f32], x: &[f32], d: usize, h: usize, cols: Range<usize>) {
    let rows = x.len() / d.max(1);
    // dz's columns j0..j0 + NR, row after row (see `Panels`).
    let mut panel = Lines::zeros(rows * NR);
    for j0 in (0..h).step_by(NR) {
        let nr = (h - j0).min(NR);
        if nr == NR {
            for (p, g) in panel.chunks_exact_mut(NR).zip(dz.chunks_exact(h)) {
                p.copy_from_slice(&g[j0..j0 + NR]);
            }
        }
        for c0 in cols.clone().step_by(MR) {
            let mc = (cols.end - c0).min(MR);
            let at = c0 - cols.start;
            let mut acc = [[0.0f32; NR]; MR];
            for (i, a) in acc.iter_mut().take(mc).enumerate() {
                a[..nr].copy_from_slice(&dw[(at + i) * h + j0..][..nr]);
            }
            if mc == MR && nr == NR {
                backward_tile(&mut acc, &x[c0..], d, &panel, rows);
            } else {
                for (xr, dzr) in x.chunks_exact(d).zip(dz.chunks_exact(h)).take(rows) {
                    for (a, &v) in acc.iter_mut().zip(&xr[c0..c0 + mc]) {
                        for (a, &g) in a[..nr].iter_mut().zip(&dzr[j0..j0 + nr]) {
                            *a = v.mul_add(g, *a);
                        }
                    }
                }
            }
            for (i, a) in acc.iter().take(mc).enumerate() {
                dw[(at + i) * h + j0..][..nr].copy_from_slice(&a[..nr]);
            }
        }
    }
}

/// A full tile of `backward`: the `MR` columns that start each row of `x` (rows of `d`) against
/// a panel of dz (rows of `NR`).
#[inline(always)]
fn backward_tile<const NR: usize>(acc: &mut [[f32; NR]; MR], x: &[f32], d: usize, panel: &[f32], rows: usize) {
    let [mut a0, mut a1, mut a2, mut a3] = *acc;
    let xs = x.chunks(d).map(|row| row.first_chunk::<MR>());
    let gs = panel.chunks_exact(NR).map(|row| row.first_chunk::<NR>());
    for (xv, g) in xs.zip(gs).take(rows) {
        let (Some(&[v0, v1, v2, v3]), Some(g)) = (xv, g) else { break };
        for t in 0..NR {
            a0[t] = v0.mul_add(g[t], a0[t]);
            a1[t] = v1.mul_add(g[t], a1[t]);
            a2[t] = v2.mul_add(g[t], a2[t]);
            a3[t] = v3.mul_add(g[t], a3[t]);
        }
    }
    *acc = [a0, a1, a2, a3];
}

#[cfg(test)]
mod tests {
    use super::super::Simd;
    use super::super::block::{self, Columns};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// `rows` x `width` values, a `density` fraction of them non-zero (of either sign).
    fn matrix(rng: &mut ChaCha8Rng, rows: usize, width: usize, density: f64) -> Vec<f32> {
        (0..rows * width).map(|_| if rng.random_bool(density) { rng.random_range(-1.0..1.0) } else { 0.0 }).collect()
    }

    #[test]
    fn dense_products_are_the_sparse_products_bit_for_bit() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        // Rows, inputs and outputs around the tiles' 4 x 16 and the sparse chunks' 64 floats.
        for (rows, d, h) in [
            (64, 784, 128),
            (1, 1, 1),
            (3, 5, 17),
            (9, 20, 33),
            (6, 8, 96),
            (7, 33, 15),
            (64, 130, 70),
            (13, 9, 65),
            (5, 4, 16),
        ] {
            for density in [0.0, 0.1, 0.5, 0.9, 1.0] {
                let x = matrix(&mut rng, rows, d, density);
                let (w, dz) = (matrix(&mut rng, d, h, 1.0), matrix(&mut rng, rows, h, 0.7));
                let b = matrix(&mut rng, 1, h, 1.0);
                let mut cols = Columns::default();
                cols.set_dense(&x, d);
                // Both tile widths, whatever this CPU runs: the level only picks the width here.
                for simd in [Simd::Avx2, Simd::Avx512] {
                    let panels = super::Panels::pack(&w, d, h, simd);
                    for init in [None, Some(&b[..])] {
                        let (mut got, mut want) = (vec![9.0; rows * h], vec![9.0; rows * h]);
                        super::forward(&mut got, init, &x, d, (&w, &panels), h);
                        block::forward(&mut want, init, &cols, &w, h);
                        let what = format!("forward {rows}x{d}x{h} density {density} {simd:?} bias {}", init.is_some());
                        assert_eq!(got, want, "{what}");
                    }
                    let start = matrix(&mut rng, d, h, 1.0);
                    let (mut got, mut want) = (start.clone(), start);
                    super::backward(&mut got, &dz, &x, d, h, simd);
                    block::backward(&mut want, &dz, &cols, h);
                    assert_eq!(got, want, "backward {rows}x{d}x{h} density {density} {simd:?}");
                }
            }
        }
    }
}
