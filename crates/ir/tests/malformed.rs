//! Malformed JSON documents: each is rejected with its own `IrError` variant and a message
//! that names the node and what is wrong.

mod common;

use blockfuse_ir::*;
use common::*;
use serde_json::{json, Value as Json};

/// A valid document: `y = test_rms_norm(neg(x) + c, w)` with `x: f32[seq, 2]`.
fn base() -> Json {
    json!({
        "format": "blockfuse-ir",
        "version": 1,
        "nodes": [
            {"id": 0, "op": "input", "name": "x", "types": [{"dtype": "f32", "shape": ["seq", 2]}]},
            // 1.0f32, 2.0f32
            {"id": 1, "op": "constant", "name": "c", "attrs": {"dtype": "f32", "dims": [2]}, "data": "AACAPwAAAEA="},
            {"id": 2, "op": "neg", "args": ["0"]},
            {"id": 3, "op": "add", "name": "sum", "args": ["2", "1"], "types": [{"dtype": "f32", "shape": ["seq", 2]}]},
            {"id": 4, "op": "block.test_rms_norm", "attrs": {"eps": 1e-6}, "args": ["3", "1"]}
        ],
        "outputs": [{"name": "y", "value": "4"}]
    })
}

fn read(doc: &Json) -> Result<Graph, IrError> {
    json::from_json_with(&doc.to_string(), &registry())
}

fn read_err(doc: &Json) -> IrError {
    match read(doc) {
        Ok(g) => panic!("accepted:\n{}", text::dump(&g).unwrap()),
        Err(e) => e,
    }
}

/// `base()` with node `i` replaced by `node`.
fn with_node(i: usize, node: Json) -> Json {
    let mut d = base();
    d["nodes"][i] = node;
    d
}

fn assert_msg(e: &IrError, parts: &[&str]) {
    let msg = e.to_string();
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
    }
}

#[test]
fn base_document_is_valid() {
    let g = read(&base()).unwrap();
    g.validate().unwrap();
    assert_eq!(g.node_count(), 5);
    assert_roundtrip(&g, &registry());
}

#[test]
fn syntax_error() {
    let e = json::from_json_with("{\"format\": \"blockfuse-ir\", ", &registry()).unwrap_err();
    assert!(matches!(e, IrError::Json(_)), "{e:?}");
    assert_msg(&e, &["malformed JSON", "EOF"]);
    let e = json::from_json_with("not json at all", &registry()).unwrap_err();
    assert!(matches!(e, IrError::Json(_)), "{e:?}");
}

#[test]
fn wrong_format() {
    let mut d = base();
    d["format"] = json!("onnx");
    let e = read_err(&d);
    assert_eq!(e, IrError::Format("format is \"onnx\", expected \"blockfuse-ir\"".into()));
    assert_msg(&e, &["not a blockfuse-ir document"]);
}

#[test]
fn missing_format_or_not_an_object() {
    let mut d = base();
    d.as_object_mut().unwrap().remove("format");
    let e = read_err(&d);
    assert!(matches!(&e, IrError::Format(m) if m.contains("no \"format\"")), "{e:?}");
    let e = read_err(&json!([1, 2, 3]));
    assert!(matches!(&e, IrError::Format(m) if m.contains("no \"format\"")), "{e:?}");
}

#[test]
fn unsupported_version() {
    let mut d = base();
    d["version"] = json!(2);
    let e = read_err(&d);
    assert_eq!(e, IrError::Format("version 2 is not supported (this build reads version 1)".into()));
    d["version"] = json!("1");
    let e = read_err(&d);
    assert_eq!(e, IrError::Format("no numeric \"version\" field".into()));
}

#[test]
fn missing_top_level_field() {
    let mut d = base();
    d.as_object_mut().unwrap().remove("outputs");
    let e = read_err(&d);
    assert!(matches!(e, IrError::Json(_)), "{e:?}");
    assert_msg(&e, &["missing field `outputs`"]);
}

#[test]
fn missing_node_field() {
    let e = read_err(&with_node(2, json!({"id": 2, "args": ["0"]})));
    assert!(matches!(e, IrError::Json(_)), "{e:?}");
    assert_msg(&e, &["missing field `op`"]);
}

