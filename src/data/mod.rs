//! Data sets: the images and labels a network trains and is tested on, from the formats people
//! have them in.
//!
//! - [`idx`]: MNIST's own IDX files, raw or gzipped.
//! - [`csv`]: CSV files of images, one a line, with or without a label column and a header.
//! - [`folder`]: a folder of image files, one sub-folder per class (`0/`, `1/`, ...).
//! - [`source`]: `--data PATH` in any of them, `--dataset` (class names), and the splits of a run.
//!
//! Files are untrusted input: every defect gives a one-line [`DataError`] naming the file (and the
//! row or entry), and nothing is allocated from a header's or a file's unchecked claims.

pub mod csv;
pub mod folder;
pub mod idx;
pub mod source;

use std::io;
use std::path::{Path, PathBuf};

pub use source::{DataSource, DatasetKind, Format, Loaded, Selection, Splits};

pub use idx::{
    MAX_PAYLOAD, load_mnist, load_split, parse_idx_images, parse_idx_labels, read_idx_images, read_idx_labels,
};

const HINT: &str = "pass --data PATH: a folder of IDX or CSV files or of class folders 0..9, or a CSV file";

/// Why a data file could not be used. Every message is one line and names the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The data directory or one of the four files is not there.
    #[error("{}: {what}; {HINT}", path.display())]
    NotFound { path: PathBuf, what: String },
    /// The file exists but could not be read (permissions, I/O error, ...).
    #[error("{}: cannot read: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
    /// The file starts like gzip but the compressed stream is corrupt or cut short.
    #[error("{}: corrupt or truncated gzip data: {reason}", path.display())]
    Gzip { path: PathBuf, reason: String },
    /// The IDX content is malformed (magic, type, dimensions, sizes, ...).
    #[error("{}: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    /// The images and labels files of one split hold different numbers of samples.
    #[error(
        "{} holds {images} images but {} holds {labels} labels; they must be the same split",
        images_path.display(), labels_path.display()
    )]
    CountMismatch { images_path: PathBuf, images: usize, labels_path: PathBuf, labels: usize },
    /// A row of a text file (CSV) is malformed; `line` counts from 1, header included.
    #[error("{}: line {line}: {reason}", path.display())]
    Row { path: PathBuf, line: usize, reason: String },
    /// A label is not a digit.
    #[error("{}: label at index {index} is {value}, expected a digit 0..=9", path.display())]
    BadLabel { path: PathBuf, index: usize, value: u8 },
    /// The rows asked for cannot be chosen from the data.
    #[error("{0}")]
    Selection(String),
}

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

pub(crate) fn malformed(path: &Path, reason: String) -> DataError {
    DataError::Malformed { path: path.to_path_buf(), reason }
}

pub(crate) fn not_found(path: &Path, what: &str) -> DataError {
    DataError::NotFound { path: path.to_path_buf(), what: what.to_string() }
}

/// An error's message folded onto one line.
pub(crate) fn one_line(e: &io::Error) -> String {
    e.to_string().replace(['\n', '\r'], " ")
}
