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
mod ops;
pub mod options;
#[cfg(test)]
mod regressions;

pub use options::ImportOptions;

use crate::error::OnnxError;
use crate::proto::{tensor_shape_proto, type_proto, ModelProto, NodeProto, ValueInfoProto};
use crate::tensor::{dtype_from_onnx, tensor_from_proto};
use blockfuse_ir::{
    BinaryOp, Bound, DType, Dim, Graph, HostTensor, IrError, Op, SliceSpec, TensorType, Value,
};
use known::{Known, SymInt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// Reads, inlines and imports an ONNX model file, with the default [`ImportOptions`].
pub fn import_file(path: &Path) -> Result<Graph, OnnxError> {
    import_file_with(path, &ImportOptions::default())
}

/// Reads, inlines and imports an ONNX model file under the limits of `opts`.
pub fn import_file_with(path: &Path, opts: &ImportOptions) -> Result<Graph, OnnxError> {
    let mut model = crate::load_model(path)?;
    crate::inline_functions(&mut model)?;
    import_model_in(&model, path.parent().unwrap_or(Path::new(".")), opts)
}

/// [`import_model_with`] for a model of directory `dir`: tensors with external data are
/// read from files there, memory-mapped and not copied (see [`crate::external`]).
pub fn import_model_in(model: &ModelProto, dir: &Path, opts: &ImportOptions) -> Result<Graph, OnnxError> {
    let has_external = model
        .graph
        .as_ref()
        .is_some_and(|g| g.initializer.iter().any(crate::external::is_external) || has_external_constant(g));
    let external = if has_external { Some(crate::external::ExternalData::new(dir)?) } else { None };
    import(model, opts, external)
}

fn has_external_constant(g: &crate::proto::GraphProto) -> bool {
    g.node.iter().any(|n| n.attribute.iter().any(|a| a.t.as_ref().is_some_and(crate::external::is_external)))
}

/// Imports a model (whose model-local functions are already inlined, see
/// [`inline_functions`](crate::inline_functions)) into an IR graph, with the default
/// [`ImportOptions`].
///
/// Graph inputs keep their names and order (initializers are not inputs), outputs their
/// names; IR nodes are named after the ONNX node they come from. Every unsupported op is
/// reported at once ([`OnnxError::UnsupportedOps`]).
pub fn import_model(model: &ModelProto) -> Result<Graph, OnnxError> {
    import_model_with(model, &ImportOptions::default())
}

/// [`import_model`] under the limits of `opts`: a tensor over
/// [`max_tensor_bytes`](ImportOptions::max_tensor_bytes), or constants over
/// [`max_constant_bytes`](ImportOptions::max_constant_bytes) together, give
/// [`OnnxError::ResourceLimit`] before anything is allocated.
pub fn import_model_with(model: &ModelProto, opts: &ImportOptions) -> Result<Graph, OnnxError> {
    import(model, opts, None)
}

fn import(
    model: &ModelProto,
    opts: &ImportOptions,
    external: Option<crate::external::ExternalData>,
) -> Result<Graph, OnnxError> {
    let graph = model.graph.as_ref().ok_or(OnnxError::MissingGraph { what: "model".into() })?;
    check_supported(&graph.node)?;
    let mut imp = Importer {
        used: graph
            .node
            .iter()
            .flat_map(|n| n.input.iter().cloned())
            .chain(graph.output.iter().map(|o| o.name().to_string()))
            .collect(),
        opts: *opts,
        external,
        ..Importer::default()
    };
    let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name()).collect();
    for t in &graph.initializer {
        imp.cur = (t.name().to_string(), "initializer".into());
        if let Some(v) = imp.int4_tensor(t, t.name())? {
            imp.set(t.name(), Entry::Ir(v));
            continue;
        }
        let host = imp.decode_tensor(t)?;
        imp.set_tensor(t.name(), host);
    }
    for vi in &graph.input {
        if inits.contains(vi.name()) {
            continue;
        }
        let ty = imp.input_type(vi)?;
        imp.cur = (vi.name().to_string(), "input".into());
        imp.check_type_bytes(&ty, "the graph input")?;
        let v = imp.g.add_input(vi.name(), ty);
        imp.vals.insert(vi.name().to_string(), Entry::Ir(v));
    }
    for n in &graph.node {
        imp.cur = (n.label(), n.op_type().to_string());
        imp.node(n)?;
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            let ins = n.input.iter().filter(|i| !i.is_empty()).cloned().collect();
            imp.producers.insert(o.clone(), (imp.cur.0.clone(), imp.cur.1.clone(), ins));
        }
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
pub const SUPPORTED: &[&str] = &ops::names::<{ ops::OPS.len() }>(ops::OPS);

/// The op types of the `com.microsoft` domain (ONNX Runtime's contrib ops) the importer
/// claims; every other op of that domain is refused like an unknown op.
pub const SUPPORTED_MICROSOFT: &[&str] = &ops::names::<{ ops::MICROSOFT_OPS.len() }>(ops::MICROSOFT_OPS);

/// The domain of ONNX Runtime's contrib ops.
pub const MICROSOFT_DOMAIN: &str = "com.microsoft";

/// Whether `op_type` (of the default ONNX domain) is in [`SUPPORTED`].
pub fn is_supported(op_type: &str) -> bool {
    SUPPORTED.contains(&op_type)
}

fn check_supported(nodes: &[NodeProto]) -> Result<(), OnnxError> {
    let mut bad: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in nodes {
        let default_domain = crate::model::is_default_domain(n.domain());
        let claimed = if default_domain {
            is_supported(n.op_type())
        } else {
            n.domain() == MICROSOFT_DOMAIN && SUPPORTED_MICROSOFT.contains(&n.op_type())
        };
        if !claimed || n.has_subgraph() {
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

/// What the op modules (`ops/*.rs`) use: the importer core and the IR.
// Not every op module uses every item.
#[allow(unused_imports)]
mod prelude {
    pub(super) use super::known::{self, Known, SymInt};
    pub(super) use super::{attr_f, attr_i, attr_ints, attr_s, dims_of, inp, Entry, Importer, R};
    pub(super) use crate::error::OnnxError;
    pub(super) use crate::proto::NodeProto;
    pub(super) use crate::tensor::dtype_from_onnx;
    pub(super) use blockfuse_ir::blocks::{Gelu, GeluKind, LayerNorm, MaskKind, RmsNorm, Sdpa};
    pub(super) use blockfuse_ir::infer::slice_len;
    pub(super) use blockfuse_ir::shape::normalize_axis;
    pub(super) use blockfuse_ir::{
        BinaryOp, Bound, DType, Dim, HostTensor, Op, ReduceOp, SliceSpec, TensorType, UnaryOp, Value,
    };
    pub(super) use std::sync::Arc;
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
    opts: ImportOptions,
    /// The reader of external data (when the model has some and its directory is known).
    external: Option<crate::external::ExternalData>,
    /// Bytes of the constants decoded or computed so far (checked against
    /// `opts.max_constant_bytes`).
    const_bytes: u64,
    g: Graph,
    vals: HashMap<String, Entry>,
    /// IR values made for `Known`/`Tensor` entries.
    made: HashMap<String, Value>,
    used: HashSet<String>,
    /// Value name → (node label, op type, input names) of the node that made it, to explain
    /// where a data-dependent shape comes from.
    producers: HashMap<String, (String, String, Vec<String>)>,
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
                Some(tensor_shape_proto::dimension::Value::DimValue(v)) => {
                    Dim::Known(usize::try_from(*v).map_err(|_| bad(&format!("negative dim_value {v}")))?)
                }
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
                 must be constants or Shape computations): {}",
                self.chain(name)
            ))
        })
    }

    /// Where a value that is not known at import time comes from: the chain of producing
    /// nodes, following at each step the first operand that is not known, back to a graph
    /// input or the op that made it data-dependent.
    fn chain(&self, name: &str) -> String {
        let mut parts = vec![];
        let mut cur = name.to_string();
        for _ in 0..12 {
            let Some((label, op, ins)) = self.producers.get(&cur) else {
                let input = matches!(self.vals.get(cur.as_str()), Some(Entry::Ir(_)));
                let what = if input { "graph input" } else { "value" };
                parts.push(format!("{what} '{cur}'"));
                break;
            };
            parts.push(format!("{op} '{label}'"));
            let next = ins.iter().find(|i| matches!(self.vals.get(i.as_str()), Some(Entry::Ir(_))));
            match next {
                Some(i) if op != "Shape" && op != "Size" => cur = i.clone(),
                _ => {
                    parts.push("(computed at run time)".into());
                    break;
                }
            }
        }
        format!("it comes from {}", parts.join(" ← "))
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
        for t in self.g.node(id).types.clone() {
            self.check_type_bytes(&t, "an output")?;
        }
        let n = self.g.node(id).types.len();
        Ok((0..n).map(|i| Value { node: id, output: i as u16 }).collect())
    }

    fn emit_multi(&mut self, op: Op, args: &[Value]) -> R<Vec<Value>> {
        let name = self.cur.0.clone();
        self.add_named(op, args, name)
    }

    fn emit(&mut self, op: Op, args: &[Value]) -> R<Value> {
        let vs = self.emit_multi(op, args)?;
        self.first(&vs)
    }

    /// [`Self::add_named`] of an op with one output (the first, when it has several).
    fn add_named1(&mut self, op: Op, args: &[Value], name: String) -> R<Value> {
        let vs = self.add_named(op, args, name)?;
        self.first(&vs)
    }

    /// The first of the values an op made: an error naming the node for an op that made none.
    fn first(&self, vs: &[Value]) -> R<Value> {
        vs.first().copied().ok_or_else(|| self.err("the op has no output"))
    }

    /// `xs[i]`, or an error naming the node: an operand's rank or size is not what the
    /// converter's earlier checks assumed (the error a malformed model gets instead of a panic).
    fn at<T: Clone>(&self, xs: &[T], i: usize) -> R<T> {
        xs.get(i).cloned().ok_or_else(|| self.out_of_range(i, xs.len()))
    }

    /// `&mut xs[i]`, or the error of [`Self::at`].
    fn at_mut<'a, T>(&self, xs: &'a mut [T], i: usize) -> R<&'a mut T> {
        let len = xs.len();
        xs.get_mut(i).ok_or_else(|| self.out_of_range(i, len))
    }

    /// `&xs[range]`, or an error naming the node (see [`Self::at`]).
    fn part<'a, T, I>(&self, xs: &'a [T], range: I) -> R<&'a [T]>
    where
        I: std::slice::SliceIndex<[T], Output = [T]> + std::fmt::Debug + Clone,
    {
        let len = xs.len();
        xs.get(range.clone()).ok_or_else(|| {
            self.err(format!("range {range:?} is out of bounds of a list of {len} (rank or size mismatch)"))
        })
    }

    /// The inverse of permutation `perm` (`inv[perm[i]] = i`), an error when it is not one.
    fn inverse_perm(&self, perm: &[usize]) -> R<Vec<usize>> {
        let mut inv = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            *self.at_mut(&mut inv, p)? = i;
        }
        Ok(inv)
    }

    /// The one value of `vs`, or their concatenation along `axis`.
    fn concat_or_one(&mut self, vs: Vec<Value>, axis: i64) -> R<Value> {
        match vs.as_slice() {
            [one] => Ok(*one),
            _ => self.emit(Op::Concat { axis }, &vs),
        }
    }

    fn out_of_range(&self, i: usize, len: usize) -> OnnxError {
        self.err(format!("index {i} is out of bounds of a list of {len} (rank or size mismatch)"))
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
            Entry::Tensor(t) => self.add_named1(Op::Constant(t.clone()), &[], name.to_string())?,
            Entry::Known(k) => {
                if let Some(t) = k.to_tensor() {
                    return self.add_named1(Op::Constant(t), &[], name.to_string());
                }
                let dims: Option<Vec<Dim>> = k.vals.iter().map(SymInt::to_dim).collect();
                let dims = dims.ok_or_else(|| {
                    self.err(format!(
                        "value '{name}' mixes negative constants and symbolic dims ({}); it has no IR form",
                        k.vals.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
                    ))
                })?;
                let mut v = self.add_named1(Op::SymConst(dims), &[], name.to_string())?;
                if k.dims.len() != 1 {
                    let shape = k.dims.iter().map(|&d| Dim::Known(d)).collect();
                    v = self.add_named1(Op::Reshape { shape }, &[v], name.to_string())?;
                }
                if k.dtype != DType::I64 {
                    v = self.add_named1(Op::Cast(k.dtype), &[v], name.to_string())?;
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

    /// The name of output `i`, which the op requires.
    fn out_name(&self, n: &NodeProto, i: usize) -> R<String> {
        n.output
            .get(i)
            .filter(|s| !s.is_empty())
            .cloned()
            .ok_or_else(|| self.err(format!("missing output {i} (the node has {} outputs)", n.output.len())))
    }

    /// Binds output `i` (which the op requires) to an entry.
    fn set_out(&mut self, n: &NodeProto, i: usize, e: Entry) -> R<()> {
        let name = self.out_name(n, i)?;
        self.set(&name, e);
        Ok(())
    }

    /// Binds output `i` (which the op requires) to a known value.
    fn set_out_known(&mut self, n: &NodeProto, i: usize, k: Known) -> R<()> {
        self.set_out(n, i, Entry::Known(k))
    }

    /// Binds output `i` (which the op requires) to a constant tensor, counting its bytes.
    fn set_out_tensor(&mut self, n: &NodeProto, i: usize, t: HostTensor) -> R<()> {
        let name = self.out_name(n, i)?;
        self.set_tensor(&name, t);
        Ok(())
    }

    fn limit_err(&self, what: String, bytes: u64, limit: u64, option: &'static str) -> OnnxError {
        OnnxError::ResourceLimit {
            node: self.cur.0.clone(),
            op_type: self.cur.1.clone(),
            what,
            bytes,
            limit,
            option,
        }
    }

    /// Errors when a value of type `t` (all dims known) would be over `max_tensor_bytes`.
    fn check_type_bytes(&self, t: &TensorType, what: &str) -> R<()> {
        let Some(dims) = t.shape.iter().map(Dim::known).collect::<Option<Vec<usize>>>() else {
            return Ok(());
        };
        let bytes = options::bytes_of(dims, t.dtype.size_bytes());
        if bytes > self.opts.max_tensor_bytes {
            return Err(self.limit_err(
                format!("{what} of type {t}"),
                bytes,
                self.opts.max_tensor_bytes,
                "max_tensor_bytes",
            ));
        }
        Ok(())
    }

    /// Reserves `bytes` of constant memory, before they are allocated.
    fn reserve_const(&mut self, what: String, dims: &[usize], dtype: DType) -> R<()> {
        let bytes = options::bytes_of(dims.iter().copied(), dtype.size_bytes());
        if bytes > self.opts.max_tensor_bytes {
            return Err(self.limit_err(what, bytes, self.opts.max_tensor_bytes, "max_tensor_bytes"));
        }
        let total = self.const_bytes.saturating_add(bytes);
        if total > self.opts.max_constant_bytes {
            let what = format!("{what} (with the {} bytes of constants before it)", self.const_bytes);
            return Err(self.limit_err(what, total, self.opts.max_constant_bytes, "max_constant_bytes"));
        }
        self.const_bytes = total;
        Ok(())
    }

    /// Decodes an initializer or `Constant` value, checking its declared size against the
    /// limits first.
    fn decode_tensor(&mut self, t: &crate::proto::TensorProto) -> R<HostTensor> {
        let dtype = dtype_from_onnx(t.data_type())
            .ok_or(OnnxError::UnsupportedDtype { tensor: t.name().to_string(), data_type: t.data_type() })?;
        let dims: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<_, _>>()
            .map_err(|_| OnnxError::malformed(t.name(), format!("negative dim in {:?}", t.dims)))?;
        let what = format!("tensor '{}' of type {dtype}{dims:?}", t.name());
        if let (true, Some(ext)) = (crate::external::is_external(t), self.external.as_mut()) {
            // Mapped, not copied: only the single-tensor limit applies.
            let bytes = options::bytes_of(dims.iter().copied(), dtype.size_bytes());
            if bytes > self.opts.max_tensor_bytes {
                return Err(self.limit_err(what, bytes, self.opts.max_tensor_bytes, "max_tensor_bytes"));
            }
            return ext.tensor(t);
        }
        self.reserve_const(what, &dims, dtype)?;
        tensor_from_proto(t)
    }

    /// An `INT4`/`UINT4` tensor (ONNX data types 22 and 21), when `t` is one: its packed bytes
    /// as a `u8` constant (borrowed, not copied, like any initializer: `raw_data`, external
    /// data or `int32_data` hold one packed byte per element) read through the
    /// [`Int4`](blockfuse_ir::blocks::Int4) block. Both nodes are named `name`.
    fn int4_tensor(&mut self, t: &crate::proto::TensorProto, name: &str) -> R<Option<Value>> {
        use crate::proto::tensor_proto::DataType;
        let signed = match DataType::try_from(t.data_type()) {
            Ok(DataType::Int4) => true,
            Ok(DataType::Uint4) => false,
            _ => return Ok(None),
        };
        let dims: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<_, _>>()
            .map_err(|_| OnnxError::malformed(t.name(), format!("negative dim in {:?}", t.dims)))?;
        let block = blockfuse_ir::blocks::Int4::new(signed, dims);
        let bytes = block.packed_len().map_err(|e| OnnxError::malformed(t.name(), e))?;
        let mut packed = t.clone();
        packed.data_type = Some(DataType::Uint8 as i32);
        packed.dims = vec![bytes as i64];
        let host = self.decode_tensor(&packed)?;
        let c = self.add_named1(Op::Constant(host), &[], name.to_string())?;
        Ok(Some(self.add_named1(Op::Block(std::sync::Arc::new(block)), &[c], name.to_string())?))
    }

    /// A non-negative integer attribute (default when absent).
    fn attr_usize(&self, n: &NodeProto, name: &str, default: usize) -> R<usize> {
        match n.attr(name).and_then(|a| a.as_int()) {
            None => Ok(default),
            Some(v) => usize::try_from(v).map_err(|_| self.bad_attr(n, name, format!("{v} is negative"))),
        }
    }

    /// An attribute naming an ONNX element type.
    fn attr_dtype(&self, n: &NodeProto, name: &str, default: i64) -> R<DType> {
        let v = attr_i(n, name, default);
        let to =
            i32::try_from(v).map_err(|_| self.bad_attr(n, name, format!("{v} is not an element type")))?;
        dtype_from_onnx(to)
            .ok_or_else(|| OnnxError::UnsupportedDtype { tensor: self.out_label(n), data_type: to })
    }

    /// A name for errors about node `n`'s output: its first output, or the node's label.
    fn out_label(&self, n: &NodeProto) -> String {
        n.output.first().cloned().unwrap_or_else(|| self.cur.0.clone())
    }

    fn bad_attr(&self, _n: &NodeProto, name: &str, reason: String) -> OnnxError {
        OnnxError::BadAttribute {
            node: self.cur.0.clone(),
            op_type: self.cur.1.clone(),
            attribute: name.to_string(),
            reason,
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

    /// Imports one node through its converter in [`ops::OPS`].
    fn node(&mut self, n: &NodeProto) -> R<()> {
        let convert = if crate::model::is_default_domain(n.domain()) {
            ops::converter(n.op_type())
        } else {
            ops::microsoft_converter(n.op_type()).filter(|_| n.domain() == MICROSOFT_DOMAIN)
        };
        let convert = convert.ok_or_else(|| self.err(format!("unsupported op {}", n.op_type())))?;
        convert(self, n)
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
}

fn sanitize(p: &str) -> String {
    let s: String = p.chars().map(|c| if c.is_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_alphabetic() || c == '_') {
        s
    } else {
        format!("d_{s}")
    }
}