#[test]
fn unknown_field() {
    let mut d = base();
    d["nodes"][2]["shape"] = json!([2]);
    let e = read_err(&d);
    assert!(matches!(e, IrError::Json(_)), "{e:?}");
    assert_msg(&e, &["unknown field `shape`"]);
    let mut d = base();
    d["metadata"] = json!({});
    assert_msg(&read_err(&d), &["unknown field `metadata`"]);
}

#[test]
fn unknown_op() {
    let e = read_err(&with_node(2, json!({"id": 2, "op": "gelu_fast", "name": "act", "args": ["0"]})));
    assert_eq!(e, IrError::BadNode { node: "2 \"act\"".into(), reason: "unknown op 'gelu_fast'".into() });
    assert_eq!(e.to_string(), "node 2 \"act\": unknown op 'gelu_fast'");
}

#[test]
fn unknown_block_kind() {
    let e = read_err(&with_node(4, json!({"id": 4, "op": "block.flash_attention", "args": ["3", "1"]})));
    assert_eq!(
        e,
        IrError::UnknownBlock { node: "4".into(), kind: "flash_attention".into(), known: TEST_BLOCK.into() }
    );
    assert_msg(&e, &["unknown block kind 'flash_attention'", "registered: test_rms_norm"]);
}

#[test]
fn unknown_block_kind_with_empty_registry() {
    let e = json::from_json_with(&base().to_string(), &block::BlockRegistry::new()).unwrap_err();
    assert!(
        matches!(&e, IrError::UnknownBlock { kind, known, .. } if kind == TEST_BLOCK && known.is_empty()),
        "{e:?}"
    );
}

#[test]
fn bad_block_attributes() {
    let e = read_err(&with_node(
        4,
        json!({"id": 4, "op": "block.test_rms_norm", "attrs": {"epsilon": 1e-6}, "args": ["3", "1"]}),
    ));
    assert!(matches!(&e, IrError::BadNode { node, .. } if node == "4"), "{e:?}");
    assert_msg(&e, &["block.test_rms_norm:", "unknown field `epsilon`"]);
}

#[test]
fn bad_attribute_type() {
    let e =
        read_err(&with_node(2, json!({"id": 2, "op": "softmax", "attrs": {"axis": "last"}, "args": ["0"]})));
    assert!(matches!(&e, IrError::BadNode { node, .. } if node == "2"), "{e:?}");
    assert_msg(&e, &["node 2: attribute 'axis': invalid type: string \"last\""]);
}

#[test]
fn missing_attribute() {
    let e =
        read_err(&with_node(2, json!({"id": 2, "op": "reduce_sum", "attrs": {"axes": [-1]}, "args": ["0"]})));
    assert_eq!(e, IrError::BadNode { node: "2".into(), reason: "missing attribute 'keepdims'".into() });
}

#[test]
fn bad_dim_in_attribute() {
    let e = read_err(&with_node(
        2,
        json!({"id": 2, "op": "reshape", "attrs": {"shape": ["seq+-1", 2]}, "args": ["0"]}),
    ));
    assert!(matches!(e, IrError::BadNode { .. }), "{e:?}");
    assert_msg(&e, &["attribute 'shape'", "'seq+-1' is not a dim"]);
}

#[test]
fn bad_slice_bound() {
    let e = read_err(&with_node(
        2,
        json!({"id": 2, "op": "slice", "args": ["0"],
               "attrs": {"axes": [1], "starts": [0], "ends": [true], "steps": [1]}}),
    ));
    assert!(matches!(e, IrError::BadNode { .. }), "{e:?}");
    assert_msg(&e, &["attribute 'ends' must hold integers or dims"]);
}

#[test]
fn bad_float_attribute() {
    let e = read_err(&with_node(
        2,
        json!({"id": 2, "op": "full", "attrs": {"shape": [2], "value": "infinity", "dtype": "f32"}}),
    ));
    assert!(matches!(e, IrError::BadNode { .. }), "{e:?}");
    assert_msg(&e, &["attribute 'value' is not a number"]);
}

#[test]
fn bad_dim_in_types() {
    let mut d = base();
    d["nodes"][0]["types"] = json!([{"dtype": "f32", "shape": ["2seq", 2]}]);
    let e = read_err(&d);
    assert!(matches!(e, IrError::Json(_)), "{e:?}");
    assert_msg(&e, &["'2seq' is not a dim"]);
    let mut d = base();
    d["nodes"][0]["types"] = json!([{"dtype": "f8", "shape": [2]}]);
    assert_msg(&read_err(&d), &["unknown variant `f8`"]);
}

