//! Regenerates `crates/onnx/src/proto/onnx.rs` from `crates/onnx/proto/onnx.proto` with
//! `protox` (a pure-Rust protobuf compiler, so no system `protoc`) and `prost-build`.
//!
//! Usage: `onnx-proto-gen PROTO_DIR OUT_DIR` (see scripts/gen-onnx-proto.sh).

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(proto_dir), Some(out_dir)) = (args.next(), args.next()) else {
        eprintln!("usage: onnx-proto-gen PROTO_DIR OUT_DIR");
        std::process::exit(2);
    };
    let proto_dir = PathBuf::from(proto_dir);
    let out_dir = PathBuf::from(out_dir);
    let fds = protox::compile(["onnx.proto"], [&proto_dir]).unwrap_or_else(|e| {
        eprintln!("protox: {e:?}");
        std::process::exit(1);
    });
    let mut config = prost_build::Config::new();
    config.out_dir(&out_dir);
    // Tensor bytes as `bytes::Bytes`: decoding from a memory-mapped file then borrows them
    // from the map instead of copying (crates/onnx/src/model.rs).
    config.bytes([".onnx.TensorProto.raw_data"]);
    config.compile_fds(fds).unwrap_or_else(|e| {
        eprintln!("prost-build: {e}");
        std::process::exit(1);
    });
    eprintln!("wrote {}", out_dir.join("onnx.rs").display());
}
