//! RoPE, split-half ("rotate_half") form: `x·cos + rotate_half(x)·sin` with
//! `rotate_half(x) = concat(−x[..., h:], x[..., :h])`, and cos/sin of
//! `positions ⊗ inv_freq` (duplicated halves). Partial rotation is a second rule.

use crate::pattern::*;
use crate::rule::{require, Rule};
use blockfuse_ir::blocks::{Rope, RopePosition};
use blockfuse_ir::{Bound, Dim, Graph, HostTensor, Op, UnaryOp, Value};

fn last_axis_slice(g: &Graph, v: Value) -> Option<(i64, i64)> {
    let Op::Slice(s) = &g.node(v.node).op else {
        return None;
    };
    let rank = g.value_type(g.node(v.node).operands[0]).rank() as i64;
    let last = s.axes.len() == 1 && (s.axes[0] == -1 || s.axes[0] == rank - 1) && s.steps[0] == 1;
    match (last, &s.starts[0], &s.ends[0]) {
        (true, Bound::Const(a), Bound::Const(b)) => Some((*a, *b)),
        _ => None,
    }
}

/// Skips casts and reshapes that only add or drop size-1 axes.
fn through_views(g: &Graph, mut v: Value) -> Value {
    loop {
        let n = g.node(v.node);
        let squeeze_only = |a: &[Dim], b: &[Dim]| {
            a.iter().filter(|d| **d != Dim::Known(1)).eq(b.iter().filter(|d| **d != Dim::Known(1)))
        };
        match &n.op {
            Op::Cast(_) => v = n.operands[0],
            Op::Reshape { shape } if squeeze_only(&g.value_type(n.operands[0]).shape, shape) => {
                v = n.operands[0]
            }
            _ => return v,
        }
    }
}

/// What the cos/sin operands are made of: the angle tensor's positions and inverse
/// frequencies, `θ = concat(p ⊗ inv, p ⊗ inv)`.
struct Angles {
    positions: Value,
    inv_freq: HostTensor,
}

/// The half-size angle tensor `f` when `v` is `op` (cos or sin) of the full angles, spelled
/// either `op(concat(f, f))` (Hugging Face) or `concat(op(f), op(f))` (ONNX RotaryEmbedding).
fn half_angles(g: &Graph, v: Value, op: UnaryOp) -> Option<Value> {
    let v = through_views(g, v);
    let n = g.node(v.node);
    let pair = |n: &blockfuse_ir::Node| {
        (matches!(n.op, Op::Concat { .. }) && n.operands.len() == 2 && n.operands[0] == n.operands[1])
            .then(|| n.operands[0])
    };
    match &n.op {
        Op::Unary(u) if *u == op => pair(g.node(n.operands[0].node)),
        Op::Concat { .. } => {
            let inner = through_views(g, pair(n)?);
            let m = g.node(inner.node);
            matches!(m.op, Op::Unary(u) if u == op).then(|| m.operands[0])
        }
        _ => None,
    }
}

/// `(cache, positions)` when `v` is a row gather of a constant `{P, D}` cache by positions.
fn gathered(g: &Graph, v: Value) -> Option<(HostTensor, Value)> {
    let v = through_views(g, v);
    let n = g.node(v.node);
    let Op::Gather { axis: 0 } = n.op else { return None };
    let table = g.node(n.operands[0].node).op.as_constant()?;
    (table.dims().len() == 2).then(|| (table.clone(), n.operands[1]))
}

/// Inverse frequencies recovered from cos/sin caches, checked against every cached row:
/// `cos[t, i] = cos(t·inv_i)`, `sin[t, i] = sin(t·inv_i)`, halves duplicated.
fn cached_inv_freq(cos: &HostTensor, sin: &HostTensor) -> Result<HostTensor, String> {
    let (rows, d) = (cos.dims()[0], cos.dims()[1]);
    require(cos.dims() == sin.dims() && rows >= 2 && d % 2 == 0, "cos/sin caches differ in shape")?;
    let inv: Vec<f64> = (0..d / 2).map(|i| sin.get_f64(d + i).atan2(cos.get_f64(d + i))).collect();
    for t in 0..rows {
        for j in 0..d {
            let angle = t as f64 * inv[j % (d / 2)];
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * (1.0 + t as f64 * 1e-3);
            if !close(cos.get_f64(t * d + j), angle.cos()) || !close(sin.get_f64(t * d + j), angle.sin()) {
                return Err(format!("cos/sin cache row {t} is not cos/sin of t · inverse frequencies"));
            }
        }
    }
    let inv32: Vec<f32> = inv.iter().map(|&x| x as f32).collect();
    Ok(HostTensor::from_f32(vec![d / 2], &inv32))
}

fn angles(g: &Graph, cos: Value, sin: Value) -> Result<Angles, String> {
    if let (Some((cc, pc)), Some((sc, ps))) = (gathered(g, cos), gathered(g, sin)) {
        require(pc == ps, "cos and sin caches are gathered at different positions")?;
        let inv_freq = cached_inv_freq(&cc, &sc)?;
        return Ok(Angles { positions: through_views(g, pc), inv_freq });
    }
    let (Some(fc), Some(fs)) = (half_angles(g, cos, UnaryOp::Cos), half_angles(g, sin, UnaryOp::Sin)) else {
        return Err("cos/sin operands are not cos and sin of an angle tensor (swapped or precomputed)".into());
    };
    require(fc == fs, "cos and sin are of different angles")?;
    let f = g.node(fc.node);
    require(
        matches!(f.op, Op::Binary(blockfuse_ir::BinaryOp::Mul)),
        "angles are not positions × inverse frequencies",
    )?;
    let (a, b) = (f.operands[0], f.operands[1]);
    let (pos, inv) = match (g.node(a.node).op.as_constant(), g.node(b.node).op.as_constant()) {
        (None, Some(t)) => (a, t),
        (Some(t), None) => (b, t),
        _ => return Err("inverse frequencies are not a constant".into()),
    };
    Ok(Angles { positions: through_views(g, pos), inv_freq: inv.clone() })
}

