//! Shape and dtype inference: broadcasting, symbolic dims, reshape, matmul, reductions,
//! slices, concat, gather, split, and the errors that name what is wrong.

#![allow(clippy::cloned_ref_to_slice_refs)] // `&[x.clone()]` reads better here

mod common;

use blockfuse_ir::shape::{broadcast_shapes, Bindings};
use blockfuse_ir::*;
use common::*;
use std::sync::Arc;

/// Builds a graph with inputs of the given types and one op over them; returns its output
/// types or the error.
fn infer(op: Op, inputs: &[TensorType]) -> Result<Vec<TensorType>, IrError> {
    let mut g = Graph::new();
    let args: Vec<Value> =
        inputs.iter().enumerate().map(|(i, t)| g.add_input(&format!("in{i}"), t.clone())).collect();
    let id = g.add_node(op, &args, Some("probe".into()))?;
    g.validate().expect("a node that infers also validates");
    Ok(g.node(id).types.to_vec())
}

fn infer1(op: Op, inputs: &[TensorType]) -> String {
    let t = infer(op, inputs).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.len(), 1);
    t[0].to_string()
}

/// The reason of a `Type` error.
fn reason(op: Op, inputs: &[TensorType]) -> String {
    match infer(op, inputs) {
        Err(IrError::Type { reason, node, .. }) => {
            assert_eq!(node.name.as_deref(), Some("probe"));
            reason
        }
        other => panic!("expected a type error, got {other:?}"),
    }
}

fn t(dims: &[Dim]) -> TensorType {
    f32t(dims)
}

fn bin(op: BinaryOp) -> Op {
    Op::Binary(op)
}

fn slice(axes: &[i64], starts: &[Bound], ends: &[Bound], steps: &[i64]) -> Op {
    Op::Slice(SliceSpec {
        axes: axes.to_vec(),
        starts: starts.to_vec(),
        ends: ends.to_vec(),
        steps: steps.to_vec(),
    })
}

fn c(i: i64) -> Bound {
    Bound::Const(i)
}

// ---------------------------------------------------------------- dims

#[test]
fn dims_parse_display_and_canonical_form() {
    assert_eq!(Dim::parse("64").unwrap(), k(64));
    assert_eq!(Dim::parse(" seq ").unwrap(), sym("seq"));
    assert_eq!(Dim::parse("seq*batch").unwrap(), batch_seq());
    assert_eq!(Dim::parse("batch * seq").unwrap(), batch_seq());
    assert_eq!(Dim::parse("seq*2").unwrap().to_string(), "2*seq");
    assert_eq!(Dim::parse("2*3*seq").unwrap().to_string(), "6*seq");
    assert_eq!(Dim::parse("2*3").unwrap(), k(6));
    assert_eq!(Dim::parse("1*seq").unwrap(), sym("seq"));
    assert_eq!(batch_seq().to_string(), "batch*seq");
    assert_eq!(Dim::parse("seq + past_seq").unwrap().to_string(), "past_seq+seq");
    assert_eq!(Dim::parse("1+seq").unwrap().to_string(), "seq+1");
    assert_eq!(Dim::parse("seq+seq").unwrap().to_string(), "2*seq");
    for bad in ["", "seq+", "+seq", "2seq", "batch*", "-1", "*", "seq++past", "seq+-1"] {
        assert!(Dim::parse(bad).is_err(), "{bad:?} parsed");
    }
    // Symbols compare by name (case-sensitive); products are order-independent.
    assert_ne!(sym("seq"), sym("Seq"));
    assert_ne!(sym("seq"), sym("batch"));
    assert_eq!(sym("seq").mul(&sym("batch")), sym("batch").mul(&sym("seq")));
    assert!(sym("seq").is_symbol("seq"));
    assert!(!sym("seq").mul(&k(2)).is_symbol("seq"));
    let bs = batch_seq();
    let names: Vec<&str> = bs.symbols().map(|s| &**s).collect();
    assert_eq!(names, ["batch", "seq"]);
}

