//! The versioned JSON format (`{"format": "blockfuse-ir", "version": 1, ...}`); see
//! `docs/ir-format.md`. Constants are inline (base64 of little-endian bytes), or, written
//! with [`to_json_with_side_file`] / [`write_json_file`], the large ones in a side file of raw
//! bytes next to the document (`"data_file"`, and `"data_ref"` per constant).
//!
//! The reader takes untrusted input: no `unwrap`, `expect` or indexing that could panic here
//! (the lints below), and [`ReadLimits`] bound what a document may make it allocate.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::attrs::{decode_op, op_attrs, OpDecodeError};
use crate::block::BlockRegistry;
use crate::blocks::global_registry;
use crate::dtype::DType;
use crate::error::{IrError, NodeLabel};
use crate::graph::{Graph, NodeId, Value};
use crate::limits::{bytes_of, type_bytes, Limits};
use crate::op::Op;
use crate::shape::{Dim, TensorType};
use crate::tensor::HostTensor;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use std::path::{Component, Path};
use std::sync::Arc;

/// Offsets of constants in a side file are multiples of this.
pub const SIDE_FILE_ALIGN: usize = 64;

/// The `format` field of every document.
pub const FORMAT: &str = "blockfuse-ir";
/// The version this build writes and reads.
pub const VERSION: u64 = 1;

/// A blockfuse IR document (`docs/ir-format.md`).
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "blockfuse-ir document, version 1")]
struct Doc {
    /// Always `"blockfuse-ir"`.
    format: String,
    /// The format version; this build reads and writes 1.
    version: u64,
    /// The side file holding the bytes of large constants (a file name, in the directory of
    /// the document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data_file: Option<String>,
    /// The nodes; operands refer to earlier or later nodes by id (any order is read).
    nodes: Vec<RawNode>,
    /// The graph outputs, in order.
    outputs: Vec<RawOutput>,
}

/// Where a constant's bytes are in the side file.
#[derive(Serialize, Deserialize, Clone, Copy, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct DataRef {
    /// Byte offset in the side file.
    offset: u64,
    /// Byte length.
    length: u64,
}

/// One node: an op, its attributes, its operands and (optionally) its output types.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawNode {
    /// The node id: unique in the document; errors and near-misses name nodes by it.
    id: u64,
    /// The op: `input`, `constant`, a primitive op (`mul`, `reduce_mean`, ...) or
    /// `block.<kind>` (`block.rms_norm`; attributes per block in docs/blocks.md). There is no
    /// 4-bit dtype: a tensor of 4-bit integers is a `u8` constant of its packed bytes (two a
    /// byte, low nibble first) read by a `block.int4` node (docs/ir-format.md, "4-bit integers").
    op: String,
    /// A frontend name, kept through rewrites where a value is reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// The op's attributes (docs/ir-format.md lists them per op). In `reshape`'s `shape`,
    /// one `-1` stands for the rest of the elements.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    attrs: Map<String, Json>,
    /// Operands: `"<id>"` (output 0) or `"<id>:<output>"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    args: Vec<String>,
    /// Output types: required for inputs, optional elsewhere (checked against inference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Vec<TypeSchema>>")]
    types: Option<Vec<TensorType>>,
    /// Constant payload: base64 of the little-endian bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    /// Constant payload in the side file, instead of `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data_ref: Option<DataRef>,
}

/// A named graph output.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    /// The output's name.
    name: String,
    /// The value: `"<id>"` or `"<id>:<output>"`.
    value: String,
}

/// A tensor type, as the schema describes [`TensorType`]'s JSON form.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
struct TypeSchema {
    /// The element type.
    dtype: DTypeSchema,
    /// One dim per axis, outermost first.
    shape: Vec<DimSchema>,
}

/// An element type (the names of [`DType`]).
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum DTypeSchema {
    F32,
    F16,
    Bf16,
    F64,
    I64,
    I32,
    I8,
    U8,
    Bool,
}

/// A dim: a size, or a symbolic dim: a product such as `"seq"`, `"2*seq"`, `"batch*seq"`, or a
/// sum of such products and sizes, `"past_seq+seq"`, `"seq+1"`.
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum DimSchema {
    Known(u64),
    Sym(String),
}

