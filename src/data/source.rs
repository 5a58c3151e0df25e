//! Where a training run's data comes from: `--data PATH` in any supported format (detected from
//! the content, or forced with `--format`), which data set it is (`--dataset`, for class names),
//! and the splits a run uses: training, an optional validation hold-out, an optional test set.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::dataset::Dataset;
use super::error::{DataError, malformed, not_found, one_line};
use super::{csv, folder, idx};

/// Where Debian's `dataset-fashion-mnist` package puts Fashion-MNIST's IDX files.
pub const FASHION_SYSTEM_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Classes of every data set here, and the side of the square images class folders are resized to.
const CLASSES: usize = 10;
const SIDE: usize = 28;

const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
const FASHION: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// Which data set the images are: it names the classes in every report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DatasetKind {
    /// Handwritten digits 0..9 (LeCun, Cortes, Burges).
    #[default]
    Mnist,
    /// Zalando's Fashion-MNIST: ten kinds of clothing in MNIST's format.
    Fashion,
}

impl DatasetKind {
    pub const ALL: [DatasetKind; 2] = [DatasetKind::Mnist, DatasetKind::Fashion];

    /// The name saved in model files (`dataset` metadata).
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "mnist",
            DatasetKind::Fashion => "fashion-mnist",
        }
    }

    /// The data set's name in reports.
    pub fn title(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "MNIST",
            DatasetKind::Fashion => "Fashion-MNIST",
        }
    }

    /// The kind a saved model's `dataset` names; anything unknown reads as digits.
    pub fn from_name(name: &str) -> Self {
        if name.starts_with("fashion") { DatasetKind::Fashion } else { DatasetKind::Mnist }
    }

    /// The ten class names, label order.
    pub fn class_names(self) -> &'static [&'static str; 10] {
        match self {
            DatasetKind::Mnist => &DIGITS,
            DatasetKind::Fashion => &FASHION,
        }
    }

    /// Class `c` in words: "7" for digits, "Sneaker (7)" for Fashion-MNIST.
    pub fn class_name(self, c: usize) -> String {
        match (self, self.class_names().get(c)) {
            (DatasetKind::Fashion, Some(name)) => format!("{name} ({c})"),
            (_, Some(name)) => name.to_string(),
            (_, None) => c.to_string(),
        }
    }
}

/// A data format `--format` can force; otherwise it is detected from the content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// IDX files (train-images-idx3-ubyte ...), raw or gzipped.
    Idx,
    /// CSV rows `label,pixel0..pixel783` (Kaggle, mnist_train.csv), with or without a header.
    Csv,
    /// Folders of images, one per class: `0/`..`9/` (or `train/0/`.., `test/0/`..).
    Images,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Idx, Format::Csv, Format::Images];

    /// The format in reports: "IDX", "CSV", "image folders".
    pub fn name(self) -> &'static str {
        match self {
            Format::Idx => "IDX",
            Format::Csv => "CSV",
            Format::Images => "image folders",
        }
    }
}

/// The splits of one run. `validation` and `test` have `n == 0` when there are none.
#[derive(Clone, Debug)]
pub struct Splits {
    pub train: Dataset,
    pub validation: Dataset,
    pub test: Dataset,
}

/// Which rows of the loaded data a run uses: the first `samples` training images, a fraction
/// `val_split` of those held out as the validation set (chosen by `seed`), the first
/// `test_samples` test images.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Selection {
    pub samples: Option<usize>,
    pub test_samples: Option<usize>,
    pub val_split: Option<f64>,
    pub seed: u64,
}

impl Splits {
    /// Training and test sets, no validation set.
    pub fn new(train: Dataset, test: Dataset) -> Self {
        let validation = Dataset::empty(train.rows, train.cols);
        Splits { train, validation, test }
    }

    /// The splits `selection` chooses from a training set and a test set (empty for none) of the
    /// same image size.
    pub fn select(mut train: Dataset, mut test: Dataset, selection: &Selection) -> Result<Self, DataError> {
        if let Some(n) = selection.samples {
            train.truncate(n);
        }
        if let Some(n) = selection.test_samples {
            test.truncate(n);
        }
        let mut splits = Splits::new(train, test);
        if let Some(f) = selection.val_split {
            if splits.train.n < 2 {
                let m = format!("--val-split needs at least 2 training images, there are {}", splits.train.n);
                return Err(DataError::Selection(m));
            }
            splits.hold_out(f, selection.seed);
        }
        Ok(splits)
    }

