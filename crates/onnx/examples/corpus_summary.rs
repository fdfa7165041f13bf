//! Summarises what a set of ONNX models uses, after inlining local functions: op types and
//! domains, attributes per op, where shape-valued inputs come from, and graph signatures.
//!
//! Usage: `cargo run -p blockfuse-onnx --example corpus_summary [DIR]`, where DIR holds one
//! sub-directory per model with a `model.onnx` (default: the project's `shared/corpus`).
//! Models are grouped by exporter variant, the part of the directory name after its last
//! `__` (`llama__sdpa__dynamo23_noopt` is variant `dynamo23_noopt`).

use blockfuse_onnx::proto::attribute_proto::AttributeType;
use blockfuse_onnx::proto::{AttributeProto, GraphProto, ModelProto};
use blockfuse_onnx::tensor::elem_type_short;
use blockfuse_onnx::{inline_functions, load_model};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

/// `(op_type, input index, input name)` of inputs whose values are shapes, axes, counts or
/// index bounds rather than tensor data.
const SHAPE_INPUTS: &[(&str, usize, &str)] = &[
    ("Reshape", 1, "shape"),
    ("Expand", 1, "shape"),
    ("ConstantOfShape", 0, "input"),
    ("Slice", 1, "starts"),
    ("Slice", 2, "ends"),
    ("Slice", 3, "axes"),
    ("Slice", 4, "steps"),
    ("Range", 0, "start"),
    ("Range", 1, "limit"),
    ("Range", 2, "delta"),
    ("Tile", 1, "repeats"),
    ("Unsqueeze", 1, "axes"),
    ("Squeeze", 1, "axes"),
    ("ReduceSum", 1, "axes"),
    ("ReduceMean", 1, "axes"),
    ("ReduceMax", 1, "axes"),
    ("ReduceMin", 1, "axes"),
    ("ReduceProd", 1, "axes"),
    ("ReduceL2", 1, "axes"),
    ("Split", 1, "split"),
    ("Pad", 1, "pads"),
    ("Pad", 3, "axes"),
    ("TopK", 1, "K"),
    ("Resize", 2, "scales"),
    ("Resize", 3, "sizes"),
    ("Trilu", 1, "k"),
    ("CumSum", 1, "axis"),
    ("OneHot", 1, "depth"),
];

/// Where a value's contents come from, ordered from most to least static.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Origin {
    /// Initializers and `Constant` nodes only.
    Const,
    /// Needs `Shape`/`Size` of some tensor (symbolic dims), and constants.
    Shape,
    /// Needs the data of a graph input (not only its shape).
    Data,
}

/// Counts per origin, then per variant.
type CountsByOrigin = BTreeMap<Origin, BTreeMap<String, usize>>;

struct Classifier<'g> {
    producers: HashMap<&'g str, usize>,
    graph: &'g GraphProto,
    initializers: BTreeSet<&'g str>,
    memo: HashMap<&'g str, Origin>,
}

impl<'g> Classifier<'g> {
    fn new(graph: &'g GraphProto) -> Self {
        let mut producers = HashMap::new();
        for (i, n) in graph.node.iter().enumerate() {
            for o in &n.output {
                producers.insert(o.as_str(), i);
            }
        }
        let initializers = graph.initializer.iter().map(|t| t.name()).collect();
        Classifier { producers, graph, initializers, memo: HashMap::new() }
    }

    /// The origin of value `v` (the graph is topologically sorted, so recursion ends).
    fn origin(&mut self, v: &'g str) -> Origin {
        if let Some(&o) = self.memo.get(v) {
            return o;
        }
        let o = if v.is_empty() || self.initializers.contains(v) {
            Origin::Const
        } else if let Some(&i) = self.producers.get(v) {
            let n = &self.graph.node[i];
            match n.op_type() {
                "Constant" => Origin::Const,
                "Shape" | "Size" => Origin::Shape,
                _ => n.input.iter().map(|x| self.origin(x)).max().unwrap_or(Origin::Const),
            }
        } else {
            Origin::Data // a graph input
        };
        self.memo.insert(v, o);
        o
    }
}

/// `name:TYPE` of an attribute, and its value when short.
fn attr_summary(a: &AttributeProto) -> (String, Option<String>) {
    let kind = a.kind();
    let value = match kind {
        AttributeType::Int => Some(a.i().to_string()),
        AttributeType::Float => Some(a.f().to_string()),
        AttributeType::String => Some(format!("{:?}", String::from_utf8_lossy(a.s()))),
        AttributeType::Ints if a.ints.len() <= 6 => Some(format!("{:?}", a.ints)),
        AttributeType::Tensor => a.t.as_ref().map(|t| {
            let dims: Vec<String> = t.dims.iter().map(|d| d.to_string()).collect();
            format!("{}[{}]", elem_type_short(t.data_type()), dims.join(","))
        }),
        _ => None,
    };
    (format!("{}:{}", a.name(), kind.as_str_name()), value)
}

fn variant(dir: &str) -> String {
    dir.rsplit("__").next().unwrap_or(dir).to_string()
}

