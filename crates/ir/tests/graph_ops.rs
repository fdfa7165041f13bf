//! Graph editing and queries: uses, replacement, dead-node removal, topological order,
//! validation after edits.

mod common;

use blockfuse_ir::*;
use common::*;

/// `x: f32[4]`; `a = neg(x)`; `b = exp(a)`; `c = mul(a, a)`; outputs `b`, `c`, `a`.
struct Small {
    g: Graph,
    x: Value,
    a: Value,
    b: Value,
    c: Value,
}

fn small() -> Small {
    let mut g = Graph::new();
    let mut bl = Builder::new(&mut g);
    let x = bl.input("x", f32t(&[k(4)]));
    let a = bl.unary(UnaryOp::Neg, x).unwrap();
    let b = bl.unary(UnaryOp::Exp, a).unwrap();
    let c = bl.mul(a, a).unwrap();
    g.add_output("b", b);
    g.add_output("c", c);
    g.add_output("a", a);
    Small { g, x, a, b, c }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn consumers_and_use_count() {
    let s = small();
    let g = &s.g;
    assert_eq!(sorted(g.consumers(s.a).collect()), vec![(s.b.node, 0), (s.c.node, 0), (s.c.node, 1)]);
    // Two operand slots of `mul` and one graph output.
    assert_eq!(g.use_count(s.a), 4);
    assert_eq!(g.use_count(s.x), 1);
    assert_eq!(g.use_count(s.b), 1);
    assert_eq!(g.users(s.a.node), vec![s.b.node, s.c.node]);
    assert!(g.is_output(s.a) && !g.is_output(s.x));
    assert_eq!(g.consumers(s.c).count(), 0);
    assert!(g.value_exists(s.a));
    assert!(!g.value_exists(Value { node: s.a.node, output: 1 }));
}

#[test]
fn consumers_are_per_output() {
    let g = split_graph();
    let split = g.node_ids().find(|&id| matches!(g.node(id).op, Op::Split { .. })).unwrap();
    let out = |i: u16| Value { node: split, output: i };
    assert_eq!(g.consumers(out(0)).count(), 1);
    assert_eq!(g.consumers(out(1)).count(), 1);
    assert_eq!(g.consumers(out(2)).count(), 1);
    assert_eq!(g.use_count(out(2)), 2); // add + graph output "v"
    assert_eq!(g.users(split).len(), 2); // mul, add
    assert_eq!(out(2).to_string(), format!("%{}:2", split.index()));
    assert_eq!(out(0).to_string(), format!("%{}", split.index()));
}

#[test]
fn replace_all_uses_moves_consumers_and_outputs() {
    let mut s = small();
    let abs = {
        let mut b = Builder::new(&mut s.g);
        b.unary(UnaryOp::Abs, s.x).unwrap()
    };
    s.g.replace_all_uses(s.a, abs);
    let g = &s.g;
    assert_eq!(g.use_count(s.a), 0);
    assert_eq!(sorted(g.consumers(abs).collect()), vec![(s.b.node, 0), (s.c.node, 0), (s.c.node, 1)]);
    assert_eq!(g.node(s.c.node).operands.as_slice(), &[abs, abs]);
    assert_eq!(g.outputs()[2], ("a".to_string(), abs));
    g.validate().unwrap();
    // The old node is now dead; removing it leaves a valid graph.
    assert_eq!(s.g.remove_dead(), 1);
    assert!(!s.g.contains(s.a.node));
    s.g.validate().unwrap();
    assert_eq!(
        text::dump(&s.g).unwrap(),
        "graph(%0 \"x\": f32[4]) {\n  %4 = abs(%0) : f32[4]\n  %2 = exp(%4) : f32[4]\n  %3 = mul(%4, %4) : f32[4]\n  return %2 \"b\"\n  return %3 \"c\"\n  return %4 \"a\"\n}\n"
    );
}

#[test]
fn replace_all_uses_of_one_split_output() {
    let mut g = split_graph();
    let split = g.node_ids().find(|&id| matches!(g.node(id).op, Op::Split { .. })).unwrap();
    let out = |i: u16| Value { node: split, output: i };
    // Read part 0 wherever part 2 was read: only output 2's uses move.
    g.replace_all_uses(out(2), out(0));
    assert_eq!(g.use_count(out(2)), 0);
    assert_eq!(g.use_count(out(1)), 1);
    assert_eq!(g.use_count(out(0)), 3);
    g.validate().unwrap();
    let dump = text::dump(&g).unwrap();
    assert!(dump.contains("return %1 \"v\""), "{dump}");
}

#[test]
fn replace_all_uses_with_itself_is_a_no_op() {
    let mut s = small();
    let before = text::dump(&s.g).unwrap();
    s.g.replace_all_uses(s.a, s.a);
    assert_eq!(s.g.use_count(s.a), 4);
    assert_eq!(text::dump(&s.g).unwrap(), before);
}

#[test]
fn remove_dead_keeps_inputs_and_live_multi_output_nodes() {
    let mut g = split_graph();
    let x = Value::first(g.inputs()[0]);
    let (dead1, dead2) = {
        let mut b = Builder::new(&mut g);
        let d1 = b.unary(UnaryOp::Exp, x).unwrap();
        let d2 = b.unary(UnaryOp::Log, d1).unwrap();
        (d1, d2)
    };
    let unused = g.add_input("unused", f32t(&[k(1)]));
    let before = g.node_count();
    assert_eq!(g.remove_dead(), 2);
    assert_eq!(g.node_count(), before - 2);
    assert!(!g.contains(dead1.node) && !g.contains(dead2.node));
    assert!(g.contains(unused.node), "inputs are never dead");
    assert_eq!(g.inputs().len(), 2);
    assert_eq!(g.remove_dead(), 0);
    g.validate().unwrap();
    // The split stays even though only some of its outputs are read.
    assert_eq!(g.op_histogram()["split"], 1);
}

#[test]
fn remove_dead_after_rewiring_an_output() {
    let mut s = small();
    let first = s.g.outputs()[0].clone();
    // Output "c" now reads `b`: `c` is dead, `a` stays because `b` and output "a" read it.
    s.g.replace_all_uses(s.c, s.b);
    assert_eq!(s.g.remove_dead(), 1);
    assert!(!s.g.contains(s.c.node));
    assert!(s.g.contains(s.a.node));
    assert_eq!(s.g.outputs()[0], first);
    assert_eq!(s.g.outputs()[1], ("c".to_string(), s.b));
    s.g.validate().unwrap();
}

#[test]
fn topo_order_is_deterministic() {
    let a = attention_graph();
    let b = attention_graph();
    let oa = a.topo_order().unwrap();
    assert_eq!(oa, b.topo_order().unwrap());
    assert_eq!(oa, a.clone().topo_order().unwrap());
    assert_eq!(oa.len(), a.node_count());
    // Every operand comes before its consumer.
    let pos: std::collections::HashMap<NodeId, usize> =
        oa.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    for &id in &oa {
        for v in &a.node(id).operands {
            assert!(pos[&v.node] < pos[&id]);
        }
    }
    assert_eq!(text::dump(&a).unwrap(), text::dump(&b).unwrap());
    assert_eq!(json::to_json(&a).unwrap(), json::to_json(&b).unwrap());
}

#[test]
fn topo_order_takes_the_smallest_ready_id_first() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[k(4)]));
    let n1 = g.add_node(Op::Unary(UnaryOp::Neg), &[x], None).unwrap();
    let n2 = g.add_node(Op::Unary(UnaryOp::Exp), &[x], None).unwrap();
    let n3 = g.add_node(Op::Unary(UnaryOp::Abs), &[x], None).unwrap();
    assert_eq!(g.topo_order().unwrap(), vec![x.node, n1, n2, n3]);
    // Make n1 read n3: n1 must now come after n3, the rest stays in id order.
    g.set_operand(n1, 0, Value::first(n3));
    assert_eq!(g.topo_order().unwrap(), vec![x.node, n2, n3, n1]);
    g.validate().unwrap();
    let c = g.add_node(Op::Constant(HostTensor::scalar(DType::F32, 1.0)), &[], None).unwrap();
    assert_eq!(g.topo_order().unwrap(), vec![x.node, n2, n3, n1, c]);
}

