//! Attention sinks (gpt-oss): one learned logit per head concatenated to the scores before the
//! softmax and sliced off after it, `slice(softmax(concat([s, sink])), keys)`, optionally with
//! the row max subtracted first (a no-op for the softmax). The block takes the per-head
//! values as its `sinks {Nq}` operand.

use crate::matcher::Match;
use crate::pattern::*;
use crate::rule::require;
use blockfuse_ir::{BinaryOp, Bound, Dim, Graph, Op, ReduceOp, Value};

/// `slice(softmax(concat(logits, sink) [− its row max]))`.
pub(super) fn sink_probs() -> Pat {
    let joined =
        node("concat", |o| matches!(o, Op::Concat { .. }), vec![any("logits"), any("sink")]).named("joined");
    let joined_rev =
        node("concat", |o| matches!(o, Op::Concat { .. }), vec![any("sink"), any("logits")]).named("joined");
    let joined = Pat::OneOf(vec![joined, joined_rev]);
    let centered =
        binary(BinaryOp::Sub, joined.clone(), reduce(ReduceOp::Max, any("joined_max_of")).named("sink_max"));
    let probs =
        node("softmax", |o| matches!(o, Op::Softmax { .. }), vec![either(centered, joined)]).named("probs");
    node("slice", |o| matches!(o, Op::Slice(_)), vec![probs]).named("sink_slice")
}

/// Where the per-head sink values come from.
#[derive(Debug, Clone)]
pub(super) enum Sinks {
    /// A tensor with one value per head (reshaped to `{N}` by the rewrite).
    Tensor(Value),
    /// A folded constant, read per head.
    Values(blockfuse_ir::HostTensor),
}

/// The per-head sink values `{N}` behind the concatenated operand `{B, N, Tq, 1}`: an expand
/// of a `{1, N, 1, 1}` (or `{N, 1, 1}`) reshape of them, or a constant equal along all axes
/// but the heads.
fn sink_source(g: &Graph, sink: Value, heads: &Dim) -> Result<Sinks, String> {
    let mut v = sink;
    while let Op::Expand { .. } = g.node(v.node).op {
        v = g.node(v.node).operands[0];
    }
    if let (Some(t), Some(n)) = (g.node(v.node).op.as_constant(), heads.known()) {
        let dims = t.dims();
        let r = dims.len();
        require(
            r == 4 && dims[1] == n && dims[0] == 1 && dims[3] == 1,
            "the concatenated sink is not one value per head",
        )?;
        let per = dims[2];
        let vals: Vec<f64> = (0..n).map(|h| t.get_f64(h * per)).collect();
        require(
            (0..n * per)
                .all(|i| t.get_f64(i) == vals[i / per] || (t.get_f64(i).is_nan() && vals[i / per].is_nan())),
            "the concatenated sink differs between queries of a head",
        )?;
        return Ok(Sinks::Values(blockfuse_ir::HostTensor::from_f64(t.dtype(), vec![n], &vals)));
    }
    let per_head = |v: Value| {
        let s = &g.value_type(v).shape;
        let non_one: Vec<&Dim> = s.iter().filter(|d| **d != Dim::Known(1)).collect();
        non_one == [heads] && (s.len() < 3 || s[s.len() - 3] == *heads || s.len() == 1)
    };
    require(per_head(v), "the concatenated sink is not one value per head")?;
    while matches!(g.node(v.node).op, Op::Reshape { .. } | Op::Cast(_))
        && per_head(g.node(v.node).operands[0])
    {
        v = g.node(v.node).operands[0];
    }
    Ok(Sinks::Tensor(v))
}

/// The sinks source when the match is the sinks form: the concat is over the keys, the
/// slice keeps exactly the scores' keys, and the sink is one value per head.
pub(super) fn sinks(g: &Graph, m: &Match) -> Result<Option<Sinks>, String> {
    let (Some(sink), Some(joined)) = (m.get("sink"), m.get("joined")) else { return Ok(None) };
    if let Some(max_of) = m.get("joined_max_of") {
        require(max_of == joined, "the max subtracted before the softmax is not the row max of its input")?;
        require(
            super::super::reduces_last_axis(g, m.value("sink_max")),
            "the subtracted max is not over the keys",
        )?;
    }
    let rank = g.value_type(joined).rank() as i64;
    let last = |a: i64| a == -1 || a == rank - 1;
    require(
        matches!(g.node(joined.node).op, Op::Concat { axis } if last(axis)),
        "the sink is not concatenated over the keys",
    )?;
    let first = g.node(joined.node).operands[0] == m.value("logits");
    let Op::Slice(spec) = &g.node(m.value("sink_slice").node).op else {
        return Err("no slice after the softmax".into());
    };
    let start = if first { 0 } else { 1 };
    let keys = g.value_type(m.value("logits")).shape.last().cloned();
    require(
        spec.axes.len() == 1
            && last(spec.axes[0])
            && spec.steps == [1]
            && spec.starts[0] == Bound::Const(start)
            && g.value_type(m.value("sink_slice")).shape.last().cloned() == keys,
        "the slice after the softmax does not keep exactly the scores' keys",
    )?;
    let heads = g.value_type(m.value("logits")).shape.get(1).cloned().ok_or("scores are not 4-D")?;
    sink_source(g, sink, &heads).map(Some)
}
