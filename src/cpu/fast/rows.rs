//! The training set as the input layer's products read it: rows of quads of pixels (4 side by
//! side), the blank quads left out, built in parallel and rebuilt in place for augmented epochs.

use std::ops::Range;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::quads::Quads;
use super::{BLOCK, blocks, shards};

/// Rows of u8 pixels by quads (4 pixels side by side, `4g..4g + 4`), the empty quads left out:
/// row i holds entries `start[i]..start[i+1]` of `quad`/`val`, the indices of its quads with
/// any ink, ascending, and their pixels (0 for blank ones and past d). The pixels stay bytes,
/// 8 bytes a quad with its index: a mini-batch reads its rows from all over the set, mostly
/// from memory, and `Quads::set_rows` scales them to [0, 1] as it regroups them.
#[derive(Clone, Debug)]
pub struct SparseRows {
    pub d: usize,
    nnz: usize,
    start: Vec<usize>,
    quad: Vec<u32>,
    val: Vec<[u8; 4]>,
    /// The rows regrouped by quad in the blocks of a pass over all of them in order (every
    /// shard's blocks, shard after shard), made by the first such pass: the full-batch step and
    /// every evaluation visit the same blocks each time.
    by_block: OnceLock<Vec<Quads>>,
}

impl SparseRows {
    /// `pixels` is n x d bytes, row-major (d < 2^32, which any loaded image satisfies).
    pub fn from_pixels(pixels: &[u8], d: usize) -> Self {
        let mut rows = SparseRows {
            d,
            nnz: 0,
            start: Vec::new(),
            quad: Vec::new(),
            val: Vec::new(),
            by_block: Default::default(),
        };
        rows.refill(pixels, d);
        rows
    }

    /// Becomes `from_pixels(pixels, d)`, keeping its memory: augmented runs rebuild the rows
    /// every epoch. Two parallel passes over pieces of rows: count each piece's inked quads,
    /// then write each piece's entries in place at its offset.
    pub fn refill(&mut self, pixels: &[u8], d: usize) {
        const PIECE: usize = 2048;
        let piece_bytes = d.max(1) * PIECE;
        let inked = |row: &[u8]| row.chunks(4).filter(|q| q.iter().any(|&p| p != 0)).count();
        let counts: Vec<(usize, usize)> = pixels
            .par_chunks(piece_bytes)
            .map(|piece| {
                let quads = piece.chunks_exact(d.max(1)).map(inked).sum();
                (quads, piece.iter().filter(|&&p| p != 0).count())
            })
            .collect();
        let n = pixels.len().checked_div(d).unwrap_or(0);
        let entries = counts.iter().map(|c| c.0).sum();
        self.d = d;
        self.nnz = counts.iter().map(|c| c.1).sum();
        self.by_block = Default::default();
        self.start.resize(n + 1, 0);
        self.quad.resize(entries, 0);
        self.val.resize(entries, [0; 4]);
        // Each piece's share of `start` (its rows' ends), `quad` and `val`.
        let mut jobs = Vec::with_capacity(counts.len());
        let (mut start, mut quad, mut val) = (&mut self.start[1..], &mut self.quad[..], &mut self.val[..]);
        let mut base = 0;
        for (piece, &(count, _)) in pixels.chunks(piece_bytes).zip(&counts) {
            let (s, s_rest) = std::mem::take(&mut start).split_at_mut(piece.len() / d.max(1));
            let (q, q_rest) = std::mem::take(&mut quad).split_at_mut(count);
            let (v, v_rest) = std::mem::take(&mut val).split_at_mut(count);
            jobs.push((piece, s, q, v, base));
            (start, quad, val, base) = (s_rest, q_rest, v_rest, base + count);
        }
        jobs.into_par_iter().for_each(|(piece, ends, quad, val, base)| {
            let mut at = 0;
            for (row, end) in piece.chunks_exact(d.max(1)).zip(ends) {
                for (g, q) in row.chunks(4).enumerate() {
                    if q.iter().any(|&p| p != 0) {
                        quad[at] = g as u32;
                        val[at] = std::array::from_fn(|i| q.get(i).copied().unwrap_or(0));
                        at += 1;
                    }
                }
                *end = base + at;
            }
        });
        self.start[0] = 0;
    }

