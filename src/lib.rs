//! # blockfuse
//!
//! A graph-IR optimizer for transformer inference. Frontends (ONNX, JSON) produce an
//! [`ir::Graph`] of primitive ops; [`patterns::optimize`] fuses composed subgraphs into
//! blocks (RMSNorm, LayerNorm, RoPE, SDPA, SwiGLU, GeGLU, GELU); backends ([`Backend`]:
//! [`fallback`], `mlx`, or any registered in a [`Registry`]) run blocks through registered lowerings or their fallback subgraphs.
//!
//! This facade re-exports the crates and adds what needs all of them: model loading by file
//! type, `optimize --verify`, output comparison and the CLI's reports.
#![deny(missing_docs)]

pub use blockfuse_fallback as fallback;
pub use blockfuse_ir as ir;
#[cfg(feature = "mlx")]
pub use blockfuse_mlx as mlx;
pub use blockfuse_onnx as onnx;
pub use blockfuse_patterns as patterns;
/// Output comparison (`|a − b| ≤ atol + rtol·|b|`, NaN and ∞ agreement, first bad index):
/// the test kit's, which `optimize --verify` and `run --check` use.
pub use blockfuse_testkit::compare;

pub mod cache;
pub mod cli;
pub mod demo;
pub mod report;
pub mod values;
pub mod verify;

pub use blockfuse_ir::backend::{Backend, BackendError, CachePair, Registry, Session};
use blockfuse_ir::{Graph, IrError};
use std::path::Path;

/// The block kinds every report lists, even when absent.
pub const BLOCK_KINDS: &[&str] = blockfuse_ir::blocks::BUILTIN_KINDS;

/// Anything that can go wrong in the facade, with the file or node it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The IR rejected the graph.
    #[error("{path}: {source}")]
    Ir {
        /// The file.
        path: String,
        /// What the IR said.
        source: Box<IrError>,
    },
    /// The ONNX importer rejected the model.
    #[error("{path}: {source}")]
    Onnx {
        /// The file.
        path: String,
        /// What the importer said.
        source: Box<blockfuse_onnx::OnnxError>,
    },
    /// The file type is not one we read.
    #[error("{0}: unknown model type (expected a .json blockfuse IR or an .onnx file)")]
    UnknownType(String),
    /// A backend could not be made, or failed to prepare or run the graph.
    #[error("{0}")]
    Backend(#[from] BackendError),
    /// An IR operation (optimizing, printing, writing) failed.
    #[error("{0}")]
    Graph(#[from] IrError),
    /// Test data (ONNX TensorProto files) could not be read.
    #[error("{path}: {source}")]
    Data {
        /// The directory or file.
        path: String,
        /// What the reader said.
        source: Box<blockfuse_onnx::OnnxError>,
    },
    /// Anything else, already phrased for the user.
    #[error("{0}")]
    Other(String),
}

/// Loads a model: `.json` (blockfuse IR) or `.onnx`, under the default
/// [`Limits`](blockfuse_ir::limits::Limits).
pub fn load_model(path: &Path) -> Result<Graph, Error> {
    load_model_limited(path, &blockfuse_ir::limits::Limits::default())
}

/// [`load_model`] under `limits` (the CLI's `--max-tensor-bytes` and
/// `--max-constant-bytes`): what either loader would allocate beyond them is refused first.
pub fn load_model_limited(path: &Path, limits: &blockfuse_ir::limits::Limits) -> Result<Graph, Error> {
    let shown = path.display().to_string();
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => {
            let text =
                std::fs::read_to_string(path).map_err(|source| Error::Io { path: shown.clone(), source })?;
            blockfuse_ir::json::from_json_limited(&text, &blockfuse_ir::global_registry(), limits)
                .map_err(|source| Error::Ir { path: shown, source: Box::new(source) })
        }
        Some("onnx") => {
            if !path.exists() {
                return Err(Error::Io {
                    path: shown,
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                });
            }
            blockfuse_onnx::import_file_with(path, &(*limits).into())
                .map_err(|source| Error::Onnx { path: shown, source: Box::new(source) })
        }
        _ => Err(Error::UnknownType(shown)),
    }
}

/// The registry of the backends this build links: `fallback`; with the `mlx` feature
/// `mlx` (= `mlx:cpu`) and `mlx:gpu`. A binary with more backends adds them with
/// [`Registry::register`] and hands the registry to [`cli::main`].
pub fn default_registry() -> Registry {
    let mut r = Registry::new();
    r.register("fallback", "the pure-Rust reference evaluator (every block through its fallback)", || {
        Ok(Box::new(blockfuse_fallback::FallbackBackend::new()))
    });
    #[cfg(feature = "mlx")]
    for (name, device) in
        [("mlx", mlx::Device::Cpu), ("mlx:cpu", mlx::Device::Cpu), ("mlx:gpu", mlx::Device::Gpu)]
    {
        r.register(
            name,
            &format!("MLX on the {device}, blocks through mlx::core::fast and mx::compile"),
            move || {
                let b = mlx::MlxBackend::with_default_lowerings(device)
                    .map_err(|e| BackendError::new(name, e))?;
                Ok(Box::new(b))
            },
        );
    }
    r
}

/// Runs a graph once on the backend registered as `name` in [`default_registry`].
pub fn run_backend(
    g: &Graph,
    inputs: &[blockfuse_ir::HostTensor],
    name: &str,
) -> Result<Vec<blockfuse_ir::HostTensor>, Error> {
    Ok(default_registry().create(name)?.run(g, inputs)?)
}
