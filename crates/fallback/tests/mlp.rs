//! GELU, SwiGLU and GeGLU against f64 references written here.

mod common;

use blockfuse_ir::blocks::{GeGlu, Gelu, GeluKind, SwiGlu};
use blockfuse_ir::{DType, TensorType};
use common::*;

fn gelu_ref(x: f64, kind: GeluKind) -> f64 {
    match kind {
        GeluKind::Exact => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
        GeluKind::Tanh => {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
        }
        GeluKind::Quick => x / (1.0 + (-1.702 * x).exp()),
    }
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

fn tol(d: DType) -> f64 {
    match d {
        DType::F32 => 1e-6,
        DType::F16 => 1e-3,
        _ => 1e-2,
    }
}

fn wide(
    rng: &mut rand::rngs::SmallRng,
    dtype: DType,
    dims: &[usize],
) -> (blockfuse_ir::HostTensor, Vec<f64>) {
    let n = dims.iter().product();
    tensor(dtype, dims, &uniform(rng, n, -4.0, 4.0))
}

#[test]
fn gelu_all_kinds() {
    let mut rng = rng(20);
    for dtype in FLOATS {
        let (x, xv) = wide(&mut rng, dtype, &[3, 50]);
        for kind in [GeluKind::Exact, GeluKind::Tanh, GeluKind::Quick] {
            let out = run_block(Gelu::new(kind), &[&x]);
            assert_eq!(out[0].dtype(), dtype);
            let want: Vec<f64> = xv.iter().map(|&v| gelu_ref(v, kind)).collect();
            assert_close(&out[0], &want, tol(dtype), &format!("gelu {kind:?} {dtype}"));
        }
    }
}

#[test]
fn swiglu_and_geglu() {
    let mut rng = rng(21);
    for dtype in FLOATS {
        let (g, gv) = wide(&mut rng, dtype, &[2, 5, 24]);
        let (u, uv) = random(&mut rng, dtype, &[2, 5, 24]);
        let out = run_block(SwiGlu::new(), &[&g, &u]);
        let want: Vec<f64> = gv.iter().zip(&uv).map(|(a, b)| silu(*a) * b).collect();
        assert_close(&out[0], &want, tol(dtype), &format!("swiglu {dtype}"));
        for approximate in [false, true] {
            let kind = if approximate { GeluKind::Tanh } else { GeluKind::Exact };
            let out = run_block(GeGlu::new(approximate), &[&g, &u]);
            let want: Vec<f64> = gv.iter().zip(&uv).map(|(a, b)| gelu_ref(*a, kind) * b).collect();
            assert_close(&out[0], &want, tol(dtype), &format!("geglu approximate={approximate} {dtype}"));
        }
    }
}

#[test]
fn mlp_errors() {
    let f = |d: &[usize]| TensorType::known(DType::F32, d);
    let e = block_error(SwiGlu::new(), &[f(&[2, 8]), f(&[2, 9])]);
    assert!(e.contains("swiglu: gate and up shapes differ: [2, 8] vs [2, 9]"), "{e}");
    let e = block_error(GeGlu::new(true), &[f(&[2, 8])]);
    assert!(e.contains("geglu: expects operands (gate, up), got 1 operand(s)"), "{e}");
    let e = block_error(Gelu::new(GeluKind::Exact), &[TensorType::known(DType::I32, &[4])]);
    assert!(e.contains("gelu: x must be a float tensor, got i32[4]"), "{e}");
}
