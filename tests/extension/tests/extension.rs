//! The extension crate against blockfuse's public API: its own block through a lowering and
//! through its fallback, RmsNorm overrides, and JSON after registration.

mod common;

use blockfuse_extension_test::{
    clamped_gelu_lowering, register, register_rms_norm_kernel, register_rms_norm_spy, ClampedGelu,
    KernelStats,
};
use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::blocks::{builtin_registry, RmsNorm};
use blockfuse_ir::{json, text, Builder, DType, Dim, Graph, HostTensor, IrError, TensorType};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{clamped_graph, ramp};

fn max_abs(a: &HostTensor, b: &HostTensor) -> f64 {
    a.to_f64_vec().iter().zip(b.to_f64_vec()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn custom_block_runs_via_its_lowering_and_via_its_fallback() {
    for (dtype, tol) in [(DType::F32, 1e-6), (DType::F16, 1e-3), (DType::BF16, 1e-2)] {
        let g = clamped_graph(dtype);
        let x = ramp(dtype, 5);
        // Nothing registered: the fallback subgraph (with its nested GELU block) runs.
        let via_fallback = FallbackBackend::new().run(&g, std::slice::from_ref(&x)).unwrap();
        // The lowering.
        let calls = Arc::new(AtomicUsize::new(0));
        let mut be = FallbackBackend::new();
        let c = calls.clone();
        be.register::<ClampedGelu>(move |blk, call, fb| {
            c.fetch_add(1, Ordering::SeqCst);
            clamped_gelu_lowering(blk, call, fb)
        });
        let via_lowering = be.run(&g, std::slice::from_ref(&x)).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the lowering ran");
        assert_eq!(via_lowering[0].dtype(), dtype);
        let d = max_abs(&via_fallback[0], &via_lowering[0]);
        assert!(d <= tol, "{dtype}: lowering and fallback differ by {d:e}");
        // Clamped at 1.5: GELU(6) ≈ 6 is cut, GELU(−6) ≈ 0 is not.
        let y = via_lowering[0].to_f64_vec();
        assert_eq!(*y.last().unwrap(), 1.5);
        assert!(y.iter().all(|v| (-1.5..=1.5).contains(v)));
    }
}

#[test]
fn invalid_limit_is_rejected() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::known(DType::F32, &[2]));
    let e = b.block(ClampedGelu { limit: -1.0 }, &[x]).unwrap_err();
    assert!(e.to_string().contains("clamped_gelu: limit must be finite and > 0, got -1"), "{e}");
}

fn rms_graph(d: usize) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::new(DType::F32, [Dim::sym("n"), Dim::Known(d)]));
    let w = b.input("w", TensorType::known(DType::F32, &[d]));
    let y = b.block(RmsNorm::new(1e-6), &[x, w]).unwrap()[0];
    // A second norm of the same output, to see the override called once per block node.
    let z = b.block(RmsNorm::new(1e-6), &[y]).unwrap()[0];
    g.add_output("z", z);
    g
}

fn rms_inputs(d: usize) -> Vec<HostTensor> {
    let x: Vec<f64> = (0..3 * d).map(|i| ((i * 7) % 11) as f64 / 5.0 - 1.0).collect();
    let w: Vec<f64> = (0..d).map(|i| 0.5 + i as f64 / d as f64).collect();
    vec![HostTensor::from_f64(DType::F32, vec![3, d], &x), HostTensor::from_f64(DType::F32, vec![d], &w)]
}

#[test]
fn rms_norm_override_is_used() {
    let g = rms_graph(32);
    let inputs = rms_inputs(32);
    let want = FallbackBackend::new().run(&g, &inputs).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut be = FallbackBackend::new();
    register_rms_norm_spy(&mut be, calls.clone());
    let got = be.run(&g, &inputs).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one call per rms_norm node");
    assert_eq!(got, want, "the spy delegates to the fallback");
}

#[test]
fn rms_norm_override_declines_for_some_shapes() {
    let stats = Arc::new(KernelStats::default());
    let mut be = FallbackBackend::new();
    register_rms_norm_kernel(&mut be, 8, stats.clone());
    // Last axis 32: the kernel runs.
    let inputs = rms_inputs(32);
    let got = be.run(&rms_graph(32), &inputs).unwrap();
    let want = FallbackBackend::new().run(&rms_graph(32), &inputs).unwrap();
    assert_eq!(stats.fused.load(Ordering::SeqCst), 2);
    assert_eq!(stats.declined.load(Ordering::SeqCst), 0);
    assert!(max_abs(&got[0], &want[0]) <= 1e-6);
    // Last axis 33: it declines at run time and the fallback gives the answer.
    let inputs = rms_inputs(33);
    let got = be.run(&rms_graph(33), &inputs).unwrap();
    let want = FallbackBackend::new().run(&rms_graph(33), &inputs).unwrap();
    assert_eq!(stats.fused.load(Ordering::SeqCst), 2);
    assert_eq!(stats.declined.load(Ordering::SeqCst), 2);
    assert_eq!(got, want);
}

#[test]
fn json_round_trip_after_registration() {
    let g = clamped_graph(DType::F32);
    let doc = json::to_json(&g).unwrap();
    assert!(doc.contains("block.clamped_gelu"), "{doc}");
    // A registry that does not know the kind refuses the document, naming the kind.
    let e = json::from_json_with(&doc, &builtin_registry()).unwrap_err();
    assert!(matches!(&e, IrError::UnknownBlock { kind, .. } if kind == "clamped_gelu"), "{e}");
    // After registration the process-wide registry reads it back.
    register();
    let back = json::from_json(&doc).unwrap();
    assert_eq!(text::dump(&back).unwrap(), text::dump(&g).unwrap());
    assert_eq!(json::to_json(&back).unwrap(), doc);
    let blk = back.node_ids().find_map(|id| back.node(id).op.as_block().cloned()).expect("a block node");
    assert_eq!(blk.downcast_ref::<ClampedGelu>(), Some(&ClampedGelu { limit: 1.5 }));
    // And it runs the same.
    let x = ramp(DType::F32, 2);
    let be = FallbackBackend::new();
    assert_eq!(be.run(&back, std::slice::from_ref(&x)).unwrap(), be.run(&g, &[x]).unwrap());
}
