//! # blockfuse IR
//!
//! A directed acyclic tensor graph ([`Graph`]) of primitive ops ([`Op`]) and fused blocks
//! ([`Block`]), with symbolic shapes ([`Dim`]), a [`Builder`] that infers types as nodes are
//! added, validation, a versioned JSON format ([`json`]) and a stable text dump ([`text`]).
//!
//! Building a graph (`y = x · rsqrt(mean(x²) + ε)` over the last axis), checking it, and
//! writing it as JSON and text:
//!
//! ```
//! use blockfuse_ir::{json, text, Builder, DType, Dim, Graph, TensorType, UnaryOp};
//!
//! let mut g = Graph::new();
//! let mut b = Builder::new(&mut g);
//! let x = b.input("x", TensorType::new(DType::F32, [Dim::sym("seq"), 64.into()]));
//! let sq = b.unary(UnaryOp::Square, x)?;
//! let ms = b.mean_last(sq)?;
//! let eps = b.scalar(DType::F32, 1e-6);
//! let s = b.add2(ms, eps)?;
//! let r = b.unary(UnaryOp::Rsqrt, s)?;
//! let y = b.mul(x, r)?;
//! g.add_output("y", y);
//! g.validate()?;
//! assert_eq!(g.value_type(y).to_string(), "f32[seq, 64]");
//!
//! let doc = json::to_json(&g)?;
//! let back = json::from_json(&doc)?;
//! assert_eq!(text::dump(&back)?, text::dump(&g)?);
//! # Ok::<(), blockfuse_ir::IrError>(())
//! ```
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
pub mod limits;
pub mod op;
pub mod shape;
pub mod tensor;
pub mod text;

pub use block::{Block, BlockRegistry};
pub use blocks::{global_registry, register_block};
pub use builder::Builder;
pub use dtype::DType;
pub use error::{IrError, NodeLabel};
pub use graph::{Graph, Node, NodeId, Value};
pub use op::{BinaryOp, Bound, Op, ReduceOp, SliceSpec, UnaryOp};
pub use shape::{Bindings, Dim, DimError, Shape, TensorType};
pub use tensor::HostTensor;
