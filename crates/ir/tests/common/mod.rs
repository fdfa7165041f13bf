//! Shared by the IR's integration tests: a test block, a registry that knows it, graph
//! builders and the round-trip check.
#![allow(dead_code)]

use blockfuse_ir::block::BlockRegistry;
use blockfuse_ir::*;
use serde::{Deserialize, Serialize};

/// The kind the test block registers under.
pub const TEST_BLOCK: &str = "test_rms_norm";

/// A small test block: `x · rsqrt(mean(x², -1) + eps) · w` over operands `(x, w)`.
/// One test block proves the JSON/registry mechanism.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestRmsNorm {
    pub eps: f64,
}

impl TestRmsNorm {
    const KIND: &'static str = TEST_BLOCK;
}

impl Block for TestRmsNorm {
    blockfuse_ir::block_identity!();

    fn infer(&self, inputs: &[TensorType]) -> Result<Vec<TensorType>, String> {
        let [x, w] = inputs else {
            return Err(format!("{TEST_BLOCK}: takes (x, weight), got {} operand(s)", inputs.len()));
        };
        if !x.dtype.is_float() || w.dtype != x.dtype {
            return Err(format!(
                "{TEST_BLOCK}: x and weight must share a float dtype, got {} and {}",
                x.dtype, w.dtype
            ));
        }
        let last = x.dim(-1).ok_or_else(|| format!("{TEST_BLOCK}: x has no axes"))?;
        if w.rank() != 1 || &w.shape[0] != last {
            return Err(format!("{TEST_BLOCK}: weight is {w}, the last axis of x has {last}"));
        }
        Ok(vec![x.clone()])
    }

    fn fallback(&self, b: &mut Builder<'_>, inputs: &[Value]) -> Result<Vec<Value>, IrError> {
        Ok(vec![rms_norm_ops(b, inputs[0], inputs[1], self.eps)?])
    }
}

/// `x · rsqrt(mean(x², -1) + eps) · w` in primitive ops (`eps` a constant of x's dtype):
/// the test block's fallback and the composed graphs the tests build.
pub fn rms_norm_ops(b: &mut Builder<'_>, x: Value, w: Value, eps: f64) -> Result<Value, IrError> {
    let sq = b.unary(UnaryOp::Square, x)?;
    let m = b.mean_last(sq)?;
    let eps = b.scalar_like(x, eps);
    let a = b.add2(m, eps)?;
    let r = b.unary(UnaryOp::Rsqrt, a)?;
    let y = b.mul(x, r)?;
    b.mul(y, w)
}

/// A registry holding only the test block.
pub fn registry() -> BlockRegistry {
    let mut r = BlockRegistry::new();
    r.register::<TestRmsNorm>(TEST_BLOCK);
    r
}

pub fn sym(name: &str) -> Dim {
    Dim::sym(name)
}

pub fn k(n: usize) -> Dim {
    Dim::Known(n)
}

pub fn ty(dtype: DType, dims: &[Dim]) -> TensorType {
    TensorType::new(dtype, dims.iter().cloned())
}

pub fn f32t(dims: &[Dim]) -> TensorType {
    ty(DType::F32, dims)
}

/// `batch*seq`
pub fn batch_seq() -> Dim {
    sym("batch").mul(&sym("seq"))
}

/// The constants of a graph in topological order: (dtype, dims, bytes).
pub fn constants(g: &Graph) -> Vec<(DType, Vec<usize>, Vec<u8>)> {
    g.topo_order()
        .unwrap()
        .into_iter()
        .filter_map(|id| g.node(id).op.as_constant().cloned())
        .map(|t| (t.dtype(), t.dims().to_vec(), t.bytes().to_vec()))
        .collect()
}

/// Checks `to_json(from_json(to_json(g))) == to_json(g)`, equal text dumps, equal constant
/// bytes, equal inputs and outputs; returns the graph read back.
pub fn assert_roundtrip(g: &Graph, registry: &BlockRegistry) -> Graph {
    g.validate().expect("the original graph is valid");
    let js = json::to_json(g).unwrap();
    let g2 = json::from_json_with(&js, registry).unwrap_or_else(|e| panic!("{e}\n{js}"));
    g2.validate().expect("the graph read back is valid");
    assert_eq!(json::to_json(&g2).unwrap(), js, "JSON differs after a round trip");
    assert_eq!(text::dump(&g2).unwrap(), text::dump(g).unwrap(), "text dump differs after a round trip");
    assert_eq!(constants(&g2), constants(g), "constant bytes differ");
    let inputs = |g: &Graph| -> Vec<(Option<String>, TensorType)> {
        g.inputs().iter().map(|&id| (g.node(id).name.clone(), g.node(id).types[0].clone())).collect()
    };
    assert_eq!(inputs(&g2), inputs(g));
    let outputs = |g: &Graph| -> Vec<(String, TensorType)> {
        g.outputs().iter().map(|(n, v)| (n.clone(), g.value_type(*v).clone())).collect()
    };
    assert_eq!(outputs(&g2), outputs(g));
    assert_eq!(g2.node_count(), g.node_count());
    assert_eq!(g2.op_histogram(), g.op_histogram());
    g2
}

