//! The emitter: one IR graph (the main graph or a block's fallback) to ONNX nodes.

use super::{standard, ExportError, FUNCTION_DOMAIN, OPSET};
use crate::proto::attribute_proto::AttributeType;
use crate::proto::tensor_shape_proto::{dimension, Dimension};
use crate::proto::{
    type_proto, AttributeProto, FunctionProto, GraphProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::tensor::{dtype_to_onnx, tensor_to_proto};
use blockfuse_ir::{
    BinaryOp, Block, Bound, Builder, DType, Dim, Graph, HostTensor, NodeId, Op, ReduceOp, TensorType,
    UnaryOp, Value,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// A model-local function's key: the block (equal blocks by [`Block::dyn_eq`] share one) and
/// its operand types.
type FunctionKey = (Arc<dyn Block>, Vec<TensorType>);

/// The model-local functions made so far, keyed by block and operand types.
#[derive(Default)]
pub(super) struct Library {
    pub(super) functions: Vec<FunctionProto>,
    by_key: HashMap<FunctionKey, String>,
}

/// Emits the main graph: inputs, initializers (named after their constant nodes), nodes and
/// typed outputs.
pub(super) fn emit_main(g: &Graph, lib: &mut Library) -> Result<GraphProto, ExportError> {
    let mut e = Emitter::new(lib, false);
    e.reserve_interface(g)?;
    e.emit_graph(g)?;
    let input = g
        .inputs()
        .iter()
        .map(|&id| Ok(value_info(&e.name_of(g, &Value::first(id))?, first_type(g, id)?)))
        .collect::<Result<_, ExportError>>()?;
    let mut output = Vec::new();
    for (name, v) in g.outputs() {
        let src = e.name_of(g, v)?;
        e.node("Identity", &[&src], std::slice::from_ref(name), vec![], None);
        output.push(value_info(name, g.value_type(*v)));
    }
    Ok(GraphProto {
        node: e.nodes,
        name: Some("blockfuse".into()),
        initializer: e.initializers,
        input,
        output,
        ..GraphProto::default()
    })
}

pub(super) struct Emitter<'l> {
    lib: &'l mut Library,
    in_function: bool,
    pub(super) nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    names: HashMap<Value, String>,
    used: HashSet<String>,
    /// Node names given so far (ONNX Runtime wants them unique).
    used_nodes: HashSet<String>,
    /// Symbol → (a value having it as an axis, that axis).
    sym_src: HashMap<Arc<str>, (String, usize)>,
    /// Symbol → a 1-element i64 tensor holding its value.
    sym_tensor: HashMap<Arc<str>, String>,
}

impl<'l> Emitter<'l> {
    fn new(lib: &'l mut Library, in_function: bool) -> Self {
        Emitter {
            lib,
            in_function,
            nodes: Vec::new(),
            initializers: Vec::new(),
            names: HashMap::new(),
            used: HashSet::new(),
            used_nodes: HashSet::new(),
            sym_src: HashMap::new(),
            sym_tensor: HashMap::new(),
        }
    }

    /// Reserves the graph input and output names, which must stay as they are.
    fn reserve_interface(&mut self, g: &Graph) -> Result<(), ExportError> {
        for &id in g.inputs() {
            let name = g.node(id).name.clone().unwrap_or_else(|| format!("input{}", id.index()));
            if !self.used.insert(name.clone()) {
                return Err(ExportError::Names(format!("two graph inputs are named '{name}'")));
            }
            self.bind(Value::first(id), name, first_type(g, id)?);
        }
        for (name, _) in g.outputs() {
            if !self.used.insert(name.clone()) {
                return Err(ExportError::Names(format!(
                    "graph output '{name}' has the name of a graph input or of another output"
                )));
            }
        }
        Ok(())
    }

    /// The name bound to `v` (values are bound in topological order: an error for a value
    /// used before the node that makes it, never a panic).
    fn name_of(&self, g: &Graph, v: &Value) -> Result<String, ExportError> {
        self.names
            .get(v)
            .cloned()
            .ok_or_else(|| unsupported_label(g, v.node, format!("output {} has no name yet", v.output)))
    }

    fn bind(&mut self, v: Value, name: String, ty: &TensorType) {
        for (axis, d) in ty.shape.iter().enumerate() {
            if let Some(s) = single_symbol(d) {
                self.sym_src.entry(s).or_insert_with(|| (name.clone(), axis));
            }
        }
        self.names.insert(v, name);
    }

    /// A fresh value or node name starting with `base`.
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while self.used.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.used.insert(name.clone());
        name
    }

    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[String],
        attrs: Vec<AttributeProto>,
        name: Option<&str>,
    ) {
        // ONNX op types start with a capital; our function names (`rms_norm_0`) do not.
        let domain = op.starts_with(|c: char| c.is_ascii_lowercase()).then(|| FUNCTION_DOMAIN.to_string());
        let name = name.map(|n| {
            let mut unique = n.to_string();
            let mut k = 1;
            while !self.used_nodes.insert(unique.clone()) {
                unique = format!("{n}_{k}");
                k += 1;
            }
            unique
        });
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.to_vec(),
            name,
            op_type: Some(op.to_string()),
            domain,
            attribute: attrs,
            ..NodeProto::default()
        });
    }

    /// One node with one fresh output; returns the output's name.
    fn op1(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = self.fresh("t");
        self.node(op, inputs, std::slice::from_ref(&out), attrs, None);
        out
    }

    fn constant(&mut self, t: &HostTensor, base: &str) -> String {
        let name = self.fresh(base);
        if self.in_function {
            let attr = AttributeProto {
                name: Some("value".into()),
                r#type: Some(AttributeType::Tensor as i32),
                t: Some(tensor_to_proto("", t)),
                ..AttributeProto::default()
            };
            self.node("Constant", &[], std::slice::from_ref(&name), vec![attr], None);
        } else {
            self.initializers.push(tensor_to_proto(&name, t));
        }
        name
    }

    fn const_i64(&mut self, values: &[i64]) -> String {
        self.constant(&HostTensor::from_i64(vec![values.len()], values), "c")
    }

    /// A 1-element i64 tensor holding `d`.
    fn dim_tensor(&mut self, d: &Dim, node: NodeId) -> Result<String, ExportError> {
        if let Some(n) = d.known() {
            return Ok(self.const_i64(&[n as i64]));
        }
        let mut product = Dim::Known(1);
        let mut acc: Option<String> = None;
        for s in d.symbols().cloned().collect::<Vec<_>>() {
            product = product.mul(&Dim::sym(&s));
            let t = self.symbol_tensor(&s, node)?;
            acc = Some(match acc {
                None => t,
                Some(a) => self.op1("Mul", &[&a, &t], vec![]),
            });
        }
        let acc = acc.ok_or_else(|| unsupported(node, format!("dim {d} is neither known nor symbolic")))?;
        match d.div_exact(&product).and_then(|c| c.known()) {
            Some(1) => Ok(acc),
            Some(c) => {
                let c = self.const_i64(&[c as i64]);
                Ok(self.op1("Mul", &[&acc, &c], vec![]))
            }
            None => Err(unsupported(node, format!("dim {d} is not a coefficient times symbols"))),
        }
    }

    fn symbol_tensor(&mut self, s: &Arc<str>, node: NodeId) -> Result<String, ExportError> {
        if let Some(t) = self.sym_tensor.get(s) {
            return Ok(t.clone());
        }
        let Some((src, axis)) = self.sym_src.get(s).cloned() else {
            return Err(unsupported(node, format!("no value before it has symbol '{s}' as an axis")));
        };
        let attrs = vec![attr_i("start", axis as i64), attr_i("end", axis as i64 + 1)];
        let t = self.op1("Shape", &[&src], attrs);
        self.sym_tensor.insert(s.clone(), t.clone());
        Ok(t)
    }

    /// A 1-D i64 tensor holding `dims`.
    fn shape_tensor(&mut self, dims: &[Dim], node: NodeId) -> Result<String, ExportError> {
        if let Some(known) = dims.iter().map(Dim::known).collect::<Option<Vec<_>>>() {
            let v: Vec<i64> = known.iter().map(|&n| n as i64).collect();
            return Ok(self.const_i64(&v));
        }
        let parts = dims.iter().map(|d| self.dim_tensor(d, node)).collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        Ok(self.op1("Concat", &refs, vec![attr_i("axis", 0)]))
    }

    fn bounds_tensor(&mut self, bounds: &[Bound], node: NodeId) -> Result<String, ExportError> {
        let dims: Option<Vec<i64>> =
            bounds.iter().map(|b| if let Bound::Const(c) = b { Some(*c) } else { None }).collect();
        if let Some(v) = dims {
            return Ok(self.const_i64(&v));
        }
        let mut parts = Vec::new();
        for b in bounds {
            parts.push(match b {
                Bound::Const(c) => self.const_i64(&[*c]),
                Bound::Dim(d) => self.dim_tensor(d, node)?,
            });
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        Ok(self.op1("Concat", &refs, vec![attr_i("axis", 0)]))
    }

    fn emit_graph(&mut self, g: &Graph) -> Result<(), ExportError> {
        for id in g.topo_order()? {
            let node = g.node(id);
            if matches!(node.op, Op::Input) {
                continue;
            }
            let operands: Vec<String> =
                node.operands.iter().map(|v| self.name_of(g, v)).collect::<Result<_, _>>()?;
            let outs = self.emit_node(g, id, &operands).map_err(|e| match e {
                ExportError::Unsupported { node, reason } if node.name.is_none() => {
                    ExportError::Unsupported { node: g.label(node.id), reason }
                }
                e => e,
            })?;
            if outs.len() != node.types.len() {
                let reason = format!("{} output names for {} outputs", outs.len(), node.types.len());
                return Err(unsupported_label(g, id, reason));
            }
            for (i, (name, ty)) in outs.into_iter().zip(&node.types).enumerate() {
                self.bind(Value { node: id, output: i as u16 }, name, ty);
            }
        }
        Ok(())
    }

    /// Output names for node `id`, one per output.
    fn out_names(&mut self, g: &Graph, id: NodeId) -> Vec<String> {
        let n = g.node(id).types.len();
        (0..n)
            .map(|i| {
                self.fresh(&if n == 1 { format!("v{}", id.index()) } else { format!("v{}_{i}", id.index()) })
            })
            .collect()
    }

    /// Emits one IR node; returns the names holding its outputs.
    fn emit_node(&mut self, g: &Graph, id: NodeId, x: &[String]) -> Result<Vec<String>, ExportError> {
        let node = g.node(id);
        let label = node.name.clone();
        let name = label.as_deref();
        let x: Vec<&str> = x.iter().map(String::as_str).collect();
        // Operand `i` (a validated graph gives every op its arity; an error, not a panic, if not).
        let arg = |i: usize| -> Result<&str, ExportError> {
            x.get(i).copied().ok_or_else(|| unsupported_label(g, id, format!("operand {i} is missing")))
        };
        let single = |e: &mut Self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>| {
            let out = e.out_names(g, id);
            e.node(op, inputs, &out, attrs, name);
            Ok(out)
        };
        match &node.op {
            Op::Input => unreachable!("inputs are bound before"),
            Op::Constant(t) => {
                let base = node.name.clone().unwrap_or_else(|| format!("const{}", id.index()));
                Ok(vec![self.constant(t, &base)])
            }
            Op::SymConst(dims) => Ok(vec![self.shape_tensor(dims, id)?]),
            Op::Unary(UnaryOp::Rsqrt) => {
                let s = self.op1("Sqrt", &x, vec![]);
                single(self, "Reciprocal", &[&s], vec![])
            }
            Op::Unary(UnaryOp::Square) => single(self, "Mul", &[arg(0)?, arg(0)?], vec![]),
            Op::Unary(u) => single(self, unary_name(*u), &x, vec![]),
            Op::Binary(BinaryOp::Mod)
                if node.operands.first().is_some_and(|&a| g.value_type(a).dtype.is_float()) =>
            {
                let q = self.op1("Div", &x, vec![]);
                let f = self.op1("Floor", &[&q], vec![]);
                let m = self.op1("Mul", &[&f, arg(1)?], vec![]);
                single(self, "Sub", &[arg(0)?, &m], vec![])
            }
            Op::Binary(BinaryOp::Mod) => single(self, "Mod", &x, vec![attr_i("fmod", 0)]),
            Op::Binary(b) => single(self, binary_name(*b), &x, vec![]),
            Op::Where => single(self, "Where", &x, vec![]),
            Op::Cast(d) => single(self, "Cast", &x, vec![attr_i("to", dtype_to_onnx(*d) as i64)]),
            Op::Reduce { op, axes, keepdims } => {
                let mut inputs = x.clone();
                let a;
                if !axes.is_empty() {
                    a = self.const_i64(axes);
                    inputs.push(&a);
                }
                single(self, reduce_name(*op), &inputs, vec![attr_i("keepdims", *keepdims as i64)])
            }
            Op::Softmax { axis } => single(self, "Softmax", &x, vec![attr_i("axis", *axis)]),
            Op::MatMul => single(self, "MatMul", &x, vec![]),
            Op::Transpose { perm } => {
                let perm: Vec<i64> = perm.iter().map(|&p| p as i64).collect();
                single(self, "Transpose", &x, vec![attr_ints("perm", perm)])
            }
            Op::Reshape { shape } => {
                let s = self.shape_tensor(shape, id)?;
                let zero = shape.iter().any(|d| d.known() == Some(0));
                single(self, "Reshape", &[arg(0)?, &s], vec![attr_i("allowzero", zero as i64)])
            }
            Op::Expand { shape } => {
                let s = self.shape_tensor(shape, id)?;
                single(self, "Expand", &[arg(0)?, &s], vec![])
            }
            Op::Slice(spec) => {
                let starts = self.bounds_tensor(&spec.starts, id)?;
                let ends = self.bounds_tensor(&spec.ends, id)?;
                let axes = self.const_i64(&spec.axes);
                let steps = self.const_i64(&spec.steps);
                single(self, "Slice", &[arg(0)?, &starts, &ends, &axes, &steps], vec![])
            }
            Op::Concat { axis } => single(self, "Concat", &x, vec![attr_i("axis", *axis)]),
            Op::Split { axis, sizes } => {
                let s = self.shape_tensor(sizes, id)?;
                single(self, "Split", &[arg(0)?, &s], vec![attr_i("axis", *axis)])
            }
            Op::Gather { axis } => single(self, "Gather", &x, vec![attr_i("axis", *axis)]),
            Op::SliceUpdate { axis } => {
                let out = self.out_names(g, id);
                self.slice_update(g, id, *axis, &x, &out)?;
                Ok(out)
            }
            Op::Range { start, step, len, dtype } => self.range(g, id, *start, *step, len, *dtype),
            Op::Full { shape, value, dtype } => {
                let s = self.shape_tensor(shape, id)?;
                let v = tensor_to_proto("", &HostTensor::from_f64(*dtype, vec![1], &[*value]));
                let attr = AttributeProto {
                    name: Some("value".into()),
                    r#type: Some(AttributeType::Tensor as i32),
                    t: Some(v),
                    ..AttributeProto::default()
                };
                single(self, "ConstantOfShape", &[&s], vec![attr])
            }
            Op::Trilu { upper, k } => {
                let k = self.constant(&HostTensor::from_i64(vec![], &[*k]), "k");
                single(self, "Trilu", &[arg(0)?, &k], vec![attr_i("upper", *upper as i64)])
            }
            Op::Block(b) => self.block(g, id, b, &x),
        }
    }

    /// `slice_update(data, update, start)` in opset-23 ops, O(data): every position `p` along
    /// the axis reads update row `p − start` where that is in `0..n`, else keeps the data
    /// (`Where(valid, Gather(update, clamp(p − start)), data)`). Needs the axis' length.
    fn slice_update(
        &mut self,
        g: &Graph,
        id: NodeId,
        axis: i64,
        x: &[&str],
        out: &[String],
    ) -> Result<(), ExportError> {
        let node = g.node(id);
        let (&[data, update, _], &[xd, xu, xs]) = (node.operands.as_slice(), x) else {
            return Err(unsupported_label(g, id, "slice_update needs data, update and start".into()));
        };
        let (dt, ut) = (g.value_type(data), g.value_type(update));
        let a = blockfuse_ir::shape::normalize_axis(axis, dt.rank())
            .ok_or_else(|| unsupported_label(g, id, format!("axis {axis} is out of range")))?;
        let (Some(len), Some(n)) =
            (dt.shape.get(a).and_then(Dim::known), ut.shape.get(a).and_then(Dim::known))
        else {
            return Err(unsupported_label(g, id, "the written axis must have known lengths".into()));
        };
        // (a < rank: normalized above.)
        let shape: Vec<i64> = (0..dt.rank()).map(|i| if i == a { len as i64 } else { 1 }).collect();
        let pos: Vec<i64> = (0..len as i64).collect();
        let p =
            self.constant(&HostTensor::from_i64(shape.iter().map(|&d| d as usize).collect(), &pos), "pos");
        let start = self.op1("Cast", &[xs], vec![attr_i("to", dtype_to_onnx(DType::I64) as i64)]);
        let flat = self.const_i64(&[]);
        let start = self.op1("Reshape", &[&start, &flat], vec![]);
        let src = self.op1("Sub", &[&p, &start], vec![]);
        let (zero, count) = (self.const_i64(&[0]), self.const_i64(&[n as i64]));
        let ge = self.op1("GreaterOrEqual", &[&src, &zero], vec![]);
        let lt = self.op1("Less", &[&src, &count], vec![]);
        let valid = self.op1("And", &[&ge, &lt], vec![]);
        let last = self.const_i64(&[n.saturating_sub(1) as i64]);
        let clamped = self.op1("Clip", &[&src, &zero, &last], vec![]);
        let rows_shape = self.const_i64(&[len as i64]);
        let rows = self.op1("Reshape", &[&clamped, &rows_shape], vec![]);
        let taken = self.op1("Gather", &[xu, &rows], vec![attr_i("axis", a as i64)]);
        self.node("Where", &[&valid, &taken, xd], out, vec![], node.name.as_deref());
        Ok(())
    }

    /// `start + step·i` for `i < len`: a constant when `len` is known, else
    /// `Range(0, len, 1)` scaled and shifted in the element type.
    fn range(
        &mut self,
        g: &Graph,
        id: NodeId,
        start: f64,
        step: f64,
        len: &Dim,
        dtype: DType,
    ) -> Result<Vec<String>, ExportError> {
        if let Some(n) = len.known() {
            let values: Vec<f64> = (0..n).map(|i| start + step * i as f64).collect();
            let base = format!("v{}", id.index());
            return Ok(vec![self.constant(&HostTensor::from_f64(dtype, vec![n], &values), &base)]);
        }
        let l = self.dim_tensor(len, id)?;
        let scalar_shape = self.const_i64(&[]);
        let l = self.op1("Reshape", &[&l, &scalar_shape], vec![]);
        let zero = self.constant(&HostTensor::from_i64(vec![], &[0]), "zero");
        let one = self.constant(&HostTensor::from_i64(vec![], &[1]), "one");
        let r = self.op1("Range", &[&zero, &l, &one], vec![]);
        let r = self.op1("Cast", &[&r], vec![attr_i("to", dtype_to_onnx(dtype) as i64)]);
        let step = self.constant(&HostTensor::scalar(dtype, step), "step");
        let start = self.constant(&HostTensor::scalar(dtype, start), "start");
        let r = self.op1("Mul", &[&r, &step], vec![]);
        let out = self.out_names(g, id);
        self.node("Add", &[&r, &start], &out, vec![], g.node(id).name.as_deref());
        Ok(out)
    }

    fn block(
        &mut self,
        g: &Graph,
        id: NodeId,
        b: &Arc<dyn Block>,
        x: &[&str],
    ) -> Result<Vec<String>, ExportError> {
        let node = g.node(id);
        let types: Vec<&TensorType> = node.operands.iter().map(|v| g.value_type(*v)).collect();
        if let Some(std) = standard::standard_op(&**b, &types) {
            let out = self.out_names(g, id);
            self.node(std.op_type, x, &out, std.attrs, node.name.as_deref());
            return Ok(out);
        }
        let function = self.function(g, id, b, &types)?;
        let out = self.out_names(g, id);
        self.node(&function, x, &out, vec![], node.name.as_deref());
        Ok(out)
    }

    /// The name of the model-local function holding `b`'s fallback for operands of `types`,
    /// made on first use.
    fn function(
        &mut self,
        g: &Graph,
        id: NodeId,
        b: &Arc<dyn Block>,
        types: &[&TensorType],
    ) -> Result<String, ExportError> {
        let key: FunctionKey = (b.clone(), types.iter().map(|t| (*t).clone()).collect());
        if let Some(name) = self.lib.by_key.get(&key) {
            return Ok(name.clone());
        }
        let mut body = Graph::new();
        let inputs: Vec<Value> =
            types.iter().enumerate().map(|(i, t)| body.add_input(&format!("x{i}"), (*t).clone())).collect();
        let outs = b
            .fallback(&mut Builder::new(&mut body), &inputs)
            .map_err(|e| unsupported_label(g, id, format!("its fallback could not be built: {e}")))?;
        for (i, v) in outs.iter().enumerate() {
            body.add_output(&format!("y{i}"), *v);
        }
        let mut e = Emitter::new(&mut *self.lib, true);
        e.reserve_interface(&body)?;
        e.emit_graph(&body)?;
        for (name, v) in body.outputs() {
            let src = e.name_of(&body, v)?;
            e.node("Identity", &[&src], std::slice::from_ref(name), vec![], None);
        }
        let nodes = std::mem::take(&mut e.nodes);
        let name = format!("{}_{}", b.kind(), self.lib.functions.len());
        self.lib.functions.push(FunctionProto {
            name: Some(name.clone()),
            domain: Some(FUNCTION_DOMAIN.into()),
            input: (0..types.len()).map(|i| format!("x{i}")).collect(),
            output: (0..outs.len()).map(|i| format!("y{i}")).collect(),
            node: nodes,
            opset_import: vec![
                OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) },
                OperatorSetIdProto { domain: Some(FUNCTION_DOMAIN.into()), version: Some(1) },
            ],
            doc_string: Some(format!("fallback of block.{} {}", b.kind(), b.attrs())),
            ..FunctionProto::default()
        });
        self.lib.by_key.insert(key, name.clone());
        Ok(name)
    }
}

