//! cargo-fuzz target `onnx_model`: see `blockfuse_fuzzing::onnx_model`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| blockfuse_fuzzing::onnx_model(data));
