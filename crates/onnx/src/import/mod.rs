//! Import of ONNX graphs into the blockfuse IR.
//!
//! [`import_model`] walks the nodes of a model (after [`inline_functions`](crate::inline_functions))
//! in order and builds a [`Graph`]. Integer shape computations (`Shape`, `Gather`, `Concat`,
//! `Unsqueeze`, arithmetic, ...) are propagated at import time as [`known::Known`] values
//! whose entries are constants or symbolic dims, so that the shape operands of `Reshape`,
//! `Expand`, `Slice`, `Range` and `ConstantOfShape` become the static attributes of the IR
//! ops. Such values get IR nodes only when some op reads them as data (`Constant`, or
//! `SymConst` when they hold symbols).

pub mod known;
mod ops_extra;

pub use ops_extra::EXTRA_SUPPORTED;

use crate::error::OnnxError;
use crate::proto::{tensor_shape_proto, type_proto, ModelProto, NodeProto, ValueInfoProto};
use crate::tensor::{dtype_from_onnx, tensor_from_proto};
use blockfuse_ir::blocks::{GeluKind, LayerNorm, MaskKind, RmsNorm, Sdpa};
use blockfuse_ir::infer::slice_len;
use blockfuse_ir::shape::normalize_axis;
use blockfuse_ir::{
    BinaryOp, Bound, DType, Dim, Graph, HostTensor, IrError, Op, ReduceOp, SliceSpec, TensorType, UnaryOp,
    Value,
};
use known::{Known, SymInt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// Reads, inlines and imports an ONNX model file.
pub fn import_file(path: &Path) -> Result<Graph, OnnxError> {
    let mut model = crate::load_model(path)?;
    crate::inline_functions(&mut model)?;
    import_model(&model)
}

/// Imports a model (whose model-local functions are already inlined, see
/// [`inline_functions`](crate::inline_functions)) into an IR graph.
///
/// Graph inputs keep their names and order (initializers are not inputs), outputs their
/// names; IR nodes are named after the ONNX node they come from. Every unsupported op is
/// reported at once ([`OnnxError::UnsupportedOps`]).
pub fn import_model(model: &ModelProto) -> Result<Graph, OnnxError> {
    let graph = model.graph.as_ref().ok_or(OnnxError::MissingGraph { what: "model".into() })?;
    check_supported(&graph.node)?;
    let mut imp = Importer {
        used: graph
            .node
            .iter()
            .flat_map(|n| n.input.iter().cloned())
            .chain(graph.output.iter().map(|o| o.name().to_string()))
            .collect(),
        ..Importer::default()
    };
    let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name()).collect();
    for t in &graph.initializer {
        let host = tensor_from_proto(t)?;
        imp.set_tensor(t.name(), host);
    }
    for vi in &graph.input {
        if inits.contains(vi.name()) {
            continue;
        }
        let ty = imp.input_type(vi)?;
        let v = imp.g.add_input(vi.name(), ty);
        imp.vals.insert(vi.name().to_string(), Entry::Ir(v));
    }
    for n in &graph.node {
        imp.cur = (n.label(), n.op_type().to_string());
        imp.node(n)?;
    }
    imp.cur = ("<graph outputs>".into(), "output".into());
    for o in &graph.output {
        let v = imp.value(o.name())?;
        imp.g.add_output(o.name(), v);
    }
    imp.g.remove_dead();
    Ok(imp.g)
}

/// The ONNX op types (default domain) the importer claims: the one list that
/// [`import_model`] checks a model against before importing anything (any other op type,
/// any op of another domain and any op with a subgraph attribute is refused with
/// [`OnnxError::UnsupportedOps`]), and that `docs/onnx-support.md` and the conformance test
/// (`tests/node_tests.rs`) are checked against. A claimed op may still refuse some attributes
/// or modes, with [`OnnxError::Unsupported`] naming the node and what is not supported.
pub const SUPPORTED: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Mod",
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "Not",
    "Neg",
    "Abs",
    "Sqrt",
    "Reciprocal",
    "Exp",
    "Log",
    "Erf",
    "Tanh",
    "Sigmoid",
    "Sin",
    "Cos",
    "Relu",
    "Floor",
    "Ceil",
    "IsNaN",
    "Cast",
    "CastLike",
    "Identity",
    "Dropout",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "Softmax",
    "MatMul",
    "Gemm",
    "Transpose",
    "Reshape",
    "Expand",
    "Slice",
    "Concat",
    "Split",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Flatten",
    "Where",
    "Range",
    "ConstantOfShape",
    "Constant",
    "Trilu",
    "Shape",
    "Size",
    "Tile",
    "Gelu",
    "LayerNormalization",
    "RMSNormalization",
    "RotaryEmbedding",
    "Attention",
    "SplitToSequence",
    "SequenceAt",
    "GatherND",
    "GatherElements",
];

/// Whether `op_type` (of the default ONNX domain) is in [`SUPPORTED`].
pub fn is_supported(op_type: &str) -> bool {
    SUPPORTED.contains(&op_type) || EXTRA_SUPPORTED.contains(&op_type)
}

fn check_supported(nodes: &[NodeProto]) -> Result<(), OnnxError> {
    let mut bad: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in nodes {
        let default_domain = crate::model::is_default_domain(n.domain());
        if !default_domain || !is_supported(n.op_type()) || n.has_subgraph() {
            let key = if default_domain {
                n.op_type().to_string()
            } else {
                format!("{}:{}", n.domain(), n.op_type())
            };
            bad.entry(key).or_default().push(n.label());
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(OnnxError::UnsupportedOps { ops: bad.into_iter().collect() })
    }
}

/// What an ONNX value name stands for.
#[derive(Clone)]
enum Entry {
    /// An IR value.
    Ir(Value),
    /// A small integer tensor known at import time (IR node made on first use as data).
    Known(Known),
    /// A constant tensor (IR node made on first use).
    Tensor(HostTensor),
    /// A sequence (`SplitToSequence`).
    Seq(Vec<Entry>),
}

#[derive(Default)]
struct Importer {
    g: Graph,
    vals: HashMap<String, Entry>,
    /// IR values made for `Known`/`Tensor` entries.
    made: HashMap<String, Value>,
    used: HashSet<String>,
    cur: (String, String),
    unk: usize,
}

type R<T> = Result<T, OnnxError>;

fn attr_i(n: &NodeProto, name: &str, default: i64) -> i64 {
    n.attr(name).and_then(|a| a.as_int()).unwrap_or(default)
}

fn attr_f(n: &NodeProto, name: &str, default: f32) -> f32 {
    n.attr(name).and_then(|a| a.as_float()).unwrap_or(default)
}

fn attr_s(n: &NodeProto, name: &str) -> Option<String> {
    n.attr(name).and_then(|a| a.as_string())
}

fn attr_ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    n.attr(name).and_then(|a| a.as_ints()).map(|v| v.to_vec())
}

fn inp(n: &NodeProto, i: usize) -> Option<&str> {
    n.input.get(i).map(|s| s.as_str()).filter(|s| !s.is_empty())
}

fn dims_of(t: &TensorType) -> Vec<Dim> {
    t.shape.to_vec()
}

impl Importer {
    fn err(&self, reason: impl Into<String>) -> OnnxError {
        OnnxError::Import { node: self.cur.0.clone(), op_type: self.cur.1.clone(), reason: reason.into() }
    }

    /// A deliberate refusal: the op is supported, but not this attribute, mode or operand.
    fn unsupported(&self, reason: impl Into<String>) -> OnnxError {
        OnnxError::Unsupported {
            node: self.cur.0.clone(),
            op_type: self.cur.1.clone(),
            reason: reason.into(),
        }
    }

    fn ir_err(&self, e: IrError) -> OnnxError {
        self.err(e.to_string())
    }

