//! Why a data file could not be used: one-line errors that name the file.

use std::io;
use std::path::{Path, PathBuf};

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
