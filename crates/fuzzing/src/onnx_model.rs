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
use blockfuse_ir::HostTensor;
use blockfuse_onnx::import::{import_model_with, ImportOptions, SUPPORTED};
use blockfuse_onnx::proto::tensor_shape_proto::{dimension, Dimension};
use blockfuse_onnx::proto::{
    attribute_proto::AttributeType, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use blockfuse_onnx::{decode_model, tensor_to_proto};

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
            let inputs =
                (0..u.int_in_range(0..=3)?).map(|_| u.choose(&all).cloned()).collect::<Result<_>>()?;
            let outs = u.int_in_range(1..=2)?;
            let k = g.node.len();
            let mut n = node(&op, inputs, (0..outs).map(|o| format!("new{k}_{o}")).collect());
            for _ in 0..u.int_in_range(0..=2)? {
                n.attribute.push(attribute(u)?);
            }
            let at = u.choose_index(g.node.len() + 1)?;
            g.node.insert(at, n);
        }
        8 if !g.initializer.is_empty() => {
            let i = u.choose_index(g.initializer.len())?;
            let name = g.initializer[i].name().to_string();
            g.initializer[i] = tensor(u, &name)?;
        }
        9 if !all.is_empty() => {
            let name = u.choose(&all)?.clone();
            g.output.push(ValueInfoProto { name: Some(name), ..Default::default() });
        }
        _ => {
            if let Some(n) = g.node.last() {
                if let Some(o) = n.output.first() {
                    g.output = vec![ValueInfoProto { name: Some(o.clone()), ..Default::default() }];
                }
            }
        }
    }
    Ok(())
}

fn node(op: &str, input: Vec<String>, output: Vec<String>) -> NodeProto {
    NodeProto {
        name: Some(format!("{op}_{}", output.first().map_or("", String::as_str))),
        op_type: Some(op.into()),
        input,
        output,
        ..Default::default()
    }
}

fn n(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    let mut n = node(
        op,
        inputs.iter().map(|s| s.to_string()).collect(),
        outputs.iter().map(|s| s.to_string()).collect(),
    );
    n.attribute = attrs;
    n
}

fn a_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn a_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn a_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

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
    let tensor = type_proto::Tensor { elem_type: Some(elem), shape: Some(TensorShapeProto { dim }) };
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}

fn f32s(name: &str, dims: &[usize], v: &[f32]) -> TensorProto {
    tensor_to_proto(name, &HostTensor::from_f32(dims.to_vec(), v))
}

fn i64s(name: &str, dims: &[usize], v: &[i64]) -> TensorProto {
    tensor_to_proto(name, &HostTensor::from_i64(dims.to_vec(), v))
}

