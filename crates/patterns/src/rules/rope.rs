//! RoPE. A rotation `x·cos + rotate(x)·sin` on the last axis is recognized first, in each
//! of its spellings (one rule each, below); what the cos/sin are made of is classified after
//! ([`crate::analysis::angles`]), most specific first: a base, a frequency table, or cos and
//! sin kept as operands (the block's cos/sin form). Partial rotation is its own rule.

use super::rope_plan::{build, plan, Rotation};
use crate::matcher::Match;
use crate::pattern::*;
use crate::rule::{require, Rule};
use blockfuse_ir::blocks::Rope;
use blockfuse_ir::{BinaryOp, Bound, Dim, Graph, Op, UnaryOp, Value};

/// `(start, end, step)` when `v` is a slice of the last axis with constant bounds.
pub(super) fn last_axis_slice(g: &Graph, v: Value) -> Option<(i64, i64, i64)> {
    let Op::Slice(s) = &g.node(v.node).op else {
        return None;
    };
    let rank = g.value_type(g.node(v.node).operands[0]).rank() as i64;
    let last = s.axes.len() == 1 && (s.axes[0] == -1 || s.axes[0] == rank - 1);
    match (last, &s.starts[0], &s.ends[0]) {
        (true, Bound::Const(a), Bound::Const(b)) => Some((*a, *b, s.steps[0])),
        _ => None,
    }
}

/// `(x, r)` when `a`, `b` are `x[..., :r]` and `x[..., r:]`: two slices, or the two outputs of
/// a last-axis split.
pub(super) fn split_at(g: &Graph, a: Value, b: Value) -> Option<(Value, i64)> {
    let (na, nb) = (g.node(a.node), g.node(b.node));
    let x = *na.operands.first()?;
    let d = g.value_type(x).shape.last().and_then(Dim::known)? as i64;
    if let Op::Split { axis, sizes } = &na.op {
        let last = *axis == -1 || *axis == g.value_type(x).rank() as i64 - 1;
        let ok = a.node == b.node && a.output == 0 && b.output == 1 && sizes.len() == 2 && last;
        return ok.then(|| sizes[0].known().map(|r| (x, r as i64))).flatten();
    }
    let (_, r, 1) = last_axis_slice(g, a).filter(|s| s.0 == 0)? else { return None };
    let ok = nb.operands.first() == Some(&x)
        && matches!(last_axis_slice(g, b), Some((s, e, 1)) if s == r && e >= d);
    ok.then_some((x, r))
}

/// `x` when `a`, `b` are the two halves of `x` (`x[..., :D/2]`, `x[..., D/2:]`).
fn halves_of(g: &Graph, a: Value, b: Value) -> Option<Value> {
    let (x, r) = split_at(g, a, b)?;
    let d = g.value_type(x).shape.last().and_then(Dim::known)? as i64;
    (2 * r == d).then_some(x)
}

/// `x` when `a`, `b` are the even and odd features of `x` (`x[..., 0::2]`, `x[..., 1::2]`).
fn pairs_of(g: &Graph, a: Value, b: Value) -> Option<Value> {
    let x = *g.node(a.node).operands.first()?;
    let d = g.value_type(x).shape.last().and_then(Dim::known)? as i64;
    let ok = g.node(b.node).operands.first() == Some(&x)
        && matches!(last_axis_slice(g, a), Some((0, e, 2)) if e >= d - 1)
        && matches!(last_axis_slice(g, b), Some((1, e, 2)) if e >= d);
    ok.then_some(x)
}

fn part(name: &'static str) -> Pat {
    node("slice|split", |o| matches!(o, Op::Slice(_) | Op::Split { .. }), vec![any("x")]).named(name)
}

/// `−p`, spelled `neg(p)` or `p · (−1)`.
fn negated(p: Pat) -> Pat {
    let minus_one = guard(constant("−1"), |g, v| {
        g.node(v.node).op.as_constant().is_some_and(|t| t.len() == 1 && t.get_f64(0) == -1.0)
    });
    Pat::OneOf(vec![unary(UnaryOp::Neg, p.clone()), mul(p, minus_one)])
}

fn concat_last(a: Pat, b: Pat) -> Pat {
    node("concat", |o| matches!(o, Op::Concat { axis: -1 }), vec![a, b])
}

fn view(p: Pat) -> Pat {
    either(node("reshape", |o| matches!(o, Op::Reshape { .. }), vec![p.clone()]), p)
}

/// Fuses split-half RoPE: `x·cos + rotate_half(x)·sin`, `rotate_half(x) = [−x2, x1]`.
pub fn rope() -> Rule {
    let rotate_half = concat_last(negated(part("x2")), part("x1"));
    let root = add(mul(any("x"), any("cos")), mul(rotate_half, any("sin")));
    Rule::new("rope", root).fuse(
        |g, m| {
            let x = halves_of(g, m.value("x1"), m.value("x2"))
                .ok_or("rotate_half's parts are not x[..., :D/2] and x[..., D/2:]")?;
            plan(g, rotation(m, x, false, true))
        },
        |b, _, p| build(b, p),
    )
}