#[test]
fn bad_base64() {
    let mut d = base();
    d["nodes"][1]["data"] = json!("AACAP!!!AEA=");
    let e = read_err(&d);
    assert!(matches!(&e, IrError::BadNode { node, .. } if node == "1 \"c\""), "{e:?}");
    assert_msg(&e, &["constant data is not base64"]);
}

#[test]
fn constant_without_data() {
    let mut d = base();
    d["nodes"][1].as_object_mut().unwrap().remove("data");
    let e = read_err(&d);
    assert_eq!(
        e,
        IrError::BadNode { node: "1 \"c\"".into(), reason: "a constant needs \"data\" (base64)".into() }
    );
}

#[test]
fn constant_size_mismatch() {
    let mut d = base();
    d["nodes"][1]["data"] = json!("AACAPw=="); // 4 bytes for f32[2]
    let e = read_err(&d);
    assert_eq!(
        e,
        IrError::BadNode { node: "1 \"c\"".into(), reason: "tensor of f32[2] needs 8 bytes, got 4".into() }
    );
}

#[test]
fn constant_bad_dtype() {
    let mut d = base();
    d["nodes"][1]["attrs"]["dtype"] = json!("float32");
    let e = read_err(&d);
    assert!(matches!(e, IrError::BadNode { .. }), "{e:?}");
    assert_msg(&e, &["attribute 'dtype'", "unknown variant `float32`"]);
}

#[test]
fn duplicate_id() {
    let mut d = base();
    d["nodes"][3]["id"] = json!(2);
    let e = read_err(&d);
    assert_eq!(e, IrError::BadNode { node: "2 \"sum\"".into(), reason: "duplicate node id 2".into() });
}

#[test]
fn dangling_reference() {
    let mut d = base();
    d["nodes"][3]["args"] = json!(["2", "9"]);
    let e = read_err(&d);
    assert!(
        matches!(&e, IrError::DanglingValue { node, operand: 1, target }
            if node.id.index() == 3 && node.name.as_deref() == Some("sum") && target == "node 9"),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "node %3 \"sum\": operand 1 refers to node 9, which does not exist");
}

#[test]
fn dangling_output_index() {
    // Node 2 exists but has a single output.
    let mut d = base();
    d["nodes"][3]["args"] = json!(["2:1", "1"]);
    let e = read_err(&d);
    assert!(matches!(&e, IrError::DanglingValue { operand: 0, target, .. } if target == "2:1"), "{e:?}");
}

#[test]
fn bad_reference_syntax() {
    for bad in ["%2", "2:x", "", "-1", "2:1:0", "two"] {
        let mut d = base();
        d["nodes"][3]["args"] = json!([bad, "1"]);
        let e = read_err(&d);
        assert!(matches!(e, IrError::BadNode { .. }), "{bad:?}: {e:?}");
        assert_msg(&e, &["node 3 \"sum\"", &format!("operand 0 '{bad}' is not a value reference")]);
    }
}

#[test]
fn cycle() {
    let mut d = base();
    d["nodes"][2]["args"] = json!(["3"]); // neg(sum), sum = neg + c
    let e = read_err(&d);
    assert!(matches!(&e, IrError::Cycle { node } if [2, 3].contains(&node.id.index())), "{e:?}");
    assert_msg(&e, &["the graph has a cycle through this node"]);
}

#[test]
fn self_loop() {
    let mut d = base();
    d["nodes"][2]["args"] = json!(["2"]);
    let e = read_err(&d);
    assert!(matches!(&e, IrError::Cycle { node } if node.id.index() == 2), "{e:?}");
}

#[test]
fn operand_count() {
    let mut d = base();
    d["nodes"][3]["args"] = json!(["2"]);
    let e = read_err(&d);
    assert_eq!(e.to_string(), "node %3 \"sum\" (add): expects 2 operand(s), got 1");
    assert!(
        matches!(&e, IrError::OperandCount { expected, found: 1, op, .. } if expected == "2" && op == "add"),
        "{e:?}"
    );
    let e = read_err(&with_node(2, json!({"id": 2, "op": "concat", "attrs": {"axis": 0}})));
    assert!(
        matches!(&e, IrError::OperandCount { expected, found: 0, .. } if expected == "at least 1"),
        "{e:?}"
    );
}

