//! External data: a model written by `onnx.save_model(save_as_external_data=True)` (with the
//! onnx venv of `scripts/onnx-node-tests.sh`) imports with its weights memory-mapped, not
//! copied, and reproduces numpy's outputs; locations that leave the model's directory are
//! refused.

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::{HostTensor, Op};
use blockfuse_onnx::build::{model, node, opset, value_name};
use blockfuse_onnx::proto::tensor_proto::DataLocation;
use blockfuse_onnx::proto::{GraphProto, ModelProto, StringStringEntryProto, TensorProto};
use blockfuse_onnx::test_data::workspace_root;
use blockfuse_onnx::{import_file, import_model, model::save_model, OnnxError, TestDataSet};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("blockfuse-ext-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn external_data_model_from_onnx_matches_numpy() {
    let root = workspace_root();
    let python = root.join("target/onnx-venv/bin/python");
    if !python.is_file() {
        eprintln!("SKIPPED: no {} (run scripts/onnx-node-tests.sh)", python.display());
        return;
    }
    let dir = scratch("mlp");
    let st = Command::new(&python)
        .arg(root.join("scripts/external-data-model.py"))
        .args(["small".as_ref(), dir.as_os_str()])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(dir.join("weights.bin").is_file());

    let g = import_file(&dir.join("model.onnx")).unwrap();
    let consts: Vec<&HostTensor> = g
        .node_ids()
        .filter_map(|id| match &g.node(id).op {
            Op::Constant(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(consts.len(), 3, "w1, b1, w2");
    assert!(consts.iter().all(|t| t.is_shared()), "weights are borrowed from the map, not copied");

    let ds = TestDataSet::open(dir.join("test_data_set_0")).unwrap();
    let inputs: HashMap<String, HostTensor> = ds.read_inputs().unwrap().into_iter().collect();
    let outs = FallbackBackend::new().run_named(&g, &inputs).unwrap();
    let (_, want) = &ds.read_outputs().unwrap()[0];
    let got = &outs[0];
    assert_eq!(got.dims(), want.dims());
    for (a, b) in got.to_f64_vec().iter().zip(want.to_f64_vec()) {
        assert!((a - b).abs() <= 1e-5 + 1e-5 * b.abs(), "{a} vs {b}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A model `y = x + w` (f32[2]) whose `w` is external data at `location`.
fn model_at(location: &str, offset: Option<&str>, length: Option<&str>) -> ModelProto {
    let mut entries = vec![("location", location)];
    entries.extend(offset.map(|o| ("offset", o)));
    entries.extend(length.map(|l| ("length", l)));
    let w = TensorProto {
        name: Some("w".into()),
        data_type: Some(1),
        dims: vec![2],
        data_location: Some(DataLocation::External as i32),
        external_data: entries
            .into_iter()
            .map(|(k, v)| StringStringEntryProto { key: Some(k.into()), value: Some(v.into()) })
            .collect(),
        ..Default::default()
    };
    let x = TensorProto {
        name: Some("x".into()),
        data_type: Some(1),
        dims: vec![2],
        float_data: vec![1.0, 2.0],
        ..Default::default()
    };
    let graph = GraphProto {
        node: vec![node("Add", "add", &["x", "w"], &["y"])],
        initializer: vec![x, w],
        output: vec![value_name("y")],
        ..Default::default()
    };
    model(9, vec![opset("", 21)], graph)
}

fn write_f32(path: &Path, v: &[f32]) {
    std::fs::write(path, v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
}

/// Imports `m` saved as `dir/model.onnx` and returns the reason of its location error.
#[track_caller]
fn location_error(dir: &Path, m: &ModelProto) -> String {
    save_model(dir.join("model.onnx"), m).unwrap();
    match import_file(&dir.join("model.onnx")) {
        Err(OnnxError::ExternalDataLocation { tensor, reason, .. }) => {
            assert_eq!(tensor, "w");
            reason
        }
        other => panic!("expected ExternalDataLocation, got {other:?}"),
    }
}

#[test]
fn offsets_within_one_file_are_honoured() {
    let dir = scratch("offset");
    write_f32(&dir.join("w.bin"), &[9.0, 10.0, 20.0, 9.0]);
    save_model(dir.join("model.onnx"), &model_at("w.bin", Some("4"), Some("8"))).unwrap();
    let g = import_file(&dir.join("model.onnx")).unwrap();
    let out = FallbackBackend::new().run_named(&g, &HashMap::new()).unwrap();
    assert_eq!(out[0].to_f64_vec(), vec![11.0, 22.0]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn traversing_locations_are_refused() {
    let base = scratch("traverse");
    let dir = base.join("model");
    std::fs::create_dir_all(&dir).unwrap();
    write_f32(&base.join("outside.bin"), &[1.0, 2.0]);

    let r = location_error(&dir, &model_at("../outside.bin", None, None));
    assert!(r.contains("'..'"), "{r}");
    let r = location_error(&dir, &model_at("sub/../../outside.bin", None, None));
    assert!(r.contains("'..'"), "{r}");
    let r = location_error(&dir, &model_at("/etc/passwd", None, None));
    assert!(r.contains("absolute"), "{r}");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(base.join("outside.bin"), dir.join("link.bin")).unwrap();
        let r = location_error(&dir, &model_at("link.bin", None, None));
        assert!(r.contains("outside the model's directory"), "{r}");
        std::os::unix::fs::symlink(&base, dir.join("up")).unwrap();
        let r = location_error(&dir, &model_at("up/outside.bin", None, None));
        assert!(r.contains("outside the model's directory"), "{r}");
    }
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn bad_offsets_lengths_and_files_are_errors() {
    let dir = scratch("bad");
    write_f32(&dir.join("w.bin"), &[1.0, 2.0]);
    let r = location_error(&dir, &model_at("w.bin", Some("4"), None));
    assert!(r.contains("past the end of the file (8 bytes)"), "{r}");
    let r = location_error(&dir, &model_at("w.bin", None, Some("4")));
    assert!(r.contains("length 4, but f32[2] needs 8 bytes"), "{r}");
    let r = location_error(&dir, &model_at("w.bin", Some("-1"), None));
    assert!(r.contains("offset '-1' is not a byte count"), "{r}");
    let r = location_error(&dir, &model_at("missing.bin", None, None));
    assert!(r.contains("cannot open"), "{r}");
    let r = location_error(&dir, &model_at("", None, None));
    assert!(r.contains("no location"), "{r}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_a_directory_external_data_is_an_error() {
    let e = import_model(&model_at("w.bin", None, None)).unwrap_err();
    assert!(matches!(e, OnnxError::ExternalData { ref location, .. } if location == "w.bin"), "{e:?}");
}
