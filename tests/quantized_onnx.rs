//! Quantized matmuls from ONNX against ONNX Runtime: models quantized by ORT's own weight-only
//! quantizer (`MatMulNBitsQuantizer`: `com.microsoft` `MatMulNBits`, 4 and 8 bits, blocks of
//! 32 and 64, symmetric and asymmetric, and its QDQ form `DequantizeLinear(block_size)` →
//! `MatMul`) and `DequantizeLinear` models made with onnx.helper (int4/uint4/int8/uint8,
//! before `MatMul` and `Gemm(transB)`), and embedding tables quantized by the same quantizer
//! (`com.microsoft` `GatherBlockQuantized`, int4 and uint4), written with ORT's outputs by
//! `tests/quantized/make_models.py`. Each imports, fuses into the expected number of
//! `quantized_matmul` / `quantized_embedding` blocks (or names the near-miss reason it did not), and matches ORT on
//! the fallback evaluator and on MLX's CPU backend, as imported and as optimized.
//!
//! Needs a Python with onnx, onnxruntime and onnx-ir (`BLOCKFUSE_PYTHON`, else
//! `target/onnx-venv/bin/python`, which `scripts/onnx-node-tests.sh` makes); skipped loudly
//! without one, except under `CI`, where the two packages are installed into the venv.

use blockfuse::compare::{compare, Tolerance};
use blockfuse::ir::blocks::{QuantizedEmbedding, QuantizedMatmul};
use blockfuse::ir::Op;
use blockfuse::onnx::test_data::TestDataSet;
use blockfuse::patterns::{default_rules, optimize};
use blockfuse::run_backend;
use blockfuse_testkit::python::python_with;
use std::path::{Path, PathBuf};
use std::process::Command;

fn make_models() -> Option<PathBuf> {
    let py = python_with(&[("onnxruntime", "onnxruntime"), ("onnx_ir", "onnx-ir")])?;
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("quantized-onnx");
    let _ = std::fs::remove_dir_all(&out);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/quantized/make_models.py");
    let o = Command::new(&py).arg(&script).arg(&out).output().unwrap();
    assert!(o.status.success(), "make_models.py failed:\n{}", String::from_utf8_lossy(&o.stderr));
    eprintln!("{}", String::from_utf8_lossy(&o.stdout));
    Some(out)
}

#[test]
fn onnx_runtime_quantized_models_fuse_and_match_on_both_backends() {
    let Some(dir) = make_models() else { return };
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    assert_eq!(cases.len(), 18, "cases written: {cases:?}");
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let expect: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(case.join("expect.json")).unwrap()).unwrap();
        let set = TestDataSet::open(case.join("test_data_set_0")).unwrap();
        let inputs: Vec<_> = set.read_inputs().unwrap().into_iter().map(|(_, t)| t).collect();
        let want = set.read_outputs().unwrap().remove(0).1;
        let imported = blockfuse::onnx::import_file(&case.join("model.onnx")).unwrap();
        let mut g = imported.clone();
        let report = optimize(&mut g, &default_rules()).unwrap();
        let fused = g
            .node_ids()
            .filter(|&id| {
                matches!(&g.node(id).op, Op::Block(b) if b.is::<QuantizedMatmul>() || b.is::<QuantizedEmbedding>())
            })
            .count();
        assert_eq!(fused as u64, expect["fused"].as_u64().unwrap(), "{name}: {:?}", report.near_misses);
        if let Some(reason) = expect["near_miss"].as_str() {
            let m = report.near_misses.iter().find(|m| m.rule == "quantized_matmul");
            assert!(
                m.is_some_and(|m| m.reason.contains(reason)),
                "{name}: near-misses {:?}",
                report.near_misses
            );
        }
        for (graph, which) in [(&imported, "imported"), (&g, "optimized")] {
            for backend in ["fallback", "mlx:cpu"] {
                let got = run_backend(graph, &inputs, backend).unwrap().remove(0);
                let c = compare(&got, &want, Tolerance { rtol: 1e-4, atol: 1e-4 });
                assert_eq!(c.bad, 0, "{name} {which} on {backend}: {}", c.summary());
                eprintln!("{name:22} {which:9} {backend:8} max |diff| {:.2e}", c.max_abs);
            }
        }
    }
}
