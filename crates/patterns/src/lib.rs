//! # blockfuse patterns
//!
//! The matcher ([`pattern`], [`matcher`]), canonicalization ([`canonicalize`]), the fusion
//! rules ([`rules`]) and the driver ([`optimize`]) that runs them to a fixpoint and reports
//! what fused and why candidates did not.
//!
//! Optimizing a composed RMSNorm into one block:
//!
//! ```
//! use blockfuse_ir::{Builder, DType, Dim, Graph, HostTensor, TensorType, UnaryOp};
//! use blockfuse_patterns::{default_rules, optimize};
//!
//! let mut g = Graph::new();
//! let mut b = Builder::new(&mut g);
//! let x = b.input("x", TensorType::new(DType::F32, [Dim::sym("seq"), 4.into()]));
//! let w = b.constant(HostTensor::from_f32(vec![4], &[1.0, 2.0, 3.0, 4.0]));
//! let ms = { let sq = b.unary(UnaryOp::Square, x)?; b.mean_last(sq)? };
//! let eps = b.scalar(DType::F32, 1e-6);
//! let r = { let s = b.add2(ms, eps)?; b.unary(UnaryOp::Rsqrt, s)? };
//! let y = { let n = b.mul(x, r)?; b.mul(w, n)? };
//! g.add_output("y", y);
//!
//! let report = optimize(&mut g, &default_rules())?;
//! assert_eq!(report.blocks["rms_norm"], 1);
//! assert!(report.near_misses.is_empty());
//! # Ok::<(), blockfuse_ir::IrError>(())
//! ```
//!
//! An out-of-tree rule is a pattern, a check and a rewrite; here `neg(neg(x)) → x`:
//!
//! ```
//! use blockfuse_ir::{DType, Graph, TensorType, UnaryOp};
//! use blockfuse_patterns::pattern::{any, unary};
//! use blockfuse_patterns::{optimize, Rule, RuleSet};
//!
//! let rule = Rule::new("double_neg", unary(UnaryOp::Neg, unary(UnaryOp::Neg, any("x"))))
//!     .check(|g, m| match g.value_type(m.value("x")).dtype.is_float() {
//!         true => Ok(()),
//!         false => Err("x is not a float".into()), // reported as a near-miss
//!     })
//!     .rewrite(|_, m| Ok(m.value("x")));
//! let rules = RuleSet::default().with(rule);
//!
//! let mut g = Graph::new();
//! let x = g.add_input("x", TensorType::known(DType::F32, &[2]));
//! let n1 = g.add_node(blockfuse_ir::Op::Unary(UnaryOp::Neg), &[x], None)?;
//! let n2 = g.add_node(blockfuse_ir::Op::Unary(UnaryOp::Neg), &[blockfuse_ir::Value::first(n1)], None)?;
//! g.add_output("y", blockfuse_ir::Value::first(n2));
//! let report = optimize(&mut g, &rules)?;
//! assert_eq!(report.rules["double_neg"], 1);
//! assert_eq!(g.outputs()[0].1, x);
//! # Ok::<(), blockfuse_ir::IrError>(())
//! ```
#![deny(missing_docs)]

pub mod analysis;
pub mod canonicalize;
pub mod driver;
pub mod fold;
pub mod matcher;
pub mod pattern;
pub mod projections;
pub mod quantize;
pub mod rule;
pub mod rules;

pub use driver::{block_counts, optimize, optimize_with, NearMiss, OptimizeOptions, Report};
pub use matcher::Match;
pub use projections::{fuse_projections, ProjectionOptions, ProjectionReport};
pub use quantize::{quantize_weights, QuantizeOptions, QuantizeReport};
pub use rule::{Rule, RuleSet};
pub use rules::default_rules;
