//! Command-line interface: clap types, validated as they are parsed, and their mapping onto the
//! library's requests. Training options are `None` when not given: their defaults live in
//! `gpu_mnist::plan` (a continued model's saved plan comes before them), and the help text shows
//! them (a test holds the two together).

use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use gpu_mnist::data::{DatasetKind, Format};
use gpu_mnist::gpu::Tiling;
use gpu_mnist::model::Activation;
use gpu_mnist::optim::Optimizer;
use gpu_mnist::plan::{DataRequest, TrainRequest};
use gpu_mnist::schedule::LrSchedule;

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
    Train(TrainArgs),
    /// Accuracy, loss, per-class precision/recall and the confusion matrix of a saved model.
    Eval(EvalArgs),
    /// Read handwritten digits from image files (PNG, JPEG, ...) with a saved model.
    Predict(PredictArgs),
    /// Time the training step per backend and per kernel (GFLOP/s, GB/s, shares).
    Bench(BenchArgs),
    /// List the GPU adapters wgpu sees, with the limits that matter here.
    Devices,
}

/// A parser for one of the domain's enums: each value's command-line name and help.
fn choice<T: Copy + Send + Sync + 'static>(
    values: &'static [(T, &'static str, &'static str)],
) -> impl TypedValueParser<Value = T> {
    let names = values.iter().map(|&(_, name, help)| PossibleValue::new(name).help(help));
    PossibleValuesParser::new(names).map(move |s| {
        // The possible values parser has accepted only names of `values`.
        values.iter().find(|(_, name, _)| *name == s).map_or(values[0].0, |v| v.0)
    })
}

pub const ACTIVATIONS: &[(Activation, &str, &str)] = &[
    (Activation::Sigmoid, "sigmoid", "1 / (1 + e^-z)"),
    (Activation::Relu, "relu", "max(z, 0)"),
    (Activation::Elu, "elu", "z above 0, e^z - 1 below"),
];
pub const OPTIMIZERS: &[(Optimizer, &str, &str)] = &[
    (Optimizer::Gd, "gd", "Plain gradient descent"),
    (Optimizer::Momentum, "momentum", "Heavy-ball momentum"),
    (Optimizer::Nesterov, "nesterov", "Nesterov momentum"),
    (Optimizer::Adam, "adam", "Adam with bias correction"),
];
pub const SCHEDULES: &[(LrSchedule, &str, &str)] = &[
    (LrSchedule::Constant, "constant", "--lr throughout"),
    (LrSchedule::Step, "step", "--lr times --lr-gamma after every --lr-step-every iterations"),
    (LrSchedule::Cosine, "cosine", "From --lr down to 0 along half a cosine, over the iterations after the warm-up"),
];
pub const TILINGS: &[(Tiling, &str, &str)] = &[
    (Tiling::Register, "register", "8 x 8 outputs per invocation in registers, no barriers (software adapters)"),
    (Tiling::Shared, "shared", "64 x 64 tiles staged through workgroup memory (hardware GPUs)"),
];
pub const DATASETS: &[(DatasetKind, &str, &str)] = &[
    (DatasetKind::Mnist, "mnist", "Handwritten digits 0..9 (LeCun, Cortes, Burges)"),
    (DatasetKind::Fashion, "fashion", "Zalando's Fashion-MNIST: ten kinds of clothing in MNIST's format"),
];
pub const FORMATS: &[(Format, &str, &str)] = &[
    (Format::Idx, "idx", "IDX files (train-images-idx3-ubyte ...), raw or gzipped"),
    (Format::Csv, "csv", "CSV rows label,pixel0..pixel783 (Kaggle, mnist_train.csv), with or without a header"),
    (Format::Images, "images", "Folders of images, one per class: 0/..9/ (or train/0/.., test/0/..)"),
];

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

