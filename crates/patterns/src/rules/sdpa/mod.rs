//! Scaled dot-product attention: every `softmax(scale · q kᵀ + mask) · v`.
//!
//! The pattern is only the end of it (the softmax over the keys, the NaN guards some exporters
//! put after it, the product with v); the check reads the rest and returns the facts the
//! rewrite uses:
//! - [`logits`]: masks (additive of any broadcastable rank, `where(m, s, fill)`,
//!   `where(m, fill, s)`, several combined), the softcap `c·tanh(s/c)`, and the scale wherever
//!   it is (scores, q, k before or after its transpose, `√scale` on both, a division, none);
//! - [`layout`]: k from kᵀ and `repeat_kv` folded into native GQA;
//! - [`masks`]: the block's mask (a provably causal one becomes `MaskKind::Causal`, proven
//!   by `analysis::causal`, with the band aligned to the end when `Tq ≠ Tk`);
//! - [`rows`]: what the graph computes on rows whose keys are all masked, reproduced around
//!   the block where it differs from the block's uniform attention (docs/reliability.md).
//!
//! Intermediate values (scores, probabilities) that other nodes also read stay computed
//! beside the block: the rule is not exclusive.

mod layout;
mod logits;
mod masks;
mod rows;
mod sinks;

use crate::matcher::Match;
use crate::pattern::*;
use crate::rule::{require, Rule};
use blockfuse_ir::blocks::Sdpa;
use blockfuse_ir::{BinaryOp, Builder, Graph, IrError, NodeId, Op, ReduceOp, UnaryOp, Value};
use layout::{key_layout, strip_repeat_kv, KeyLayout};
use masks::MaskPlan;
use rows::Rows;

/// What the check established.
pub(crate) struct Plan {
    q: Value,
    key: KeyLayout,
    v: Value,
    block: Sdpa,
    sinks: Option<sinks::Sinks>,
    mask: MaskPlan,
    rows: Rows,
}

fn matmul(a: Pat, b: Pat) -> Pat {
    node("matmul", |o| matches!(o, Op::MatMul), vec![a, b])
}

fn select(cond: Pat, a: Pat, b: Pat) -> Pat {
    node("where", |o| matches!(o, Op::Where), vec![cond, a, b])
}

/// `softmax(logits)`; [`logits`] reads what it is made of.
fn probs() -> Pat {
    node("softmax", |o| matches!(o, Op::Softmax { .. }), vec![any("logits")]).named("probs")
}

/// `where(isnan(p), nan_fill, p)`: the NaN guard some exporters put after the softmax.
fn nan_guard(p: Pat) -> Pat {
    select(unary(UnaryOp::IsNan, p.clone()), constant("nan_fill"), p)
}

/// `where(reduce_max(mask) == −inf, row_fill, p)`: ONNX Attention's zeroing of the rows whose
/// keys are all masked, over the same additive mask.
fn masked_row_guard(p: Pat) -> Pat {
    let row_max = reduce(ReduceOp::Max, any("guard_mask")).named("row_max");
    let all_masked = commutative(BinaryOp::Equal, row_max, constant("ninf")).named("all_masked");
    select(all_masked, constant("row_fill"), p)
}

/// Fuses attention into one `sdpa` block.
pub fn sdpa() -> Rule {
    let guarded =
        Pat::OneOf(vec![nan_guard(probs()), masked_row_guard(probs()), probs(), sinks::sink_probs()]);
    let mut rule = Rule::planned("sdpa", matmul(opt_cast(guarded), any("v")), check, rewrite)
        .diagnose(|o| matches!(o, Op::Softmax { .. }), unfused_softmax);
    // Scores or probabilities that are also read elsewhere (ONNX Attention's `qk_matmul_output`
    // modes make them graph outputs) stay computed beside the block, which recomputes them.
    rule.exclusive = false;
    rule
}

/// Why a softmax left in the graph is not attention, unless a near-miss at its product with
/// v (through casts and guards) already says why.
fn unfused_softmax(g: &Graph, id: NodeId, explained: &dyn Fn(NodeId) -> bool) -> Option<String> {
    let rank = g.value_type(Value::first(id)).rank() as i64;
    if let Op::Softmax { axis } = g.node(id).op {
        if axis != -1 && axis != rank - 1 {
            return Some(format!("softmax over axis {axis}, not the last (key) axis: not attention"));
        }
    }
    // Follow casts, `where` guards and a sinks slice to the product with v.
    let mut frontier = vec![id];
    let mut product = None;
    for _ in 0..4 {
        let next: Vec<NodeId> = frontier.iter().flat_map(|&n| g.users(n)).collect();
        product = next.iter().copied().find(|&u| {
            matches!(g.node(u).op, Op::MatMul) && frontier.iter().any(|&f| g.node(u).operands[0].node == f)
        });
        if product.is_some() {
            break;
        }
        frontier = next
            .into_iter()
            .filter(|&u| matches!(g.node(u).op, Op::Cast(_) | Op::Where | Op::Slice(_)))
            .collect();
    }
    let Some(product) = product else {
        let readers: Vec<String> = g.users(id).iter().map(|&u| g.label(u).to_string()).collect();
        return Some(format!("the softmax is not multiplied by v (read by {})", readers.join(", ")));
    };
    if explained(product) {
        return None;
    }
    let input = g.node(id).operands[0];
    Some(match logits::logits(g, input) {
        Err(reason) => reason,
        Ok(_) => format!(
            "the ops between the softmax and its product with v ({}) are not a known guard",
            g.label(product)
        ),
    })
}