#[test]
fn dim_arithmetic() {
    let seq = sym("seq");
    assert_eq!(seq.add(&seq), Some(Dim::parse("2*seq").unwrap()));
    assert_eq!(seq.add(&seq.mul(&k(2))), Some(Dim::parse("3*seq").unwrap()));
    assert_eq!(k(3).add(&k(4)), Some(k(7)));
    assert_eq!(k(0).add(&seq), Some(seq.clone()));
    assert_eq!(seq.add(&k(1)), Some(Dim::parse("seq+1").unwrap()));
    assert_eq!(seq.add(&sym("batch")), Some(Dim::parse("batch+seq").unwrap()));
    assert_eq!(k(usize::MAX).add(&k(1)), None);
    assert_eq!(k(0).mul(&seq), k(0));
    assert_eq!(k(1).mul(&seq), seq);
    assert_eq!(batch_seq().div_exact(&seq), Some(sym("batch")));
    assert_eq!(Dim::parse("2*seq").unwrap().div_exact(&k(2)), Some(seq.clone()));
    assert_eq!(Dim::parse("2*seq").unwrap().div_exact(&seq), Some(k(2)));
    assert_eq!(seq.div_exact(&k(2)), None);
    assert_eq!(k(8).div_exact(&seq), None);
    assert_eq!(k(8).div_exact(&k(0)), None);
    assert_eq!(k(8).div_exact(&k(3)), None);
    let mut b = Bindings::new();
    b.insert(Arc::from("batch"), 3);
    b.insert(Arc::from("seq"), 5);
    assert_eq!(Dim::parse("2*batch*seq").unwrap().eval(&b), Some(30));
    assert_eq!(sym("heads").eval(&b), None);
    let ty = t(&[sym("batch"), seq.clone(), k(64)]);
    assert_eq!(ty.eval_dims(&b), Some(vec![3, 5, 64]));
    assert_eq!(ty.numel().to_string(), "64*batch*seq");
    assert_eq!(ty.dim(-1), Some(&k(64)));
    assert_eq!(ty.dim(3), None);
    assert_eq!(ty.known_dims(), None);
    assert_eq!(TensorType::known(DType::F32, &[2, 3]).known_dims(), Some(vec![2, 3]));
}

// ---------------------------------------------------------------- broadcasting

#[test]
fn broadcasting_known_symbolic_and_size_one() {
    let add = || bin(BinaryOp::Add);
    // Equal symbols.
    assert_eq!(
        infer1(add(), &[t(&[sym("batch"), sym("seq"), k(64)]), t(&[sym("batch"), sym("seq"), k(64)])]),
        "f32[batch, seq, 64]"
    );
    // Size 1 against symbols, either side, and rank extension.
    assert_eq!(
        infer1(add(), &[t(&[sym("batch"), k(1), k(64)]), t(&[sym("seq"), k(1)])]),
        "f32[batch, seq, 64]"
    );
    assert_eq!(infer1(add(), &[t(&[k(1), sym("seq")]), t(&[sym("batch"), k(1)])]), "f32[batch, seq]");
    // Scalars.
    assert_eq!(infer1(add(), &[t(&[]), t(&[sym("batch"), k(4)])]), "f32[batch, 4]");
    assert_eq!(infer1(add(), &[t(&[]), t(&[])]), "f32[]");
    // Products compare canonically.
    assert_eq!(
        infer1(add(), &[t(&[batch_seq(), k(64)]), t(&[Dim::parse("seq*batch").unwrap(), k(1)])]),
        "f32[batch*seq, 64]"
    );
    // Symbolic vs 1: the symbol wins; 1 vs 1 stays 1.
    assert_eq!(broadcast_shapes(&[k(1), k(1)], &[sym("n"), k(1)]).unwrap().to_vec(), vec![sym("n"), k(1)]);
}

