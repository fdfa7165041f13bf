//! The text dump: snapshots of representative graphs, and the format's rules.

mod common;

use blockfuse_ir::*;
use common::*;

fn dump(g: &Graph) -> String {
    text::dump(g).unwrap()
}

#[test]
fn snapshot_rms_norm_composed() {
    insta::assert_snapshot!("rms_norm_composed", dump(&rms_norm_graph()));
}

#[test]
fn snapshot_attention() {
    insta::assert_snapshot!("attention", dump(&attention_graph()));
}

#[test]
fn snapshot_block() {
    insta::assert_snapshot!("block", dump(&block_graph()));
}

#[test]
fn snapshot_split() {
    insta::assert_snapshot!("split", dump(&split_graph()));
}

#[test]
fn snapshot_symbolic() {
    insta::assert_snapshot!("symbolic", dump(&symbolic_graph()));
}

#[test]
fn snapshot_every_op() {
    insta::assert_snapshot!("every_op", dump(&every_op_graph()));
}

#[test]
fn snapshot_small_constants() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let outs = [
        b.constant(HostTensor::from_f32(vec![3], &[0.5, -1.0, 1e-7])),
        b.constant(HostTensor::from_f64(DType::F16, vec![2], &[0.1, 65504.0])),
        b.constant(HostTensor::from_f64(DType::BF16, vec![], &[3.140625])),
        b.constant(HostTensor::from_f64(DType::F64, vec![1], &[0.1])),
        b.constant(HostTensor::from_i64(vec![4], &[-1, 0, 7, i64::MAX])),
        b.constant(HostTensor::from_f64(DType::I32, vec![2], &[-3.0, 40000.0])),
        b.constant(HostTensor::from_f64(DType::U8, vec![2], &[0.0, 255.0])),
        b.constant(HostTensor::from_f64(DType::Bool, vec![2, 2], &[1.0, 0.0, 0.0, 1.0])),
        b.constant(HostTensor::from_f64(DType::F32, vec![3], &[f64::INFINITY, f64::NEG_INFINITY, f64::NAN])),
        // More than 4 elements: no values, the name if there is one.
        b.constant(HostTensor::from_f32(vec![5], &[0.0; 5])),
    ];
    let named = b.constant(HostTensor::from_f32(vec![2, 3], &[0.0; 6]));
    b.graph_mut().set_name(named.node, Some("lm_head.bias".into()));
    for (i, v) in outs.into_iter().chain([named]).enumerate() {
        g.add_output(&format!("c{i}"), v);
    }
    insta::assert_snapshot!("small_constants", dump(&g));
}

#[test]
fn values_are_named_by_node_id_in_topological_order() {
    // Build nodes out of order (via set_operand) and with a removed node in between: the
    // dump lists nodes in topological order under their ids, gaps included.
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[k(2)]));
    let a = g.add_node(Op::Unary(UnaryOp::Neg), &[x], None).unwrap();
    let dead = g.add_node(Op::Unary(UnaryOp::Exp), &[x], None).unwrap();
    let c = g.add_node(Op::Unary(UnaryOp::Abs), &[x], None).unwrap();
    g.set_operand(a, 0, Value::first(c));
    g.remove_node(dead);
    g.add_output("y", Value::first(a));
    assert_eq!(
        dump(&g),
        "graph(%0 \"x\": f32[2]) {\n  %3 = abs(%0) : f32[2]\n  %1 = neg(%3) : f32[2]\n  return %1 \"y\"\n}\n"
    );
}

#[test]
fn inputs_are_listed_in_graph_order_with_names_and_types() {
    let mut g = Graph::new();
    let b = g.add_input("b", ty(DType::I64, &[sym("batch"), sym("seq")]));
    let a = g.add_input("a", ty(DType::Bool, &[]));
    g.add_output("a", a);
    g.add_output("b", b);
    assert_eq!(
        dump(&g),
        "graph(%0 \"b\": i64[batch, seq], %1 \"a\": bool[]) {\n  return %1 \"a\"\n  return %0 \"b\"\n}\n"
    );
    assert_eq!(dump(&Graph::new()), "graph() {\n}\n");
}

#[test]
fn multi_output_line() {
    let d = dump(&split_graph());
    assert!(
        d.contains(
            "  %1, %1:1, %1:2 = split{axis=-1, sizes=[32, 32, 32]}(%0) : f32[batch, seq, 32], f32[batch, seq, 32], f32[batch, seq, 32]\n"
        ),
        "{d}"
    );
}

#[test]
fn op_debug_uses_the_dump_syntax() {
    let op = Op::Reduce { op: ReduceOp::Mean, axes: vec![-1], keepdims: true };
    assert_eq!(format!("{op:?}"), "reduce_mean{axes=[-1], keepdims=true}");
    let op = Op::Slice(SliceSpec {
        axes: vec![1],
        starts: vec![Bound::Const(0)],
        ends: vec![Bound::Dim(sym("seq"))],
        steps: vec![1],
    });
    assert_eq!(format!("{op:?}"), "slice{axes=[1], ends=[seq], starts=[0], steps=[1]}");
    assert_eq!(format!("{:?}", Op::MatMul), "matmul");
    assert_eq!(format!("{:?}", Op::Cast(DType::BF16)), "cast{to=bf16}");
    assert_eq!(
        format!("{:?}", Op::Block(std::sync::Arc::new(TestRmsNorm { eps: 1e-6 }))),
        "block.test_rms_norm{eps=1e-6}"
    );
}
