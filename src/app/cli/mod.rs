//! Command-line interface: clap types, validated as they are parsed, and their mapping onto the
//! library's requests. Training options are `None` when not given: their defaults live in
//! `gpu_mnist::plan` (a continued model's saved plan comes before them), and the help text shows
//! them (a test holds the two together).

use std::path::PathBuf;

mod data;
mod train;
pub mod values;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use data::DataArgs;
use gpu_mnist::gpu::{DeviceLimits, Tiling};
use gpu_mnist::model::Activation;
use gpu_mnist::optim::Optimizer;
pub use train::TrainArgs;
use values::{ACTIVATIONS, LIMITS, OPTIMIZERS, TILINGS, choice, hidden_units, positive, tune_seconds};

#[derive(Parser, Debug)]
#[command(
    name = "gpu-mnist",
    version,
    about = "Train an MNIST perceptron with WGSL compute shaders (wgpu) or on the CPU"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// The argument structs are parsed once per run: their sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a 784 -> H [-> H2 ...] -> 10 perceptron (full-batch or mini-batch) and report test accuracy.
    ///
    /// Options not given take the defaults shown; with --init-from, the continued model's run
    /// decides them first, so that `train --init-from FILE` alone continues an interrupted run.
    Train(TrainArgs),
    /// Accuracy, loss, per-class precision/recall and the confusion matrix of a saved model.
    Eval(EvalArgs),
    /// Read handwritten digits from image files (PNG, JPEG, ...) with a saved model.
    Predict(PredictArgs),
    /// Time the training step per backend and per kernel (GFLOP/s, GB/s, shares).
    Bench(BenchArgs),
    /// Write a model as a standard ONNX file (opset 13) for onnxruntime, Netron and other tools.
    Export(ExportArgs),
    /// A model's layers, parameter counts, FLOPs per image, input and how it was made.
    Info(InfoArgs),
    /// A local web page: draw a digit and see what the network reads, its weights and
    /// activations, the test set's mistakes (train --serve follows a run live).
    Serve(ServeArgs),
    /// List the GPU adapters wgpu sees, with the limits that matter here.
    Devices,
}

/// Models: this program's safetensors files, PyTorch state dicts of an nn.Sequential of
/// nn.Linear layers saved with safetensors, and ONNX perceptrons.
#[derive(Args, Debug, Clone, Default)]
pub struct ModelOptions {
    /// The hidden layers' activation, for a PyTorch state dict, which does not say it (a file
    /// that says its own must agree).
    #[arg(long, value_parser = choice(ACTIVATIONS))]
    pub activation: Option<Activation>,
}

impl ModelOptions {
    pub fn load(&self) -> gpu_mnist::checkpoint::LoadOptions {
        gpu_mnist::checkpoint::LoadOptions { activation: self.activation }
    }
}

#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// The model to evaluate (default: the one shipped with the sources).
    #[arg(long, default_value = "data/model.safetensors")]
    pub model: PathBuf,
    #[command(flatten)]
    pub model_options: ModelOptions,
    /// The data's test split is evaluated, or the whole of --data when it has none (one CSV
    /// file, one class-folder tree). --dataset defaults to the model's.
    #[command(flatten)]
    pub data: DataArgs,
    /// Print the figures as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Write confusion.png (heat map with counts), mistakes.png (the most confident
    /// misclassified test digits) and weights.png (each first-layer hidden unit's incoming
    /// weights as a tile) into this folder.
    #[arg(long)]
    pub plots: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    /// Images of one digit each, of any size, dark-on-light or light-on-dark; or CSV files of
    /// 28x28 images, one a row, with or without labels (Kaggle's test.csv).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// The model (default: the one shipped with the sources).
    #[arg(long, default_value = "data/model.safetensors")]
    pub model: PathBuf,
    #[command(flatten)]
    pub model_options: ModelOptions,
    /// Print the predictions as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write each prepared 28x28 input, as the network sees it, as a PNG into this folder.
    #[arg(long)]
    pub show: Option<PathBuf>,
    /// Write the predictions for CSV rows as Kaggle's submission file (ImageId,Label).
    #[arg(long)]
    pub submission: Option<PathBuf>,
}

