//! JSON format: round trips over symbolic dims, every dtype, multi-output nodes, symbolic
//! slices, every op and a block; the document's structure; hand-written documents.

mod common;

use blockfuse_ir::*;
use common::*;
use serde_json::{json, Value as Json};

fn doc(g: &Graph) -> Json {
    serde_json::from_str(&json::to_json(g).unwrap()).unwrap()
}

#[test]
fn rms_norm_roundtrip() {
    let g = rms_norm_graph();
    let g2 = assert_roundtrip(&g, &registry());
    // The weight's name survives and symbolic input dims stay symbolic.
    let x = g2.inputs()[0];
    assert_eq!(g2.node(x).types[0].to_string(), "f32[batch, seq, 64]");
    assert!(g2.node_ids().any(|id| g2.node(id).name.as_deref() == Some("model.norm.weight")));
}

#[test]
fn attention_roundtrip() {
    let g = attention_graph();
    assert_roundtrip(&g, &registry());
    // -inf is written as the string "-inf" and reads back bit for bit.
    let js = json::to_json(&g).unwrap();
    assert!(!js.contains("Infinity") && !js.contains("null"), "{js}");
}

#[test]
fn block_roundtrip_with_local_registry() {
    let g = block_graph();
    let g2 = assert_roundtrip(&g, &registry());
    let blk = g2.node_ids().find_map(|id| g2.node(id).op.as_block().cloned()).expect("a block node");
    assert_eq!(blk.kind(), TEST_BLOCK);
    assert_eq!(blk.downcast_ref::<TestRmsNorm>(), Some(&TestRmsNorm { eps: 1e-5 }));
    // Encoding: op "block.<kind>", the block's attributes as the node's attrs.
    let d = doc(&g);
    let node = d["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["op"] == "block.test_rms_norm")
        .expect("block node in the document");
    assert_eq!(node["attrs"], json!({"eps": 1e-5}));
    assert_eq!(node["types"], json!([{"dtype": "f32", "shape": ["batch", "seq", 8]}]));
}

#[test]
fn block_roundtrip_with_global_registry() {
    register_block::<TestRmsNorm>(TEST_BLOCK);
    assert!(global_registry().kinds().any(|k| k == TEST_BLOCK));
    let g = block_graph();
    let js = json::to_json(&g).unwrap();
    let g2 = json::from_json(&js).unwrap();
    assert_eq!(json::to_json(&g2).unwrap(), js);
    assert_eq!(text::dump(&g2).unwrap(), text::dump(&g).unwrap());
}

#[test]
fn block_equality_survives_roundtrip() {
    let g = block_graph();
    let g2 = assert_roundtrip(&g, &registry());
    let find = |g: &Graph| g.node_ids().find_map(|id| g.node(id).op.as_block().cloned()).unwrap();
    assert!(Op::Block(find(&g)).same_computation(&Op::Block(find(&g2))));
    assert!(!Op::Block(find(&g)).same_computation(&Op::Block(std::sync::Arc::new(TestRmsNorm { eps: 1e-6 }))));
}

#[test]
fn split_roundtrip_and_output_references() {
    let g = split_graph();
    assert_roundtrip(&g, &registry());
    let d = doc(&g);
    let nodes = d["nodes"].as_array().unwrap();
    let split = nodes.iter().find(|n| n["op"] == "split").unwrap();
    let sid = split["id"].as_u64().unwrap();
    assert_eq!(split["types"].as_array().unwrap().len(), 3);
    // Output 0 is written "<id>", the others "<id>:<k>".
    let mul = nodes.iter().find(|n| n["op"] == "mul").unwrap();
    assert_eq!(mul["args"], json!([sid.to_string(), format!("{sid}:1")]));
    assert_eq!(d["outputs"][1], json!({"name": "v", "value": format!("{sid}:2")}));
}

/// Constants of every dtype, including values that only survive as exact bytes.
fn dtype_graph() -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let specials =
        [0.0, -0.0, 1.5, -2.25, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 65504.0, 1e-7, 3.140625];
    for dtype in [DType::F32, DType::F16, DType::BF16, DType::F64] {
        let c = b.constant(HostTensor::from_f64(dtype, vec![2, 5], &specials));
        b.graph_mut().add_output(&format!("c_{dtype}"), c);
    }
    let i64c = b.constant(HostTensor::from_i64(vec![4], &[i64::MIN, -1, 0, i64::MAX]));
    let i32c = b.constant(HostTensor::from_f64(DType::I32, vec![3], &[-7.0, 0.0, 2e9]));
    let i8c = b.constant(HostTensor::from_f64(DType::I8, vec![3], &[-128.0, 0.0, 127.0]));
    let u8c = b.constant(HostTensor::from_f64(DType::U8, vec![2], &[0.0, 255.0]));
    let boolc = b.constant(HostTensor::from_f64(DType::Bool, vec![1, 3], &[1.0, 0.0, 1.0]));
    let empty = b.constant(HostTensor::from_f32(vec![0, 3], &[]));
    let scalar = b.scalar(DType::BF16, 0.5);
    // Constants also feed ops: a bool mask in `where`, i64 indices in `gather`.
    let x = b.input("x", ty(DType::F16, &[sym("seq"), k(3)]));
    let y = b.input("y", ty(DType::F16, &[sym("seq"), k(3)]));
    let table = b.input("table", ty(DType::BF16, &[k(100), k(16)]));
    let sel = b.select(boolc, x, y).unwrap();
    let idx = b.constant(HostTensor::from_i64(vec![2, 2], &[0, 99, -1, 7]));
    let emb = b.add(Op::Gather { axis: 0 }, &[table, idx]).unwrap();
    let emb = b.mul(emb, scalar).unwrap();
    for (name, v) in
        [("i64", i64c), ("i32", i32c), ("i8", i8c), ("u8", u8c), ("empty", empty), ("sel", sel), ("emb", emb)]
    {
        b.graph_mut().add_output(name, v);
    }
    g
}

