//! The quantized matmul on MLX (`quantized_matmul`) against the reference evaluator.

mod common;

use blockfuse_ir::blocks::{quantize_affine, QuantizedEmbedding};
use blockfuse_ir::{DType, HostTensor};
use blockfuse_mlx::lowerings;
use common::*;

#[test]
fn quantized_matmul_matches_the_reference_for_bits_groups_and_dtypes() {
    let (n, k) = (32, 256);
    let weight: Vec<f32> = noise(n * k, 3).iter().map(|&v| (v * 0.05) as f32).collect();
    for bits in [4, 8] {
        for group_size in [32, 64, 128] {
            let q = quantize_affine(&weight, n, k, bits, group_size).unwrap();
            let groups = k / group_size as usize;
            let packed =
                HostTensor::from_bytes(DType::U8, vec![n, k * bits as usize / 8], q.packed.clone()).unwrap();
            for d in [DType::F32, DType::F16, DType::BF16, DType::F64] {
                let scales = tensor(d, &[n, groups], &q.scales.iter().map(|&v| v as f64).collect::<Vec<_>>());
                let biases = tensor(d, &[n, groups], &q.biases.iter().map(|&v| v as f64).collect::<Vec<_>>());
                let x = rand(d, &[2, 5, k], 4, 1.0);
                // Relative-style: K = 256 products accumulate, and MLX dequantizes in x's dtype;
                // its CPU kernels measured up to 3.4e-3 (f16) and 3.1e-2 (bf16) here, where the block
                // rounds once from f32.
                let tolerance = tol(2e-5, 5e-3, 5e-2, d);
                check_block(
                    lowerings::quantized_matmul,
                    &q.block,
                    &[x, packed.clone(), scales, biases],
                    tolerance,
                    d == DType::F64,
                    &format!("q{bits} g{group_size} {d}"),
                );
            }
        }
    }
}

/// The embedding has no lowering: its fallback gathers the looked-up rows first (bounds
/// checked like any Gather), so MLX dequantizes only those.
#[test]
fn quantized_embedding_runs_its_fallback_on_mlx() {
    let (v, d) = (12, 128);
    let table: Vec<f32> = noise(v * d, 5).iter().map(|&x| x as f32).collect();
    for bits in [4, 8] {
        let q = quantize_affine(&table, v, d, bits, 64).unwrap();
        let packed =
            HostTensor::from_bytes(DType::U8, vec![v, d * bits as usize / 8], q.packed.clone()).unwrap();
        for dt in [DType::F32, DType::BF16] {
            let scales = tensor(dt, &[v, 2], &q.scales.iter().map(|&s| s as f64).collect::<Vec<_>>());
            let biases = tensor(dt, &[v, 2], &q.biases.iter().map(|&s| s as f64).collect::<Vec<_>>());
            let ids = HostTensor::from_i64(vec![2, 2], &[3, -1, 0, 11]);
            let inputs = [ids, packed.clone(), scales, biases];
            let types: Vec<_> = inputs.iter().map(type_of).collect();
            let g = block_graph(QuantizedEmbedding::new(bits, 64), &types);
            let want = reference(&g, &inputs);
            let got = mlx().run(&g, &inputs).unwrap();
            assert_close(&got[0], &want[0], tol(1e-6, 1e-3, 1e-2, dt), &format!("embedding q{bits} {dt}"));
        }
    }
}
