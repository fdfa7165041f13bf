//! The block dispatch protocol in the fallback backend: lowerings, declining to the
//! fallback, errors inside lowerings and fallbacks.

mod common;

use blockfuse_fallback::{EvalError, FallbackBackend};
use blockfuse_ir::blocks::{RmsNorm, SwiGlu};
use blockfuse_ir::{DType, HostTensor, TensorType};
use blockfuse_testkit::blocks::IntRatio;
use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn rms_graph(x: &HostTensor) -> blockfuse_ir::Graph {
    graph_with(&[x], |b, v| b.block(RmsNorm::new(1e-6), &[v[0]]).unwrap())
}

#[test]
fn a_lowering_replaces_the_fallback() {
    let x = HostTensor::from_f32(vec![2, 4], &[1.0; 8]);
    let g = rms_graph(&x);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut be = FallbackBackend::new();
    let c = calls.clone();
    be.register::<RmsNorm>(move |blk, call, _fb| {
        c.fetch_add(1, Ordering::SeqCst);
        assert_eq!(blk.eps, 1e-6);
        assert_eq!(call.outputs[0], TensorType::known(DType::F32, &[2, 4]));
        Ok(vec![HostTensor::from_f32(vec![2, 4], &[7.0; 8])])
    });
    let out = be.run(&g, std::slice::from_ref(&x)).unwrap();
    assert_eq!(out[0].to_f64_vec(), vec![7.0; 8]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Unregistered again: the fallback runs.
    be.unregister::<RmsNorm>();
    assert!((be.run(&g, &[x]).unwrap()[0].get_f64(0) - 1.0).abs() < 1e-6);
}

#[test]
fn a_lowering_may_decline() {
    let mut rng = rng(3);
    let (x, _) = random(&mut rng, DType::F32, &[3, 16]);
    let g = rms_graph(&x);
    let want = FallbackBackend::new().run(&g, std::slice::from_ref(&x)).unwrap();
    let mut be = FallbackBackend::new();
    be.register::<RmsNorm>(|_, call, fb| fb.run(call.args));
    assert_eq!(be.run(&g, &[x]).unwrap(), want);
}

#[test]
fn lowering_errors_name_the_block_node() {
    let x = HostTensor::from_f32(vec![1, 4], &[1.0; 4]);
    let g = rms_graph(&x);
    let mut be = FallbackBackend::new();
    be.register::<RmsNorm>(|_, _, _| Err(EvalError::custom("no kernel for this shape").into()));
    let e = be.run(&g, std::slice::from_ref(&x)).unwrap_err();
    assert!(matches!(&e, EvalError::InBlock { op, .. } if op == "block.rms_norm"), "{e:?}");
    assert_eq!(e.root(), &EvalError::custom("no kernel for this shape"));
    // A lowering whose result does not have the declared type.
    be.register::<RmsNorm>(|_, _, _| Ok(vec![HostTensor::from_f32(vec![4], &[0.0; 4])]));
    let e = be.run(&g, &[x]).unwrap_err().to_string();
    assert!(e.contains("output 0 is f32[4], the graph declares f32[1, 4]"), "{e}");
}

#[test]
fn errors_inside_a_fallback_name_both_nodes() {
    let a = HostTensor::from_i64(vec![2], &[4, 5]);
    let z = HostTensor::from_i64(vec![2], &[2, 0]);
    let g = graph_with(&[&a, &z], |b, v| b.block(IntRatio, &[v[0], v[1]]).unwrap());
    let e = FallbackBackend::new().run(&g, &[a, z]).unwrap_err();
    let EvalError::InBlock { op, source, .. } = &e else { panic!("{e:?}") };
    assert_eq!(op, "block.int_ratio");
    assert!(
        matches!(&**source, EvalError::Node { op, reason, .. } if op == "div" && reason == "integer division by zero")
    );
    assert!(e.to_string().contains("int_ratio.fallback/div"), "{e}");
}

#[test]
fn identical_blocks_share_one_fallback_build() {
    // Two layers of the same block on the same types: both run (and agree).
    let mut rng = rng(4);
    let (g1, _) = random(&mut rng, DType::F16, &[4, 8]);
    let (u1, _) = random(&mut rng, DType::F16, &[4, 8]);
    let g = graph_with(&[&g1, &u1], |b, v| {
        let y = b.block(SwiGlu::new(), &[v[0], v[1]]).unwrap()[0];
        let z = b.block(SwiGlu::new(), &[v[0], v[1]]).unwrap()[0];
        vec![y, z]
    });
    let out = FallbackBackend::new().run(&g, &[g1, u1]).unwrap();
    assert_eq!(out[0], out[1]);
}
