//! Helpers shared by the backend tests: seeded inputs, graphs of one block, and comparisons
//! of the MLX backend (with and without its lowerings) against the reference evaluator.
#![allow(dead_code)]

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::dispatch::{Call, Fallback, LowerResult};
use blockfuse_ir::{Block, Builder, DType, Graph, HostTensor, TensorType};
use blockfuse_mlx::{Array, Device, MlxBackend};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Deterministic values in [-1, 1) (xorshift).
pub fn noise(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

/// A tensor of `dtype` with values `scale · noise`.
pub fn rand(dtype: DType, dims: &[usize], seed: u64, scale: f64) -> HostTensor {
    let n = dims.iter().product();
    let v: Vec<f64> = noise(n, seed).into_iter().map(|x| x * scale).collect();
    HostTensor::from_f64(dtype, dims.to_vec(), &v)
}

/// A tensor of `dtype` from values.
pub fn tensor(dtype: DType, dims: &[usize], v: &[f64]) -> HostTensor {
    HostTensor::from_f64(dtype, dims.to_vec(), v)
}

/// The type of a host tensor.
pub fn type_of(t: &HostTensor) -> TensorType {
    TensorType::known(t.dtype(), t.dims())
}

/// A graph with one input per type and one node of `block` on them; its outputs are the
/// block's.
pub fn block_graph(block: impl Block, types: &[TensorType]) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let args: Vec<_> =
        types.iter().enumerate().map(|(i, t)| b.input(&format!("arg{i}"), t.clone())).collect();
    let outs = b.block(block, &args).expect("the block accepts its operands");
    for (i, v) in outs.into_iter().enumerate() {
        g.add_output(&format!("out{i}"), v);
    }
    g
}

/// The reference outputs.
pub fn reference(g: &Graph, inputs: &[HostTensor]) -> Vec<HostTensor> {
    FallbackBackend::new().run(g, inputs).unwrap_or_else(|e| panic!("the reference evaluator failed: {e}"))
}

/// The device the MLX side of the tests runs on: the CPU, or the GPU with
/// `BLOCKFUSE_MLX_TEST_DEVICE=gpu` (with a GPU build of `libmlx.so` swapped in through
/// `LD_LIBRARY_PATH`; MLX's GPU has no f64, so the f64 cases then fail).
pub fn test_device() -> Device {
    match std::env::var("BLOCKFUSE_MLX_TEST_DEVICE").as_deref() {
        Ok("gpu") => Device::Gpu,
        _ => Device::Cpu,
    }
}

/// MLX with the default lowerings.
pub fn mlx() -> MlxBackend {
    MlxBackend::with_default_lowerings(test_device()).expect("the test device is available")
}

/// MLX with no lowerings: blocks run their fallback subgraphs on MLX.
pub fn mlx_plain() -> MlxBackend {
    MlxBackend::new(test_device()).expect("the test device is available")
}

/// The spacing of `dtype`'s values at `|w|` (one ulp).
pub fn ulp(dtype: DType, w: f64) -> f64 {
    let (mantissa, min_exp) = match dtype {
        DType::F16 => (10, -14),
        DType::BF16 => (7, -126),
        DType::F32 => (23, -126),
        DType::F64 => (52, -1022),
        _ => return 0.0,
    };
    let e = if w == 0.0 { min_exp } else { (w.abs().log2().floor() as i32).max(min_exp) };
    2f64.powi(e - mantissa)
}

/// The largest error of `got` against `want` in units of `tol`-scaled allowance: an element
/// passes when `|got − want| ≤ tol · max(1, |want|)` (absolute where values are at most 1,
/// relative above) or when the two are at most one ulp of the dtype apart (both backends
/// round once from nearly equal f32 values, and a rounding boundary between them puts them
/// one ulp apart). Returns the worst `|got − want| / max(1, |want|)` among failing
/// elements, 0 when all pass, NaN where exactly one of them is NaN.
pub fn max_abs_diff(got: &HostTensor, want: &HostTensor, tol: f64) -> f64 {
    let d = want.dtype();
    got.to_f64_vec()
        .iter()
        .zip(want.to_f64_vec())
        .map(|(&g, w)| {
            if g.is_nan() && w.is_nan() || g == w {
                0.0
            } else if g.is_nan() || w.is_nan() {
                f64::NAN
            } else {
                let err = (g - w).abs();
                let rel = err / w.abs().max(1.0);
                if rel <= tol || err <= ulp(d, w) {
                    0.0
                } else {
                    rel
                }
            }
        })
        .fold(0.0, |acc: f64, d| if d.is_nan() || acc.is_nan() { f64::NAN } else { acc.max(d) })
}

