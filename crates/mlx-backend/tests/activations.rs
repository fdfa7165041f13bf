//! SwiGLU, GeGLU and GELU on MLX (lowered and fallback subgraph) against the reference
//! evaluator, plus graphs of several blocks with and without lowerings.

mod common;

use blockfuse_ir::blocks::{GeGlu, Gelu, GeluKind, MaskKind, RmsNorm, Rope, Sdpa, SwiGlu};
use blockfuse_ir::{Builder, DType, Dim, Graph, TensorType};
use blockfuse_mlx::lowerings;
use common::*;

const DTYPES: [DType; 4] = [DType::F32, DType::F16, DType::BF16, DType::F64];

fn act_tol(d: DType) -> f64 {
    // f64: MLX's f64 erf/tanh/exp are only f32-accurate on the CPU.
    tol(1e-6, 1e-3, 1e-2, d).max(if d == DType::F64 { 1e-6 } else { 0.0 })
}

#[test]
fn swiglu_and_geglu() {
    for d in DTYPES {
        let g = rand(d, &[3, 5, 64], 1, 4.0);
        let u = rand(d, &[3, 5, 64], 2, 2.0);
        check_block(
            lowerings::swiglu,
            &SwiGlu::new(),
            &[g.clone(), u.clone()],
            act_tol(d),
            false,
            &format!("swiglu {d}"),
        );
        for approximate in [false, true] {
            check_block(
                lowerings::geglu,
                &GeGlu::new(approximate),
                &[g.clone(), u.clone()],
                act_tol(d),
                false,
                &format!("geglu {d} approximate={approximate}"),
            );
        }
    }
    // mixed dtypes: f16 gate, bf16 up → f32
    let g = rand(DType::F16, &[4, 16], 3, 4.0);
    let u = rand(DType::BF16, &[4, 16], 4, 2.0);
    check_block(lowerings::swiglu, &SwiGlu::new(), &[g.clone(), u.clone()], 1e-6, false, "swiglu f16·bf16");
    check_block(lowerings::geglu, &GeGlu::new(true), &[g, u], 1e-6, false, "geglu f16·bf16");
}

#[test]
fn gelu_kinds() {
    for d in DTYPES {
        let x = rand(d, &[2, 7, 33], 10, 5.0);
        for kind in [GeluKind::Exact, GeluKind::Tanh, GeluKind::Quick] {
            check_block(
                lowerings::gelu,
                &Gelu::new(kind),
                std::slice::from_ref(&x),
                act_tol(d),
                false,
                &format!("gelu {kind:?} {d}"),
            );
        }
    }
}

/// A small decoder-like graph: rms_norm → rope → sdpa (causal) → swiglu, with symbolic
/// batch and sequence.
fn layer(d: DType) -> Graph {
    let (b, t) = (Dim::sym("batch"), Dim::sym("seq"));
    let (h, dh) = (4usize, 16usize);
    let mut g = Graph::new();
    let mut bld = Builder::new(&mut g);
    let x = bld.input("x", TensorType::new(d, [b.clone(), Dim::Known(h), t.clone(), Dim::Known(dh)]));
    let w = bld.input("w", TensorType::known(d, &[dh]));
    let n = bld.block(RmsNorm::new(1e-6), &[x, w]).unwrap()[0];
    let r = bld.block(Rope::new(dh, 1e4), &[n]).unwrap()[0];
    let a = bld.block(Sdpa::new(Sdpa::default_scale(dh), MaskKind::Causal), &[r, r, n]).unwrap()[0];
    let y = bld.block(SwiGlu::new(), &[a, x]).unwrap()[0];
    let z = bld.block(Gelu::new(GeluKind::Tanh), &[y]).unwrap()[0];
    g.add_output("y", y);
    g.add_output("z", z);
    g
}

#[test]
fn a_layer_with_and_without_lowerings() {
    for d in [DType::F32, DType::F16, DType::BF16] {
        let g = layer(d);
        for (b, t) in [(1, 1), (2, 9)] {
            let inputs = [rand(d, &[b, 4, t, 16], 20, 1.0), rand(d, &[16], 21, 1.0)];
            let want = reference(&g, &inputs);
            let fused = mlx().run(&g, &inputs).unwrap();
            let plain = mlx_plain().run(&g, &inputs).unwrap();
            // several blocks chained: allow a few roundings more than one block
            let t = 4.0 * tol(2e-5, 1e-3, 1e-2, d);
            for i in 0..2 {
                assert_close(&fused[i], &want[i], t, &format!("{d} B={b} T={t}: fused output {i}"));
                assert_close(&plain[i], &want[i], t, &format!("{d} B={b} T={t}: fallback output {i}"));
            }
        }
    }
}

#[test]
fn unregistering_one_lowering_runs_its_fallback() {
    let g = layer(DType::F32);
    let inputs = [rand(DType::F32, &[2, 4, 5, 16], 30, 1.0), rand(DType::F32, &[16], 31, 1.0)];
    let want = reference(&g, &inputs);
    let mut m = mlx();
    m.unregister::<Sdpa>();
    assert!(!m.lowerings().has(&Sdpa::new(1.0, MaskKind::None)));
    assert!(m.lowerings().has(&RmsNorm::new(1e-6)));
    let got = m.run(&g, &inputs).unwrap();
    assert_close(&got[0], &want[0], 1e-5, "sdpa unregistered");
}