fn single_symbol(d: &Dim) -> Option<Arc<str>> {
    let mut syms = d.symbols();
    let s = syms.next()?;
    (syms.next().is_none() && d.is_symbol(s)).then(|| s.clone())
}

fn unsupported(node: NodeId, reason: String) -> ExportError {
    ExportError::Unsupported { node: blockfuse_ir::NodeLabel { id: node, name: None }, reason }
}

/// The type of node `id`'s first output (a graph input's type).
fn first_type(g: &Graph, id: NodeId) -> Result<&TensorType, ExportError> {
    g.node(id).types.first().ok_or_else(|| unsupported_label(g, id, "the node has no output".into()))
}

fn unsupported_label(g: &Graph, node: NodeId, reason: String) -> ExportError {
    ExportError::Unsupported { node: g.label(node), reason }
}

pub(super) fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..AttributeProto::default()
    }
}

pub(super) fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..AttributeProto::default()
    }
}

fn attr_ints(name: &str, v: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v,
        ..AttributeProto::default()
    }
}

fn value_info(name: &str, ty: &TensorType) -> ValueInfoProto {
    let dim = ty
        .shape
        .iter()
        .map(|d| Dimension {
            value: Some(match d.known() {
                Some(n) => dimension::Value::DimValue(n as i64),
                None => dimension::Value::DimParam(d.to_string()),
            }),
            denotation: None,
        })
        .collect();
    let tensor = type_proto::Tensor {
        elem_type: Some(dtype_to_onnx(ty.dtype)),
        shape: Some(TensorShapeProto { dim }),
    };
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), denotation: None }),
        ..ValueInfoProto::default()
    }
}

