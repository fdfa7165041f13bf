//! Our fusion rules, one file each, and the default rule set in the order they run.

mod gelu;
mod glu;
mod layer_norm;
mod quantized_matmul;
mod residual_rms_norm;
mod rms_norm;
mod rope;
mod rope_plan;
mod sdpa;

pub use gelu::{gelu_erf, gelu_quick, gelu_tanh};
pub use glu::{geglu, swiglu};
pub use layer_norm::layer_norm;
pub use quantized_matmul::{quantized_embedding, quantized_matmul};
pub use residual_rms_norm::residual_rms_norm;
pub use rms_norm::rms_norm;
pub use rope::{
    rope, rope_candidates, rope_halves, rope_interleaved, rope_pair_candidates, rope_pairs, rope_partial,
};
pub use sdpa::sdpa;

use crate::rule::RuleSet;
use blockfuse_ir::{Dim, Graph, Value};

/// Every rule of ours, in the documented order: LayerNorm before RMSNorm (a LayerNorm is
/// an RMSNorm of `x − mean(x)`), then RoPE (rotate_half, rotate_every_two, ONNX halves and pairs,
/// then partial rotation, then near-misses for rotate_half left over), attention, GELU forms,
/// then the gated MLPs that consume GELU blocks, then the residual add + RMSNorm blocks that
/// consume `rms_norm` blocks, then matmuls by dequantized weights and row gathers of
/// dequantized tables.
pub fn default_rules() -> RuleSet {
    RuleSet::new()
        .with(layer_norm())
        .with(rms_norm())
        .with(rope())
        .with(rope_interleaved())
        .with(rope_halves())
        .with(rope_pairs())
        .with(rope_partial())
        .with(rope_candidates())
        .with(rope_pair_candidates())
        .with(sdpa())
        .with(gelu_erf())
        .with(gelu_tanh())
        .with(gelu_quick())
        .with(swiglu())
        .with(geglu())
        .with(residual_rms_norm())
        .with(quantized_matmul())
        .with(quantized_embedding())
}

/// The last dim of `v`'s type.
pub(crate) fn last_dim(g: &Graph, v: Value) -> Option<Dim> {
    g.value_type(v).shape.last().cloned()
}

/// True when `v` has the size of the last axis `d` and no other non-1 axis (a per-channel
/// weight or bias).
pub(crate) fn is_channel_vector(g: &Graph, v: Value, d: &Dim) -> bool {
    let s = &g.value_type(v).shape;
    s.last() == Some(d) && s[..s.len() - 1].iter().all(|x| *x == Dim::Known(1))
}

/// True when the reduction node producing `v` reduces exactly the last axis, keeping it.
pub(crate) fn reduces_last_axis(g: &Graph, v: Value) -> bool {
    let n = g.node(v.node);
    let rank = g.value_type(n.operands[0]).rank() as i64;
    matches!(&n.op, blockfuse_ir::Op::Reduce { axes, keepdims: true, .. }
        if axes.len() == 1 && (axes[0] == -1 || axes[0] == rank - 1))
}

/// A norm's eps as the block stores it: any positive finite number (`eps = 0.1` is a norm
/// too), representable as a positive f32.
pub(crate) fn positive_eps(eps: f64) -> Result<f32, String> {
    let e = eps as f32;
    crate::rule::require(
        eps.is_finite() && eps > 0.0 && e > 0.0 && e.is_finite(),
        format!("eps {eps} is not a positive finite number"),
    )?;
    Ok(e)
}

/// The first axis `a` when the reduction producing `v` is over exactly the trailing axes
/// `a..rank` of its operand, keeping them (`a = rank − 1`: the last axis only).
pub(crate) fn reduced_trailing_axes(g: &Graph, v: Value) -> Option<usize> {
    let n = g.node(v.node);
    let rank = g.value_type(*n.operands.first()?).rank();
    let blockfuse_ir::Op::Reduce { axes, keepdims: true, .. } = &n.op else { return None };
    let mut norm: Vec<usize> =
        axes.iter().map(|&a| blockfuse_ir::shape::normalize_axis(a, rank)).collect::<Option<_>>()?;
    norm.sort_unstable();
    norm.dedup();
    let first = *norm.first()?;
    (norm.len() == axes.len()
        && norm.iter().enumerate().all(|(i, &a)| a == first + i)
        && norm.last() == Some(&(rank - 1)))
    .then_some(first)
}