    /// Moves `fraction` of the training set (at least one image, and leaving at least one), chosen
    /// by a permutation seeded with `seed`, into the validation set. Both keep their original order.
    pub fn hold_out(&mut self, fraction: f64, seed: u64) {
        let n = self.train.n;
        let held = ((n as f64 * fraction).round() as usize).clamp(1.min(n), n.saturating_sub(1));
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x7661_6c69_6461_7465));
        let mut is_held = vec![false; n];
        order[..held].iter().for_each(|&i| is_held[i] = true);
        let (mut keep, mut val) = (Dataset::empty(self.train.rows, self.train.cols), self.validation.clone());
        val.rows = self.train.rows;
        val.cols = self.train.cols;
        for (i, &held) in is_held.iter().enumerate() {
            let to = if held { &mut val } else { &mut keep };
            to.pixels.extend_from_slice(self.train.image(i));
            to.labels.push(self.train.labels[i]);
            to.n += 1;
        }
        self.train = keep;
        self.validation = val;
    }
}

/// What `--data` held: a training set, a test set when the source has a labelled one, the
/// format, and notes worth telling the user (images resized, an unlabelled test file ignored...).
#[derive(Clone, Debug)]
pub struct Loaded {
    /// Where it was read from.
    pub path: PathBuf,
    pub train: Dataset,
    pub test: Option<Dataset>,
    pub format: Format,
    pub notes: Vec<String>,
}

/// Loads `--data PATH`: a folder of IDX files, CSV files or class folders, or a single CSV file
/// (a training set only). `format` forces the format; otherwise the content decides.
pub fn load(path: &Path, format: Option<Format>) -> Result<Loaded, DataError> {
    if !path.exists() {
        return Err(not_found(path, "no such file or folder"));
    }
    let format = match format {
        Some(f) => f,
        None => detect(path)?,
    };
    let mut loaded = match format {
        Format::Idx => {
            if path.is_file() {
                let m = "IDX data comes as four files: pass the folder that holds them".to_string();
                return Err(malformed(path, m));
            }
            let m = idx::load_mnist(path)?;
            Loaded { path: path.to_path_buf(), train: m.train, test: Some(m.test), format, notes: Vec::new() }
        }
        Format::Csv => load_csv(path)?,
        Format::Images => load_folders(path)?,
    };
    loaded.path = path.to_path_buf();
    Ok(loaded)
}

/// One CSV file (a training set), or a folder with `train.csv`/`mnist_train.csv` and, if present,
/// `mnist_test.csv`/`test.csv` (ignored, with a note, when it has no labels: Kaggle's test.csv).
fn load_csv(path: &Path) -> Result<Loaded, DataError> {
    let loaded = |train, test, notes| Loaded { path: path.to_path_buf(), train, test, format: Format::Csv, notes };
    if path.is_file() {
        return Ok(loaded(csv::read_csv(path)?, None, Vec::new()));
    }
    let pick = |names: &[&str]| names.iter().map(|n| path.join(n)).find(|p| p.is_file());
    let Some(train_path) = pick(&["train.csv", "mnist_train.csv"]) else {
        return Err(not_found(&path.join("train.csv"), "no train.csv or mnist_train.csv here"));
    };
    let train = csv::read_csv(&train_path)?;
    let mut notes = Vec::new();
    let test = match pick(&["mnist_test.csv", "test.csv"]) {
        Some(test_path) => {
            let test = csv::read_csv(&test_path)?;
            if test.labelled() {
                Some(test)
            } else {
                notes.push(format!(
                    "{} has no labels (a file for predict): not used as a test set",
                    test_path.display()
                ));
                None
            }
        }
        None => None,
    };
    Ok(loaded(train, test, notes))
}

/// Class folders `0/`..`9/` directly in `path` (a training set), or under `train/` (or `training/`)
/// with an optional `test/` (or `testing/`).
fn load_folders(path: &Path) -> Result<Loaded, DataError> {
    let pick = |names: &[&str]| names.iter().map(|n| path.join(n)).find(|p| p.is_dir());
    let (train_dir, test_dir) = match pick(&["train", "training"]) {
        Some(train) => (train, pick(&["test", "testing"])),
        None => (path.to_path_buf(), None),
    };
    let mut notes = Vec::new();
    let mut read = |dir: &Path| -> Result<Dataset, DataError> {
        let (set, n) = folder::read_image_folder(dir, CLASSES, SIDE)?;
        let d = dir.display();
        for (count, what) in [
            (n.resized, format!("resized to {SIDE}x{SIDE}")),
            (n.colour, "converted from colour to grey".to_string()),
            (n.inverted, "inverted (dark ink on a light background)".to_string()),
        ] {
            if count > 0 {
                notes.push(format!("{d}: {count} of {} images {what}", set.n));
            }
        }
        if n.skipped > 0 {
            notes.push(format!("{d}: skipped {} hidden entries or entries outside the class folders", n.skipped));
        }
        Ok(set)
    };
    let train = read(&train_dir)?;
    let test = test_dir.as_deref().map(&mut read).transpose()?;
    Ok(Loaded { path: path.to_path_buf(), train, test, format: Format::Images, notes })
}

