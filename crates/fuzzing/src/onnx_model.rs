//! The structure-aware ONNX target: a seed model mutated through its `prost` types.
//!
//! The fuzzer's bytes are read by [`arbitrary::Unstructured`]: which seed, then up to 12
//! mutations (an op type from [`SUPPORTED`], an attribute of a name the importer reads with
//! a value of any type, a graph input's dim or element type, a node's operand, a node
//! dropped, duplicated or added, an initializer's dims, type or bytes, an interior value
//! made a graph output). Mutating valid models reaches the importer's op code, which random
//! bytes rarely do; a first byte of 0 instead decodes the rest as protobuf bytes.

use crate::check::accepted_graph;
use arbitrary::{Result, Unstructured};
use blockfuse_onnx::build::{
    self, attr_float, attr_int, attr_ints, attr_tensor, opset, tensor_f32, tensor_i64, value_info, value_name,
};
use blockfuse_onnx::decode_model;
use blockfuse_onnx::import::{import_model_with, ImportOptions, SUPPORTED};
use blockfuse_onnx::proto::tensor_shape_proto::{dimension, Dimension};
use blockfuse_onnx::proto::{
    attribute_proto::AttributeType, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    TensorProto, ValueInfoProto,
};

/// Limits small enough that a mutated model cannot make the target allocate much.
pub const LIMITS: ImportOptions = ImportOptions { max_tensor_bytes: 1 << 24, max_constant_bytes: 1 << 25 };

/// The ONNX target: builds (or decodes) a model from `data` and imports it under
/// [`LIMITS`]; an imported graph goes through [`accepted_graph`].
pub fn onnx_model(data: &[u8]) {
    let model = match data.split_first() {
        Some((0, rest)) => match decode_model(rest) {
            Ok(m) => m,
            Err(_) => return,
        },
        _ => match mutated(&mut Unstructured::new(data)) {
            Ok(m) => m,
            Err(_) => return,
        },
    };
    if let Ok(g) = import_model_with(&model, &LIMITS) {
        accepted_graph(&g);
    }
}

/// A seed chosen by `u`, mutated as `u` says.
pub fn mutated(u: &mut Unstructured<'_>) -> Result<ModelProto> {
    let mut seeds = seeds();
    let i = u.choose_index(seeds.len())?;
    let mut m = seeds.swap_remove(i);
    if let Some(g) = m.graph.as_mut() {
        for _ in 0..u.int_in_range(0..=12)? {
            if u.is_empty() {
                break;
            }
            mutate(u, g)?;
        }
    }
    if u.ratio(1, 16)? {
        m.opset_import[0].version = Some(u.int_in_range(1..=24)?);
    }
    Ok(m)
}

/// Attribute names the importer reads (across its ops).
const ATTR_NAMES: &[&str] = &[
    "axis",
    "axes",
    "perm",
    "keepdims",
    "epsilon",
    "to",
    "value",
    "split",
    "num_outputs",
    "starts",
    "ends",
    "shape",
    "upper",
    "alpha",
    "beta",
    "transA",
    "transB",
    "approximate",
    "stash_type",
    "allowzero",
    "noop_with_empty_axes",
    "interleaved",
    "rotary_embedding_dim",
    "num_heads",
    "scale",
    "is_causal",
    "softcap",
    "q_num_heads",
    "kv_num_heads",
    "value_float",
    "value_int",
    "value_ints",
    "value_floats",
    "dtype",
    "batch_dims",
    "k",
    "mode",
    "largest",
];

/// Integers worth trying: boundaries, negatives, huge sizes.
const INTS: &[i64] = &[
    0,
    1,
    2,
    3,
    4,
    -1,
    -2,
    -3,
    -10,
    8,
    100,
    1 << 20,
    1_000_000,
    1 << 31,
    1 << 40,
    1 << 62,
    i64::MAX,
    i64::MIN,
    -(1 << 40),
];

fn int(u: &mut Unstructured<'_>) -> Result<i64> {
    if u.ratio(3, 4)? {
        Ok(*u.choose(INTS)?)
    } else {
        u.arbitrary()
    }
}

fn float(u: &mut Unstructured<'_>) -> Result<f32> {
    const F: &[f32] =
        &[0.0, 1.0, -1.0, 0.5, 1e-5, 1e-12, 2.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MAX];
    if u.ratio(3, 4)? {
        Ok(*u.choose(F)?)
    } else {
        u.arbitrary()
    }
}

fn ints(u: &mut Unstructured<'_>) -> Result<Vec<i64>> {
    (0..u.int_in_range(0..=5)?).map(|_| int(u)).collect()
}

