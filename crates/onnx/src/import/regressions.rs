//! Regression tests for the panics that `clippy::indexing_slicing` found on user-reachable
//! paths of the importer (issue 14): each model below panicked (an index past the end of an
//! attribute or operand list) before the converter named in the test was rewritten, and must
//! now end with an error naming the node.

use crate::proto::attribute_proto::AttributeType;
use crate::proto::{AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, ValueInfoProto};
use crate::tensor::tensor_to_proto;
use crate::OnnxError;
use blockfuse_ir::HostTensor;

/// One node `op(inputs) -> y` over initializers, opset 21.
fn one_node(
    op: &str,
    inits: &[(&str, HostTensor)],
    inputs: &[&str],
    attrs: Vec<AttributeProto>,
) -> ModelProto {
    let node = NodeProto {
        op_type: Some(op.into()),
        name: Some(format!("the_{op}")),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec!["y".into()],
        attribute: attrs,
        ..Default::default()
    };
    ModelProto {
        ir_version: Some(9),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(21) }],
        graph: Some(GraphProto {
            node: vec![node],
            initializer: inits.iter().map(|(name, t)| tensor_to_proto(name, t)).collect(),
            output: vec![ValueInfoProto { name: Some("y".into()), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An attribute of `kind` with the fields `fill` sets.
fn attr(name: &str, kind: AttributeType, fill: impl FnOnce(&mut AttributeProto)) -> AttributeProto {
    let mut a = AttributeProto { name: Some(name.into()), r#type: Some(kind as i32), ..Default::default() };
    fill(&mut a);
    a
}

/// The import error, which must be an `Import` error of node `the_{op}` mentioning `part`.
fn import_error(m: &ModelProto, op: &str, part: &str) {
    match crate::import_model(m) {
        Err(OnnxError::Import { node, op_type, reason }) => {
            assert_eq!((node.as_str(), op_type.as_str()), (format!("the_{op}").as_str(), op), "{reason}");
            assert!(reason.contains(part), "{reason}");
        }
        Err(e) => panic!("expected an import error of the {op} node, got {e}"),
        Ok(_) => panic!("imported a malformed {op}"),
    }
}

/// `Resize` with a `roi` shorter than two entries per axis read `roi[axes + k]` past its end.
#[test]
fn resize_with_a_short_roi() {
    let x = HostTensor::from_f32(vec![1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let roi = HostTensor::from_f32(vec![1], &[0.0]);
    let scales = HostTensor::from_f32(vec![4], &[1.0, 1.0, 2.0, 2.0]);
    let inits = [("x", x), ("roi", roi), ("scales", scales)];
    let m = one_node("Resize", &inits, &["x", "roi", "scales"], vec![]);
    import_error(&m, "Resize", "roi has 1 entries, not 2 per axis (4 axes)");
}

/// `ConvTranspose` with `auto_pad = SAME_UPPER` and an `output_shape` of fewer entries than
/// spatial axes read `output_shape[i]` past its end.
#[test]
fn conv_transpose_with_a_short_output_shape() {
    let x = HostTensor::from_f32(vec![1, 1, 3, 3], &[0.5; 9]);
    let w = HostTensor::from_f32(vec![1, 1, 2, 2], &[1.0; 4]);
    let attrs = vec![
        attr("auto_pad", AttributeType::String, |a| a.s = Some(b"SAME_UPPER".to_vec())),
        attr("strides", AttributeType::Ints, |a| a.ints = vec![2, 2]),
        attr("output_shape", AttributeType::Ints, |a| a.ints = vec![6]),
    ];
    let m = one_node("ConvTranspose", &[("x", x), ("w", w)], &["x", "w"], attrs);
    import_error(&m, "ConvTranspose", "output shape [6] is not one positive size per spatial axis");
}

/// `GatherElements` whose indices have more axes than the data indexed the data's dims past
/// their end.
#[test]
fn gather_elements_with_indices_of_higher_rank() {
    let data = HostTensor::from_f32(vec![3], &[1.0, 2.0, 3.0]);
    let idx = HostTensor::from_i64(vec![1, 1], &[0]);
    let m = one_node("GatherElements", &[("data", data), ("idx", idx)], &["data", "idx"], vec![]);
    import_error(&m, "GatherElements", "out of bounds");
}
