//! # Entry points of the blockfuse fuzz targets
//!
//! Each function takes the fuzzer's bytes and panics only on a bug: the cargo-fuzz targets in
//! `fuzz/` (nightly, libFuzzer) call them, and `tests/replay.rs` calls them on every file of
//! the committed corpora `fuzz/corpus/<target>/` as an ordinary stable test.
//!
//! - [`json_ir`]: the bytes as a JSON IR document. A document the reader accepts must
//!   validate, print, write back and read again to the same text, and optimize.
//! - [`onnx_model`]: structure-aware: the bytes choose a seed `ModelProto` (built in
//!   [`onnx_model::seeds`]) and a list of mutations of its nodes, attributes, dims and
//!   initializers, applied through the `prost` types; the first byte may instead ask for the
//!   rest to be decoded as protobuf bytes. An imported graph must validate and optimize, and
//!   evaluate without panicking when it is small.
//! - [`optimize_eval`]: the bytes build a program of primitive ops with instances and
//!   near-instances of the fused patterns ([`program`]); the optimized graph must compute
//!   what the original computes on the fallback evaluator (NaN-aware, within a tolerance).
#![deny(missing_docs)]

pub mod check;
pub mod onnx_model;
pub mod program;

pub use onnx_model::onnx_model;
pub use program::optimize_eval;

/// The JSON IR target: reads `data` as a document; an accepted graph goes through
/// [`check::accepted_graph`].
pub fn json_ir(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(g) = blockfuse_ir::json::from_json(text) {
        check::accepted_graph(&g);
    }
}
