//! Where q, k and v come from: kᵀ as a transpose of k (with any scale peeled off either side
//! of the transpose), and `repeat_kv` (Unsqueeze/Expand/Reshape) folded into native GQA.

use crate::analysis::scale;
use crate::rule::require;
use blockfuse_ir::{Dim, Graph, Op, Value};

/// k `{B, N, Tk, D}` as the block wants it, from kᵀ.
#[derive(Debug, Clone)]
pub(super) struct KeyLayout {
    /// The source of the transpose (scales peeled off).
    pub k: Value,
    /// The permutation that turns `k` into `{B, N, Tk, D}` (`None`: it already is).
    pub perm: Option<Vec<usize>>,
    /// The scale peeled off k before its transpose.
    pub factor: f64,
}

/// The perm of a transpose node and its operand, if `v` is one.
fn transpose_perm(g: &Graph, v: Value) -> Option<(Vec<usize>, Value)> {
    match &g.node(v.node).op {
        Op::Transpose { perm } => Some((perm.clone(), g.node(v.node).operands[0])),
        _ => None,
    }
}

/// How to get k from kᵀ: a plain last-two-axes transpose, or another permutation when v is
/// laid out by the very same one (heads split the same way).
pub(super) fn key_layout(g: &Graph, kt: Value, v: Value) -> Result<KeyLayout, String> {
    let (perm, src) = transpose_perm(g, kt).ok_or("the key operand is not a transpose of k")?;
    let r = perm.len();
    require(r == 4, "kᵀ is not 4-D {B, N, D, Tk}")?;
    let mut k_perm = perm.clone();
    k_perm.swap(r - 2, r - 1);
    let identity = k_perm.iter().enumerate().all(|(i, &p)| i == p);
    let same_as_v = transpose_perm(g, v).is_some_and(|(pv, _)| pv == k_perm);
    require(
        identity || same_as_v,
        format!("key permutation {perm:?} is not a transpose of the last two axes"),
    )?;
    let peeled = scale::peel(g, src);
    Ok(KeyLayout { k: peeled.base, perm: (!identity).then_some(k_perm), factor: peeled.factor })
}

/// `reshape(expand(reshape(k, [B, N, 1, T, D]), [B, N, r, T, D]), [B, N·r, T, D])` → k.
pub(super) fn strip_repeat_kv(g: &Graph, v: Value) -> Value {
    let step = |v: Value, want: fn(&Op) -> bool| {
        let n = g.node(v.node);
        want(&n.op).then(|| n.operands[0])
    };
    let Some(e) = step(v, |o| matches!(o, Op::Reshape { .. })) else { return v };
    let Some(u) = step(e, |o| matches!(o, Op::Expand { .. })) else { return v };
    let Some(k) = step(u, |o| matches!(o, Op::Reshape { .. })) else { return v };
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