#[test]
fn leaf_with_operands() {
    let mut d = base();
    d["nodes"][1]["args"] = json!(["0"]);
    let e = read_err(&d);
    assert!(
        matches!(&e, IrError::OperandCount { expected, found: 1, op, .. } if expected == "0" && op == "constant"),
        "{e:?}"
    );
}

#[test]
fn type_mismatch() {
    let mut d = base();
    // c becomes i64[2]: add(f32, i64) is rejected.
    d["nodes"][1]["attrs"]["dtype"] = json!("i64");
    d["nodes"][1]["data"] = json!("AQAAAAAAAAACAAAAAAAAAA==");
    let e = read_err(&d);
    assert_eq!(
        e,
        IrError::Type {
            node: NodeLabel { id: NodeId::new(3), name: Some("sum".into()) },
            op: "add".into(),
            reason: "operand dtypes differ: f32 vs i64".into()
        }
    );
    assert_eq!(e.to_string(), "node %3 \"sum\" (add): operand dtypes differ: f32 vs i64");
}

#[test]
fn shape_mismatch() {
    let mut d = base();
    d["nodes"][1]["attrs"]["dims"] = json!([1, 2]);
    d["nodes"][0]["types"] = json!([{"dtype": "f32", "shape": ["seq", 3]}]);
    let e = read_err(&d);
    assert!(matches!(e, IrError::Type { .. }), "{e:?}");
    assert_msg(&e, &["cannot broadcast [seq, 3] with [1, 2]: axis 1 has 3 vs 2"]);
}

#[test]
fn block_rejects_operands() {
    let mut d = base();
    d["nodes"][4]["args"] = json!(["3", "0"]); // weight f32[seq, 2]
    let e = read_err(&d);
    assert!(matches!(&e, IrError::Block { node, .. } if node.id.index() == 4), "{e:?}");
    assert_msg(&e, &["test_rms_norm: weight is f32[seq, 2], the last axis of x has 2"]);
}

#[test]
fn declared_types_disagree() {
    let mut d = base();
    d["nodes"][3]["types"] = json!([{"dtype": "f32", "shape": ["batch", 2]}]);
    let e = read_err(&d);
    assert_eq!(
        e,
        IrError::TypeDisagrees {
            node: NodeLabel { id: NodeId::new(3), name: Some("sum".into()) },
            op: "add".into(),
            output: 0,
            declared: "f32[batch, 2]".into(),
            inferred: "f32[seq, 2]".into(),
        }
    );
    assert_eq!(
        e.to_string(),
        "node %3 \"sum\" (add): output 0 is declared f32[batch, 2] but inference gives f32[seq, 2]"
    );
}

#[test]
fn declared_output_count_disagrees() {
    let mut d = base();
    d["nodes"][2]["types"] = json!([
        {"dtype": "f32", "shape": ["seq", 2]},
        {"dtype": "f32", "shape": ["seq", 2]}
    ]);
    let e = read_err(&d);
    assert_eq!(
        e,
        IrError::BadNode { node: "2".into(), reason: "declares 2 output types, the op has 1".into() }
    );
}

#[test]
fn dangling_output() {
    for target in ["99", "4:1", "x"] {
        let mut d = base();
        d["outputs"] = json!([{"name": "y", "value": target}]);
        let e = read_err(&d);
        assert_eq!(e, IrError::DanglingOutput { name: "y".into(), target: target.into() });
        assert_eq!(e.to_string(), format!("graph output \"y\" refers to {target}, which does not exist"));
    }
}

#[test]
fn input_without_type() {
    let mut d = base();
    d["nodes"][0].as_object_mut().unwrap().remove("types");
    let e = read_err(&d);
    assert_eq!(
        e,
        IrError::BadNode {
            node: "0 \"x\"".into(),
            reason: "an input needs \"types\" with exactly one type".into()
        }
    );
    let mut d = base();
    d["nodes"][0]["types"] = json!([]);
    assert!(matches!(read_err(&d), IrError::BadNode { .. }));
}