#[test]
fn constants_of_every_dtype_roundtrip_bytewise() {
    let g = dtype_graph();
    let g2 = assert_roundtrip(&g, &registry());
    let consts = constants(&g2);
    let dtypes: Vec<DType> = consts.iter().map(|c| c.0).collect();
    for d in DType::ALL {
        assert!(dtypes.contains(&d), "no {d} constant");
    }
    // NaN payload and the sign of -0.0 are kept: compare the raw bits.
    let f32c = g2
        .node_ids()
        .filter_map(|id| g2.node(id).op.as_constant().cloned())
        .find(|t| t.dtype() == DType::F32 && t.len() == 10)
        .unwrap();
    let bits: Vec<u32> = f32c.bytes().chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(bits[1], (-0.0f32).to_bits());
    assert_eq!(bits[6], (f64::NAN as f32).to_bits());
    let i64c = g2
        .node_ids()
        .filter_map(|id| g2.node(id).op.as_constant().cloned())
        .find(|t| t.dtype() == DType::I64 && t.dims() == [4])
        .unwrap();
    assert_eq!(i64c.to_i64_vec(), vec![i64::MIN, -1, 0, i64::MAX]);
}

#[test]
fn constant_data_is_base64_of_little_endian_bytes() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let c = b.constant(HostTensor::from_f32(vec![2], &[1.0, -2.0]));
    let i = b.constant(HostTensor::from_i64(vec![1], &[258]));
    let h = b.constant(HostTensor::from_f64(DType::BF16, vec![1], &[1.0]));
    g.add_output("c", c);
    g.add_output("i", i);
    g.add_output("h", h);
    let d = doc(&g);
    let n = &d["nodes"];
    // 1.0f32 = 0x3f800000 → 00 00 80 3f; -2.0f32 = 0xc0000000 → 00 00 00 c0.
    assert_eq!(n[0]["op"], "constant");
    assert_eq!(n[0]["attrs"], json!({"dtype": "f32", "dims": [2]}));
    assert_eq!(n[0]["data"], "AACAPwAAAMA=");
    // 258i64 = 02 01 00 00 00 00 00 00
    assert_eq!(n[1]["data"], "AgEAAAAAAAA=");
    // bf16 1.0 = 0x3f80 → 80 3f
    assert_eq!(n[2]["data"], "gD8=");
    assert_eq!(n[2]["types"], json!([{"dtype": "bf16", "shape": [1]}]));
}