/// A small tensor of any ONNX data type (its bytes possibly not matching its dims).
fn tensor(u: &mut Unstructured<'_>, name: &str) -> Result<TensorProto> {
    let dims = (0..u.int_in_range(0..=3)?)
        .map(|_| if u.ratio(7, 8)? { u.int_in_range(0..=4) } else { int(u) })
        .collect::<Result<Vec<i64>>>()?;
    let mut t = TensorProto { name: Some(name.to_string()), dims, ..Default::default() };
    t.data_type = Some(if u.ratio(3, 4)? {
        *u.choose(&[1, 7, 6, 9, 10, 11, 16, 2, 3])?
    } else {
        u.int_in_range(-1..=30)?
    });
    match u.int_in_range(0..=3)? {
        0 => {
            let len = u.int_in_range(0..=64)?;
            t.raw_data = Some(u.bytes(len)?.to_vec().into());
        }
        1 => t.int64_data = ints(u)?,
        2 => t.float_data = (0..u.int_in_range(0..=8)?).map(|_| float(u)).collect::<Result<_>>()?,
        _ => t.int32_data = (0..u.int_in_range(0..=8)?).map(|_| u.arbitrary()).collect::<Result<_>>()?,
    }
    Ok(t)
}

fn attribute(u: &mut Unstructured<'_>) -> Result<AttributeProto> {
    let name = u.choose(ATTR_NAMES)?.to_string();
    let mut a = AttributeProto { name: Some(name.clone()), ..Default::default() };
    let ty = match u.int_in_range(0..=5)? {
        0 => {
            a.i = Some(int(u)?);
            AttributeType::Int
        }
        1 => {
            a.ints = ints(u)?;
            AttributeType::Ints
        }
        2 => {
            a.f = Some(float(u)?);
            AttributeType::Float
        }
        3 => {
            a.floats = (0..u.int_in_range(0..=4)?).map(|_| float(u)).collect::<Result<_>>()?;
            AttributeType::Floats
        }
        4 => {
            a.s = Some(u.choose(&["tanh", "none", "constant", "", "\u{0}"])?.as_bytes().to_vec());
            AttributeType::String
        }
        _ => {
            a.t = Some(tensor(u, &name)?);
            AttributeType::Tensor
        }
    };
    // Sometimes a type tag that disagrees with the field that is set.
    a.r#type = Some(if u.ratio(1, 8)? { u.int_in_range(0..=14)? } else { ty as i32 });
    Ok(a)
}

/// Every value name of the graph: inputs, initializers, node outputs.
fn names(g: &GraphProto) -> Vec<String> {
    let inputs = g.input.iter().map(|v| v.name().to_string());
    let inits = g.initializer.iter().map(|t| t.name().to_string());
    let outs = g.node.iter().flat_map(|n| n.output.iter().cloned());
    inputs.chain(inits).chain(outs).collect()
}

fn dim(u: &mut Unstructured<'_>) -> Result<Dimension> {
    let value = match u.int_in_range(0..=3)? {
        0 => Some(dimension::Value::DimValue(int(u)?)),
        1 => Some(dimension::Value::DimValue(u.int_in_range(0..=5)?)),
        2 => Some(dimension::Value::DimParam(u.choose(&["N", "S", "batch", "", "2*S", "-"])?.to_string())),
        _ => None,
    };
    Ok(Dimension { value, ..Default::default() })
}

