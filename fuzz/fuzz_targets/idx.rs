//! IDX files (raw or gzip): both parsers must return Ok or a one-line error, never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let name = Path::new("fuzz.idx");
    if let Err(e) = gpu_mnist::data::parse_idx_images(data, name) {
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "multi-line error: {msg:?}");
    }
    if let Err(e) = gpu_mnist::data::parse_idx_labels(data, name) {
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "multi-line error: {msg:?}");
    }
});
