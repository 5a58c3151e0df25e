//! `gpu-mnist eval`: a saved model on the test split, as tables or JSON.

use anyhow::{Context, Result, bail};
use serde::Serialize;

use std::path::{Path, PathBuf};

use super::cli::{DataArgs, EvalArgs};
use gpu_mnist::checkpoint::{self, Model};
use gpu_mnist::cpu::fast::{self, SparseRows};
use gpu_mnist::data;
use gpu_mnist::data::{DataSource, Dataset, DatasetKind};
use gpu_mnist::metrics::{self, Evaluation};
use gpu_mnist::model::Params;
use gpu_mnist::plots::{self, Mistake};

/// The `count` misclassified images the model was surest about.
fn worst_mistakes<'a>(test: &'a Dataset, probs: &[f32], k: usize, count: usize) -> Vec<Mistake<'a>> {
    let mut wrong: Vec<Mistake> = probs
        .chunks_exact(k)
        .enumerate()
        .filter_map(|(i, row)| {
            let predicted = metrics::argmax(row);
            let truth = test.labels[i] as usize;
            (predicted != truth).then(|| Mistake {
                pixels: test.image(i),
                truth,
                predicted,
                probability: row[predicted],
            })
        })
        .collect();
    wrong.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    wrong.truncate(count);
    wrong
}

#[derive(Serialize)]
struct Report<'a> {
    model: String,
    layers: Vec<usize>,
    activation: &'static str,
    bias: bool,
    data: String,
    dataset: &'static str,
    classes: &'static [&'static str; 10],
    #[serde(flatten)]
    evaluation: &'a Evaluation,
}

/// The labelled images `data` names, checked against the model at `model_path`: the data's test
/// split, or all of it when it is a single labelled set (one CSV file...); and where they are.
pub(super) fn test_set(
    data: &DataArgs,
    kind: DatasetKind,
    params: &Params,
    model_path: &Path,
) -> Result<(Dataset, PathBuf)> {
    let source = DataSource { path: data.data.clone(), test_path: data.test_data.clone(), format: data.format, kind };
    let loaded = data::source::open(&source)?;
    let dir = loaded.path.clone();
    let test = match loaded.test {
        Some(test) => test,
        None if loaded.train.labelled() => loaded.train,
        None => bail!("{} has no labels: use predict for unlabelled images", dir.display()),
    };
    let s = &params.shape;
    if s.d != test.d() {
        bail!(
            "{} takes {} inputs, but the images in {} have {} pixels",
            model_path.display(),
            s.d,
            dir.display(),
            test.d()
        );
    }
    if let Some(&y) = test.labels.iter().find(|&&y| y as usize >= s.k) {
        bail!("the test labels include {y}, but {} has {} classes", model_path.display(), s.k);
    }
    Ok((test, dir))
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let model_path = gpu_mnist::data::source::bundled(&args.model, "data/model.safetensors");
    let Model { params, activation, provenance, run, .. } =
        checkpoint::load_with(&model_path, args.model_options.load())?;
    let kind = args.data.dataset.unwrap_or(DatasetKind::from_name(&provenance.dataset));
    let names = kind.class_names();
    let s = params.shape.clone();
    let (test, dir) = test_set(&args.data, kind, &params, &model_path)?;
    let x = SparseRows::from_pixels(&test.pixels, s.d);
    let probs = fast::probabilities(&params, activation, &x);
    let e = Evaluation::new(&probs, &test.labels, s.k);
    if let Some(dir) = &args.plots {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        plots::confusion_matrix(&dir.join("confusion.png"), &e.confusion, names)?;
        plots::mistakes_grid(&dir.join("mistakes.png"), &worst_mistakes(&test, &probs, s.k, 24), names, 8)?;
        plots::weight_tiles(&dir.join("weights.png"), &params)?;
        if !args.json {
            let [c, m, w] = ["confusion.png", "mistakes.png", "weights.png"].map(|f| dir.join(f).display().to_string());
            println!("plots: {c}, {m} and {w}");
        }
    }
    if args.json {
        let r = Report {
            model: model_path.display().to_string(),
            layers: s.widths(),
            activation: activation.name(),
            bias: s.bias,
            data: dir.display().to_string(),
            dataset: kind.name(),
            classes: names,
            evaluation: &e,
        };
        println!("{}", serde_json::to_string_pretty(&r).context("encoding the evaluation as JSON")?);
        return Ok(());
    }
    let known = |v: Option<String>| v.unwrap_or_else(|| "?".into());
    println!(
        "model: {} ({} ({}){}; {} iterations on {}, lr {}, seed {}, {})",
        model_path.display(),
        s.describe(),
        activation.name(),
        if s.bias { "" } else { ", no bias" },
        provenance.iterations,
        provenance.dataset,
        known(run.lr.map(|v| v.to_string())),
        known(run.seed.map(|v| v.to_string())),
        provenance.backend
    );
    println!("test set: {} images from {}", e.n, dir.display());
    println!("accuracy {:.2}% ({} of {}), loss {:.4}\n", 100.0 * e.accuracy, e.correct, e.n, e.loss);
    let width = names.iter().map(|n| n.len()).max().unwrap_or(1).max(5);
    println!("{:>width$}  precision  recall  images", "class");
    for c in &e.per_class {
        let name = names.get(c.class).copied().unwrap_or("?");
        println!("{name:>width$}  {:>8.2}%  {:>5.2}%  {:>6}", 100.0 * c.precision, 100.0 * c.recall, c.support);
    }
    println!("\nconfusion matrix (rows: true class, columns: predicted)");
    if kind != DatasetKind::Mnist {
        let legend: Vec<String> = names.iter().enumerate().map(|(c, n)| format!("{c} {n}")).collect();
        println!("classes: {}", legend.join(", "));
    }
    print!("      ");
    (0..s.k).for_each(|c| print!("{c:>6}"));
    println!();
    for (t, row) in e.confusion.iter().enumerate() {
        print!("{t:>5} ");
        row.iter().for_each(|v| print!("{v:>6}"));
        println!();
    }
    Ok(())
}
