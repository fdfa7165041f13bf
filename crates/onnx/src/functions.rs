//! Inlining of model-local functions (`ModelProto.functions`).
//!
//! Exporters such as the PyTorch dynamo exporter (with its optimizer off) wrap parts of a
//! model in `FunctionProto`s and call them from the main graph with nodes whose
//! `(domain, op_type)` names the function. [`inline_functions`] replaces every such call in
//! the main graph by the function's body:
//! - formal inputs and outputs are bound to the call's actual values (an input the call
//!   leaves out, or gives as `""`, becomes `""`, i.e. a missing optional input; an output the
//!   call leaves out becomes an internal value);
//! - every other value of the body is renamed `<prefix>/<name>`, where the prefix is the
//!   call node's name (or `<op_type>_<n>` for an unnamed call), with a numeric suffix when
//!   that name is taken, so that names stay unique in the graph;
//! - inlined nodes are named `<prefix>/<inner node name>`, so messages can point at both;
//! - attribute references (`AttributeProto.ref_attr_name`) take the call's attribute value,
//!   else the function's default (`FunctionProto.attribute_proto`), else the attribute is
//!   dropped (absent), as the ONNX spec says;
//! - calls inside function bodies are inlined too, recursively (a recursive call chain is
//!   an error).
//!
//! Graph-valued attributes (`If`, `Loop`, `Scan` bodies) inside an inlined body keep their
//! local names; the outer values they capture and the attribute references they contain
//! are substituted like the rest of the body. Calls inside the main graph's own subgraphs
//! are not inlined: the importer rejects such control flow anyway.

use crate::error::OnnxError;
use crate::model::{find_opset, is_default_domain};
use crate::proto::{
    AttributeProto, FunctionProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, ValueInfoProto,
};
use std::collections::{HashMap, HashSet};

/// What [`inline_functions`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InlineStats {
    /// Calls replaced by a function body, nested calls included.
    pub calls_inlined: usize,
    /// Deepest nesting of calls met (1 when functions call no functions, 0 without calls).
    pub max_depth: usize,
    /// Nodes of the main graph before inlining.
    pub nodes_before: usize,
    /// Nodes of the main graph after inlining.
    pub nodes_after: usize,
    /// Functions removed from `ModelProto.functions` because nothing calls them any more.
    pub functions_removed: usize,
}

/// Identifies a function: `(domain, name, overload)`, with the default domain as `""`.
type FnKey = (String, String, String);

fn function_key(f: &FunctionProto) -> FnKey {
    (norm_domain(f.domain()), f.name().to_string(), f.overload().to_string())
}

fn call_key(n: &NodeProto) -> FnKey {
    (norm_domain(n.domain()), n.op_type().to_string(), n.overload().to_string())
}

fn norm_domain(d: &str) -> String {
    if is_default_domain(d) {
        String::new()
    } else {
        d.to_string()
    }
}

fn key_label(k: &FnKey) -> String {
    let mut s = if k.0.is_empty() { k.1.clone() } else { format!("{}:{}", k.0, k.1) };
    if !k.2.is_empty() {
        s.push_str(&format!(" (overload {})", k.2));
    }
    s
}

/// Number of nodes of the main graph (not its subgraphs) that call a model-local function.
pub fn local_function_calls(model: &ModelProto) -> usize {
    let keys: HashSet<FnKey> = model.functions.iter().map(function_key).collect();
    model.graph.iter().flat_map(|g| &g.node).filter(|n| keys.contains(&call_key(n))).count()
}

