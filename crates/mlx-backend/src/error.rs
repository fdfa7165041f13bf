//! The error type of the binding and the backend.
//!
//! Binding calls fail with [`MlxError::Mlx`] (MLX's exception message) or
//! [`MlxError::Binding`]. The backend adds context: an error while lowering or running a node
//! is wrapped in [`MlxError::Node`], which names the node (id, frontend name and op), and
//! errors of nodes inside a block's fallback subgraph are wrapped twice, inner node first
//! inside the block's node. Nothing in this crate aborts the process.

use crate::array::Device;
use blockfuse_ir::NodeLabel;

/// Why an MLX call, or a run of a graph on MLX, failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MlxError {
    /// MLX threw a C++ exception; this is its message.
    #[error("MLX: {0}")]
    Mlx(String),
    /// The binding refused the call before or after MLX (e.g. a dtype blockfuse lacks).
    #[error("blockfuse-mlx: {0}")]
    Binding(String),
    /// The device is not available in the linked MLX library (e.g. the GPU with `mlx-cpu`).
    #[error("MLX device {device} is not available in the linked libmlx ({version})")]
    DeviceUnavailable {
        /// The device asked for.
        device: Device,
        /// The MLX version loaded.
        version: String,
    },
    /// A graph input does not fit the graph (count, dtype, rank or dims).
    #[error("input {index} \"{name}\": {reason}")]
    Input {
        /// Its position among the graph inputs (`usize::MAX` when the count is wrong).
        index: usize,
        /// Its name in the graph.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The graph cannot be run (a cycle, an unbound symbol, a fallback that does not build).
    #[error("graph: {0}")]
    Graph(String),
    /// A node's operands or result disagree with the graph at run time (a block rejecting
    /// its concrete operand types, a result of another dtype or shape than the node's type).
    #[error("{0}")]
    Mismatch(String),
    /// A run-time check of the data failed (integer division by zero, an index out of
    /// range); the other outputs of the run are not returned.
    #[error("{0}")]
    Check(String),
    /// A block's lowering failed for a reason of its own ([`LowerError::new`]).
    ///
    /// [`LowerError::new`]: blockfuse_ir::dispatch::LowerError::new
    #[error("{0}")]
    Lowering(String),
    /// Lowering or running a node failed; `source` says why.
    #[error("node {node} ({op}): {source}")]
    Node {
        /// The node, as labelled in its graph (a fallback subgraph's node inside a block).
        node: NodeLabel,
        /// The node's op name (`mul`, `block.rms_norm`).
        op: String,
        /// The underlying error.
        source: Box<MlxError>,
    },
}

impl From<MlxError> for blockfuse_ir::dispatch::LowerError {
    fn from(e: MlxError) -> Self {
        blockfuse_ir::dispatch::LowerError::from_backend(e)
    }
}

impl From<blockfuse_ir::dispatch::LowerError> for MlxError {
    /// MLX's own error back out of a lowering, unchanged; a lowering's own reason becomes
    /// [`MlxError::Lowering`].
    fn from(e: blockfuse_ir::dispatch::LowerError) -> Self {
        e.downcast::<MlxError>().unwrap_or_else(|e| MlxError::Lowering(e.to_string()))
    }
}

impl MlxError {
    /// Wraps the error with the node it happened at.
    pub fn at(self, node: NodeLabel, op: impl Into<String>) -> MlxError {
        MlxError::Node { node, op: op.into(), source: Box::new(self) }
    }

    /// The innermost error, under every [`MlxError::Node`] wrapper.
    pub fn root(&self) -> &MlxError {
        match self {
            MlxError::Node { source, .. } => source.root(),
            e => e,
        }
    }

    /// The labels of the nodes this error passed through, outermost first.
    pub fn node_path(&self) -> Vec<&NodeLabel> {
        let mut path = Vec::new();
        let mut e = self;
        while let MlxError::Node { node, source, .. } = e {
            path.push(node);
            e = source;
        }
        path
    }
}

/// Result of MLX calls.
pub type Result<T, E = MlxError> = std::result::Result<T, E>;
