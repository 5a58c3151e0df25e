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
mod dataset;
mod error;
pub mod folder;
pub mod idx;
pub mod source;

pub use dataset::{Dataset, Mnist};
pub use error::DataError;
pub use source::{DataSource, DatasetKind, Format, Loaded, Selection, Splits};

pub use idx::{
    MAX_PAYLOAD, load_mnist, load_split, parse_idx_images, parse_idx_labels, read_idx_images, read_idx_labels,
};