#[test]
fn broadcast_mismatch_names_the_axis() {
    let r = reason(bin(BinaryOp::Mul), &[t(&[sym("batch"), sym("seq"), k(64)]), t(&[k(32)])]);
    assert_eq!(r, "cannot broadcast [batch, seq, 64] with [32]: axis 2 has 64 vs 32");
    // Different symbols do not broadcast (they may differ at run time).
    let r = reason(bin(BinaryOp::Add), &[t(&[sym("seq")]), t(&[sym("batch")])]);
    assert_eq!(r, "cannot broadcast [seq] with [batch]: axis 0 has seq vs batch");
    // A symbol against a known size ≠ 1.
    let r = reason(bin(BinaryOp::Add), &[t(&[sym("seq"), k(4)]), t(&[k(3), k(4)])]);
    assert!(r.contains("axis 0 has seq vs 3"), "{r}");
    // The full error names the node and the op.
    let e = infer(bin(BinaryOp::Add), &[t(&[k(2)]), t(&[k(3)])]).unwrap_err();
    assert_eq!(e.to_string(), "node %2 \"probe\" (add): cannot broadcast [2] with [3]: axis 0 has 2 vs 3");
}

#[test]
fn binary_dtype_rules() {
    let i = |d: DType| ty(d, &[k(4)]);
    assert_eq!(
        reason(bin(BinaryOp::Add), &[i(DType::F32), i(DType::I64)]),
        "operand dtypes differ: f32 vs i64"
    );
    assert_eq!(infer1(bin(BinaryOp::Less), &[i(DType::I64), i(DType::I64)]), "bool[4]");
    assert_eq!(infer1(bin(BinaryOp::Equal), &[i(DType::Bool), i(DType::Bool)]), "bool[4]");
    assert_eq!(infer1(bin(BinaryOp::And), &[i(DType::Bool), i(DType::Bool)]), "bool[4]");
    assert_eq!(reason(bin(BinaryOp::Or), &[i(DType::F32), i(DType::F32)]), "or needs bool operands, got f32");
    assert_eq!(reason(bin(BinaryOp::Add), &[i(DType::Bool), i(DType::Bool)]), "add needs numbers, got bool");
    assert_eq!(infer1(bin(BinaryOp::Mod), &[i(DType::I32), i(DType::I32)]), "i32[4]");
}

#[test]
fn unary_dtype_rules() {
    let i = |d: DType| ty(d, &[sym("n")]);
    assert_eq!(infer1(Op::Unary(UnaryOp::Exp), &[i(DType::BF16)]), "bf16[n]");
    assert_eq!(infer1(Op::Unary(UnaryOp::Neg), &[i(DType::I64)]), "i64[n]");
    assert_eq!(infer1(Op::Unary(UnaryOp::Not), &[i(DType::Bool)]), "bool[n]");
    assert_eq!(reason(Op::Unary(UnaryOp::Exp), &[i(DType::I64)]), "exp needs a float type, got i64");
    assert_eq!(reason(Op::Unary(UnaryOp::Not), &[i(DType::F32)]), "not needs bool, got f32");
    assert_eq!(reason(Op::Unary(UnaryOp::Abs), &[i(DType::Bool)]), "abs needs numbers, got bool");
    assert_eq!(infer1(Op::Cast(DType::F16), &[i(DType::I64)]), "f16[n]");
}

// ---------------------------------------------------------------- reshape / expand / transpose

#[test]
fn reshape_with_symbols() {
    let x = t(&[sym("batch"), sym("seq"), k(64)]);
    let flat = infer(Op::Reshape { shape: vec![batch_seq(), k(64)] }, &[x.clone()]).unwrap();
    assert_eq!(flat[0].to_string(), "f32[batch*seq, 64]");
    assert_eq!(
        infer1(Op::Reshape { shape: vec![sym("batch"), sym("seq"), k(4), k(16)] }, &[flat[0].clone()]),
        "f32[batch, seq, 4, 16]"
    );
    // Known factors may move between axes as long as the element count agrees.
    assert_eq!(
        infer1(Op::Reshape { shape: vec![sym("batch"), Dim::parse("4*seq").unwrap(), k(16)] }, &[x.clone()]),
        "f32[batch, 4*seq, 16]"
    );
    assert_eq!(infer1(Op::Reshape { shape: vec![k(6)] }, &[t(&[k(2), k(3)])]), "f32[6]");
}

#[test]
fn reshape_element_count_mismatch() {
    let r =
        reason(Op::Reshape { shape: vec![sym("batch"), k(64)] }, &[t(&[sym("batch"), sym("seq"), k(64)])]);
    assert_eq!(
        r,
        "cannot reshape [batch, seq, 64] (64*batch*seq elements) to [batch, 64] (64*batch elements)"
    );
    let r = reason(Op::Reshape { shape: vec![k(5)] }, &[t(&[k(2), k(3)])]);
    assert_eq!(r, "cannot reshape [2, 3] (6 elements) to [5] (5 elements)");
}