/// The largest |scale| fused (attention scales are about 1/√d; softcapped ones too).
const MAX_SCALE: f32 = 1e4;

fn check(g: &Graph, m: &Match) -> Result<Plan, String> {
    let probs = g.node(m.value("probs").node);
    let rank = g.value_type(m.value("probs")).rank() as i64;
    require(
        matches!(probs.op, Op::Softmax { axis } if axis == -1 || axis == rank - 1),
        "softmax is not over the key axis",
    )?;
    let l = logits::logits(g, m.value("logits"))?;
    let v = m.value("v");
    let key = key_layout(g, l.kt, v)?;
    let (tq, tk, tv) = (g.value_type(l.q), g.value_type(key.k), g.value_type(v));
    require(tq.rank() == 4 && tv.rank() == 4 && tk.rank() == 4, "q, k and v are not 4-D {B, N, T, D}")?;
    require(tq.dtype == tv.dtype && tk.dtype == tv.dtype, "q, k and v differ in dtype")?;
    // The products may broadcast the batch axis; the block does not (found by fuzz/onnx_model).
    let k_batch = tk.shape.get(key.perm.as_ref().and_then(|p| p.first().copied()).unwrap_or(0));
    require(
        tq.shape.first() == k_batch && tv.shape.first() == k_batch,
        format!("q, k and v differ in batch size (broadcast by the products): q {tq}, k {tk}, v {tv}"),
    )?;
    // And the heads axis (q of 1 head against 2 kv heads, found by fuzz/onnx_model): the block
    // needs v's heads equal to k's, and k's dividing q's (GQA).
    let k_heads = tk.shape.get(key.perm.as_ref().and_then(|p| p.get(1).copied()).unwrap_or(1));
    let (q_heads, v_heads) = (tq.shape.get(1), tv.shape.get(1));
    let heads_fit = q_heads.zip(k_heads).is_some_and(|(q, k)| q.div_exact(k).is_some());
    require(
        heads_fit && v_heads == k_heads,
        format!(
            "the kv heads do not divide the query heads (broadcast by the products): q {tq}, k {tk}, v {tv}"
        ),
    )?;
    let mask = masks::plan(g, &l.masks, g.value_type(l.scores))?;
    let sinks = sinks::sinks(g, m)?;
    // With a finite sink, a fully masked row attends to the sink only (0) in both.
    let rows = if sinks.is_some() { Rows::Block } else { rows::rows(g, m, &l.masks, &mask)? };
    let scale = (l.scale * key.factor) as f32;
    require(scale.is_finite() && scale != 0.0, format!("scale {scale} is not finite and non-zero"))?;
    // The block scales q before the product: a huge scale overflows there (∞ − ∞ = NaN in the
    // product) where the graph, scaling the scores, stays finite (found by fuzz/optimize_eval).
    require(
        scale.abs() <= MAX_SCALE,
        format!("|scale| {scale} is over {MAX_SCALE}: q·scale could overflow where the scores do not"),
    )?;
    let softcap = l.softcap.map(|c| c as f32);
    let block = Sdpa::new(scale, mask.kind).with_softcap(softcap).with_sinks(sinks.is_some());
    Ok(Plan { q: l.q, key, v, block, sinks, mask, rows })
}

fn rewrite(b: &mut Builder<'_>, m: &Match, p: Plan) -> Result<Value, IrError> {
    let g = b.graph();
    let (k, v) = match &p.key.perm {
        None => (strip_repeat_kv(g, p.key.k), strip_repeat_kv(g, p.v)),
        Some(_) => (p.key.k, p.v),
    };
    let k = match &p.key.perm {
        Some(perm) => b.transpose(k, perm)?,
        None => k,
    };
    let mut args = vec![p.q, k, v];
    let operand = rows::build_operand(b, &p.mask)?;
    args.extend(operand.map(|o| o.value));
    match p.sinks {
        Some(sinks::Sinks::Tensor(s)) => {
            let heads = b.ty(p.q).shape[1].clone();
            args.push(b.reshape(s, vec![heads])?);
        }
        Some(sinks::Sinks::Values(t)) => args.push(b.constant(t)),
        None => {}
    }
    let out = b.block(p.block, &args)?[0];
    let out = rows::fix_rows(b, &p.rows, out, operand.as_ref())?;
    let want = b.ty(m.root).dtype;
    b.cast(out, want)
}