/// The port `serve` and `train --serve` listen on unless told.
pub const DEFAULT_PORT: u16 = 8080;

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// The model the page shows (default: the one shipped with the sources).
    #[arg(long, default_value = "data/model.safetensors")]
    pub model: PathBuf,
    #[command(flatten)]
    pub model_options: ModelOptions,
    /// The port to listen on (0: any free one; the address is printed).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// The address to listen on; anything but loopback lets other machines use the page.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Open the page in the desktop's browser.
    #[arg(long)]
    pub open: bool,
    /// The test set the page's confusion matrix, mistakes and random digits come from (default:
    /// the model's data set's). --dataset defaults to the model's.
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// The model to export.
    pub model: PathBuf,
    /// The ONNX file to write: input "pixels" [batch, 784] in [0, 1], output "probabilities"
    /// [batch, 10].
    #[arg(long, value_name = "OUT.onnx")]
    pub onnx: PathBuf,
    #[command(flatten)]
    pub model_options: ModelOptions,
}

#[derive(Args, Debug, Clone)]
pub struct InfoArgs {
    /// The model (default: the one shipped with the sources).
    #[arg(default_value = "data/model.safetensors")]
    pub model: PathBuf,
    /// Print it as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub model_options: ModelOptions,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchBackends {
    All,
    Cpu,
    Gpu,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Which backends to time (all: the CPU, and the GPU when wgpu finds any adapter).
    #[arg(long, value_enum, default_value_t = BenchBackends::All)]
    pub backend: BenchBackends,
    /// Hidden layers' widths, input side first, as for `train` (each 1..=65535): 128, or
    /// 256,128 for 784-256-128-10.
    #[arg(long, value_delimiter = ',', value_parser = hidden_units, default_value = "128")]
    pub hidden: Vec<usize>,
    /// Training images N (at most the data set's size): every step's rows, or with
    /// --batch-size the rows one epoch's steps cover.
    #[arg(long, default_value_t = 60000, value_parser = positive)]
    pub samples: usize,
    /// Time the mini-batch step instead of the full batch: B rows of a shuffled order of the N
    /// samples per step, as `train --batch-size` takes them, and the update (default: the full
    /// batch).
    #[arg(long, value_parser = positive)]
    pub batch_size: Option<usize>,
    #[arg(long, value_parser = choice(ACTIVATIONS), default_value = "relu")]
    pub activation: Activation,
    /// Timed iterations per measurement (steps on the CPU with --batch-size, epochs on the GPU);
    /// the median is reported.
    #[arg(long, default_value_t = 5, value_parser = positive)]
    pub repeats: usize,
    /// Untimed iterations first (the GPU compiles its pipelines on the first).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// The update rule timed after each gradient pass (default hyper-parameters).
    #[arg(long, value_parser = choice(OPTIMIZERS), default_value = "gd")]
    pub optimizer: Optimizer,
    /// Also time H in 32..1024 (every hidden layer H wide) at N = --samples, and N in
    /// 1k..--samples at --hidden.
    #[arg(long)]
    pub sweep: bool,
    /// GPU: also time the naive one-output-per-invocation matmuls against the tiled ones.
    #[arg(long)]
    pub naive: bool,
    /// CPU: also time a hidden layer's two products over its non-zero inputs and by dense
    /// register tiles, at input densities from 5% to 100% (a block of 256 rows on one thread),
    /// for each pair of neighbouring --hidden widths (256 -> 128 when there is none), at this
    /// CPU's SIMD level and the baseline's, and say from which density the dense ones win: what
    /// sets the step's choice between them.
    #[arg(long)]
    pub crossover: bool,
    /// CPU threads (default: all cores), as for `train`: `--threads 1` and `2` measure how the
    /// step scales.
    #[arg(long, value_parser = positive)]
    pub threads: Option<usize>,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long)]
    pub adapter: Option<String>,
    /// GPU matmul tiling: auto times the candidates on this adapter once and keeps the fastest
    /// for each product (cached in the user's cache folder) [default: auto].
    #[arg(long, value_parser = choice(TILINGS))]
    pub tiling: Option<Tiling>,
    /// GPU: open the device with every limit the adapter offers, or only WebGPU's defaults.
    #[arg(long, value_parser = choice(LIMITS), default_value = "adapter")]
    pub limits: DeviceLimits,
    /// GPU: time every candidate configuration of each product of the step (ignoring the tuning
    /// cache), print each one's time, and keep the fastest in the cache; then bench as tuned.
    #[arg(long)]
    pub tune: bool,
    /// GPU: seconds of timing `--tune` may spend (more: candidates timed on more of the rows).
    #[arg(long, default_value_t = gpu_mnist::gpu::tune::BUDGET_SECONDS, value_parser = tune_seconds)]
    pub tune_seconds: f64,
    #[arg(long, default_value = "data/mnist")]
    pub data: PathBuf,
}
