//! The block's mask from the masks found on the scores: none, causal (proven, no operand),
//! one boolean keep-mask, or the sum of the additive ones (booleans among several masks
//! become `where(m, 0, fill)` terms), and whether a row can end up masked with −∞ everywhere
//! (the composed graph then gives NaN where the block attends uniformly).

use super::logits::Term;
use crate::analysis::causal::{is_causal, DROP_AT_MOST};
use crate::analysis::mask::{bounds, finfo_max};
use crate::rule::require;
use blockfuse_ir::blocks::MaskKind;
use blockfuse_ir::{DType, Graph, TensorType, Value};

/// The mask operand the rewrite builds.
#[derive(Debug, Clone)]
pub(super) enum Operand {
    /// No operand (no mask, or causal).
    None,
    /// A bool keep-mask (`negate`: the condition says where to drop).
    Boolean { cond: Value, negate: bool },
    /// The sum of these terms.
    Additive(Vec<Term>),
}

/// What the masks amount to.
#[derive(Debug, Clone)]
pub(super) struct MaskPlan {
    /// The block's mask kind.
    pub kind: MaskKind,
    /// Its operand.
    pub operand: Operand,
    /// A row may be masked with −∞ at every key.
    pub may_neg_inf: bool,
    /// The scores' dtype (of additive terms built from booleans).
    pub dtype: DType,
}

/// `where(m, 0, fill)` (keep where m) or `where(m, fill, 0)` read only by the scores' add: the
/// boolean spelling of an additive mask.
fn as_boolean(g: &Graph, x: Value) -> Option<Term> {
    let n = g.node(x.node);
    let c =
        |i: usize| g.node(n.operands[i].node).op.as_constant().filter(|t| t.len() == 1).map(|t| t.get_f64(0));
    if !matches!(n.op, blockfuse_ir::Op::Where) || g.use_count(x) != 1 {
        return None;
    }
    match (c(1), c(2)) {
        (Some(0.0), Some(fill)) => Some(Term::Keep { cond: n.operands[0], fill }),
        (Some(fill), Some(0.0)) => Some(Term::Drop { cond: n.operands[0], fill }),
        _ => None,
    }
}

/// The lower bound of a term (`None`: unbounded, e.g. a graph input or −∞).
fn term_floor(g: &Graph, t: &Term) -> Option<f64> {
    match t {
        Term::Add(x) => bounds(g, *x).map(|b| b.lo),
        Term::Keep { fill, .. } | Term::Drop { fill, .. } => fill.is_finite().then_some(fill.min(0.0)),
    }
}

/// Classifies the masks of scores of type `scores`.
pub(super) fn plan(g: &Graph, terms: &[Term], scores: &TensorType) -> Result<MaskPlan, String> {
    let r = scores.rank();
    let (tq, tk) = (&scores.shape[r - 2], &scores.shape[r - 1]);
    let single = match terms {
        [Term::Add(x)] => Some(as_boolean(g, *x).unwrap_or(Term::Add(*x))),
        [t] => Some(t.clone()),
        _ => None,
    };
    for t in terms.iter().chain(single.iter()) {
        match t {
            Term::Add(x) => require(
                g.value_type(*x).dtype == scores.dtype,
                "additive mask dtype differs from the scores",
            )?,
            Term::Keep { fill, .. } | Term::Drop { fill, .. } => require(
                *fill <= DROP_AT_MOST,
                format!("boolean mask drops with {fill}, not a very negative value (≤ −1e4)"),
            )?,
        }
    }
    let causal = match (terms, &single) {
        ([Term::Add(x)], _) => is_causal(g, *x, MaskKind::Additive, tq, tk),
        (_, Some(Term::Keep { cond, .. })) => is_causal(g, *cond, MaskKind::Boolean, tq, tk),
        _ => false,
    };
    let floor: Option<f64> = terms.iter().map(|t| term_floor(g, t)).sum();
    let may_neg_inf = floor.is_none_or(|f| f < -finfo_max(scores.dtype).unwrap_or(f64::MAX));
    let (kind, operand) = match single {
        None if terms.is_empty() => (MaskKind::None, Operand::None),
        _ if causal => (MaskKind::Causal, Operand::None),
        Some(Term::Keep { cond, .. }) => (MaskKind::Boolean, Operand::Boolean { cond, negate: false }),
        Some(Term::Drop { cond, .. }) => (MaskKind::Boolean, Operand::Boolean { cond, negate: true }),
        _ => (MaskKind::Additive, Operand::Additive(terms.to_vec())),
    };
    Ok(MaskPlan { kind, operand, may_neg_inf: may_neg_inf && !causal, dtype: scores.dtype })
}