    pub fn n(&self) -> usize {
        self.start.len() - 1
    }

    /// Non-zero pixels in all rows.
    pub fn nnz(&self) -> usize {
        self.nnz
    }

    /// Every shard's blocks of `BLOCK` rows of a pass over all rows in order, by quad.
    pub(super) fn blocks(&self) -> &[Quads] {
        self.by_block.get_or_init(|| {
            let all: Vec<Range<usize>> = shards(self.n()).into_iter().flat_map(|s| blocks(s, BLOCK)).collect();
            all.into_par_iter()
                .map(|block| {
                    let mut quads = Quads::default();
                    quads.set_rows(self.d, block.map(|i| self.row(i)));
                    quads
                })
                .collect()
        })
    }

    /// Quads with ink in all rows.
    pub fn inked_quads(&self) -> usize {
        self.quad.len()
    }

    /// Asks the memory system for `rows` (indices into this set) all at once, before a
    /// mini-batch regroups them: they lie all over the set, mostly in memory, and read one after
    /// another each row would wait out its own misses. First every row's bounds, then the lines
    /// of its quads and pixels.
    pub(super) fn prefetch(&self, rows: impl Iterator<Item = usize> + Clone) {
        for i in rows.clone() {
            prefetch(&self.start[i]);
        }
        for i in rows {
            let (quads, vals) = self.row(i);
            // 16 quads' indices or pixels a cache line, and whatever line the last one is on.
            quads.chunks(16).for_each(|part| prefetch(&part[0]));
            vals.chunks(16).for_each(|part| prefetch(&part[0]));
            if let (Some(q), Some(v)) = (quads.last(), vals.last()) {
                prefetch(q);
                prefetch(v);
            }
        }
    }

    /// Row i's inked quads and their pixels.
    #[inline(always)]
    pub(super) fn row(&self, i: usize) -> (&[u32], &[[u8; 4]]) {
        let r = self.start[i]..self.start[i + 1];
        (&self.quad[r.clone()], &self.val[r])
    }
}

/// A hint that `at`'s cache line will be read soon (nothing on other targets than x86-64).
#[inline(always)]
fn prefetch<T>(at: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only moves a line into the cache; it reads nothing and never faults.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>((at as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

#[cfg(test)]
mod tests {
    use super::SparseRows;

    /// The rows one pixel at a time: the definition `refill` is checked against.
    #[allow(clippy::type_complexity)]
    fn plain(pixels: &[u8], d: usize) -> (Vec<usize>, Vec<u32>, Vec<[u8; 4]>, usize) {
        let (mut start, mut quad, mut val, mut nnz) = (vec![0], Vec::new(), Vec::new(), 0);
        for row in pixels.chunks_exact(d) {
            for (c, &p) in row.iter().enumerate().filter(|(_, p)| **p != 0) {
                if quad.last() != Some(&((c / 4) as u32)) || start.last() == Some(&quad.len()) {
                    quad.push((c / 4) as u32);
                    val.push([0; 4]);
                }
                val.last_mut().unwrap()[c % 4] = p;
                nnz += 1;
            }
            start.push(quad.len());
        }
        (start, quad, val, nnz)
    }

    #[test]
    fn refilled_rows_are_the_rows_of_the_new_pixels() {
        let mut state = 1u32;
        let mut pixels = |n: usize, d: usize, ink: u32| -> Vec<u8> {
            (0..n * d)
                .map(|_| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    if state >> 24 < ink { (state >> 8) as u8 | 1 } else { 0 }
                })
                .collect()
        };
        // Several pieces of 2,048 rows and a part of one; then fewer rows, denser, then none.
        let mut rows = SparseRows::from_pixels(&[], 7);
        for (n, d, ink) in [(4_100, 7, 60), (5, 13, 250), (2_049, 3, 0), (0, 5, 100), (3_000, 784, 50)] {
            let p = pixels(n, d, ink);
            rows.refill(&p, d);
            let (start, quad, val, nnz) = plain(&p, d);
            assert_eq!((rows.d, rows.n(), rows.nnz()), (d, n, nnz));
            assert!(rows.start == start && rows.quad == quad && rows.val == val, "{n} rows of {d}");
        }
    }
}
