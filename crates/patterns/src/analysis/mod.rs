//! Analyses that are not rules: facts about subgraphs that the rules' checks establish and
//! hand to their rewrites (the causal-band proof, scale extraction, mask classification,
//! angle provenance), each with its own unit tests.

pub mod angles;
pub mod causal;
pub mod mask;
pub mod quant;
pub mod scale;
