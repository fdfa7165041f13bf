//! Canonicalization: constant folding, CSE and local simplifications that give every
//! computation one spelling before fusion (Div → Mul·Reciprocal, Reciprocal∘Sqrt → Rsqrt,
//! Pow 2 / x·x → Square, Sum·1/N → Mean, no-op casts/reshapes/transposes removed ...).
//!
//! A worklist drives it: a node is revisited only when one of its operands changed.

use crate::analysis::sign::nonnegative;
use crate::analysis::uniform_scalar as scalar;
use crate::fold::fold;
use blockfuse_ir::{
    BinaryOp, Bound, Builder, DType, Dim, Graph, IrError, NodeId, Op, ReduceOp, UnaryOp, Value,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};

/// How many local rewrites and CSE merges canonicalization made.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CanonStats {
    /// Nodes replaced by a simpler spelling or a folded constant.
    pub rewrites: usize,
    /// Nodes merged into an identical earlier node.
    pub merged: usize,
}

/// Canonicalizes the whole graph.
pub fn canonicalize(g: &mut Graph) -> Result<CanonStats, IrError> {
    let order = g.topo_order()?;
    canonicalize_from(g, order)
}

/// Canonicalizes starting from `seeds`, following consumers of whatever changes.
pub fn canonicalize_from(g: &mut Graph, seeds: Vec<NodeId>) -> Result<CanonStats, IrError> {
    canonicalize_tracked(g, seeds, &mut HashSet::new())
}

/// [`canonicalize_from`] that adds to `divisions` every multiplication it makes of a division
/// (`a / b` → `a · (1/b)`), for [`restore_divisions`].
pub(crate) fn canonicalize_tracked(
    g: &mut Graph,
    seeds: Vec<NodeId>,
    divisions: &mut HashSet<NodeId>,
) -> Result<CanonStats, IrError> {
    let mut queue: VecDeque<NodeId> = VecDeque::new();
    let mut queued = vec![false; g.node_bound()];
    let push = |q: &mut VecDeque<NodeId>, queued: &mut Vec<bool>, id: NodeId| {
        if queued.len() <= id.index() {
            queued.resize(id.index() + 1, false);
        }
        if !std::mem::replace(&mut queued[id.index()], true) {
            q.push_back(id);
        }
    };
    for id in seeds {
        push(&mut queue, &mut queued, id);
    }
    let mut cse: HashMap<u64, Vec<NodeId>> = HashMap::new();
    let mut stats = CanonStats::default();
    while let Some(id) = queue.pop_front() {
        queued[id.index()] = false;
        if !g.contains(id)
            || g.use_count(Value::first(id)) == 0 && g.node(id).types.len() == 1 && !is_live_leaf(g, id)
        {
            continue;
        }
        let replacement = match simplify(g, id, divisions)? {
            Some(v) => {
                stats.rewrites += 1;
                Some(v)
            }
            None if cse_candidate(g, id) => {
                let bucket = cse.entry(cse_hash(g, id)).or_default();
                bucket.retain(|&other| g.contains(other));
                match bucket.iter().find(|&&other| other != id && same_node(g, id, other)) {
                    Some(&other) => {
                        stats.merged += 1;
                        Some(Value::first(other))
                    }
                    None => {
                        bucket.push(id);
                        None
                    }
                }
            }
            None => None,
        };
        if let Some(new) = replacement {
            let users = g.users(id);
            g.replace_all_uses(Value::first(id), new);
            for u in users {
                push(&mut queue, &mut queued, u);
            }
            // The replacement and the nodes it was built from (a rewrite may create two
            // levels, e.g. reciprocal then mul) get their own turn.
            push(&mut queue, &mut queued, new.node);
            for operand in g.node(new.node).operands.clone() {
                push(&mut queue, &mut queued, operand.node);
            }
        }
    }
    Ok(stats)
}

fn is_live_leaf(g: &Graph, id: NodeId) -> bool {
    matches!(g.node(id).op, Op::Input)
}

