//! `train`'s options, and the request they make.

use std::path::PathBuf;

use clap::Args;

use super::data::DataArgs;
use super::values::{
    ACTIVATIONS, AUGMENTATIONS, BACKENDS, LIMITS, OPTIMIZERS, SCHEDULES, TILINGS, angle, choice, chunk_rows,
    decay_factor, decay_rate, dropout, epsilon, fraction, hidden_units, learning_rate, positive, scale, sigma,
    strength, weight_decay,
};
use gpu_mnist::augment::Augmentation;
use gpu_mnist::backend::BackendChoice;
use gpu_mnist::gpu::{DeviceLimits, Tiling};
use gpu_mnist::model::Activation;
use gpu_mnist::optim::Optimizer;
use gpu_mnist::plan::{DataRequest, TrainRequest};
use gpu_mnist::schedule::LrSchedule;

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
    /// Draw a fresh random distortion of every training image each epoch (each step of a
    /// full-batch run), from --seed and the epoch: the same seed gives the same images on every
    /// backend [default: none].
    #[arg(long, value_parser = choice(AUGMENTATIONS))]
    pub augment: Option<Augmentation>,
    /// --augment: the largest shift, in pixels along each axis [default: 2.5].
    #[arg(long, value_parser = strength)]
    pub shift: Option<f32>,
    /// --augment: the largest rotation, in degrees [default: 12].
    #[arg(long, value_parser = angle)]
    pub rotate: Option<f32>,
    /// --augment: the largest change of size, as a fraction (0.1: from 0.9 to 1.1 times) [default: 0.1].
    #[arg(long, value_parser = scale)]
    pub scale: Option<f32>,
    /// --augment: the largest shear, in degrees [default: 8].
    #[arg(long, value_parser = angle)]
    pub shear: Option<f32>,
    /// --augment elastic: the displacement's scale in pixels (Simard's alpha) [default: 34].
    #[arg(long, value_parser = strength)]
    pub alpha: Option<f32>,
    /// --augment elastic: the smoothing Gaussian's standard deviation in pixels [default: 4].
    #[arg(long, value_parser = sigma)]
    pub sigma: Option<f32>,
    /// Train without the bias vectors (b1, b2, ...).
    #[arg(long)]
    pub no_bias: bool,
    /// Where to train [default: auto, or a continued run's].
    #[arg(long, value_parser = choice(BACKENDS))]
    pub backend: Option<BackendChoice>,
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
    /// Draw each first-layer hidden unit's incoming weights as a tile (sorted by how much the
    /// unit feeds the next layer) into this PNG at the end; given a folder (a path ending in /,
    /// or one that exists), one frame per report point: DIR/weights-<step>.png.
    #[arg(long, value_name = "PNG|DIR/")]
    pub plot_weights: Option<PathBuf>,
    /// Follow the run on a local web page at 127.0.0.1:PORT (default 8080; 0: any free port):
    /// curves, weights as they change, a stop button. The page stays up after the run until
    /// Ctrl-C.
    #[arg(long, value_name = "PORT", num_args = 0..=1, default_missing_value = "8080")]
    pub serve: Option<u16>,
    /// Append one JSON object per report point to this file as training goes.
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Continue training a saved model: its layers, and its run's plan (backend, data, seed,
    /// schedule, optimizer and its state, batching, report points, the steps still planned) for
    /// every option not given; the defaults below are a new run's.
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
    /// Inverted dropout: in training, drop each hidden unit of each row with probability P and
    /// scale the kept ones by 1/(1-P) (0 turns a continued run's dropout off) [default: 0].
    #[arg(long, value_parser = dropout)]
    pub dropout: Option<f32>,
    /// Save the model of the report point with the best validation accuracy (needs --val-split),
    /// not the last one; the file records the step the run went on to.
    #[arg(long)]
    pub keep_best: bool,
    /// Stop after K report points in a row without a better validation accuracy (needs
    /// --val-split).
    #[arg(long, value_parser = positive)]
    pub patience: Option<usize>,
    /// GPU runs: recompute every K-th step on the CPU and stop if loss or gradients differ.
    #[arg(long, value_parser = positive)]
    pub verify_every: Option<usize>,
    /// CPU threads (default: all cores).
    #[arg(long, value_parser = positive)]
    pub threads: Option<usize>,
    /// GPU: at most this many training rows per chunk (at least 64; rounded down to a multiple of 64).
    #[arg(long, value_parser = chunk_rows)]
    pub chunk_rows: Option<usize>,
    /// GPU matmul tiling: auto times the candidates on this adapter once and keeps the fastest
    /// for each product (cached in the user's cache folder) [default: auto].
    #[arg(long, value_parser = choice(TILINGS))]
    pub tiling: Option<Tiling>,
    /// GPU: open the device with every limit the adapter offers, or only WebGPU's defaults (what
    /// a browser grants).
    #[arg(long, value_parser = choice(LIMITS), default_value = "adapter")]
    pub limits: DeviceLimits,
}

impl TrainArgs {
    /// The folder `--plot-weights` names, when it names one (a frame per report point).
    pub fn weight_frames(&self) -> Option<PathBuf> {
        let p = self.plot_weights.as_ref()?;
        let folder = p.as_os_str().to_string_lossy().ends_with(std::path::MAIN_SEPARATOR) || p.is_dir();
        folder.then(|| p.clone())
    }

    /// The run as asked for, for `TrainPlan::resolve`.
    pub fn request(&self) -> TrainRequest {
        TrainRequest {
            data: DataRequest {
                samples: self.samples,
                test_samples: self.test_samples,
                val_split: self.val_split,
                ..self.data.request()
            },
            backend: self.backend,
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
            augment: self.augment,
            dropout: self.dropout,
            keep_best: self.keep_best,
            patience: self.patience,
            shift: self.shift,
            rotate: self.rotate,
            scale: self.scale,
            shear: self.shear,
            alpha: self.alpha,
            sigma: self.sigma,
            curves: self.plot.is_some() || self.metrics.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::values::{DATASETS, FORMATS};
    use super::super::{Cli, Command};
    use super::*;
    use clap::{CommandFactory, Parser};
    use gpu_mnist::data::{DatasetKind, Format};
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
