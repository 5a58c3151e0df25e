//! `gpu-mnist predict`: digits in image files, read by a saved model. Every file gets a line (or
//! a JSON entry); a file that cannot be read or holds no ink gets its reason, the others still
//! get their predictions, and the exit code says whether any failed.

use anyhow::{Context, Result, bail};
use serde::Serialize;

use gpu_mnist::checkpoint;
use gpu_mnist::cli::PredictArgs;
use gpu_mnist::cpu::fast::{self, SparseRows};
use gpu_mnist::digit::{self, Prepared};

#[derive(Serialize)]
struct Guess {
    digit: usize,
    probability: f32,
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
    let model_path = crate::commands::bundled(&args.model, "data/model.safetensors");
    let model = checkpoint::load(&model_path)?;
    let side = digit::SIDE as usize;
    if model.params.shape.d != side * side {
        bail!("{} takes {} inputs; predict prepares {side}x{side} images", model_path.display(), model.params.shape.d);
    }
    if let Some(dir) = &args.show {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let prepared: Vec<Result<Prepared, String>> = args
        .images
        .iter()
        .map(|p| {
            let img = image::open(p).map_err(|e| format!("cannot read: {e}"))?;
            digit::prepare(&img).map_err(|e| e.to_string())
        })
        .collect();
    let good: Vec<u8> = prepared.iter().flatten().flat_map(|p| p.pixels.iter().copied()).collect();
    let k = model.params.shape.k;
    let probs = fast::probabilities(&model.params, model.activation, &SparseRows::from_pixels(&good, side * side));
    let mut rows = probs.chunks_exact(k);
    let mut entries = Vec::new();
    for (path, p) in args.images.iter().zip(&prepared) {
        let file = path.display().to_string();
        let entry = match p {
            Err(e) => Entry { file, digit: None, top3: Vec::new(), inverted: None, error: Some(e.clone()) },
            Ok(prep) => {
                let row = rows.next().context("one row of probabilities per prepared image")?;
                let mut order: Vec<usize> = (0..k).collect();
                order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
                let top3 = order.iter().take(3).map(|&d| Guess { digit: d, probability: row[d] }).collect();
                if let Some(dir) = &args.show {
                    let stem = path.file_stem().map_or("image".into(), |s| s.to_string_lossy().into_owned());
                    let out = dir.join(format!("{stem}.28x28.png"));
                    prep.to_image().save(&out).with_context(|| format!("writing {}", out.display()))?;
                }
                Entry { file, digit: Some(order[0]), top3, inverted: Some(prep.inverted), error: None }
            }
        };
        if !args.json {
            match (&entry.error, entry.digit) {
                (Some(e), _) => println!("{}: {e}", entry.file),
                (None, Some(d)) => {
                    let top: Vec<String> =
                        entry.top3.iter().map(|g| format!("{} {:.1}%", g.digit, 100.0 * g.probability)).collect();
                    println!("{}: {d}   (top 3: {})", entry.file, top.join(", "));
                }
                (None, None) => {}
            }
        }
        entries.push(entry);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries).context("encoding the predictions as JSON")?);
    }
    let failed = entries.iter().filter(|e| e.error.is_some()).count();
    if failed > 0 {
        bail!("{failed} of {} images could not be read as digits", entries.len());
    }
    Ok(())
}