#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// The model to evaluate (default: the one shipped with the sources).
    #[arg(long, default_value = "data/model.safetensors")]
    pub model: PathBuf,
    /// The data's test split is evaluated, or the whole of --data when it has none (one CSV
    /// file, one class-folder tree). --dataset defaults to the model's.
    #[command(flatten)]
    pub data: DataArgs,
    /// Print the figures as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Write confusion.png (heat map with counts) and mistakes.png (the most confident
    /// misclassified test digits) into this folder.
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
    /// Hidden units H (1..=65535).
    #[arg(long, default_value_t = 128, value_parser = hidden_units)]
    pub hidden: usize,
    /// Training images N per iteration (at most the data set's size).
    #[arg(long, default_value_t = 60000, value_parser = positive)]
    pub samples: usize,
    #[arg(long, value_parser = choice(ACTIVATIONS), default_value = "relu")]
    pub activation: Activation,
    /// Timed iterations per measurement; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = positive)]
    pub repeats: usize,
    /// Untimed iterations first (the GPU compiles its pipelines on the first).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// The update rule timed after each gradient pass (default hyper-parameters).
    #[arg(long, value_parser = choice(OPTIMIZERS), default_value = "gd")]
    pub optimizer: Optimizer,
    /// Also time H in 32..1024 at N = --samples and N in 1k..--samples at H = --hidden.
    #[arg(long)]
    pub sweep: bool,
    /// GPU: also time the naive one-output-per-invocation matmuls against the tiled ones.
    #[arg(long)]
    pub naive: bool,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long)]
    pub adapter: Option<String>,
    /// GPU matmul tiling (default: shared on hardware GPUs, register on software adapters).
    #[arg(long, value_parser = choice(TILINGS))]
    pub tiling: Option<Tiling>,
    #[arg(long, default_value = "data/mnist")]
    pub data: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// A hardware GPU when wgpu finds one, else the CPU.
    Auto,
    /// WGSL shaders on the best adapter wgpu finds, software ones (llvmpipe) included.
    Gpu,
    /// The CPU backend.
    Cpu,
}

/// `train`'s options. Those that shape the run are `None` when not given: `--init-from` then
/// continues with the model's saved plan, and a new run takes the defaults the help shows.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Steps to take: full-batch iterations, or mini-batch steps with --batch-size
    /// [default: the rest of a continued run; else 500 full-batch iterations, or 10 epochs of mini-batches].
    #[arg(long, value_parser = positive, conflicts_with = "epochs")]
    pub iterations: Option<usize>,
    /// Passes over the training set: with --batch-size, N/B steps each (rounded up).
    #[arg(long, value_parser = positive)]
    pub epochs: Option<usize>,
    /// Rows per step: shuffled mini-batches of B rows, in a new seeded order each epoch
    /// [default: the whole training set, full-batch gradient descent].
    #[arg(long, value_parser = positive)]
    pub batch_size: Option<usize>,
    /// Hidden layer widths, input side first: `800` for 784-800-10, `256,128` for
    /// 784-256-128-10 (each 1..=65535, at most 7 layers) [default: 128].
    #[arg(long, value_delimiter = ',', value_parser = hidden_units)]
    pub hidden: Option<Vec<usize>>,
    /// Hidden-layer activation (relu trains best here; sigmoid and elu are the classic seeds)
    /// [default: relu].
    #[arg(long, value_parser = choice(ACTIVATIONS))]
    pub activation: Option<Activation>,
    /// Learning rate [default: 0.8].
    #[arg(long, value_parser = learning_rate)]
    pub lr: Option<f32>,
    /// How the learning rate moves over the run, after any --warmup [default: constant].
    #[arg(long, value_parser = choice(SCHEDULES))]
    pub lr_schedule: Option<LrSchedule>,
    /// Iterations of linear warm-up from lr/W up to --lr, for W warm-up iterations [default: 0].
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Step schedule: iterations between decays [default: a third of the iterations after warm-up].
    #[arg(long, value_parser = positive)]
    pub lr_step_every: Option<usize>,
    /// Step schedule: the factor of each decay (0 < G <= 1) [default: 0.1].
    #[arg(long, value_parser = decay_factor)]
    pub lr_gamma: Option<f32>,
    /// Seed of the weight initialisation, the --val-split rows and every epoch's order
    /// [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Update rule: plain gradient descent, heavy-ball momentum, Nesterov momentum or Adam. The
    /// rule's state is saved with the model and restored by --init-from [default: gd].
    #[arg(long, value_parser = choice(OPTIMIZERS))]
    pub optimizer: Option<Optimizer>,
    /// Momentum and Nesterov: the velocity's decay (0 <= M < 1) [default: 0.9].
    #[arg(long, value_parser = decay_rate)]
    pub momentum: Option<f32>,
    /// Adam: decay of the first moment (0 <= B < 1) [default: 0.9].
    #[arg(long, value_parser = decay_rate)]
    pub beta1: Option<f32>,
    /// Adam: decay of the second moment (0 <= B < 1) [default: 0.999].
    #[arg(long, value_parser = decay_rate)]
    pub beta2: Option<f32>,
    /// Adam: added to the root of the second moment (finite, above 0) [default: 1e-8].
    #[arg(long, value_parser = epsilon)]
    pub eps: Option<f32>,
    /// Decoupled (AdamW-style) weight decay of the weights (w1, w2, ...), not the biases: each
    /// step first does w -= lr * D * w (finite, 0 <= D, lr * D < 1) [default: 0].
    #[arg(long, value_parser = weight_decay)]
    pub weight_decay: Option<f32>,
    /// Train without the bias vectors (b1, b2, ...).
    #[arg(long)]
    pub no_bias: bool,
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Use the first GPU adapter whose name contains this text (see `gpu-mnist devices`).
    #[arg(long)]
    pub adapter: Option<String>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Hold out this fraction of the training set (0 < F < 1, chosen with --seed) as a validation
    /// set, reported separately from the test set.
    #[arg(long, value_parser = fraction)]
    pub val_split: Option<f64>,
    /// Where to save the trained model (safetensors); written atomically at the end
    /// [default: model.safetensors, or the --init-from file, which a continued run updates].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Draw loss and train/test accuracy against the iteration into this PNG at the end.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Append one JSON object per report point to this file as training goes.
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Continue training a saved model: its layers and its run's plan (data, seed, schedule,
    /// optimizer and its state, batching, the steps still planned) unless options say otherwise.
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    /// Train on the first N training images only.
    #[arg(long, value_parser = positive)]
    pub samples: Option<usize>,
    /// Evaluate on the first N test images only.
    #[arg(long, value_parser = positive)]
    pub test_samples: Option<usize>,
    /// Print train loss, train accuracy and test accuracy every K iterations
    /// [default: every epoch of mini-batches; 20 times a full-batch run].
    #[arg(long, value_parser = positive)]
    pub eval_every: Option<usize>,
    /// Stop when the held-out accuracy (validation with --val-split, else test) reaches this
    /// fraction at a report point, and print the time it took (e.g. 0.98).
    #[arg(long, value_parser = fraction)]
    pub target_accuracy: Option<f64>,
    /// GPU runs: recompute every K-th step on the CPU and stop if loss or gradients differ.
    #[arg(long, value_parser = positive)]
    pub verify_every: Option<usize>,
    /// CPU threads (default: all cores).
    #[arg(long, value_parser = positive)]
    pub threads: Option<usize>,
    /// GPU: at most this many training rows per chunk (at least 64; rounded down to a multiple of 64).
    #[arg(long, value_parser = chunk_rows)]
    pub chunk_rows: Option<usize>,
    /// GPU matmul tiling (default: shared on hardware GPUs, register on software adapters).
    #[arg(long, value_parser = choice(TILINGS))]
    pub tiling: Option<Tiling>,
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

