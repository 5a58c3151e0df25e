//! How a run's plan and figures read on the screen.

use std::path::Path;

use gpu_mnist::data::{DatasetKind, Format, Splits};
use gpu_mnist::gpu::Tiles;
use gpu_mnist::optim::{Optimizer, OptimizerConfig};
use gpu_mnist::plan::TrainPlan;

pub fn percent(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// `10`, or `2.5` for a part of an epoch.
pub fn format_epochs(e: f64) -> String {
    if e.fract() == 0.0 { format!("{e:.0}") } else { format!("{e:.2}") }
}

/// The rule and the hyper-parameters it uses, in words.
pub fn describe_optimizer(o: &OptimizerConfig) -> String {
    let rule = match o.kind {
        Optimizer::Gd => "gd".to_string(),
        Optimizer::Momentum | Optimizer::Nesterov => format!("{} {}", o.kind.name(), o.momentum),
        Optimizer::Adam => format!("adam (beta1 {}, beta2 {}, eps {:e})", o.beta1, o.beta2, o.eps),
    };
    if o.weight_decay == 0.0 { rule } else { format!("{rule}, weight decay {}", o.weight_decay) }
}

/// "MNIST: 60000 training and 10000 test images of 28x28 from data/mnist (IDX, read in 0.11 s)".
pub fn describe_data(kind: DatasetKind, data: &Splits, path: &Path, format: Format, seconds: f64) -> String {
    let counts = match (data.validation.n, data.test.n) {
        (0, 0) => format!("{} training", data.train.n),
        (0, t) => format!("{} training and {t} test", data.train.n),
        (v, 0) => format!("{} training and {v} validation", data.train.n),
        (v, t) => format!("{} training, {v} validation and {t} test", data.train.n),
    };
    let no_test = if data.test.n == 0 { "; no test set (pass --test-data to add one)" } else { "" };
    let (rows, cols, path, format) = (data.train.rows, data.train.cols, path.display(), format.name());
    format!(
        "{}: {counts} images of {rows}x{cols} from {path} ({format}, read in {seconds:.2} s){no_test}",
        kind.title()
    )
}

/// "model: 784-128-10 (relu), 101770 parameters; lr 0.8, 500 full-batch iterations, seed 0".
/// `affine (shift 2.5 px, rotate 12°, scale ±0.1, shear 8°)`, with alpha and sigma for elastic.
pub fn describe_augment(a: &gpu_mnist::augment::Augment) -> String {
    let mut s = format!(
        "{} (shift {} px, rotate {}°, scale ±{}, shear {}°",
        a.kind.name(),
        a.shift,
        a.rotate,
        a.scale,
        a.shear
    );
    if a.kind == gpu_mnist::augment::Augmentation::Elastic {
        s += &format!(", alpha {}, sigma {}", a.alpha, a.sigma);
    }
    s + "), a fresh draw of every training image each epoch"
}

pub fn describe_model(plan: &TrainPlan) -> String {
    let (s, b, count) = (&plan.shape, &plan.batching, plan.steps.count);
    let steps = match b.batches {
        1 => format!("{count} full-batch iterations"),
        n => format!(
            "{count} steps of {}-row mini-batches ({} epochs of {n} steps)",
            b.size,
            format_epochs(count as f64 / n as f64)
        ),
    };
    format!(
        "model: {} ({}), {} parameters{}; lr {}{}, {steps}, seed {}",
        s.describe(),
        plan.activation.name(),
        s.parameter_count(),
        if s.bias { "" } else { ", no bias" },
        plan.schedule.base,
        plan.schedule.describe(),
        plan.seed
    )
}

/// ": register 16x128 (3 products), shared 64x64x16 split 4 (1)" for tuned tiles; "" for one
/// tiling.
pub fn describe_tiles(tiles: &Tiles) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for config in tiles.chosen.values() {
        match counts.iter_mut().find(|(name, _)| *name == config.name()) {
            Some((_, n)) => *n += 1,
            None => counts.push((config.name(), 1)),
        }
    }
    counts.sort();
    let parts: Vec<String> = counts.iter().map(|(name, n)| format!("{name} ({n})")).collect();
    if parts.is_empty() { String::new() } else { format!(": {} of the wide products", parts.join(", ")) }
}