#[test]
fn expand_and_transpose() {
    assert_eq!(
        infer1(Op::Expand { shape: vec![sym("batch"), sym("seq"), k(64)] }, &[t(&[k(1), k(64)])]),
        "f32[batch, seq, 64]"
    );
    let r = reason(Op::Expand { shape: vec![k(3), k(64)] }, &[t(&[k(2), k(64)])]);
    assert!(r.contains("axis 0 has 2 vs 3"), "{r}");
    assert_eq!(
        infer1(Op::Transpose { perm: vec![0, 2, 1, 3] }, &[t(&[sym("batch"), sym("seq"), k(4), k(16)])]),
        "f32[batch, 4, seq, 16]"
    );
}

#[test]
fn bad_perm() {
    let x = t(&[k(2), k(3), k(4)]);
    for perm in [vec![0, 0, 1], vec![0, 1], vec![0, 1, 3], vec![0, 1, 2, 3]] {
        let r = reason(Op::Transpose { perm: perm.clone() }, &[x.clone()]);
        assert_eq!(r, format!("perm {perm:?} is not a permutation of 3 axes"));
    }
}

// ---------------------------------------------------------------- matmul

#[test]
fn matmul_batch_broadcasting() {
    let mm = || Op::MatMul;
    assert_eq!(infer1(mm(), &[t(&[k(2), k(3)]), t(&[k(3), k(4)])]), "f32[2, 4]");
    // Leading axes broadcast like elementwise ops.
    assert_eq!(
        infer1(mm(), &[t(&[sym("batch"), k(1), sym("seq"), k(16)]), t(&[k(4), k(16), sym("seq")])]),
        "f32[batch, 4, seq, seq]"
    );
    // A weight without batch axes.
    assert_eq!(
        infer1(mm(), &[t(&[sym("batch"), sym("seq"), k(64)]), t(&[k(64), k(256)])]),
        "f32[batch, seq, 256]"
    );
    // 1-D operands drop their axis, as in numpy.
    assert_eq!(infer1(mm(), &[t(&[k(3)]), t(&[sym("b"), k(3), k(5)])]), "f32[b, 5]");
    assert_eq!(infer1(mm(), &[t(&[sym("b"), k(2), k(3)]), t(&[k(3)])]), "f32[b, 2]");
    assert_eq!(infer1(mm(), &[t(&[k(3)]), t(&[k(3)])]), "f32[]");
}

#[test]
fn matmul_errors() {
    assert_eq!(
        reason(Op::MatMul, &[t(&[k(2), k(3)]), t(&[k(4), k(5)])]),
        "contracted dims differ: [2, 3] @ [4, 5] (3 vs 4)"
    );
    let r = reason(Op::MatMul, &[t(&[k(2), k(1), k(3)]), t(&[k(5), k(3), k(1)])]);
    assert!(r.contains("cannot broadcast [2] with [5]: axis 0 has 2 vs 5"), "{r}");
    assert_eq!(reason(Op::MatMul, &[t(&[]), t(&[k(3)])]), "matmul operands need at least 1 axis");
    assert_eq!(
        reason(Op::MatMul, &[t(&[k(3)]), ty(DType::F16, &[k(3)])]),
        "operand dtypes differ: f32 vs f16"
    );
}

// ---------------------------------------------------------------- reductions / softmax