impl TrainArgs {
    /// The run as asked for, for `TrainPlan::resolve`.
    pub fn request(&self) -> TrainRequest {
        TrainRequest {
            data: DataRequest {
                samples: self.samples,
                test_samples: self.test_samples,
                val_split: self.val_split,
                ..self.data.request()
            },
            seed: self.seed,
            hidden: self.hidden.clone(),
            activation: self.activation,
            no_bias: self.no_bias,
            iterations: self.iterations,
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            lr_schedule: self.lr_schedule,
            warmup: self.warmup,
            lr_step_every: self.lr_step_every,
            lr_gamma: self.lr_gamma,
            optimizer: self.optimizer,
            momentum: self.momentum,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            eval_every: self.eval_every,
            target_accuracy: self.target_accuracy,
            verify_every: self.verify_every,
            curves: self.plot.is_some() || self.metrics.is_some(),
        }
    }
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(e) => Err(format!("not a whole number: {e}")),
    }
}

/// The largest hidden layer: one workgroup per hidden unit sums the bias gradient, and a
/// dispatch has at most 65535 workgroups per dimension.
pub const MAX_HIDDEN: usize = 65535;

fn hidden_units(s: &str) -> Result<usize, String> {
    match positive(s)? {
        h if h > MAX_HIDDEN => Err(format!("at most {MAX_HIDDEN}")),
        h => Ok(h),
    }
}