/// The JSON Schema of the document format, generated from the reader's own types
/// (committed as `docs/ir-schema.json`).
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Doc);
    // A `Schema` is a JSON value: serializing it cannot fail.
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}

/// Writes a graph as JSON (nodes in topological order, under their node ids). Errors on a
/// cycle or on an operand or output naming a missing value.
pub fn to_json(g: &Graph) -> Result<String, IrError> {
    write_doc(g, None)
}

/// Writes a graph as JSON with the bytes of every constant of at least `threshold` bytes in a
/// side file called `side_name` (a plain file name, resolved in the document's directory when
/// read): returns the document and the side file's bytes (each constant at an offset that is
/// a multiple of [`SIDE_FILE_ALIGN`]). Smaller constants stay inline.
pub fn to_json_with_side_file(
    g: &Graph,
    side_name: &str,
    threshold: usize,
) -> Result<(String, Vec<u8>), IrError> {
    plain_file_name(side_name)?;
    let mut side = Vec::new();
    let text = write_doc(g, Some((side_name, threshold, &mut side)))?;
    Ok((text, side))
}

/// Writes `g` to `path` as JSON, with constants of at least `threshold` bytes in the side file
/// `<file name>.data` beside it (none when no constant is that large).
pub fn write_json_file(g: &Graph, path: &Path, threshold: usize) -> Result<(), IrError> {
    let io = |p: &Path, e: std::io::Error| IrError::Format(format!("cannot write {}: {e}", p.display()));
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| IrError::Format(format!("{} has no file name", path.display())))?;
    let side_name = format!("{file_name}.data");
    let (text, side) = to_json_with_side_file(g, &side_name, threshold)?;
    if side.is_empty() {
        return std::fs::write(path, text).map_err(|e| io(path, e));
    }
    let side_path = path.with_file_name(&side_name);
    std::fs::write(&side_path, side).map_err(|e| io(&side_path, e))?;
    std::fs::write(path, text).map_err(|e| io(path, e))
}

/// Reads a JSON graph file, and its side file when it has one (read once; the constants
/// borrow their bytes from it), under the default [`Limits`].
pub fn read_json_file(path: &Path) -> Result<Graph, IrError> {
    read_json_file_limited(path, &Limits::default())
}

/// [`read_json_file`] under `limits`: a side file larger than
/// [`max_constant_bytes`](Limits::max_constant_bytes) is refused before it is read.
pub fn read_json_file_limited(path: &Path, limits: &Limits) -> Result<Graph, IrError> {
    let io = |p: &Path, e: std::io::Error| IrError::Format(format!("cannot read {}: {e}", p.display()));
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    let head: Json = serde_json::from_str(&text).map_err(|e| IrError::Json(located(&e, "")))?;
    let side = match head.get("data_file").and_then(Json::as_str) {
        Some(name) => {
            plain_file_name(name)?;
            let p = path.with_file_name(name);
            let len = std::fs::metadata(&p).map_err(|e| io(&p, e))?.len();
            if len > limits.max_constant_bytes {
                return Err(IrError::ResourceLimit {
                    node: "data_file".into(),
                    what: format!("the side file \"{name}\""),
                    bytes: len,
                    limit: limits.max_constant_bytes,
                    option: "max_constant_bytes".into(),
                });
            }
            let bytes = std::fs::read(&p).map_err(|e| io(&p, e))?;
            Some(Arc::new(bytes) as crate::tensor::SharedBuffer)
        }
        None => None,
    };
    read_doc(&text, head, &global_registry(), side, limits)
}

/// A side file is named by a plain file name: no directories, no `..`, not absolute.
fn plain_file_name(name: &str) -> Result<(), IrError> {
    let mut comps = Path::new(name).components();
    match (comps.next(), comps.next()) {
        (Some(Component::Normal(_)), None) => Ok(()),
        _ => Err(IrError::Format(format!(
            "data_file \"{name}\" must be a plain file name in the document's directory"
        ))),
    }
}

