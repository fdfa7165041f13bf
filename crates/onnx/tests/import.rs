//! The ONNX importer on the shared corpus: every model imports, validates, and (through the
//! fallback evaluator) reproduces the reference outputs of both test data sets.

mod common;

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::{DType, HostTensor};
use blockfuse_onnx::build::{
    self, attr_graph, attr_int, attr_ints, attr_string, node, opset, tensor_f32, tensor_i64, value_info,
};
use blockfuse_onnx::proto::{type_proto, GraphProto, ModelProto, NodeProto, ValueInfoProto};
use blockfuse_onnx::{import_file, import_model, OnnxError, TestDataSet};
use std::collections::HashMap;
use std::path::PathBuf;

use common::{corpus_dir, model_dirs_matching};

/// `(name, directory)` of the corpus models whose names contain `$CORPUS_FILTER`.
fn corpus_models() -> Vec<(String, PathBuf)> {
    let Some(dir) = corpus_dir() else { return vec![] };
    model_dirs_matching(&dir, "CORPUS_FILTER")
        .into_iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect()
}

fn output_dtypes(path: &std::path::Path) -> Vec<(String, Option<DType>)> {
    let model = blockfuse_onnx::load_model(path).unwrap();
    let g = model.graph.unwrap();
    g.output
        .iter()
        .map(|o| {
            let dt = match o.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                Some(type_proto::Value::TensorType(t)) => {
                    blockfuse_onnx::tensor::dtype_from_onnx(t.elem_type())
                }
                _ => None,
            };
            (o.name().to_string(), dt)
        })
        .collect()
}

