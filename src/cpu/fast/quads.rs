//! The input layer's products over a block of sparse rows, the pixels held by quads: groups of
//! 4 neighbouring columns (pixels side by side in an image row).
//!
//! Inked pixels come in strokes, so a row that uses one pixel of a quad mostly uses its
//! neighbours too: on MNIST a quad's rows number 0.37 per non-zero pixel.
//! A quad keeps its 4 weight rows (forward) or its 4 rows of dW (backward) in registers, `S`
//! outputs at a time, while its rows go by:
//! * forward, `out[r, :] += Σ_q x[r, 4g + q] · W[4g + q, :]`: each slice of `out` is loaded and
//!   stored once per (row, quad) instead of once per non-zero, and W is read once per block;
//! * backward, `dW[4g + q, :] += Σ_r x[r, 4g + q] · dz[r, :]`: each slice of dz is loaded once
//!   per (row, quad), into 4 independent sums.
//!
//! Backward, quads go outermost and slices of outputs inside them, so a quad's entries are read
//! from memory once, not once per slice (a block of Fashion-MNIST's garments holds 600 KB of
//! them, more than a Zen 3 core's L2). Forward, so do they while the block's outputs fit a core's
//! L1 (`QUADS_FIRST_UP_TO`); past that, slices go outermost, so that each slice of outputs stays
//! in L1 while the quads go by and their entries are read once per slice instead (a mini-batch of
//! 128 rows of 784-800-10 has 400 outputs a row per thread). The forward takes a quad's rows two
//! at a time, and both kernels index rows unchecked (`Quads` keeps every row below its count,
//! which they assert once), so the 8-float slices of an AVX2 build carry less loop than
//! arithmetic.
//!
//! The price is the quad's blank pixels, whose zeros are multiplied too: 1.48 products per
//! non-zero on MNIST. Each element adds its terms in the order of `block::forward` /
//! `block::backward` (columns ascending, rows ascending); the zeros' products add +0 to sums
//! that start at +0, so the results are those bit for bit, as with `dense`.

use std::ops::Range;

use super::Simd;

/// Columns per quad.
const Q: usize = 4;
/// The most outputs of a block (rows x columns) for which `forward` takes quads outermost: a
/// 32 KB L1 of them. One hidden layer's full-batch blocks (64 x 128) run 2-6% faster so, and
/// larger blocks (256 x 256 full batch, mini-batches of 128 x 400 or 128 x 128 per thread) 3-10%
/// slower than by slices outermost (docs/performance.md). The order changes no output's sum.
const QUADS_FIRST_UP_TO: usize = 8 * 1024;

/// The non-zeros of a block of rows by quad: quad g (columns `4g..4g + 4`) holds entries
/// `start[g]..start[g + 1]` of `row`/`val`, rows ascending, `val` with zeros for the quad's
/// columns that the row leaves blank. Reused from block to block.
#[derive(Clone, Debug, Default)]
pub(super) struct Quads {
    d: usize,
    /// Rows in the block: every entry of `row` is below it.
    rows: usize,
    start: Vec<usize>,
    row: Vec<u32>,
    val: Vec<[f32; Q]>,
}

impl Quads {
    /// Rows of `d` columns given by their quads (`SparseRows::row`): inked quads ascending, each
    /// with its 4 pixels, which become `p / 255`. A counting sort: count each quad's rows, then
    /// place them.
    #[inline(always)]
    pub(super) fn set_rows<'a>(&mut self, d: usize, rows: impl Iterator<Item = (&'a [u32], &'a [[u8; Q]])> + Clone) {
        let quads = d.div_ceil(Q);
        self.d = d;
        self.rows = 0;
        self.start.clear();
        self.start.resize(quads + 1, 0);
        for (r, (gs, _)) in rows.clone().enumerate() {
            for &g in gs {
                self.start[g as usize + 1] += 1;
            }
            self.rows = r + 1;
        }
        for g in 0..quads {
            self.start[g + 1] += self.start[g];
        }
        let entries = self.start[quads];
        self.row.resize(entries, 0);
        self.val.resize(entries, [0.0; Q]);
        // `start[g]` walks through quad g's entries while they are filled, then is restored.
        for (r, (gs, vals)) in rows.enumerate() {
            // The kernels index outputs by `row` unchecked: no row past those counted.
            assert!(r < self.rows, "the rows changed between the two passes");
            for (&g, v) in gs.iter().zip(vals) {
                let at = &mut self.start[g as usize];
                self.row[*at] = r as u32;
                self.val[*at] = v.map(|p| p as f32 / 255.0);
                *at += 1;
            }
        }
        for g in (1..=quads).rev() {
            self.start[g] = self.start[g - 1];
        }
        self.start[0] = 0;
    }

    /// Rows in the block.
    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    /// Quads (of columns) in the block.
    pub(super) fn quads(&self) -> usize {
        self.start.len().saturating_sub(1)
    }

    /// Quad g's rows and values.
    #[inline(always)]
    fn quad(&self, g: usize) -> (&[u32], &[[f32; Q]]) {
        let r = self.start[g]..self.start[g + 1];
        (&self.row[r.clone()], &self.val[r])
    }

    /// Quad g's columns below d.
    #[inline(always)]
    fn columns(&self, g: usize) -> Range<usize> {
        g * Q..(g * Q + Q).min(self.d)
    }
}