fn mutate(u: &mut Unstructured<'_>, g: &mut GraphProto) -> Result<()> {
    let all = names(g);
    match u.int_in_range(0..=10)? {
        0 if !g.node.is_empty() => {
            let i = u.choose_index(g.node.len())?;
            g.node[i].op_type = Some(u.choose(SUPPORTED)?.to_string());
        }
        1 if !g.node.is_empty() => {
            let i = u.choose_index(g.node.len())?;
            let a = attribute(u)?;
            let n = &mut g.node[i];
            n.attribute.retain(|b| b.name != a.name);
            n.attribute.push(a);
        }
        2 if !g.node.is_empty() => {
            let i = u.choose_index(g.node.len())?;
            let n = &mut g.node[i];
            if !n.attribute.is_empty() {
                let k = u.choose_index(n.attribute.len())?;
                n.attribute.remove(k);
            }
        }
        3 if !g.input.is_empty() => {
            let i = u.choose_index(g.input.len())?;
            if let Some(type_proto::Value::TensorType(t)) =
                g.input[i].r#type.as_mut().and_then(|t| t.value.as_mut())
            {
                let shape = t.shape.get_or_insert_with(Default::default);
                match u.int_in_range(0..=3)? {
                    0 if !shape.dim.is_empty() => {
                        let k = u.choose_index(shape.dim.len())?;
                        shape.dim[k] = dim(u)?;
                    }
                    1 => shape.dim.push(dim(u)?),
                    2 => {
                        shape.dim.pop();
                    }
                    _ => t.elem_type = Some(u.int_in_range(0..=26)?),
                }
            }
        }
        4 if !g.node.is_empty() && !all.is_empty() => {
            let i = u.choose_index(g.node.len())?;
            let name = if u.ratio(1, 8)? { String::new() } else { u.choose(&all)?.clone() };
            let n = &mut g.node[i];
            if n.input.is_empty() || u.ratio(1, 4)? {
                n.input.push(name);
            } else {
                let k = u.choose_index(n.input.len())?;
                n.input[k] = name;
            }
        }
        5 if !g.node.is_empty() => {
            let i = u.choose_index(g.node.len())?;
            g.node.remove(i);
        }
        6 if !g.node.is_empty() => {
            let i = u.choose_index(g.node.len())?;
            let mut n = g.node[i].clone();
            let at = u.choose_index(g.node.len() + 1)?;
            if u.ratio(1, 2)? {
                // Fresh outputs, so that the copy is a second consumer rather than a redefinition.
                n.output = n.output.iter().map(|o| format!("{o}_dup{at}")).collect();
            }
            g.node.insert(at, n);
        }
        7 if !all.is_empty() => {
            let op = u.choose(SUPPORTED)?.to_string();
            let inputs: Vec<String> =
                (0..u.int_in_range(0..=3)?).map(|_| u.choose(&all).cloned()).collect::<Result<_>>()?;
            let outs = u.int_in_range(1..=2)?;
            let k = g.node.len();
            let outputs: Vec<String> = (0..outs).map(|o| format!("new{k}_{o}")).collect();
            let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
            let outputs: Vec<&str> = outputs.iter().map(String::as_str).collect();
            let mut added = n(&op, &inputs, &outputs, vec![]);
            for _ in 0..u.int_in_range(0..=2)? {
                added.attribute.push(attribute(u)?);
            }
            let at = u.choose_index(g.node.len() + 1)?;
            g.node.insert(at, added);
        }
        8 if !g.initializer.is_empty() => {
            let i = u.choose_index(g.initializer.len())?;
            let name = g.initializer[i].name().to_string();
            g.initializer[i] = tensor(u, &name)?;
        }
        9 if !all.is_empty() => {
            let name = u.choose(&all)?.clone();
            g.output.push(value_name(&name));
        }
        _ => {
            if let Some(n) = g.node.last() {
                if let Some(o) = n.output.first() {
                    g.output = vec![value_name(o)];
                }
            }
        }
    }
    Ok(())
}

/// A node named `<op>_<first output>`, as the seeds and the added nodes are named.
fn n(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    let name = format!("{op}_{}", outputs.first().copied().unwrap_or(""));
    build::node(op, &name, inputs, outputs).with_attributes(attrs)
}

/// An IR 9, opset 21 model from `inputs` to the first output of the last node.
fn model(inputs: Vec<ValueInfoProto>, inits: Vec<TensorProto>, nodes: Vec<NodeProto>) -> ModelProto {
    let last = nodes.last().and_then(|n| n.output.first().cloned()).unwrap_or_default();
    let graph = GraphProto {
        name: Some("seed".into()),
        node: nodes,
        input: inputs,
        initializer: inits,
        output: vec![value_name(&last)],
        ..Default::default()
    };
    build::model(9, vec![opset("", 21)], graph)
}