/// Whether CSE considers node `id`: single-output, non-input nodes; constants only up to 64
/// elements (larger ones are weights, not worth comparing byte by byte).
fn cse_candidate(g: &Graph, id: NodeId) -> bool {
    let n = g.node(id);
    !matches!(n.op, Op::Input) && n.types.len() == 1 && !matches!(n.op.as_constant(), Some(t) if t.len() > 64)
}

/// A hash consistent with [`same_node`] (the op's [`Op::computation_hash`] and the operands).
fn cse_hash(g: &Graph, id: NodeId) -> u64 {
    let n = g.node(id);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    n.op.computation_hash(&mut h);
    n.operands.hash(&mut h);
    h.finish()
}

/// True when CSE candidates `a` and `b` compute the same value: the same computation
/// ([`Op::same_computation`], blocks by [`blockfuse_ir::Block::dyn_eq`]) on the same operands.
/// Named constants beyond 4 elements are parameters (`layers.0.norm.weight`): equal values
/// today, separate weights to the framework that maps them by name, so their names must agree.
fn same_node(g: &Graph, a: NodeId, b: NodeId) -> bool {
    let (x, y) = (g.node(a), g.node(b));
    let named = |n: &blockfuse_ir::Node| match (&n.op, &n.name) {
        (Op::Constant(t), Some(name)) if t.len() > 4 => Some(name.clone()),
        _ => None,
    };
    x.operands == y.operands && x.op.same_computation(&y.op) && named(x) == named(y)
}

/// The name a folded constant keeps: that of its only named weight operand (more than 4
/// elements; scalars such as Gemma's `+ 1` do not count), when this
/// node is that weight's only reader (so the name stays unique), e.g. a weight whose
/// cast or reshape is folded. Frameworks map weights by name.
fn reused_name(g: &Graph, node: &blockfuse_ir::Node) -> Option<String> {
    let weight = |v: &&Value| g.node(v.node).op.as_constant().is_some_and(|t| t.len() > 4);
    let mut named = node.operands.iter().filter(weight).filter(|v| g.node(v.node).name.is_some());
    let v = *named.next()?;
    let only_reader = g.use_count(v) == node.operands.iter().filter(|o| **o == v).count();
    (named.next().is_none() && only_reader).then(|| g.node(v.node).name.clone()).flatten()
}

