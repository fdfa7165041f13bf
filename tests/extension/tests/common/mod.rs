//! Shared by the extension crate's tests (tests/extension.rs on the fallback evaluator,
//! tests/mlx.rs on MLX): the graph of the crate's own block and its inputs.
#![allow(dead_code)]

use blockfuse_extension_test::ClampedGelu;
use blockfuse_ir::{Builder, DType, Dim, Graph, HostTensor, TensorType};

/// `y = clamped_gelu(x, limit 1.5)` over `x` `{n, 16}` of `dtype`.
pub fn clamped_graph(dtype: DType) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::new(dtype, [Dim::sym("n"), Dim::Known(16)]));
    let y = b.block(ClampedGelu { limit: 1.5 }, &[x]).unwrap()[0];
    g.add_output("y", y);
    g
}

/// `rows × 16` values evenly from −6 up to 6 (both sides of the clamp), of `dtype`.
pub fn ramp(dtype: DType, rows: usize) -> HostTensor {
    let v: Vec<f64> = (0..rows * 16).map(|i| -6.0 + 12.0 * i as f64 / (rows * 16) as f64).collect();
    HostTensor::from_f64(dtype, vec![rows, 16], &v)
}