#[test]
fn node_ids_are_stable_across_removal() {
    let mut s = small();
    let c = s.c.node;
    s.g.replace_all_uses(s.c, s.b);
    s.g.remove_dead();
    assert!(!s.g.contains(c));
    // Remaining nodes keep their ids.
    assert_eq!(s.g.node(s.b.node).op.name(), "exp");
    assert_eq!(s.g.node(s.a.node).op.name(), "neg");
    // A removed node's id may be given to a later node (petgraph's free list).
    let d = s.g.add_node(Op::Unary(UnaryOp::Sin), &[s.x], None).unwrap();
    assert_eq!(d, c);
    assert_eq!(s.g.topo_order().unwrap(), vec![s.x.node, s.a.node, s.b.node, d]);
    s.g.validate().unwrap();
}

#[test]
fn validate_catches_type_disagreement_after_bad_set_operand() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[k(4)]));
    let y = g.add_input("y", f32t(&[k(8)]));
    let n = g.add_node(Op::Unary(UnaryOp::Neg), &[x], Some("n".into())).unwrap();
    g.add_output("out", Value::first(n));
    g.validate().unwrap();
    g.set_operand(n, 0, y);
    assert_eq!(g.node(n).operands[0], y);
    let e = g.validate().unwrap_err();
    assert_eq!(
        e,
        IrError::TypeDisagrees {
            node: NodeLabel { id: n, name: Some("n".into()) },
            op: "neg".into(),
            output: 0,
            declared: "f32[4]".into(),
            inferred: "f32[8]".into(),
        }
    );
    assert_eq!(
        e.to_string(),
        format!("node %{} \"n\" (neg): output 0 is declared f32[4] but inference gives f32[8]", n.index())
    );
    // Setting it back makes the graph valid again; the edge set follows operands.
    g.set_operand(n, 0, x);
    g.validate().unwrap();
    assert_eq!(g.consumers(y).count(), 0);
    assert_eq!(g.consumers(x).count(), 1);
}

