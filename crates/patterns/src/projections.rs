//! Horizontal fusion of projections: several `MatMul(x, Wᵢ)` (each optionally `+ bᵢ`) that
//! read the same activation `x` with constant 2-D weights (of x's dtype, as `MatMul` requires;
//! `{K, N}`, or `{N, K}` read through a transpose as unfolded exports write `x · Wᵀ`) become one
//! `MatMul(x, [W₁ | W₂ | …])` (`+ [b₁ | b₂ | …]`) followed by a `Split` along the last axis
//! that gives back each original output: attention's q/k/v projections, a gated MLP's
//! gate/up.
//!
//! Each output element is the same dot product over the same K values as before (the
//! concatenation only adds columns), so the outputs are unchanged; the f32 tests check them
//! bit for bit on the fallback evaluator. The weights are concatenated once, when the pass
//! runs, into a new constant named after the originals (`q_proj+k_proj+v_proj`); that copy is
//! held in memory (it is not the mapped file any more), which is why a group whose
//! concatenated weight exceeds [`ProjectionOptions::max_weight_bytes`] is left alone.
//!
//! This is a graph-level pass, not a [`Rule`](crate::Rule): it replaces several values at
//! once. [`crate::driver::optimize_with`] runs it after the fusion rules, so the blocks that
//! read projections (`rope`, `sdpa`, `swiglu`, ...) have formed already, and only when the
//! options ask for it ([`crate::OptimizeOptions::for_backend`]: the backends whose
//! capabilities say `horizontal_fusion`).

use crate::driver::NearMiss;
use blockfuse_ir::{BinaryOp, Builder, Dim, Graph, HostTensor, IrError, NodeId, Op, Value};
use std::collections::BTreeMap;

/// The name of the pass in reports (`rules`, near-misses).
pub const NAME: &str = "fuse_projections";

/// Limits of the horizontal fusion of projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectionOptions {
    /// The largest concatenated weight, in bytes, the pass makes (the copy lives in memory).
    pub max_weight_bytes: usize,
}

impl Default for ProjectionOptions {
    /// 512 MiB: Llama-3-8B's gate + up in bf16 (2 × 4096 × 14336 × 2 bytes = 235 MB) fuse;
    /// a 70B model's (940 MB) does not.
    fn default() -> Self {
        ProjectionOptions { max_weight_bytes: 512 << 20 }
    }
}

/// What the pass did: groups fused, and why candidates did not join a group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectionReport {
    /// Groups fused into one matmul.
    pub fused: usize,
    /// Matmuls replaced (the sum of the groups' sizes).
    pub matmuls: usize,
    /// Candidates left as they were, with the reason.
    pub near_misses: Vec<NearMiss>,
}

/// One projection: `MatMul(x, w)` with its optional bias add.
struct Member {
    matmul: NodeId,
    /// The weight constant: `{K, N}`, or `{N, K}` read through a transpose.
    weight: NodeId,
    /// The matmul reads `transpose(weight)` (exporters' `x · Wᵀ` without folding).
    transposed: bool,
    /// The bias add reading the product (its only reader) and the bias constant.
    bias: Option<(NodeId, NodeId)>,
}