/// Fuses interleaved RoPE written with full-width cos/sin (GPT-J's `rotate_every_two`):
/// `x·cos + pairs(−x[..., 1::2], x[..., 0::2])·sin`.
pub fn rope_interleaved() -> Rule {
    let neg = Pat::OneOf(vec![
        view(negated(part("x2"))),
        negated(node("reshape", |o| matches!(o, Op::Reshape { .. }), vec![part("x2")])),
    ]);
    let rotate =
        node("reshape", |o| matches!(o, Op::Reshape { .. }), vec![concat_last(neg, view(part("x1")))]);
    let root = add(mul(any("x"), any("cos")), mul(rotate, any("sin")));
    Rule::new("rope_interleaved", root).fuse(
        |g, m| {
            let x = pairs_of(g, m.value("x1"), m.value("x2"))
                .ok_or("the rotated pairs are not x[..., 0::2] and x[..., 1::2]")?;
            plan(g, rotation(m, x, true, true))
        },
        |b, _, p| build(b, p),
    )
}

/// `x1·cos − x2·sin` and `x2·cos + x1·sin`, with per-pair cos/sin.
fn real_imag() -> (Pat, Pat) {
    let real = binary(BinaryOp::Sub, mul(part("x1"), any("cos")), mul(part("x2"), any("sin")));
    let imag = add(mul(part("x2"), any("cos")), mul(part("x1"), any("sin")));
    (real, imag)
}

/// ONNX RotaryEmbedding's body: `concat(x1·cos − x2·sin, x2·cos + x1·sin)` of the halves.
pub fn rope_halves() -> Rule {
    let (real, imag) = real_imag();
    Rule::new("rope_halves", concat_last(real, imag)).fuse(
        |g, m| {
            let (x1, x2) = (m.value("x1"), m.value("x2"));
            require(
                pairs_of(g, x1, x2).is_none(),
                "interleaved pairs rotated, but the result is not re-interleaved",
            )?;
            let x = halves_of(g, x1, x2).ok_or("x1 and x2 are not the two halves of one x")?;
            plan(g, rotation(m, x, false, false))
        },
        |b, _, p| build(b, p),
    )
}

/// Interleaved RoPE with per-pair cos/sin (ONNX RotaryEmbedding's interleaved body, Meta's
/// complex form): the real and imaginary parts of the pairs `(x_2i, x_2i+1)` — strided slices,
/// or the two members of `reshape(x, [..., D/2, 2])` (Split or Gather on the last axis) —
/// interleaved back by a reshape of their last-axis concat.
pub fn rope_pairs() -> Rule {
    let real = binary(BinaryOp::Sub, mul(any("x1"), any("cos")), mul(any("x2"), any("sin")));
    let imag = add(mul(any("x2"), any("cos")), mul(any("x1"), any("sin")));
    let root =
        node("reshape", |o| matches!(o, Op::Reshape { .. }), vec![concat_last(view(real), view(imag))]);
    Rule::new("rope_pairs", root).fuse(
        |g, m| {
            let [x1, x2, c, s] = ["x1", "x2", "cos", "sin"].map(|n| m.value(n));
            // `x1·c − x2·s, x2·c + x1·s` reads the same with the roles of (x1, x2) and (c, s)
            // exchanged: the pairs are whichever of the two are pairs of one x.
            let (x, cos, sin) = [(x1, x2, c, s), (c, s, x1, x2)]
                .into_iter()
                .find_map(|(a, b, c, s)| members_of_pairs(g, a, b).map(|x| (x, c, s)))
                .ok_or("x1 and x2 are not the even and odd features x[..., 0::2], x[..., 1::2]")?;
            let stacked = g.value_type(g.node(m.root.node).operands[0]);
            require(stacked.shape.last() == Some(&Dim::Known(2)), "the parts are not stacked as pairs")?;
            plan(g, Rotation { x, cos, sin, traditional: true, full_width: false, out: m.root })
        },
        |b, _, p| build(b, p),
    )
}

/// `v` without a reshape that only drops its trailing size-1 axis.
fn squeezed_last(g: &Graph, v: Value) -> Value {
    let n = g.node(v.node);
    match &n.op {
        Op::Reshape { shape } => {
            let inner = &g.value_type(n.operands[0]).shape;
            let drops = inner.len() == shape.len() + 1 && inner.last() == Some(&Dim::Known(1));
            if drops && inner[..shape.len()] == shape[..] {
                n.operands[0]
            } else {
                v
            }
        }
        _ => v,
    }
}

