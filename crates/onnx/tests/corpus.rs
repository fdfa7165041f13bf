//! Tests over real models: the project's corpus of exported transformers
//! (`shared/corpus/*/model.onnx` with `test_data_set_*`) and, when generated, the ONNX
//! operator conformance tests (`target/onnx-node-tests`, from scripts/onnx-node-tests.sh).
//!
//! Each test skips, loudly, when its data is absent.

mod common;

use blockfuse_onnx::functions::local_function_calls;
use blockfuse_onnx::proto::{tensor_shape_proto::dimension::Value as Dim, type_proto, ModelProto};
use blockfuse_onnx::tensor::dtype_from_onnx;
use blockfuse_onnx::test_data::list_test_data_sets;
use blockfuse_onnx::{inline_functions, load_model, tensor_from_proto, OnnxError, TestDataSet};
use common::{corpus_dir, model_dirs, node_tests_dir};
use std::collections::{BTreeMap, HashSet};

/// Decodes every initializer and every tensor-valued attribute of the main graph.
fn decode_all_tensors(model: &ModelProto) -> Vec<Result<(), OnnxError>> {
    let g = model.graph.as_ref().unwrap();
    let attrs = g.node.iter().flat_map(|n| &n.attribute);
    let tensors = g.initializer.iter().chain(attrs.flat_map(|a| a.t.iter().chain(&a.tensors)));
    tensors.map(|t| tensor_from_proto(t).map(|_| ())).collect()
}

#[test]
fn corpus_models_parse_and_inline() {
    let Some(corpus) = corpus_dir() else { return };
    let dirs = model_dirs(&corpus);
    assert!(!dirs.is_empty(), "no model.onnx under {}", corpus.display());
    let mut total_nodes = 0;
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy();
        let mut model = load_model(dir.join("model.onnx")).unwrap();
        let before = model.graph.as_ref().unwrap().node.len();
        let stats = inline_functions(&mut model).unwrap();
        let g = model.graph.as_ref().unwrap();
        assert_eq!(local_function_calls(&model), 0, "{name}");
        assert!(model.functions.is_empty(), "{name}: functions left after inlining");
        assert_eq!((stats.nodes_before, stats.nodes_after), (before, g.node.len()));
        assert!(!g.node.is_empty(), "{name}");
        assert!(g.node.iter().all(|n| !n.has_subgraph()), "{name}: control flow");
        for r in decode_all_tensors(&model) {
            r.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let opset = blockfuse_onnx::model::default_opset_version(&model);
        eprintln!(
            "{name:34} opset {opset:?}: {before} nodes, {} calls inlined, {} nodes, {} initializers",
            stats.calls_inlined,
            g.node.len(),
            g.initializer.len()
        );
        total_nodes += g.node.len();
    }
    eprintln!("{} corpus models, {total_nodes} nodes after inlining", dirs.len());
}

#[test]
fn corpus_test_data_matches_graph_signatures() {
    let Some(corpus) = corpus_dir() else { return };
    let mut files = 0;
    for dir in model_dirs(&corpus) {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let model = load_model(dir.join("model.onnx")).unwrap();
        let g = model.graph.as_ref().unwrap();
        let initializers: HashSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
        let inputs: Vec<_> = g.input.iter().filter(|v| !initializers.contains(v.name())).collect();
        let sets = list_test_data_sets(&dir).unwrap();
        assert!(!sets.is_empty(), "{name}: no test data");
        for set in sets {
            let set = TestDataSet::open(&set).unwrap();
            let what = format!("{}", set.dir.display());
            for (values, declared) in [
                (set.read_inputs().unwrap(), &inputs),
                (set.read_outputs().unwrap(), &g.output.iter().collect()),
            ] {
                assert_eq!(values.len(), declared.len(), "{what}");
                for ((got_name, t), vi) in values.iter().zip(declared.iter()) {
                    assert_eq!(got_name, vi.name(), "{what}");
                    let Some(type_proto::Value::TensorType(tt)) = vi.r#type.as_ref().unwrap().value.as_ref()
                    else {
                        panic!("{what}: {} is not a tensor", vi.name());
                    };
                    assert_eq!(Some(t.dtype()), dtype_from_onnx(tt.elem_type()), "{what}: {}", vi.name());
                    let dims = &tt.shape.as_ref().unwrap().dim;
                    assert_eq!(t.dims().len(), dims.len(), "{what}: {}", vi.name());
                    for (&got, d) in t.dims().iter().zip(dims) {
                        if let Some(Dim::DimValue(v)) = d.value {
                            assert_eq!(got as i64, v, "{what}: {}", vi.name());
                        }
                    }
                    files += 1;
                }
            }
        }
    }
    eprintln!("{files} test data tensors decoded and checked");
}

#[test]
fn onnx_node_tests_decode() {
    let Some(dir) = node_tests_dir() else { return };
    let mut unsupported: BTreeMap<String, usize> = BTreeMap::new();
    let (mut models, mut pbs) = (0, 0);
    for case in model_dirs(&dir) {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let mut model = load_model(case.join("model.onnx")).unwrap();
        inline_functions(&mut model).unwrap();
        let results = decode_all_tensors(&model);
        let pb_results = list_test_data_sets(&case).unwrap().into_iter().flat_map(|set| {
            let set = TestDataSet::open(set).unwrap();
            let files = set.inputs.into_iter().chain(set.outputs);
            files.map(|f| blockfuse_onnx::read_tensor_pb(f).map(|_| ())).collect::<Vec<_>>()
        });
        for (i, r) in results.into_iter().map(|r| (false, r)).chain(pb_results.map(|r| (true, r))) {
            pbs += usize::from(i);
            match r {
                Ok(()) => {}
                Err(OnnxError::UnsupportedDtype { data_type, .. }) => {
                    *unsupported
                        .entry(blockfuse_onnx::tensor::data_type_name(data_type).into())
                        .or_default() += 1;
                }
                Err(e) => panic!("{name}: {e}"),
            }
        }
        models += 1;
    }
    eprintln!("{models} node-test models, {pbs} .pb files; unsupported element types: {unsupported:?}");
    assert!(models > 1000, "expected the full node-test set in {}", dir.display());
}
