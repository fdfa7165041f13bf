//! cargo-fuzz target `optimize_eval`: see `blockfuse_fuzzing::optimize_eval`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| blockfuse_fuzzing::optimize_eval(data));
