//! # blockfuse IR
//!
//! A directed acyclic tensor graph ([`Graph`]) of primitive ops ([`Op`]) and fused blocks
//! ([`Block`]), with symbolic shapes ([`Dim`]), a [`Builder`] that infers types as nodes are
//! added, validation, a versioned JSON format ([`json`]) and a stable text dump ([`text`]).
#![deny(missing_docs)]

pub mod attrs;
pub mod backend;
pub mod block;
pub mod blocks;
pub mod builder;
pub mod dispatch;
pub mod dtype;
pub mod error;
pub mod graph;
pub mod infer;
pub mod json;
pub mod op;
pub mod shape;
pub mod tensor;
pub mod text;

pub use block::{global_registry, register_block, Block, BlockRegistry};
pub use builder::Builder;
pub use dtype::DType;
pub use error::{IrError, NodeLabel};
pub use graph::{Graph, Node, NodeId, Value};
pub use op::{BinaryOp, Bound, Op, ReduceOp, SliceSpec, UnaryOp};
pub use shape::{Bindings, Dim, Shape, TensorType};
pub use tensor::HostTensor;