#[test]
fn validate_catches_a_type_rule_broken_by_set_operand() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[k(4)]));
    let i = g.add_input("i", ty(DType::I64, &[k(4)]));
    let n = g.add_node(Op::Binary(BinaryOp::Add), &[x, x], None).unwrap();
    g.set_operand(n, 1, i);
    let e = g.validate().unwrap_err();
    assert!(
        matches!(&e, IrError::Type { reason, op, .. } if reason == "operand dtypes differ: f32 vs i64" && op == "add"),
        "{e:?}"
    );
}

#[test]
fn validate_and_writers_catch_a_cycle() {
    let mut s = small();
    // neg(x) → neg(exp(neg(...))): a cycle a → b → a.
    s.g.set_operand(s.a.node, 0, s.b);
    let e = s.g.validate().unwrap_err();
    assert!(matches!(e, IrError::Cycle { .. }), "{e:?}");
    assert!(matches!(s.g.topo_order(), Err(IrError::Cycle { .. })));
    assert!(matches!(json::to_json(&s.g), Err(IrError::Cycle { .. })));
    assert!(matches!(text::dump(&s.g), Err(IrError::Cycle { .. })));
}

#[test]
fn validate_catches_dangling_operands_and_outputs() {
    let mut s = small();
    s.g.set_operand(s.b.node, 0, Value { node: s.a.node, output: 3 });
    let e = s.g.validate().unwrap_err();
    assert!(
        matches!(&e, IrError::DanglingValue { operand: 0, target, .. } if *target == format!("%{}:3", s.a.node.index())),
        "{e:?}"
    );

    // Removing a live node leaves its readers dangling.
    let mut s = small();
    s.g.remove_node(s.c.node);
    let e = s.g.validate().unwrap_err();
    assert_eq!(e, IrError::DanglingOutput { name: "c".into(), target: format!("%{}", s.c.node.index()) });
    let mut s = small();
    s.g.remove_node(s.a.node);
    let e = s.g.validate().unwrap_err();
    assert!(matches!(e, IrError::DanglingValue { .. }), "{e:?}");
}