#[test]
fn reduce_keepdims() {
    let x = t(&[sym("batch"), sym("seq"), k(64)]);
    let red = |op: ReduceOp, axes: &[i64], keepdims: bool| Op::Reduce { op, axes: axes.to_vec(), keepdims };
    assert_eq!(infer1(red(ReduceOp::Mean, &[-1], true), &[x.clone()]), "f32[batch, seq, 1]");
    assert_eq!(infer1(red(ReduceOp::Mean, &[-1], false), &[x.clone()]), "f32[batch, seq]");
    assert_eq!(infer1(red(ReduceOp::Sum, &[0, 2], true), &[x.clone()]), "f32[1, seq, 1]");
    assert_eq!(infer1(red(ReduceOp::Max, &[2, 0], false), &[x.clone()]), "f32[seq]");
    // Empty axes reduce everything.
    assert_eq!(infer1(red(ReduceOp::Prod, &[], false), &[x.clone()]), "f32[]");
    assert_eq!(infer1(red(ReduceOp::Min, &[], true), &[x.clone()]), "f32[1, 1, 1]");
    assert_eq!(reason(red(ReduceOp::Sum, &[3], false), &[x.clone()]), "axis 3 is out of range for rank 3");
    assert_eq!(reason(red(ReduceOp::Sum, &[2, -1], false), &[x.clone()]), "axes [2, -1] repeat an axis");
    assert_eq!(
        reason(red(ReduceOp::Sum, &[0], false), &[ty(DType::Bool, &[k(2)])]),
        "reduce_sum needs numbers, got bool"
    );
}

#[test]
fn softmax_rules() {
    let x = t(&[sym("batch"), k(4), sym("seq"), sym("seq")]);
    assert_eq!(infer1(Op::Softmax { axis: -1 }, &[x.clone()]), "f32[batch, 4, seq, seq]");
    assert_eq!(reason(Op::Softmax { axis: 4 }, &[x]), "axis 4 is out of range for rank 4");
    assert_eq!(
        reason(Op::Softmax { axis: 0 }, &[ty(DType::I64, &[k(3)])]),
        "softmax needs a float type, got i64"
    );
}

// ---------------------------------------------------------------- slices

#[test]
fn slices_with_negative_bounds_and_steps() {
    let x = t(&[k(10), sym("seq")]);
    let s0 =
        |start: i64, end: i64, step: i64| infer1(slice(&[0], &[c(start)], &[c(end)], &[step]), &[x.clone()]);
    assert_eq!(s0(2, 5, 1), "f32[3, seq]");
    assert_eq!(s0(-3, i64::MAX, 1), "f32[3, seq]"); // x[-3:]
    assert_eq!(s0(0, -1, 1), "f32[9, seq]"); // x[:-1]
    assert_eq!(s0(-100, 100, 1), "f32[10, seq]"); // clamped
    assert_eq!(s0(5, 2, 1), "f32[0, seq]"); // empty
    assert_eq!(s0(0, i64::MAX, 3), "f32[4, seq]"); // 0, 3, 6, 9
    assert_eq!(s0(-1, i64::MIN, -1), "f32[10, seq]"); // x[::-1]
    assert_eq!(s0(8, 2, -2), "f32[3, seq]"); // 8, 6, 4
    assert_eq!(s0(100, -100, -3), "f32[4, seq]"); // 9, 6, 3, 0
    assert_eq!(s0(-1, -3, -1), "f32[2, seq]"); // 9, 8
                                               // Several axes at once; negative axis numbers.
    assert_eq!(
        infer1(slice(&[-2, 1], &[c(1), c(0)], &[c(3), c(i64::MAX)], &[1, 1]), &[x.clone()]),
        "f32[2, seq]"
    );
}

#[test]
fn slice_of_empty_axis_with_negative_step() {
    // A zero-sized axis walked backward is empty (and must not panic).
    assert_eq!(infer1(slice(&[0], &[c(-1)], &[c(i64::MIN)], &[-1]), &[t(&[k(0), k(2)])]), "f32[0, 2]");
    assert_eq!(infer1(slice(&[0], &[c(0)], &[c(i64::MAX)], &[1]), &[t(&[k(0)])]), "f32[0]");
}

