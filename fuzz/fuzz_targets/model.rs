//! Model files (safetensors, PyTorch state dicts in safetensors, ONNX): the parser must return Ok
//! or a one-line error, never panic. Each input is read twice, without and with an activation
//! given, so that a state dict reaches the PyTorch reader.
#![no_main]

use std::path::Path;

use gpu_mnist::checkpoint::{LoadOptions, parse_with};
use gpu_mnist::model::Activation;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for activation in [None, Some(Activation::Relu)] {
        if let Err(e) = parse_with(data, Path::new("fuzz.safetensors"), LoadOptions { activation }) {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "multi-line error: {msg:?}");
        }
    }
});