/// Asserts same dtype and dims and values within `tol` as [`max_abs_diff`] says (after
/// upcasting to f64).
#[track_caller]
pub fn assert_close(got: &HostTensor, want: &HostTensor, tol: f64, what: &str) {
    assert_eq!((got.dtype(), got.dims()), (want.dtype(), want.dims()), "{what}: type");
    let d = max_abs_diff(got, want, tol);
    assert!(
        d == 0.0,
        "{what}: max error {d:e} > {tol:e} (and more than one ulp)\n got {got:?}\nwant {want:?}"
    );
}

/// Counts how often a lowering declined to its fallback.
pub struct Counting<'a> {
    inner: &'a mut dyn Fallback<Array>,
    declined: &'a AtomicUsize,
}

impl Fallback<Array> for Counting<'_> {
    fn run(&mut self, args: &[Array]) -> LowerResult<Array> {
        self.declined.fetch_add(1, Ordering::SeqCst);
        self.inner.run(args)
    }
}

/// A lowering function of block type `B`.
pub type LowerFn<B> = fn(&B, &Call<'_, Array>, &mut dyn Fallback<Array>) -> LowerResult<Array>;

/// MLX with the default lowerings, `B`'s wrapped to count how often it declines.
pub fn mlx_counting<B: Block>(f: LowerFn<B>) -> (MlxBackend, Arc<AtomicUsize>) {
    let mut m = mlx();
    let declined = Arc::new(AtomicUsize::new(0));
    let d = declined.clone();
    m.register::<B>(move |b, call, fb| {
        let mut c = Counting { inner: fb, declined: &d };
        f(b, call, &mut c)
    });
    (m, declined)
}

/// Runs `g` on MLX with the default lowerings of `B` (counting declines), on MLX with no
/// lowerings, and on the reference evaluator; asserts both MLX results are within `tol` of
/// the reference, and that the lowering declined iff `declines`.
#[track_caller]
pub fn check_graph<B: Block>(
    f: LowerFn<B>,
    g: &Graph,
    inputs: &[HostTensor],
    tol: f64,
    declines: bool,
    what: &str,
) -> Vec<HostTensor> {
    let want = reference(g, inputs);
    let (m, declined) = mlx_counting::<B>(f);
    let got = m.run(g, inputs).unwrap_or_else(|e| panic!("{what}: MLX failed: {e}"));
    let plain =
        mlx_plain().run(g, inputs).unwrap_or_else(|e| panic!("{what}: MLX (fallback subgraph) failed: {e}"));
    assert_eq!(got.len(), want.len(), "{what}: output count");
    for (i, ((g1, g2), w)) in got.iter().zip(&plain).zip(&want).enumerate() {
        assert_close(g1, w, tol, &format!("{what}: lowered, output {i}"));
        assert_close(g2, w, tol, &format!("{what}: fallback subgraph on MLX, output {i}"));
    }
    assert_eq!(
        declined.load(Ordering::SeqCst) > 0,
        declines,
        "{what}: the lowering {} to the fallback",
        if declines { "did not decline" } else { "declined" }
    );
    got
}

/// [`check_graph`] on a graph of one `block` node over `inputs`.
#[track_caller]
pub fn check_block<B: Block + Clone>(
    f: LowerFn<B>,
    block: &B,
    inputs: &[HostTensor],
    tol: f64,
    declines: bool,
    what: &str,
) -> Vec<HostTensor> {
    let types: Vec<TensorType> = inputs.iter().map(type_of).collect();
    let g = block_graph(block.clone(), &types);
    check_graph(f, &g, inputs, tol, declines, what)
}

/// Tolerances of blocks.md by block and dtype (f32, f16, bf16).
pub fn tol(f32_: f64, f16_: f64, bf16_: f64, d: DType) -> f64 {
    match d {
        DType::F16 => f16_,
        DType::BF16 => bf16_,
        _ => f32_,
    }
}