#[test]
fn slices_with_symbolic_bounds() {
    let kv = t(&[sym("batch"), Dim::parse("2*seq").unwrap(), k(64)]);
    // kv[:, :seq]
    assert_eq!(
        infer1(slice(&[1], &[c(0)], &[Bound::Dim(sym("seq"))], &[1]), &[kv.clone()]),
        "f32[batch, seq, 64]"
    );
    // kv[:, 0:] is the whole axis; kv[:, :2*seq] too.
    assert_eq!(infer1(slice(&[1], &[c(0)], &[c(i64::MAX)], &[1]), &[kv.clone()]), "f32[batch, 2*seq, 64]");
    assert_eq!(
        infer1(slice(&[1], &[c(0)], &[Bound::Dim(Dim::parse("2*seq").unwrap())], &[1]), &[kv.clone()]),
        "f32[batch, 2*seq, 64]"
    );
    // Lengths that have no symbolic form are rejected.
    let r = reason(slice(&[1], &[c(1)], &[c(i64::MAX)], &[1]), &[kv.clone()]);
    assert!(r.contains("of a symbolic axis (2*seq) has no symbolic length"), "{r}");
    let r = reason(slice(&[1], &[c(0)], &[c(i64::MAX)], &[2]), &[kv.clone()]);
    assert!(r.contains("has no symbolic length"), "{r}");
    let r = reason(slice(&[2], &[c(0)], &[Bound::Dim(sym("seq"))], &[1]), &[kv.clone()]);
    assert_eq!(r, "symbolic slice bound on an axis of known size 64");
}

#[test]
fn slice_errors() {
    let x = t(&[k(4)]);
    assert_eq!(reason(slice(&[0], &[c(0)], &[c(4)], &[0]), &[x.clone()]), "slice step is 0");
    assert_eq!(
        reason(slice(&[1], &[c(0)], &[c(4)], &[1]), &[x.clone()]),
        "axis 1 is out of range for rank 1"
    );
    assert_eq!(
        reason(slice(&[0], &[c(0), c(1)], &[c(4)], &[1]), &[x]),
        "slice axes, starts, ends and steps differ in length"
    );
}

// ---------------------------------------------------------------- concat / split / gather

#[test]
fn concat_of_symbolic_dims() {
    let x = t(&[sym("batch"), sym("seq"), k(64)]);
    assert_eq!(infer1(Op::Concat { axis: 1 }, &[x.clone(), x.clone()]), "f32[batch, 2*seq, 64]");
    assert_eq!(infer1(Op::Concat { axis: -2 }, &[x.clone(), x.clone(), x.clone()]), "f32[batch, 3*seq, 64]");
    assert_eq!(
        infer1(Op::Concat { axis: 2 }, &[x.clone(), t(&[sym("batch"), sym("seq"), k(32)])]),
        "f32[batch, seq, 96]"
    );
    assert_eq!(infer1(Op::Concat { axis: 0 }, &[x.clone()]), "f32[batch, seq, 64]");
    // The concat-form KV cache: past and new keys along the sequence axis.
    let past = t(&[sym("batch"), k(2), sym("past_seq"), k(16)]);
    let new = t(&[sym("batch"), k(2), sym("seq"), k(16)]);
    assert_eq!(infer1(Op::Concat { axis: -2 }, &[past, new]), "f32[batch, 2, past_seq+seq, 16]");
    assert_eq!(
        infer1(Op::Concat { axis: 1 }, &[x.clone(), t(&[sym("batch"), k(1), k(64)])]),
        "f32[batch, seq+1, 64]"
    );
    let r = reason(Op::Concat { axis: 1 }, &[x.clone(), t(&[sym("batch"), sym("seq"), k(32)])]);
    assert_eq!(r, "operand 1 has 32 on axis 2, operand 0 has 64");
    let r = reason(Op::Concat { axis: 0 }, &[x.clone(), t(&[k(1)])]);
    assert_eq!(r, "operand 1 has rank 1, operand 0 has 3");
    assert_eq!(reason(Op::Concat { axis: -4 }, &[x.clone()]), "axis -4 is out of range for rank 3");
}

#[test]
fn split_outputs() {
    let kv = t(&[sym("batch"), Dim::parse("2*seq").unwrap(), k(96)]);
    let outs = infer(Op::Split { axis: 1, sizes: vec![sym("seq"), sym("seq")] }, &[kv.clone()]).unwrap();
    let outs: Vec<String> = outs.iter().map(|t| t.to_string()).collect();
    assert_eq!(outs, ["f32[batch, seq, 96]", "f32[batch, seq, 96]"]);
    let outs = infer(Op::Split { axis: -1, sizes: vec![k(32), k(64)] }, &[kv.clone()]).unwrap();
    let outs: Vec<String> = outs.iter().map(|t| t.to_string()).collect();
    assert_eq!(outs, ["f32[batch, 2*seq, 32]", "f32[batch, 2*seq, 64]"]);
    assert_eq!(
        reason(Op::Split { axis: -1, sizes: vec![k(32), k(32)] }, &[kv.clone()]),
        "split sizes [32, 32] do not add up to axis 2 of size 96"
    );
    assert_eq!(
        reason(Op::Split { axis: 1, sizes: vec![sym("seq"), k(1)] }, &[kv]),
        "split sizes [seq, 1] do not add up to axis 1 of size 2*seq"
    );
}

