#!/usr/bin/env bash
# Regenerates crates/onnx/src/proto/onnx.rs (committed) from crates/onnx/proto/onnx.proto.
# Needs only cargo: the .proto is compiled by protox (pure Rust), not by a system protoc.
# Run it after replacing onnx.proto; normal builds never run it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
gen="$root/scripts/onnx-proto-gen"
out="$root/crates/onnx/src/proto"
mkdir -p "$out"
cargo run --quiet --release --manifest-path "$gen/Cargo.toml" \
    --target-dir "$root/target/onnx-proto-gen" -- "$root/crates/onnx/proto" "$out"
# Keep the generated file stable and readable, and say where it comes from.
rustfmt --edition 2021 "$out/onnx.rs"
sed -i '1a // Source: crates/onnx/proto/onnx.proto (onnx 1.23.2). Regenerate: scripts/gen-onnx-proto.sh' \
    "$out/onnx.rs"
