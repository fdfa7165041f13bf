//! Shared helpers for the rule tests: graph builders in exporter spellings, optimization
//! with before/after dumps, and value checks through the fallback evaluator.
#![allow(dead_code)]

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::*;
use blockfuse_patterns::{default_rules, optimize, Report};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

pub fn bsd(d: usize) -> TensorType {
    TensorType::new(DType::F32, [Dim::sym("batch"), Dim::sym("seq"), Dim::Known(d)])
}

pub fn weight(b: &mut Builder<'_>, dtype: DType, dims: &[usize], seed: u64) -> Value {
    let mut rng = SmallRng::seed_from_u64(seed);
    let n: usize = dims.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
    b.constant(HostTensor::from_f64(dtype, dims.to_vec(), &v))
}

/// Optimizes a copy; returns (before dump, after dump, report, optimized graph).
pub fn fuse(g: &Graph) -> (String, String, Report, Graph) {
    let before = text::dump(g).unwrap();
    let mut opt = g.clone();
    let report = optimize(&mut opt, &default_rules()).unwrap();
    opt.validate().unwrap();
    (before, text::dump(&opt).unwrap(), report, opt)
}

/// The snapshot text of a rewrite: the graph before and after.
pub fn snapshot_text(before: &str, after: &str) -> String {
    format!("{before}--- after ---\n{after}")
}

/// Random inputs for `g` (symbols bound to 3), from the test kit.
pub fn random_inputs(g: &Graph, seed: u64) -> Vec<HostTensor> {
    blockfuse_testkit::random_inputs(g, 3, seed)
}

/// Asserts that `a` and `b` compute the same outputs on random inputs (max-abs `tol`).
pub fn assert_same_values(a: &Graph, b: &Graph, tol: f64) {
    let inputs = random_inputs(a, 11);
    let fb = FallbackBackend::new();
    let x = fb.run(a, &inputs).unwrap();
    let y = fb.run(b, &inputs).unwrap();
    for (p, q) in x.iter().zip(&y) {
        assert_eq!(p.dims(), q.dims());
        let err = p.to_f64_vec().iter().zip(q.to_f64_vec()).map(|(u, v)| (u - v).abs()).fold(0.0, f64::max);
        assert!(err <= tol, "outputs differ by {err} (tolerance {tol})");
    }
}

/// Composed RMSNorm in the Llama dynamo spelling: pow, mean, add eps, sqrt, reciprocal, mul, mul w.
pub fn rms_norm_composed(
    b: &mut Builder<'_>,
    x: Value,
    w: Option<Value>,
    eps: Value,
    exponent: f64,
    axis: i64,
) -> Value {
    let e = b.scalar_like(x, exponent);
    let sq = b.binary(BinaryOp::Pow, x, e).unwrap();
    let ms = b.reduce(ReduceOp::Mean, sq, &[axis], true).unwrap();
    let a = b.add2(ms, eps).unwrap();
    let s = b.unary(UnaryOp::Sqrt, a).unwrap();
    let r = b.unary(UnaryOp::Reciprocal, s).unwrap();
    let y = b.mul(x, r).unwrap();
    match w {
        Some(w) => b.mul(w, y).unwrap(),
        None => y,
    }
}
