//! Parsers of option values: the domain's enums by their command-line names, and numbers checked
//! as they are parsed.

use std::fmt::Display;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

use gpu_mnist::augment::Augmentation;
use gpu_mnist::backend::BackendChoice;
use gpu_mnist::data::{DatasetKind, Format};
use gpu_mnist::gpu::{DeviceLimits, Tiling};
use gpu_mnist::model::Activation;
use gpu_mnist::optim::Optimizer;
use gpu_mnist::ranges::{self, Range};
use gpu_mnist::schedule::LrSchedule;

/// A parser for one of the domain's enums: each value's command-line name and help.
pub fn choice<T: Copy + Send + Sync + 'static>(
    values: &'static [(T, &'static str, &'static str)],
) -> impl TypedValueParser<Value = T> {
    let names = values.iter().map(|&(_, name, help)| PossibleValue::new(name).help(help));
    PossibleValuesParser::new(names).map(move |s| {
        // The possible values parser has accepted only names of `values`.
        values.iter().find(|(_, name, _)| *name == s).map_or(values[0].0, |v| v.0)
    })
}

pub const BACKENDS: &[(BackendChoice, &str, &str)] = &[
    (BackendChoice::Auto, "auto", "A hardware GPU when wgpu finds one, else the CPU"),
    (BackendChoice::Gpu, "gpu", "WGSL shaders on the best adapter wgpu finds, software ones (llvmpipe) included"),
    (BackendChoice::Cpu, "cpu", "The CPU backend"),
];
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
    (Tiling::Auto, "auto", "Each product as measured fastest on this adapter (tuned once, then cached)"),
    (Tiling::Register, "register", "8 x 8 outputs per invocation in registers, no barriers (software adapters)"),
    (Tiling::Shared, "shared", "64 x 64 tiles staged through workgroup memory (hardware GPUs)"),
];
pub const LIMITS: &[(DeviceLimits, &str, &str)] = &[
    (DeviceLimits::Adapter, "adapter", "Every limit the adapter offers"),
    (DeviceLimits::WebGpu, "webgpu", "Only WebGPU's defaults, as every implementation and browser grants"),
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

pub const AUGMENTATIONS: &[(Augmentation, &str, &str)] = &[
    (Augmentation::None, "none", "The images as they are (turns a continued run's augmentation off)"),
    (Augmentation::Affine, "affine", "A random rotation, scale, shear and shift of every image each epoch"),
    (Augmentation::Elastic, "elastic", "The affine distortion and Simard's elastic one (--alpha, --sigma)"),
];

pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(e) => Err(format!("not a whole number: {e}")),
    }
}

/// The largest hidden layer: one workgroup per hidden unit sums the bias gradient, and a
/// dispatch has at most 65535 workgroups per dimension.
pub const MAX_HIDDEN: usize = 65535;

pub fn hidden_units(s: &str) -> Result<usize, String> {
    match positive(s)? {
        h if h > MAX_HIDDEN => Err(format!("at most {MAX_HIDDEN}")),
        h => Ok(h),
    }
}

pub fn chunk_rows(s: &str) -> Result<usize, String> {
    match positive(s)? {
        r if r < 64 => Err("at least 64 (chunks start on 256-byte boundaries: multiples of 64 rows)".into()),
        r => Ok(r),
    }
}

/// A number parsed from `s`, then checked against `range`.
fn number<T: std::str::FromStr<Err: Display> + Copy + Display>(s: &str, range: &Range<T>) -> Result<T, String> {
    range.check(s.parse::<T>().map_err(|e| format!("not a number: {e}"))?)
}

pub fn fraction(s: &str) -> Result<f64, String> {
    number(s, &ranges::FRACTION)
}

pub fn decay_factor(s: &str) -> Result<f32, String> {
    number(s, &ranges::DECAY_FACTOR)
}

pub fn learning_rate(s: &str) -> Result<f32, String> {
    number(s, &ranges::ABOVE_ZERO)
}

pub fn decay_rate(s: &str) -> Result<f32, String> {
    number(s, &ranges::DECAY_RATE)
}

pub fn epsilon(s: &str) -> Result<f32, String> {
    number(s, &ranges::ABOVE_ZERO)
}

pub fn strength(s: &str) -> Result<f32, String> {
    number(s, &ranges::STRENGTH)
}

pub fn angle(s: &str) -> Result<f32, String> {
    number(s, &ranges::ANGLE)
}

pub fn scale(s: &str) -> Result<f32, String> {
    number(s, &ranges::SCALE)
}

pub fn sigma(s: &str) -> Result<f32, String> {
    number(s, &ranges::SIGMA)
}

pub fn dropout(s: &str) -> Result<f32, String> {
    number(s, &ranges::DROPOUT)
}

pub fn weight_decay(s: &str) -> Result<f32, String> {
    number(s, &ranges::WEIGHT_DECAY)
}

/// `bench --tune-seconds`: at least a hundredth of a second, at most ten minutes.
pub fn tune_seconds(s: &str) -> Result<f64, String> {
    const TUNE_SECONDS: Range<f64> =
        Range { what: "a number of seconds from 0.01 to 600", ok: |v| (0.01..=600.0).contains(v) };
    number(s, &TUNE_SECONDS)
}