#[test]
fn every_case_is_its_own_variant_or_message() {
    // A sanity check over this file: the malformed cases above cover at least 12 distinct
    // (variant, reason) pairs. Collected here in one place as a table.
    let cases: Vec<(&str, Json)> = vec![
        ("format", {
            let mut d = base();
            d["format"] = json!("x");
            d
        }),
        ("version", {
            let mut d = base();
            d["version"] = json!(7);
            d
        }),
        ("missing field", {
            let mut d = base();
            d.as_object_mut().unwrap().remove("nodes");
            d
        }),
        ("unknown op", with_node(2, json!({"id": 2, "op": "nope", "args": ["0"]}))),
        ("unknown block", with_node(4, json!({"id": 4, "op": "block.nope", "args": ["3"]}))),
        ("attr type", with_node(2, json!({"id": 2, "op": "cast", "attrs": {"to": 3}, "args": ["0"]}))),
        ("base64", {
            let mut d = base();
            d["nodes"][1]["data"] = json!("***");
            d
        }),
        ("size", {
            let mut d = base();
            d["nodes"][1]["attrs"]["dims"] = json!([3]);
            d
        }),
        ("dup", {
            let mut d = base();
            d["nodes"][1]["id"] = json!(0);
            d
        }),
        ("dangling", {
            let mut d = base();
            d["nodes"][2]["args"] = json!(["77"]);
            d
        }),
        ("ref syntax", {
            let mut d = base();
            d["nodes"][2]["args"] = json!(["%0"]);
            d
        }),
        ("cycle", {
            let mut d = base();
            d["nodes"][2]["args"] = json!(["4"]);
            d
        }),
        ("count", {
            let mut d = base();
            d["nodes"][2]["args"] = json!(["0", "0"]);
            d
        }),
        ("type", {
            let mut d = base();
            d["nodes"][2] = json!({"id": 2, "op": "not", "args": ["0"]});
            d
        }),
        ("disagree", {
            let mut d = base();
            d["nodes"][2]["types"] = json!([{"dtype": "f16", "shape": ["seq", 2]}]);
            d
        }),
        ("dangling output", {
            let mut d = base();
            d["outputs"][0]["value"] = json!("5");
            d
        }),
        ("input type", {
            let mut d = base();
            d["nodes"][0].as_object_mut().unwrap().remove("types");
            d
        }),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (what, d) in &cases {
        let e = read_err(d);
        let variant = format!("{e:?}");
        let variant = variant.split([' ', '(', '{']).next().unwrap().to_string();
        // Key on the variant and the message with digits removed.
        let msg: String = e.to_string().chars().filter(|c| !c.is_ascii_digit()).collect();
        assert!(seen.insert((variant, msg.clone())), "{what}: repeated {msg}");
    }
    assert!(seen.len() >= 12);
}

#[test]
fn unknown_attribute_is_rejected() {
    // Misspelt or stray attributes are errors, not silently ignored.
    let mut d = base();
    d["nodes"][2]["attrs"] = json!({"axis": 0});
    let e = read_err(&d);
    assert_eq!(e, IrError::BadNode { node: "2".into(), reason: "unknown attribute 'axis' for neg".into() });
    let e = read_err(&with_node(
        2,
        json!({"id": 2, "op": "reduce_sum", "attrs": {"axes": [-1], "keepdims": true, "keepdim": false}, "args": ["0"]}),
    ));
    assert_msg(&e, &["unknown attribute 'keepdim' for reduce_sum"]);
    let mut d = base();
    d["nodes"][1]["attrs"]["scale"] = json!(2.0);
    assert_msg(&read_err(&d), &["node 1 \"c\": unknown attribute 'scale' for constant"]);
    let mut d = base();
    d["nodes"][0]["attrs"] = json!({"dtype": "f32"});
    assert_msg(&read_err(&d), &["unknown attribute 'dtype' for input"]);
}

#[test]
fn data_on_a_non_constant_is_rejected() {
    let mut d = base();
    d["nodes"][2]["data"] = json!("AAAAAA==");
    let e = read_err(&d);
    assert_eq!(e, IrError::BadNode { node: "2".into(), reason: "only constants carry \"data\"".into() });
}

// --- Resource limits (issue 14): checked before decoding or allocating ---------------------

fn read_limited(doc: &Json, max_tensor_bytes: u64, max_constant_bytes: u64) -> Result<Graph, IrError> {
    let limits = limits::Limits { max_tensor_bytes, max_constant_bytes };
    json::from_json_limited(&doc.to_string(), &registry(), &limits)
}

fn limit_err(e: IrError, node: &str, option: &str) {
    match &e {
        IrError::ResourceLimit { node: n, option: o, bytes, limit, .. } => {
            assert_eq!((n.as_str(), o.as_str()), (node, option), "{e}");
            assert!(bytes > limit, "{e}");
        }
        other => panic!("not a resource limit: {other:?}"),
    }
}

#[test]
fn constant_of_1e6_by_1e6_is_refused_before_decoding() {
    let mut d = base();
    // 4 TB declared, no data at all: the size is refused before the data is looked at.
    d["nodes"][1]["attrs"]["dims"] = json!([1_000_000, 1_000_000]);
    d["nodes"][1]["data"] = json!("");
    let e = read_err(&d);
    limit_err(e.clone(), "1 \"c\"", "max_tensor_bytes");
    assert_msg(&e, &["constant f32[1000000, 1000000]", "4000000000000 bytes"]);
}

#[test]
fn constant_dims_whose_product_overflows_are_refused() {
    let mut d = base();
    d["nodes"][1]["attrs"]["dims"] = json!([u64::MAX, 2]);
    limit_err(read_err(&d), "1 \"c\"", "max_tensor_bytes");
}

#[test]
fn constant_over_a_small_tensor_limit() {
    // c is f32[2]: 8 bytes.
    limit_err(read_limited(&base(), 7, 100).unwrap_err(), "1 \"c\"", "max_tensor_bytes");
    read_limited(&base(), 8, 8).unwrap();
}

#[test]
fn constants_together_over_the_total_limit() {
    let mut d = base();
    let mut c2 = d["nodes"][1].clone();
    c2["id"] = json!(5);
    c2["name"] = json!("c2");
    d["nodes"].as_array_mut().unwrap().push(c2);
    d["outputs"].as_array_mut().unwrap().push(json!({"name": "c2", "value": "5"}));
    // 8 + 8 bytes of constants: 15 is one short.
    let e = read_limited(&d, 8, 15).unwrap_err();
    limit_err(e.clone(), "5 \"c2\"", "max_constant_bytes");
    assert_msg(&e, &["the constants together"]);
    read_limited(&d, 8, 16).unwrap();
}

#[test]
fn input_over_the_tensor_limit() {
    let mut d = base();
    d["nodes"][0]["types"] = json!([{"dtype": "f32", "shape": [1_000_000, 1_000_000]}]);
    let e = read_err(&d);
    limit_err(e.clone(), "0 \"x\"", "max_tensor_bytes");
    assert_msg(&e, &["output 0 f32[1000000, 1000000]"]);
}

#[test]
fn computed_value_over_the_tensor_limit() {
    // x: f32[seq, 2] expanded to [1e6, 1e6, 2]: refused at the expand, though no input or
    // constant is large.
    let mut d = base();
    d["nodes"][2] =
        json!({"id": 2, "op": "expand", "attrs": {"shape": [1_000_000, 1_000_000, 2]}, "args": ["0"]});
    d["nodes"][0]["types"] = json!([{"dtype": "f32", "shape": [1, 2]}]);
    d["nodes"][3]["types"] = json!(null);
    d["nodes"].as_array_mut().unwrap().truncate(3);
    d["outputs"] = json!([{"name": "y", "value": "2"}]);
    limit_err(read_err(&d), "2", "max_tensor_bytes");
}

#[test]
fn symbolic_dims_that_overflow_saturate_instead_of_panicking() {
    // 2^40 · 2^40 elements overflow usize: the product saturates, and the limit refuses it.
    let mut d = base();
    let huge = 1u64 << 40;
    d["nodes"][0]["types"] = json!([{"dtype": "f32", "shape": [format!("{huge}*seq"), huge]}]);
    d["nodes"][2] = json!({"id": 2, "op": "reshape", "attrs": {"shape": [-1]}, "args": ["0"]});
    d["nodes"][3]["types"] = json!(null);
    d["nodes"].as_array_mut().unwrap().truncate(3);
    d["outputs"] = json!([{"name": "y", "value": "2"}]);
    let g = read_limited(&d, u64::MAX, u64::MAX).unwrap();
    let y = g.outputs()[0].1;
    assert_eq!(g.value_type(y).shape[0], Dim::mul(&Dim::Known(usize::MAX), &Dim::sym("seq")));
}