/// Replaces every call of a model-local function in the main graph by the function's body
/// (see the [module docs](self)), then removes the functions nothing calls any more.
///
/// Opsets that inlined functions import and the model lacks are added to
/// `model.opset_import`; a function importing another version of an opset the model
/// imports is an error, as are a recursive call chain, a call with more inputs or outputs
/// than the function declares, and an attribute reference to an attribute the function
/// does not declare. On error the model is left unchanged.
pub fn inline_functions(model: &mut ModelProto) -> Result<InlineStats, OnnxError> {
    let Some(graph) = model.graph.as_ref() else {
        return Err(OnnxError::MissingGraph { what: "model".into() });
    };
    let mut stats = InlineStats {
        nodes_before: graph.node.len(),
        nodes_after: graph.node.len(),
        ..InlineStats::default()
    };
    if model.functions.is_empty() {
        return Ok(stats);
    }
    let functions: HashMap<FnKey, &FunctionProto> =
        model.functions.iter().map(|f| (function_key(f), f)).collect();
    if !graph.node.iter().any(|n| functions.contains_key(&call_key(n))) {
        return Ok(stats);
    }

    let mut names = HashSet::new();
    collect_graph_names(graph, &mut names);
    let mut inliner = Inliner {
        functions: &functions,
        model_opsets: &model.opset_import,
        names,
        prefixes: HashSet::new(),
        new_opsets: Vec::new(),
        value_info: Vec::new(),
        stats: &mut stats,
        unnamed_calls: 0,
    };
    let mut nodes = Vec::with_capacity(graph.node.len());
    let mut stack = Vec::new();
    inliner.expand(graph.node.iter().cloned(), &mut stack, &mut nodes)?;
    let new_opsets = std::mem::take(&mut inliner.new_opsets);
    let value_info = std::mem::take(&mut inliner.value_info);

    // Keep the functions still called from somewhere (subgraphs of the main graph, or
    // functions that are kept), transitively.
    let mut called = HashSet::new();
    collect_calls(&nodes, &functions, &mut called);
    let mut work: Vec<FnKey> = called.iter().cloned().collect();
    while let Some(k) = work.pop() {
        let mut inner = HashSet::new();
        // (`called` holds keys of `functions` only: see `collect_calls`.)
        if let Some(f) = functions.get(&k) {
            collect_calls(&f.node, &functions, &mut inner);
        }
        for k in inner {
            if called.insert(k.clone()) {
                work.push(k);
            }
        }
    }

    // Nothing above has modified the model: commit now.
    let graph = model.graph.as_mut().ok_or_else(|| OnnxError::MissingGraph { what: "model".into() })?;
    graph.node = nodes;
    graph.value_info.extend(value_info);
    stats.nodes_after = graph.node.len();
    let before = model.functions.len();
    model.functions.retain(|f| called.contains(&function_key(f)));
    stats.functions_removed = before - model.functions.len();
    model.opset_import.extend(new_opsets);
    Ok(stats)
}

/// Adds the keys of the functions that `nodes` (and their subgraphs) call.
fn collect_calls(nodes: &[NodeProto], functions: &HashMap<FnKey, &FunctionProto>, out: &mut HashSet<FnKey>) {
    for n in nodes {
        let k = call_key(n);
        if functions.contains_key(&k) {
            out.insert(k);
        }
        for a in &n.attribute {
            for g in a.g.iter().chain(&a.graphs) {
                collect_calls(&g.node, functions, out);
            }
        }
    }
}

/// Adds every value name of `g` and its subgraphs.
fn collect_graph_names(g: &GraphProto, names: &mut HashSet<String>) {
    let vi = g.input.iter().chain(&g.output).chain(&g.value_info);
    names.extend(vi.map(|v| v.name().to_string()));
    names.extend(g.initializer.iter().map(|t| t.name().to_string()));
    names.extend(g.sparse_initializer.iter().filter_map(|s| s.values.as_ref()).map(|t| t.name().to_string()));
    for n in &g.node {
        names.extend(n.input.iter().chain(&n.output).cloned());
        for a in &n.attribute {
            for sub in a.g.iter().chain(&a.graphs) {
                collect_graph_names(sub, names);
            }
        }
    }
}

struct Inliner<'a> {
    functions: &'a HashMap<FnKey, &'a FunctionProto>,
    model_opsets: &'a [OperatorSetIdProto],
    /// Every value name in use in the graph, inlined values included.
    names: HashSet<String>,
    /// Prefixes given out so far.
    prefixes: HashSet<String>,
    /// Opsets to add to the model.
    new_opsets: Vec<OperatorSetIdProto>,
    /// Renamed `value_info` of inlined functions.
    value_info: Vec<ValueInfoProto>,
    stats: &'a mut InlineStats,
    unnamed_calls: usize,
}

