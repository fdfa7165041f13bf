//! Evaluation errors: every one says which input or node failed, and why.

use blockfuse_ir::NodeLabel;

/// Why a graph could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The number of inputs given differs from the graph's.
    #[error("the graph has {expected} input(s), {found} were given")]
    InputCount {
        /// Inputs of the graph.
        expected: usize,
        /// Inputs given.
        found: usize,
    },
    /// `run_named` was not given a value for a graph input.
    #[error("no value was given for graph input \"{0}\"")]
    MissingInput(String),
    /// An input does not fit the graph's declared type (dtype, rank, a known dim, or a
    /// symbol bound to another size by an earlier input).
    #[error("input \"{name}\": {reason}")]
    Input {
        /// The input's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A node failed: bad operands at run time, integer division by zero, an index out of
    /// range, a block that rejects its concrete operand types, a result of the wrong type ...
    #[error("node {node} ({op}): {reason}")]
    Node {
        /// The node.
        node: NodeLabel,
        /// Its op name.
        op: String,
        /// What went wrong.
        reason: String,
    },
    /// A block node failed inside its lowering or its fallback subgraph; `source` is the
    /// error there (naming a node of the fallback subgraph, when it comes from one).
    #[error("node {node} ({op}): {source}")]
    InBlock {
        /// The block node.
        node: NodeLabel,
        /// Its op name (`block.<kind>`).
        op: String,
        /// The error inside.
        source: Box<EvalError>,
    },
    /// The graph itself is unusable (a cycle, a fallback that does not build ...).
    #[error("{0}")]
    Graph(String),
    /// An error raised by a lowering, in its own words.
    #[error("{0}")]
    Custom(String),
}

impl From<EvalError> for blockfuse_ir::dispatch::LowerError {
    fn from(e: EvalError) -> Self {
        blockfuse_ir::dispatch::LowerError::from_backend(e)
    }
}

impl From<blockfuse_ir::dispatch::LowerError> for EvalError {
    /// The evaluator's own error back out of a lowering, unchanged; a lowering's own reason
    /// becomes [`EvalError::Custom`].
    fn from(e: blockfuse_ir::dispatch::LowerError) -> Self {
        e.downcast::<EvalError>().unwrap_or_else(|e| EvalError::Custom(e.to_string()))
    }
}

impl EvalError {
    /// An error for a lowering to return.
    pub fn custom(reason: impl Into<String>) -> Self {
        EvalError::Custom(reason.into())
    }

    /// The innermost error (through [`EvalError::InBlock`] wrappers).
    pub fn root(&self) -> &EvalError {
        match self {
            EvalError::InBlock { source, .. } => source.root(),
            e => e,
        }
    }
}