/// Fuses every group of projections of `g` that reads one activation.
pub fn fuse_projections(g: &mut Graph, opts: ProjectionOptions) -> Result<ProjectionReport, IrError> {
    let mut report = ProjectionReport::default();
    // Matmuls by left operand, in topological order (deterministic), in one pass.
    let mut by_x: BTreeMap<Value, Vec<NodeId>> = BTreeMap::new();
    for id in g.topo_order()? {
        if matches!(g.node(id).op, Op::MatMul) {
            by_x.entry(g.node(id).operands[0]).or_default().push(id);
        }
    }
    for (x, matmuls) in by_x.into_iter().filter(|(_, m)| m.len() >= 2) {
        let (mut members, mut misses) = (Vec::new(), Vec::new());
        for &id in &matmuls {
            match member(g, id) {
                Ok(m) => members.push(m),
                Err(reason) => misses.push(miss(g, id, reason)),
            }
        }
        // Matmuls beside no projection (attention's `q·kᵀ`, `p·v`) are no near-misses.
        if members.is_empty() {
            continue;
        }
        report.near_misses.append(&mut misses);
        // `MatMul` needs x and w of one dtype, so the weights of one x share theirs; plain and
        // transposed weights form separate groups (each concatenates along its own N axis).
        let (transposed, plain): (Vec<Member>, Vec<Member>) = members.into_iter().partition(|m| m.transposed);
        for group in [plain, transposed].into_iter().filter(|g| g.len() >= 2) {
            let bytes: usize =
                group.iter().map(|m| g.node(m.weight).op.as_constant().map_or(0, |w| w.bytes().len())).sum();
            if bytes > opts.max_weight_bytes {
                let reason = format!(
                    "the {} weights together are {bytes} bytes, above the limit of {} bytes",
                    group.len(),
                    opts.max_weight_bytes
                );
                group.iter().for_each(|m| report.near_misses.push(miss(g, m.matmul, reason.clone())));
                continue;
            }
            rewrite(g, x, &group)?;
            report.fused += 1;
            report.matmuls += group.len();
        }
    }
    g.remove_dead();
    Ok(report)
}

fn miss(g: &Graph, id: NodeId, reason: String) -> NearMiss {
    NearMiss { rule: NAME.to_string(), node: g.label(id).to_string(), reason }
}

/// Node `id` as a projection, or why it is not one.
fn member(g: &Graph, id: NodeId) -> Result<Member, String> {
    let n = g.node(id);
    let (x, w) = (n.operands[0], n.operands[1]);
    let not_constant = || format!("its weight {} is not a constant", g.label(w.node));
    let (wnode, transposed) = match &g.node(w.node).op {
        Op::Constant(_) => (w.node, false),
        Op::Transpose { perm } if perm[..] == [1, 0] => (g.node(w.node).operands[0].node, true),
        _ => return Err(not_constant()),
    };
    let Op::Constant(weight) = &g.node(wnode).op else { return Err(not_constant()) };
    let xt = g.value_type(x);
    if weight.dims().len() != 2 || xt.rank() < 2 {
        return Err(format!(
            "x is {xt} and the weight {:?}: only x {{…, K}} against a 2-D weight {{K, N}} keeps every output \
             element the same dot product (a batched weight broadcasts x)",
            weight.dims()
        ));
    }
    if !weight.dtype().is_float() {
        return Err(format!("its weight is {}, not a float", weight.dtype()));
    }
    Ok(Member { matmul: id, weight: wnode, transposed, bias: bias_of(g, Value::first(id)) })
}

/// The bias add of the product `p` when it is `p`'s only reader and adds a constant vector
/// `{N}` of `p`'s dtype (so the sum keeps `p`'s type).
fn bias_of(g: &Graph, p: Value) -> Option<(NodeId, NodeId)> {
    let mut readers = g.consumers(p);
    let (add, _) = readers.next()?;
    if readers.next().is_some() || g.is_output(p) || !matches!(g.node(add).op, Op::Binary(BinaryOp::Add)) {
        return None;
    }
    let b = *g.node(add).operands.iter().find(|v| **v != p)?;
    let t = g.node(b.node).op.as_constant()?;
    let pt = g.value_type(p);
    let n = pt.shape.last()?;
    let vector = t.dims().len() == 1 && *n == Dim::Known(t.dims()[0]) && t.dtype() == pt.dtype;
    (vector && g.value_type(Value::first(add)) == pt).then_some((add, b.node))
}