/// One local simplification of node `id`, returning the value that replaces it.
fn simplify(g: &mut Graph, id: NodeId, divisions: &mut HashSet<NodeId>) -> Result<Option<Value>, IrError> {
    let node = g.node(id).clone();
    if node.types.len() != 1 || node.op.is_leaf() && !matches!(node.op, Op::Range { .. } | Op::Full { .. }) {
        return Ok(None);
    }
    let out = node.types[0].clone();
    let x = |i: usize| node.operands[i];
    let same_type = |g: &Graph, v: Value| *g.value_type(v) == out;
    // Constant folding.
    if !matches!(node.op, Op::Block(_)) {
        let consts: Option<Vec<_>> =
            node.operands.iter().map(|v| g.node(v.node).op.as_constant().cloned()).collect();
        if let Some(consts) = consts {
            let refs: Vec<_> = consts.iter().collect();
            if let Some(t) = fold(&node.op, &refs, &out) {
                let name = reused_name(g, &node);
                let mut b = Builder::new(g);
                let c = b.constant(t);
                b.graph_mut().set_name(c.node, name);
                return Ok(Some(c));
            }
        }
    }
    let mut b = Builder::new(g);
    let r = match &node.op {
        Op::Cast(d) => {
            let src = x(0);
            let src_node = b.graph().node(src.node).clone();
            if b.ty(src).dtype == *d {
                Some(src)
            } else if let (Op::Cast(_), Some(&inner)) = (&src_node.op, src_node.operands.first()) {
                // cast(cast(x: T → W) → T) = x when W holds every value of T exactly.
                (b.ty(inner).dtype == *d && widens(*d, b.ty(src).dtype)).then_some(inner)
            } else {
                None
            }
        }
        Op::Reshape { .. } | Op::Expand { .. } if same_type(b.graph(), x(0)) => Some(x(0)),
        Op::Reshape { shape } => match &b.graph().node(x(0).node).op {
            Op::Reshape { .. } => {
                let inner = b.graph().node(x(0).node).operands[0];
                Some(b.reshape(inner, shape.clone())?)
            }
            _ => fold_reshape_transpose_reshape(&mut b, x(0), shape)?,
        },
        Op::Transpose { perm } if perm.iter().enumerate().all(|(i, &p)| i == p) => Some(x(0)),
        Op::Transpose { perm } => match &b.graph().node(x(0).node).op {
            Op::Transpose { perm: inner } => {
                let composed: Vec<usize> = perm.iter().map(|&p| inner[p]).collect();
                let src = b.graph().node(x(0).node).operands[0];
                Some(b.transpose(src, &composed)?)
            }
            _ => None,
        },
        Op::Slice(spec) if is_full_slice(b.graph(), x(0), spec) => Some(x(0)),
        Op::Concat { .. } if node.operands.len() == 1 => Some(x(0)),
        Op::Binary(op) => simplify_binary(&mut b, *op, x(0), x(1), &out, divisions)?,
        // `where(c, a, b)` with a condition that is all true (all false) is `a` (`b`) when that
        // already has the result's type (e.g. the fully-masked-row guard of a mask with no
        // fully masked row).
        Op::Where => match scalar(b.graph(), x(0)) {
            Some(c) if same_type(b.graph(), x(if c != 0.0 { 1 } else { 2 })) => {
                Some(x(if c != 0.0 { 1 } else { 2 }))
            }
            _ => None,
        },
        Op::Unary(UnaryOp::Reciprocal) => match producer(b.graph(), x(0)) {
            Some((Op::Unary(UnaryOp::Sqrt), inner)) => Some(b.unary(UnaryOp::Rsqrt, inner)?),
            _ => None,
        },
        _ => None,
    };
    Ok(r.filter(|v| *v != Value::first(id)))
}

fn producer(g: &Graph, v: Value) -> Option<(Op, Value)> {
    let n = g.node(v.node);
    (n.operands.len() == 1).then(|| (n.op.clone(), n.operands[0]))
}

fn simplify_binary(
    b: &mut Builder<'_>,
    op: BinaryOp,
    l: Value,
    r: Value,
    out: &blockfuse_ir::TensorType,
    divisions: &mut HashSet<NodeId>,
) -> Result<Option<Value>, IrError> {
    let g = b.graph();
    let float = out.dtype.is_float();
    let keeps = |v: Value| g.value_type(v) == out;
    let (sl, sr) = (scalar(g, l), scalar(g, r));
    Ok(match op {
        BinaryOp::Mul if sr == Some(1.0) && keeps(l) => Some(l),
        BinaryOp::Mul if sl == Some(1.0) && keeps(r) => Some(r),
        BinaryOp::Add if sr == Some(0.0) && keeps(l) => Some(l),
        BinaryOp::Add if sl == Some(0.0) && keeps(r) => Some(r),
        BinaryOp::Sub if sr == Some(0.0) && keeps(l) => Some(l),
        BinaryOp::Div if sr == Some(1.0) && keeps(l) => Some(l),
        BinaryOp::Mul if l == r && float => Some(b.unary(UnaryOp::Square, l)?),
        BinaryOp::Div if float => {
            let recip = b.unary(UnaryOp::Reciprocal, r)?;
            let m = b.mul(l, recip)?;
            divisions.insert(m.node);
            Some(m)
        }
        BinaryOp::Pow if float => match sr {
            Some(2.0) => Some(b.unary(UnaryOp::Square, l)?),
            // pow(−∞, ±0.5) is +∞ / +0 where sqrt and rsqrt give NaN, and pow(−0, −0.5) is
            // +∞ where rsqrt gives −∞: only a base that is NaN or ≥ +0 is rewritten.
            Some(0.5) if nonnegative(g, l) => Some(b.unary(UnaryOp::Sqrt, l)?),
            Some(-0.5) if nonnegative(g, l) => Some(b.unary(UnaryOp::Rsqrt, l)?),
            Some(-1.0) => Some(b.unary(UnaryOp::Reciprocal, l)?),
            Some(1.0) if keeps(l) => Some(l),
            Some(3.0) => {
                let sq = b.unary(UnaryOp::Square, l)?;
                Some(b.mul(l, sq)?)
            }
            _ => None,
        },
        BinaryOp::Mul => sum_times_inverse_count(b, l, r)?.or(sum_times_inverse_count(b, r, l)?),
        _ => None,
    })
}

