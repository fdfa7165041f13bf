//! RoPE, split-half ("rotate_half") form: `x·cos + rotate_half(x)·sin` with
//! `rotate_half(x) = concat(−x[..., h:], x[..., :h])`, and cos/sin of
//! `positions ⊗ inv_freq` (duplicated halves). Partial rotation is a second rule.

use crate::matcher::Match;
use crate::pattern::*;
use crate::rule::{require, Rule};
use blockfuse_ir::blocks::{Rope, RopePosition};
use blockfuse_ir::{BinaryOp, Bound, Builder, Dim, Graph, HostTensor, IrError, Op, UnaryOp, Value};

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
    positions_times_inv(g, fc)
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

fn slice(x: Pat) -> Pat {
    node("slice", |o| matches!(o, Op::Slice(_)), vec![x])
}

fn concat_last(a: Pat, b: Pat) -> Pat {
    node("concat", |o| matches!(o, Op::Concat { axis: -1 }), vec![a, b])
}

/// `rotate_half(x) = concat(−x[..., h:], x[..., :h])`.
fn rotate_half() -> Pat {
    concat_last(unary(UnaryOp::Neg, slice(any("x")).named("hi")), slice(any("x")).named("lo"))
}

/// Fuses split-half RoPE over the whole last axis: `x·cos + rotate_half(x)·sin`.
pub fn rope() -> Rule {
    let root = add(mul(any("x"), any("cos")), mul(rotate_half(), any("sin")));
    Rule::new("rope", root).check(check_rotate_half).rewrite(|b, m| {
        let a = angles(b.graph(), m.value("cos"), m.value("sin")).expect("checked");
        rope_block(b, m.value("x"), a)
    })
}

fn head_dim(g: &Graph, x: Value) -> Result<i64, String> {
    Ok(g.value_type(x).shape.last().and_then(Dim::known).ok_or("head dim is not known")? as i64)
}

fn check_rotate_half(g: &Graph, m: &Match) -> Result<(), String> {
    let d = head_dim(g, m.value("x"))?;
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
}

/// The Rope block of `x` for these angles: an offset when positions are an arange, the
/// positions operand otherwise; a base when the inverse frequencies follow one, periods else.
fn rope_block(b: &mut Builder<'_>, x: Value, a: Angles) -> Result<Value, IrError> {
    let inv = a.inv_freq.to_f64_vec();
    let dims = inv.len() * 2;
    let base = recover_base(&inv, dims);
    let mut args = vec![x];
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
}

/// ONNX RotaryEmbedding's function body: `x1, x2 = split(x)` into halves and
/// `concat(x1·cos − x2·sin, x2·cos + x1·sin)` with half-size cos/sin.
pub fn rope_halves() -> Rule {
    let half = |name| {
        node("split|slice", |o| matches!(o, Op::Split { .. } | Op::Slice(_)), vec![any("x")]).named(name)
    };
    let first = binary(BinaryOp::Sub, mul(half("x1"), any("cos")), mul(half("x2"), any("sin")));
    let second = add(mul(half("x2"), any("cos")), mul(half("x1"), any("sin")));
    Rule::new("rope_halves", concat_last(first, second)).check(|g, m| check_halves(g, m).map(|_| ())).rewrite(
        |b, m| {
            let (x, a) = check_halves(b.graph(), m).expect("checked");
            rope_block(b, x, a)
        },
    )
}

/// The split x and the angles of a `rope_halves` match.
fn check_halves(g: &Graph, m: &Match) -> Result<(Value, Angles), String> {
    let x = halves_of(g, m.value("x1"), m.value("x2")).ok_or("x1 and x2 are not the two halves of one x")?;
    let d = head_dim(g, x)?;
    require(g.value_type(x).rank() >= 3, "x has fewer than 3 axes")?;
    let a = half_size_angles(g, m.value("cos"), m.value("sin"))?;
    require(
        a.inv_freq.len() as i64 * 2 == d,
        format!("{} inverse frequencies for head dim {d}", a.inv_freq.len()),
    )?;
    // The block's positions run along axis −2 of x: so must the angles' (e.g. not x in
    // {B, S, H, D} with cos in {B, S, 1, D/2}).
    let (xs, cs) = (&g.value_type(x).shape, &g.value_type(m.value("cos")).shape);
    let r = cs.len();
    let along_rows = r >= 2
        && r <= xs.len()
        && cs[r - 2] == xs[xs.len() - 2]
        && cs[..r - 2].iter().enumerate().all(|(i, c)| *c == Dim::Known(1) || i == 0 && r == xs.len());
    require(along_rows, "cos/sin do not vary along axis −2 of x (the positions axis)")?;
    Ok((x, a))
}

/// `x` when `x1`, `x2` are `x[..., :h]`, `x[..., h:]` with `2h = D` (two slices, or the two
/// outputs of a last-axis split).
fn halves_of(g: &Graph, x1: Value, x2: Value) -> Option<Value> {
    let (n1, n2) = (g.node(x1.node), g.node(x2.node));
    if let Op::Split { axis, sizes } = &n1.op {
        let rank = g.value_type(n1.operands[0]).rank() as i64;
        let halves = sizes.len() == 2 && sizes[0] == sizes[1];
        let last = *axis == -1 || *axis == rank - 1;
        return (x1.node == x2.node && x1.output == 0 && x2.output == 1 && halves && last)
            .then(|| n1.operands[0]);
    }
    let x = n1.operands.first().copied()?;
    let d = g.value_type(x).shape.last().and_then(Dim::known)? as i64;
    let ok = n2.operands.first() == Some(&x)
        && last_axis_slice(g, x1) == Some((0, d / 2))
        && matches!(last_axis_slice(g, x2), Some((h, e)) if h == d / 2 && e >= d);
    ok.then_some(x)
}

/// Angles of half-size cos/sin: `cos(p ⊗ inv)`, `sin(p ⊗ inv)`. Caches that are graph inputs
/// (or gathered from them) are arbitrary tensors, which the block cannot represent.
fn half_size_angles(g: &Graph, cos: Value, sin: Value) -> Result<Angles, String> {
    let of = |v: Value, op: UnaryOp| {
        let n = g.node(through_views(g, v).node);
        matches!(n.op, Op::Unary(u) if u == op).then(|| n.operands[0])
    };
    let (Some(fc), Some(fs)) = (of(cos, UnaryOp::Cos), of(sin, UnaryOp::Sin)) else {
        return Err(
            "cos/sin are not cos and sin of positions × inverse frequencies (e.g. caches given as inputs)"
                .into(),
        );
    };
    require(fc == fs, "cos and sin are of different angles")?;
    positions_times_inv(g, fc)
}

/// `f = positions · inv_freq` with constant inverse frequencies.
fn positions_times_inv(g: &Graph, f: Value) -> Result<Angles, String> {
    let n = g.node(f.node);
    require(matches!(n.op, Op::Binary(BinaryOp::Mul)), "angles are not positions × inverse frequencies")?;
    let (a, b) = (n.operands[0], n.operands[1]);
    let (pos, inv) = match (g.node(a.node).op.as_constant(), g.node(b.node).op.as_constant()) {
        (None, Some(t)) => (a, t),
        (Some(t), None) => (b, t),
        _ => return Err("inverse frequencies are not a constant".into()),
    };
    Ok(Angles { positions: through_views(g, pos), inv_freq: inv.clone() })
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