fn unary_name(u: UnaryOp) -> &'static str {
    use UnaryOp::*;
    match u {
        Neg => "Neg",
        Abs => "Abs",
        Sqrt => "Sqrt",
        Reciprocal => "Reciprocal",
        Exp => "Exp",
        Log => "Log",
        Erf => "Erf",
        Tanh => "Tanh",
        Sigmoid => "Sigmoid",
        Sin => "Sin",
        Cos => "Cos",
        Relu => "Relu",
        Floor => "Floor",
        Ceil => "Ceil",
        Not => "Not",
        IsNan => "IsNaN",
        // Emitted as two ops by the caller.
        Rsqrt | Square => unreachable!("rsqrt and square are expanded"),
    }
}

fn binary_name(b: BinaryOp) -> &'static str {
    use BinaryOp::*;
    match b {
        Add => "Add",
        Sub => "Sub",
        Mul => "Mul",
        Div => "Div",
        Pow => "Pow",
        Max => "Max",
        Min => "Min",
        Mod => "Mod",
        Equal => "Equal",
        Less => "Less",
        LessEqual => "LessOrEqual",
        Greater => "Greater",
        GreaterEqual => "GreaterOrEqual",
        And => "And",
        Or => "Or",
        Xor => "Xor",
    }
}

fn reduce_name(r: ReduceOp) -> &'static str {
    match r {
        ReduceOp::Sum => "ReduceSum",
        ReduceOp::Mean => "ReduceMean",
        ReduceOp::Max => "ReduceMax",
        ReduceOp::Min => "ReduceMin",
        ReduceOp::Prod => "ReduceProd",
    }
}
