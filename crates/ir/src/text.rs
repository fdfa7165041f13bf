//! The stable, readable text dump used by every snapshot test, and DOT output.
//!
//! ```text
//! graph(%0 "x": f32[batch, seq, 64]) {
//!   %1 = constant "w" : f32[64]
//!   %2 = block.rms_norm{eps=1e-6}(%0, %1) : f32[batch, seq, 64]
//!   return %2 "y"
//! }
//! ```
//! Nodes print in topological order; a value is named by its node id (`%N`, or `%N:k` for
//! output `k` of a multi-output node), as in errors, near-misses and JSON documents, so a
//! node an error names can be found in the dump.

use crate::attrs::op_attrs;
use crate::graph::{Graph, Value};
use crate::op::Op;
use serde_json::Value as Json;
use std::fmt::Write;

/// An op as the text dump writes it: `mul`, `cast{to=bf16}`, `block.rms_norm{eps=1e-6}`.
impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.name(), attrs_suffix(self))
    }
}

/// `{k=v, ...}` for an op with attributes, empty otherwise.
pub fn attrs_suffix(op: &Op) -> String {
    if let Op::Constant(t) = op {
        return if t.len() <= 4 {
            let narrow = matches!(t.dtype(), crate::DType::F32 | crate::DType::F16 | crate::DType::BF16);
            // Integers print exactly (i64 beyond 2^53 too), bools as true/false.
            let v: Vec<String> = if t.dtype().is_int() {
                t.to_i64_vec().iter().map(|x| x.to_string()).collect()
            } else if t.dtype() == crate::DType::Bool {
                t.to_f64_vec().iter().map(|&x| (x != 0.0).to_string()).collect()
            } else {
                t.to_f64_vec().iter().map(|&x| if narrow { fmt_f32(x as f32) } else { fmt_f64(x) }).collect()
            };
            if t.dims().is_empty() {
                format!("{{value={}}}", v[0])
            } else {
                format!("{{value=[{}]}}", v.join(", "))
            }
        } else {
            String::new()
        };
    }
    let map = op_attrs(op);
    if map.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k}={}", compact(v))).collect();
    format!("{{{}}}", parts.join(", "))
}

fn fmt_f32(x: f32) -> String {
    if !x.is_finite() {
        return fmt_f64(x as f64);
    }
    if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e6) {
        format!("{x:e}")
    } else {
        format!("{x:?}")
    }
}

fn fmt_f64(x: f64) -> String {
    compact(&crate::attrs::f64_to_json(x))
}

/// Compact JSON with plain words unquoted (`to=f16`, `shape=[batch, 64]`).
fn compact(v: &Json) -> String {
    match v {
        Json::String(s) if !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || "_*.-".contains(c)) => {
            s.clone()
        }
        Json::Array(items) => format!("[{}]", items.iter().map(compact).collect::<Vec<_>>().join(", ")),
        Json::Object(m) => {
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={}", compact(v))).collect();
            format!("{{{}}}", parts.join(", "))
        }
        Json::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format_float(f),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Shortest round-tripping float text, in exponent form for small and large magnitudes.
fn format_float(f: f64) -> String {
    // Attributes stored as f32 print as the f32 they are (1e-6, not 9.99999997e-7).
    if f.is_finite() && (f as f32) as f64 == f {
        return fmt_f32(f as f32);
    }
    if f != 0.0 && (f.abs() < 1e-3 || f.abs() >= 1e6) {
        format!("{f:e}")
    } else {
        format!("{f:?}")
    }
}

/// The text dump of a graph (errors on a cycle or on an operand or output naming a missing
/// value).
pub fn dump(g: &Graph) -> Result<String, crate::IrError> {
    let order = g.topo_order()?;
    g.check_references()?;
    let mut out = String::from("graph(");
    for (i, &id) in g.inputs().iter().enumerate() {
        let node = g.node(id);
        if i > 0 {
            out.push_str(", ");
        }
        let _ =
            write!(out, "{} \"{}\": {}", Value::first(id), node.name.as_deref().unwrap_or(""), node.types[0]);
    }
    out.push_str(") {\n");
    for &id in &order {
        let node = g.node(id);
        if matches!(node.op, Op::Input) {
            continue;
        }
        let outs: Vec<String> =
            (0..node.types.len()).map(|i| Value { node: id, output: i as u16 }.to_string()).collect();
        let args: Vec<String> = node.operands.iter().map(Value::to_string).collect();
        let types: Vec<String> = node.types.iter().map(|t| t.to_string()).collect();
        let _ = write!(out, "  {} = {}{}", outs.join(", "), node.op.name(), attrs_suffix(&node.op));
        match (&node.op, &node.name) {
            (Op::Constant(t), Some(name)) if t.len() > 4 => {
                let _ = write!(out, " \"{name}\"");
            }
            (Op::Constant(_), _) => {}
            _ => {
                let _ = write!(out, "({})", args.join(", "));
            }
        }
        let _ = writeln!(out, " : {}", types.join(", "));
    }
    for (name, v) in g.outputs() {
        let _ = writeln!(out, "  return {v} \"{name}\"");
    }
    out.push_str("}\n");
    Ok(out)
}

/// Graphviz DOT of the graph: one box per node (`op{attrs}` and output types), edges
/// labelled with the operand position.
pub fn to_dot(g: &Graph) -> String {
    use petgraph::dot::{Config, Dot};
    let pg = g.petgraph();
    let dot = Dot::with_attr_getters(
        pg,
        &[Config::EdgeNoLabel, Config::NodeNoLabel],
        &|_, e| format!("label=\"{}\"", e.weight().operand),
        &|_, (_, node)| {
            let types: Vec<String> = node.types.iter().map(|t| t.to_string()).collect();
            let head = match &node.op {
                Op::Input | Op::Constant(_) => {
                    format!("{} {}", node.op.name(), node.name.as_deref().unwrap_or(""))
                }
                op => format!("{}{}", op.name(), attrs_suffix(op)),
            };
            let style =
                if matches!(node.op, Op::Block(_)) { ", style=filled, fillcolor=\"#ffd27f\"" } else { "" };
            format!("shape=box, label=\"{}\\n{}\"{style}", escape(&head), escape(&types.join(", ")))
        },
    );
    format!("{dot:?}")
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