impl Inliner<'_> {
    /// Appends `nodes` to `out`, replacing calls by their (recursively expanded) bodies.
    /// `stack` holds the functions being expanded, outermost first.
    fn expand(
        &mut self,
        nodes: impl IntoIterator<Item = NodeProto>,
        stack: &mut Vec<FnKey>,
        out: &mut Vec<NodeProto>,
    ) -> Result<(), OnnxError> {
        for node in nodes {
            let key = call_key(&node);
            let Some(&function) = self.functions.get(&key) else {
                out.push(node);
                continue;
            };
            if stack.contains(&key) {
                let chain: Vec<String> = stack.iter().chain([&key]).map(key_label).collect();
                return Err(call_error(&node, &key, format!("recursive call chain {}", chain.join(" -> "))));
            }
            let body = self.instantiate(&node, &key, function)?;
            stack.push(key);
            self.stats.calls_inlined += 1;
            self.stats.max_depth = self.stats.max_depth.max(stack.len());
            self.expand(body, stack, out)?;
            stack.pop();
        }
        Ok(())
    }

    /// The body of `f` for the call `call`: values renamed and bound, attribute references
    /// resolved, nodes renamed. Calls in the body are left for [`Inliner::expand`].
    fn instantiate(
        &mut self,
        call: &NodeProto,
        key: &FnKey,
        f: &FunctionProto,
    ) -> Result<Vec<NodeProto>, OnnxError> {
        if call.input.len() > f.input.len() {
            let reason =
                format!("{} inputs given, but the function takes {}", call.input.len(), f.input.len());
            return Err(call_error(call, key, reason));
        }
        if call.output.len() > f.output.len() {
            let reason =
                format!("{} outputs given, but the function has {}", call.output.len(), f.output.len());
            return Err(call_error(call, key, reason));
        }
        self.check_opsets(call, key, f)?;

        let prefix = self.prefix(call);
        let mut scope = Scope { prefix: &prefix, map: HashMap::new(), fresh: HashSet::new() };
        for (i, formal) in f.input.iter().enumerate() {
            let actual = call.input.get(i).cloned().unwrap_or_default();
            scope.map.insert(formal.clone(), actual);
        }
        let mut body = Vec::with_capacity(f.node.len() + 1);
        let inputs: HashSet<&String> = f.input.iter().collect();
        for (i, formal) in f.output.iter().enumerate() {
            let actual = call.output.get(i).filter(|a| !a.is_empty());
            match actual {
                // An output that is one of the inputs: copy it with an Identity.
                Some(actual) if inputs.contains(formal) => {
                    body.push(NodeProto {
                        name: Some(format!("{prefix}/output_{i}")),
                        op_type: Some("Identity".into()),
                        // (Every formal input is in the scope: bound above.)
                        input: vec![scope.map.get(formal).cloned().ok_or_else(|| {
                            call_error(call, key, format!("input '{formal}' is not bound"))
                        })?],
                        output: vec![actual.clone()],
                        ..NodeProto::default()
                    });
                }
                Some(actual) => {
                    scope.map.insert(formal.clone(), actual.clone());
                }
                None => {}
            }
        }

        for (i, inner) in f.node.iter().enumerate() {
            let mut node = inner.clone();
            for v in node.input.iter_mut().chain(node.output.iter_mut()) {
                *v = scope.rename(v, &mut self.names);
            }
            let inner_name = if inner.name().is_empty() {
                format!("{}_{i}", inner.op_type())
            } else {
                inner.name().to_string()
            };
            node.name = Some(format!("{prefix}/{inner_name}"));
            node.attribute = self.resolve_attributes(&node, call, key, f, &mut scope, &[])?;
            body.push(node);
        }
        // Types of internal values; formal ones are the caller's to describe.
        for vi in &f.value_info {
            if let Some(renamed) = scope.map.get(vi.name()).filter(|r| scope.fresh.contains(*r)) {
                let mut vi = vi.clone();
                vi.name = Some(renamed.clone());
                self.value_info.push(vi);
            }
        }
        Ok(body)
    }

    /// The attributes of `node` (a node of `f`'s body, or of a subgraph in it) with
    /// references resolved and captured values of subgraphs renamed. `locals` are the value
    /// names defined by the enclosing subgraphs (empty for a body node).
    fn resolve_attributes(
        &mut self,
        node: &NodeProto,
        call: &NodeProto,
        key: &FnKey,
        f: &FunctionProto,
        scope: &mut Scope<'_>,
        locals: &[HashSet<String>],
    ) -> Result<Vec<AttributeProto>, OnnxError> {
        let mut out = Vec::with_capacity(node.attribute.len());
        for a in &node.attribute {
            if a.ref_attr_name().is_empty() {
                // The body's own value: its subgraphs capture values of the body.
                let mut a = a.clone();
                if let Some(g) = a.g.as_mut() {
                    self.rename_subgraph(g, call, key, f, scope, locals)?;
                }
                for g in &mut a.graphs {
                    self.rename_subgraph(g, call, key, f, scope, locals)?;
                }
                out.push(a);
                continue;
            }
            // A reference: the call's value (whose subgraphs live in the caller's scope), else
            // the function's default, else absent when declared.
            let r = a.ref_attr_name();
            let value = call.attr(r).or_else(|| f.attribute_proto.iter().find(|d| d.name() == r));
            let Some(v) = value else {
                if f.attribute.iter().any(|d| d == r) {
                    continue;
                }
                let reason = format!(
                    "inner node '{}' ({}) refers to attribute '{r}', which the function does \
                     not declare and the call does not give",
                    node.label(),
                    node.op_type()
                );
                return Err(call_error(call, key, reason));
            };
            if a.r#type.is_some() && v.kind() != a.r#type() {
                return Err(OnnxError::BadAttribute {
                    node: node.label(),
                    op_type: node.op_type().to_string(),
                    attribute: a.name().to_string(),
                    reason: format!(
                        "refers to '{r}' of type {}, but call '{}' gives {}",
                        a.r#type().as_str_name(),
                        call.label(),
                        v.kind().as_str_name()
                    ),
                });
            }
            let mut v = v.clone();
            v.name = a.name.clone();
            v.ref_attr_name = None;
            out.push(v);
        }
        Ok(out)
    }

    /// Renames the values that subgraph `g` captures from the function body, and resolves
    /// attribute references in its nodes, recursively.
    fn rename_subgraph(
        &mut self,
        g: &mut GraphProto,
        call: &NodeProto,
        key: &FnKey,
        f: &FunctionProto,
        scope: &mut Scope<'_>,
        locals: &[HashSet<String>],
    ) -> Result<(), OnnxError> {
        let mut local: HashSet<String> = g.input.iter().map(|v| v.name().to_string()).collect();
        local.extend(g.initializer.iter().map(|t| t.name().to_string()));
        local.extend(
            g.sparse_initializer.iter().filter_map(|s| s.values.as_ref()).map(|t| t.name().to_string()),
        );
        local.extend(g.node.iter().flat_map(|n| n.output.iter().cloned()));
        let mut locals = locals.to_vec();
        locals.push(local);
        let is_local = |v: &str| locals.iter().any(|l| l.contains(v));

        let mut nodes = std::mem::take(&mut g.node);
        for n in &mut nodes {
            for v in &mut n.input {
                if !v.is_empty() && !is_local(v) {
                    *v = scope.rename(v, &mut self.names);
                }
            }
            n.attribute = self.resolve_attributes(n, call, key, f, scope, &locals)?;
        }
        g.node = nodes;
        for o in &mut g.output {
            if !is_local(o.name()) {
                o.name = Some(scope.rename(o.name(), &mut self.names));
            }
        }
        Ok(())
    }

    /// A unique prefix for the values and nodes of an inlined call.
    fn prefix(&mut self, call: &NodeProto) -> String {
        let base = if call.name().is_empty() {
            self.unnamed_calls += 1;
            format!("{}_{}", call.op_type(), self.unnamed_calls)
        } else {
            call.name().to_string()
        };
        let mut prefix = base.clone();
        let mut k = 0;
        while self.prefixes.contains(&prefix) {
            k += 1;
            prefix = format!("{base}_{k}");
        }
        self.prefixes.insert(prefix.clone());
        prefix
    }

    /// Checks `f`'s opsets against the model's, recording those the model lacks.
    fn check_opsets(&mut self, call: &NodeProto, key: &FnKey, f: &FunctionProto) -> Result<(), OnnxError> {
        for o in &f.opset_import {
            // Domains of local functions disappear with inlining.
            if self.functions.keys().any(|k| k.0 == norm_domain(o.domain())) {
                continue;
            }
            let existing = find_opset(self.model_opsets, o.domain())
                .or_else(|| find_opset(&self.new_opsets, o.domain()));
            match existing {
                Some(m) if m.version() != o.version() => {
                    let domain = if is_default_domain(o.domain()) { "ai.onnx" } else { o.domain() };
                    let reason = format!(
                        "the function imports opset {domain} version {}, the model version {}",
                        o.version(),
                        m.version()
                    );
                    return Err(call_error(call, key, reason));
                }
                Some(_) => {}
                None => self.new_opsets.push(o.clone()),
            }
        }
        Ok(())
    }
}