/// `x` when `a`, `b` are the even and odd features of `x`: strided slices, or members 0 and 1
/// of `reshape(x, [..., D/2, 2])` taken by a last-axis Split or Gather.
fn members_of_pairs(g: &Graph, a: Value, b: Value) -> Option<Value> {
    if let Some(x) = pairs_of(g, a, b) {
        return Some(x);
    }
    let (a, b) = (squeezed_last(g, a), squeezed_last(g, b));
    let (na, nb) = (g.node(a.node), g.node(b.node));
    let r = *na.operands.first()?;
    let rank = g.value_type(r).rank() as i64;
    let last = |axis: i64| axis == -1 || axis == rank - 1;
    let index = |n: &blockfuse_ir::Node| {
        let t = g.node(n.operands.get(1)?.node).op.as_constant()?;
        (t.len() == 1).then(|| t.get_f64(0))
    };
    let members = match (&na.op, &nb.op) {
        (Op::Split { axis, sizes }, _) => {
            a.node == b.node && a.output == 0 && b.output == 1 && sizes.len() == 2 && last(*axis)
        }
        (Op::Gather { axis: p }, Op::Gather { axis: q }) => {
            nb.operands[0] == r && last(*p) && last(*q) && index(na) == Some(0.0) && index(nb) == Some(1.0)
        }
        _ => false,
    };
    let rn = g.node(r.node);
    if !members || !matches!(rn.op, Op::Reshape { .. }) {
        return None;
    }
    let x = rn.operands[0];
    let (xs, rs) = (&g.value_type(x).shape, &g.value_type(r).shape);
    let n = xs.len();
    let d = xs.last().and_then(Dim::known)?;
    let pairs = rs.len() == n + 1 && rs[..n - 1] == xs[..n - 1] && rs[n - 1] == Dim::Known(d / 2);
    (pairs && rs[n] == Dim::Known(2)).then_some(x)
}

fn rotation(m: &Match, x: Value, traditional: bool, full_width: bool) -> Rotation {
    Rotation { x, cos: m.value("cos"), sin: m.value("sin"), traditional, full_width, out: m.root }
}

/// `concat(rope(x[..., :r]), x[..., r:])` → `rope(x)` rotating the first r dims only (the
/// parts as two slices or one split).
pub fn rope_partial() -> Rule {
    // x, then up to three operands (positions or offsets, freqs; or cos and sin).
    let rest = [any("operand 1"), any("operand 2"), any("operand 3")];
    let arity = |n: usize| {
        let args = std::iter::once(part("head")).chain(rest[..n].iter().cloned()).collect();
        node("block.rope", |o| matches!(o, Op::Block(b) if b.is::<Rope>()), args).named("rope")
    };
    let root = concat_last(Pat::OneOf((0..4).map(arity).collect()), part("tail"));
    Rule::new("rope_partial", root).fuse(
        |g, m| {
            let (x, r) = split_at(g, m.value("head"), m.value("tail"))
                .ok_or("rotated and pass-through parts are not x[..., :r] and x[..., r:]")?;
            let node = g.node(m.value("rope").node);
            let inner =
                node.op.as_block().and_then(|b| b.downcast_ref::<Rope>()).ok_or("not a rope block")?;
            require(inner.dims as i64 == r, "the rope rotates part of its input only")?;
            let mut args = node.operands.to_vec();
            args[0] = x;
            Ok((inner.clone(), args))
        },
        |b, _, (inner, args)| Ok(b.block(inner, &args)?[0]),
    )
}

/// Every rotate_half that did not end in a rope block: a near-miss saying why.
pub fn rope_candidates() -> Rule {
    let rotate_half = concat_last(negated(part("x2")), part("x1"));
    Rule::new("rotate_half", rotate_half).check(|g, m| {
        Err(match halves_of(g, m.value("x1"), m.value("x2")) {
            None => "concat(−x2, x1) of parts that are not the halves of one x".into(),
            Some(_) => "rotate_half(x) is not used as x·cos + rotate_half(x)·sin".to_string(),
        })
    })
}

/// Every stacked `(−x[..., 1::2], x[..., 0::2])` pair rotation that did not end in a rope
/// block: a near-miss saying why.
pub fn rope_pair_candidates() -> Rule {
    let neg = view(negated(part("x2")));
    let rotate =
        node("reshape", |o| matches!(o, Op::Reshape { .. }), vec![concat_last(neg, view(part("x1")))]);
    Rule::new("rotate_pairs", rotate).check(|g, m| {
        Err(match pairs_of(g, m.value("x1"), m.value("x2")) {
            None => "stacked (−x2, x1) of parts that are not x[..., 0::2] and x[..., 1::2]".into(),
            Some(_) => "the pair rotation is not used as x·cos + rotate_pairs(x)·sin".to_string(),
        })
    })
}
