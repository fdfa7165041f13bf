//! Errors of the IR: every one names the node (id and name) and what is wrong.

use crate::graph::NodeId;
use std::fmt;

/// How a node is named in messages: `%12 "model.layers.0.mlp/Mul_3"` or `%12`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLabel {
    /// The node's id.
    pub id: NodeId,
    /// The node's name, if it has one.
    pub name: Option<String>,
}

impl fmt::Display for NodeLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.id.index())?;
        if let Some(n) = &self.name {
            write!(f, " \"{n}\"")?;
        }
        Ok(())
    }
}

/// An error building, checking, reading or writing a graph.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IrError {
    /// Shape or dtype inference rejected the operands of a node.
    #[error("node {node} ({op}): {reason}")]
    Type {
        /// The node.
        node: NodeLabel,
        /// Its op name.
        op: String,
        /// What is wrong.
        reason: String,
    },
    /// A node has the wrong number of operands for its op.
    #[error("node {node} ({op}): expects {expected} operand(s), got {found}")]
    OperandCount {
        /// The node.
        node: NodeLabel,
        /// Its op name.
        op: String,
        /// What the op takes.
        expected: String,
        /// What it got.
        found: usize,
    },
    /// An operand refers to a node or output that does not exist.
    #[error("node {node}: operand {operand} refers to {target}, which does not exist")]
    DanglingValue {
        /// The node.
        node: NodeLabel,
        /// Operand position.
        operand: usize,
        /// The missing value, as written.
        target: String,
    },
    /// The graph has a cycle through this node.
    #[error("node {node}: the graph has a cycle through this node")]
    Cycle {
        /// A node on the cycle.
        node: NodeLabel,
    },
    /// The type recorded for a node disagrees with what inference computes.
    #[error("node {node} ({op}): output {output} is declared {declared} but inference gives {inferred}")]
    TypeDisagrees {
        /// The node.
        node: NodeLabel,
        /// Its op name.
        op: String,
        /// Output position.
        output: usize,
        /// The recorded type.
        declared: String,
        /// The inferred type.
        inferred: String,
    },
    /// A graph output refers to a value that does not exist.
    #[error("graph output \"{name}\" refers to {target}, which does not exist")]
    DanglingOutput {
        /// The output's name.
        name: String,
        /// The missing value.
        target: String,
    },
    /// A JSON document could not be read.
    #[error("malformed JSON: {0}")]
    Json(String),
    /// The document is not a blockfuse graph, or of another version.
    #[error("not a blockfuse-ir document: {0}")]
    Format(String),
    /// A node of the JSON document is malformed (unknown op, bad attribute, bad data ...).
    #[error("node {node}: {reason}")]
    BadNode {
        /// The node as labelled in the document.
        node: String,
        /// What is wrong.
        reason: String,
    },
    /// A block kind has no deserializer in the registry.
    #[error("node {node}: unknown block kind '{kind}' (registered: {known})")]
    UnknownBlock {
        /// The node as labelled in the document.
        node: String,
        /// The kind found.
        kind: String,
        /// Kinds the registry knows.
        known: String,
    },
    /// A block rejected its operands (the reason names the block and the rule).
    #[error("node {node}: {reason}")]
    Block {
        /// The node.
        node: NodeLabel,
        /// The block's reason, e.g. "rms_norm: weight has 63 elements, the last axis has 64".
        reason: String,
    },
    /// A value of a document would take more bytes than a [`Limits`](crate::limits::Limits)
    /// field allows (checked before allocating).
    #[error("node {node}: {what} takes {bytes} bytes, over the limit {option} = {limit}")]
    ResourceLimit {
        /// The node as labelled in the document.
        node: String,
        /// The value (`constant f32[1000000, 1000000]`, `the constants together`).
        what: String,
        /// Its size in bytes (`u64::MAX` when the size overflows).
        bytes: u64,
        /// The limit.
        limit: u64,
        /// The limit's name (`max_tensor_bytes`, `max_constant_bytes`).
        option: String,
    },
    /// A graph-level mistake not tied to one node.
    #[error("{0}")]
    Graph(String),
}