/// The format of `path` from its content: a CSV file, or a folder of IDX files, CSV files or
/// class folders.
pub fn detect(path: &Path) -> Result<Format, DataError> {
    if path.is_file() {
        let head = first_bytes(path)?;
        let named_csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        return if head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0, 0, 8]) {
            Err(malformed(path, "an IDX file: pass the folder that holds all four (--data DIR)".into()))
        } else if named_csv || csv::looks_like_csv(&head) {
            // A .csv file is read as CSV even if it starts badly: the parser names the bad row.
            Ok(Format::Csv)
        } else {
            Err(malformed(path, "neither a CSV of images nor a folder of data (--format forces a format)".into()))
        };
    }
    let entries = list(path)?;
    let has = |names: &[&str]| names.iter().any(|n| entries.iter().any(|e| e == n));
    if entries.iter().any(|e| e.starts_with("train-images")) {
        Ok(Format::Idx)
    } else if has(&["train.csv", "mnist_train.csv"]) {
        Ok(Format::Csv)
    } else if folder::looks_like_image_folder(path)
        || ["train", "training"].iter().any(|t| folder::looks_like_image_folder(&path.join(t)))
    {
        Ok(Format::Images)
    } else {
        Err(malformed(
            path,
            "found no data: expected IDX files (train-images-idx3-ubyte...), train.csv or mnist_train.csv, \
             or class folders 0..9 (directly or under train/ and test/)"
                .into(),
        ))
    }
}

/// The names in a folder, sorted.
fn list(dir: &Path) -> Result<Vec<String>, DataError> {
    let io = |e: std::io::Error| DataError::Io { path: dir.to_path_buf(), reason: one_line(&e) };
    let mut names: Vec<String> =
        fs::read_dir(dir).map_err(io)?.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into()).collect();
    names.sort();
    Ok(names)
}

/// Up to the first 4 KiB of a file, for content checks.
fn first_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    let io = |e: std::io::Error| DataError::Io { path: path.to_path_buf(), reason: one_line(&e) };
    let mut head = Vec::new();
    fs::File::open(path).map_err(io)?.take(4096).read_to_end(&mut head).map_err(io)?;
    Ok(head)
}

/// A path as given, or, when it is the relative default `default` and missing here, the copy
/// bundled with the sources (so the defaults work from any folder).
pub fn bundled(arg: &Path, default: &str) -> PathBuf {
    let copy = Path::new(env!("CARGO_MANIFEST_DIR")).join(default);
    if arg == Path::new(default) && !arg.exists() && copy.exists() { copy } else { arg.to_path_buf() }
}

/// The default folder of a data set: `data/mnist` here or, from any other folder, the copy
/// bundled with the sources; Fashion-MNIST from Debian's `dataset-fashion-mnist` package.
pub fn default_dir(kind: DatasetKind) -> Result<PathBuf, DataError> {
    match kind {
        DatasetKind::Mnist => Ok(bundled(Path::new("data/mnist"), "data/mnist")),
        DatasetKind::Fashion => match Path::new(FASHION_SYSTEM_DIR) {
            dir if dir.is_dir() => Ok(dir.to_path_buf()),
            dir => Err(not_found(dir, "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")),
        },
    }
}

/// Where a command's images come from: `--data` (default: the data set's own folder), an extra
/// labelled test set (`--test-data`), a forced format, and which data set they are.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DataSource {
    pub path: Option<PathBuf>,
    pub test_path: Option<PathBuf>,
    pub format: Option<Format>,
    pub kind: DatasetKind,
}

/// The data a command asked for: `source.path` (or the data set's default folder), with the test
/// set it holds or the one `source.test_path` names, checked to have the same image size.
pub fn open(source: &DataSource) -> Result<Loaded, DataError> {
    let path = match &source.path {
        Some(p) => p.clone(),
        None => default_dir(source.kind)?,
    };
    let mut loaded = load(&path, source.format)?;
    if let Some(test_path) = &source.test_path {
        let t = load(test_path, None)?;
        if t.test.is_none() && !t.train.labelled() {
            return Err(malformed(test_path, "has no labels, so it cannot be a test set".into()));
        }
        loaded.notes.extend(t.notes);
        loaded.test = Some(t.test.unwrap_or(t.train));
    }
    if let Some(test) = &loaded.test {
        let (train, what) = (&loaded.train, source.test_path.as_ref().unwrap_or(&path));
        if (test.rows, test.cols) != (train.rows, train.cols) {
            let m = format!(
                "test images are {}x{} but training images are {}x{}",
                test.rows, test.cols, train.rows, train.cols
            );
            return Err(malformed(what, m));
        }
    }
    Ok(loaded)
}
