//! Where the images come from: the options `train` and `eval` share.

use std::path::PathBuf;

use clap::Args;

use super::values::{DATASETS, FORMATS, choice};
use gpu_mnist::data::{DatasetKind, Format};
use gpu_mnist::plan::DataRequest;

/// Where the images come from (train and eval).
#[derive(Args, Debug, Clone, Default)]
pub struct DataArgs {
    /// The data: a folder of IDX files, of CSV files (train.csv / mnist_train.csv ...) or of class
    /// folders (0/ .. 9/, or train/ and test/ with them), or one CSV file
    /// [default: the bundled MNIST; with --dataset fashion, /usr/share/datasets/fashion-mnist]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// A labelled test set in any format, for data without one (e.g. --data mnist_train.csv
    /// --test-data mnist_test.csv).
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    /// Read --data as this format instead of detecting it from the content.
    #[arg(long, value_parser = choice(FORMATS))]
    pub format: Option<Format>,
    /// Which data set the images are: it names the classes in reports and in the saved model
    /// [default: mnist].
    #[arg(long, value_parser = choice(DATASETS))]
    pub dataset: Option<DatasetKind>,
}

impl DataArgs {
    pub fn request(&self) -> DataRequest {
        DataRequest {
            path: self.data.clone(),
            test_path: self.test_data.clone(),
            format: self.format,
            kind: self.dataset,
            ..Default::default()
        }
    }
}