/// The valid seed models: an MLP, an RMSNorm spelling, shape arithmetic into a Reshape,
/// `ConstantOfShape`/`Expand`/`Range`, attention, and normalization/activation ops.
pub fn seeds() -> Vec<ModelProto> {
    let w: Vec<f32> = (0..16).map(|i| (i as f32 - 8.0) / 8.0).collect();
    let x = || value_info("x", 1, &["N", "4"]);
    let mlp = model(
        vec![x()],
        vec![tensor_f32("w", &[4, 4], &w), tensor_f32("b", &[4], &[0.1, 0.2, 0.3, 0.4])],
        vec![
            n("MatMul", &["x", "w"], &["h"], vec![]),
            n("Add", &["h", "b"], &["hb"], vec![]),
            n("Relu", &["hb"], &["r"], vec![]),
            n("Softmax", &["r"], &["y"], vec![attr_int("axis", -1)]),
        ],
    );
    let rms = model(
        vec![x()],
        vec![
            tensor_f32("two", &[], &[2.0]),
            tensor_f32("eps", &[], &[1e-6]),
            tensor_f32("g", &[4], &[1.0, 0.5, 2.0, 1.5]),
            tensor_i64("ax", &[1], &[-1]),
        ],
        vec![
            n("Pow", &["x", "two"], &["sq"], vec![]),
            n("ReduceMean", &["sq", "ax"], &["ms"], vec![attr_int("keepdims", 1)]),
            n("Add", &["ms", "eps"], &["mse"], vec![]),
            n("Sqrt", &["mse"], &["rt"], vec![]),
            n("Div", &["x", "rt"], &["xn"], vec![]),
            n("Mul", &["xn", "g"], &["y"], vec![]),
        ],
    );
    let shapes = model(
        vec![value_info("x", 1, &["N", "S", "4"])],
        vec![tensor_i64("last", &[], &[2]), tensor_i64("m1", &[1], &[-1]), tensor_i64("ax0", &[1], &[0])],
        vec![
            n("Shape", &["x"], &["sh"], vec![]),
            n("Gather", &["sh", "last"], &["n"], vec![attr_int("axis", 0)]),
            n("Unsqueeze", &["n", "ax0"], &["n1"], vec![]),
            n("Concat", &["m1", "n1"], &["target"], vec![attr_int("axis", 0)]),
            n("Reshape", &["x", "target"], &["flat"], vec![]),
            n("Transpose", &["flat"], &["t"], vec![attr_ints("perm", &[1, 0])]),
            n("Slice", &["t", "zero_s", "two_s"], &["y"], vec![]),
        ],
    );
    let mut shapes = shapes;
    if let Some(g) = shapes.graph.as_mut() {
        g.initializer.push(tensor_i64("zero_s", &[1], &[0]));
        g.initializer.push(tensor_i64("two_s", &[1], &[2]));
    }
    let fill = model(
        vec![x()],
        vec![
            tensor_i64("dims", &[2], &[1, 4]),
            tensor_i64("start", &[], &[0]),
            tensor_i64("lim", &[], &[4]),
            tensor_i64("one", &[], &[1]),
        ],
        vec![
            n(
                "ConstantOfShape",
                &["dims"],
                &["c"],
                vec![attr_tensor("value", tensor_f32("value", &[1], &[0.5]))],
            ),
            n("Range", &["start", "lim", "one"], &["r"], vec![]),
            n("Cast", &["r"], &["rf"], vec![attr_int("to", 1)]),
            n("Add", &["c", "rf"], &["cr"], vec![]),
            n("Shape", &["x"], &["xs"], vec![]),
            n("Expand", &["cr", "xs"], &["e"], vec![]),
            n("Tile", &["e", "reps"], &["tl"], vec![]),
            n("Trilu", &["tl"], &["y"], vec![attr_int("upper", 0)]),
        ],
    );
    let mut fill = fill;
    if let Some(g) = fill.graph.as_mut() {
        g.initializer.push(tensor_i64("reps", &[2], &[1, 2]));
    }
    let t4 = |name: &str| value_info(name, 1, &["1", "2", "S", "8"]);
    let attention = model(
        vec![t4("q"), t4("k"), t4("v")],
        vec![tensor_f32("scale", &[], &[0.35])],
        vec![
            n("Transpose", &["k"], &["kt"], vec![attr_ints("perm", &[0, 1, 3, 2])]),
            n("MatMul", &["q", "kt"], &["s"], vec![]),
            n("Mul", &["s", "scale"], &["ss"], vec![]),
            n("Softmax", &["ss"], &["p"], vec![attr_int("axis", -1)]),
            n("MatMul", &["p", "v"], &["y"], vec![]),
        ],
    );
    let norms = model(
        vec![x()],
        vec![tensor_f32("g", &[4], &[1.0, 0.5, 2.0, 1.5]), tensor_f32("b", &[4], &[0.0, 0.1, 0.2, 0.3])],
        vec![
            n(
                "LayerNormalization",
                &["x", "g", "b"],
                &["ln"],
                vec![attr_float("epsilon", 1e-5), attr_int("axis", -1)],
            ),
            n("Gelu", &["ln"], &["ge"], vec![]),
            n("Split", &["ge"], &["s0", "s1"], vec![attr_int("axis", -1), attr_int("num_outputs", 2)]),
            n("Sigmoid", &["s0"], &["sg"], vec![]),
            n("Mul", &["s0", "sg"], &["silu"], vec![]),
            n("Mul", &["silu", "s1"], &["sw"], vec![]),
            n("ReduceSum", &["sw"], &["y"], vec![attr_int("keepdims", 0)]),
        ],
    );
    vec![mlp, rms, shapes, fill, attention, norms]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_imports() {
        for (i, m) in seeds().iter().enumerate() {
            let g = import_model_with(m, &LIMITS).unwrap_or_else(|e| panic!("seed {i}: {e}"));
            accepted_graph(&g);
        }
    }
}