fn model(inputs: Vec<ValueInfoProto>, inits: Vec<TensorProto>, nodes: Vec<NodeProto>) -> ModelProto {
    let last = nodes.last().and_then(|n| n.output.first().cloned()).unwrap_or_default();
    ModelProto {
        ir_version: Some(9),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(21) }],
        graph: Some(GraphProto {
            name: Some("seed".into()),
            node: nodes,
            input: inputs,
            initializer: inits,
            output: vec![ValueInfoProto { name: Some(last), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The valid seed models: an MLP, an RMSNorm spelling, shape arithmetic into a Reshape,
/// `ConstantOfShape`/`Expand`/`Range`, attention, and normalization/activation ops.
pub fn seeds() -> Vec<ModelProto> {
    let w: Vec<f32> = (0..16).map(|i| (i as f32 - 8.0) / 8.0).collect();
    let x = || vi("x", 1, &["N", "4"]);
    let mlp = model(
        vec![x()],
        vec![f32s("w", &[4, 4], &w), f32s("b", &[4], &[0.1, 0.2, 0.3, 0.4])],
        vec![
            n("MatMul", &["x", "w"], &["h"], vec![]),
            n("Add", &["h", "b"], &["hb"], vec![]),
            n("Relu", &["hb"], &["r"], vec![]),
            n("Softmax", &["r"], &["y"], vec![a_int("axis", -1)]),
        ],
    );
    let rms = model(
        vec![x()],
        vec![
            f32s("two", &[], &[2.0]),
            f32s("eps", &[], &[1e-6]),
            f32s("g", &[4], &[1.0, 0.5, 2.0, 1.5]),
            i64s("ax", &[1], &[-1]),
        ],
        vec![
            n("Pow", &["x", "two"], &["sq"], vec![]),
            n("ReduceMean", &["sq", "ax"], &["ms"], vec![a_int("keepdims", 1)]),
            n("Add", &["ms", "eps"], &["mse"], vec![]),
            n("Sqrt", &["mse"], &["rt"], vec![]),
            n("Div", &["x", "rt"], &["xn"], vec![]),
            n("Mul", &["xn", "g"], &["y"], vec![]),
        ],
    );
    let shapes = model(
        vec![vi("x", 1, &["N", "S", "4"])],
        vec![i64s("last", &[], &[2]), i64s("m1", &[1], &[-1]), i64s("ax0", &[1], &[0])],
        vec![
            n("Shape", &["x"], &["sh"], vec![]),
            n("Gather", &["sh", "last"], &["n"], vec![a_int("axis", 0)]),
            n("Unsqueeze", &["n", "ax0"], &["n1"], vec![]),
            n("Concat", &["m1", "n1"], &["target"], vec![a_int("axis", 0)]),
            n("Reshape", &["x", "target"], &["flat"], vec![]),
            n("Transpose", &["flat"], &["t"], vec![a_ints("perm", &[1, 0])]),
            n("Slice", &["t", "zero_s", "two_s"], &["y"], vec![]),
        ],
    );
    let mut shapes = shapes;
    if let Some(g) = shapes.graph.as_mut() {
        g.initializer.push(i64s("zero_s", &[1], &[0]));
        g.initializer.push(i64s("two_s", &[1], &[2]));
    }
    let fill = model(
        vec![x()],
        vec![
            i64s("dims", &[2], &[1, 4]),
            i64s("start", &[], &[0]),
            i64s("lim", &[], &[4]),
            i64s("one", &[], &[1]),
        ],
        vec![
            n(
                "ConstantOfShape",
                &["dims"],
                &["c"],
                vec![AttributeProto {
                    name: Some("value".into()),
                    r#type: Some(AttributeType::Tensor as i32),
                    t: Some(f32s("value", &[1], &[0.5])),
                    ..Default::default()
                }],
            ),
            n("Range", &["start", "lim", "one"], &["r"], vec![]),
            n("Cast", &["r"], &["rf"], vec![a_int("to", 1)]),
            n("Add", &["c", "rf"], &["cr"], vec![]),
            n("Shape", &["x"], &["xs"], vec![]),
            n("Expand", &["cr", "xs"], &["e"], vec![]),
            n("Tile", &["e", "reps"], &["tl"], vec![]),
            n("Trilu", &["tl"], &["y"], vec![a_int("upper", 0)]),
        ],
    );
    let mut fill = fill;
    if let Some(g) = fill.graph.as_mut() {
        g.initializer.push(i64s("reps", &[2], &[1, 2]));
    }
    let t4 = |name: &str| vi(name, 1, &["1", "2", "S", "8"]);
    let attention = model(
        vec![t4("q"), t4("k"), t4("v")],
        vec![f32s("scale", &[], &[0.35])],
        vec![
            n("Transpose", &["k"], &["kt"], vec![a_ints("perm", &[0, 1, 3, 2])]),
            n("MatMul", &["q", "kt"], &["s"], vec![]),
            n("Mul", &["s", "scale"], &["ss"], vec![]),
            n("Softmax", &["ss"], &["p"], vec![a_int("axis", -1)]),
            n("MatMul", &["p", "v"], &["y"], vec![]),
        ],
    );
    let norms = model(
        vec![x()],
        vec![f32s("g", &[4], &[1.0, 0.5, 2.0, 1.5]), f32s("b", &[4], &[0.0, 0.1, 0.2, 0.3])],
        vec![
            n(
                "LayerNormalization",
                &["x", "g", "b"],
                &["ln"],
                vec![a_float("epsilon", 1e-5), a_int("axis", -1)],
            ),
            n("Gelu", &["ln"], &["ge"], vec![]),
            n("Split", &["ge"], &["s0", "s1"], vec![a_int("axis", -1), a_int("num_outputs", 2)]),
            n("Sigmoid", &["s0"], &["sg"], vec![]),
            n("Mul", &["s0", "sg"], &["silu"], vec![]),
            n("Mul", &["silu", "s1"], &["sw"], vec![]),
            n("ReduceSum", &["sw"], &["y"], vec![a_int("keepdims", 0)]),
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