    fn input_type(&mut self, vi: &ValueInfoProto) -> R<TensorType> {
        let bad = |r: &str| OnnxError::Import {
            node: vi.name().to_string(),
            op_type: "input".into(),
            reason: r.to_string(),
        };
        let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
            return Err(OnnxError::Unsupported {
                node: vi.name().to_string(),
                op_type: "input".into(),
                reason: "graph input is not a tensor (sequence, optional and map inputs are not supported)"
                    .into(),
            });
        };
        let dtype = dtype_from_onnx(t.elem_type()).ok_or_else(|| OnnxError::UnsupportedDtype {
            tensor: vi.name().to_string(),
            data_type: t.elem_type(),
        })?;
        let shape = t.shape.as_ref().ok_or_else(|| bad("graph input has no shape (unknown rank)"))?;
        let mut dims = vec![];
        for d in &shape.dim {
            dims.push(match &d.value {
                Some(tensor_shape_proto::dimension::Value::DimValue(v)) => Dim::Known(*v as usize),
                Some(tensor_shape_proto::dimension::Value::DimParam(p)) => {
                    Dim::parse(p).unwrap_or_else(|_| Dim::sym(&sanitize(p)))
                }
                None => {
                    self.unk += 1;
                    Dim::sym(&format!("unk{}", self.unk - 1))
                }
            });
        }
        Ok(TensorType::new(dtype, dims))
    }

    fn set(&mut self, name: &str, e: Entry) {
        self.made.remove(name);
        self.vals.insert(name.to_string(), e);
    }

    fn set_tensor(&mut self, name: &str, t: HostTensor) {
        let e = match Known::from_tensor(&t) {
            Some(k) => Entry::Known(k),
            None => Entry::Tensor(t),
        };
        self.set(name, e);
    }

    fn set_known(&mut self, name: &str, k: Known) {
        self.set(name, Entry::Known(k));
    }

    fn entry(&self, name: &str) -> R<&Entry> {
        self.vals.get(name).ok_or_else(|| self.err(format!("value '{name}' is not defined before its use")))
    }

    fn known(&self, name: &str) -> Option<&Known> {
        match self.vals.get(name)? {
            Entry::Known(k) => Some(k),
            _ => None,
        }
    }

    /// A shape-like operand that must be known.
    fn known_req(&self, name: &str, what: &str) -> R<Known> {
        self.known(name).cloned().ok_or_else(|| {
            self.unsupported(format!(
                "{what} '{name}' is not computable at import time (a data-dependent shape; shape operands \
                 must be constants or Shape computations)"
            ))
        })
    }

    /// A constant tensor (float or int) operand, when constant.
    fn const_tensor(&self, name: &str) -> Option<HostTensor> {
        match self.vals.get(name)? {
            Entry::Tensor(t) => Some(t.clone()),
            Entry::Known(k) => k.to_tensor(),
            _ => None,
        }
    }

    fn ty(&self, name: &str) -> R<TensorType> {
        Ok(match self.entry(name)? {
            Entry::Ir(v) => self.g.value_type(*v).clone(),
            Entry::Known(k) => TensorType::known(k.dtype, &k.dims),
            Entry::Tensor(t) => TensorType::known(t.dtype(), t.dims()),
            Entry::Seq(_) => return Err(self.err(format!("'{name}' is a sequence, not a tensor"))),
        })
    }

    fn add_named(&mut self, op: Op, args: &[Value], name: String) -> R<Vec<Value>> {
        let id = self.g.add_node(op, args, Some(name)).map_err(|e| self.ir_err(e))?;
        let n = self.g.node(id).types.len();
        Ok((0..n).map(|i| Value { node: id, output: i as u16 }).collect())
    }

    fn emit_multi(&mut self, op: Op, args: &[Value]) -> R<Vec<Value>> {
        let name = self.cur.0.clone();
        self.add_named(op, args, name)
    }

    fn emit(&mut self, op: Op, args: &[Value]) -> R<Value> {
        Ok(self.emit_multi(op, args)?[0])
    }

    /// The IR value of an ONNX value, making constant nodes on first use.
    fn value(&mut self, name: &str) -> R<Value> {
        if let Some(v) = self.made.get(name) {
            return Ok(*v);
        }
        let e = self.entry(name)?.clone();
        let v = self.materialize(&e, name)?;
        if !matches!(e, Entry::Ir(_)) {
            self.made.insert(name.to_string(), v);
        }
        Ok(v)
    }

    fn materialize(&mut self, e: &Entry, name: &str) -> R<Value> {
        Ok(match e {
            Entry::Ir(v) => *v,
            Entry::Tensor(t) => self.add_named(Op::Constant(t.clone()), &[], name.to_string())?[0],
            Entry::Known(k) => {
                if let Some(t) = k.to_tensor() {
                    return Ok(self.add_named(Op::Constant(t), &[], name.to_string())?[0]);
                }
                let dims: Option<Vec<Dim>> = k.vals.iter().map(SymInt::to_dim).collect();
                let dims = dims.ok_or_else(|| {
                    self.err(format!(
                        "value '{name}' mixes negative constants and symbolic dims ({}); it has no IR form",
                        k.vals.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
                    ))
                })?;
                let mut v = self.add_named(Op::SymConst(dims), &[], name.to_string())?[0];
                if k.dims.len() != 1 {
                    let shape = k.dims.iter().map(|&d| Dim::Known(d)).collect();
                    v = self.add_named(Op::Reshape { shape }, &[v], name.to_string())?[0];
                }
                if k.dtype != DType::I64 {
                    v = self.add_named(Op::Cast(k.dtype), &[v], name.to_string())?[0];
                }
                v
            }
            Entry::Seq(_) => return Err(self.err(format!("'{name}' is a sequence, not a tensor"))),
        })
    }

    fn out(&mut self, n: &NodeProto, i: usize, v: Value) {
        if let Some(name) = n.output.get(i).filter(|s| !s.is_empty()) {
            self.set(name, Entry::Ir(v));
        }
    }

    fn in0(&self, n: &NodeProto) -> R<String> {
        self.in_req(n, 0)
    }

    fn in_req(&self, n: &NodeProto, i: usize) -> R<String> {
        inp(n, i).map(str::to_string).ok_or_else(|| self.err(format!("missing input {i}")))
    }

    fn output_used(&self, n: &NodeProto, i: usize) -> bool {
        n.output.get(i).is_some_and(|o| !o.is_empty() && self.used.contains(o))
    }

    /// Axes from the attribute (old opsets) or from input `i` (new opsets).
    fn axes(&self, n: &NodeProto, i: usize) -> R<Option<Vec<i64>>> {
        if let Some(a) = attr_ints(n, "axes") {
            return Ok(Some(a));
        }
        match inp(n, i) {
            Some(name) => {
                let k = self.known_req(name, "axes")?;
                Ok(Some(k.consts().ok_or_else(|| self.err("symbolic axes"))?))
            }
            None => Ok(None),
        }
    }

    fn node(&mut self, n: &NodeProto) -> R<()> {
        let op = n.op_type();
        match op {
            "Add" => self.binary(n, BinaryOp::Add),
            "Sub" => self.binary(n, BinaryOp::Sub),
            "Mul" => self.binary(n, BinaryOp::Mul),
            "Div" => self.binary(n, BinaryOp::Div),
            "Pow" => self.binary(n, BinaryOp::Pow),
            "Max" => self.binary(n, BinaryOp::Max),
            "Min" => self.binary(n, BinaryOp::Min),
            "Mod" if attr_i(n, "fmod", 0) != 0 => self.fmod(n),
            "Mod" => self.binary(n, BinaryOp::Mod),
            "Equal" => self.binary(n, BinaryOp::Equal),
            "Less" => self.binary(n, BinaryOp::Less),
            "LessOrEqual" => self.binary(n, BinaryOp::LessEqual),
            "Greater" => self.binary(n, BinaryOp::Greater),
            "GreaterOrEqual" => self.binary(n, BinaryOp::GreaterEqual),
            "And" => self.binary(n, BinaryOp::And),
            "Or" => self.binary(n, BinaryOp::Or),
            "Xor" => self.binary(n, BinaryOp::Xor),
            "Not" => self.unary(n, UnaryOp::Not),
            "Neg" => self.unary(n, UnaryOp::Neg),
            "Abs" => self.unary(n, UnaryOp::Abs),
            "Sqrt" => self.unary(n, UnaryOp::Sqrt),
            "Reciprocal" => self.unary(n, UnaryOp::Reciprocal),
            "Exp" => self.unary(n, UnaryOp::Exp),
            "Log" => self.unary(n, UnaryOp::Log),
            "Erf" => self.unary(n, UnaryOp::Erf),
            "Tanh" => self.unary(n, UnaryOp::Tanh),
            "Sigmoid" => self.unary(n, UnaryOp::Sigmoid),
            "Sin" => self.unary(n, UnaryOp::Sin),
            "Cos" => self.unary(n, UnaryOp::Cos),
            "Relu" => self.unary(n, UnaryOp::Relu),
            "Floor" => self.unary(n, UnaryOp::Floor),
            "Ceil" => self.unary(n, UnaryOp::Ceil),
            "IsNaN" => self.unary(n, UnaryOp::IsNan),
            "Identity" | "Dropout" => {
                if op == "Dropout" {
                    self.dropout_check(n)?;
                }
                let e = self.entry(&self.in0(n)?)?.clone();
                let v = self.made.get(n.input[0].as_str()).copied();
                self.set(&n.output[0], e);
                if let Some(v) = v {
                    self.made.insert(n.output[0].clone(), v);
                }
                if op == "Dropout" && self.output_used(n, 1) {
                    // Inference mode: the mask is all true.
                    let shape = self.ty(&n.input[0])?.shape.to_vec();
                    let m = self.emit(Op::Full { shape, value: 1.0, dtype: DType::Bool }, &[])?;
                    self.out(n, 1, m);
                }
                Ok(())
            }
            "Constant" => self.constant(n),
            "Cast" => {
                let to = attr_i(n, "to", 0) as i32;
                let d = dtype_from_onnx(to).ok_or_else(|| OnnxError::UnsupportedDtype {
                    tensor: n.output[0].clone(),
                    data_type: to,
                })?;
                self.cast(n, d)
            }
            "CastLike" => {
                let d = self.ty(&self.in_req(n, 1)?)?.dtype;
                self.cast(n, d)
            }
            "Shape" => {
                let t = self.ty(&self.in0(n)?)?;
                let r = t.rank() as i64;
                let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                let s = clamp(attr_i(n, "start", 0));
                let e = clamp(attr_i(n, "end", r));
                let vals = t.shape[s..e.max(s)].iter().map(SymInt::from_dim).collect();
                self.set_known(&n.output[0], Known::vec(vals));
                Ok(())
            }
            "Size" => {
                let t = self.ty(&self.in0(n)?)?;
                let k = Known::new(DType::I64, vec![], vec![SymInt::from_dim(&t.numel())]);
                self.set_known(&n.output[0], k);
                Ok(())
            }
            "ReduceMean" => self.reduce(n, ReduceOp::Mean),
            "ReduceSum" => self.reduce(n, ReduceOp::Sum),
            "ReduceMax" => self.reduce(n, ReduceOp::Max),
            "ReduceMin" => self.reduce(n, ReduceOp::Min),
            "ReduceProd" => self.reduce(n, ReduceOp::Prod),
            "Softmax" => {
                let x = self.value(&self.in0(n)?)?;
                let v = self.emit(Op::Softmax { axis: attr_i(n, "axis", -1) }, &[x])?;
                self.out(n, 0, v);
                Ok(())
            }
            "MatMul" => {
                let a = self.value(&self.in0(n)?)?;
                let b = self.value(&self.in_req(n, 1)?)?;
                let v = self.emit(Op::MatMul, &[a, b])?;
                self.out(n, 0, v);
                Ok(())
            }
            "Gemm" => self.gemm(n),
            "Transpose" => {
                let name = self.in0(n)?;
                let rank = self.ty(&name)?.rank();
                let perm: Vec<usize> = match attr_ints(n, "perm") {
                    Some(p) => p.iter().map(|&p| p as usize).collect(),
                    None => (0..rank).rev().collect(),
                };
                if rank <= 1 {
                    let e = self.entry(&name)?.clone();
                    self.set(&n.output[0], e);
                    return Ok(());
                }
                let x = self.value(&name)?;
                let v = self.emit(Op::Transpose { perm }, &[x])?;
                self.out(n, 0, v);
                Ok(())
            }
            "Reshape" => {
                let name = self.in0(n)?;
                let t = self.ty(&name)?;
                let target = self.known_req(&self.in_req(n, 1)?, "shape")?;
                let shape = self.resolve_reshape(&t, &target.vals, attr_i(n, "allowzero", 0) != 0)?;
                self.reshape_to(n, &name, shape)
            }
            "Flatten" => {
                let name = self.in0(n)?;
                let t = self.ty(&name)?;
                let a = attr_i(n, "axis", 1);
                let a = if a < 0 { a + t.rank() as i64 } else { a } as usize;
                let prod = |d: &[Dim]| d.iter().fold(Dim::Known(1), |acc, x| acc.mul(x));
                let shape = vec![prod(&t.shape[..a]), prod(&t.shape[a..])];
                self.reshape_to(n, &name, shape)
            }
            "Unsqueeze" => {
                let name = self.in0(n)?;
                let t = self.ty(&name)?;
                let axes = self.axes(n, 1)?.ok_or_else(|| self.err("Unsqueeze without axes"))?;
                let r = t.rank() + axes.len();
                let mut ax: Vec<usize> = axes
                    .iter()
                    .map(|&a| normalize_axis(a, r).ok_or_else(|| self.err(format!("axis {a} out of range"))))
                    .collect::<R<_>>()?;
                ax.sort();
                let mut shape = vec![];
                let mut it = t.shape.iter();
                for i in 0..r {
                    if ax.contains(&i) {
                        shape.push(Dim::Known(1));
                    } else {
                        shape.push(it.next().cloned().ok_or_else(|| self.err("bad axes"))?);
                    }
                }
                self.reshape_to(n, &name, shape)
            }
            "Squeeze" => {
                let name = self.in0(n)?;
                let t = self.ty(&name)?;
                let axes = self.axes(n, 1)?;
                let ax: Vec<usize> = match axes {
                    Some(a) => a
                        .iter()
                        .map(|&a| {
                            normalize_axis(a, t.rank())
                                .ok_or_else(|| self.err(format!("axis {a} out of range")))
                        })
                        .collect::<R<_>>()?,
                    None => (0..t.rank()).filter(|&i| t.shape[i] == Dim::Known(1)).collect(),
                };
                let shape = (0..t.rank()).filter(|i| !ax.contains(i)).map(|i| t.shape[i].clone()).collect();
                self.reshape_to(n, &name, shape)
            }
            "Expand" => self.expand(n),
            "Slice" => self.slice(n),
            "Concat" => self.concat(n),
            "Split" => self.split(n),
            "Gather" => self.gather(n),
            "GatherND" => self.gather_nd(n),
            "GatherElements" => self.gather_elements(n),
            "Where" => self.where_(n),
            "Range" => self.range(n),
            "ConstantOfShape" => self.constant_of_shape(n),
            "Trilu" => {
                let x = self.value(&self.in0(n)?)?;
                let k = match inp(n, 1) {
                    Some(kn) => self
                        .known_req(kn, "k")?
                        .scalar()
                        .and_then(SymInt::as_c)
                        .ok_or_else(|| self.err("k must be a constant scalar"))?,
                    None => 0,
                };
                let v = self.emit(Op::Trilu { upper: attr_i(n, "upper", 1) != 0, k }, &[x])?;
                self.out(n, 0, v);
                Ok(())
            }
            "Tile" => self.tile(n),
            "Gelu" => {
                let x = self.value(&self.in0(n)?)?;
                let kind = match attr_s(n, "approximate").as_deref() {
                    None | Some("none") => GeluKind::Exact,
                    Some("tanh") => GeluKind::Tanh,
                    Some(o) => return Err(self.err(format!("unknown approximate '{o}'"))),
                };
                let v = self.emit(Op::Block(Arc::new(blockfuse_ir::blocks::Gelu::new(kind))), &[x])?;
                self.out(n, 0, v);
                Ok(())
            }
            "LayerNormalization" => self.layer_norm(n),
            "RMSNormalization" => self.rms_norm(n),
            "RotaryEmbedding" => self.rotary(n),
            "Attention" => self.attention(n),
            "SplitToSequence" => self.split_to_sequence(n),
            "SequenceAt" => {
                let Entry::Seq(items) = self.entry(&self.in0(n)?)?.clone() else {
                    return Err(self.err("input is not a sequence"));
                };
                let pos = self
                    .known_req(&self.in_req(n, 1)?, "position")?
                    .scalar()
                    .and_then(SymInt::as_c)
                    .ok_or_else(|| self.err("position must be a constant"))?;
                let len = items.len() as i64;
                let p = if pos < 0 { pos + len } else { pos };
                let e = items
                    .get(p as usize)
                    .filter(|_| p >= 0)
                    .cloned()
                    .ok_or_else(|| self.err(format!("position {pos} out of range for {len} items")))?;
                self.set(&n.output[0], e);
                Ok(())
            }
            other => self.extra_node(n).unwrap_or_else(|| Err(self.err(format!("unsupported op {other}")))),
        }
    }

    /// Dropout is the identity in inference mode: `training_mode` absent or a constant
    /// false, or a constant zero `ratio`. Training-mode (random) dropout is refused.
    fn dropout_check(&self, n: &NodeProto) -> R<()> {
        let Some(t) = inp(n, 2) else { return Ok(()) };
        if self.const_tensor(t).is_some_and(|t| t.len() == 1 && t.get_f64(0) == 0.0) {
            return Ok(());
        }
        if inp(n, 1).and_then(|r| self.const_tensor(r)).is_some_and(|r| r.len() == 1 && r.get_f64(0) == 0.0) {
            return Ok(());
        }
        Err(self.unsupported("Dropout in training mode (random) is not supported"))
    }

    /// `Mod` with `fmod=1` (the remainder takes the sign of the dividend), from the floored
    /// remainder `r`: `r − b` where `r ≠ 0` and the signs of `a` and `b` differ, else `r`.
    fn fmod(&mut self, n: &NodeProto) -> R<()> {
        let a = self.value(&self.in0(n)?)?;
        let mut b = self.value(&self.in_req(n, 1)?)?;
        let dt = self.g.value_type(a).dtype;
        if self.g.value_type(b).dtype != dt {
            b = self.emit(Op::Cast(dt), &[b])?;
        }
        let r = self.bin(BinaryOp::Mod, a, b)?;
        let zero = self.emit(Op::Constant(HostTensor::scalar(dt, 0.0)), &[])?;
        let a_neg = self.bin(BinaryOp::Less, a, zero)?;
        let b_neg = self.bin(BinaryOp::Less, b, zero)?;
        let differ = self.bin(BinaryOp::Xor, a_neg, b_neg)?;
        let r_zero = self.bin(BinaryOp::Equal, r, zero)?;
        let r_nonzero = self.emit(Op::Unary(UnaryOp::Not), &[r_zero])?;
        let fix = self.bin(BinaryOp::And, differ, r_nonzero)?;
        let shifted = self.bin(BinaryOp::Sub, r, b)?;
        let v = self.emit(Op::Where, &[fix, shifted, r])?;
        self.out(n, 0, v);
        Ok(())
    }

    fn constant(&mut self, n: &NodeProto) -> R<()> {
        let a = n.attribute.first().ok_or_else(|| self.err("Constant without a value"))?;
        let t = match a.name() {
            "value" => tensor_from_proto(a.t.as_ref().ok_or_else(|| self.err("value is not a tensor"))?)?,
            "value_float" => HostTensor::from_f32(vec![], &[a.f()]),
            "value_floats" => HostTensor::from_f32(vec![a.floats.len()], &a.floats),
            "value_int" => HostTensor::from_i64(vec![], &[a.i()]),
            "value_ints" => HostTensor::from_i64(vec![a.ints.len()], &a.ints),
            other => return Err(self.err(format!("unsupported Constant attribute '{other}'"))),
        };
        self.set_tensor(&n.output[0], t);
        Ok(())
    }

    fn binary(&mut self, n: &NodeProto, op: BinaryOp) -> R<()> {
        // Variadic Max/Min fold pairwise.
        let names: Vec<String> = n.input.iter().filter(|s| !s.is_empty()).cloned().collect();
        if names.len() == 1 {
            let e = self.entry(&names[0])?.clone();
            self.set(&n.output[0], e);
            return Ok(());
        }
        if names.len() != 2 && !matches!(op, BinaryOp::Max | BinaryOp::Min) {
            return Err(self.err(format!("expects 2 inputs, got {}", names.len())));
        }
        // Known fold.
        let ks: Option<Vec<&Known>> = names.iter().map(|s| self.known(s)).collect();
        if let Some(ks) = ks {
            let dtype = if op.is_comparison() { DType::Bool } else { ks[0].dtype };
            let mut acc = Some(ks[0].clone());
            for k in &ks[1..] {
                acc = acc.and_then(|a| known::map_n(&[&a, k], dtype, |x| fold_binary(op, x[0], x[1])));
            }
            if let Some(k) = acc {
                self.set_known(&n.output[0], k);
                return Ok(());
            }
        }
        let mut acc = self.value(&names[0])?;
        for name in &names[1..] {
            let mut b = self.value(name)?;
            let da = self.g.value_type(acc).dtype;
            if self.g.value_type(b).dtype != da {
                b = self.emit(Op::Cast(da), &[b])?;
            }
            acc = self.emit(Op::Binary(op), &[acc, b])?;
        }
        self.out(n, 0, acc);
        Ok(())
    }

    fn unary(&mut self, n: &NodeProto, op: UnaryOp) -> R<()> {
        let name = self.in0(n)?;
        if let Some(k) = self.known(&name) {
            let f = |x: &SymInt| -> Option<SymInt> {
                match (op, x) {
                    (UnaryOp::Not, SymInt::C(c)) => Some(SymInt::C((*c == 0) as i64)),
                    (UnaryOp::Neg, SymInt::C(c)) => Some(SymInt::C(-c)),
                    (UnaryOp::Abs, SymInt::C(c)) => Some(SymInt::C(c.abs())),
                    (UnaryOp::Abs, SymInt::D(d)) => Some(SymInt::D(d.clone())),
                    _ => None,
                }
            };
            if let Some(r) = known::map_n(&[k], k.dtype, |x| f(x[0])) {
                self.set_known(&n.output[0], r);
                return Ok(());
            }
        }
        let x = self.value(&name)?;
        let v = self.emit(Op::Unary(op), &[x])?;
        self.out(n, 0, v);
        Ok(())
    }

    fn cast(&mut self, n: &NodeProto, d: DType) -> R<()> {
        let name = self.in0(n)?;
        match self.entry(&name)?.clone() {
            Entry::Known(k) if d.is_int() || d == DType::Bool => {
                self.set_known(&n.output[0], k.cast(d));
            }
            Entry::Known(k) if k.to_tensor().is_some() => {
                self.set_tensor(&n.output[0], k.to_tensor().unwrap().cast(d));
            }
            Entry::Tensor(t) => self.set_tensor(&n.output[0], t.cast(d)),
            _ => {
                let x = self.value(&name)?;
                let v = if self.g.value_type(x).dtype == d { x } else { self.emit(Op::Cast(d), &[x])? };
                self.out(n, 0, v);
            }
        }
        Ok(())
    }

    fn reduce(&mut self, n: &NodeProto, op: ReduceOp) -> R<()> {
        let x = self.value(&self.in0(n)?)?;
        let axes = self.axes(n, 1)?.unwrap_or_default();
        if axes.is_empty() && attr_i(n, "noop_with_empty_axes", 0) != 0 {
            self.out(n, 0, x);
            return Ok(());
        }
        let v = self.emit(Op::Reduce { op, axes, keepdims: attr_i(n, "keepdims", 1) != 0 }, &[x])?;
        self.out(n, 0, v);
        Ok(())
    }

    fn gemm(&mut self, n: &NodeProto) -> R<()> {
        let mut a = self.value(&self.in0(n)?)?;
        let mut b = self.value(&self.in_req(n, 1)?)?;
        if attr_i(n, "transA", 0) != 0 {
            a = self.emit(Op::Transpose { perm: vec![1, 0] }, &[a])?;
        }
        if attr_i(n, "transB", 0) != 0 {
            b = self.emit(Op::Transpose { perm: vec![1, 0] }, &[b])?;
        }
        let mut y = self.emit(Op::MatMul, &[a, b])?;
        let dt = self.g.value_type(y).dtype;
        let alpha = attr_f(n, "alpha", 1.0);
        if alpha != 1.0 {
            let s = self.emit(Op::Constant(HostTensor::scalar(dt, alpha as f64)), &[])?;
            y = self.emit(Op::Binary(BinaryOp::Mul), &[y, s])?;
        }
        if let Some(c) = inp(n, 2) {
            let mut c = self.value(c)?;
            let beta = attr_f(n, "beta", 1.0);
            if beta != 1.0 {
                let s = self.emit(Op::Constant(HostTensor::scalar(dt, beta as f64)), &[])?;
                c = self.emit(Op::Binary(BinaryOp::Mul), &[c, s])?;
            }
            y = self.emit(Op::Binary(BinaryOp::Add), &[y, c])?;
        }
        self.out(n, 0, y);
        Ok(())
    }

    fn resolve_reshape(&self, t: &TensorType, target: &[SymInt], allowzero: bool) -> R<Vec<Dim>> {
        let mut out: Vec<Option<Dim>> = vec![];
        let mut infer = None;
        for (i, v) in target.iter().enumerate() {
            out.push(match v {
                SymInt::C(0) if !allowzero => Some(t.shape.get(i).cloned().ok_or_else(|| {
                    self.err(format!("shape entry {i} is 0 but the input has rank {}", t.rank()))
                })?),
                SymInt::C(-1) => {
                    if infer.replace(i).is_some() {
                        return Err(self.err("shape has two -1 entries"));
                    }
                    None
                }
                other => Some(other.to_dim().ok_or_else(|| self.err(format!("bad shape entry {other}")))?),
            });
        }
        if let Some(i) = infer {
            let rest = out.iter().flatten().fold(Dim::Known(1), |a, d| a.mul(d));
            let d = t.numel().div_exact(&rest).ok_or_else(|| {
                self.err(format!(
                    "cannot infer the -1 entry: {} elements / {rest} is not expressible",
                    t.numel()
                ))
            })?;
            out[i] = Some(d);
        }
        Ok(out.into_iter().map(|d| d.expect("filled")).collect())
    }

    fn reshape_to(&mut self, n: &NodeProto, name: &str, shape: Vec<Dim>) -> R<()> {
        if let Some(k) = self.known(name) {
            if let Some(dims) = shape.iter().map(Dim::known).collect::<Option<Vec<usize>>>() {
                if dims.iter().product::<usize>() == k.vals.len() {
                    let k = Known::new(k.dtype, dims, k.vals.clone());
                    self.set_known(&n.output[0], k);
                    return Ok(());
                }
            }
        }
        if let Some(t) = self.const_tensor(name) {
            if let Some(dims) = shape.iter().map(Dim::known).collect::<Option<Vec<usize>>>() {
                if let Ok(t) = t.reshaped(dims) {
                    self.set_tensor(&n.output[0], t);
                    return Ok(());
                }
            }
        }
        let x = self.value(name)?;
        let v = self.emit(Op::Reshape { shape }, &[x])?;
        self.out(n, 0, v);
        Ok(())
    }

    fn expand(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in0(n)?;
        let target = self.known_req(&self.in_req(n, 1)?, "shape")?;
        let shape: Vec<Dim> = target
            .vals
            .iter()
            .map(|v| v.to_dim().ok_or_else(|| self.err(format!("bad shape entry {v}"))))
            .collect::<R<_>>()?;
        if let Some(k) = self.known(&name) {
            if let Some(dims) = shape.iter().map(Dim::known).collect::<Option<Vec<usize>>>() {
                let dummy = Known::new(DType::I64, dims.clone(), vec![SymInt::C(0); dims.iter().product()]);
                if let Some(r) = known::map_n(&[k, &dummy], k.dtype, |x| Some(x[0].clone())) {
                    self.set_known(&n.output[0], r);
                    return Ok(());
                }
            }
        }
        let x = self.value(&name)?;
        let v = self.emit(Op::Expand { shape }, &[x])?;
        self.out(n, 0, v);
        Ok(())
    }

    fn slice(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in0(n)?;
        let t = self.ty(&name)?;
        let (starts, ends, axes, steps) = if let Some(s) = attr_ints(n, "starts") {
            let e = attr_ints(n, "ends").unwrap_or_default();
            let a = attr_ints(n, "axes");
            (
                s.into_iter().map(SymInt::C).collect::<Vec<_>>(),
                e.into_iter().map(SymInt::C).collect::<Vec<_>>(),
                a,
                None,
            )
        } else {
            let s = self.known_req(&self.in_req(n, 1)?, "starts")?.vals;
            let e = self.known_req(&self.in_req(n, 2)?, "ends")?.vals;
            let a = match inp(n, 3) {
                Some(a) => {
                    Some(self.known_req(a, "axes")?.consts().ok_or_else(|| self.err("symbolic axes"))?)
                }
                None => None,
            };
            let st = match inp(n, 4) {
                Some(a) => {
                    Some(self.known_req(a, "steps")?.consts().ok_or_else(|| self.err("symbolic steps"))?)
                }
                None => None,
            };
            (s, e, a, st)
        };
        let k = starts.len();
        let axes: Vec<usize> = axes
            .unwrap_or_else(|| (0..k as i64).collect())
            .iter()
            .map(|&a| normalize_axis(a, t.rank()).ok_or_else(|| self.err(format!("axis {a} out of range"))))
            .collect::<R<_>>()?;
        let steps = steps.unwrap_or_else(|| vec![1; k]);
        if ends.len() != k || axes.len() != k || steps.len() != k {
            return Err(self.err("starts, ends, axes and steps differ in length"));
        }
        // Known data with constant bounds.
        if let Some(kd) = self.known(&name) {
            let mut cur = Some(kd.clone());
            for i in 0..k {
                let (Some(s), Some(e)) = (starts[i].as_c(), ends[i].as_c()) else {
                    cur = None;
                    break;
                };
                cur = cur.and_then(|c| known::slice_axis(&c, axes[i], s, e, steps[i]));
            }
            if let Some(c) = cur {
                self.set_known(&n.output[0], c);
                return Ok(());
            }
        }
        let mut x = self.value(&name)?;
        let to_bound = |v: &SymInt| match v {
            SymInt::C(c) => Bound::Const(*c),
            SymInt::D(d) => Bound::Dim(d.clone()),
        };
        let mut spec = SliceSpec { axes: vec![], starts: vec![], ends: vec![], steps: vec![] };
        let mut gathers: Vec<(usize, Value)> = vec![];
        for i in 0..k {
            let (s, e) = (to_bound(&starts[i]), to_bound(&ends[i]));
            let dim = &t.shape[axes[i]];
            if slice_len(dim, &s, &e, steps[i]).is_ok() {
                if matches!((&s, &e, steps[i]), (Bound::Const(0), Bound::Const(m), 1) if *m >= i64::MAX / 2) {
                    continue; // the whole axis
                }
                spec.axes.push(axes[i] as i64);
                spec.starts.push(s);
                spec.ends.push(e);
                spec.steps.push(steps[i]);
                continue;
            }
            // Workarounds for bounds the IR slice cannot type: gathers with equal semantics.
            let idx = match (&s, &e, steps[i]) {
                // x[:d] on an axis of known size: take(x, arange(d)).
                (Bound::Const(0), Bound::Dim(d), 1) => {
                    self.emit(Op::Range { start: 0.0, step: 1.0, len: d.clone(), dtype: DType::I64 }, &[])?
                }
                // x[-k:] on a symbolic axis: take(x, [-k, ..., -1]).
                (Bound::Const(st), Bound::Const(m), 1) if *st < 0 && *m >= i64::MAX / 2 => {
                    let idx: Vec<i64> = (*st..0).collect();
                    self.emit(Op::Constant(HostTensor::from_i64(vec![idx.len()], &idx)), &[])?
                }
                _ => {
                    return Err(self.err(format!(
                        "slice {}:{}:{} of axis {} (size {dim}) has no static length",
                        starts[i], ends[i], steps[i], axes[i]
                    )))
                }
            };
            gathers.push((axes[i], idx));
        }
        if !spec.axes.is_empty() {
            x = self.emit(Op::Slice(spec), &[x])?;
        }
        for (axis, idx) in gathers {
            x = self.emit(Op::Gather { axis: axis as i64 }, &[x, idx])?;
        }
        self.out(n, 0, x);
        Ok(())
    }

    fn concat(&mut self, n: &NodeProto) -> R<()> {
        let names: Vec<String> = n.input.iter().filter(|s| !s.is_empty()).cloned().collect();
        let axis = attr_i(n, "axis", 0);
        let ks: Option<Vec<&Known>> = names.iter().map(|s| self.known(s)).collect();
        if let Some(ks) = ks {
            let rank = ks[0].dims.len();
            if let Some(a) = normalize_axis(axis, rank) {
                if let Some(k) = known::concat(&ks, a) {
                    self.set_known(&n.output[0], k);
                    return Ok(());
                }
            }
        }
        let mut vs = vec![];
        for name in &names {
            // Skip empty operands (ONNX allows them).
            if self.ty(name)?.numel() == Dim::Known(0) && names.len() > 1 {
                continue;
            }
            vs.push(self.value(name)?);
        }
        let v = if vs.len() == 1 { vs[0] } else { self.emit(Op::Concat { axis }, &vs)? };
        self.out(n, 0, v);
        Ok(())
    }

    fn split(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in0(n)?;
        let t = self.ty(&name)?;
        let axis = attr_i(n, "axis", 0);
        let a = normalize_axis(axis, t.rank()).ok_or_else(|| self.err("axis out of range"))?;
        let nout = n.output.len();
        let sizes: Vec<Dim> = if let Some(s) = attr_ints(n, "split") {
            s.iter().map(|&v| Dim::Known(v as usize)).collect()
        } else if let Some(sn) = inp(n, 1) {
            self.known_req(sn, "split")?
                .vals
                .iter()
                .map(|v| v.to_dim().ok_or_else(|| self.err("bad split size")))
                .collect::<R<_>>()?
        } else {
            let parts = attr_i(n, "num_outputs", nout as i64) as usize;
            let d = &t.shape[a];
            match d.div_exact(&Dim::Known(parts)) {
                Some(p) => vec![p; parts],
                None => match d.known() {
                    Some(len) => {
                        let chunk = len.div_ceil(parts);
                        (0..parts).map(|i| Dim::Known(chunk.min(len.saturating_sub(i * chunk)))).collect()
                    }
                    None => return Err(self.err(format!("cannot split {d} into {parts} parts"))),
                },
            }
        };
        let x = self.value(&name)?;
        let vs = self.emit_multi(Op::Split { axis, sizes }, &[x])?;
        for (i, v) in vs.into_iter().enumerate() {
            self.out(n, i, v);
        }
        Ok(())
    }

    fn split_to_sequence(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in0(n)?;
        let t = self.ty(&name)?;
        let axis = attr_i(n, "axis", 0);
        let a = normalize_axis(axis, t.rank()).ok_or_else(|| self.err("axis out of range"))?;
        let len = t.shape[a].known().ok_or_else(|| self.err("split axis must have a known size"))?;
        let (sizes, squeeze): (Vec<usize>, bool) = match inp(n, 1) {
            Some(s) => {
                let k = self.known_req(s, "split")?;
                let c = k.consts().ok_or_else(|| self.err("symbolic split"))?;
                if k.dims.is_empty() {
                    let chunk = c[0] as usize;
                    let parts = len.div_ceil(chunk);
                    ((0..parts).map(|i| chunk.min(len - i * chunk)).collect(), false)
                } else {
                    (c.iter().map(|&v| v as usize).collect(), false)
                }
            }
            None => (vec![1; len], attr_i(n, "keepdims", 1) == 0),
        };
        let x = self.value(&name)?;
        let vs =
            self.emit_multi(Op::Split { axis, sizes: sizes.iter().map(|&s| Dim::Known(s)).collect() }, &[x])?;
        let mut items = vec![];
        for v in vs {
            let v = if squeeze {
                let mut shape = dims_of(self.g.value_type(v));
                shape.remove(a);
                self.emit(Op::Reshape { shape }, &[v])?
            } else {
                v
            };
            items.push(Entry::Ir(v));
        }
        self.set(&n.output[0], Entry::Seq(items));
        Ok(())
    }

    fn gather(&mut self, n: &NodeProto) -> R<()> {
        let data = self.in0(n)?;
        let idx = self.in_req(n, 1)?;
        let axis = attr_i(n, "axis", 0);
        if let (Some(kd), Some(ki)) = (self.known(&data), self.known(&idx)) {
            if let Some(a) = normalize_axis(axis, kd.dims.len()) {
                if let Some(k) = known::gather(kd, ki, a) {
                    self.set_known(&n.output[0], k);
                    return Ok(());
                }
            }
        }
        let d = self.value(&data)?;
        let i = self.value(&idx)?;
        let v = self.emit(Op::Gather { axis }, &[d, i])?;
        self.out(n, 0, v);
        Ok(())
    }

    /// A dim as an i64 IR value of shape `[1]` (or a scalar constant when known).
    fn dim_value(&mut self, d: &Dim) -> R<Value> {
        match d.known() {
            Some(k) => self.emit(Op::Constant(HostTensor::from_i64(vec![], &[k as i64])), &[]),
            None => self.emit(Op::SymConst(vec![d.clone()]), &[]),
        }
    }

    /// `data[c0, c1, ..., c_{r-1}, ...]` with broadcast i64 index tensors `comps` for the
    /// leading `r = comps.len()` axes: one Gather on the data flattened over those axes.
    fn flat_gather(&mut self, data: Value, comps: Vec<Value>) -> R<Value> {
        let dt = self.g.value_type(data).clone();
        let r = comps.len();
        let mut flat = comps[0];
        for (j, c) in comps.iter().enumerate().skip(1) {
            let d = self.dim_value(&dt.shape[j])?;
            flat = self.bin(BinaryOp::Mul, flat, d)?;
            flat = self.bin(BinaryOp::Add, flat, *c)?;
        }
        let lead = dt.shape[..r].iter().fold(Dim::Known(1), |a, d| a.mul(d));
        let mut shape = vec![lead];
        shape.extend(dt.shape[r..].iter().cloned());
        let data = self.reshape_v(data, shape)?;
        self.emit(Op::Gather { axis: 0 }, &[data, flat])
    }

    fn i64_value(&mut self, name: &str) -> R<Value> {
        let v = self.value(name)?;
        if self.g.value_type(v).dtype == DType::I64 {
            Ok(v)
        } else {
            self.emit(Op::Cast(DType::I64), &[v])
        }
    }

    /// `GatherND` (batch_dims 0; non-negative indices).
    fn gather_nd(&mut self, n: &NodeProto) -> R<()> {
        if attr_i(n, "batch_dims", 0) != 0 {
            return Err(self.unsupported("GatherND with batch_dims != 0 is not supported"));
        }
        let data = self.value(&self.in0(n)?)?;
        let idx = self.i64_value(&self.in_req(n, 1)?)?;
        let it = self.g.value_type(idx).clone();
        let r = it
            .shape
            .last()
            .and_then(Dim::known)
            .ok_or_else(|| self.err("the last index axis must have a known size"))?;
        let mut comps = vec![];
        for j in 0..r {
            let jv = self.emit(Op::Constant(HostTensor::from_i64(vec![], &[j as i64])), &[])?;
            comps.push(self.emit(Op::Gather { axis: -1 }, &[idx, jv])?);
        }
        let v = self.flat_gather(data, comps)?;
        self.out(n, 0, v);
        Ok(())
    }

    /// `GatherElements` (non-negative indices).
    fn gather_elements(&mut self, n: &NodeProto) -> R<()> {
        let data = self.value(&self.in0(n)?)?;
        let idx = self.i64_value(&self.in_req(n, 1)?)?;
        let it = self.g.value_type(idx).clone();
        let rank = it.rank();
        let axis = normalize_axis(attr_i(n, "axis", 0), rank).ok_or_else(|| self.err("axis out of range"))?;
        let mut comps = vec![];
        for k in 0..rank {
            if k == axis {
                comps.push(idx);
                continue;
            }
            let len = it.shape[k].clone();
            let rg =
                self.emit(Op::Range { start: 0.0, step: 1.0, len: len.clone(), dtype: DType::I64 }, &[])?;
            let mut shape = vec![Dim::Known(1); rank];
            shape[k] = len;
            comps.push(self.reshape_v(rg, shape)?);
        }
        let v = self.flat_gather(data, comps)?;
        self.out(n, 0, v);
        Ok(())
    }

    fn where_(&mut self, n: &NodeProto) -> R<()> {
        let names = [self.in0(n)?, self.in_req(n, 1)?, self.in_req(n, 2)?];
        if let (Some(c), Some(a), Some(b)) =
            (self.known(&names[0]), self.known(&names[1]), self.known(&names[2]))
        {
            let f = |x: &[&SymInt]| match x[0] {
                SymInt::C(0) => Some(x[2].clone()),
                SymInt::C(_) => Some(x[1].clone()),
                SymInt::D(_) => None,
            };
            if let Some(k) = known::map_n(&[c, a, b], a.dtype, f) {
                self.set_known(&n.output[0], k);
                return Ok(());
            }
        }
        let c = self.value(&names[0])?;
        let a = self.value(&names[1])?;
        let mut b = self.value(&names[2])?;
        let da = self.g.value_type(a).dtype;
        if self.g.value_type(b).dtype != da {
            b = self.emit(Op::Cast(da), &[b])?;
        }
        let v = self.emit(Op::Where, &[c, a, b])?;
        self.out(n, 0, v);
        Ok(())
    }

    /// A scalar operand: a number (int or float constant) or a symbolic dim.
    fn scalar_operand(&self, name: &str) -> R<(Option<f64>, Option<Dim>, DType)> {
        if let Some(k) = self.known(name) {
            let v = k.scalar().ok_or_else(|| self.err(format!("'{name}' is not a scalar")))?;
            return Ok(match v {
                SymInt::C(c) => (Some(*c as f64), None, k.dtype),
                SymInt::D(d) => (None, Some(d.clone()), k.dtype),
            });
        }
        if let Some(t) = self.const_tensor(name) {
            if t.len() == 1 {
                return Ok((Some(t.get_f64(0)), None, t.dtype()));
            }
        }
        Err(self.unsupported(format!("'{name}' is not computable at import time (a data-dependent shape)")))
    }

    fn range(&mut self, n: &NodeProto) -> R<()> {
        let (s, sd, dtype) = self.scalar_operand(&self.in0(n)?)?;
        let (l, ld, _) = self.scalar_operand(&self.in_req(n, 1)?)?;
        let (d, dd, _) = self.scalar_operand(&self.in_req(n, 2)?)?;
        let (Some(start), Some(step)) = (s, d) else {
            let _ = (sd, dd);
            return Err(self.err("Range start and delta must be constants"));
        };
        let len = match (l, ld) {
            (Some(limit), _) => Dim::Known(((limit - start) / step).ceil().max(0.0) as usize),
            (None, Some(dim)) if step == 1.0 && start == 0.0 => dim,
            (None, Some(dim)) if step == 1.0 && start > 0.0 && start.fract() == 0.0 => {
                match known::sub(&SymInt::D(dim.clone()), &SymInt::C(start as i64)).and_then(|v| v.to_dim()) {
                    Some(d) => d,
                    None => return Err(self.err(format!("Range length {dim} - {start} is not expressible"))),
                }
            }
            _ => return Err(self.err("Range with a symbolic limit needs step 1")),
        };
        if (dtype.is_int()) && len.known().is_some_and(|n| n <= known::MAX_KNOWN) {
            let vals =
                (0..len.known().unwrap()).map(|i| SymInt::C(start as i64 + step as i64 * i as i64)).collect();
            self.set_known(&n.output[0], Known::new(dtype, vec![len.known().unwrap()], vals));
            return Ok(());
        }
        let v = self.emit(Op::Range { start, step, len, dtype }, &[])?;
        self.out(n, 0, v);
        Ok(())
    }

    fn constant_of_shape(&mut self, n: &NodeProto) -> R<()> {
        let target = self.known_req(&self.in0(n)?, "shape")?;
        let shape: Vec<Dim> = target
            .vals
            .iter()
            .map(|v| v.to_dim().ok_or_else(|| self.err(format!("bad shape entry {v}"))))
            .collect::<R<_>>()?;
        let (value, dtype) = match n.attr("value").and_then(|a| a.t.as_ref()) {
            Some(t) => {
                let t = tensor_from_proto(t)?;
                (t.get_f64(0), t.dtype())
            }
            None => (0.0, DType::F32),
        };
        if dtype.is_int() || dtype == DType::Bool {
            if let Some(dims) = shape.iter().map(Dim::known).collect::<Option<Vec<usize>>>() {
                let count: usize = dims.iter().product();
                if count <= known::MAX_KNOWN {
                    let k = Known::new(dtype, dims, vec![SymInt::C(value as i64); count]);
                    self.set_known(&n.output[0], k);
                    return Ok(());
                }
            }
        }
        let v = self.emit(Op::Full { shape, value, dtype }, &[])?;
        self.out(n, 0, v);
        Ok(())
    }

    fn tile(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in0(n)?;
        let reps = self
            .known_req(&self.in_req(n, 1)?, "repeats")?
            .consts()
            .ok_or_else(|| self.err("symbolic repeats"))?;
        let mut x = self.value(&name)?;
        for (axis, &r) in reps.iter().enumerate() {
            if r != 1 {
                let copies = vec![x; r as usize];
                x = self.emit(Op::Concat { axis: axis as i64 }, &copies)?;
            }
        }
        self.out(n, 0, x);
        Ok(())
    }

    /// The input of a normalization over the axes `[axis, rank)`, as `{prefix..., S}` (`S` the
    /// product of the normalized dims), the normalized dims, and the shape to restore after
    /// the block (`None` when `axis` is already the last one).
    fn norm_input(&mut self, name: &str, axis: i64) -> R<(Value, Vec<Dim>, Option<Vec<Dim>>)> {
        let t = self.ty(name)?;
        let rank = t.rank();
        let a = normalize_axis(axis, rank).ok_or_else(|| self.err(format!("axis {axis} out of range")))?;
        let x = self.value(name)?;
        let norm = t.shape[a..].to_vec();
        if a + 1 == rank {
            return Ok((x, norm, None));
        }
        let mut shape = t.shape[..a].to_vec();
        shape.push(norm.iter().fold(Dim::Known(1), |acc, d| acc.mul(d)));
        let x = self.reshape_v(x, shape)?;
        Ok((x, norm, Some(t.shape.to_vec())))
    }

    /// A scale or bias (broadcastable to the normalized dims `norm`) as a vector over them.
    fn norm_param(&mut self, name: &str, norm: &[Dim]) -> R<Value> {
        let mut w = self.value(name)?;
        let t = self.g.value_type(w).clone();
        if t.shape.len() > norm.len() || t.shape.iter().rev().zip(norm.iter().rev()).any(|(a, b)| a != b) {
            w = self.emit(Op::Expand { shape: norm.to_vec() }, &[w])?;
        }
        self.flat_param(w)
    }

    fn layer_norm(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in0(n)?;
        let xt = self.ty(&name)?;
        let axis = attr_i(n, "axis", -1);
        let eps = attr_f(n, "epsilon", 1e-5);
        let (x, norm, restore) = self.norm_input(&name, axis)?;
        let mut args = vec![x];
        let has_weight = inp(n, 1).is_some();
        let has_bias = inp(n, 2).is_some();
        for i in 1..3 {
            if let Some(w) = inp(n, i) {
                args.push(self.norm_param(w, &norm)?);
            }
        }
        let block = LayerNorm { eps, has_weight, has_bias };
        let mut y = self.emit(Op::Block(Arc::new(block)), &args)?;
        if let Some(shape) = restore {
            y = self.reshape_v(y, shape)?;
        }
        self.out(n, 0, y);
        if self.output_used(n, 1) || self.output_used(n, 2) {
            // Mean and InvStdDev, in the stash type, with the normalized axes kept as 1s.
            let to = attr_i(n, "stash_type", 1) as i32;
            let st = dtype_from_onnx(to)
                .ok_or_else(|| OnnxError::UnsupportedDtype { tensor: n.output[1].clone(), data_type: to })?;
            let xs = if xt.dtype == st { x } else { self.emit(Op::Cast(st), &[x])? };
            let mean_op = || Op::Reduce { op: ReduceOp::Mean, axes: vec![-1], keepdims: true };
            let mean = self.emit(mean_op(), &[xs])?;
            let d = self.bin(BinaryOp::Sub, xs, mean)?;
            let d2 = self.bin(BinaryOp::Mul, d, d)?;
            let var = self.emit(mean_op(), &[d2])?;
            let e = self.emit(Op::Constant(HostTensor::scalar(st, eps as f64)), &[])?;
            let ve = self.bin(BinaryOp::Add, var, e)?;
            let sd = self.emit(Op::Unary(UnaryOp::Sqrt), &[ve])?;
            let inv = self.emit(Op::Unary(UnaryOp::Reciprocal), &[sd])?;
            let keep = xt.rank() - norm.len();
            let mut shape = xt.shape[..keep].to_vec();
            shape.resize(xt.rank(), Dim::Known(1));
            for (i, v) in [(1, mean), (2, inv)] {
                let v = self.reshape_v(v, shape.clone())?;
                self.out(n, i, v);
            }
        }
        Ok(())
    }

    /// A weight of shape `{1, ..., 1, D}` as `{D}`.
    fn flat_param(&mut self, w: Value) -> R<Value> {
        let t = self.g.value_type(w).clone();
        if t.rank() <= 1 {
            return Ok(w);
        }
        let shape = vec![t.numel()];
        self.emit(Op::Reshape { shape }, &[w])
    }

    fn rms_norm(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in0(n)?;
        let eps = attr_f(n, "epsilon", 1e-5);
        let (x, norm, restore) = self.norm_input(&name, attr_i(n, "axis", -1))?;
        let w = self.norm_param(&self.in_req(n, 1)?, &norm)?;
        let mut y = self.emit(Op::Block(Arc::new(RmsNorm::new(eps))), &[x, w])?;
        if let Some(shape) = restore {
            y = self.reshape_v(y, shape)?;
        }
        self.out(n, 0, y);
        Ok(())
    }

    fn reshape_v(&mut self, x: Value, shape: Vec<Dim>) -> R<Value> {
        self.emit(Op::Reshape { shape }, &[x])
    }

    fn slice_last(&mut self, x: Value, start: i64, end: i64) -> R<Value> {
        self.emit(
            Op::Slice(SliceSpec {
                axes: vec![-1],
                starts: vec![Bound::Const(start)],
                ends: vec![Bound::Const(end)],
                steps: vec![1],
            }),
            &[x],
        )
    }

    fn bin(&mut self, op: BinaryOp, a: Value, b: Value) -> R<Value> {
        self.emit(Op::Binary(op), &[a, b])
    }

    /// ONNX `RotaryEmbedding` (opset 23), expanded into primitive ops in rotate-half form:
    /// `out = x·cos + rotate_half(x)·sin` (pairwise when interleaved).
    fn rotary(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in0(n)?;
        let xt = self.ty(&name)?;
        let mut x = self.value(&name)?;
        let interleaved = attr_i(n, "interleaved", 0) != 0;
        let three_d = match xt.rank() {
            4 => false,
            3 => {
                let nh = attr_i(n, "num_heads", 0);
                if nh <= 0 {
                    return Err(self.err("a 3-D input needs num_heads"));
                }
                let hd = xt.shape[2]
                    .div_exact(&Dim::Known(nh as usize))
                    .ok_or_else(|| self.err("hidden size is not a multiple of num_heads"))?;
                let shape = vec![xt.shape[0].clone(), xt.shape[1].clone(), Dim::Known(nh as usize), hd];
                x = self.reshape_v(x, shape)?;
                true
            }
            r => return Err(self.err(format!("input must have 3 or 4 axes, got {r}"))),
        };
        let x4 = self.g.value_type(x).clone();
        let d = x4.shape[3].known().ok_or_else(|| self.err("head size must be known"))?;
        let rd = match attr_i(n, "rotary_embedding_dim", 0) {
            0 => d,
            r => r as usize,
        };
        let half = rd / 2;
        let mut cs = [self.value(&self.in_req(n, 1)?)?, self.value(&self.in_req(n, 2)?)?];
        let pos = inp(n, 3).map(str::to_string);
        for c in cs.iter_mut() {
            if let Some(p) = &pos {
                let p = self.value(p)?;
                *c = self.emit(Op::Gather { axis: 0 }, &[*c, p])?;
            }
            let ct = self.g.value_type(*c).clone();
            if ct.rank() != 3 {
                return Err(self.err(format!("cos/sin must be {{B, S, D/2}} here, got {ct}")));
            }
            if ct.shape[2] != Dim::Known(half) {
                *c = self.slice_last(*c, 0, half as i64)?;
            }
            let ct = self.g.value_type(*c).clone();
            let (b, s) = (ct.shape[0].clone(), ct.shape[1].clone());
            let shape = if three_d {
                vec![b, s, Dim::Known(1), Dim::Known(half)]
            } else {
                vec![b, Dim::Known(1), s, Dim::Known(half)]
            };
            *c = self.reshape_v(*c, shape)?;
            if ct.dtype != x4.dtype {
                *c = self.emit(Op::Cast(x4.dtype), &[*c])?;
            }
            // Widen to rd entries: [c, c] (half split) or [c0, c0, c1, c1, ...] (interleaved).
            *c = if interleaved {
                let mut s5 = dims_of(self.g.value_type(*c));
                s5.push(Dim::Known(1));
                let c5 = self.reshape_v(*c, s5.clone())?;
                s5[4] = Dim::Known(2);
                let c5 = self.emit(Op::Expand { shape: s5.clone() }, &[c5])?;
                let mut s4 = s5[..4].to_vec();
                s4[3] = Dim::Known(rd);
                self.reshape_v(c5, s4)?
            } else {
                self.emit(Op::Concat { axis: -1 }, &[*c, *c])?
            };
        }
        let [cos, sin] = cs;
        let (xr, xp) = if rd < d {
            (self.slice_last(x, 0, rd as i64)?, Some(self.slice_last(x, rd as i64, d as i64)?))
        } else {
            (x, None)
        };
        let rot = if interleaved {
            let mut s5 = dims_of(self.g.value_type(xr));
            s5[3] = Dim::Known(half);
            s5.push(Dim::Known(2));
            let p = self.reshape_v(xr, s5)?;
            let x1 = self.slice_last(p, 0, 1)?;
            let x2 = self.slice_last(p, 1, 2)?;
            let nx2 = self.emit(Op::Unary(UnaryOp::Neg), &[x2])?;
            let r = self.emit(Op::Concat { axis: -1 }, &[nx2, x1])?;
            let s4 = dims_of(self.g.value_type(xr));
            self.reshape_v(r, s4)?
        } else {
            let x1 = self.slice_last(xr, 0, half as i64)?;
            let x2 = self.slice_last(xr, half as i64, rd as i64)?;
            let nx2 = self.emit(Op::Unary(UnaryOp::Neg), &[x2])?;
            self.emit(Op::Concat { axis: -1 }, &[nx2, x1])?
        };
        let a = self.bin(BinaryOp::Mul, xr, cos)?;
        let b = self.bin(BinaryOp::Mul, rot, sin)?;
        let mut y = self.bin(BinaryOp::Add, a, b)?;
        if let Some(xp) = xp {
            y = self.emit(Op::Concat { axis: -1 }, &[y, xp])?;
        }
        if three_d {
            y = self.reshape_v(y, dims_of(&xt))?;
        }
        self.out(n, 0, y);
        Ok(())
    }

    /// The `attn_mask` operand of `Attention`, padded on the last axis to the key length
    /// `tk` (with false, or −inf when additive) when it is shorter, as ONNX allows.
    fn attention_mask(&mut self, name: &str, tk: &Dim) -> R<Value> {
        let m = self.value(name)?;
        let mt = self.g.value_type(m).clone();
        let (Some(have), Some(want)) = (mt.shape.last().and_then(Dim::known), tk.known()) else {
            return Ok(m);
        };
        if have >= want {
            return Ok(m);
        }
        let mut shape = mt.shape.to_vec();
        *shape.last_mut().unwrap() = Dim::Known(want - have);
        let value = if mt.dtype == DType::Bool { 0.0 } else { f64::NEG_INFINITY };
        let pad = self.emit(Op::Full { shape, value, dtype: mt.dtype }, &[])?;
        self.emit(Op::Concat { axis: -1 }, &[m, pad])
    }

    /// ONNX `Attention` (opset 23) as an `Sdpa` block.
    fn attention(&mut self, n: &NodeProto) -> R<()> {
        if attr_f(n, "softcap", 0.0) != 0.0 {
            return Err(self.unsupported("Attention with softcap is not supported"));
        }
        if attr_i(n, "qk_matmul_output_mode", 0) != 0 {
            return Err(self.unsupported("Attention with qk_matmul_output_mode is not supported"));
        }
        if inp(n, 4).is_some() || inp(n, 5).is_some() || (1..4).any(|i| self.output_used(n, i)) {
            return Err(self.unsupported("Attention with past/present key-values is not supported"));
        }
        if inp(n, 6).is_some() {
            return Err(self.unsupported("Attention with nonpad_kv_seqlen is not supported"));
        }
        if attr_i(n, "left_window_size", -1) >= 0 || attr_i(n, "right_window_size", -1) >= 0 {
            return Err(self.unsupported("Attention with a sliding window is not supported"));
        }
        let mut qkv = vec![];
        let mut three_d = None;
        for (i, heads_attr) in [(0, "q_num_heads"), (1, "kv_num_heads"), (2, "kv_num_heads")] {
            let name = self.in_req(n, i)?;
            let t = self.ty(&name)?;
            let mut v = self.value(&name)?;
            match t.rank() {
                4 => {}
                3 => {
                    let h = attr_i(n, heads_attr, 0);
                    if h <= 0 {
                        return Err(self.err(format!("3-D inputs need {heads_attr}")));
                    }
                    let hd = t.shape[2]
                        .div_exact(&Dim::Known(h as usize))
                        .ok_or_else(|| self.err("hidden size is not a multiple of the heads"))?;
                    let shape = vec![t.shape[0].clone(), t.shape[1].clone(), Dim::Known(h as usize), hd];
                    v = self.reshape_v(v, shape)?;
                    v = self.emit(Op::Transpose { perm: vec![0, 2, 1, 3] }, &[v])?;
                    if i == 0 {
                        three_d = Some(t);
                    }
                }
                r => return Err(self.err(format!("inputs must have 3 or 4 axes, got {r}"))),
            }
            qkv.push(v);
        }
        let qt = self.g.value_type(qkv[0]).clone();
        let scale = match n.attr("scale").and_then(|a| a.as_float()) {
            Some(s) => s,
            None => {
                Sdpa::default_scale(qt.shape[3].known().ok_or_else(|| self.err("head size must be known"))?)
            }
        };
        let causal = attr_i(n, "is_causal", 0) != 0;
        let (tq, tk) = (qt.shape[2].clone(), self.g.value_type(qkv[1]).shape[2].clone());
        let mut mask_v = match inp(n, 3) {
            Some(m) => Some(self.attention_mask(m, &tk)?),
            None => None,
        };
        let mask = if causal && mask_v.is_none() && tq == tk {
            MaskKind::Causal
        } else {
            if causal {
                // ONNX's causal mask is aligned top-left (query i sees keys j ≤ i) where the
                // block's is aligned bottom-right: spell it as an explicit boolean mask.
                let (Some(nq), Some(nk)) = (tq.known(), tk.known()) else {
                    return Err(self.unsupported(format!(
                        "causal Attention with query length {tq} and key length {tk} (needs equal or known lengths)"
                    )));
                };
                let allowed: Vec<f64> =
                    (0..nq).flat_map(|i| (0..nk).map(move |j| f64::from(u8::from(j <= i)))).collect();
                let c = HostTensor::from_f64(DType::Bool, vec![nq, nk], &allowed);
                let c = self.emit(Op::Constant(c), &[])?;
                mask_v = Some(match mask_v {
                    None => c,
                    Some(m) if self.g.value_type(m).dtype == DType::Bool => self.bin(BinaryOp::And, m, c)?,
                    Some(m) => {
                        let dt = self.g.value_type(m).dtype;
                        let ninf = self.emit(Op::Constant(HostTensor::scalar(dt, f64::NEG_INFINITY)), &[])?;
                        self.emit(Op::Where, &[c, m, ninf])?
                    }
                });
            }
            match mask_v {
                Some(m) => {
                    qkv.push(m);
                    if self.g.value_type(m).dtype == DType::Bool {
                        MaskKind::Boolean
                    } else {
                        MaskKind::Additive
                    }
                }
                None => MaskKind::None,
            }
        };
        let mut y = self.emit(Op::Block(Arc::new(Sdpa::new(scale, mask))), &qkv)?;
        if mask == MaskKind::Boolean {
            // ONNX (like PyTorch's SDPA) gives 0 for a query row whose keys are all masked;
            // the block attends uniformly there. Zero those rows explicitly.
            let m = qkv[3];
            let yd = self.g.value_type(y).dtype;
            let mf = self.emit(Op::Cast(yd), &[m])?;
            let any = self.emit(Op::Reduce { op: ReduceOp::Max, axes: vec![-1], keepdims: true }, &[mf])?;
            let any = self.emit(Op::Cast(DType::Bool), &[any])?;
            let zero = self.emit(Op::Constant(HostTensor::scalar(yd, 0.0)), &[])?;
            y = self.emit(Op::Where, &[any, y, zero])?;
        }
        if let Some(t) = three_d {
            y = self.emit(Op::Transpose { perm: vec![0, 2, 1, 3] }, &[y])?;
            let yt = self.g.value_type(y).clone();
            let shape = vec![t.shape[0].clone(), t.shape[1].clone(), yt.shape[2].mul(&yt.shape[3])];
            y = self.reshape_v(y, shape)?;
        }
        self.out(n, 0, y);
        Ok(())
    }
}