#[test]
fn gather_shapes() {
    let table = t(&[k(32000), k(64)]);
    let ids = ty(DType::I64, &[sym("batch"), sym("seq")]);
    assert_eq!(infer1(Op::Gather { axis: 0 }, &[table.clone(), ids.clone()]), "f32[batch, seq, 64]");
    assert_eq!(infer1(Op::Gather { axis: -1 }, &[table.clone(), ty(DType::I32, &[k(3)])]), "f32[32000, 3]");
    // A scalar index drops the axis.
    assert_eq!(infer1(Op::Gather { axis: 0 }, &[table.clone(), ty(DType::I64, &[])]), "f32[64]");
    assert_eq!(
        reason(Op::Gather { axis: 0 }, &[table.clone(), t(&[k(3)])]),
        "indices must be integers, got f32"
    );
    assert_eq!(reason(Op::Gather { axis: 2 }, &[table, ids]), "axis 2 is out of range for rank 2");
}

// ---------------------------------------------------------------- where / leaves / trilu

#[test]
fn where_rules() {
    let cond = ty(DType::Bool, &[sym("seq"), sym("seq")]);
    assert_eq!(
        infer1(Op::Where, &[cond.clone(), t(&[sym("batch"), k(1), sym("seq"), sym("seq")]), t(&[])]),
        "f32[batch, 1, seq, seq]"
    );
    assert_eq!(reason(Op::Where, &[t(&[k(2)]), t(&[k(2)]), t(&[k(2)])]), "condition must be bool, got f32");
    assert_eq!(
        reason(Op::Where, &[cond.clone(), t(&[]), ty(DType::F16, &[])]),
        "operand dtypes differ: f32 vs f16"
    );
    let r = reason(Op::Where, &[cond, t(&[k(3), sym("seq")]), t(&[])]);
    assert!(r.contains("axis 0 has seq vs 3"), "{r}");
}

#[test]
fn leaves_and_trilu() {
    assert_eq!(
        infer1(Op::Range { start: 0.0, step: 1.0, len: sym("seq"), dtype: DType::I64 }, &[]),
        "i64[seq]"
    );
    assert_eq!(
        reason(Op::Range { start: 0.0, step: 0.0, len: k(3), dtype: DType::F32 }, &[]),
        "range step is 0"
    );
    assert_eq!(
        infer1(
            Op::Full { shape: vec![sym("seq"), sym("seq")], value: f64::NEG_INFINITY, dtype: DType::F16 },
            &[]
        ),
        "f16[seq, seq]"
    );
    assert_eq!(infer1(Op::SymConst(vec![sym("batch"), batch_seq(), k(64)]), &[]), "i64[3]");
    assert_eq!(infer1(Op::Constant(HostTensor::from_i64(vec![2, 2], &[1, 2, 3, 4])), &[]), "i64[2, 2]");
    assert_eq!(infer1(Op::Trilu { upper: false, k: 0 }, &[t(&[sym("seq"), sym("seq")])]), "f32[seq, seq]");
    assert_eq!(reason(Op::Trilu { upper: true, k: 0 }, &[t(&[k(3)])]), "needs at least 2 axes, got 1");
}

#[test]
fn operand_counts() {
    let e = infer(bin(BinaryOp::Add), &[t(&[k(2)])]).unwrap_err();
    assert!(matches!(&e, IrError::OperandCount { expected, found: 1, .. } if expected == "2"), "{e:?}");
    let e = infer(Op::Concat { axis: 0 }, &[]).unwrap_err();
    assert!(
        matches!(&e, IrError::OperandCount { expected, found: 0, .. } if expected == "at least 1"),
        "{e:?}"
    );
    let e = infer(Op::Where, &[ty(DType::Bool, &[])]).unwrap_err();
    assert_eq!(e.to_string(), "node %1 \"probe\" (where): expects 3 operand(s), got 1");
}