/// `out[r, :] = init + Σ_c x[r, c] · w[c, cols]` for the block's `rows`: `w` is d x h,
/// row-major, and `out` rows x |cols| (all of W's columns, or a window of them that one thread
/// computes for a mini-batch), as many outputs at a time as `simd`'s registers hold with a
/// quad's weights. A window changes which outputs go together, not any output's sum.
#[inline(always)]
pub(super) fn forward(
    simd: Simd,
    out: &mut [f32],
    init: Option<&[f32]>,
    x: &Quads,
    (w, h, cols): (&[f32], usize, Range<usize>),
    rows: usize,
) {
    assert!(cols.end <= h && w.len() >= x.d * h, "columns {cols:?} of a {} x {h} matrix", x.d);
    let w = &w[cols.start..];
    match simd {
        Simd::Avx512 => forward_by::<64>(out, init, x, (w, h, cols.len()), rows),
        Simd::Avx2 => forward_by::<16>(out, init, x, (w, h, cols.len()), rows),
        Simd::Baseline => forward_by::<8>(out, init, x, (w, h, cols.len()), rows),
    }
}

/// `forward`, `S` outputs at a time (fewer for the last few); `w` starts at the window's first
/// column, rows `h` apart, and the window is `width` wide.
#[inline(always)]
fn forward_by<const S: usize>(
    out: &mut [f32],
    init: Option<&[f32]>,
    x: &Quads,
    (w, h, width): (&[f32], usize, usize),
    rows: usize,
) {
    let out = &mut out[..rows * width];
    assert!(x.rows <= rows, "a block of {} rows into {rows} rows of outputs", x.rows);
    for o in out.chunks_exact_mut(width) {
        match init {
            Some(b) => o.copy_from_slice(&b[..width]),
            None => o.fill(0.0),
        }
    }
    if rows * width <= QUADS_FIRST_UP_TO {
        for g in (0..x.quads()).filter(|&g| !x.quad(g).0.is_empty()) {
            forward_slices::<S>(out, x, (w, h, width), g..g + 1);
        }
    } else {
        forward_slices::<S>(out, x, (w, h, width), 0..x.quads());
    }
}

/// The terms of `quads` in `forward`, slice by slice of `S` outputs (fewer for the last few).
#[inline(always)]
fn forward_slices<const S: usize>(out: &mut [f32], x: &Quads, w: (&[f32], usize, usize), quads: Range<usize>) {
    let width = w.2;
    let mut c0 = 0;
    while c0 < width {
        let args = (&mut *out, x, w, quads.clone(), c0);
        c0 += match width - c0 {
            n if n >= S => forward_quads::<S>(args),
            32.. => forward_quads::<32>(args),
            16.. => forward_quads::<16>(args),
            8.. => forward_quads::<8>(args),
            4.. => forward_quads::<4>(args),
            2.. => forward_quads::<2>(args),
            _ => forward_quads::<1>(args),
        };
    }
}

/// `forward_quads`' out, the block's quads, (w, its row stride, the window's width), the quads
/// to add and c0.
type QuadsArgs<'a> = (&'a mut [f32], &'a Quads, (&'a [f32], usize, usize), Range<usize>, usize);

