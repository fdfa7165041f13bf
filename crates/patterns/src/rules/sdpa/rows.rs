//! Rows whose keys are all masked. The block attends uniformly there; the composed graph
//! gives NaN when its mask is −∞ on the whole row, 0 behind a NaN guard, and whatever ONNX's
//! own masked-row guard says. The rewrite reproduces the graph's value explicitly.

use super::logits::Term;
use super::masks::{MaskPlan, Operand};
use crate::matcher::Match;
use crate::rule::require;
use blockfuse_ir::{BinaryOp, Builder, DType, Graph, IrError, ReduceOp, UnaryOp, Value};

/// What the graph computes on fully masked rows, where it differs from the block.
#[derive(Debug, Clone)]
pub(super) enum Rows {
    /// The block's own result (no row can be fully masked with −∞, or it attends uniformly).
    Block,
    /// `where(no key kept, fill, sdpa)` (NaN without a guard, 0 behind a NaN guard).
    Fill(f64),
    /// `where(all_masked, 0, sdpa)`: ONNX's guard, reused as it is.
    Guard(Value),
}

/// The mask operand as built, and whether it is a bool keep-mask.
#[derive(Debug, Clone, Copy)]
pub(super) struct Built {
    /// The operand.
    pub value: Value,
    /// True for a bool keep-mask, false for an additive one.
    pub boolean: bool,
}

/// Decides what fully masked rows need, from the guards the pattern matched.
pub(super) fn rows(g: &Graph, m: &Match, terms: &[Term], mask: &MaskPlan) -> Result<Rows, String> {
    if let Some(all_masked) = m.get("all_masked") {
        let ninf = m.scalar(g, "ninf");
        require(ninf == Some(f64::NEG_INFINITY), "the masked-row guard does not compare with −inf")?;
        require(m.scalar(g, "row_fill") == Some(0.0), "the masked-row guard does not fill with 0")?;
        require(
            super::super::reduces_last_axis(g, m.value("row_max")),
            "the masked-row guard's max is not over the key axis (keepdims)",
        )?;
        require(
            terms == [Term::Add(m.value("guard_mask"))],
            "the masked-row guard reads another mask than the one added to the scores",
        )?;
        return Ok(Rows::Guard(all_masked));
    }
    let fill = match m.get("nan_fill") {
        Some(_) => {
            require(m.scalar(g, "nan_fill") == Some(0.0), "NaN guard does not fill with 0")?;
            0.0
        }
        None => f64::NAN,
    };
    Ok(if mask.may_neg_inf { Rows::Fill(fill) } else { Rows::Block })
}

/// Builds the block's mask operand (`None` when the mask kind has none).
pub(super) fn build_operand(b: &mut Builder<'_>, mask: &MaskPlan) -> Result<Option<Built>, IrError> {
    let terms = match &mask.operand {
        Operand::None => return Ok(None),
        Operand::Boolean { cond, negate } => {
            let value = if *negate { b.unary(UnaryOp::Not, *cond)? } else { *cond };
            return Ok(Some(Built { value, boolean: true }));
        }
        Operand::Additive(terms) => terms,
    };
    let mut sum: Option<Value> = None;
    for t in terms {
        let x = match *t {
            Term::Add(x) => x,
            Term::Keep { cond, fill } | Term::Drop { cond, fill } => {
                let (zero, fill) = (b.scalar(mask.dtype, 0.0), b.scalar(mask.dtype, fill));
                let keep = matches!(t, Term::Keep { .. });
                let (a, c) = if keep { (zero, fill) } else { (fill, zero) };
                b.select(cond, a, c)?
            }
        };
        sum = Some(match sum {
            Some(s) => b.add2(s, x)?,
            None => x,
        });
    }
    Ok(sum.map(|value| Built { value, boolean: false }))
}

/// Applies `rows` to the block's output `out`.
pub(super) fn fix_rows(
    b: &mut Builder<'_>,
    rows: &Rows,
    out: Value,
    mask: Option<&Built>,
) -> Result<Value, IrError> {
    let fill = match rows {
        Rows::Block => return Ok(out),
        Rows::Guard(all_masked) => {
            let zero = b.scalar_like(out, 0.0);
            return b.select(*all_masked, zero, out);
        }
        Rows::Fill(fill) => *fill,
    };
    let mask = mask.ok_or_else(|| IrError::Graph("sdpa: fully masked rows without a mask".into()))?;
    let dtype = b.ty(out).dtype;
    let dead = if mask.boolean {
        // No key kept: max over the keys of the keep-mask (as numbers) is 0.
        let kept = b.cast(mask.value, if dtype.is_float() { dtype } else { DType::F32 })?;
        let any = b.reduce(ReduceOp::Max, kept, &[-1], true)?;
        let zero = b.scalar_like(any, 0.0);
        b.binary(BinaryOp::Equal, any, zero)?
    } else {
        // −∞ at every key: the row's max is −∞ (a NaN in the mask keeps the row NaN).
        let row_max = b.reduce(ReduceOp::Max, mask.value, &[-1], true)?;
        let minus_inf = b.scalar_like(row_max, f64::NEG_INFINITY);
        b.binary(BinaryOp::Equal, row_max, minus_inf)?
    };
    let fill = b.scalar(dtype, fill);
    b.select(dead, fill, out)
}
