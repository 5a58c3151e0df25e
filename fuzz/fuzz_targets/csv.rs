//! CSV files of images: the parser must return Ok or a one-line error, never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = gpu_mnist::data::csv::parse_csv(data, Path::new("fuzz.csv")) {
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "multi-line error: {msg:?}");
    }
});