fn write_doc(g: &Graph, mut side: Option<(&str, usize, &mut Vec<u8>)>) -> Result<String, IrError> {
    let order = g.topo_order()?;
    g.check_references()?;
    // Node ids are written as they are: the reader keeps them, so `%N` means the same node
    // in the document, in the dump of the graph read back, and in errors and near-misses.
    let value_ref = |v: &Value| {
        if v.output == 0 {
            v.node.index().to_string()
        } else {
            format!("{}:{}", v.node.index(), v.output)
        }
    };
    // Inputs first, in graph order, so that reading keeps their order.
    let inputs = g.inputs().iter().copied();
    let rest = order.iter().copied().filter(|id| !matches!(g.node(*id).op, Op::Input));
    let mut nodes = Vec::with_capacity(order.len());
    for id in inputs.chain(rest) {
        let node = g.node(id);
        let mut data = None;
        let mut data_ref = None;
        if let Some(t) = node.op.as_constant() {
            match side.as_mut() {
                Some((_, threshold, buf)) if t.bytes().len() >= *threshold && !t.bytes().is_empty() => {
                    buf.resize(buf.len().div_ceil(SIDE_FILE_ALIGN) * SIDE_FILE_ALIGN, 0);
                    data_ref = Some(DataRef { offset: buf.len() as u64, length: t.bytes().len() as u64 });
                    buf.extend_from_slice(t.bytes());
                }
                _ => data = Some(base64::engine::general_purpose::STANDARD.encode(t.bytes())),
            }
        }
        nodes.push(RawNode {
            id: id.index() as u64,
            op: node.op.name(),
            name: node.name.clone(),
            attrs: op_attrs(&node.op),
            args: node.operands.iter().map(value_ref).collect(),
            types: Some(node.types.to_vec()),
            data,
            data_ref,
        });
    }
    let outputs =
        g.outputs().iter().map(|(name, v)| RawOutput { name: name.clone(), value: value_ref(v) }).collect();
    let data_file = side.filter(|(_, _, buf)| !buf.is_empty()).map(|(name, _, _)| name.to_string());
    let doc = Doc { format: FORMAT.into(), version: VERSION, data_file, nodes, outputs };
    serde_json::to_string_pretty(&doc).map_err(|e| IrError::Json(e.to_string()))
}

/// Reads a graph from JSON with the process-wide block registry.
pub fn from_json(text: &str) -> Result<Graph, IrError> {
    from_json_with(text, &global_registry())
}

/// Reads a graph from JSON, decoding blocks with `registry`, under the default [`Limits`].
pub fn from_json_with(text: &str, registry: &BlockRegistry) -> Result<Graph, IrError> {
    from_json_limited(text, registry, &Limits::default())
}

/// Reads a graph from JSON under `limits`: a constant, or a value whose dims are all known,
/// over [`max_tensor_bytes`](Limits::max_tensor_bytes), or the constants together over
/// [`max_constant_bytes`](Limits::max_constant_bytes), give [`IrError::ResourceLimit`]
/// naming the node, before the bytes are decoded.
pub fn from_json_limited(text: &str, registry: &BlockRegistry, limits: &Limits) -> Result<Graph, IrError> {
    let head: Json = serde_json::from_str(text).map_err(|e| IrError::Json(located(&e, "")))?;
    read_doc(text, head, registry, None, limits)
}

fn read_doc(
    text: &str,
    head: Json,
    registry: &BlockRegistry,
    side: Option<crate::tensor::SharedBuffer>,
    limits: &Limits,
) -> Result<Graph, IrError> {
    match head.get("format").and_then(Json::as_str) {
        Some(FORMAT) => {}
        Some(other) => return Err(IrError::Format(format!("format is \"{other}\", expected \"{FORMAT}\""))),
        None => return Err(IrError::Format(format!("no \"format\": \"{FORMAT}\" field"))),
    }
    match head.get("version").and_then(Json::as_u64) {
        Some(VERSION) => {}
        Some(v) => {
            return Err(IrError::Format(format!(
                "version {v} is not supported (this build reads version {VERSION})"
            )))
        }
        None => return Err(IrError::Format("no numeric \"version\" field".into())),
    }
    // From the text, not from `head`, so that structure errors keep their line and column.
    let doc: Doc =
        serde_json::from_str(text).map_err(|e| IrError::Json(located(&e, &failing_node(&head))))?;
    if let (Some(name), None) = (&doc.data_file, &side) {
        return Err(IrError::Format(format!(
            "the large constants are in the side file \"{name}\": read the document with json::read_json_file"
        )));
    }
    Reader {
        registry,
        doc: &doc,
        side,
        limits: *limits,
        constant_bytes: 0,
        index: HashMap::new(),
        made: HashMap::new(),
        graph: Graph::new(),
    }
    .read()
}

