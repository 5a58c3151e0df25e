//! Products of a block of rows, held by column, with a weight matrix: the layers of the fast step.
//!
//! A block's non-zeros are regrouped by column (CSC), so both products go column by column and
//! keep a `CH`-float slice of one weight row in registers: `forward` loads `W[c, :]` once per
//! block instead of once per row that uses it, and `backward` sums `dW[c, :]` over the block's
//! rows in registers and stores it once per block instead of once per row. Each output element
//! still sums its terms in the same order as a row-by-row product (columns ascending forward,
//! rows ascending backward), so the results are those of the plain loops, bit for bit.

use std::ops::Range;

/// Floats of a row held in registers by the products (8 AVX2 / 4 AVX-512 registers).
pub(super) const CH: usize = 64;

/// `acc += v * x`.
#[inline(always)]
pub(super) fn axpy(acc: &mut [f32], v: f32, x: &[f32]) {
    for (a, &x) in acc.iter_mut().zip(x) {
        *a = v.mul_add(x, *a);
    }
}

/// The non-zeros of a block of rows, by column: column c holds entries `start[c]..start[c + 1]`
/// of `row`/`val`, rows ascending. Reused from block to block.
#[derive(Default)]
pub(super) struct Columns {
    rows: usize,
    start: Vec<usize>,
    row: Vec<u32>,
    val: Vec<f32>,
}

impl Columns {
    /// The non-zeros of a dense row-major block with rows of `width`.
    #[inline(always)]
    pub(super) fn set_dense(&mut self, m: &[f32], width: usize) {
        self.start.clear();
        self.start.resize(width + 1, 0);
        self.rows = m.len() / width.max(1);
        for row in m.chunks_exact(width) {
            for (c, &v) in row.iter().enumerate() {
                self.start[c + 1] += (v != 0.0) as usize;
            }
        }
        for c in 0..width {
            self.start[c + 1] += self.start[c];
        }
        let nnz = self.start[width];
        self.row.resize(nnz, 0);
        self.val.resize(nnz, 0.0);
        for (r, row) in m.chunks_exact(width).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    let at = &mut self.start[c];
                    self.row[*at] = r as u32;
                    self.val[*at] = v;
                    *at += 1;
                }
            }
        }
        for c in (1..=width).rev() {
            self.start[c] = self.start[c - 1];
        }
        self.start[0] = 0;
    }

    /// The non-empty columns: (column, rows, values).
    #[inline(always)]
    fn columns(&self) -> impl Iterator<Item = (usize, &[u32], &[f32])> {
        self.columns_in(0..self.start.len().saturating_sub(1))
    }

    /// The non-empty columns among `range`.
    #[inline(always)]
    fn columns_in(&self, range: Range<usize>) -> impl Iterator<Item = (usize, &[u32], &[f32])> {
        self.start[range.start..=range.end]
            .windows(2)
            .enumerate()
            .filter(|(_, s)| s[0] < s[1])
            .map(move |(c, s)| (range.start + c, &self.row[s[0]..s[1]], &self.val[s[0]..s[1]]))
    }
}

/// `out[r, :] = init + Σ_c x[r, c] · w[c, :]` for the block's rows (`out` is rows x h, `w` is
/// d x h, row-major); each element sums its terms in increasing column order.
#[inline(always)]
pub(super) fn forward(out: &mut [f32], init: Option<&[f32]>, x: &Columns, w: &[f32], h: usize) {
    let out = &mut out[..x.rows * h];
    let mut c0 = 0;
    while c0 < h {
        let width = (h - c0).min(CH);
        for o in out.chunks_exact_mut(h) {
            match init {
                Some(b) => o[c0..c0 + width].copy_from_slice(&b[c0..c0 + width]),
                None => o[c0..c0 + width].fill(0.0),
            }
        }
        for (c, rows, vals) in x.columns() {
            if width == CH {
                let mut wc = [0.0f32; CH];
                wc.copy_from_slice(&w[c * h + c0..][..CH]);
                for (&r, &v) in rows.iter().zip(vals) {
                    let o = &mut out[r as usize * h + c0..][..CH];
                    for t in 0..CH {
                        o[t] = v.mul_add(wc[t], o[t]);
                    }
                }
            } else {
                let wc = &w[c * h + c0..][..width];
                for (&r, &v) in rows.iter().zip(vals) {
                    axpy(&mut out[r as usize * h + c0..][..width], v, wc);
                }
            }
        }
        c0 += width;
    }
}

/// `dw[c, :] += Σ_r x[r, c] · dz[r, :]` over the block's rows (`dz` is rows x h, `dw` is d x h);
/// each element adds its terms in increasing row order.
#[inline(always)]
pub(super) fn backward(dw: &mut [f32], dz: &[f32], x: &Columns, h: usize) {
    backward_range(dw, dz, x, h, 0..x.start.len().saturating_sub(1));
}

/// `backward` for the columns `cols` only, `dw` holding their rows (`cols.len()` x h).
#[inline(always)]
pub(super) fn backward_range(dw: &mut [f32], dz: &[f32], x: &Columns, h: usize, cols: Range<usize>) {
    let mut c0 = 0;
    while c0 < h {
        let (width, cols) = (h - c0, cols.clone());
        c0 += match width {
            CH.. => backward_slice::<CH>(dw, dz, x, h, cols, c0),
            32.. => backward_slice::<32>(dw, dz, x, h, cols, c0),
            16.. => backward_slice::<16>(dw, dz, x, h, cols, c0),
            8.. => backward_slice::<8>(dw, dz, x, h, cols, c0),
            4.. => backward_slice::<4>(dw, dz, x, h, cols, c0),
            2.. => backward_slice::<2>(dw, dz, x, h, cols, c0),
            _ => backward_slice::<1>(dw, dz, x, h, cols, c0),
        };
    }
}

/// Outputs `c0..c0 + W` of `backward_range`, summed in registers; returns W.
#[inline(always)]
fn backward_slice<const W: usize>(
    dw: &mut [f32],
    dz: &[f32],
    x: &Columns,
    h: usize,
    cols: Range<usize>,
    c0: usize,
) -> usize {
    let first = cols.start;
    for (c, rows, vals) in x.columns_in(cols) {
        let dwc = &mut dw[(c - first) * h + c0..][..W];
        let mut acc = [0.0f32; W];
        acc.copy_from_slice(dwc);
        for (&r, &v) in rows.iter().zip(vals) {
            let d = &dz[r as usize * h + c0..][..W];
            for t in 0..W {
                acc[t] = v.mul_add(d[t], acc[t]);
            }
        }
        dwc.copy_from_slice(&acc);
    }
    W
}
