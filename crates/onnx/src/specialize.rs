//! Specialization on the values of shape inputs: binding graph inputs to constant values
//! before import.
//!
//! blockfuse imports static (or symbolic) shapes; an operand that decides a shape — the
//! `axes` of a reduction, the `pads` of `Pad`, the `k` of `TopK`, the target of `Reshape` —
//! must be known at import time. When a model takes such an operand as a graph input (ONNX's
//! conformance tests do, and some exporters), a plain import refuses it ("… is not computable
//! at import time", [`OnnxError::uncomputable_operand`]). [`Model`] keeps the model and,
//! given the values of its inputs, imports a graph specialized on the values of just those
//! inputs that feed such operands ([`Model::import_with_values`], cached per value; or
//! [`import_file_with_values`] once), the way TensorRT takes shape-tensor values in an
//! optimization profile. The specialized graph is only valid for those values; its graph
//! inputs are the others. [`bind_inputs`] is the step underneath: it turns named graph inputs
//! into initializers.

use crate::error::OnnxError;
use crate::import::ImportOptions;
use crate::proto::ModelProto;
use crate::tensor::{dtype_from_onnx, dtype_to_onnx, tensor_to_proto};
use blockfuse_ir::{DType, Graph, HostTensor};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How many specialized graphs a [`Model`] keeps (the oldest is dropped first).
pub const CACHE_CAPACITY: usize = 16;

/// A graph imported from a [`Model`], and the graph inputs it is specialized on.
#[derive(Debug, Clone)]
pub struct Specialized {
    /// The imported graph. Its graph inputs are the model's inputs less [`bound`](Self::bound).
    pub graph: Arc<Graph>,
    /// The graph inputs bound to their given values (in the order they were found to be
    /// needed); empty when the model imports without specialization.
    pub bound: Vec<String>,
}

/// The identity of a bound value: name, dtype, dims and bytes.
type ValueKey = (String, DType, Vec<usize>, Vec<u8>);

/// An ONNX model (its functions inlined) that imports plainly or, when its shapes depend on
/// the values of some inputs, specialized on those values.
///
/// ```no_run
/// use blockfuse_ir::HostTensor;
/// let model = blockfuse_onnx::specialize::Model::open("reshape.onnx".as_ref())?;
/// let values = vec![
///     ("data".to_string(), HostTensor::from_f32(vec![2, 3], &[0.0; 6])),
///     ("shape".to_string(), HostTensor::from_i64(vec![2], &[3, 2])),
/// ];
/// let s = model.import_with_values(&values)?;
/// println!("specialized on {:?}; inputs left: {}", s.bound, s.graph.inputs().len());
/// # Ok::<(), blockfuse_onnx::OnnxError>(())
/// ```
pub struct Model {
    proto: ModelProto,
    dir: PathBuf,
    opts: ImportOptions,
    /// The inputs the last specialization had to bind (`None` before the first).
    needs: Mutex<Option<Vec<String>>>,
    /// Specialized graphs by the values they are bound to, oldest first.
    cache: Mutex<Vec<(Vec<ValueKey>, Specialized)>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("dir", &self.dir).field("inputs", &self.input_names()).finish()
    }
}

impl Model {
    /// Reads a model file and inlines its functions (default [`ImportOptions`]).
    pub fn open(path: &Path) -> Result<Model, OnnxError> {
        Model::open_with(path, &ImportOptions::default())
    }

    /// [`Model::open`] with the import limits of `opts`.
    pub fn open_with(path: &Path, opts: &ImportOptions) -> Result<Model, OnnxError> {
        let proto = crate::load_model(path)?;
        Model::from_proto(proto, path.parent().unwrap_or(Path::new(".")), opts)
    }

    /// A model from a decoded proto; `dir` is where its external data lives.
    pub fn from_proto(mut proto: ModelProto, dir: &Path, opts: &ImportOptions) -> Result<Model, OnnxError> {
        crate::inline_functions(&mut proto)?;
        Ok(Model {
            proto,
            dir: dir.to_path_buf(),
            opts: *opts,
            needs: Mutex::new(None),
            cache: Mutex::new(Vec::new()),
        })
    }

    /// The model (functions inlined).
    pub fn proto(&self) -> &ModelProto {
        &self.proto
    }

    /// The names of the graph inputs that are not initializers, in order: what
    /// [`import_with_values`](Self::import_with_values) takes values for.
    pub fn input_names(&self) -> Vec<String> {
        self.inputs().into_iter().map(|(n, _)| n).collect()
    }

    /// The graph inputs that are not initializers with their declared dtype (`None` when
    /// undeclared or without a blockfuse dtype), in order.
    pub fn inputs(&self) -> Vec<(String, Option<DType>)> {
        let Some(g) = self.proto.graph.as_ref() else { return vec![] };
        let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
        g.input
            .iter()
            .filter(|vi| !inits.contains(vi.name()))
            .map(|vi| (vi.name().to_string(), declared_type(vi).and_then(|t| dtype_from_onnx(t.elem_type()))))
            .collect()
    }

