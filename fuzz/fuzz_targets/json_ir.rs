//! cargo-fuzz target `json_ir`: see `blockfuse_fuzzing::json_ir`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| blockfuse_fuzzing::json_ir(data));
