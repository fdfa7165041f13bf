//! # blockfuse patterns
//!
//! The matcher ([`pattern`], [`matcher`]), canonicalization ([`canonicalize`]), the fusion
//! rules ([`rules`]) and the driver ([`optimize`]) that runs them to a fixpoint and reports
//! what fused and why candidates did not.
#![deny(missing_docs)]

pub mod analysis;
pub mod canonicalize;
pub mod driver;
pub mod fold;
pub mod matcher;
pub mod pattern;
pub mod quantize;
pub mod rule;
pub mod rules;

pub use driver::{block_counts, optimize, NearMiss, Report};
pub use matcher::Match;
pub use quantize::{quantize_weights, QuantizeOptions, QuantizeReport};
pub use rule::{Rule, RuleSet};
pub use rules::default_rules;
