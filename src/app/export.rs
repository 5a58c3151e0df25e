//! `gpu-mnist export`: a model as a standard ONNX file.

use anyhow::{Context, Result};

use super::cli::ExportArgs;
use gpu_mnist::checkpoint::{self, onnx};

pub fn run(args: &ExportArgs) -> Result<()> {
    let model = checkpoint::load_with(&args.model, args.model_options.load())?;
    let bytes = onnx::export(&model);
    let out = &args.onnx;
    std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    let s = &model.params.shape;
    println!(
        "wrote {}: {} {}{}, ONNX opset {}, {} bytes",
        out.display(),
        s.describe(),
        model.activation.name(),
        if s.bias { "" } else { " without bias" },
        onnx::OPSET,
        bytes.len()
    );
    println!("  input  \"{}\" float32 [batch, {}]: {}", onnx::INPUT_NAME, s.d, checkpoint::INPUT);
    println!("  output \"{}\" float32 [batch, {}]: softmax over the classes", onnx::OUTPUT_NAME, s.k);
    Ok(())
}
