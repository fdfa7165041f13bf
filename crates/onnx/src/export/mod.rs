//! Writing an IR graph back as ONNX (opset 23), so any ONNX runtime can run what blockfuse
//! optimized.
//!
//! - Primitive ops become the ONNX ops that compute the same thing (`rsqrt` becomes
//!   `Sqrt` + `Reciprocal`, a float `mod` the floored remainder `a − b·⌊a/b⌋`, ...).
//! - Blocks become a standard opset-23 op when one computes exactly the same thing with the
//!   block's attributes ([`standard`]: `RMSNormalization`, `LayerNormalization`); every
//!   other block becomes a call of a model-local function (domain [`FUNCTION_DOMAIN`])
//!   whose body is the block's fallback, one function per block kind, attributes and
//!   operand types.
//! - Symbolic dims (`batch`, `seq`, `2*seq`) are computed at run time with `Shape` of a
//!   value that has the symbol as one of its axes (graph inputs first).
//! - Constants become initializers that keep the constant node's name; graph inputs and
//!   outputs keep theirs.
//!
//! ```no_run
//! let g = blockfuse_onnx::import_file(std::path::Path::new("model.onnx"))?;
//! // ... optimize g ...
//! blockfuse_onnx::export::write_model(&g, std::path::Path::new("out.onnx"))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod emit;
pub mod standard;

use crate::proto::{ModelProto, OperatorSetIdProto};
use blockfuse_ir::{Graph, IrError, NodeLabel};
use std::path::Path;

/// The opset version of the default domain that exported models import.
pub const OPSET: i64 = 23;
/// The ONNX IR version of exported models (the one that introduced opset 23).
pub const IR_VERSION: i64 = 11;
/// The domain of the model-local functions that hold block fallbacks.
pub const FUNCTION_DOMAIN: &str = "blockfuse";

/// Why a graph could not be written as ONNX.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A node has no ONNX form here.
    #[error("node {node}: cannot export to ONNX: {reason}")]
    Unsupported {
        /// The node.
        node: NodeLabel,
        /// Why.
        reason: String,
    },
    /// The graph itself is inconsistent (a cycle, a dangling value) or a block's fallback
    /// could not be built.
    #[error(transparent)]
    Ir(#[from] IrError),
    /// Graph-level naming conflict (an output named like an input, two inputs of one name).
    #[error("cannot export to ONNX: {0}")]
    Names(String),
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The graph as an ONNX model (opset [`OPSET`], block fallbacks as model-local functions).
pub fn export_model(g: &Graph) -> Result<ModelProto, ExportError> {
    let mut lib = emit::Library::default();
    let graph = emit::emit_main(g, &mut lib)?;
    let mut opset_import = vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }];
    if !lib.functions.is_empty() {
        opset_import.push(OperatorSetIdProto { domain: Some(FUNCTION_DOMAIN.into()), version: Some(1) });
    }
    Ok(ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import,
        producer_name: Some("blockfuse".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(graph),
        functions: lib.functions,
        ..ModelProto::default()
    })
}

/// Exports the graph ([`export_model`]) and writes it to `path` as a binary `.onnx` file.
pub fn write_model(g: &Graph, path: &Path) -> Result<(), ExportError> {
    let model = export_model(g)?;
    std::fs::write(path, crate::model::encode_model(&model))
        .map_err(|source| ExportError::Io { path: path.display().to_string(), source })
}