/// RMSNorm written out in primitive ops over `x: f32[batch, seq, 64]` with a weight constant.
pub fn rms_norm_graph() -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", f32t(&[sym("batch"), sym("seq"), k(64)]));
    let w = b.constant(HostTensor::from_f32(
        vec![64],
        &(0..64).map(|i| 1.0 + i as f32 / 64.0).collect::<Vec<_>>(),
    ));
    b.graph_mut().set_name(w.node, Some("model.norm.weight".into()));
    let y = rms_norm_ops(&mut b, x, w, 1e-6).unwrap();
    g.add_output("y", y);
    g
}

/// Single-head causal attention over `q, k, v: f32[batch, seq, 64]` with a transposed key,
/// scaled scores, a causal mask from `trilu` + `where`, softmax and a second matmul.
pub fn attention_graph() -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let t = f32t(&[sym("batch"), sym("seq"), k(64)]);
    let q = b.input("q", t.clone());
    let kk = b.input("k", t.clone());
    let v = b.input("v", t);
    let kt = b.transpose(kk, &[0, 2, 1]).unwrap();
    let s = b.matmul(q, kt).unwrap();
    let scale = b.scalar(DType::F32, 0.125);
    let s = b.mul(s, scale).unwrap();
    let ones =
        b.add(Op::Full { shape: vec![sym("seq"), sym("seq")], value: 1.0, dtype: DType::F32 }, &[]).unwrap();
    let tri = b.add(Op::Trilu { upper: false, k: 0 }, &[ones]).unwrap();
    let zero = b.scalar(DType::F32, 0.0);
    let keep = b.binary(BinaryOp::Greater, tri, zero).unwrap();
    let ninf = b.scalar(DType::F32, f64::NEG_INFINITY);
    let masked = b.select(keep, s, ninf).unwrap();
    let p = b.softmax(masked, -1).unwrap();
    let o = b.matmul(p, v).unwrap();
    g.add_output("out", o);
    g
}

/// A residual add followed by the test block: `y = test_rms_norm(x + r, w)`.
pub fn block_graph() -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", f32t(&[sym("batch"), sym("seq"), k(8)]));
    let r = b.input("residual", f32t(&[sym("batch"), sym("seq"), k(8)]));
    let h = b.add2(x, r).unwrap();
    let w = b.constant(HostTensor::from_f32(vec![8], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]));
    b.graph_mut().set_name(w.node, Some("norm.weight".into()));
    let y = b.block(TestRmsNorm { eps: 1e-5 }, &[h, w]).unwrap();
    g.add_output("h", h);
    g.add_output("y", y[0]);
    g
}

/// A fused QKV projection output split three ways along the last axis, one use each.
pub fn split_graph() -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("qkv", f32t(&[sym("batch"), sym("seq"), k(96)]));
    let parts = b.add_multi(Op::Split { axis: -1, sizes: vec![k(32), k(32), k(32)] }, &[x]).unwrap();
    let qk = b.mul(parts[0], parts[1]).unwrap();
    let y = b.add2(qk, parts[2]).unwrap();
    g.add_output("y", y);
    g.add_output("v", parts[2]);
    g
}