#[test]
fn every_corpus_model_imports_and_validates() {
    let models = corpus_models();
    let mut failures = vec![];
    for (name, dir) in &models {
        let path = dir.join("model.onnx");
        match import_file(&path) {
            Ok(g) => {
                if let Err(e) = g.validate() {
                    failures.push(format!("{name}: validate: {e}"));
                    continue;
                }
                let expected = output_dtypes(&path);
                assert_eq!(g.outputs().len(), expected.len(), "{name}");
                for ((oname, v), (ename, edt)) in g.outputs().iter().zip(&expected) {
                    assert_eq!(oname, ename, "{name}");
                    if let Some(edt) = edt {
                        let got = g.value_type(*v).dtype;
                        if got != *edt {
                            failures.push(format!("{name}: output {oname} is {got}, expected {edt}"));
                        }
                    }
                }
                eprintln!("ok   {name}: {} nodes", g.node_count());
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    for f in &failures {
        eprintln!("FAIL {f}");
    }
    assert!(failures.is_empty(), "{} of {} models failed", failures.len(), models.len());
}

type Rows = std::collections::BTreeSet<usize>;

/// The largest |diff|, or the rows (over the last axis) out of tolerance and a message.
fn compare(got: &HostTensor, want: &HostTensor) -> Result<f64, (Rows, String)> {
    if got.dims() != want.dims() {
        return Err((Rows::new(), format!("dims {:?} vs reference {:?}", got.dims(), want.dims())));
    }
    if got.dtype() != want.dtype() {
        return Err((Rows::new(), format!("dtype {} vs reference {}", got.dtype(), want.dtype())));
    }
    let tol = if want.dtype() == DType::F16 || want.dtype() == DType::BF16 { 1e-2 } else { 1e-4 };
    let (a, b) = (got.to_f64_vec(), want.to_f64_vec());
    let mut worst = 0.0f64;
    let mut bad = vec![];
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let d = (x - y).abs();
        let within = d <= tol + tol * y.abs() || (x.is_nan() && y.is_nan());
        if !within {
            bad.push((i, *x, *y, d));
        }
        worst = worst.max(d);
    }
    if let Some(&(i, x, y, d)) = bad.first() {
        let row = got.dims().last().copied().unwrap_or(1).max(1);
        let rows: std::collections::BTreeSet<usize> = bad.iter().map(|b| b.0 / row).collect();
        return Err((
            rows.clone(),
            format!(
                "{} elements out of tolerance (rows {:?}, a row = the last axis); first: element {i}: \
             {x} vs reference {y} (|diff| {d:.3e}); max |diff| {worst:.3e}",
                bad.len(),
                rows
            ),
        ));
    }
    Ok(worst)
}

#[test]
fn corpus_models_match_reference_outputs() {
    let models = corpus_models();
    let backend = FallbackBackend::new();
    let mut failures = vec![];
    for (name, dir) in &models {
        let g = match import_file(&dir.join("model.onnx")) {
            Ok(g) => g,
            Err(e) => {
                failures.push(format!("{name}: import: {e}"));
                continue;
            }
        };
        for set in ["test_data_set_0", "test_data_set_1"] {
            let ds = TestDataSet::open(dir.join(set)).unwrap();
            let inputs: HashMap<String, HostTensor> = ds.read_inputs().unwrap().into_iter().collect();
            let outs = match backend.run_named(&g, &inputs) {
                Ok(o) => o,
                Err(e) => {
                    failures.push(format!("{name}/{set}: run: {e}"));
                    continue;
                }
            };
            let refs = ds.read_outputs().unwrap();
            // Query positions with attention_mask == 0 (rows b*T + t of a {B, T, ...} output).
            let padded: std::collections::BTreeSet<usize> = inputs
                .get("attention_mask")
                .map(|m| {
                    m.to_f64_vec().iter().enumerate().filter(|(_, v)| **v == 0.0).map(|(i, _)| i).collect()
                })
                .unwrap_or_default();
            let mut worst = 0.0f64;
            let mut bad = None;
            for ((oname, _), (got, (rname, want))) in g.outputs().iter().zip(outs.iter().zip(&refs)) {
                assert!(rname.is_empty() || rname == oname, "{name}: output order");
                match compare(got, want) {
                    Ok(w) => worst = worst.max(w),
                    // Known: ORT keeps the f16 masked scores of fully masked (padded) query
                    // rows in f32 between its inserted casts, so those rows attend with the
                    // raw scores there, while strict f16 rounding (the fallback) saturates
                    // them to the same value and attends uniformly. Reported, not failed.
                    Err((rows, e))
                        if want.dtype() == DType::F16
                            && !rows.is_empty()
                            && got.dims().len() == 3
                            && rows.is_subset(&padded) =>
                    {
                        eprintln!("note {name}/{set}: output {oname}: only padded rows differ (ORT f16 artefact): {e}");
                    }
                    Err((_, e)) => {
                        bad = Some(format!("output {oname}: {e}"));
                        break;
                    }
                }
            }
            match bad {
                None => eprintln!("pass {name}/{set}: max |diff| {worst:.2e}"),
                Some(e) => failures.push(format!("{name}/{set}: {e}")),
            }
        }
    }
    for f in &failures {
        eprintln!("FAIL {f}");
    }
    assert!(failures.is_empty(), "{} failures over {} models", failures.len(), models.len());
}

/// An opset-20 model of graph `g` with `nodes` and the given input and output values.
fn model_of(nodes: Vec<NodeProto>, input: Vec<ValueInfoProto>, output: Vec<ValueInfoProto>) -> ModelProto {
    let graph = GraphProto { name: Some("g".into()), node: nodes, input, output, ..Default::default() };
    build::model(9, vec![opset("", 20)], graph)
}

/// A model of `nodes` from input `x` to `output`, both `f32[batch, seq, 8]`.
fn model(nodes: Vec<NodeProto>, output: &str) -> ModelProto {
    let vi = |name: &str| value_info(name, 1, &["batch", "seq", "8"]);
    model_of(nodes, vec![vi("x")], vec![vi(output)])
}

#[test]
fn unsupported_ops_are_all_listed() {
    let if_node =
        node("If", "If_3", &["c"], &["y"]).with_attribute(attr_graph("then_branch", GraphProto::default()));
    let m = model(
        vec![
            node("Relu", "r", &["x"], &["a"]),
            node("FancyOp", "f1", &["a"], &["b"]),
            if_node,
            node("FancyOp", "f2", &["b"], &["z"]),
        ],
        "z",
    );
    let err = import_model(&m).unwrap_err();
    let OnnxError::UnsupportedOps { ops } = &err else {
        panic!("wrong error: {err}");
    };
    assert_eq!(ops.len(), 2);
    let msg = err.to_string();
    assert_eq!(msg, "unsupported ops: FancyOp (nodes f1, f2), If (node If_3)");
}

#[test]
fn shape_computations_become_static_attributes() {
    // y = reshape(x, concat(shape(x)[0:2], [2, 4])) then back via Flatten-free Reshape with -1.
    let shape = node("Shape", "shape", &["x"], &["s"]).with_attribute(attr_int("end", 2));
    let c24 = node("Constant", "c24", &[], &["c24"]).with_attribute(attr_ints("value_ints", &[2, 4]));
    let cm1 = node("Constant", "cm1", &[], &["cm1"]).with_attribute(attr_ints("value_ints", &[0, -1, 8]));
    let cat = node("Concat", "cat", &["s", "c24"], &["t"]).with_attribute(attr_int("axis", 0));
    let m = model(
        vec![
            shape,
            c24,
            cm1,
            cat,
            node("Reshape", "r1", &["x", "t"], &["a"]),
            node("Reshape", "r2", &["a", "cm1"], &["y"]),
        ],
        "y",
    );
    let g = import_model(&m).unwrap();
    g.validate().unwrap();
    let text = format!("{:?}", g.value_type(g.outputs()[0].1));
    assert_eq!(text, "f32[batch, seq, 8]");
    // Only the input and the two reshapes: no shape arithmetic reached the IR.
    assert_eq!(g.node_count(), 3);
}

/// Debug helper: `DUMP_MODEL=<corpus name> DUMP_NODE=<substring> cargo test dump -- --ignored`.
#[test]
#[ignore]
fn dump() {
    let name = std::env::var("DUMP_MODEL").unwrap();
    let pat = std::env::var("DUMP_NODE").unwrap_or_default();
    let mut m = blockfuse_onnx::load_model(corpus_dir().unwrap().join(name).join("model.onnx")).unwrap();
    blockfuse_onnx::inline_functions(&mut m).unwrap();
    let g = m.graph.unwrap();
    for vi in &g.input {
        eprintln!("input {}", vi.describe());
    }
    let nodes = &g.node;
    for (i, n) in nodes.iter().enumerate() {
        if nodes[i.saturating_sub(0)..(i + 8).min(nodes.len())].iter().any(|m| {
            m.name().contains(&pat) || m.op_type() == pat || m.output.iter().any(|o| o.contains(&pat))
        }) {
            let attrs: Vec<String> = n
                .attribute
                .iter()
                .map(|a| format!("{}={:?}", a.name(), a.i.or(a.f.map(|f| f as i64))))
                .collect();
            eprintln!("{} {} {:?} -> {:?} {:?}", n.name(), n.op_type(), n.input, n.output, attrs);
        }
    }
}

#[test]
fn float_shape_arithmetic_is_folded() {
    // Reshape(x, Cast(Mul(Ceil(Div(Cast(Shape(x)[2], f32), 3.0)), 3.0), i64) ...): the exporters'
    // `ceil(n / k) * k` done in floats, on a static dim: 8 → ceil(8/3)·3 = 9 ... here used as
    // the padded length of a ConstantOfShape.
    let f32s = |name: &str, v: f32| tensor_f32(name, &[1], &[v]);
    let i64s = |name: &str, v: &[i64]| tensor_i64(name, &[v.len()], v);
    let cast = |name: &str, i: &str, o: &str, to: i64| {
        node("Cast", name, &[i], &[o]).with_attribute(attr_int("to", to))
    };
    let nodes = vec![
        node("Shape", "shape", &["x"], &["s"]),
        node("Gather", "g", &["s", "two"], &["d"]),
        cast("c1", "d", "df", 1),
        node("Div", "div", &["df", "three"], &["q"]),
        node("Ceil", "ceil", &["q"], &["qc"]),
        node("Mul", "mul", &["qc", "threef"], &["p"]),
        cast("c2", "p", "pi", 7),
        node("ConstantOfShape", "cos", &["pi"], &["y"]),
    ];
    let mut m = model(nodes, "y");
    let g = m.graph.as_mut().unwrap();
    g.initializer = vec![i64s("two", &[2]), f32s("three", 3.0), f32s("threef", 3.0)];
    let graph = import_model(&m).unwrap();
    let out = graph.outputs()[0].1;
    assert_eq!(graph.value_type(out).shape.to_vec(), vec![blockfuse_ir::Dim::Known(9)]);
}

/// A concat-form KV cache's shape arithmetic: `total = past_seq + seq` from two `Shape`s,
/// `Range(past_seq, total, 1)` (the new tokens' positions, a symbolic start) and
/// `Concat(past, new)` typed `past_seq+seq`; a symbolic length with delta 2 is refused.
#[test]
fn kv_cache_shape_sums_import() {
    let shape_axis = |name: &str, input: &str| {
        node("Shape", name, &[input], &[&format!("{name}_1")])
            .with_attributes([attr_int("start", 2), attr_int("end", 3)])
    };
    let build = |delta: i64| {
        let one = node("Constant", "delta", &[], &["delta"]).with_attribute(attr_int("value_int", delta));
        let cat = node("Concat", "cat", &["past", "x"], &["present"]).with_attribute(attr_int("axis", 2));
        model_of(
            vec![
                shape_axis("sp", "past"),
                shape_axis("sx", "x"),
                node("Squeeze", "p", &["sp_1"], &["p"]),
                node("Squeeze", "s", &["sx_1"], &["s"]),
                node("Add", "total", &["p", "s"], &["total"]),
                one,
                node("Range", "pos", &["p", "total", "delta"], &["pos"]),
                cat,
            ],
            vec![
                value_info("past", 1, &["batch", "2", "past_seq", "4"]),
                value_info("x", 1, &["batch", "2", "seq", "4"]),
            ],
            vec![
                value_info("pos", 7, &["seq"]),
                value_info("present", 1, &["batch", "2", "past_seq + seq", "4"]),
            ],
        )
    };
    let g = import_model(&build(1)).unwrap();
    g.validate().unwrap();
    assert_eq!(format!("{:?}", g.value_type(g.outputs()[0].1)), "i64[seq]");
    assert_eq!(format!("{:?}", g.value_type(g.outputs()[1].1)), "f32[batch, 2, past_seq+seq, 4]");
    let inputs: HashMap<String, HostTensor> = [
        ("past".to_string(), HostTensor::from_f64(DType::F32, vec![1, 2, 5, 4], &[1.0; 40])),
        ("x".to_string(), HostTensor::from_f64(DType::F32, vec![1, 2, 3, 4], &[2.0; 24])),
    ]
    .into_iter()
    .collect();
    let outs = FallbackBackend::new().run_named(&g, &inputs).unwrap();
    assert_eq!(outs[0].to_i64_vec(), vec![5, 6, 7]);
    assert_eq!(outs[1].dims(), &[1, 2, 8, 4]);
    let e = import_model(&build(2)).unwrap_err().to_string();
    assert!(e.contains("pos") && e.contains("Range of symbolic length seq needs delta 1, got 2"), "{e}");
}

/// `TensorScatter` (opset 24) of a `{B, 2, 5, 3}` cache and a `{B, 2, S, 3}` update along
/// axis 2: linear mode becomes one `slice_update` per batch row, circular mode stays a gather.
fn tensor_scatter_model(batch: usize, seq: usize, mode: &str) -> ModelProto {
    let (b, s) = (batch.to_string(), seq.to_string());
    let n = node("TensorScatter", "write", &["past", "new", "at"], &["present"])
        .with_attribute(attr_string("mode", mode));
    let mut m = model(vec![n], "present");
    m.opset_import[0].version = Some(24);
    let g = m.graph.as_mut().unwrap();
    g.input = vec![
        value_info("past", 1, &[&b, "2", "5", "3"]),
        value_info("new", 1, &[&b, "2", &s, "3"]),
        value_info("at", 7, &[&b]),
    ];
    g.output = vec![value_info("present", 1, &[&b, "2", "5", "3"])];
    m
}

#[test]
fn tensor_scatter_in_linear_mode_is_a_slice_update_per_batch_row() {
    for (batch, seq, mode) in [(1usize, 2usize, "linear"), (3, 2, "linear"), (2, 3, "circular")] {
        let g = import_model(&tensor_scatter_model(batch, seq, mode)).unwrap();
        let updates = g.node_ids().filter(|&id| g.node(id).op.prim_name() == "slice_update").count();
        assert_eq!(updates, if mode == "linear" { batch } else { 0 }, "{batch} {mode}");
        let past: Vec<f64> = (0..batch * 30).map(|i| i as f64).collect();
        let new: Vec<f64> = (0..batch * 6 * seq).map(|i| -(i as f64) - 1.0).collect();
        let at: Vec<i64> = (0..batch as i64).map(|b| [3, 0, 1][b as usize % 3]).collect();
        let inputs = [
            HostTensor::from_f64(DType::F32, vec![batch, 2, 5, 3], &past),
            HostTensor::from_f64(DType::F32, vec![batch, 2, seq, 3], &new),
            HostTensor::from_i64(vec![batch], &at),
        ];
        let y = FallbackBackend::new().run(&g, &inputs).unwrap()[0].to_f64_vec();
        for (i, v) in y.iter().enumerate() {
            let (b, h, p, c) = (i / 30, (i / 15) % 2, (i / 3) % 5, i % 3);
            let t = (p as i64 - at[b]).rem_euclid(if mode == "circular" { 5 } else { i64::MAX });
            let want = if t < seq as i64 { new[((b * 2 + h) * seq + t as usize) * 3 + c] } else { past[i] };
            assert_eq!(*v, want, "{batch} {mode}: element {i}");
        }
    }
    // Linear mode: a write past the end is an error naming the node, not a silent clip.
    let g = import_model(&tensor_scatter_model(1, 2, "linear")).unwrap();
    let inputs = [
        HostTensor::from_f64(DType::F32, vec![1, 2, 5, 3], &[0.0; 30]),
        HostTensor::from_f64(DType::F32, vec![1, 2, 2, 3], &[1.0; 12]),
        HostTensor::from_i64(vec![1], &[4]),
    ];
    let e = FallbackBackend::new().run(&g, &inputs).unwrap_err().to_string();
    assert!(e.contains("slice_update") && e.contains("does not leave room"), "{e}");
}
