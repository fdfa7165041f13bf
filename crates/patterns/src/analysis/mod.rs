//! Analyses that are not rules: facts about subgraphs that the rules' checks establish and
//! hand to their rewrites, each with its own unit tests.

pub mod angles;