fn chunk_rows(s: &str) -> Result<usize, String> {
    match positive(s)? {
        r if r < 64 => Err("at least 64 (chunks start on 256-byte boundaries: multiples of 64 rows)".into()),
        r => Ok(r),
    }
}

fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        Ok(v) => Err(format!("must be between 0 and 1 (exclusive), got {v}")),
        Err(e) => Err(format!("not a number: {e}")),
    }
}

fn decay_factor(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        Ok(v) => Err(format!("must be above 0 and at most 1, got {v}")),
        Err(e) => Err(format!("not a number: {e}")),
    }
}

fn learning_rate(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(v) => Err(format!("must be a finite number above 0, got {v}")),
        Err(e) => Err(format!("not a number: {e}")),
    }
}

fn decay_rate(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("must be at least 0 and below 1, got {v}")),
        Err(e) => Err(format!("not a number: {e}")),
    }
}

fn epsilon(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(v) => Err(format!("must be a finite number above 0, got {v}")),
        Err(e) => Err(format!("not a number: {e}")),
    }
}

fn weight_decay(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(v) => Err(format!("must be a finite number, 0 or above, got {v}")),
        Err(e) => Err(format!("not a number: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use gpu_mnist::optim::OptimizerConfig;
    use gpu_mnist::plan;

    /// The help text of `train`'s option `--name`.
    fn help(name: &str) -> String {
        let cmd = Cli::command();
        let train = cmd.find_subcommand("train").expect("train");
        let arg = train.get_arguments().find(|a| a.get_long() == Some(name)).expect(name);
        arg.get_long_help().or(arg.get_help()).map(|h| h.to_string()).unwrap_or_default()
    }

    #[test]
    fn the_help_shows_the_plans_defaults() {
        let o = OptimizerConfig::default();
        let d = |v: String| format!("[default: {v}");
        for (option, default) in [
            ("lr", d(plan::DEFAULT_LR.to_string())),
            ("lr-gamma", d(plan::DEFAULT_LR_GAMMA.to_string())),
            ("seed", d(plan::DEFAULT_SEED.to_string())),
            ("hidden", d(plan::DEFAULT_HIDDEN.map(|h| h.to_string()).join(","))),
            ("activation", d(plan::DEFAULT_ACTIVATION.name().to_string())),
            ("optimizer", d(o.kind.name().to_string())),
            ("momentum", d(o.momentum.to_string())),
            ("beta1", d(o.beta1.to_string())),
            ("beta2", d(o.beta2.to_string())),
            ("eps", d(format!("{:e}", o.eps))),
            ("weight-decay", d(o.weight_decay.to_string())),
            ("lr-schedule", d(LrSchedule::default().name().to_string())),
            ("warmup", d("0".into())),
            ("iterations", format!("{} full-batch iterations", plan::DEFAULT_ITERATIONS)),
            ("iterations", format!("{} epochs of mini-batches", plan::DEFAULT_EPOCHS)),
            ("eval-every", format!("{} times a full-batch run", plan::REPORTS_PER_RUN)),
        ] {
            let text = help(option).split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(text.contains(&default), "--{option}: {text:?} should show {default:?}");
        }
    }

    #[test]
    fn every_value_of_the_domains_enums_has_a_command_line_name() {
        assert_eq!(ACTIVATIONS.len(), Activation::ALL.len());
        assert!(ACTIVATIONS.iter().all(|&(a, name, _)| a.name() == name));
        assert_eq!(OPTIMIZERS.len(), Optimizer::ALL.len());
        assert!(OPTIMIZERS.iter().all(|&(o, name, _)| o.name() == name));
        assert_eq!(SCHEDULES.len(), LrSchedule::ALL.len());
        assert!(SCHEDULES.iter().all(|&(s, name, _)| s.name() == name));
        assert_eq!(TILINGS.len(), Tiling::ALL.len());
        assert!(TILINGS.iter().all(|&(t, name, _)| t.name() == name));
        assert_eq!(DATASETS.len(), DatasetKind::ALL.len());
        assert_eq!(FORMATS.len(), Format::ALL.len());
        let parsed = Cli::try_parse_from(["gpu-mnist", "train", "--activation", "elu", "--dataset", "fashion"]);
        match parsed.map(|c| c.command) {
            Ok(Command::Train(t)) => {
                assert_eq!((t.activation, t.data.dataset), (Some(Activation::Elu), Some(DatasetKind::Fashion)))
            }
            other => panic!("{other:?}"),
        }
    }
}
