//! Malformed and hostile models: each case must end in its specific, typed error (naming the
//! node or tensor), never a panic, an abort or a huge allocation. Includes every crash of
//! issue 12 (Shape with no outputs, Flatten axis −10, Tile repeats −1, Split num_outputs=0,
//! SplitToSequence split=0, dim_value −1, optimize of `mul(x: f32[0], const f32[0])`) and the
//! resource bounds of issue 14 (`ConstantOfShape([1e6, 1e6])` in a tiny model).

use blockfuse_ir::{BinaryOp, DType, Graph, HostTensor, Op, TensorType};
use blockfuse_onnx::import::{import_model_with, ImportOptions};
use blockfuse_onnx::proto::tensor_shape_proto::{dimension, Dimension};
use blockfuse_onnx::proto::{
    attribute_proto::AttributeType, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use blockfuse_onnx::{import_model, tensor_to_proto, OnnxError};
use prost::Message;

fn vi(name: &str, elem: i32, dims: &[&str]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d.parse::<i64>() {
                Ok(v) => dimension::Value::DimValue(v),
                Err(_) => dimension::Value::DimParam(d.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(format!("{op}_0")),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn with(mut n: NodeProto, a: AttributeProto) -> NodeProto {
    n.attribute.push(a);
    n
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn tensor_attr(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Tensor as i32),
        t: Some(t),
        ..Default::default()
    }
}

fn i64s(name: &str, dims: &[usize], v: &[i64]) -> TensorProto {
    tensor_to_proto(name, &HostTensor::from_i64(dims.to_vec(), v))
}

/// A model with graph input `x: f32[2, 3]`, the given initializers and nodes, output `y`.
fn model_with(inputs: Vec<ValueInfoProto>, inits: Vec<TensorProto>, nodes: Vec<NodeProto>) -> ModelProto {
    ModelProto {
        ir_version: Some(9),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(21) }],
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: nodes,
            input: inputs,
            initializer: inits,
            output: vec![ValueInfoProto { name: Some("y".into()), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn model(inits: Vec<TensorProto>, nodes: Vec<NodeProto>) -> ModelProto {
    model_with(vec![vi("x", 1, &["2", "3"])], inits, nodes)
}

fn err(m: &ModelProto) -> OnnxError {
    match import_model(m) {
        Ok(g) => panic!("imported, but should fail:\n{}", blockfuse_ir::text::dump(&g).unwrap_or_default()),
        Err(e) => e,
    }
}

fn err_with(m: &ModelProto, o: &ImportOptions) -> OnnxError {
    match import_model_with(m, o) {
        Ok(g) => panic!("imported, but should fail:\n{}", blockfuse_ir::text::dump(&g).unwrap_or_default()),
        Err(e) => e,
    }
}

/// `e` is an `Import` error of node `node` whose reason contains `part`.
#[track_caller]
fn import_err(e: OnnxError, node: &str, part: &str) {
    match &e {
        OnnxError::Import { node: n, reason, .. } if n == node && reason.contains(part) => {}
        _ => panic!("expected an Import error of '{node}' containing '{part}', got {e:?}"),
    }
}

#[track_caller]
fn bad_attr(e: OnnxError, node: &str, attr: &str, part: &str) {
    match &e {
        OnnxError::BadAttribute { node: n, attribute, reason, .. }
            if n == node && attribute == attr && reason.contains(part) => {}
        _ => panic!("expected a BadAttribute '{attr}' of '{node}' containing '{part}', got {e:?}"),
    }
}

#[track_caller]
fn limit(e: OnnxError, node: &str, option: &str) {
    match &e {
        OnnxError::ResourceLimit { node: n, option: o, bytes, limit, .. }
            if n == node && *o == option && bytes > limit => {}
        _ => panic!("expected a ResourceLimit ({option}) of '{node}', got {e:?}"),
    }
}

// --- The crashes of issue 12 -------------------------------------------------------------

#[test]
fn shape_without_outputs() {
    import_err(err(&model(vec![], vec![node("Shape", &["x"], &[])])), "Shape_0", "missing output 0");
}

#[test]
fn flatten_axis_minus_10() {
    let m = model(vec![], vec![with(node("Flatten", &["x"], &["y"]), int("axis", -10))]);
    bad_attr(err(&m), "Flatten_0", "axis", "out of range");
}

#[test]
fn flatten_axis_past_rank() {
    let m = model(vec![], vec![with(node("Flatten", &["x"], &["y"]), int("axis", 3))]);
    bad_attr(err(&m), "Flatten_0", "axis", "out of range");
}

#[test]
fn tile_repeats_minus_1() {
    let m = model(vec![i64s("r", &[2], &[1, -1])], vec![node("Tile", &["x", "r"], &["y"])]);
    import_err(err(&m), "Tile_0", "repeats entry -1 is negative");
}

#[test]
fn tile_repeats_of_wrong_length() {
    let m = model(vec![i64s("r", &[1], &[2])], vec![node("Tile", &["x", "r"], &["y"])]);
    import_err(err(&m), "Tile_0", "1 repeats for an input of rank 2");
}

#[test]
fn tile_repeats_huge_is_a_resource_error() {
    let m = model(vec![i64s("r", &[2], &[1 << 40, 1 << 20])], vec![node("Tile", &["x", "r"], &["y"])]);
    limit(err(&m), "Tile_0", "max_tensor_bytes");
}

#[test]
fn split_num_outputs_0() {
    let m = model(vec![], vec![with(node("Split", &["x"], &["y"]), int("num_outputs", 0))]);
    bad_attr(err(&m), "Split_0", "num_outputs", "at least 1");
}

#[test]
fn split_num_outputs_negative() {
    let m = model(vec![], vec![with(node("Split", &["x"], &["y"]), int("num_outputs", -3))]);
    bad_attr(err(&m), "Split_0", "num_outputs", "negative");
}

#[test]
fn split_without_outputs() {
    import_err(err(&model(vec![], vec![node("Split", &["x"], &[])])), "Split_0", "no outputs");
}

#[test]
fn split_negative_size() {
    let m = model(vec![], vec![with(node("Split", &["x"], &["y", "z"]), ints("split", &[3, -1]))]);
    bad_attr(err(&m), "Split_0", "split", "size -1 is negative");
}

#[test]
fn split_to_sequence_split_0() {
    let nodes = vec![node("SplitToSequence", &["x", "s"], &["q"]), node("SequenceAt", &["q", "p"], &["y"])];
    let m = model(vec![i64s("s", &[], &[0]), i64s("p", &[], &[0])], nodes);
    import_err(err(&m), "SplitToSequence_0", "split size 0");
}

#[test]
fn split_to_sequence_negative_split() {
    let nodes = vec![node("SplitToSequence", &["x", "s"], &["q"]), node("SequenceAt", &["q", "p"], &["y"])];
    let m = model(vec![i64s("s", &[2], &[3, -1]), i64s("p", &[], &[0])], nodes);
    import_err(err(&m), "SplitToSequence_0", "split size -1 is negative");
}

#[test]
fn dim_value_minus_1() {
    let m = model_with(vec![vi("x", 1, &["2", "-1"])], vec![], vec![node("Relu", &["x"], &["y"])]);
    import_err(err(&m), "x", "negative dim_value -1");
}

#[test]
fn optimize_of_mul_of_empty_tensors() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::known(DType::F32, &[0]));
    let c = g.add_node(Op::Constant(HostTensor::from_f32(vec![0], &[])), &[], None).unwrap();
    let c = blockfuse_ir::Value { node: c, output: 0 };
    let m = g.add_node(Op::Binary(BinaryOp::Mul), &[x, c], None).unwrap();
    g.add_output("y", blockfuse_ir::Value { node: m, output: 0 });
    let report = blockfuse_patterns::optimize(&mut g, &blockfuse_patterns::default_rules());
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(g.outputs().len(), 1);
}

// --- Resource bounds ---------------------------------------------------------------------

#[test]
fn constant_of_shape_1e6_by_1e6_in_a_tiny_model() {
    let m = ModelProto {
        graph: Some(GraphProto {
            node: vec![NodeProto {
                op_type: Some("ConstantOfShape".into()),
                input: vec!["s".into()],
                output: vec!["y".into()],
                ..Default::default()
            }],
            initializer: vec![i64s("s", &[2], &[1_000_000, 1_000_000])],
            output: vec![ValueInfoProto { name: Some("y".into()), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(m.encoded_len() < 64, "{} bytes", m.encoded_len());
    let e = err(&m);
    assert!(e.to_string().contains("f32[1000000, 1000000]"), "{e}");
    limit(e, "<ConstantOfShape -> y>", "max_tensor_bytes");
}

#[test]
fn expand_to_a_huge_shape() {
    let m = model(vec![i64s("s", &[3], &[1 << 40, 2, 3])], vec![node("Expand", &["x", "s"], &["y"])]);
    limit(err(&m), "Expand_0", "max_tensor_bytes");
}

#[test]
fn range_of_1e15_elements() {
    let nodes = vec![node("Range", &["a", "b", "c"], &["y"])];
    let m = model(
        vec![i64s("a", &[], &[0]), i64s("b", &[], &[1_000_000_000_000_000]), i64s("c", &[], &[1])],
        nodes,
    );
    limit(err(&m), "Range_0", "max_tensor_bytes");
}

#[test]
fn initializer_over_the_tensor_limit() {
    let o = ImportOptions { max_tensor_bytes: 16, ..ImportOptions::default() };
    let w = tensor_to_proto("w", &HostTensor::from_f32(vec![2, 3], &[0.0; 6]));
    let m = model(vec![w], vec![node("Add", &["x", "w"], &["y"])]);
    limit(err_with(&m, &o), "w", "max_tensor_bytes");
}

#[test]
fn constants_together_over_the_total_limit() {
    let o = ImportOptions { max_tensor_bytes: 1024, max_constant_bytes: 40 };
    let w = tensor_to_proto("w", &HostTensor::from_f32(vec![2, 3], &[0.0; 6]));
    let b = tensor_to_proto("b", &HostTensor::from_f32(vec![2, 3], &[0.0; 6]));
    let nodes = vec![node("Add", &["x", "w"], &["t"]), node("Add", &["t", "b"], &["y"])];
    let e = err_with(&model(vec![w, b], nodes), &o);
    assert!(e.to_string().contains("with the 24 bytes of constants before it"), "{e}");
    limit(e, "b", "max_constant_bytes");
}

#[test]
fn constant_node_over_the_tensor_limit() {
    let o = ImportOptions { max_tensor_bytes: 16, ..ImportOptions::default() };
    let t = tensor_to_proto("", &HostTensor::from_f32(vec![2, 3], &[0.0; 6]));
    let nodes =
        vec![with(node("Constant", &[], &["c"]), tensor_attr("value", t)), node("Add", &["x", "c"], &["y"])];
    let m = model_with(vec![vi("x", 1, &["1"])], vec![], nodes);
    limit(err_with(&m, &o), "Constant_0", "max_tensor_bytes");
}

#[test]
fn graph_input_over_the_tensor_limit() {
    let o = ImportOptions { max_tensor_bytes: 16, ..ImportOptions::default() };
    limit(err_with(&model(vec![], vec![node("Relu", &["x"], &["y"])]), &o), "x", "max_tensor_bytes");
}

#[test]
fn declared_initializer_size_is_checked_before_decoding() {
    // Dims claim 2^62 elements with no data: the limit answers before any decoding.
    let t = TensorProto {
        name: Some("w".into()),
        data_type: Some(1),
        dims: vec![1 << 31, 1 << 31],
        ..Default::default()
    };
    let m = model(vec![t], vec![node("Add", &["x", "w"], &["y"])]);
    limit(err(&m), "w", "max_tensor_bytes");
}

// --- Other malformed nodes ----------------------------------------------------------------

#[test]
fn range_with_delta_0() {
    let nodes = vec![node("Range", &["a", "b", "c"], &["y"])];
    let m = model(vec![i64s("a", &[], &[0]), i64s("b", &[], &[10]), i64s("c", &[], &[0])], nodes);
    import_err(err(&m), "Range_0", "non-zero delta");
}

#[test]
fn cast_to_an_out_of_range_type() {
    let m = model(vec![], vec![with(node("Cast", &["x"], &["y"]), int("to", 1 << 40))]);
    bad_attr(err(&m), "Cast_0", "to", "not an element type");
}

#[test]
fn cast_to_string() {
    let m = model(vec![], vec![with(node("Cast", &["x"], &["y"]), int("to", 8))]);
    assert!(matches!(err(&m), OnnxError::UnsupportedDtype { data_type: 8, ref tensor } if tensor == "y"));
}

#[test]
fn transpose_negative_perm() {
    let m = model(vec![], vec![with(node("Transpose", &["x"], &["y"]), ints("perm", &[-1, 0]))]);
    bad_attr(err(&m), "Transpose_0", "perm", "entry -1 is negative");
}

#[test]
fn concat_without_inputs() {
    let m = model(vec![], vec![with(node("Concat", &[], &["y"]), int("axis", 0))]);
    import_err(err(&m), "Concat_0", "no inputs");
}

#[test]
fn max_without_inputs() {
    import_err(err(&model(vec![], vec![node("Max", &[], &["y"])])), "Max_0", "no inputs");
}

#[test]
fn slice_step_0() {
    let inits =
        vec![i64s("s", &[1], &[0]), i64s("e", &[1], &[2]), i64s("a", &[1], &[0]), i64s("st", &[1], &[0])];
    let m = model(inits, vec![node("Slice", &["x", "s", "e", "a", "st"], &["y"])]);
    import_err(err(&m), "Slice_0", "step is 0");
}

#[test]
fn unsqueeze_repeated_axes() {
    let m = model(vec![i64s("a", &[2], &[0, 0])], vec![node("Unsqueeze", &["x", "a"], &["y"])]);
    import_err(err(&m), "Unsqueeze_0", "repeated axes");
}

#[test]
fn squeeze_of_an_axis_that_is_not_1() {
    let m = model(vec![i64s("a", &[1], &[1])], vec![node("Squeeze", &["x", "a"], &["y"])]);
    import_err(err(&m), "Squeeze_0", "axis 1 has size 3, not 1");
}

#[test]
fn reshape_with_two_minus_ones() {
    let m = model(vec![i64s("s", &[2], &[-1, -1])], vec![node("Reshape", &["x", "s"], &["y"])]);
    import_err(err(&m), "Reshape_0", "two -1 entries");
}

#[test]
fn reshape_to_a_data_dependent_shape() {
    let inputs = vec![vi("x", 1, &["2", "3"]), vi("s", 7, &["2"])];
    let m = model_with(inputs, vec![], vec![node("Reshape", &["x", "s"], &["y"])]);
    match err(&m) {
        OnnxError::Unsupported { node, reason, .. } => {
            assert_eq!(node, "Reshape_0");
            assert!(reason.contains("not computable at import time"), "{reason}");
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn use_before_definition() {
    import_err(err(&model(vec![], vec![node("Relu", &["nope"], &["y"])])), "Relu_0", "'nope' is not defined");
}

#[test]
fn rotary_embedding_dim_negative() {
    let inputs =
        vec![vi("x", 1, &["1", "2", "3", "8"]), vi("c", 1, &["1", "3", "4"]), vi("s", 1, &["1", "3", "4"])];
    let n = with(node("RotaryEmbedding", &["x", "c", "s"], &["y"]), int("rotary_embedding_dim", -4));
    bad_attr(
        err(&model_with(inputs, vec![], vec![n])),
        "RotaryEmbedding_0",
        "rotary_embedding_dim",
        "negative",
    );
}

#[test]
fn rotary_embedding_dim_past_the_head_size() {
    let inputs =
        vec![vi("x", 1, &["1", "2", "3", "8"]), vi("c", 1, &["1", "3", "4"]), vi("s", 1, &["1", "3", "4"])];
    let n = with(node("RotaryEmbedding", &["x", "c", "s"], &["y"]), int("rotary_embedding_dim", 10));
    bad_attr(
        err(&model_with(inputs, vec![], vec![n])),
        "RotaryEmbedding_0",
        "rotary_embedding_dim",
        "at most the head size 8",
    );
}

#[test]
fn sequence_position_out_of_range() {
    let nodes = vec![node("SplitToSequence", &["x"], &["q"]), node("SequenceAt", &["q", "p"], &["y"])];
    let m = model(vec![i64s("p", &[], &[5])], nodes);
    import_err(err(&m), "SequenceAt_0", "position 5 out of range for 2 items");
}

#[test]
fn constant_of_shape_value_with_two_elements() {
    let v = i64s("", &[2], &[1, 2]);
    let n = with(node("ConstantOfShape", &["s"], &["y"]), tensor_attr("value", v));
    bad_attr(err(&model(vec![i64s("s", &[1], &[3])], vec![n])), "ConstantOfShape_0", "value", "one element");
}

#[test]
fn dropout_without_outputs() {
    import_err(err(&model(vec![], vec![node("Dropout", &["x"], &[])])), "Dropout_0", "missing output 0");
}

#[test]
fn initializer_with_negative_dim() {
    let t = TensorProto { name: Some("w".into()), data_type: Some(1), dims: vec![-2], ..Default::default() };
    let m = model(vec![t], vec![node("Add", &["x", "w"], &["y"])]);
    assert!(
        matches!(err(&m), OnnxError::MalformedTensor { ref tensor, ref reason } if tensor == "w" && reason.contains("negative dim"))
    );
}

#[test]
fn initializer_with_short_raw_data() {
    let t = TensorProto {
        name: Some("w".into()),
        data_type: Some(1),
        dims: vec![3],
        raw_data: Some(vec![0; 8].into()),
        ..Default::default()
    };
    let m = model(vec![t], vec![node("Add", &["x", "w"], &["y"])]);
    assert!(
        matches!(err(&m), OnnxError::MalformedTensor { ref tensor, ref reason } if tensor == "w" && reason.contains("raw_data has 8 bytes"))
    );
}

#[test]
fn model_without_graph() {
    assert!(matches!(import_model(&ModelProto::default()), Err(OnnxError::MissingGraph { .. })));
}

#[test]
fn known_arithmetic_overflow_is_not_folded() {
    // -(i64::MIN) and 2^(2^32) do not fold (no overflow panic, no wrong value): they stay IR ops.
    let nodes =
        vec![node("Neg", &["a"], &["n"]), node("Pow", &["b", "e"], &["p"]), node("Add", &["n", "p"], &["y"])];
    let inits = vec![i64s("a", &[1], &[i64::MIN]), i64s("b", &[1], &[2]), i64s("e", &[1], &[1 << 32])];
    let g = import_model(&model(inits, nodes)).unwrap();
    let text = blockfuse_ir::text::dump(&g).unwrap();
    assert!(text.contains("neg") && text.contains("pow"), "{text}");
}

#[test]
fn data_dependent_shape_names_the_op_chain() {
    // Reshape(x, Cast(Ceil(Div(Cast(n, f32), 2.0)), i64)) with n a graph input.
    let inputs = vec![vi("x", 1, &["2", "3"]), vi("n", 7, &["2"])];
    let two = tensor_to_proto("two", &HostTensor::from_f32(vec![], &[2.0]));
    let nodes = vec![
        with(node("Cast", &["n"], &["nf"]), int("to", 1)),
        node("Div", &["nf", "two"], &["h"]),
        node("Ceil", &["h"], &["c"]),
        with(NodeProto { name: Some("Cast_1".into()), ..node("Cast", &["c"], &["s"]) }, int("to", 7)),
        node("Reshape", &["x", "s"], &["y"]),
    ];
    match err(&model_with(inputs, vec![two], nodes)) {
        OnnxError::Unsupported { node, reason, .. } => {
            assert_eq!(node, "Reshape_0");
            assert!(
                reason.contains(
                    "Cast 'Cast_1' ← Ceil 'Ceil_0' ← Div 'Div_0' ← Cast 'Cast_0' ← graph input 'n'"
                ),
                "{reason}"
            );
        }
        e => panic!("{e:?}"),
    }
}

// --- Attention, GatherND and Dropout modes -------------------------------------------------

/// `Attention(q, k, v, …)` of 4-D `f32[1, 2, 3, 4]` inputs with extra inputs and attributes.
fn attention(inputs: &[&str], attrs: Vec<AttributeProto>) -> ModelProto {
    let mut ins: Vec<ValueInfoProto> =
        ["q", "k", "v"].iter().map(|n| vi(n, 1, &["1", "2", "3", "4"])).collect();
    ins.push(vi("pk", 1, &["1", "2", "5", "4"]));
    ins.push(vi("lens", 7, &["1"]));
    let mut n = node("Attention", inputs, &["y"]);
    n.attribute = attrs;
    model_with(ins, vec![], vec![n])
}

#[test]
fn attention_past_key_without_past_value() {
    let m = attention(&["q", "k", "v", "", "pk"], vec![]);
    import_err(err(&m), "Attention_0", "past_key and past_value must be given together");
}

#[test]
fn attention_nonpad_with_past() {
    let m = attention(&["q", "k", "v", "", "pk", "pk", "lens"], vec![]);
    import_err(err(&m), "Attention_0", "nonpad_kv_seqlen cannot be combined with past key-values");
}

#[test]
fn attention_qk_matmul_output_mode_out_of_range() {
    let m = attention(&["q", "k", "v"], vec![int("qk_matmul_output_mode", 7)]);
    import_err(err(&m), "Attention_0", "qk_matmul_output_mode 7");
}

#[test]
fn attention_window_below_minus_1() {
    let m = attention(&["q", "k", "v"], vec![int("left_window_size", -3)]);
    import_err(err(&m), "Attention_0", "left_window_size -3");
}

#[test]
fn gather_nd_batch_dims_out_of_range() {
    let idx = i64s("i", &[2, 1], &[0, 1]);
    let m = model(vec![idx], vec![with(node("GatherND", &["x", "i"], &["y"]), int("batch_dims", 2))]);
    import_err(err(&m), "GatherND_0", "batch_dims must be in [0, rank(indices))");
}

#[test]
fn gather_nd_empty_index_tuples() {
    let idx = i64s("i", &[2, 0], &[]);
    let m = model(vec![idx], vec![node("GatherND", &["x", "i"], &["y"])]);
    import_err(err(&m), "GatherND_0", "known, positive size");
}

/// A `training_mode` given as a graph input is a value to specialize on (named in the
/// refusal); a random training-mode dropout stays refused.
#[test]
fn dropout_training_mode_input() {
    let ins = vec![vi("x", 1, &["2", "3"]), vi("t", 9, &[])];
    let ratio = tensor_to_proto("r", &HostTensor::scalar(DType::F32, 0.5));
    let m = model_with(ins, vec![ratio], vec![node("Dropout", &["x", "r", "t"], &["y"])]);
    let e = err(&m);
    assert_eq!(e.uncomputable_operand().as_deref(), Some("t"), "{e}");
    let s = blockfuse_onnx::specialize::Model::from_proto(
        m,
        std::path::Path::new("."),
        &ImportOptions::default(),
    )
    .unwrap();
    let on = vec![("t".to_string(), HostTensor::scalar(DType::Bool, 1.0))];
    match s.import_with_values(&on).unwrap_err() {
        OnnxError::Unsupported { reason, .. } => {
            assert!(reason.contains("training mode (random)"), "{reason}")
        }
        e => panic!("{e}"),
    }
    let off = vec![("t".to_string(), HostTensor::scalar(DType::Bool, 0.0))];
    let g = s.import_with_values(&off).unwrap();
    assert_eq!(g.bound, ["t"]);
    assert_eq!(g.graph.inputs().len(), 1);
}
