//! Malformed and hostile models: each case must end in its specific, typed error (naming the
//! node or tensor), never a panic, an abort or a huge allocation. Includes every crash of
//! issue 12 (Shape with no outputs, Flatten axis −10, Tile repeats −1, Split num_outputs=0,
//! SplitToSequence split=0, dim_value −1, optimize of `mul(x: f32[0], const f32[0])`) and the
//! resource bounds of issue 14 (`ConstantOfShape([1e6, 1e6])` in a tiny model).

use blockfuse_ir::{BinaryOp, DType, Graph, HostTensor, Op, TensorType};
use blockfuse_onnx::build::{
    self, attr_int, attr_ints, attr_tensor, opset, tensor_i64, value_info, value_name,
};
use blockfuse_onnx::import::{import_model_with, ImportOptions};
use blockfuse_onnx::proto::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto};
use blockfuse_onnx::{import_model, tensor_to_proto, OnnxError};
use prost::Message;

/// A node named `<op>_0`, the name the errors below are expected to carry.
fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    build::node(op, &format!("{op}_0"), inputs, outputs)
}

/// A model with the given graph inputs, initializers and nodes, and output `y`.
fn model_with(inputs: Vec<ValueInfoProto>, inits: Vec<TensorProto>, nodes: Vec<NodeProto>) -> ModelProto {
    let graph = GraphProto {
        name: Some("g".into()),
        node: nodes,
        input: inputs,
        initializer: inits,
        output: vec![value_name("y")],
        ..Default::default()
    };
    build::model(9, vec![opset("", 21)], graph)
}

/// A model with graph input `x: f32[2, 3]`, the given initializers and nodes, output `y`.
fn model(inits: Vec<TensorProto>, nodes: Vec<NodeProto>) -> ModelProto {
    model_with(vec![value_info("x", 1, &["2", "3"])], inits, nodes)
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
    let m = model(vec![], vec![node("Flatten", &["x"], &["y"]).with_attribute(attr_int("axis", -10))]);
    bad_attr(err(&m), "Flatten_0", "axis", "out of range");
}

#[test]
fn flatten_axis_past_rank() {
    let m = model(vec![], vec![node("Flatten", &["x"], &["y"]).with_attribute(attr_int("axis", 3))]);
    bad_attr(err(&m), "Flatten_0", "axis", "out of range");
}

#[test]
fn tile_repeats_minus_1() {
    let m = model(vec![tensor_i64("r", &[2], &[1, -1])], vec![node("Tile", &["x", "r"], &["y"])]);
    import_err(err(&m), "Tile_0", "repeats entry -1 is negative");
}

#[test]
fn tile_repeats_of_wrong_length() {
    let m = model(vec![tensor_i64("r", &[1], &[2])], vec![node("Tile", &["x", "r"], &["y"])]);
    import_err(err(&m), "Tile_0", "1 repeats for an input of rank 2");
}

#[test]
fn tile_repeats_huge_is_a_resource_error() {
    let m = model(vec![tensor_i64("r", &[2], &[1 << 40, 1 << 20])], vec![node("Tile", &["x", "r"], &["y"])]);
    limit(err(&m), "Tile_0", "max_tensor_bytes");
}

#[test]
fn split_num_outputs_0() {
    let m = model(vec![], vec![node("Split", &["x"], &["y"]).with_attribute(attr_int("num_outputs", 0))]);
    bad_attr(err(&m), "Split_0", "num_outputs", "at least 1");
}

#[test]
fn split_num_outputs_negative() {
    let m = model(vec![], vec![node("Split", &["x"], &["y"]).with_attribute(attr_int("num_outputs", -3))]);
    bad_attr(err(&m), "Split_0", "num_outputs", "negative");
}

#[test]
fn split_without_outputs() {
    import_err(err(&model(vec![], vec![node("Split", &["x"], &[])])), "Split_0", "no outputs");
}

#[test]
fn split_negative_size() {
    let m =
        model(vec![], vec![node("Split", &["x"], &["y", "z"]).with_attribute(attr_ints("split", &[3, -1]))]);
    bad_attr(err(&m), "Split_0", "split", "size -1 is negative");
}

#[test]
fn split_to_sequence_split_0() {
    let nodes = vec![node("SplitToSequence", &["x", "s"], &["q"]), node("SequenceAt", &["q", "p"], &["y"])];
    let m = model(vec![tensor_i64("s", &[], &[0]), tensor_i64("p", &[], &[0])], nodes);
    import_err(err(&m), "SplitToSequence_0", "split size 0");
}

