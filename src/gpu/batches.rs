//! Mini-batch bookkeeping on the host: batch sizes and row ranges, the training rows in an
//! epoch's order (uploaded by `GpuBackend::shuffle`), and which batches have been stepped on.

use std::ops::Range;

use super::layout::pack_rows;
use crate::backend::{batch_count, batch_range};
use crate::data::Dataset;

pub(super) struct Batches {
    /// Rows per batch: N (at least 1) for full-batch training.
    pub size: usize,
    n: usize,
    /// Whether each batch has been stepped on since the backend was made.
    visited: Vec<bool>,
    /// The training pixels (packed rows) and labels in their original order, kept to upload them
    /// in each epoch's order; `None` for full batches, where the order changes nothing.
    rows: Option<(Vec<u8>, Vec<u32>)>,
}

impl Batches {
    /// Batches of `size` rows of `set` (`None`, or N and more: one batch of every row).
    pub fn new(set: &Dataset, size: Option<usize>) -> Self {
        let n = set.n;
        let size = size.unwrap_or(n).clamp(1, n.max(1));
        let count = batch_count(n, size);
        let rows = (count > 1).then(|| {
            let labels = set.labels.iter().map(|&l| l as u32).collect();
            (pack_rows(&set.pixels, set.d()), labels)
        });
        Batches { size, n, visited: vec![false; count], rows }
    }

    pub fn count(&self) -> usize {
        self.visited.len()
    }

    pub fn full(&self) -> bool {
        self.count() == 1
    }

    /// Batch `b`'s rows of the device's training buffers.
    pub fn range(&self, b: usize) -> Range<usize> {
        batch_range(b, self.size, self.n)
    }

    pub fn visit(&mut self, b: usize) {
        self.visited[b] = true;
    }

    pub fn visited(&self, b: usize) -> bool {
        self.visited[b]
    }

    /// The rows of the batches visited so far, as ranges (neighbouring batches merged).
    pub fn visited_rows(&self) -> Vec<Range<usize>> {
        let mut runs: Vec<Range<usize>> = Vec::new();
        for b in (0..self.count()).filter(|&b| self.visited[b]) {
            let r = self.range(b);
            match runs.last_mut() {
                Some(last) if last.end == r.start => last.end = r.end,
                _ => runs.push(r),
            }
        }
        runs
    }

    /// Replaces the training pixels kept for uploads (an epoch's distortion of them), packed as
    /// `pack_rows` packs them; full batches keep none.
    pub fn set_pixels(&mut self, packed: Vec<u8>) {
        if let Some((pixels, _)) = &mut self.rows {
            *pixels = packed;
        }
    }

    /// The packed pixel rows and labels in `order` (a checked permutation of 0..N); `None` for
    /// full batches.
    pub fn permuted(&self, order: &[u32]) -> Option<(Vec<u8>, Vec<u32>)> {
        let (pixels, labels) = self.rows.as_ref()?;
        let lda = pixels.len() / self.n.max(1);
        let mut x = Vec::with_capacity(pixels.len());
        for &i in order {
            let i = i as usize;
            x.extend_from_slice(&pixels[i * lda..(i + 1) * lda]);
        }
        Some((x, order.iter().map(|&i| labels[i as usize]).collect()))
    }
}
