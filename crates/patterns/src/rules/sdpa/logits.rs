//! The softmax input of an attention, read from the softmax up:
//! `mask₁(mask₂(… softcap(scale · (α·q)(β·kᵀ)) …))`, where each mask is an additive tensor
//! (`x + m`) or a boolean applied through `where(m, x, fill)` / `where(m, fill, x)`, and the
//! softcap is `c · tanh(x / c)`.

use crate::analysis::scale;
use blockfuse_ir::{DType, Graph, Op, UnaryOp, Value};

/// How many mask layers and casts the walk follows.
const MAX_LAYERS: usize = 8;

/// One mask applied to the scores.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Term {
    /// `x + m`.
    Add(Value),
    /// `where(cond, x, fill)`: the score is kept where `cond` holds.
    Keep { cond: Value, fill: f64 },
    /// `where(cond, fill, x)`: the score is dropped where `cond` holds.
    Drop { cond: Value, fill: f64 },
}

/// What the softmax input is made of.
#[derive(Debug, Clone)]
pub(super) struct Logits {
    /// q with its scales peeled off.
    pub q: Value,
    /// kᵀ with the scales after the transpose peeled off.
    pub kt: Value,
    /// The product of every scale found so far (q, kᵀ, scores; k's comes with the layout).
    pub scale: f64,
    /// The softcap `c`, if any.
    pub softcap: Option<f64>,
    /// The masks, innermost first.
    pub masks: Vec<Term>,
    /// The `q · kᵀ` product.
    pub scores: Value,
}

/// The single element of a constant.
fn scalar(g: &Graph, v: Value) -> Option<f64> {
    g.node(v.node).op.as_constant().filter(|t| t.len() == 1).map(|t| t.get_f64(0))
}

/// Reads the softmax input `v`.
pub(super) fn logits(g: &Graph, v: Value) -> Result<Logits, String> {
    masked(g, v, 0)
}

/// A mask layer (or a float cast) over the scores, or the scores themselves.
fn masked(g: &Graph, v: Value, depth: usize) -> Result<Logits, String> {
    let n = g.node(v.node);
    let layer = |inner: Value, term: Option<Term>| -> Result<Logits, String> {
        let mut l = masked(g, inner, depth + 1)?;
        l.masks.extend(term);
        Ok(l)
    };
    match &n.op {
        _ if depth > MAX_LAYERS => Err("too many mask layers before the softmax".into()),
        Op::Cast(d) if d.is_float() && g.value_type(n.operands[0]).dtype.is_float() => {
            layer(n.operands[0], None)
        }
        Op::Binary(blockfuse_ir::BinaryOp::Add) => {
            let (a, b) = (n.operands[0], n.operands[1]);
            layer(a, Some(Term::Add(b))).or_else(|first| layer(b, Some(Term::Add(a))).map_err(|_| first))
        }
        Op::Where if g.value_type(n.operands[0]).dtype == DType::Bool => {
            let (c, a, b) = (n.operands[0], n.operands[1], n.operands[2]);
            match (scalar(g, a), scalar(g, b)) {
                (None, Some(fill)) => layer(a, Some(Term::Keep { cond: c, fill })),
                (Some(fill), None) => layer(b, Some(Term::Drop { cond: c, fill })),
                _ => Err(format!("{} is not a mask applied to the scores", g.label(v.node))),
            }
        }
        _ => softcapped(g, v),
    }
}

/// `c · tanh(f · QKᵀ)` (softcap `c`, scale `f·c`) or `f · QKᵀ`.
fn softcapped(g: &Graph, v: Value) -> Result<Logits, String> {
    let outer = scale::peel(g, v);
    let t = g.node(outer.base.node);
    let (inner, softcap) = match t.op {
        Op::Unary(UnaryOp::Tanh) if !outer.nodes.is_empty() => {
            let c = outer.factor;
            if !(c.is_finite() && c > 0.0) {
                return Err(format!("softcap {c} is not positive"));
            }
            (scale::peel(g, t.operands[0]), Some(c))
        }
        Op::Unary(UnaryOp::Tanh) => return Err("tanh of the scores without a softcap factor".into()),
        _ => (outer.clone(), None),
    };
    let mm = g.node(inner.base.node);
    if !matches!(mm.op, Op::MatMul) {
        return Err(format!("the softmax input is not built on a q·kᵀ product ({} found)", mm.op.name()));
    }
    let (q, kt) = (scale::peel(g, mm.operands[0]), scale::peel(g, mm.operands[1]));
    let scale = inner.factor * softcap.unwrap_or(1.0) * q.factor * kt.factor;
    Ok(Logits { q: q.base, kt: kt.base, scale, softcap, masks: vec![], scores: inner.base })
}