#[test]
fn symbolic_dims_roundtrip() {
    let g = symbolic_graph();
    let g2 = assert_roundtrip(&g, &registry());
    let out_types: Vec<String> = g2.outputs().iter().map(|(_, v)| g2.value_type(*v).to_string()).collect();
    assert_eq!(
        out_types,
        [
            "f32[batch, seq, 4, 16]",
            "f32[batch, seq, 64]",
            "f32[batch, 2*seq, 32]",
            "f32[batch, seq, 64]",
            "f32[batch, seq, 64]",
            "i64[seq]",
            "i64[3]",
            "f32[batch*seq, 64]",
        ]
    );
    // Symbolic dims are strings, known dims numbers; slice bounds likewise.
    let d = doc(&g);
    let nodes = d["nodes"].as_array().unwrap();
    let reshape = nodes.iter().find(|n| n["op"] == "reshape").unwrap();
    assert_eq!(reshape["attrs"]["shape"], json!(["batch*seq", 64]));
    let slice = nodes.iter().find(|n| n["op"] == "slice" && n["attrs"]["ends"][0] == "seq").unwrap();
    assert_eq!(slice["attrs"], json!({"axes": [1], "starts": [0], "ends": ["seq"], "steps": [1]}));
    let concat = nodes.iter().find(|n| n["op"] == "concat").unwrap();
    assert_eq!(concat["types"][0]["shape"], json!(["batch", "2*seq", 64]));
    let fill = nodes.iter().find(|n| n["op"] == "full").unwrap();
    assert_eq!(fill["attrs"]["value"], "inf");
    let sc = nodes.iter().find(|n| n["op"] == "sym_const").unwrap();
    assert_eq!(sc["attrs"]["values"], json!(["batch", "batch*seq", 64]));
}

#[test]
fn every_op_roundtrips() {
    let g = every_op_graph();
    let g2 = assert_roundtrip(&g, &registry());
    let hist = g2.op_histogram();
    for name in [
        "input",
        "constant",
        "sym_const",
        "where",
        "cast",
        "softmax",
        "matmul",
        "transpose",
        "reshape",
        "expand",
        "slice",
        "concat",
        "split",
        "gather",
        "range",
        "full",
        "trilu",
    ] {
        assert!(hist.contains_key(name), "no {name} node: {hist:?}");
    }
    for u in UnaryOp::ALL {
        assert!(hist.contains_key(u.name()));
    }
    for op in BinaryOp::ALL {
        assert!(hist.contains_key(op.name()));
    }
    for op in ReduceOp::ALL {
        assert!(hist.contains_key(op.name()));
    }
    // Every op node is the same computation as its copy read back (attrs survive).
    let o1 = g.topo_order().unwrap();
    let o2 = g2.topo_order().unwrap();
    let non_inputs = |g: &Graph, o: Vec<NodeId>| -> Vec<Op> {
        o.into_iter()
            .filter(|&id| !matches!(g.node(id).op, Op::Input))
            .map(|id| g.node(id).op.clone())
            .collect()
    };
    let (a, b) = (non_inputs(&g, o1), non_inputs(&g2, o2));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        // Float attributes compare by bits, so `full{value=nan}` equals its copy too.
        assert!(x.same_computation(y), "{x:?} vs {y:?}");
    }
}

#[test]
fn document_structure() {
    let g = block_graph();
    let d = doc(&g);
    let top: Vec<&String> = d.as_object().unwrap().keys().collect();
    assert_eq!(top, ["format", "nodes", "outputs", "version"]);
    assert_eq!(d["format"], "blockfuse-ir");
    assert_eq!(d["version"], 1);
    let nodes = d["nodes"].as_array().unwrap();
    // Ids are dense from 0, inputs first (in graph order), then topological order.
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(n["id"], i as u64);
    }
    assert_eq!(nodes[0]["op"], "input");
    assert_eq!(nodes[0]["name"], "x");
    assert_eq!(nodes[1]["op"], "input");
    assert_eq!(nodes[1]["name"], "residual");
    // Empty attrs/args and absent names/data are left out.
    assert!(nodes[0].get("attrs").is_none() && nodes[0].get("args").is_none());
    assert!(nodes[0].get("data").is_none());
    let add = nodes.iter().find(|n| n["op"] == "add").unwrap();
    assert!(add.get("name").is_none());
    assert_eq!(add["args"], json!(["0", "1"]));
    assert_eq!(d["outputs"], json!([{"name": "h", "value": "2"}, {"name": "y", "value": "4"}]));
    assert_eq!(json::FORMAT, "blockfuse-ir");
    assert_eq!(json::VERSION, 1);
}