/// Turns back into divisions the multiplications that canonicalization made of divisions and
/// that no rule consumed: `a · (1/b)` (`a · rsqrt(v)` for `a / sqrt(v)`) rounds once more than
/// `a / b`, and what follows can amplify that ulp without bound (`y / y` is exactly 1, `y · (1/y)`
/// is not, and a LayerNorm of that row divides the difference by √ε; found by fuzz/optimize_eval).
/// Returns how many it restored.
pub(crate) fn restore_divisions(g: &mut Graph, divisions: &HashSet<NodeId>) -> Result<usize, IrError> {
    let mut ids: Vec<NodeId> = divisions.iter().copied().filter(|&id| g.contains(id)).collect();
    ids.sort();
    let mut restored = 0;
    for id in ids {
        let node = g.node(id).clone();
        let (Op::Binary(BinaryOp::Mul), &[a, r]) = (&node.op, node.operands.as_slice()) else {
            continue;
        };
        let den = g.node(r.node).clone();
        let mut b = Builder::new(g);
        let d = match (&den.op, den.operands.as_slice()) {
            (Op::Unary(UnaryOp::Reciprocal), &[x]) => b.binary(BinaryOp::Div, a, x)?,
            (Op::Unary(UnaryOp::Rsqrt), &[v]) => {
                let s = b.unary(UnaryOp::Sqrt, v)?;
                b.binary(BinaryOp::Div, a, s)?
            }
            _ => continue,
        };
        if g.value_type(d) == g.value_type(Value::first(id)) {
            g.set_name(d.node, node.name.clone());
            g.replace_all_uses(Value::first(id), d);
            restored += 1;
        }
    }
    g.remove_dead();
    Ok(restored)
}

/// `reduce_sum(x, axes) · (1/N)` with N the number of reduced elements → `reduce_mean`.
fn sum_times_inverse_count(b: &mut Builder<'_>, sum: Value, c: Value) -> Result<Option<Value>, IrError> {
    let g = b.graph();
    let (Some(k), Op::Reduce { op: ReduceOp::Sum, axes, keepdims }) = (scalar(g, c), &g.node(sum.node).op)
    else {
        return Ok(None);
    };
    let x = g.node(sum.node).operands[0];
    let ty = g.value_type(x);
    let Ok(reduced) = blockfuse_ir::infer::reduced_axes(axes, ty.rank()) else {
        return Ok(None);
    };
    let count: Option<usize> = reduced.iter().map(|&a| ty.shape[a].known()).product();
    // k finite: with k = ±∞ the relative test below reads ∞ ≤ ∞ (found by fuzz/optimize_eval).
    let is_mean =
        count.is_some_and(|n| n > 0 && k.is_finite() && ((1.0 / n as f64) - k).abs() <= 1e-6 * k.abs());
    let widen = g.value_type(c).rank() > g.value_type(sum).rank();
    if !is_mean || widen || !ty.dtype.is_float() {
        return Ok(None);
    }
    let (axes, keepdims) = (axes.clone(), *keepdims);
    Ok(Some(b.reduce(ReduceOp::Mean, x, &axes, keepdims)?))
}

/// True when every value of `from` is exactly a value of `to`.
fn widens(from: DType, to: DType) -> bool {
    use DType::*;
    matches!(
        (from, to),
        (F16 | BF16, F32 | F64)
            | (F32, F64)
            | (I32 | I8 | U8 | Bool, I64)
            | (I8 | U8 | Bool, I32)
            | (Bool, I8 | U8)
    )
}

