//! `gpu-mnist predict`: digits in image files, or rows of a CSV file (Kaggle's test.csv), read by
//! a saved model. Every image and row gets a line (or a JSON entry); a file that cannot be read
//! or holds no ink gets its reason, the others still get their predictions, and the exit code
//! says whether any failed. `--submission` writes Kaggle's `ImageId,Label` file for CSV rows.

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::cli::PredictArgs;
use gpu_mnist::checkpoint;
use gpu_mnist::cpu::fast::{self, SparseRows};
use gpu_mnist::data::{DatasetKind, csv};
use gpu_mnist::digit;

#[derive(Serialize)]
struct Guess {
    digit: usize,
    class: String,
    probability: f32,
}

/// One input to classify: an image file (prepared as MNIST was) or one CSV row (already 28x28).
struct Input {
    name: String,
    pixels: Result<Vec<u8>, String>,
    inverted: Option<bool>,
    /// 1-based row of a CSV file: Kaggle's ImageId.
    row: Option<usize>,
}

/// The inputs in `path`: every row of a `.csv` file, or the one image of an image file.
fn inputs(path: &std::path::Path, side: usize, out: &mut Vec<Input>) {
    let name = path.display().to_string();
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
        match csv::read_csv(path) {
            Ok(set) if set.d() != side * side => {
                let e = format!("rows hold {}x{} images, the model reads {side}x{side}", set.rows, set.cols);
                out.push(Input { name, pixels: Err(e), inverted: None, row: None });
            }
            Ok(set) => out.extend((0..set.n).map(|i| Input {
                name: format!("{name}:{}", i + 1),
                pixels: Ok(set.image(i).to_vec()),
                inverted: None,
                row: Some(i + 1),
            })),
            // The error already names the file.
            Err(e) => out.push(Input { name: String::new(), pixels: Err(e.to_string()), inverted: None, row: None }),
        }
        return;
    }
    // Decoded under the data loader's limits: a small file may claim a huge image.
    let prepared = std::fs::read(path)
        .map_err(|e| format!("cannot read: {e}"))
        .and_then(|bytes| digit::decode(&bytes).map_err(|e| e.to_string()))
        .and_then(|img| digit::prepare(&img).map_err(|e| e.to_string()));
    let inverted = prepared.as_ref().ok().map(|p| p.inverted);
    out.push(Input { name, pixels: prepared.map(|p| p.pixels), inverted, row: None });
}

#[derive(Serialize)]
struct Entry {
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    digit: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    top3: Vec<Guess>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inverted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn run(args: &PredictArgs) -> Result<()> {
    let model_path = gpu_mnist::data::source::bundled(&args.model, "data/model.safetensors");
    let model = checkpoint::load_with(&model_path, args.model_options.load())?;
    let side = digit::SIDE as usize;
    if model.params.shape.d != side * side {
        bail!("{} takes {} inputs; predict prepares {side}x{side} images", model_path.display(), model.params.shape.d);
    }
    if let Some(dir) = &args.show {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let kind = DatasetKind::from_name(&model.provenance.dataset);
    let mut all = Vec::new();
    args.images.iter().for_each(|p| inputs(p, side, &mut all));
    let good: Vec<u8> = all.iter().filter_map(|i| i.pixels.as_ref().ok()).flatten().copied().collect();
    let k = model.params.shape.k;
    let probs = fast::probabilities(&model.params, model.activation, &SparseRows::from_pixels(&good, side * side));
    let mut rows = probs.chunks_exact(k);
    let mut entries = Vec::new();
    let mut submission = String::from("ImageId,Label\n");
    for input in &all {
        let file = input.name.clone();
        let entry = match &input.pixels {
            Err(e) => Entry { file, digit: None, top3: Vec::new(), inverted: None, error: Some(e.clone()) },
            Ok(pixels) => {
                let row = rows.next().context("one row of probabilities per prepared image")?;
                let mut order: Vec<usize> = (0..k).collect();
                order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
                let guess = |&d: &usize| Guess { digit: d, class: kind.class_name(d), probability: row[d] };
                let top3 = order.iter().take(3).map(guess).collect();
                if let (Some(dir), None) = (&args.show, input.row) {
                    let stem = std::path::Path::new(&input.name).file_stem();
                    let stem = stem.map_or("image".into(), |s| s.to_string_lossy().into_owned());
                    let out = dir.join(format!("{stem}.28x28.png"));
                    let img = image::GrayImage::from_raw(side as u32, side as u32, pixels.clone());
                    img.context("a prepared image is 28x28")?
                        .save(&out)
                        .with_context(|| format!("writing {}", out.display()))?;
                }
                if let Some(id) = input.row {
                    submission += &format!("{id},{}\n", order[0]);
                }
                Entry { file, digit: Some(order[0]), top3, inverted: input.inverted, error: None }
            }
        };
        if !args.json {
            match (&entry.error, entry.digit) {
                (Some(e), _) if entry.file.is_empty() => println!("{e}"),
                (Some(e), _) => println!("{}: {e}", entry.file),
                (None, Some(d)) => {
                    let top: Vec<String> =
                        entry.top3.iter().map(|g| format!("{} {:.1}%", g.class, 100.0 * g.probability)).collect();
                    println!("{}: {}   (top 3: {})", entry.file, kind.class_name(d), top.join(", "));
                }
                (None, None) => {}
            }
        }
        entries.push(entry);
    }
    if let Some(path) = &args.submission {
        std::fs::write(path, &submission).with_context(|| format!("writing {}", path.display()))?;
        if !args.json {
            println!("submission: {} ({} rows)", path.display(), submission.lines().count() - 1);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries).context("encoding the predictions as JSON")?);
    }
    let failed = entries.iter().filter(|e| e.error.is_some()).count();
    if failed > 0 {
        bail!("{failed} of {} inputs could not be read", entries.len());
    }
    Ok(())
}