#[test]
fn scoped_names_roundtrip() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", f32t(&[k(2)]));
    b.set_scope(Some("model.layers.0.mlp".into()));
    let y = b.unary(UnaryOp::Sigmoid, x).unwrap();
    let y = b.mul(x, y).unwrap();
    g.add_output("y", y);
    let g2 = assert_roundtrip(&g, &registry());
    let names: Vec<Option<String>> =
        g2.topo_order().unwrap().into_iter().map(|id| g2.node(id).name.clone()).collect();
    assert_eq!(
        names,
        [
            Some("x".to_string()),
            Some("model.layers.0.mlp/sigmoid".to_string()),
            Some("model.layers.0.mlp/mul".to_string()),
        ]
    );
}

#[test]
fn dead_nodes_and_unused_inputs_are_kept() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", f32t(&[k(2)]));
    let _unused = b.input("unused", f32t(&[sym("n")]));
    let _dead = b.unary(UnaryOp::Exp, x).unwrap();
    g.add_output("x", x);
    let g2 = assert_roundtrip(&g, &registry());
    assert_eq!(g2.node_count(), 3);
    assert_eq!(g2.inputs().len(), 2);
}

#[test]
fn hand_written_document_with_sparse_unordered_ids() {
    // Nodes listed consumer-first with sparse ids; non-input types are optional.
    let text = r#"{
      "format": "blockfuse-ir",
      "version": 1,
      "nodes": [
        {"id": 40, "op": "mul", "args": ["7", "30"]},
        {"id": 30, "op": "constant", "attrs": {"dtype": "f32", "dims": []}, "data": "AAAAQA=="},
        {"id": 7, "op": "input", "name": "x", "types": [{"dtype": "f32", "shape": ["seq*batch", 2]}]}
      ],
      "outputs": [{"name": "y", "value": "40"}]
    }"#;
    let g = json::from_json_with(text, &registry()).unwrap();
    g.validate().unwrap();
    let (_, y) = &g.outputs()[0];
    // `seq*batch` is canonicalized (factors sorted by name).
    assert_eq!(g.value_type(*y).to_string(), "f32[batch*seq, 2]");
    assert_eq!(
        text::dump(&g).unwrap(),
        "graph(%7 \"x\": f32[batch*seq, 2]) {\n  %30 = constant{value=2.0} : f32[]\n  %40 = mul(%7, %30) : f32[batch*seq, 2]\n  return %40 \"y\"\n}\n"
    );
    // Written back, the ids are the document's and inputs come first.
    let back: Json = serde_json::from_str(&json::to_json(&g).unwrap()).unwrap();
    assert_eq!(back["nodes"][0]["op"], "input");
    assert_eq!(back["nodes"][2]["args"], json!(["7", "30"]));
    assert_roundtrip(&g, &registry());
}

#[test]
fn ids_of_2_to_the_32_or_more_are_refused_by_name() {
    let text = r#"{
      "format": "blockfuse-ir", "version": 1,
      "nodes": [{"id": 4294967297, "op": "input", "name": "x", "types": [{"dtype": "f32", "shape": [2]}]}],
      "outputs": [{"name": "y", "value": "4294967297"}]
    }"#;
    let e = json::from_json_with(text, &registry()).unwrap_err().to_string();
    assert!(e.contains("4294967297") && e.contains("too large"), "{e}");
}

#[test]
fn ids_far_sparser_than_the_nodes_are_renumbered_not_reserved() {
    // Keeping id 4·10⁹ would reserve a slot per id below it: the reader renumbers instead.
    let text = r#"{
      "format": "blockfuse-ir", "version": 1,
      "nodes": [
        {"id": 4000000000, "op": "neg", "args": ["3"]},
        {"id": 3, "op": "input", "name": "x", "types": [{"dtype": "f32", "shape": [2]}]}
      ],
      "outputs": [{"name": "y", "value": "4000000000"}]
    }"#;
    let g = json::from_json_with(text, &registry()).unwrap();
    assert_eq!(g.node_bound(), 2);
    assert_eq!(
        text::dump(&g).unwrap(),
        "graph(%0 \"x\": f32[2]) {\n  %1 = neg(%0) : f32[2]\n  return %1 \"y\"\n}\n"
    );
}