fn call_error(call: &NodeProto, key: &FnKey, reason: String) -> OnnxError {
    OnnxError::FunctionCall { node: call.label(), function: key_label(key), reason }
}

/// The renaming of one inlined call: formal values to actual ones, internal values to
/// fresh names.
struct Scope<'p> {
    prefix: &'p str,
    map: HashMap<String, String>,
    /// The fresh names given to internal values.
    fresh: HashSet<String>,
}

impl Scope<'_> {
    /// The name `v` of the body takes in the graph (`""` stays `""`).
    fn rename(&mut self, v: &str, names: &mut HashSet<String>) -> String {
        if v.is_empty() {
            return String::new();
        }
        if let Some(r) = self.map.get(v) {
            return r.clone();
        }
        let base = format!("{}/{v}", self.prefix);
        let mut fresh = base.clone();
        let mut k = 0;
        while names.contains(&fresh) {
            k += 1;
            fresh = format!("{base}_{k}");
        }
        names.insert(fresh.clone());
        self.fresh.insert(fresh.clone());
        self.map.insert(v.to_string(), fresh.clone());
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::attribute_proto::AttributeType;
    use crate::proto::ValueInfoProto;

    fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            name: (!name.is_empty()).then(|| name.to_string()),
            op_type: Some(op.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..NodeProto::default()
        }
    }

    fn call(name: &str, f: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto { domain: Some("local".into()), ..node(name, f, inputs, outputs) }
    }

    fn with_attr(mut n: NodeProto, a: AttributeProto) -> NodeProto {
        n.attribute.push(a);
        n
    }

    fn float_attr(name: &str, v: f32) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(AttributeType::Float as i32),
            f: Some(v),
            ..AttributeProto::default()
        }
    }

    fn ref_attr(name: &str, refers_to: &str, ty: AttributeType) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            ref_attr_name: Some(refers_to.into()),
            r#type: Some(ty as i32),
            ..AttributeProto::default()
        }
    }

    fn function(name: &str, inputs: &[&str], outputs: &[&str], body: Vec<NodeProto>) -> FunctionProto {
        FunctionProto {
            name: Some(name.into()),
            domain: Some("local".into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            node: body,
            opset_import: vec![opset("", 23)],
            ..FunctionProto::default()
        }
    }

    fn opset(domain: &str, version: i64) -> OperatorSetIdProto {
        OperatorSetIdProto { domain: Some(domain.into()), version: Some(version) }
    }

    fn model(nodes: Vec<NodeProto>, functions: Vec<FunctionProto>) -> ModelProto {
        let vi = |n: &str| ValueInfoProto { name: Some(n.into()), ..ValueInfoProto::default() };
        ModelProto {
            ir_version: Some(10),
            opset_import: vec![opset("", 23), opset("local", 1)],
            graph: Some(GraphProto {
                name: Some("main".into()),
                input: vec![vi("x"), vi("w")],
                output: vec![vi("y")],
                node: nodes,
                ..GraphProto::default()
            }),
            functions,
            ..ModelProto::default()
        }
    }

    /// `(name, op_type, inputs, outputs)` of the main graph's nodes.
    fn summary(m: &ModelProto) -> Vec<(String, String, Vec<String>, Vec<String>)> {
        m.graph
            .as_ref()
            .unwrap()
            .node
            .iter()
            .map(|n| (n.name().into(), n.op_type().into(), n.input.clone(), n.output.clone()))
            .collect()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn linear_act() -> FunctionProto {
        function(
            "LinearAct",
            &["X", "W"],
            &["Y"],
            vec![node("mm", "MatMul", &["X", "W"], &["t"]), node("act", "Relu", &["t"], &["Y"])],
        )
    }

    #[test]
    fn binds_formals_and_renames_internals() {
        let mut m = model(
            vec![
                call("layer0", "LinearAct", &["x", "w"], &["h"]),
                call("layer1", "LinearAct", &["h", "w"], &["y"]),
            ],
            vec![linear_act()],
        );
        assert_eq!(local_function_calls(&m), 2);
        let stats = inline_functions(&mut m).unwrap();
        assert_eq!(
            stats,
            InlineStats {
                calls_inlined: 2,
                max_depth: 1,
                nodes_before: 2,
                nodes_after: 4,
                functions_removed: 1
            }
        );
        assert_eq!(
            summary(&m),
            [
                ("layer0/mm".into(), "MatMul".into(), s(&["x", "w"]), s(&["layer0/t"])),
                ("layer0/act".into(), "Relu".into(), s(&["layer0/t"]), s(&["h"])),
                ("layer1/mm".into(), "MatMul".into(), s(&["h", "w"]), s(&["layer1/t"])),
                ("layer1/act".into(), "Relu".into(), s(&["layer1/t"]), s(&["y"])),
            ]
        );
        assert!(m.functions.is_empty());
        assert_eq!(local_function_calls(&m), 0);
        assert_eq!(m.opset_import, [opset("", 23), opset("local", 1)]);
    }

    #[test]
    fn unnamed_and_same_named_calls_and_taken_names_stay_unique() {
        let mut m = model(
            vec![
                node("", "Identity", &["x"], &["dup/t"]),
                call("", "LinearAct", &["x", "w"], &["a"]),
                call("", "LinearAct", &["a", "w"], &["b"]),
                call("dup", "LinearAct", &["b", "w"], &["c"]),
                call("dup", "LinearAct", &["c", "w"], &["y"]),
            ],
            vec![linear_act()],
        );
        inline_functions(&mut m).unwrap();
        let nodes = summary(&m);
        let names: Vec<&str> = nodes.iter().map(|n| n.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "",
                "LinearAct_1/mm",
                "LinearAct_1/act",
                "LinearAct_2/mm",
                "LinearAct_2/act",
                "dup/mm",
                "dup/act",
                "dup_1/mm",
                "dup_1/act"
            ]
        );
        // "dup/t" was taken by the Identity.
        assert_eq!(nodes[5].3, s(&["dup/t_1"]));
        assert_eq!(nodes[7].3, s(&["dup_1/t"]));
        let mut outputs: Vec<&String> = nodes.iter().flat_map(|n| &n.3).collect();
        let len = outputs.len();
        outputs.sort();
        outputs.dedup();
        assert_eq!(outputs.len(), len, "every value is defined once");
    }

    #[test]
    fn missing_optional_inputs_and_unused_outputs() {
        let f = function(
            "F",
            &["A", "B", "C"],
            &["P", "Q"],
            vec![node("clip", "Clip", &["A", "B", "C"], &["P"]), node("neg", "Neg", &["P"], &["Q"])],
        );
        // C left out, B given as "", Q left out; then P unused ("") but Q used.
        let mut m =
            model(vec![call("c0", "F", &["x", ""], &["p"]), call("c1", "F", &["p"], &["", "y"])], vec![f]);
        inline_functions(&mut m).unwrap();
        assert_eq!(
            summary(&m),
            [
                ("c0/clip".into(), "Clip".into(), s(&["x", "", ""]), s(&["p"])),
                ("c0/neg".into(), "Neg".into(), s(&["p"]), s(&["c0/Q"])),
                ("c1/clip".into(), "Clip".into(), s(&["p", "", ""]), s(&["c1/P"])),
                ("c1/neg".into(), "Neg".into(), s(&["c1/P"]), s(&["y"])),
            ]
        );
    }

    #[test]
    fn output_that_is_an_input_becomes_an_identity() {
        let f = function("Pass", &["A"], &["A", "B"], vec![node("n", "Neg", &["A"], &["B"])]);
        let mut m = model(vec![call("p", "Pass", &["x"], &["y", "z"])], vec![f]);
        inline_functions(&mut m).unwrap();
        assert_eq!(
            summary(&m),
            [
                ("p/output_0".into(), "Identity".into(), s(&["x"]), s(&["y"])),
                ("p/n".into(), "Neg".into(), s(&["x"]), s(&["z"])),
            ]
        );
    }

    #[test]
    fn attribute_references() {
        let mut f = function(
            "Act",
            &["X"],
            &["Y"],
            vec![with_attr(
                node("lr", "LeakyRelu", &["X"], &["Y"]),
                ref_attr("alpha", "slope", AttributeType::Float),
            )],
        );
        f.attribute_proto.push(float_attr("slope", 0.25));
        let mut given = call("given", "Act", &["x"], &["a"]);
        given.attribute.push(float_attr("slope", 0.5));
        let mut m = model(vec![given, call("default", "Act", &["a"], &["y"])], vec![f.clone()]);
        inline_functions(&mut m).unwrap();
        let nodes = &m.graph.as_ref().unwrap().node;
        assert_eq!(nodes[0].attribute, [float_attr("alpha", 0.5)]);
        assert_eq!(nodes[1].attribute, [float_attr("alpha", 0.25)]);

        // Declared without a default and not given: the attribute is absent.
        f.attribute_proto.clear();
        f.attribute.push("slope".into());
        let mut m = model(vec![call("c", "Act", &["x"], &["y"])], vec![f.clone()]);
        inline_functions(&mut m).unwrap();
        assert!(m.graph.as_ref().unwrap().node[0].attribute.is_empty());

        // Not declared at all: an error naming the call, the function and the inner node.
        f.attribute.clear();
        let mut m = model(vec![call("c", "Act", &["x"], &["y"])], vec![f.clone()]);
        let before = m.clone();
        let e = inline_functions(&mut m).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node 'c' calls function 'local:Act': inner node 'c/lr' (LeakyRelu) refers to \
             attribute 'slope', which the function does not declare and the call does not give"
        );
        assert_eq!(m, before, "unchanged on error");

        // A value of the wrong type.
        f.attribute.push("slope".into());
        let mut c = call("c", "Act", &["x"], &["y"]);
        c.attribute.push(AttributeProto {
            name: Some("slope".into()),
            r#type: Some(AttributeType::Int as i32),
            i: Some(1),
            ..AttributeProto::default()
        });
        let mut m = model(vec![c], vec![f]);
        let e = inline_functions(&mut m).unwrap_err();
        assert!(matches!(e, OnnxError::BadAttribute { .. }), "{e}");
        assert!(e.to_string().contains("refers to 'slope' of type FLOAT, but call 'c' gives INT"), "{e}");
    }

    #[test]
    fn nested_calls_with_attributes_passed_down() {
        let mut inner = function(
            "Inner",
            &["X"],
            &["Y"],
            vec![with_attr(node("e", "Elu", &["X"], &["Y"]), ref_attr("alpha", "a", AttributeType::Float))],
        );
        inner.attribute.push("a".into());
        let mut outer = function(
            "Outer",
            &["X"],
            &["Y"],
            vec![
                with_attr(call("first", "Inner", &["X"], &["t"]), ref_attr("a", "b", AttributeType::Float)),
                call("second", "Inner", &["t"], &["Y"]),
            ],
        );
        outer.attribute_proto.push(float_attr("b", 2.0));
        let mut m = model(vec![call("top", "Outer", &["x"], &["y"])], vec![inner, outer]);
        let stats = inline_functions(&mut m).unwrap();
        assert_eq!((stats.calls_inlined, stats.max_depth, stats.functions_removed), (3, 2, 2));
        assert_eq!(
            summary(&m),
            [
                ("top/first/e".into(), "Elu".into(), s(&["x"]), s(&["top/t"])),
                ("top/second/e".into(), "Elu".into(), s(&["top/t"]), s(&["y"])),
            ]
        );
        let nodes = &m.graph.as_ref().unwrap().node;
        assert_eq!(nodes[0].attribute, [float_attr("alpha", 2.0)]);
        assert!(nodes[1].attribute.is_empty());
    }

    #[test]
    fn recursion_is_an_error() {
        let a = function("A", &["X"], &["Y"], vec![call("b", "B", &["X"], &["Y"])]);
        let b = function("B", &["X"], &["Y"], vec![call("a", "A", &["X"], &["Y"])]);
        let mut m = model(vec![call("top", "A", &["x"], &["y"])], vec![a, b]);
        let e = inline_functions(&mut m).unwrap_err().to_string();
        assert_eq!(
            e,
            "node 'top/b/a' calls function 'local:A': recursive call chain local:A -> local:B -> local:A"
        );
    }

    #[test]
    fn arity_and_opset_errors() {
        let mut m = model(vec![call("c", "LinearAct", &["x", "w", "z"], &["y"])], vec![linear_act()]);
        let e = inline_functions(&mut m).unwrap_err().to_string();
        assert_eq!(e, "node 'c' calls function 'local:LinearAct': 3 inputs given, but the function takes 2");
        let mut m = model(vec![call("c", "LinearAct", &["x", "w"], &["y", "z"])], vec![linear_act()]);
        assert!(inline_functions(&mut m).unwrap_err().to_string().contains("2 outputs given"));

        let mut f = linear_act();
        f.opset_import = vec![opset("", 18)];
        let mut m = model(vec![call("c", "LinearAct", &["x", "w"], &["y"])], vec![f.clone()]);
        let e = inline_functions(&mut m).unwrap_err().to_string();
        assert!(e.ends_with("the function imports opset ai.onnx version 18, the model version 23"), "{e}");

        // A domain the model lacks is added; local function domains are not.
        f.opset_import = vec![opset("", 23), opset("com.microsoft", 1), opset("local", 1)];
        let mut m = model(vec![call("c", "LinearAct", &["x", "w"], &["y"])], vec![f]);
        m.opset_import.retain(|o| o.domain() != "local");
        inline_functions(&mut m).unwrap();
        assert_eq!(m.opset_import, [opset("", 23), opset("com.microsoft", 1)]);
    }

    #[test]
    fn value_info_and_subgraphs_are_renamed() {
        let vi = |n: &str| ValueInfoProto { name: Some(n.into()), ..ValueInfoProto::default() };
        // Body: t = Neg(X); Y = If(c) { then: out = Identity(t) } { else: Y2 = ... }
        let then_branch = GraphProto {
            node: vec![node("id", "Identity", &["t"], &["out"])],
            output: vec![vi("out")],
            ..GraphProto::default()
        };
        let else_branch = GraphProto { output: vec![vi("X")], ..GraphProto::default() };
        let mut iff = node("if", "If", &["C"], &["Y"]);
        iff.attribute.push(AttributeProto {
            name: Some("then_branch".into()),
            r#type: Some(AttributeType::Graph as i32),
            g: Some(then_branch),
            ..AttributeProto::default()
        });
        iff.attribute.push(AttributeProto {
            name: Some("else_branch".into()),
            r#type: Some(AttributeType::Graph as i32),
            g: Some(else_branch),
            ..AttributeProto::default()
        });
        let mut f = function("F", &["X", "C"], &["Y"], vec![node("neg", "Neg", &["X"], &["t"]), iff]);
        f.value_info = vec![vi("t"), vi("X"), vi("Y")];
        let mut m = model(vec![call("f", "F", &["x", "w"], &["y"])], vec![f]);
        inline_functions(&mut m).unwrap();
        let g = m.graph.as_ref().unwrap();
        let names: Vec<&str> = g.value_info.iter().map(|v| v.name()).collect();
        assert_eq!(names, ["f/t"]);
        let iff = &g.node[1];
        assert!(iff.has_subgraph());
        let then_branch = iff.attr("then_branch").unwrap().g.as_ref().unwrap();
        assert_eq!(then_branch.node[0].input, ["f/t"]);
        assert_eq!(then_branch.output[0].name(), "out");
        let else_branch = iff.attr("else_branch").unwrap().g.as_ref().unwrap();
        assert_eq!(else_branch.output[0].name(), "x");
    }

    #[test]
    fn calls_in_main_graph_subgraphs_keep_their_function() {
        let body = GraphProto {
            node: vec![call("inner", "LinearAct", &["x", "w"], &["o"])],
            ..GraphProto::default()
        };
        let mut iff = node("if", "If", &["c"], &["y"]);
        iff.attribute.push(AttributeProto {
            name: Some("then_branch".into()),
            r#type: Some(AttributeType::Graph as i32),
            g: Some(body),
            ..AttributeProto::default()
        });
        let unused = function("Unused", &["X"], &["Y"], vec![node("n", "Neg", &["X"], &["Y"])]);
        let mut m =
            model(vec![call("top", "LinearAct", &["x", "w"], &["h"]), iff], vec![linear_act(), unused]);
        let stats = inline_functions(&mut m).unwrap();
        assert_eq!((stats.calls_inlined, stats.functions_removed), (1, 1));
        let kept: Vec<&str> = m.functions.iter().map(|f| f.name()).collect();
        assert_eq!(kept, ["LinearAct"]);
    }

    #[test]
    fn models_without_calls_are_untouched() {
        let mut m = model(vec![node("n", "Neg", &["x"], &["y"])], vec![linear_act()]);
        let before = m.clone();
        let stats = inline_functions(&mut m).unwrap();
        assert_eq!(stats.calls_inlined, 0);
        assert_eq!(m, before);
    }
}