#[test]
fn split_to_sequence_negative_split() {
    let nodes = vec![node("SplitToSequence", &["x", "s"], &["q"]), node("SequenceAt", &["q", "p"], &["y"])];
    let m = model(vec![tensor_i64("s", &[2], &[3, -1]), tensor_i64("p", &[], &[0])], nodes);
    import_err(err(&m), "SplitToSequence_0", "split size -1 is negative");
}

#[test]
fn dim_value_minus_1() {
    let m = model_with(vec![value_info("x", 1, &["2", "-1"])], vec![], vec![node("Relu", &["x"], &["y"])]);
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
            initializer: vec![tensor_i64("s", &[2], &[1_000_000, 1_000_000])],
            output: vec![value_name("y")],
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
    let m = model(vec![tensor_i64("s", &[3], &[1 << 40, 2, 3])], vec![node("Expand", &["x", "s"], &["y"])]);
    limit(err(&m), "Expand_0", "max_tensor_bytes");
}

#[test]
fn range_of_1e15_elements() {
    let nodes = vec![node("Range", &["a", "b", "c"], &["y"])];
    let m = model(
        vec![
            tensor_i64("a", &[], &[0]),
            tensor_i64("b", &[], &[1_000_000_000_000_000]),
            tensor_i64("c", &[], &[1]),
        ],
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
    let nodes = vec![
        node("Constant", &[], &["c"]).with_attribute(attr_tensor("value", t)),
        node("Add", &["x", "c"], &["y"]),
    ];
    let m = model_with(vec![value_info("x", 1, &["1"])], vec![], nodes);
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
    let m = model(
        vec![tensor_i64("a", &[], &[0]), tensor_i64("b", &[], &[10]), tensor_i64("c", &[], &[0])],
        nodes,
    );
    import_err(err(&m), "Range_0", "non-zero delta");
}

#[test]
fn cast_to_an_out_of_range_type() {
    let m = model(vec![], vec![node("Cast", &["x"], &["y"]).with_attribute(attr_int("to", 1 << 40))]);
    bad_attr(err(&m), "Cast_0", "to", "not an element type");
}

#[test]
fn cast_to_string() {
    let m = model(vec![], vec![node("Cast", &["x"], &["y"]).with_attribute(attr_int("to", 8))]);
    assert!(matches!(err(&m), OnnxError::UnsupportedDtype { data_type: 8, ref tensor } if tensor == "y"));
}

#[test]
fn transpose_negative_perm() {
    let m =
        model(vec![], vec![node("Transpose", &["x"], &["y"]).with_attribute(attr_ints("perm", &[-1, 0]))]);
    bad_attr(err(&m), "Transpose_0", "perm", "entry -1 is negative");
}

#[test]
fn concat_without_inputs() {
    let m = model(vec![], vec![node("Concat", &[], &["y"]).with_attribute(attr_int("axis", 0))]);
    import_err(err(&m), "Concat_0", "no inputs");
}

#[test]
fn max_without_inputs() {
    import_err(err(&model(vec![], vec![node("Max", &[], &["y"])])), "Max_0", "no inputs");
}

#[test]
fn slice_step_0() {
    let inits = vec![
        tensor_i64("s", &[1], &[0]),
        tensor_i64("e", &[1], &[2]),
        tensor_i64("a", &[1], &[0]),
        tensor_i64("st", &[1], &[0]),
    ];
    let m = model(inits, vec![node("Slice", &["x", "s", "e", "a", "st"], &["y"])]);
    import_err(err(&m), "Slice_0", "step is 0");
}

#[test]
fn unsqueeze_repeated_axes() {
    let m = model(vec![tensor_i64("a", &[2], &[0, 0])], vec![node("Unsqueeze", &["x", "a"], &["y"])]);
    import_err(err(&m), "Unsqueeze_0", "repeated axes");
}

#[test]
fn squeeze_of_an_axis_that_is_not_1() {
    let m = model(vec![tensor_i64("a", &[1], &[1])], vec![node("Squeeze", &["x", "a"], &["y"])]);
    import_err(err(&m), "Squeeze_0", "axis 1 has size 3, not 1");
}

#[test]
fn reshape_with_two_minus_ones() {
    let m = model(vec![tensor_i64("s", &[2], &[-1, -1])], vec![node("Reshape", &["x", "s"], &["y"])]);
    import_err(err(&m), "Reshape_0", "two -1 entries");
}

#[test]
fn reshape_to_a_data_dependent_shape() {
    let inputs = vec![value_info("x", 1, &["2", "3"]), value_info("s", 7, &["2"])];
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
    let inputs = vec![
        value_info("x", 1, &["1", "2", "3", "8"]),
        value_info("c", 1, &["1", "3", "4"]),
        value_info("s", 1, &["1", "3", "4"]),
    ];
    let n = node("RotaryEmbedding", &["x", "c", "s"], &["y"])
        .with_attribute(attr_int("rotary_embedding_dim", -4));
    bad_attr(
        err(&model_with(inputs, vec![], vec![n])),
        "RotaryEmbedding_0",
        "rotary_embedding_dim",
        "negative",
    );
}

#[test]
fn rotary_embedding_dim_past_the_head_size() {
    let inputs = vec![
        value_info("x", 1, &["1", "2", "3", "8"]),
        value_info("c", 1, &["1", "3", "4"]),
        value_info("s", 1, &["1", "3", "4"]),
    ];
    let n = node("RotaryEmbedding", &["x", "c", "s"], &["y"])
        .with_attribute(attr_int("rotary_embedding_dim", 10));
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
    let m = model(vec![tensor_i64("p", &[], &[5])], nodes);
    import_err(err(&m), "SequenceAt_0", "position 5 out of range for 2 items");
}

#[test]
fn constant_of_shape_value_with_two_elements() {
    let v = tensor_i64("", &[2], &[1, 2]);
    let n = node("ConstantOfShape", &["s"], &["y"]).with_attribute(attr_tensor("value", v));
    bad_attr(
        err(&model(vec![tensor_i64("s", &[1], &[3])], vec![n])),
        "ConstantOfShape_0",
        "value",
        "one element",
    );
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
    let inits = vec![
        tensor_i64("a", &[1], &[i64::MIN]),
        tensor_i64("b", &[1], &[2]),
        tensor_i64("e", &[1], &[1 << 32]),
    ];
    let g = import_model(&model(inits, nodes)).unwrap();
    let text = blockfuse_ir::text::dump(&g).unwrap();
    assert!(text.contains("neg") && text.contains("pow"), "{text}");
}

#[test]
fn data_dependent_shape_names_the_op_chain() {
    // Reshape(x, Cast(Ceil(Div(Cast(n, f32), 2.0)), i64)) with n a graph input.
    let inputs = vec![value_info("x", 1, &["2", "3"]), value_info("n", 7, &["2"])];
    let two = tensor_to_proto("two", &HostTensor::from_f32(vec![], &[2.0]));
    let nodes = vec![
        node("Cast", &["n"], &["nf"]).with_attribute(attr_int("to", 1)),
        node("Div", &["nf", "two"], &["h"]),
        node("Ceil", &["h"], &["c"]),
        NodeProto { name: Some("Cast_1".into()), ..node("Cast", &["c"], &["s"]) }
            .with_attribute(attr_int("to", 7)),
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
        ["q", "k", "v"].iter().map(|n| value_info(n, 1, &["1", "2", "3", "4"])).collect();
    ins.push(value_info("pk", 1, &["1", "2", "5", "4"]));
    ins.push(value_info("lens", 7, &["1"]));
    model_with(ins, vec![], vec![node("Attention", inputs, &["y"]).with_attributes(attrs)])
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
    let m = attention(&["q", "k", "v"], vec![attr_int("qk_matmul_output_mode", 7)]);
    import_err(err(&m), "Attention_0", "qk_matmul_output_mode 7");
}

#[test]
fn attention_window_below_minus_1() {
    let m = attention(&["q", "k", "v"], vec![attr_int("left_window_size", -3)]);
    import_err(err(&m), "Attention_0", "left_window_size -3");
}

#[test]
fn gather_nd_batch_dims_out_of_range() {
    let idx = tensor_i64("i", &[2, 1], &[0, 1]);
    let m = model(
        vec![idx],
        vec![node("GatherND", &["x", "i"], &["y"]).with_attribute(attr_int("batch_dims", 2))],
    );
    import_err(err(&m), "GatherND_0", "batch_dims must be in [0, rank(indices))");
}

#[test]
fn gather_nd_empty_index_tuples() {
    let idx = tensor_i64("i", &[2, 0], &[]);
    let m = model(vec![idx], vec![node("GatherND", &["x", "i"], &["y"])]);
    import_err(err(&m), "GatherND_0", "known, positive size");
}

/// A `training_mode` given as a graph input is a value to specialize on (named in the
/// refusal); a random training-mode dropout stays refused.
#[test]
fn dropout_training_mode_input() {
    let ins = vec![value_info("x", 1, &["2", "3"]), value_info("t", 9, &[])];
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