fn is_full_slice(g: &Graph, x: Value, spec: &blockfuse_ir::SliceSpec) -> bool {
    let ty = g.value_type(x);
    spec.axes.iter().enumerate().all(|(i, &a)| {
        let Some(dim) = ty.dim(a) else { return false };
        let full_end = match (&spec.ends[i], dim) {
            (Bound::Const(e), Dim::Known(n)) => *e >= *n as i64,
            (Bound::Const(e), _) => *e >= i64::MAX / 2,
            (Bound::Dim(e), d) => e == d,
        };
        spec.steps[i] == 1 && spec.starts[i] == Bound::Const(0) && full_end
    })
}

/// `reshape(transpose(reshape(x, [P, a, b]), [0, 2, 1]), [lead.., b, a])` with P the product
/// of `lead` is `transpose(reshape(x, [lead.., a, b]))` of the last two axes: the 3-D spelling
/// of `k.transpose(-2, -1)` that some exporters emit.
fn fold_reshape_transpose_reshape(
    b: &mut Builder<'_>,
    t: Value,
    shape: &[Dim],
) -> Result<Option<Value>, IrError> {
    let g = b.graph();
    let Op::Transpose { perm } = &g.node(t.node).op else {
        return Ok(None);
    };
    if perm != &[0, 2, 1] {
        return Ok(None);
    }
    let r1 = g.node(t.node).operands[0];
    if !matches!(g.node(r1.node).op, Op::Reshape { .. }) {
        return Ok(None);
    }
    let x = g.node(r1.node).operands[0];
    let r1s = g.value_type(r1).shape.clone();
    let r = shape.len();
    if r < 3 {
        return Ok(None);
    }
    let lead = &shape[..r - 2];
    let lead_size = lead.iter().fold(Dim::Known(1), |acc, d| acc.mul(d));
    if lead_size != r1s[0] || shape[r - 2] != r1s[2] || shape[r - 1] != r1s[1] {
        return Ok(None);
    }
    let mut unflat: Vec<Dim> = lead.to_vec();
    unflat.push(r1s[1].clone());
    unflat.push(r1s[2].clone());
    let y = b.reshape(x, unflat)?;
    let mut p: Vec<usize> = (0..r).collect();
    p.swap(r - 2, r - 1);
    Ok(Some(b.transpose(y, &p)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockfuse_ir::{Builder, DType, Dim, TensorType};

    /// `reduce_sum(x) · k` over 8 elements, canonicalized: the dump.
    fn sum_times(k: f64) -> String {
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let x = b.input("x", TensorType::new(DType::F32, [Dim::sym("batch"), Dim::Known(8)]));
        let s = b.reduce(ReduceOp::Sum, x, &[-1], true).unwrap();
        let c = b.scalar(DType::F32, k);
        let y = b.mul(c, s).unwrap();
        g.add_output("y", y);
        canonicalize(&mut g).unwrap();
        blockfuse_ir::text::dump(&g).unwrap()
    }

    /// `pow(base, e)` canonicalized: the dump.
    fn pow_of(e: f64, norm: bool) -> String {
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let x = b.input("x", TensorType::new(DType::F32, [Dim::Known(2), Dim::Known(8)]));
        let base = if norm {
            // mean(x²) + eps, as RMSNorm spells it: never −∞ or −0.
            let sq = b.unary(UnaryOp::Square, x).unwrap();
            let m = b.reduce(ReduceOp::Mean, sq, &[-1], true).unwrap();
            let eps = b.scalar(DType::F32, 1e-6);
            b.binary(BinaryOp::Add, m, eps).unwrap()
        } else {
            x
        };
        let c = b.scalar(DType::F32, e);
        let y = b.binary(BinaryOp::Pow, base, c).unwrap();
        g.add_output("y", y);
        canonicalize(&mut g).unwrap();
        blockfuse_ir::text::dump(&g).unwrap()
    }

    /// Found by the `optimize_eval` fuzzer (`fuzz/findings/optimize_eval/pow-half-at-neg-inf-*`):
    /// `pow(y, 0.5)` became `sqrt(y)`, NaN at y = −∞ where the power is +∞.
    #[test]
    fn half_powers_of_a_base_that_may_be_neg_inf_stay_powers() {
        for e in [0.5, -0.5] {
            let d = pow_of(e, false);
            assert!(d.contains("pow(") && !d.contains("sqrt("), "{d}");
        }
        assert!(pow_of(0.5, true).contains("sqrt("), "{}", pow_of(0.5, true));
        assert!(pow_of(-0.5, true).contains("rsqrt("), "{}", pow_of(-0.5, true));
    }

    /// Found by the `optimize_eval` fuzzer (`fuzz/corpus/optimize_eval/crash-div-ulp-*`): an
    /// unfused `y / y` came out of `optimize` as `y · (1/y)`, 1 ± 1 ulp instead of exactly 1,
    /// which a LayerNorm (÷√ε) or `pow(y, y/y)` of a negative y amplified. The divisions no rule
    /// consumed are divisions again; a fused one (RMSNorm's `x / sqrt(…)`) is still fused.
    #[test]
    fn unfused_divisions_stay_divisions() {
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let y = b.input("y", TensorType::new(DType::F32, [Dim::Known(2), Dim::Known(4)]));
        let one = b.binary(BinaryOp::Div, y, y).unwrap();
        let p = b.binary(BinaryOp::Pow, y, one).unwrap();
        let sq = b.unary(UnaryOp::Square, y).unwrap();
        let m = b.reduce(ReduceOp::Mean, sq, &[-1], true).unwrap();
        let eps = b.scalar(DType::F32, 1e-6);
        let v = b.binary(BinaryOp::Add, m, eps).unwrap();
        let r = b.unary(UnaryOp::Sqrt, v).unwrap();
        let n = b.binary(BinaryOp::Div, y, r).unwrap();
        let z = b.binary(BinaryOp::Sub, one, p).unwrap();
        let z = b.binary(BinaryOp::Add, z, n).unwrap();
        g.add_output("z", z);
        let report = crate::optimize(&mut g, &crate::default_rules()).unwrap();
        let d = blockfuse_ir::text::dump(&g).unwrap();
        assert_eq!(report.blocks.get("rms_norm").copied(), Some(1), "{d}");
        assert!(d.contains("div(%0, %0)") && !d.contains("reciprocal"), "{d}");
        // Without any fusion in the graph too.
        let mut g2 = Graph::new();
        let mut b2 = Builder::new(&mut g2);
        let y2 = b2.input("y", TensorType::new(DType::F32, [Dim::Known(2), Dim::Known(4)]));
        let one2 = b2.binary(BinaryOp::Div, y2, y2).unwrap();
        let p2 = b2.binary(BinaryOp::Pow, y2, one2).unwrap();
        let z2 = b2.binary(BinaryOp::Sub, one2, p2).unwrap();
        g2.add_output("z", z2);
        crate::optimize(&mut g2, &crate::default_rules()).unwrap();
        let d2 = blockfuse_ir::text::dump(&g2).unwrap();
        assert!(d2.contains("div(%0, %0)") && !d2.contains("reciprocal"), "{d2}");
    }

    #[test]
    fn sum_times_one_over_n_is_a_mean() {
        assert!(sum_times(0.125).contains("reduce_mean"), "{}", sum_times(0.125));
    }

    /// Found by `fuzz/optimize_eval`: `−∞ · sum(x)` became `mean(x)` (|1/8 + ∞| ≤ 1e-6·∞).
    #[test]
    fn sum_times_infinity_is_not_a_mean() {
        for k in [f64::NEG_INFINITY, f64::INFINITY, f64::NAN] {
            let d = sum_times(k);
            assert!(!d.contains("reduce_mean") && d.contains("reduce_sum"), "{k}: {d}");
        }
    }
}