/// `base` such that `inv_i = base^(−2i/dims)` for every i, when there is one.
fn recover_base(inv: &[f64], dims: usize) -> Option<f64> {
    let raw = inv.get(1).map(|c| c.powf(-(dims as f64) / 2.0))?;
    // Inverse frequencies are stored in f32: snap 9999.999 back to the 10000 it came from.
    let base = if ((raw.round() - raw) / raw).abs() < 1e-5 { raw.round() } else { raw };
    let fits = inv
        .iter()
        .enumerate()
        .all(|(i, &c)| ((base.powf(-2.0 * i as f64 / dims as f64) - c) / c).abs() < 1e-5);
    fits.then_some(base)
}

/// `Some(start)` when positions are provably `start + arange(T)`.
fn arange_start(g: &Graph, p: Value) -> Option<i64> {
    match &g.node(p.node).op {
        Op::Range { start, step, .. } if *step == 1.0 && start.fract() == 0.0 => Some(*start as i64),
        Op::Expand { .. } => arange_start(g, through_views(g, g.node(p.node).operands[0])),
        _ => None,
    }
}

/// Fuses split-half RoPE over the whole last axis.
pub fn rope() -> Rule {
    let lo = node("slice", |o| matches!(o, Op::Slice(_)), vec![any("x")]).named("lo");
    let hi = node("slice", |o| matches!(o, Op::Slice(_)), vec![any("x")]).named("hi");
    let rot = node("concat", |o| matches!(o, Op::Concat { axis: -1 }), vec![unary(UnaryOp::Neg, hi), lo]);
    Rule::new("rope", add(mul(any("x"), any("cos")), mul(rot, any("sin"))))
        .check(|g, m| {
            let d =
                g.value_type(m.value("x")).shape.last().and_then(Dim::known).ok_or("head dim is not known")?
                    as i64;
            require(
                last_axis_slice(g, m.value("lo")) == Some((0, d / 2)),
                "rotate_half's first slice is not x[..., :D/2]",
            )?;
            require(
                matches!(last_axis_slice(g, m.value("hi")), Some((h, e)) if h == d / 2 && e >= d),
                "rotate_half's second slice is not x[..., D/2:]",
            )?;
            let a = angles(g, m.value("cos"), m.value("sin"))?;
            require(
                a.inv_freq.len() as i64 * 2 == d,
                format!("{} inverse frequencies for head dim {d}", a.inv_freq.len()),
            )?;
            require(g.value_type(m.value("x")).rank() >= 3, "x has fewer than 3 axes")
        })
        .rewrite(|b, m| {
            let a = angles(b.graph(), m.value("cos"), m.value("sin")).expect("checked");
            let inv = a.inv_freq.to_f64_vec();
            let dims = inv.len() * 2;
            let base = recover_base(&inv, dims);
            let mut args = vec![m.value("x")];
            let position = match arange_start(b.graph(), a.positions) {
                Some(start) => RopePosition::Offset(start),
                None => {
                    args.push(a.positions);
                    RopePosition::Positions
                }
            };
            if base.is_none() {
                let periods: Vec<f32> = inv.iter().map(|c| (1.0 / c) as f32).collect();
                args.push(b.constant(HostTensor::from_f32(vec![periods.len()], &periods)));
            }
            let block = Rope { dims, traditional: false, base: base.map(|x| x as f32), scale: 1.0, position };
            Ok(b.block(block, &args)?[0])
        })
}

/// `concat(rope(x[..., :r]), x[..., r:])` → `rope(x)` rotating the first r dims only.
pub fn rope_partial() -> Rule {
    let head = node("slice", |o| matches!(o, Op::Slice(_)), vec![any("x")]).named("head");
    let rope = node("block.rope", |o| matches!(o, Op::Block(b) if b.is::<Rope>()), vec![head]).named("rope");
    let tail = node("slice", |o| matches!(o, Op::Slice(_)), vec![any("x")]).named("tail");
    Rule::new("rope_partial", node("concat", |o| matches!(o, Op::Concat { axis: -1 }), vec![rope, tail]))
        .check(|g, m| {
            let d =
                g.value_type(m.value("x")).shape.last().and_then(Dim::known).ok_or("head dim is not known")?
                    as i64;
            let r = match last_axis_slice(g, m.value("head")) {
                Some((0, r)) => r,
                _ => return Err("rotated part is not x[..., :r]".into()),
            };
            require(
                matches!(last_axis_slice(g, m.value("tail")), Some((s, e)) if s == r && e >= d),
                "pass-through part is not x[..., r:]",
            )
        })
        .rewrite(|b, m| {
            let node = b.graph().node(m.value("rope").node).clone();
            let inner = node.op.as_block().and_then(|x| x.downcast_ref::<Rope>()).expect("matched").clone();
            let mut args = node.operands.to_vec();
            args[0] = m.value("x");
            Ok(b.block(inner, &args)?[0])
        })
}
