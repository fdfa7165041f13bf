//! Helpers shared by the backend tests: seeded inputs, graphs of one block, and comparisons
//! of the MLX backend (with and without its lowerings) against the reference evaluator.
#![allow(dead_code)]

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::dispatch::{Call, Fallback, LowerResult};
use blockfuse_ir::{Block, DType, Graph, HostTensor, TensorType};
use blockfuse_mlx::{Array, Device, MlxBackend};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

// Each test binary uses a part of these.
#[allow(unused_imports)]
pub use blockfuse_testkit::{assert_close, max_abs_diff, noise, rand, ulp};

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
    blockfuse_ir::block::block_graph(Arc::new(block), types).expect("the block accepts its operands")
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