/// Outputs `c0..c0 + S` of the terms of `quads`, quads ascending; returns S.
#[inline(always)]
fn forward_quads<const S: usize>((out, x, w, quads, c0): QuadsArgs) -> usize {
    for g in quads {
        let (rows, vals) = x.quad(g);
        if !rows.is_empty() {
            forward_slice::<S>((&mut *out, rows, vals, w, x.columns(g), c0));
        }
    }
    S
}

/// `forward_slice`'s out, the quad's rows and values, (w, its row stride, the window's width),
/// the quad's columns and c0.
type ForwardArgs<'a> = (&'a mut [f32], &'a [u32], &'a [[f32; Q]], (&'a [f32], usize, usize), Range<usize>, usize);

/// Outputs `c0..c0 + S` of one quad's terms in `forward`, added into `out`, two rows at a time;
/// returns S. Every row of `rows` is below `out.len() / width` and `c0 + S <= width`
/// (`forward_by`).
#[inline(always)]
fn forward_slice<const S: usize>((out, rows, vals, (w, h, width), columns, c0): ForwardArgs) -> usize {
    // The quad's weight rows; zeros past d, where the values are zeros too.
    let mut wq = [[0.0f32; S]; Q];
    for (wq, c) in wq.iter_mut().zip(columns) {
        wq.copy_from_slice(&w[c * h + c0..][..S]);
    }
    let (base, len) = (out.as_mut_ptr(), out.len());
    let at = |r: u32| -> *mut [f32; S] {
        debug_assert!((r as usize + 1) * width <= len && c0 + S <= width);
        // SAFETY: in bounds, as the caller guarantees (checked above in debug builds).
        unsafe { base.add(r as usize * width + c0).cast() }
    };
    let (row_pairs, val_pairs) = (rows.chunks_exact(2), vals.chunks_exact(2));
    let last = (row_pairs.remainder(), val_pairs.remainder());
    for (r, v) in row_pairs.zip(val_pairs) {
        let (o0, o1) = (at(r[0]), at(r[1]));
        // SAFETY: `at` gives S floats inside `out`; the two rows differ, so do the slices.
        let (mut a0, mut a1) = unsafe { (o0.read_unaligned(), o1.read_unaligned()) };
        for q in 0..Q {
            for t in 0..S {
                a0[t] = v[0][q].mul_add(wq[q][t], a0[t]);
                a1[t] = v[1][q].mul_add(wq[q][t], a1[t]);
            }
        }
        // SAFETY: as above.
        unsafe { (o0.write_unaligned(a0), o1.write_unaligned(a1)) };
    }
    if let ([r], [v]) = last {
        let o = at(*r);
        // SAFETY: as above.
        let mut a = unsafe { o.read_unaligned() };
        for q in 0..Q {
            for t in 0..S {
                a[t] = v[q].mul_add(wq[q][t], a[t]);
            }
        }
        // SAFETY: as above.
        unsafe { o.write_unaligned(a) };
    }
    S
}

/// `dw[c - 4 quads.start, :] += Σ_r x[r, c] · dz[r, :]` for the columns of the quads `quads`
/// (`dz` is rows x h; `dw` holds those columns' rows of dW, h floats each, none past d), as many
/// outputs at a time as `simd`'s registers hold in 4 sums.
#[inline(always)]
pub(super) fn backward(simd: Simd, dw: &mut [f32], dz: &[f32], x: &Quads, h: usize, quads: Range<usize>) {
    backward_at::<false>(simd, dw, dz, x, h, quads)
}

/// `backward` into `dw` whatever it held (`dw = ...`): the sums start from +0 in registers, and
/// blank quads' rows are cleared, so dW is written once instead of cleared and then summed
/// into (the same bits as onto zeros).
#[inline(always)]
pub(super) fn backward_into(simd: Simd, dw: &mut [f32], dz: &[f32], x: &Quads, h: usize, quads: Range<usize>) {
    backward_at::<true>(simd, dw, dz, x, h, quads)
}

/// `backward_by` as wide as `simd`'s registers hold.
#[inline(always)]
fn backward_at<const FRESH: bool>(simd: Simd, dw: &mut [f32], dz: &[f32], x: &Quads, h: usize, quads: Range<usize>) {
    match simd {
        Simd::Avx512 => backward_by::<64, FRESH>(dw, dz, x, h, quads),
        Simd::Avx2 => backward_by::<16, FRESH>(dw, dz, x, h, quads),
        Simd::Baseline => backward_by::<8, FRESH>(dw, dz, x, h, quads),
    }
}

/// `backward` (`FRESH`: `backward_into`), `S` outputs at a time (fewer for the last few).
#[inline(always)]
fn backward_by<const S: usize, const FRESH: bool>(
    dw: &mut [f32],
    dz: &[f32],
    x: &Quads,
    h: usize,
    quads: Range<usize>,
) {
    let first = quads.start * Q;
    assert!(dz.len() >= x.rows * h, "{} rows of dz for a block of {} rows", dz.len() / h.max(1), x.rows);
    for g in quads {
        let (rows, vals) = x.quad(g);
        let columns = x.columns(g);
        let dw = &mut dw[(columns.start - first) * h..(columns.end - first) * h];
        if rows.is_empty() {
            if FRESH {
                dw.fill(0.0);
            }
            continue;
        }
        let mut c0 = 0;
        while c0 < h {
            let args = (&mut *dw, dz, rows, vals, h, c0);
            c0 += match h - c0 {
                n if n >= S => backward_slice::<S, FRESH>(args),
                64.. => backward_slice::<64, FRESH>(args),
                32.. => backward_slice::<32, FRESH>(args),
                16.. => backward_slice::<16, FRESH>(args),
                8.. => backward_slice::<8, FRESH>(args),
                4.. => backward_slice::<4, FRESH>(args),
                2.. => backward_slice::<2, FRESH>(args),
                _ => backward_slice::<1, FRESH>(args),
            };
        }
    }
}

/// `backward_slice`'s dw, dz, the quad's rows and values, h and c0.
type BackwardArgs<'a> = (&'a mut [f32], &'a [f32], &'a [u32], &'a [[f32; Q]], usize, usize);

/// Outputs `c0..c0 + S` of one quad's rows of dW (`dw`: its columns' rows, h floats each) in
/// `backward`, summed in registers from dW's values (`FRESH`: from +0); returns S.
#[inline(always)]
fn backward_slice<const S: usize, const FRESH: bool>((dw, dz, rows, vals, h, c0): BackwardArgs) -> usize {
    let columns = dw.len() / h;
    let mut acc = [[0.0f32; S]; Q];
    if !FRESH {
        for (c, a) in acc.iter_mut().enumerate().take(columns) {
            a.copy_from_slice(&dw[c * h + c0..][..S]);
        }
    }
    let [mut a0, mut a1, mut a2, mut a3] = acc;
    for (&r, &[v0, v1, v2, v3]) in rows.iter().zip(vals) {
        debug_assert!((r as usize + 1) * h <= dz.len() && c0 + S <= h);
        // SAFETY: every row of `rows` is below `dz.len() / h` and `c0 + S <= h` (`backward_by`).
        let d: [f32; S] = unsafe { dz.as_ptr().add(r as usize * h + c0).cast::<[f32; S]>().read_unaligned() };
        for t in 0..S {
            a0[t] = v0.mul_add(d[t], a0[t]);
            a1[t] = v1.mul_add(d[t], a1[t]);
            a2[t] = v2.mul_add(d[t], a2[t]);
            a3[t] = v3.mul_add(d[t], a3[t]);
        }
    }
    for (c, a) in [a0, a1, a2, a3].iter().enumerate().take(columns) {
        dw[c * h + c0..][..S].copy_from_slice(a);
    }
    S
}

#[cfg(test)]
mod tests {
    use super::super::block::{self, Columns};
    use super::super::{Simd, SparseRows};
    use super::Quads;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The kernels index rows unchecked, trusting `Quads`' row count: outputs or gradients with
    /// fewer rows than the block must be refused before any access.
    #[test]
    fn kernels_refuse_outputs_shorter_than_the_block() {
        let (d, h) = (8, 16);
        let x = SparseRows::from_pixels(&[255; 3 * 8], d);
        let mut quads = Quads::default();
        quads.set_rows(d, (0..3).map(|i| x.row(i)));
        let w = vec![1.0; d * h];
        let message = |r: std::thread::Result<()>| -> String {
            r.err().and_then(|e| e.downcast::<String>().ok()).map(|m| *m).unwrap_or_default()
        };
        for simd in [Simd::Baseline, Simd::Avx2, Simd::Avx512] {
            let forward = std::panic::catch_unwind(|| {
                let mut out = vec![0.0; 3 * h];
                super::forward(simd, &mut out, None, &quads, (&w, h, 0..h), 2);
            });
            assert!(message(forward).contains("3 rows into 2 rows of outputs"), "forward, {simd:?}");
            let backward = std::panic::catch_unwind(|| {
                let mut dw = vec![0.0; d * h];
                super::backward(simd, &mut dw, &vec![1.0; 2 * h], &quads, h, 0..2);
            });
            assert!(message(backward).contains("2 rows of dz for a block of 3 rows"), "backward, {simd:?}");
        }
    }

    #[test]
    fn quad_products_are_the_column_products_bit_for_bit() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        // Inputs that end in a whole quad and in part of one, outputs around every slice width;
        // blocks whose outputs fit `QUADS_FIRST_UP_TO` (64 x 128) and blocks past it (64 x 200).
        for (rows, d, h) in [(64, 784, 128), (1, 1, 1), (3, 5, 17), (9, 22, 33), (7, 33, 65), (64, 130, 200), (5, 4, 8)]
        {
            for ink in [0.0, 0.1, 0.5, 1.0] {
                let pixels: Vec<u8> =
                    (0..rows * d).map(|_| if rng.random_bool(ink) { rng.random_range(1..=255) } else { 0 }).collect();
                let x = SparseRows::from_pixels(&pixels, d);
                let mut quads = Quads::default();
                quads.set_rows(d, (0..rows).map(|i| x.row(i)));
                let dense: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
                let mut cols = Columns::default();
                cols.set_dense(&dense, d);
                let random = |rng: &mut ChaCha8Rng, n: usize| -> Vec<f32> {
                    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
                };
                let (w, b, dz, start) =
                    (random(&mut rng, d * h), random(&mut rng, h), random(&mut rng, rows * h), random(&mut rng, d * h));
                // Every slice width, whatever this CPU runs: the level only picks the width here.
                for simd in [Simd::Baseline, Simd::Avx2, Simd::Avx512] {
                    for init in [None, Some(&b[..])] {
                        let (mut got, mut want) = (vec![9.0; rows * h], vec![9.0; rows * h]);
                        super::forward(simd, &mut got, init, &quads, (&w, h, 0..h), rows);
                        block::forward(&mut want, init, &cols, &w, h);
                        assert_eq!(got, want, "forward {rows}x{d}x{h} ink {ink} {simd:?} bias {}", init.is_some());
                        // A window of W's columns gives those columns of the whole product.
                        let window = h / 3..h - h / 5;
                        let mut part = vec![9.0; rows * window.len()];
                        let init = init.map(|b| &b[window.clone()]);
                        super::forward(simd, &mut part, init, &quads, (&w, h, window.clone()), rows);
                        let want_part: Vec<f32> = want.chunks(h).flat_map(|r| r[window.clone()].to_vec()).collect();
                        assert_eq!(part, want_part, "forward of columns {window:?} {rows}x{d}x{h} {simd:?}");
                    }
                    let (mut got, mut want) = (start.clone(), start.clone());
                    super::backward(simd, &mut got, &dz, &quads, h, 0..quads.quads());
                    block::backward(&mut want, &dz, &cols, h);
                    assert_eq!(got, want, "backward {rows}x{d}x{h} ink {ink} {simd:?}");
                    // Into whatever dW held: the sums onto zeros.
                    let (mut into, mut onto_zeros) = (start.clone(), vec![0.0; d * h]);
                    super::backward_into(simd, &mut into, &dz, &quads, h, 0..quads.quads());
                    block::backward(&mut onto_zeros, &dz, &cols, h);
                    assert!(into == onto_zeros, "backward_into {rows}x{d}x{h} ink {ink} {simd:?}");
                    // A range of quads writes only its columns' rows of dW.
                    let (q0, q1) = (quads.quads() / 3, quads.quads() - quads.quads() / 4);
                    let cols_in = q0 * 4..(q1 * 4).min(d);
                    let mut part = start[cols_in.start * h..cols_in.end * h].to_vec();
                    super::backward(simd, &mut part, &dz, &quads, h, q0..q1);
                    assert_eq!(part, want[cols_in.start * h..cols_in.end * h], "backward of quads {q0}..{q1} {simd:?}");
                }
            }
        }
    }
}