/// `line L, column C[, node N "name"]: reason` for a serde_json error.
fn located(e: &serde_json::Error, node: &str) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let reason = text.strip_suffix(&suffix).unwrap_or(&text);
    format!("line {}, column {}{node}: {reason}", e.line(), e.column())
}

/// `, node N "name"` for the first node of the document that does not have the node
/// structure (empty when every node has it, e.g. when the error is in `outputs`).
fn failing_node(head: &Json) -> String {
    let nodes = head.get("nodes").and_then(Json::as_array).map_or(&[][..], |v| &v[..]);
    let Some(bad) = nodes.iter().find(|n| serde_json::from_value::<RawNode>((*n).clone()).is_err()) else {
        return String::new();
    };
    let id = bad.get("id").map_or_else(|| "without an id".to_string(), |v| v.to_string());
    match bad.get("name").and_then(Json::as_str) {
        Some(name) => format!(", node {id} \"{name}\""),
        None => format!(", node {id}"),
    }
}

/// Resolves numpy's `-1` ("whatever is left") in a reshape's `shape` from the operand's
/// element count; other negative entries, or a `-1` that does not divide out, are errors.
fn resolve_reshape(attrs: &Map<String, Json>, input: &TensorType) -> Result<Map<String, Json>, String> {
    let Some(Json::Array(shape)) = attrs.get("shape") else {
        return Ok(attrs.clone());
    };
    let negative: Vec<(usize, i64)> =
        shape.iter().enumerate().filter_map(|(i, v)| Some((i, v.as_i64().filter(|n| *n < 0)?))).collect();
    let at = match negative[..] {
        [] => return Ok(attrs.clone()),
        [(at, -1)] => at,
        [(_, n)] => {
            return Err(format!("reshape: shape entry {n} is negative (only -1, \"the rest\", is allowed)"))
        }
        _ => return Err(format!("reshape: shape {} has more than one -1", Json::Array(shape.clone()))),
    };
    let mut rest = Dim::Known(1);
    for (i, v) in shape.iter().enumerate().filter(|(i, _)| *i != at) {
        let d: Dim =
            serde_json::from_value(v.clone()).map_err(|e| format!("reshape: shape entry {i}: {e}"))?;
        rest = rest.mul(&d);
    }
    let numel = input.numel();
    let inferred = numel.div_exact(&rest).ok_or_else(|| {
        format!("reshape: cannot resolve the -1 in shape {}: {input} has {numel} elements, not a multiple of {rest}", Json::Array(shape.clone()))
    })?;
    let mut shape = shape.clone();
    if let Some(entry) = shape.get_mut(at) {
        *entry = serde_json::to_value(&inferred).map_err(|e| e.to_string())?;
    }
    let mut attrs = attrs.clone();
    attrs.insert("shape".into(), Json::Array(shape));
    Ok(attrs)
}

/// A document keeps its node ids when its largest id is below this many ids per node
/// (plus this many): every id up to the largest takes a slot in the graph.
pub const KEPT_ID_SLACK: usize = 16;

struct Reader<'a> {
    registry: &'a BlockRegistry,
    doc: &'a Doc,
    side: Option<crate::tensor::SharedBuffer>,
    limits: Limits,
    /// Bytes of the inline constants read so far.
    constant_bytes: u64,
    index: HashMap<u64, usize>,
    made: HashMap<u64, NodeId>,
    graph: Graph,
}

fn doc_label(n: &RawNode) -> String {
    match &n.name {
        Some(name) => format!("{} \"{name}\"", n.id),
        None => n.id.to_string(),
    }
}

fn parse_ref(s: &str) -> Option<(u64, u16)> {
    match s.split_once(':') {
        Some((n, o)) => Some((n.parse().ok()?, o.parse().ok()?)),
        None => Some((s.parse().ok()?, 0)),
    }
}

