//! Regression tests for the panics that `clippy::indexing_slicing` found on user-reachable
//! paths of the importer (issue 14): each model below panicked (an index past the end of an
//! attribute or operand list) before the converter named in the test was rewritten, and must
//! now end with an error naming the node.

use crate::build::{attr_ints, attr_string, model, node, opset, tensor_f32, tensor_i64, value_name};
use crate::proto::{AttributeProto, GraphProto, ModelProto, TensorProto};
use crate::OnnxError;

/// One node `the_{op}(inputs) -> y` over initializers, opset 21.
fn one_node(op: &str, inits: Vec<TensorProto>, inputs: &[&str], attrs: Vec<AttributeProto>) -> ModelProto {
    let graph = GraphProto {
        node: vec![node(op, &format!("the_{op}"), inputs, &["y"]).with_attributes(attrs)],
        initializer: inits,
        output: vec![value_name("y")],
        ..Default::default()
    };
    model(9, vec![opset("", 21)], graph)
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
    let x = tensor_f32("x", &[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let roi = tensor_f32("roi", &[1], &[0.0]);
    let scales = tensor_f32("scales", &[4], &[1.0, 1.0, 2.0, 2.0]);
    let m = one_node("Resize", vec![x, roi, scales], &["x", "roi", "scales"], vec![]);
    import_error(&m, "Resize", "roi has 1 entries, not 2 per axis (4 axes)");
}

/// `ConvTranspose` with `auto_pad = SAME_UPPER` and an `output_shape` of fewer entries than
/// spatial axes read `output_shape[i]` past its end.
#[test]
fn conv_transpose_with_a_short_output_shape() {
    let x = tensor_f32("x", &[1, 1, 3, 3], &[0.5; 9]);
    let w = tensor_f32("w", &[1, 1, 2, 2], &[1.0; 4]);
    let attrs = vec![
        attr_string("auto_pad", "SAME_UPPER"),
        attr_ints("strides", &[2, 2]),
        attr_ints("output_shape", &[6]),
    ];
    let m = one_node("ConvTranspose", vec![x, w], &["x", "w"], attrs);
    import_error(&m, "ConvTranspose", "output shape [6] is not one positive size per spatial axis");
}

/// `GatherElements` whose indices have more axes than the data indexed the data's dims past
/// their end.
#[test]
fn gather_elements_with_indices_of_higher_rank() {
    let data = tensor_f32("data", &[3], &[1.0, 2.0, 3.0]);
    let idx = tensor_i64("idx", &[1, 1], &[0]);
    let m = one_node("GatherElements", vec![data, idx], &["data", "idx"], vec![]);
    import_error(&m, "GatherElements", "out of bounds");
}
