//! Scaled dot-product attention: `softmax(scale · q kᵀ + mask) · v`, with the scale on the
//! scores or split between q and kᵀ, additive or boolean masks, f32 softmax casts, the
//! NaN guard some exporters put after the softmax, and repeat_kv folded into native GQA.
//! A mask that is provably causal becomes `MaskKind::Causal` with no operand (`causal.rs`).

use super::causal;
use crate::matcher::Match;
use crate::pattern::*;
use crate::rule::{require, Rule};
use blockfuse_ir::blocks::{MaskKind, Sdpa};
use blockfuse_ir::{BinaryOp, Builder, Dim, Graph, IrError, Op, ReduceOp, UnaryOp, Value};

fn scaled(x: Pat, scale: &'static str) -> Pat {
    either(mul(x.clone(), constant(scale)), x)
}

/// The perm of kᵀ as a transpose node, if it is one.
fn transpose_perm(g: &Graph, v: Value) -> Option<(Vec<usize>, Value)> {
    match &g.node(v.node).op {
        Op::Transpose { perm } => Some((perm.clone(), g.node(v.node).operands[0])),
        _ => None,
    }
}

/// How to get k `{B, N, Tk, D}` from kᵀ: its source and the permutation to apply to it
/// (identity when kᵀ is a plain last-two-axes transpose). Other permutations are accepted
/// only when v is laid out by the very same permutation (heads split the same way).
fn key_layout(g: &Graph, kt: Value, v: Value) -> Result<(Value, Vec<usize>), String> {
    let (perm, src) = transpose_perm(g, kt).ok_or("the key operand is not a transpose of k")?;
    let r = perm.len();
    let mut k_perm = perm.clone();
    k_perm.swap(r - 2, r - 1);
    let identity = k_perm.iter().enumerate().all(|(i, &p)| i == p);
    let same_as_v = transpose_perm(g, v).is_some_and(|(pv, _)| pv == k_perm);
    require(
        identity || same_as_v,
        format!("key permutation {perm:?} is not a transpose of the last two axes"),
    )?;
    Ok((src, k_perm))
}

/// `reshape(expand(reshape(k, [B, N, 1, T, D]), [B, N, r, T, D]), [B, N·r, T, D])` → k.
fn strip_repeat_kv(g: &Graph, v: Value) -> Value {
    let step = |v: Value, want: fn(&Op) -> bool| {
        let n = g.node(v.node);
        want(&n.op).then(|| n.operands[0])
    };
    let Some(e) = step(v, |o| matches!(o, Op::Reshape { .. })) else {
        return v;
    };
    let Some(u) = step(e, |o| matches!(o, Op::Expand { .. })) else {
        return v;
    };
    let Some(k) = step(u, |o| matches!(o, Op::Reshape { .. })) else {
        return v;
    };
    let (ks, us, es, vs) =
        (&g.value_type(k).shape, &g.value_type(u).shape, &g.value_type(e).shape, &g.value_type(v).shape);
    let ok = ks.len() == 4
        && us.len() == 5
        && us[..2] == ks[..2]
        && us[2] == Dim::Known(1)
        && us[3..] == ks[2..]
        && es[..2] == ks[..2]
        && es[3..] == ks[2..]
        && vs[0] == ks[0]
        && vs[1] == ks[1].mul(&es[2])
        && vs[2..] == ks[2..];
    if ok {
        k
    } else {
        v
    }
}

/// The block's mask and its operand: a boolean `where` condition, an additive mask, or
/// none — and no operand at all when either is provably the causal mask (`causal.rs`).
fn mask_kind(g: &Graph, m: &Match) -> (MaskKind, Option<Value>) {
    let (kind, operand) = match (m.get("bool_mask"), m.get("mask")) {
        (Some(b), _) => (MaskKind::Boolean, b),
        (None, Some(a)) => (MaskKind::Additive, a),
        _ => return (MaskKind::None, None),
    };
    let scores = &g.value_type(m.value("scores")).shape;
    let r = scores.len();
    if r >= 2 && causal::is_causal(g, operand, kind, &scores[r - 2], &scores[r - 1]) {
        (MaskKind::Causal, None)
    } else {
        (kind, Some(operand))
    }
}

