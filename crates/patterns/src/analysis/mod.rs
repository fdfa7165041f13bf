//! Analyses that are not rules: facts about subgraphs that the rules' checks establish and
//! hand to their rewrites (the causal-band proof, scale extraction, mask classification,
//! angle provenance, the sign facts canonicalization needs), each with its own unit tests.

use blockfuse_ir::{Graph, Value};

pub mod angles;
pub mod causal;
pub mod mask;
pub mod quant;
pub mod scale;
pub mod sign;

/// The value of a constant whose elements are all equal (`None` for other producers and for
/// an empty constant, which has no element to read).
pub(crate) fn uniform_scalar(g: &Graph, v: Value) -> Option<f64> {
    let t = g.node(v.node).op.as_constant()?;
    if t.is_empty() {
        return None;
    }
    let first = t.get_f64(0);
    (0..t.len()).all(|i| t.get_f64(i) == first).then_some(first)
}