fn fold_binary(op: BinaryOp, a: &SymInt, b: &SymInt) -> Option<SymInt> {
    use std::cmp::Ordering::*;
    let bool_ = |v: bool| Some(SymInt::C(v as i64));
    match op {
        BinaryOp::Add => known::add(a, b),
        BinaryOp::Sub => known::sub(a, b),
        BinaryOp::Mul => known::mul(a, b),
        BinaryOp::Div => known::div(a, b),
        BinaryOp::Mod => known::modulo(a, b),
        BinaryOp::Max => known::max(a, b),
        BinaryOp::Min => known::min(a, b),
        BinaryOp::Pow => match (a, b) {
            (SymInt::C(x), SymInt::C(y)) if *y >= 0 => x.checked_pow(*y as u32).map(SymInt::C),
            _ => None,
        },
        BinaryOp::Equal => {
            let o = known::cmp(a, b);
            match o {
                Some(o) => bool_(o == Equal),
                // A symbolic dim never equals a negative constant.
                None => None,
            }
        }
        BinaryOp::Less => bool_(known::cmp(a, b)? == Less),
        BinaryOp::LessEqual => bool_(known::cmp(a, b)? != Greater),
        BinaryOp::Greater => bool_(known::cmp(a, b)? == Greater),
        BinaryOp::GreaterEqual => bool_(known::cmp(a, b)? != Less),
        BinaryOp::And => bool_(a.as_c()? != 0 && b.as_c()? != 0),
        BinaryOp::Or => bool_(a.as_c()? != 0 || b.as_c()? != 0),
        BinaryOp::Xor => bool_((a.as_c()? != 0) != (b.as_c()? != 0)),
    }
}

fn sanitize(p: &str) -> String {
    let s: String = p.chars().map(|c| if c.is_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_alphabetic() || c == '_') {
        s
    } else {
        format!("d_{s}")
    }
}