/// `where(any key kept, out, 0)`: what a −inf mask followed by a NaN guard gives on rows
/// whose keys are all masked (the block alone attends uniformly there).
fn zero_fully_masked_rows(b: &mut Builder<'_>, out: Value, keep: Value) -> Result<Value, IrError> {
    let dtype = b.ty(out).dtype;
    let kept = b.cast(keep, dtype)?;
    let any = b.reduce(ReduceOp::Max, kept, &[-1], true)?;
    let zero = b.scalar(dtype, 0.0);
    let any = b.binary(BinaryOp::Greater, any, zero)?;
    b.select(any, out, zero)
}

fn matmul(a: Pat, b: Pat) -> Pat {
    node("matmul", |o| matches!(o, Op::MatMul), vec![a, b])
}

fn select(cond: Pat, a: Pat, b: Pat) -> Pat {
    node("where", |o| matches!(o, Op::Where), vec![cond, a, b])
}

/// `scale · (q_scale · q) (k_scale · kᵀ)`, each scale optional.
fn scores() -> Pat {
    scaled(matmul(scaled(any("q"), "q_scale"), scaled(any("kt"), "k_scale")).named("scores"), "scale")
}

/// `where(bool_mask, 0, drop)`, read only here. A boolean mask shared by several layers stays
/// as it is and enters as an additive mask, and so does `where(drop, min, 0)` (it keeps where
/// the condition is false).
fn bool_mask() -> Pat {
    guard(select(any("bool_mask"), constant("keep"), constant("drop")), |g, v| {
        let n = g.node(v.node);
        let keep = n.operands.get(1).and_then(|k| g.node(k.node).op.as_constant());
        g.use_count(v) == 1 && keep.is_some_and(|t| t.len() == 1 && t.get_f64(0) == 0.0)
    })
}

/// `softmax(scores + mask)`, the softmax input optionally cast.
fn probs() -> Pat {
    let masked = either(add(scores(), either(bool_mask(), any("mask"))), scores());
    node("softmax", |o| matches!(o, Op::Softmax { .. }), vec![opt_cast(masked)]).named("probs")
}

/// `where(isnan(p), nan_fill, p)`: the NaN guard some exporters put after the softmax.
fn nan_guard(p: Pat) -> Pat {
    select(unary(UnaryOp::IsNan, p.clone()), constant("nan_fill"), p)
}

/// `where(reduce_max(mask) == −inf, row_fill, p)`: ONNX Attention's zeroing of the rows whose
/// keys are all masked, over the same additive mask.
fn masked_row_guard(p: Pat) -> Pat {
    let row_max = reduce(ReduceOp::Max, any("mask")).named("row_max");
    let all_masked = commutative(BinaryOp::Equal, row_max, constant("ninf")).named("all_masked");
    select(all_masked, constant("row_fill"), p)
}

/// Fuses attention into one `sdpa` block.
pub fn sdpa() -> Rule {
    let guarded = either(nan_guard(probs()), either(masked_row_guard(probs()), probs()));
    Rule::new("sdpa", matmul(opt_cast(guarded), any("v"))).check(check).rewrite(rewrite)
}

fn check(g: &Graph, m: &Match) -> Result<(), String> {
    let probs = g.node(m.value("probs").node);
    require(
        matches!(probs.op, Op::Softmax { axis } if axis == -1 || axis == 3),
        "softmax is not over the key axis",
    )?;
    for s in ["q_scale", "k_scale", "scale"] {
        if m.get(s).is_some() {
            require(m.constant(g, s).is_some_and(|t| t.len() == 1), format!("{s} is not a scalar"))?;
        }
    }
    check_guards(g, m)?;
    let (q, v) = (m.value("q"), m.value("v"));
    require(g.value_type(q).rank() == 4 && g.value_type(v).rank() == 4, "q and v are not 4-D {B, N, T, D}")?;
    let (k, _) = key_layout(g, m.value("kt"), v)?;
    require(g.value_type(k).rank() == 4, "k is not 4-D")?;
    require(
        g.value_type(q).dtype == g.value_type(v).dtype && g.value_type(k).dtype == g.value_type(v).dtype,
        "q, k and v differ in dtype",
    )?;
    if let Some(mask) = m.get("mask") {
        let scores = g.value_type(m.value("scores"));
        require(g.value_type(mask).dtype == scores.dtype, "additive mask dtype differs from the scores")?;
    }
    Ok(())
}