    /// The plain import (no input bound).
    pub fn import(&self) -> Result<Graph, OnnxError> {
        crate::import::import_model_in(&self.proto, &self.dir, &self.opts)
    }

    /// The graph for inputs with these values (`(graph input name, value)`; values for
    /// inputs that the model does not need bound are ignored): the plain import when it
    /// succeeds, otherwise the import with every input that a shape operand is computed from
    /// bound to its value, one refusal at a time, until the import succeeds. Cached per
    /// value of the bound inputs (up to [`CACHE_CAPACITY`] graphs).
    ///
    /// Errors: [`OnnxError::NeedsInputValues`] when a needed input has no value in `values`;
    /// the import's own error when a refusal is not about a shape input or binding does not
    /// help; [`bind_inputs`]'s error for a value of the wrong dtype or rank.
    pub fn import_with_values(&self, values: &[(String, HostTensor)]) -> Result<Specialized, OnnxError> {
        let needs = lock(&self.needs).clone();
        if let Some(needs) = &needs {
            if let Some(key) = value_key(needs, values) {
                if let Some((_, hit)) = lock(&self.cache).iter().find(|(k, _)| *k == key) {
                    return Ok(hit.clone());
                }
            }
        }
        let mut proto = self.proto.clone();
        let mut bound: Vec<String> = vec![];
        let graph = loop {
            let e = match crate::import::import_model_in(&proto, &self.dir, &self.opts) {
                Ok(g) => break g,
                Err(e) => e,
            };
            let Some(operand) = e.uncomputable_operand() else { return Err(e) };
            let names: Vec<String> =
                shape_inputs_feeding(&proto, &operand).into_iter().filter(|n| !bound.contains(n)).collect();
            if names.is_empty() {
                return Err(e);
            }
            let missing: Vec<String> =
                names.iter().filter(|n| !values.iter().any(|(m, _)| m == *n)).cloned().collect();
            if !missing.is_empty() {
                return Err(OnnxError::NeedsInputValues { inputs: missing, source: Box::new(e) });
            }
            for name in names {
                let value = values.iter().find(|(m, _)| *m == name).map(|(_, v)| v.clone());
                if let Some(value) = value {
                    bind_inputs(&mut proto, &[(name.clone(), value)])?;
                    bound.push(name);
                }
            }
        };
        let s = Specialized { graph: Arc::new(graph), bound };
        if let Some(key) = value_key(&s.bound, values) {
            let mut cache = lock(&self.cache);
            if cache.len() >= CACHE_CAPACITY {
                cache.remove(0);
            }
            cache.push((key, s.clone()));
        }
        *lock(&self.needs) = Some(s.bound.clone());
        Ok(s)
    }

    /// How many specialized graphs are cached.
    pub fn cached(&self) -> usize {
        lock(&self.cache).len()
    }
}

/// Reads, inlines and imports a model file specialized on the values of the inputs its
/// shapes depend on (see [`Model::import_with_values`]).
pub fn import_file_with_values(
    path: &Path,
    values: &[(String, HostTensor)],
) -> Result<Specialized, OnnxError> {
    Model::open(path)?.import_with_values(values)
}

/// A poisoned lock still holds a usable cache (entries are inserted whole).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The key of the values of `names`, or `None` when one has no value.
fn value_key(names: &[String], values: &[(String, HostTensor)]) -> Option<Vec<ValueKey>> {
    names
        .iter()
        .map(|n| {
            let (_, v) = values.iter().find(|(m, _)| m == n)?;
            Some((n.clone(), v.dtype(), v.dims().to_vec(), v.bytes().to_vec()))
        })
        .collect()
}

fn declared_type(vi: &crate::proto::ValueInfoProto) -> Option<&crate::proto::type_proto::Tensor> {
    match vi.r#type.as_ref()?.value.as_ref()? {
        crate::proto::type_proto::Value::TensorType(tt) => Some(tt),
        _ => None,
    }
}

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
        if let Some(tt) = graph.input.get(pos).and_then(declared_type) {
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
    feeding(model, name, false)
}

/// [`inputs_feeding`], but not through the data operand of `Shape` and `Size` (only the
/// shape of that operand matters, and the importer knows it), unless that finds no input:
/// the inputs whose *values* decide `name`.
pub fn shape_inputs_feeding(model: &ModelProto, name: &str) -> Vec<String> {
    let narrow = feeding(model, name, true);
    if narrow.is_empty() {
        feeding(model, name, false)
    } else {
        narrow
    }
}