/// Concatenates the rows of 2-D tensors (equal row counts, one dtype) along the columns.
fn concat_columns(parts: &[&HostTensor]) -> Result<HostTensor, IrError> {
    let rows = parts[0].dims()[0];
    let size = parts[0].dtype().size_bytes();
    let widths: Vec<usize> = parts.iter().map(|p| p.dims()[1] * size).collect();
    let mut bytes = Vec::with_capacity(rows * widths.iter().sum::<usize>());
    for r in 0..rows {
        for (p, w) in parts.iter().zip(&widths) {
            bytes.extend_from_slice(&p.bytes()[r * w..(r + 1) * w]);
        }
    }
    let cols = widths.iter().sum::<usize>() / size;
    HostTensor::from_bytes(parts[0].dtype(), vec![rows, cols], bytes)
        .map_err(|e| IrError::Graph(e.to_string()))
}

/// Concatenates 2-D tensors (equal column counts, one dtype) along the rows.
fn concat_rows(parts: &[HostTensor]) -> Result<HostTensor, IrError> {
    let rows = parts.iter().map(|p| p.dims()[0]).sum();
    let bytes: Vec<u8> = parts.iter().flat_map(|p| p.bytes().iter().copied()).collect();
    HostTensor::from_bytes(parts[0].dtype(), vec![rows, parts[0].dims()[1]], bytes)
        .map_err(|e| IrError::Graph(e.to_string()))
}

/// Replaces the group by one matmul against the concatenated weight (and one bias add when
/// every member has a bias) and a split that gives back each member's value.
fn rewrite(g: &mut Graph, x: Value, group: &[Member]) -> Result<(), IrError> {
    let constant = |g: &Graph, id: NodeId| g.node(id).op.as_constant().expect("a constant").clone();
    let name = |g: &Graph, id: NodeId| g.node(id).name.clone().unwrap_or_else(|| g.label(id).to_string());
    let weights: Vec<HostTensor> = group.iter().map(|m| constant(g, m.weight)).collect();
    let transposed = group[0].transposed;
    // `{K, Nᵢ}` side by side; `{Nᵢ, K}` one after the other (then read through a transpose).
    let w = if transposed {
        concat_rows(&weights)?
    } else {
        concat_columns(&weights.iter().collect::<Vec<_>>())?
    };
    let w_name = group.iter().map(|m| name(g, m.weight)).collect::<Vec<_>>().join("+");
    let with_bias = group.iter().all(|m| m.bias.is_some());
    let bias = with_bias.then(|| {
        let bs: Vec<HostTensor> = group.iter().map(|m| constant(g, m.bias.expect("all").1)).collect();
        let rows: Vec<HostTensor> =
            bs.iter().map(|b| b.reshaped(vec![1, b.len()]).expect("same size")).collect();
        let names = group.iter().map(|m| name(g, m.bias.expect("all").1)).collect::<Vec<_>>().join("+");
        (rows, names)
    });
    let scope = group.iter().map(|m| name(g, m.matmul)).collect::<Vec<_>>().join("+");
    // What each member's readers read: the bias add when it is fused, else the product.
    let replaced: Vec<Value> = group
        .iter()
        .map(|m| Value::first(if with_bias { m.bias.expect("all").0 } else { m.matmul }))
        .collect();
    let sizes: Vec<Dim> = weights.iter().map(|w| Dim::Known(w.dims()[usize::from(!transposed)])).collect();
    let mut b = Builder::new(g);
    b.set_scope(Some(scope));
    let wv = b.constant(w);
    b.graph_mut().set_name(wv.node, Some(w_name));
    let wv = if transposed { b.transpose(wv, &[1, 0])? } else { wv };
    let mut y = b.matmul(x, wv)?;
    if let Some((rows, names)) = bias {
        let cat = concat_columns(&rows.iter().collect::<Vec<_>>())?;
        let n = cat.dims()[1];
        let bv = b.constant(cat.reshaped(vec![n]).map_err(|e| IrError::Graph(e.to_string()))?);
        b.graph_mut().set_name(bv.node, Some(names));
        y = b.add2(y, bv)?;
    }
    let parts = b.add_multi(Op::Split { axis: -1, sizes }, &[y])?;
    for (old, new) in replaced.iter().zip(parts) {
        g.replace_all_uses(*old, new);
    }
    Ok(())
}