fn main() {
    let dir = std::env::args_os().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        blockfuse_onnx::test_data::shared_dir().expect("no shared/ folder found").join("corpus")
    });
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    dirs.sort();

    let mut variants = BTreeSet::new();
    // (op, domain) -> variant -> count; and -> models using it.
    let mut ops: BTreeMap<(String, String), BTreeMap<String, usize>> = BTreeMap::new();
    let mut op_models: BTreeMap<(String, String), usize> = BTreeMap::new();
    // op -> attribute -> distinct values (capped).
    let mut attrs: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    // (op, slot) -> origin -> variant -> count.
    let mut shape_inputs: BTreeMap<(String, usize, String), CountsByOrigin> = BTreeMap::new();
    // Ops computing Shape-origin values.
    let mut shape_ops: BTreeMap<String, usize> = BTreeMap::new();
    // Signature -> models.
    let mut signatures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut init_dtypes: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut inlined = 0;

    for d in &dirs {
        let name = d.file_name().unwrap().to_string_lossy().to_string();
        let v = variant(&name);
        variants.insert(v.clone());
        let mut model: ModelProto = load_model(d.join("model.onnx")).unwrap();
        inlined += inline_functions(&mut model).unwrap().calls_inlined;
        let g = model.graph.as_ref().unwrap();
        let mut seen = BTreeSet::new();
        let mut cls = Classifier::new(g);
        for n in &g.node {
            let key = (n.op_type().to_string(), n.domain().to_string());
            *ops.entry(key.clone()).or_default().entry(v.clone()).or_default() += 1;
            if seen.insert(key) {
                *op_models.entry((n.op_type().to_string(), n.domain().to_string())).or_default() += 1;
            }
            let per_op = attrs.entry(n.op_type().to_string()).or_default();
            for a in &n.attribute {
                let (k, value) = attr_summary(a);
                let values = per_op.entry(k).or_default();
                if let Some(value) = value {
                    if values.len() < 8 {
                        values.insert(value);
                    } else {
                        values.insert("…".into());
                    }
                }
            }
            for &(op, slot, slot_name) in SHAPE_INPUTS {
                if n.op_type() == op {
                    if let Some(input) = n.input.get(slot).filter(|i| !i.is_empty()) {
                        let o = cls.origin(input);
                        let e =
                            shape_inputs.entry((op.to_string(), slot, slot_name.to_string())).or_default();
                        *e.entry(o).or_default().entry(v.clone()).or_default() += 1;
                    }
                }
            }
            if !matches!(n.op_type(), "Shape" | "Size" | "Constant")
                && n.output.iter().any(|o| cls.origin(o) == Origin::Shape)
            {
                *shape_ops.entry(n.op_type().to_string()).or_default() += 1;
            }
        }
        let initializers: BTreeSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
        let ins: Vec<String> =
            g.input.iter().filter(|i| !initializers.contains(i.name())).map(|i| i.describe()).collect();
        let outs: Vec<String> = g.output.iter().map(|o| o.describe()).collect();
        signatures.entry(format!("({}) -> ({})", ins.join(", "), outs.join(", "))).or_default().push(name);
        for t in &g.initializer {
            *init_dtypes.entry(v.clone()).or_default().entry(elem_type_short(t.data_type())).or_default() +=
                1;
        }
    }

    let variants: Vec<String> = variants.into_iter().collect();
    println!("# {} models in {} ({} function calls inlined)\n", dirs.len(), dir.display(), inlined);
    println!("## Ops after inlining (count per variant)\n");
    println!("| op | domain | models | total | {} |", variants.join(" | "));
    println!("|---|---|---|---|{}", "---|".repeat(variants.len()));
    for ((op, domain), per) in &ops {
        let total: usize = per.values().sum();
        let cols: Vec<String> =
            variants.iter().map(|v| per.get(v).copied().unwrap_or(0).to_string()).collect();
        let models = op_models[&(op.clone(), domain.clone())];
        let domain = if domain.is_empty() { "ai.onnx" } else { domain };
        println!("| {op} | {domain} | {models} | {total} | {} |", cols.join(" | "));
    }

    println!("\n## Attributes per op (distinct values, up to 8)\n");
    for (op, per) in &attrs {
        if per.is_empty() {
            continue;
        }
        let items: Vec<String> = per
            .iter()
            .map(|(k, vals)| {
                if vals.is_empty() {
                    k.clone()
                } else {
                    format!("{k} = {}", vals.iter().cloned().collect::<Vec<_>>().join(" | "))
                }
            })
            .collect();
        println!("- {op}: {}", items.join("; "));
    }

    println!("\n## Shape-valued inputs by origin (const / shape-derived / data-derived)\n");
    println!("| op | input | origin | total | {} |", variants.join(" | "));
    println!("|---|---|---|---|{}", "---|".repeat(variants.len()));
    for ((op, slot, slot_name), per_origin) in &shape_inputs {
        for (origin, per) in per_origin {
            let total: usize = per.values().sum();
            let cols: Vec<String> =
                variants.iter().map(|v| per.get(v).copied().unwrap_or(0).to_string()).collect();
            println!("| {op} | {slot} ({slot_name}) | {origin:?} | {total} | {} |", cols.join(" | "));
        }
    }
    println!("\nOps computing shape-derived values (between Shape/Size and their users): {shape_ops:?}");

    println!("\n## Initializer dtypes per variant\n");
    for (v, per) in &init_dtypes {
        println!("- {v}: {per:?}");
    }

    println!("\n## Graph signatures (non-initializer inputs -> outputs)\n");
    for (sig, models) in &signatures {
        println!("- {sig}\n  {}", models.join(", "));
    }
}
