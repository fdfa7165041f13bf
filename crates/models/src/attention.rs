//! One eager attention, `softmax(logits(q, k)) · v` in primitive ops with the logits left to
//! the caller: the graphs on which the tests of the `sdpa` fusion (crates/patterns) and of
//! the backends' masked and fully masked rows (crates/mlx-backend) vary the scale, the mask
//! and its fill value.

use blockfuse_ir::{Builder, DType, Graph, IrError, TensorType, Value};

/// Attention over f32 inputs `q` `{1, heads, tq, hd}` and `k`, `v` `{1, heads, tk, hd}`:
/// `out = softmax(logits(q, k), -1) · v`. `logits` writes the scores (and any mask) with the
/// builder, typically from [`scaled_scores`].
pub fn eager_attention(
    heads: usize,
    (tq, tk): (usize, usize),
    hd: usize,
    logits: impl FnOnce(&mut Builder<'_>, Value, Value) -> Value,
) -> Result<Graph, IrError> {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", TensorType::known(DType::F32, &[1, heads, tq, hd]));
    let k = b.input("k", TensorType::known(DType::F32, &[1, heads, tk, hd]));
    let v = b.input("v", TensorType::known(DType::F32, &[1, heads, tk, hd]));
    let s = logits(&mut b, q, k);
    let p = b.softmax(s, -1)?;
    let o = b.matmul(p, v)?;
    g.add_output("out", o);
    Ok(g)
}

/// The scores `q · kᵀ / √hd`, divided as exporters write the scale.
pub fn scaled_scores(b: &mut Builder<'_>, q: Value, k: Value, hd: usize) -> Result<Value, IrError> {
    let kt = b.transpose(k, &[0, 1, 3, 2])?;
    let s = b.matmul(q, kt)?;
    let c = b.scalar_like(s, (hd as f64).sqrt());
    b.div(s, c)
}

/// A boolean mask `m` applied with `where`: `where(m, s, fill)` when `keep` (true keeps the
/// score), else `where(m, fill, s)` (true masks it).
pub fn where_masked(
    b: &mut Builder<'_>,
    m: Value,
    s: Value,
    fill: f64,
    keep: bool,
) -> Result<Value, IrError> {
    let f = b.scalar_like(s, fill);
    if keep {
        b.select(m, s, f)
    } else {
        b.select(m, f, s)
    }
}