/// The boolean mask's drop value and what happens to fully masked rows: NaN guard, masked-row
/// guard, or a finite drop (the block's own uniform rows).
fn check_guards(g: &Graph, m: &Match) -> Result<(), String> {
    if m.get("bool_mask").is_some() {
        let drop = m.scalar(g, "drop");
        require(drop.is_some_and(|d| d <= -1e4), "boolean mask does not drop with a very negative value")?;
        // With −inf, a fully masked row is NaN (or 0 behind a NaN guard), not uniform.
        let causal = mask_kind(g, m).0 == MaskKind::Causal;
        require(
            drop.is_some_and(f64::is_finite) || m.get("nan_fill").is_some() || causal,
            "−inf mask without a NaN guard: fully masked rows would be NaN",
        )?;
    }
    if m.get("nan_fill").is_some() {
        require(m.scalar(g, "nan_fill") == Some(0.0), "NaN guard does not fill with 0")?;
    }
    if m.get("all_masked").is_some() {
        require(
            m.scalar(g, "ninf") == Some(f64::NEG_INFINITY),
            "the masked-row guard does not compare with −inf",
        )?;
        require(m.scalar(g, "row_fill") == Some(0.0), "the masked-row guard does not fill with 0")?;
        require(
            super::reduces_last_axis(g, m.value("row_max")),
            "the masked-row guard's max is not over the key axis (keepdims)",
        )?;
    }
    Ok(())
}

fn rewrite(b: &mut Builder<'_>, m: &Match) -> Result<Value, IrError> {
    let g = b.graph();
    let scale = ["q_scale", "k_scale", "scale"].iter().filter_map(|s| m.scalar(g, s)).product::<f64>() as f32;
    let v_in = m.value("v");
    let (k_src, k_perm) = key_layout(g, m.value("kt"), v_in).expect("checked");
    let identity = k_perm.iter().enumerate().all(|(i, &p)| i == p);
    let (k, v) = if identity { (strip_repeat_kv(g, k_src), strip_repeat_kv(g, v_in)) } else { (k_src, v_in) };
    let (mask, mask_value) = mask_kind(g, m);
    let k = if identity { k } else { b.transpose(k, &k_perm)? };
    let mut args = vec![m.value("q"), k, v];
    args.extend(mask_value);
    let out = b.block(Sdpa { scale, mask, has_sinks: false }, &args)?[0];
    let out = guard_rows(b, m, out, mask)?;
    let want = b.ty(m.root).dtype;
    b.cast(out, want)
}

/// Reproduces what the matched graph does with rows whose keys are all masked.
fn guard_rows(b: &mut Builder<'_>, m: &Match, out: Value, mask: MaskKind) -> Result<Value, IrError> {
    // ONNX's guard, reused as it is: rows whose mask is −inf everywhere give 0.
    if let Some(all_masked) = m.get("all_masked") {
        let zero = b.scalar_like(out, 0.0);
        return b.select(all_masked, zero, out);
    }
    // Behind a NaN guard, rows whose keys are all masked with −inf come out as 0.
    // (A causal mask has no such rows: every query sees key 0.)
    if m.get("nan_fill").is_none() || mask == MaskKind::Causal {
        return Ok(out);
    }
    let keep = match (m.get("bool_mask"), m.get("mask")) {
        // A finite drop leaves fully masked rows uniform, as the block does.
        (Some(keep), _) if m.scalar(b.graph(), "drop") == Some(f64::NEG_INFINITY) => keep,
        (None, Some(additive)) => {
            let minus_inf = b.scalar_like(additive, f64::NEG_INFINITY);
            b.binary(BinaryOp::Greater, additive, minus_inf)?
        }
        _ => return Ok(out),
    };
    zero_fully_masked_rows(b, out, keep)
}
