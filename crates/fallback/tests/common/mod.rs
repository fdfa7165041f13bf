//! Helpers shared by the test files: seeded random data, one-block graphs, comparisons.
#![allow(dead_code)]

use blockfuse_fallback::{EvalError, FallbackBackend};
use blockfuse_ir::{Block, Builder, DType, Graph, HostTensor, TensorType, Value};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A seeded generator.
pub fn rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

/// `n` values uniform in `[lo, hi)`.
pub fn uniform(rng: &mut SmallRng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| rng.gen_range(lo..hi)).collect()
}

/// `n` standard normal values (Box–Muller).
pub fn normal(rng: &mut SmallRng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let u: f64 = rng.gen_range(f64::EPSILON..1.0);
            let v: f64 = rng.gen_range(0.0..1.0);
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        })
        .collect()
}

/// A tensor of `dtype` from f64 values, and the values it actually holds (rounded), which is
/// what the f64 references read.
pub fn tensor(dtype: DType, dims: &[usize], values: &[f64]) -> (HostTensor, Vec<f64>) {
    let t = HostTensor::from_f64(dtype, dims.to_vec(), values);
    let held = t.to_f64_vec();
    (t, held)
}

/// A random uniform `[-1, 1)` tensor of `dtype` and its held values.
pub fn random(rng: &mut SmallRng, dtype: DType, dims: &[usize]) -> (HostTensor, Vec<f64>) {
    let n = dims.iter().product();
    tensor(dtype, dims, &uniform(rng, n, -1.0, 1.0))
}

/// A graph whose inputs have the types of `args` (named `arg0`, ...), built by `body`.
pub fn graph_with(
    args: &[&HostTensor],
    body: impl FnOnce(&mut Builder<'_>, &[Value]) -> Vec<Value>,
) -> Graph {
    let mut g = Graph::new();
    let outs = {
        let mut b = Builder::new(&mut g);
        let vals: Vec<Value> = args
            .iter()
            .enumerate()
            .map(|(i, t)| b.input(&format!("arg{i}"), TensorType::known(t.dtype(), t.dims())))
            .collect();
        body(&mut b, &vals)
    };
    for (i, v) in outs.into_iter().enumerate() {
        g.add_output(&format!("out{i}"), v);
    }
    g.validate().expect("valid graph");
    g
}

/// Runs a graph with one block node over `args` through the fallback backend.
pub fn run_block(block: impl Block + Clone + 'static, args: &[&HostTensor]) -> Vec<HostTensor> {
    let g = graph_with(args, |b, xs| b.block(block.clone(), xs).expect("block type-checks"));
    let owned: Vec<HostTensor> = args.iter().map(|t| (*t).clone()).collect();
    FallbackBackend::new().run(&g, &owned).expect("runs")
}

/// The message of the error a block gives when built over operands of these types.
pub fn block_error(block: impl Block + 'static, types: &[TensorType]) -> String {
    match blockfuse_ir::block::block_graph(std::sync::Arc::new(block), types) {
        Ok(_) => panic!("expected the block to reject {types:?}"),
        Err(e) => e.to_string(),
    }
}

/// Runs `g` and returns the error.
pub fn run_error(g: &Graph, inputs: &[HostTensor]) -> EvalError {
    match FallbackBackend::new().run(g, inputs) {
        Ok(out) => panic!("expected an error, got {out:?}"),
        Err(e) => e,
    }
}

/// The largest absolute difference (NaN counts as infinite).
pub fn max_abs(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    got.iter()
        .zip(want)
        .map(|(a, b)| {
            let d = (a - b).abs();
            if d.is_nan() {
                f64::INFINITY
            } else {
                d
            }
        })
        .fold(0.0, f64::max)
}

/// Asserts `got` (upcast to f64) is within `tol` of `want`, max-abs, naming the case.
pub fn assert_close(got: &HostTensor, want: &[f64], tol: f64, case: &str) {
    let g = got.to_f64_vec();
    let err = max_abs(&g, want);
    // Shown with `--nocapture`, to see the margins.
    eprintln!("{case}: max abs error {err:.3e} (tolerance {tol:e})");
    assert!(err <= tol, "{case}: max abs error {err:e} exceeds the blocks.md tolerance {tol:e}");
}

/// Row-major strides of `dims`.
pub fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// The float dtypes of most block tests, with a tolerance each.
pub const FLOATS: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

/// `v` rounded to `dtype` (once, as a one-element tensor of it holds it).
pub fn round_to(dtype: DType, v: f64) -> f64 {
    HostTensor::scalar(dtype, v).get_f64(0)
}

/// The f64 reference RMSNorm, row by row over rows of `d`: `w ⊙ round_T(x · rsqrt(mean(x²) +
/// eps))`; with `offset ≠ 0` the weight is `offset + w` (Gemma), applied before rounding.
pub fn rms_ref(x: &[f64], d: usize, w: Option<&[f64]>, eps: f64, offset: f64, t: DType) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(d) {
        let ms = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
        let r = 1.0 / (ms + eps).sqrt();
        for (i, v) in row.iter().enumerate() {
            let y = v * r;
            out.push(match w {
                None => y,
                Some(w) if offset == 0.0 => w[i] * round_to(t, y),
                Some(w) => (offset + w[i]) * y,
            });
        }
    }
    out
}