/// Symbolic dims everywhere: products, sums, symbolic slice bounds, ranges, fills.
pub fn symbolic_graph() -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", f32t(&[sym("batch"), sym("seq"), k(64)]));
    let past = b.input("past", f32t(&[sym("batch"), sym("seq"), k(64)]));
    // [batch, seq, 64] → [batch*seq, 64] → [batch, seq, 4, 16]
    let flat = b.reshape(x, vec![batch_seq(), k(64)]).unwrap();
    let heads = b.reshape(flat, vec![sym("batch"), sym("seq"), k(4), k(16)]).unwrap();
    // seq + seq = 2*seq, then a symbolic slice back to seq.
    let kv = b.concat(&[past, x], 1).unwrap();
    let first = b
        .add(
            Op::Slice(SliceSpec {
                axes: vec![1],
                starts: vec![Bound::Const(0)],
                ends: vec![Bound::Dim(sym("seq"))],
                steps: vec![1],
            }),
            &[kv],
        )
        .unwrap();
    let tail = b
        .add(
            Op::Slice(SliceSpec {
                axes: vec![1, 2],
                starts: vec![Bound::Const(0), Bound::Const(-1)],
                ends: vec![Bound::Const(i64::MAX), Bound::Const(i64::MIN)],
                steps: vec![1, -2],
            }),
            &[kv],
        )
        .unwrap();
    let halves = b.add_multi(Op::Split { axis: 1, sizes: vec![sym("seq"), sym("seq")] }, &[kv]).unwrap();
    let pos = b.add(Op::Range { start: 0.0, step: 1.0, len: sym("seq"), dtype: DType::I64 }, &[]).unwrap();
    let shape = b.add(Op::SymConst(vec![sym("batch"), batch_seq(), k(64)]), &[]).unwrap();
    let fill = b
        .add(Op::Full { shape: vec![batch_seq(), k(64)], value: f64::INFINITY, dtype: DType::F32 }, &[])
        .unwrap();
    // A dead node: kept by the format like any other.
    b.expand(first, vec![k(1), sym("seq"), k(64)]).unwrap();
    for (n, v) in [
        ("heads", heads),
        ("first", first),
        ("tail", tail),
        ("h0", halves[0]),
        ("h1", halves[1]),
        ("pos", pos),
        ("shape", shape),
        ("fill", fill),
    ] {
        b.graph_mut().add_output(n, v);
    }
    g
}

/// One node of every primitive op (and every unary/binary/reduce name).
pub fn every_op_graph() -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", f32t(&[sym("batch"), k(4), k(8)]));
    let flag = b.input("flag", ty(DType::Bool, &[sym("batch"), k(4), k(8)]));
    let mut outs = vec![];
    for &u in UnaryOp::ALL {
        let arg = if u == UnaryOp::Not { flag } else { x };
        outs.push(b.unary(u, arg).unwrap());
    }
    for &op in BinaryOp::ALL {
        let arg = if op.is_logical() { flag } else { x };
        outs.push(b.binary(op, arg, arg).unwrap());
    }
    for &op in ReduceOp::ALL {
        outs.push(b.reduce(op, x, &[1, -1], op == ReduceOp::Mean).unwrap());
    }
    outs.push(b.reduce(ReduceOp::Sum, x, &[], false).unwrap());
    outs.push(b.select(flag, x, x).unwrap());
    outs.push(b.cast(x, DType::F16).unwrap());
    outs.push(b.softmax(x, 1).unwrap());
    let xt = b.transpose(x, &[0, 2, 1]).unwrap();
    outs.push(b.matmul(x, xt).unwrap());
    outs.push(b.reshape(x, vec![sym("batch"), k(32)]).unwrap());
    let one = b.reduce(ReduceOp::Max, x, &[0], true).unwrap();
    outs.push(b.expand(one, vec![k(3), k(4), k(8)]).unwrap());
    outs.push(b.slice_axis(x, 2, 1, -1).unwrap());
    outs.push(b.concat(&[x, x, x], -1).unwrap());
    outs.extend(b.add_multi(Op::Split { axis: 2, sizes: vec![k(2), k(6)] }, &[x]).unwrap());
    let idx = b.constant(HostTensor::from_i64(vec![3], &[0, 2, -1]));
    outs.push(b.add(Op::Gather { axis: 1 }, &[x, idx]).unwrap());
    outs.push(b.add(Op::Range { start: 0.5, step: -0.25, len: k(5), dtype: DType::F32 }, &[]).unwrap());
    outs.push(
        b.add(Op::Full { shape: vec![sym("batch")], value: f64::NAN, dtype: DType::F16 }, &[]).unwrap(),
    );
    outs.push(b.add(Op::Trilu { upper: true, k: -1 }, &[x]).unwrap());
    let two = b.slice_axis(x, 1, 1, 3).unwrap();
    let at = b.constant(HostTensor::from_i64(vec![], &[1]));
    outs.push(b.add(Op::SliceUpdate { axis: 1 }, &[x, two, at]).unwrap());
    outs.push(b.add(Op::SymConst(vec![sym("batch"), k(4)]), &[]).unwrap());
    for (i, v) in outs.into_iter().enumerate() {
        b.graph_mut().add_output(&format!("o{i}"), v);
    }
    g
}
