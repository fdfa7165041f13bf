//! RMSNorm: `w ⊙ cast_T(x · rsqrt(mean(x², last axis) + eps))`.

use super::is_channel_vector;
use crate::matcher::Match;
use crate::pattern::*;
use crate::rule::{require, Rule};
use blockfuse_ir::blocks::RmsNorm;
use blockfuse_ir::shape::join_dims;
use blockfuse_ir::{BinaryOp, Builder, Dim, Graph, IrError, NodeId, Op, ReduceOp, UnaryOp, Value};

/// Fuses an RMSNorm with or without weight, with optional f32 upcast / downcast casts.
pub fn rms_norm() -> Rule {
    let x = either(cast(any("x")).named("xf"), any("x"));
    let ms = reduce(
        ReduceOp::Mean,
        expect(unary(UnaryOp::Square, x.clone()), "the mean is not over x² of the normalized value"),
    )
    .named("mean");
    let core = mul(x, unary(UnaryOp::Rsqrt, add(ms, expect(constant("eps"), "eps is not a constant"))));
    let normed = either(cast(core.clone()).named("down"), core);
    let weighted = mul(normed.clone(), guard(any("w"), |g, w| g.value_type(w).rank() >= 1));
    Rule::planned("rms_norm", either(weighted, normed), check, rewrite)
        .diagnose(|o| matches!(o, Op::Reduce { op: ReduceOp::Mean, .. }), unfused_mean_of_squares)
}

/// Why a mean of squares left in the graph is not a norm, unless a near-miss at it or at one
/// of the nodes it feeds (a LayerNorm's, an RMSNorm's) already says why.
fn unfused_mean_of_squares(g: &Graph, id: NodeId, explained: &dyn Fn(NodeId) -> bool) -> Option<String> {
    let n = g.node(id);
    let sq = g.node(n.operands[0].node);
    if !matches!(sq.op, Op::Unary(UnaryOp::Square)) {
        return None;
    }
    let mut chain = vec![id];
    for _ in 0..6 {
        let users = g.users(*chain.last()?);
        if users.iter().any(|&u| explained(u)) {
            return None;
        }
        let [u] = users.as_slice() else { break };
        chain.push(*u);
    }
    let readers =
        |id: NodeId| g.users(id).iter().map(|&u| g.label(u).to_string()).collect::<Vec<_>>().join(", ");
    if super::reduced_trailing_axes(g, Value::first(id)).is_none() {
        return Some(
            "the mean of squares is not over the last axis or a trailing range of axes (keepdims)".into(),
        );
    }
    let Some(&add) = chain.get(1).filter(|&&a| matches!(g.node(a).op, Op::Binary(BinaryOp::Add))) else {
        return Some(format!("the mean of squares is not followed by `+ eps` (read by {})", readers(id)));
    };
    let eps =
        g.node(add).operands.iter().find_map(|v| g.node(v.node).op.as_constant().filter(|t| t.len() == 1));
    let Some(eps) = eps else { return Some("`mean(x²) + eps`: eps is not a scalar constant".into()) };
    if let Err(reason) = super::positive_eps(eps.get_f64(0)) {
        return Some(reason);
    }
    match chain.get(2).map(|&r| &g.node(r).op) {
        Some(Op::Unary(UnaryOp::Rsqrt)) => Some(format!(
            "x · rsqrt(mean(x²) + eps) is not formed on the x whose squares were averaged (rsqrt read by {})",
            readers(chain[2])
        )),
        _ => Some(format!("`mean(x²) + eps` is not followed by rsqrt or 1/sqrt (read by {})", readers(add))),
    }
}

/// What the check established: eps, the first normalized axis and their total size.
struct Facts {
    eps: f32,
    axis: usize,
    d: Dim,
}

/// The size of the axes `axis..` of `v`.
fn trailing_size(g: &Graph, v: Value, axis: usize) -> Dim {
    g.value_type(v).shape[axis..].iter().fold(Dim::Known(1), |acc, d| acc.mul(d))
}

fn check(g: &Graph, m: &Match) -> Result<Facts, String> {
    let x = m.get("xf").unwrap_or(m.value("x"));
    let axis = super::reduced_trailing_axes(g, m.value("mean"))
        .ok_or("the mean is not over the last axis or a trailing range of axes (keepdims)")?;
    let eps = m.scalar(g, "eps").ok_or("eps is not a scalar")?;
    let eps = super::positive_eps(eps)?;
    let shape = &g.value_type(x).shape;
    let d = trailing_size(g, x, axis);
    if let Some(w) = m.get("w") {
        let ws = &g.value_type(w).shape;
        let tail = &shape[axis..];
        let fits = ws.len() >= tail.len()
            && ws[ws.len() - tail.len()..] == *tail
            && ws[..ws.len() - tail.len()].iter().all(|x| *x == Dim::Known(1));
        let vector = axis + 1 == shape.len() && is_channel_vector(g, w, &d);
        require(
            fits || vector,
            format!(
                "weight {} is not a tensor over the normalized axes ({})",
                g.value_type(w),
                join_dims(tail)
            ),
        )?;
    }
    Ok(Facts { eps, axis, d })
}

fn rewrite(b: &mut Builder<'_>, m: &Match, Facts { eps, axis, d }: Facts) -> Result<Value, IrError> {
    let down = m.get("down").map(|v| b.ty(v).dtype);
    let computed = m.get("xf").unwrap_or(m.value("x"));
    // With `cast(x) … cast back to x's type`, the block's own f32 math covers both casts.
    let x = match (m.get("xf"), down) {
        (Some(_), Some(d)) if b.ty(m.value("x")).dtype == d => m.value("x"),
        _ => computed,
    };
    // Several trailing axes: normalize their flattening, then restore the shape.
    let shape = b.ty(x).shape.clone();
    let flat = axis + 1 < shape.len();
    let mut args =
        vec![if flat { b.reshape(x, [&shape[..axis], std::slice::from_ref(&d)].concat())? } else { x }];
    if let Some(w) = m.get("w") {
        let w = b.reshape(w, vec![d])?;
        args.push(b.cast(w, b.ty(x).dtype)?);
    }
    let y = b.block(RmsNorm { eps, weight_offset: 0.0 }, &args)?[0];
    let y = if flat { b.reshape(y, shape.to_vec())? } else { y };
    let out = b.ty(m.root).dtype;
    b.cast(y, out)
}