#[test]
fn deep_reverse_ordered_chain_reads_without_stack_overflow() {
    // 20 000 nodes written consumer-first: the reader's DFS must be iterative.
    let n = 20_000u64;
    let mut nodes = vec![];
    for i in (1..=n).rev() {
        nodes.push(json!({"id": i, "op": "neg", "args": [(i - 1).to_string()]}));
    }
    nodes.push(json!({"id": 0, "op": "input", "name": "x", "types": [{"dtype": "f32", "shape": [4]}]}));
    let text = json!({
        "format": "blockfuse-ir", "version": 1, "nodes": nodes,
        "outputs": [{"name": "y", "value": n.to_string()}],
    })
    .to_string();
    let g = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || json::from_json_with(&text, &registry()))
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(g.node_count(), n as usize + 1);
    g.validate().unwrap();
}

#[test]
fn reading_is_independent_of_whitespace_and_key_order() {
    let g = split_graph();
    let js = json::to_json(&g).unwrap();
    let compact = serde_json::to_string(&serde_json::from_str::<Json>(&js).unwrap()).unwrap();
    let g2 = json::from_json_with(&compact, &registry()).unwrap();
    assert_eq!(json::to_json(&g2).unwrap(), js);
}

/// The example of `docs/ir-format.md`: both snapshots are copied there verbatim. It uses the
/// library's `rms_norm` block, read back through the process-wide registry.
fn doc_example() -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", f32t(&[sym("batch"), sym("seq"), k(8)]));
    let r = b.input("residual", f32t(&[sym("batch"), sym("seq"), k(8)]));
    let h = b.add2(x, r).unwrap();
    let w = b.constant(HostTensor::from_f32(vec![8], &[1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5]));
    b.graph_mut().set_name(w.node, Some("norm.weight".into()));
    let y = b.block(blocks::RmsNorm::new(1e-5), &[h, w]).unwrap();
    let parts = b.add_multi(Op::Split { axis: -1, sizes: vec![k(4), k(4)] }, &[y[0]]).unwrap();
    let lo = b.reshape(parts[0], vec![batch_seq(), k(4)]).unwrap();
    g.add_output("h", h);
    g.add_output("lo", lo);
    g.add_output("hi", parts[1]);
    g
}

#[test]
fn format_example() {
    let g = doc_example();
    assert_roundtrip(&g, &global_registry());
    insta::assert_snapshot!("format_example_json", json::to_json(&g).unwrap());
    insta::assert_snapshot!("format_example_text", text::dump(&g).unwrap());
}

#[test]
fn format_doc_shows_the_generated_example() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ir-format.md");
    let doc = std::fs::read_to_string(path).expect("docs/ir-format.md");
    let g = doc_example();
    let js = format!("```json\n{}\n```", json::to_json(&g).unwrap());
    let dump = format!("```text\n{}```", text::dump(&g).unwrap());
    assert!(doc.contains(&js), "docs/ir-format.md: the JSON example is stale");
    assert!(doc.contains(&dump), "docs/ir-format.md: the text example is stale");
}

#[test]
fn input_order_is_document_order_not_first_use() {
    // `b` is used first, but `a` is listed first: the graph's inputs are [a, b].
    let text = r#"{
      "format": "blockfuse-ir", "version": 1,
      "nodes": [
        {"id": 9, "op": "sub", "args": ["2", "1"]},
        {"id": 1, "op": "input", "name": "a", "types": [{"dtype": "f32", "shape": [2]}]},
        {"id": 2, "op": "input", "name": "b", "types": [{"dtype": "f32", "shape": [2]}]}
      ],
      "outputs": [{"name": "d", "value": "9"}]
    }"#;
    let g = json::from_json_with(text, &registry()).unwrap();
    let names: Vec<&str> = g.inputs().iter().map(|&id| g.node(id).name.as_deref().unwrap()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(
        text::dump(&g).unwrap(),
        "graph(%1 \"a\": f32[2], %2 \"b\": f32[2]) {\n  %9 = sub(%2, %1) : f32[2]\n  return %9 \"d\"\n}\n"
    );
    assert_roundtrip(&g, &registry());
}