// ---------------------------------------------------------------- blocks

#[test]
fn block_inference_and_errors() {
    let blk = || Op::Block(Arc::new(TestRmsNorm { eps: 1e-6 }));
    assert_eq!(infer1(blk(), &[t(&[sym("batch"), sym("seq"), k(64)]), t(&[k(64)])]), "f32[batch, seq, 64]");
    let e = infer(blk(), &[t(&[sym("batch"), k(64)]), t(&[k(63)])]).unwrap_err();
    assert_eq!(
        e,
        IrError::Block {
            node: NodeLabel { id: NodeId::new(2), name: Some("probe".into()) },
            reason: "test_rms_norm: weight is f32[63], the last axis of x has 64".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "node %2 \"probe\": test_rms_norm: weight is f32[63], the last axis of x has 64"
    );
    // Blocks take any operand count; the block itself says what it needs.
    let e = infer(blk(), &[]).unwrap_err();
    assert!(matches!(&e, IrError::Block { reason, .. } if reason.contains("got 0 operand(s)")));
}

#[test]
fn block_fallback_graph_matches_block_type() {
    let b = TestRmsNorm { eps: 1e-6 };
    let types = [t(&[sym("batch"), sym("seq"), k(64)]), t(&[k(64)])];
    let g = dispatch::fallback_graph(&b, &types).unwrap();
    g.validate().unwrap();
    assert_eq!(g.inputs().len(), 2);
    assert_eq!(g.outputs()[0].0, "out0");
    assert_eq!(g.value_type(g.outputs()[0].1), &types[0]);
    // Fallback nodes are named after the block.
    assert!(g.node_ids().filter(|&id| !matches!(g.node(id).op, Op::Input)).all(|id| g
        .node(id)
        .name
        .as_deref()
        .unwrap()
        .starts_with("test_rms_norm.fallback/")));
}

#[test]
fn slice_update_keeps_the_data_type_when_the_update_fits() {
    let i64s = |dims: &[Dim]| TensorType::new(DType::I64, dims.iter().cloned());
    let cache = t(&[sym("batch"), k(8), k(4096), k(128)]);
    let new = t(&[sym("batch"), k(8), sym("seq"), k(128)]);
    let su = Op::SliceUpdate { axis: 2 };
    assert_eq!(infer1(su.clone(), &[cache.clone(), new.clone(), i64s(&[])]), "f32[batch, 8, 4096, 128]");
    assert_eq!(
        infer1(Op::SliceUpdate { axis: -2 }, &[cache.clone(), new.clone(), i64s(&[k(1)])]),
        "f32[batch, 8, 4096, 128]"
    );
    let long = t(&[sym("batch"), k(8), k(4097), k(128)]);
    assert_eq!(
        reason(su.clone(), &[cache.clone(), long, i64s(&[])]),
        "update axis 2 (4097) is longer than the data's (4096)"
    );
    let heads = t(&[sym("batch"), k(4), sym("seq"), k(128)]);
    assert_eq!(
        reason(su.clone(), &[cache.clone(), heads, i64s(&[])]),
        "update axis 1 (4) is different from the data's (8)"
    );
    assert_eq!(
        reason(su.clone(), &[cache.clone(), new.clone(), t(&[])]),
        "the start must be one integer, got f32[]"
    );
    assert_eq!(
        reason(su.clone(), &[cache.clone(), new.clone(), i64s(&[k(2)])]),
        "the start must be one integer, got i64[2]"
    );
    let rank3 = t(&[sym("batch"), k(8), sym("seq")]);
    assert_eq!(reason(su.clone(), &[cache.clone(), rank3, i64s(&[])]), "the update has rank 3, the data 4");
    let half = TensorType::new(DType::F16, new.shape.iter().cloned());
    assert_eq!(reason(su, &[cache, half, i64s(&[])]), "operand dtypes differ: f32 vs f16");
}
