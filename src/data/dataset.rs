//! Data sets in memory: images as grey bytes with their labels.

/// One split: `n` images of `rows x cols` grey bytes (0 = background, 255 = ink), row-major,
/// image i at pixels[i*d .. (i+1)*d] with d = rows*cols, and its label 0..=9. An unlabelled set
/// (a label-less CSV, for `predict`) has no labels at all: `labels` is empty.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub n: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Dataset {
    /// Pixels per image, `rows * cols`.
    pub fn d(&self) -> usize {
        self.rows * self.cols
    }

    /// The pixels of image `i`. Panics if `i >= n`.
    pub fn image(&self, i: usize) -> &[u8] {
        let d = self.d();
        &self.pixels[i * d..(i + 1) * d]
    }

    /// A set of no images of `rows x cols`.
    pub fn empty(rows: usize, cols: usize) -> Self {
        Dataset { n: 0, rows, cols, pixels: Vec::new(), labels: Vec::new() }
    }

    /// Whether every image has a label (an unlabelled set has none).
    pub fn labelled(&self) -> bool {
        self.labels.len() == self.n
    }

    /// Keep the first `min(n, self.n)` samples.
    pub fn truncate(&mut self, n: usize) {
        self.n = self.n.min(n);
        self.pixels.truncate(self.n * self.d());
        self.labels.truncate(self.n);
    }
}

/// The training and test splits of MNIST.
#[derive(Clone, Debug)]
pub struct Mnist {
    pub train: Dataset,
    pub test: Dataset,
}