impl Reader<'_> {
    fn read(mut self) -> Result<Graph, IrError> {
        for (i, n) in self.doc.nodes.iter().enumerate() {
            // Node ids are 32-bit: a larger one would be named wrongly in messages.
            if u32::try_from(n.id).is_err() {
                return Err(IrError::BadNode {
                    node: doc_label(n),
                    reason: format!("node id {} is too large (ids are below 2^32)", n.id),
                });
            }
            if self.index.insert(n.id, i).is_some() {
                return Err(IrError::BadNode {
                    node: doc_label(n),
                    reason: format!("duplicate node id {}", n.id),
                });
            }
        }
        for n in &self.doc.nodes {
            for (k, a) in n.args.iter().enumerate() {
                let (target, _) = parse_ref(a).ok_or_else(|| IrError::BadNode {
                    node: doc_label(n),
                    reason: format!(
                        "operand {k} '{a}' is not a value reference (\"<id>\" or \"<id>:<output>\")"
                    ),
                })?;
                if !self.index.contains_key(&target) {
                    return Err(IrError::DanglingValue {
                        node: self.label_of(n),
                        operand: k,
                        target: format!("node {target}"),
                    });
                }
            }
        }
        // Depth-first creation in dependency order; a grey node met again closes a cycle.
        // Inputs go first, in document order: the graph's input order is positional (backends
        // take inputs in that order), so it must not depend on where inputs are first used.
        let mut state = vec![0u8; self.doc.nodes.len()];
        let nodes = self.doc.nodes.iter().enumerate();
        let inputs: Vec<usize> = nodes.filter(|(_, n)| n.op == "input").map(|(i, _)| i).collect();
        for i in inputs.into_iter().chain(0..self.doc.nodes.len()) {
            self.visit(i, &mut state)?;
        }
        for o in &self.doc.outputs {
            let v = parse_ref(&o.value)
                .and_then(|(id, out)| Some(Value { node: *self.made.get(&id)?, output: out }))
                .filter(|v| self.graph.value_exists(*v))
                .ok_or_else(|| IrError::DanglingOutput { name: o.name.clone(), target: o.value.clone() })?;
            self.graph.add_output(&o.name, v);
        }
        Ok(self.keep_document_ids())
    }

    /// The graph with the document's ids as node ids, so that `%N` in a dump, an error or a
    /// near-miss names the node the document calls `N`. Ids much sparser than the nodes
    /// (more than [`KEPT_ID_SLACK`] vacant ids per node, as in a hostile `"id": 1e18`) would
    /// make the graph allocate a slot per id: such documents are renumbered in creation order.
    fn keep_document_ids(self) -> Graph {
        let mut document_id = vec![0usize; self.graph.node_bound()];
        for (&doc_id, &id) in &self.made {
            if let (Some(slot), Ok(doc_id)) = (document_id.get_mut(id.index()), usize::try_from(doc_id)) {
                *slot = doc_id;
            }
        }
        let max_id = self.made.keys().copied().max().unwrap_or(0);
        let bound = usize::try_from(max_id).ok().and_then(|m| m.checked_add(1));
        let roomy = self.made.len().saturating_mul(KEPT_ID_SLACK).saturating_add(KEPT_ID_SLACK);
        match bound.filter(|&b| b <= roomy && u32::try_from(b).is_ok()) {
            Some(bound) => {
                let renumbered = self
                    .graph
                    .renumbered(bound, |id| document_id.get(id.index()).copied().unwrap_or(usize::MAX));
                renumbered.unwrap_or(self.graph)
            }
            None => self.graph,
        }
    }

    fn label_of(&self, n: &RawNode) -> NodeLabel {
        NodeLabel { id: NodeId::new(n.id as usize), name: n.name.clone() }
    }

    fn visit(&mut self, i: usize, state: &mut [u8]) -> Result<(), IrError> {
        // Iterative DFS: deep graphs (thousands of layers) must not overflow the stack.
        // `state` has one entry per node, and `read` checked that every operand parses and
        // names a node of the document: the lookups below cannot fail.
        let doc = self.doc;
        let mut stack = vec![(i, 0usize)];
        while let Some((j, k)) = stack.pop() {
            let (Some(n), Some(&sj)) = (doc.nodes.get(j), state.get(j)) else { continue };
            if k == 0 {
                match sj {
                    2 => continue,
                    1 => return Err(IrError::Cycle { node: self.label_of(n) }),
                    _ => set(state, j, 1),
                }
            }
            if let Some(a) = n.args.get(k) {
                stack.push((j, k + 1));
                let Some(t) = parse_ref(a).and_then(|(target, _)| self.index.get(&target).copied()) else {
                    continue;
                };
                match state.get(t) {
                    Some(1) => return Err(IrError::Cycle { node: self.label_of(n) }),
                    Some(0) => stack.push((t, 0)),
                    _ => {}
                }
                continue;
            }
            self.create(n)?;
            set(state, j, 2);
        }
        Ok(())
    }

    fn create(&mut self, n: &RawNode) -> Result<(), IrError> {
        let bad = |reason: String| IrError::BadNode { node: doc_label(n), reason };
        if matches!(n.op.as_str(), "input" | "constant") && !n.args.is_empty() {
            // Their args would otherwise be dropped silently.
            return Err(IrError::OperandCount {
                node: self.label_of(n),
                op: n.op.clone(),
                expected: "0".into(),
                found: n.args.len(),
            });
        }
        if (n.data.is_some() || n.data_ref.is_some()) && n.op != "constant" {
            return Err(bad("only constants carry \"data\"".into()));
        }
        let id = match n.op.as_str() {
            "input" => {
                no_other_attrs(n, &[]).map_err(bad)?;
                let ty = match n.types.as_deref() {
                    Some([t]) => t.clone(),
                    _ => return Err(bad("an input needs \"types\" with exactly one type".into())),
                };
                self.graph.add_input(n.name.as_deref().unwrap_or(""), ty).node
            }
            "constant" => {
                no_other_attrs(n, &["dims", "dtype"]).map_err(bad)?;
                let dtype: DType = attr(n, "dtype").map_err(bad)?;
                let dims: Vec<usize> = attr(n, "dims").map_err(bad)?;
                let need = bytes_of(dims.iter().copied(), dtype.size_bytes());
                let over = |what: String, bytes: u64, limit: u64, option: &str| IrError::ResourceLimit {
                    node: doc_label(n),
                    what,
                    bytes,
                    limit,
                    option: option.into(),
                };
                if need > self.limits.max_tensor_bytes {
                    let what = format!("constant {dtype}{dims:?}");
                    return Err(over(what, need, self.limits.max_tensor_bytes, "max_tensor_bytes"));
                }
                let t = match (n.data.as_deref(), n.data_ref, &self.side) {
                    (Some(data), None, _) => {
                        self.constant_bytes = self.constant_bytes.saturating_add(need);
                        if self.constant_bytes > self.limits.max_constant_bytes {
                            let (what, bytes) = ("the constants together".to_string(), self.constant_bytes);
                            return Err(over(
                                what,
                                bytes,
                                self.limits.max_constant_bytes,
                                "max_constant_bytes",
                            ));
                        }
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(data)
                            .map_err(|e| bad(format!("constant data is not base64: {e}")))?;
                        HostTensor::from_bytes(dtype, dims, bytes).map_err(|e| bad(e.to_string()))?
                    }
                    (None, Some(r), Some(side)) => {
                        let need = dims.iter().try_fold(dtype.size_bytes(), |a, &d| a.checked_mul(d));
                        if need.map(|b| b as u64) != Some(r.length) {
                            return Err(bad(format!(
                                "data_ref length {} does not match {dtype}{dims:?}",
                                r.length
                            )));
                        }
                        let offset = usize::try_from(r.offset)
                            .map_err(|_| bad("data_ref offset is too large".into()))?;
                        HostTensor::from_shared(dtype, dims, side.clone(), offset)
                            .map_err(|e| bad(format!("data_ref: {e}")))?
                    }
                    (None, Some(_), None) => return Err(bad("a data_ref without a data_file".into())),
                    (None, None, _) => return Err(bad("a constant needs \"data\" (base64)".into())),
                    (Some(_), Some(_), _) => {
                        return Err(bad("a constant has both \"data\" and \"data_ref\"".into()))
                    }
                };
                self.add(n, Op::Constant(t), vec![])?
            }
            name => {
                let args = n
                    .args
                    .iter()
                    .enumerate()
                    .map(|(k, a)| {
                        // `visit` created every operand's node before this one.
                        parse_ref(a)
                            .and_then(|(id, out)| Some(Value { node: *self.made.get(&id)?, output: out }))
                            .ok_or_else(|| IrError::DanglingValue {
                                node: self.label_of(n),
                                operand: k,
                                target: a.clone(),
                            })
                    })
                    .collect::<Result<Vec<Value>, IrError>>()?;
                let resolved;
                let mut attrs = &n.attrs;
                if name == "reshape" {
                    if let Some(&x) = args.first().filter(|v| self.graph.value_exists(**v)) {
                        resolved = resolve_reshape(&n.attrs, self.graph.value_type(x)).map_err(bad)?;
                        attrs = &resolved;
                    }
                }
                let op = decode_op(name, attrs, self.registry).map_err(|e| match e {
                    OpDecodeError::UnknownOp(op) => bad(format!("unknown op '{op}'")),
                    OpDecodeError::BadAttr(r) => bad(r),
                    OpDecodeError::UnknownBlock { kind, known } => {
                        IrError::UnknownBlock { node: doc_label(n), kind, known }
                    }
                })?;
                if !matches!(op, Op::Block(_)) {
                    // A primitive op writes exactly the attributes it reads.
                    let known = op_attrs(&op);
                    let known: Vec<&str> = known.keys().map(String::as_str).collect();
                    no_other_attrs(n, &known).map_err(bad)?;
                }
                self.add(n, op, args)?
            }
        };
        self.made.insert(n.id, id);
        for (k, t) in self.graph.node(id).types.iter().enumerate() {
            match type_bytes(t, &crate::Bindings::new()) {
                Some(bytes) if bytes > self.limits.max_tensor_bytes => {
                    return Err(IrError::ResourceLimit {
                        node: doc_label(n),
                        what: format!("output {k} {t}"),
                        bytes,
                        limit: self.limits.max_tensor_bytes,
                        option: "max_tensor_bytes".into(),
                    })
                }
                _ => {}
            }
        }
        if let Some(declared) = &n.types {
            let node = self.graph.node(id);
            if declared.len() != node.types.len() {
                return Err(bad(format!(
                    "declares {} output types, the op has {}",
                    declared.len(),
                    node.types.len()
                )));
            }
            for (k, (d, t)) in declared.iter().zip(node.types.iter()).enumerate() {
                if d != t {
                    return Err(IrError::TypeDisagrees {
                        node: self.label_of(n),
                        op: n.op.clone(),
                        output: k,
                        declared: d.to_string(),
                        inferred: t.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    fn add(&mut self, n: &RawNode, op: Op, args: Vec<Value>) -> Result<NodeId, IrError> {
        for ((k, v), a) in args.iter().enumerate().zip(&n.args) {
            if !self.graph.value_exists(*v) {
                return Err(IrError::DanglingValue { node: self.label_of(n), operand: k, target: a.clone() });
            }
        }
        let label = self.label_of(n);
        self.graph.add_node(op, &args, n.name.clone()).map_err(|e| relabel(e, label))
    }
}

/// `state[j] = v` (no-op out of range).
fn set(state: &mut [u8], j: usize, v: u8) {
    if let Some(s) = state.get_mut(j) {
        *s = v;
    }
}

/// Rejects attributes outside `known` (a misspelt optional attribute must not be ignored).
fn no_other_attrs(n: &RawNode, known: &[&str]) -> Result<(), String> {
    match n.attrs.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!("unknown attribute '{k}' for {}", n.op)),
        None => Ok(()),
    }
}

fn attr<T: serde::de::DeserializeOwned>(n: &RawNode, key: &str) -> Result<T, String> {
    let v = n.attrs.get(key).ok_or_else(|| format!("missing attribute '{key}'"))?;
    serde_json::from_value(v.clone()).map_err(|e| format!("attribute '{key}': {e}"))
}

/// Puts the document's node label into an error raised while adding that node.
fn relabel(e: IrError, label: NodeLabel) -> IrError {
    match e {
        IrError::Type { op, reason, .. } => IrError::Type { node: label, op, reason },
        IrError::OperandCount { op, expected, found, .. } => {
            IrError::OperandCount { node: label, op, expected, found }
        }
        IrError::Block { reason, .. } => IrError::Block { node: label, reason },
        other => other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn doc(nodes: &str) -> String {
        format!(
            "{{\n  \"format\": \"blockfuse-ir\",\n  \"version\": 1,\n  \"nodes\": [\n{nodes}\n  ],\n  \
             \"outputs\": [{{\"name\": \"y\", \"value\": \"1\"}}]\n}}"
        )
    }

    const X: &str = r#"    {"id": 0, "op": "input", "name": "x", "types": [{"dtype": "f32", "shape": ["batch", "seq", 4]}]},"#;

    fn reshape(shape: &str) -> Result<Graph, IrError> {
        from_json(&doc(&format!("{X}\n    {{\"id\": 1, \"op\": \"reshape\", \"attrs\": {{\"shape\": {shape}}}, \"args\": [\"0\"]}}")))
    }

    #[test]
    fn structure_errors_give_line_column_and_node() {
        let text = doc(&format!(
            "{X}\n    {{\"id\": 1, \"op\": \"neg\", \"name\": \"ln1\", \"args\": [\"0\"], \
             \"types\": [{{\"dtype\": \"float32\", \"shape\": []}}]}}"
        ));
        let e = from_json(&text).unwrap_err().to_string();
        assert!(e.starts_with("malformed JSON: line 6, column "), "{e}");
        assert!(e.contains(", node 1 \"ln1\": unknown variant `float32`"), "{e}");
        assert!(!e.contains(" at line "), "{e}");
        // A syntax error has a location too.
        let e = from_json("{\n  \"format\": \"blockfuse-ir\",\n  oops\n}").unwrap_err().to_string();
        assert!(e.starts_with("malformed JSON: line 3, column 3: "), "{e}");
    }

    #[test]
    fn committed_schema_is_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ir-schema.json");
        let generated = json_schema();
        if std::env::var_os("BLOCKFUSE_UPDATE_SCHEMA").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(committed == generated, "docs/ir-schema.json is stale: rerun with BLOCKFUSE_UPDATE_SCHEMA=1");
        // Every dtype name is in the schema's list.
        let schema: Json = serde_json::from_str(&generated).unwrap();
        let names = schema.pointer("/$defs/DTypeSchema/enum").and_then(Json::as_array).unwrap();
        assert_eq!(names.len(), DType::ALL.len());
        for d in DType::ALL {
            assert!(names.contains(&serde_json::to_value(d).unwrap()), "{d}");
        }
    }

    #[test]
    fn numpy_minus_one_in_reshape_is_resolved() {
        let g = reshape(r#"["batch", -1]"#).unwrap();
        let y = g.outputs()[0].1;
        assert_eq!(g.value_type(y).to_string(), "f32[batch, 4*seq]");
        let g = reshape(r#"[-1, 2]"#).unwrap();
        assert_eq!(g.value_type(g.outputs()[0].1).to_string(), "f32[2*batch*seq, 2]");
        // Written back with the dim it stands for.
        assert!(to_json(&g).unwrap().contains("\"2*batch*seq\""));
    }

    #[test]
    fn bad_minus_ones_are_clear_errors() {
        let e = reshape("[-1, -1]").unwrap_err().to_string();
        assert_eq!(e, "node 1: reshape: shape [-1,-1] has more than one -1");
        let e = reshape(r#"["batch", -2]"#).unwrap_err().to_string();
        assert!(e.contains("shape entry -2 is negative"), "{e}");
        let e = reshape(r#"[3, "seq", -1]"#).unwrap_err().to_string();
        assert!(e.contains("cannot resolve the -1 in shape [3,\"seq\",-1]"), "{e}");
        assert!(e.contains("f32[batch, seq, 4] has 4*batch*seq elements, not a multiple of 3*seq"), "{e}");
    }
}