#[test]
fn writers_report_dangling_values_instead_of_panicking() {
    let mut s = small();
    s.g.remove_node(s.a.node);
    assert!(matches!(json::to_json(&s.g), Err(IrError::DanglingValue { .. })));
    assert!(matches!(text::dump(&s.g), Err(IrError::DanglingValue { .. })));
    let mut s = small();
    s.g.remove_node(s.c.node);
    assert!(matches!(json::to_json(&s.g), Err(IrError::DanglingOutput { .. })));
    assert!(matches!(text::dump(&s.g), Err(IrError::DanglingOutput { .. })));
}

#[test]
fn add_node_rejects_dangling_operands_and_leaves_no_node() {
    let mut s = small();
    let before = s.g.node_count();
    let e =
        s.g.add_node(Op::Unary(UnaryOp::Neg), &[Value { node: s.x.node, output: 1 }], Some("bad".into()))
            .unwrap_err();
    assert!(
        matches!(&e, IrError::DanglingValue { operand: 0, node, .. } if node.name.as_deref() == Some("bad")),
        "{e:?}"
    );
    // A type error also leaves the graph as it was.
    let i = s.g.add_input("i", ty(DType::I64, &[k(4)]));
    let e = s.g.add_node(Op::Binary(BinaryOp::Add), &[s.x, i], None).unwrap_err();
    assert!(matches!(e, IrError::Type { .. }));
    assert_eq!(s.g.node_count(), before + 1);
    s.g.validate().unwrap();
}

#[test]
fn labels_histogram_and_dot() {
    let g = block_graph();
    let w = g.node_ids().find(|&id| g.node(id).name.as_deref() == Some("norm.weight")).unwrap();
    assert_eq!(g.label(w).to_string(), format!("%{} \"norm.weight\"", w.index()));
    let add = g.node_ids().find(|&id| g.node(id).op.name() == "add").unwrap();
    assert_eq!(g.label(add).to_string(), format!("%{}", add.index()));
    let hist: Vec<(String, usize)> = g.op_histogram().into_iter().collect();
    assert_eq!(
        hist,
        [
            ("add".to_string(), 1),
            ("block.test_rms_norm".to_string(), 1),
            ("constant".to_string(), 1),
            ("input".to_string(), 2),
        ]
    );
    let dot = text::to_dot(&g);
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(dot.contains("block.test_rms_norm{eps=1e-5}"), "{dot}");
    assert!(dot.contains("fillcolor"), "{dot}");
}

#[test]
fn builder_helpers() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", f32t(&[k(4)]));
    // A cast to the same dtype adds nothing.
    assert_eq!(b.cast(x, DType::F32).unwrap(), x);
    let h = b.cast(x, DType::F16).unwrap();
    assert_ne!(h, x);
    let s = b.scalar_like(h, 2.0);
    assert_eq!(b.ty(s).to_string(), "f16[]");
    b.set_scope(Some("layer0".into()));
    let y = b.mul(h, s).unwrap();
    b.set_scope(None);
    let z = b.unary(UnaryOp::Neg, y).unwrap();
    assert_eq!(g.node(y.node).name.as_deref(), Some("layer0/mul"));
    assert_eq!(g.node(z.node).name, None);
    assert_eq!(g.node_count(), 5);
}
