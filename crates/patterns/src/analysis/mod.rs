//! Analyses that are not rules: facts about values that the rules' checks establish and
//! hand to their rewrites (the causal-band proof, scale extraction, mask classification).

pub mod causal;
pub mod mask;
pub mod scale;
