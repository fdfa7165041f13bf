//! Build-time specialization: binding graph inputs to constant values before import.
//!
//! blockfuse imports static (or symbolic) shapes; an operand that decides a shape — the
//! `axes` of a reduction, the `pads` of `Pad`, the `k` of `TopK`, the target of `Reshape` —
//! must be known at import time. When a model takes such an operand as a graph input (ONNX's
//! conformance tests do, and some exporters), [`bind_inputs`] turns it into an initializer with
//! the value it will have, the way TensorRT takes shape-tensor values in an optimization
//! profile. The specialized graph is only valid for those values.

use crate::error::OnnxError;
use crate::proto::ModelProto;
use crate::tensor::{dtype_to_onnx, tensor_to_proto};
use blockfuse_ir::HostTensor;

/// Makes each named graph input an initializer holding the given value (removing it from the
/// graph inputs). Errors name the input: not a graph input, or a value whose element type or
/// rank differs from the declared one.
pub fn bind_inputs(model: &mut ModelProto, values: &[(String, HostTensor)]) -> Result<(), OnnxError> {
    let graph = model.graph.as_mut().ok_or(OnnxError::MissingGraph { what: "model".into() })?;
    for (name, value) in values {
        let bad = |reason: String| OnnxError::Import { node: name.clone(), op_type: "input".into(), reason };
        let pos = graph
            .input
            .iter()
            .position(|vi| vi.name() == name)
            .ok_or_else(|| bad("is not a graph input".into()))?;
        let tt = graph.input[pos].r#type.as_ref().and_then(|t| match t.value.as_ref() {
            Some(crate::proto::type_proto::Value::TensorType(tt)) => Some(tt.clone()),
            _ => None,
        });
        if let Some(tt) = tt {
            let want = tt.elem_type();
            if want != dtype_to_onnx(value.dtype()) {
                return Err(bad(format!(
                    "bound to a {} value, but declared as {}",
                    value.dtype(),
                    crate::tensor::data_type_name(want)
                )));
            }
            if let Some(shape) = &tt.shape {
                if shape.dim.len() != value.dims().len() {
                    return Err(bad(format!(
                        "bound to a value of rank {}, but declared with rank {}",
                        value.dims().len(),
                        shape.dim.len()
                    )));
                }
            }
        }
        graph.input.remove(pos);
        graph.initializer.retain(|t| t.name() != name);
        graph.initializer.push(tensor_to_proto(name, value));
    }
    Ok(())
}

/// The graph input named in an import refusal "`… 'NAME' is not computable at import time …`",
/// when `NAME` is a graph input of `model` (the operand [`bind_inputs`] would make known).
pub fn uncomputable_input(model: &ModelProto, reason: &str) -> Option<String> {
    let name = uncomputable_value(reason)?;
    let graph = model.graph.as_ref()?;
    graph.input.iter().any(|vi| vi.name() == name).then_some(name)
}

/// The graph inputs of `model` that the value `name` is computed from (walking its producing
/// nodes back to the graph inputs; initializers and constants are not inputs), in graph-input
/// order: what [`bind_inputs`] must bind for `name` to be known at import time.
pub fn inputs_feeding(model: &ModelProto, name: &str) -> Vec<String> {
    let Some(graph) = model.graph.as_ref() else { return vec![] };
    let producer: std::collections::HashMap<&str, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![name.to_string()];
    while let Some(v) = stack.pop() {
        if !seen.insert(v.clone()) {
            continue;
        }
        if let Some(&i) = producer.get(v.as_str()) {
            stack.extend(graph.node[i].input.iter().filter(|s| !s.is_empty()).cloned());
        }
    }
    graph.input.iter().map(|vi| vi.name().to_string()).filter(|n| seen.contains(n)).collect()
}

/// The value named in an import refusal "`… 'NAME' is not computable at import time …`".
pub fn uncomputable_value(reason: &str) -> Option<String> {
    let head = reason.split(" is not computable at import time").next().filter(|h| h.len() < reason.len())?;
    Some(head.strip_suffix('\'')?.rsplit_once('\'')?.1.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_refusals() {
        let r = "axes 'axes' is not computable at import time (a data-dependent shape)";
        assert_eq!(uncomputable_value(r).as_deref(), Some("axes"));
        assert_eq!(uncomputable_value("something else"), None);
    }
}