fn feeding(model: &ModelProto, name: &str, stop_at_shape: bool) -> Vec<String> {
    let Some(graph) = model.graph.as_ref() else { return vec![] };
    let producer: HashMap<&str, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let mut seen = HashSet::new();
    let mut stack = vec![name.to_string()];
    while let Some(v) = stack.pop() {
        if !seen.insert(v.clone()) {
            continue;
        }
        let Some(node) = producer.get(v.as_str()).and_then(|&i| graph.node.get(i)) else { continue };
        if stop_at_shape && matches!(node.op_type(), "Shape" | "Size") {
            continue;
        }
        stack.extend(node.input.iter().filter(|s| !s.is_empty()).cloned());
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
    use crate::build::{self, opset, value_info_fixed as vi};
    use crate::proto::tensor_proto::DataType;
    use crate::proto::{GraphProto, NodeProto};

    /// A node named `<op>_<output>`.
    fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
        build::node(op, &format!("{op}_{output}"), inputs, &[output])
    }

    /// An IR 10, opset 21 model of `graph`.
    fn model(graph: GraphProto, options: &ImportOptions) -> Model {
        let proto = build::model(10, vec![opset("", 21)], graph);
        Model::from_proto(proto, Path::new("."), options).unwrap()
    }

    /// `y = Reshape(data, Add(Shape(data), delta))`: the target depends on the value of
    /// `delta` and on the shape (not the values) of `data`.
    fn reshape_model() -> Model {
        let graph = GraphProto {
            node: vec![
                node("Shape", &["data"], "s"),
                node("Add", &["s", "delta"], "target"),
                node("Reshape", &["data", "target"], "y"),
            ],
            input: vec![vi("data", DataType::Float, &[2, 3]), vi("delta", DataType::Int64, &[2])],
            output: vec![vi("y", DataType::Float, &[])],
            ..Default::default()
        };
        model(graph, &ImportOptions::unlimited())
    }

    fn values(delta: [i64; 2]) -> Vec<(String, HostTensor)> {
        vec![
            ("data".into(), HostTensor::from_f32(vec![2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
            ("delta".into(), HostTensor::from_i64(vec![2], &delta)),
        ]
    }

    #[test]
    fn names_in_refusals() {
        let r = "axes 'axes' is not computable at import time (a data-dependent shape)";
        assert_eq!(uncomputable_value(r).as_deref(), Some("axes"));
        assert_eq!(uncomputable_value("something else"), None);
    }

    #[test]
    fn plain_import_names_the_operand() {
        let m = reshape_model();
        let e = m.import().unwrap_err();
        assert_eq!(e.uncomputable_operand().as_deref(), Some("target"), "{e}");
        assert_eq!(m.input_names(), ["data", "delta"]);
        assert_eq!(m.inputs()[1].1, Some(DType::I64));
    }

    #[test]
    fn binds_only_the_inputs_whose_values_decide_the_shape() {
        assert_eq!(shape_inputs_feeding(reshape_model().proto(), "target"), ["delta"]);
        assert_eq!(inputs_feeding(reshape_model().proto(), "target"), ["data", "delta"]);
    }

    #[test]
    fn specializes_and_caches_per_value() {
        let m = reshape_model();
        let a = m.import_with_values(&values([1, -1])).unwrap();
        assert_eq!(a.bound, ["delta"]);
        assert_eq!(a.graph.inputs().len(), 1);
        let (_, out) = &a.graph.outputs()[0];
        assert_eq!(a.graph.value_type(*out).known_dims(), Some(vec![3, 2]));
        // The same values: the cached graph.
        let again = m.import_with_values(&values([1, -1])).unwrap();
        assert!(Arc::ptr_eq(&a.graph, &again.graph));
        assert_eq!(m.cached(), 1);
        // Other values: another graph.
        let b = m.import_with_values(&values([4, -2])).unwrap();
        let (_, out) = &b.graph.outputs()[0];
        assert_eq!(b.graph.value_type(*out).known_dims(), Some(vec![6, 1]));
        assert_eq!(m.cached(), 2);
    }

    #[test]
    fn a_missing_value_is_named() {
        let m = reshape_model();
        let e = m.import_with_values(&values([1, -1])[..1]).unwrap_err();
        match &e {
            OnnxError::NeedsInputValues { inputs, .. } => assert_eq!(inputs, &["delta"]),
            other => panic!("{other}"),
        }
        assert!(e.to_string().starts_with("the graph's shapes depend on the values of inputs delta"), "{e}");
        // A value of the wrong dtype.
        let mut v = values([1, -1]);
        v[1].1 = HostTensor::from_f32(vec![2], &[1.0, -1.0]);
        let e = m.import_with_values(&v).unwrap_err();
        assert!(e.to_string().contains("bound to a f32 value, but declared as INT64"), "{e}");
    }

    #[test]
    fn a_plain_model_binds_nothing() {
        let graph = GraphProto {
            node: vec![node("Neg", &["x"], "y")],
            input: vec![vi("x", DataType::Float, &[2])],
            output: vec![vi("y", DataType::Float, &[])],
            ..Default::default()
        };
        let m = model(graph, &ImportOptions::default());
        let s = m.import_with_values(&[]).unwrap();
        assert!(s.bound.is_empty());
        assert_eq!(s.graph.inputs().len(), 1);
    }
}
