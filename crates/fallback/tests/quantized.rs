//! The affine-quantized matmul block against an f64 reference of the dequantized weight.

mod common;

use blockfuse_ir::blocks::{quantize_affine, QuantizedEmbedding, QuantizedMatmul, QuantizedWeight};
use blockfuse_ir::{DType, HostTensor, TensorType};
use common::*;

/// The block's operands for `w {n, k}` quantized with `bits`/`group_size`, scales in `dtype`.
fn operands(q: &QuantizedWeight, dtype: DType) -> [HostTensor; 3] {
    let groups = q.k / q.block.group_size as usize;
    let packed =
        HostTensor::from_bytes(DType::U8, vec![q.n, q.packed.len() / q.n], q.packed.clone()).unwrap();
    let f = |v: &[f32]| {
        HostTensor::from_f64(dtype, vec![q.n, groups], &v.iter().map(|&x| x as f64).collect::<Vec<_>>())
    };
    [packed, f(&q.scales), f(&q.biases)]
}

/// The integer of column `col` in row `row` of the packed weight.
fn level(q: &QuantizedWeight, row: usize, col: usize) -> f64 {
    let bits = q.block.bits as usize;
    let byte = q.packed[row * q.k * bits / 8 + col * bits / 8];
    (match bits {
        8 => byte,
        _ if col.is_multiple_of(2) => byte & 15,
        _ => byte >> 4,
    }) as f64
}

/// `x · Wᵀ` in f64, with W dequantized from the operands as they are held (rounded scales).
fn reference(
    x: &[f64],
    rows: usize,
    q: &QuantizedWeight,
    scales: &HostTensor,
    biases: &HostTensor,
) -> Vec<f64> {
    let (s, b) = (scales.to_f64_vec(), biases.to_f64_vec());
    let groups = q.k / q.block.group_size as usize;
    let w = |n: usize, k: usize| {
        let gi = n * groups + k / q.block.group_size as usize;
        s[gi] * level(q, n, k) + b[gi]
    };
    let mut y = vec![0.0; rows * q.n];
    for r in 0..rows {
        for n in 0..q.n {
            y[r * q.n + n] = (0..q.k).map(|k| x[r * q.k + k] * w(n, k)).sum();
        }
    }
    y
}

#[test]
fn matches_the_dequantized_reference_for_every_bits_group_and_dtype() {
    let mut rng = rng(16);
    let (n, k) = (24, 256);
    let weight: Vec<f32> = normal(&mut rng, n * k).iter().map(|&v| (v * 0.05) as f32).collect();
    for bits in [4, 8] {
        for group_size in [32, 64, 128] {
            let q = quantize_affine(&weight, n, k, bits, group_size).unwrap();
            for (dtype, tol) in [(DType::F32, 1e-5), (DType::F16, 2e-3), (DType::BF16, 2e-2)] {
                let (x, xv) = random(&mut rng, dtype, &[2, 3, k]);
                let [packed, scales, biases] = operands(&q, dtype);
                let out = run_block(q.block, &[&x, &packed, &scales, &biases]);
                assert_eq!((out[0].dtype(), out[0].dims()), (dtype, &[2, 3, n][..]));
                let want = reference(&xv, 6, &q, &scales, &biases);
                assert_close(&out[0], &want, tol, &format!("q{bits} g{group_size} {dtype}"));
            }
        }
    }
}

#[test]
fn quantization_error_is_bounded_by_half_a_step_per_weight() {
    let mut rng = rng(17);
    let (n, k) = (8, 128);
    let weight: Vec<f32> = uniform(&mut rng, n * k, -1.0, 1.0).iter().map(|&v| v as f32).collect();
    let (x, xv) = random(&mut rng, DType::F32, &[4, k]);
    for bits in [4, 8] {
        let q = quantize_affine(&weight, n, k, bits, 64).unwrap();
        let [packed, scales, biases] = operands(&q, DType::F32);
        let out = run_block(q.block, &[&x, &packed, &scales, &biases]).remove(0).to_f64_vec();
        let half_step = q.scales.iter().fold(0.0f32, |a, &s| a.max(s)) as f64 / 2.0;
        for r in 0..4 {
            let bound: f64 = (0..k).map(|c| xv[r * k + c].abs()).sum::<f64>() * half_step + 1e-5;
            for c in 0..n {
                let exact: f64 = (0..k).map(|i| xv[r * k + i] * weight[c * k + i] as f64).sum();
                assert!((out[r * n + c] - exact).abs() <= bound, "bits {bits}: row {r} col {c}");
            }
        }
    }
}

#[test]
fn rejects_operands_that_do_not_fit_the_layout() {
    let t = |d: DType, s: &[usize]| TensorType::known(d, s);
    let block = QuantizedMatmul::new(4, 32);
    let err = block_error(
        block,
        &[t(DType::F32, &[2, 64]), t(DType::U8, &[8, 16]), t(DType::F32, &[8, 1]), t(DType::F32, &[8, 1])],
    );
    assert!(err.contains("last axis K = 32"), "{err}");
    let err = block_error(
        block,
        &[t(DType::I64, &[2, 64]), t(DType::U8, &[8, 32]), t(DType::F32, &[8, 2]), t(DType::F32, &[8, 2])],
    );
    assert!(err.contains("x must be a float"), "{err}");
}

#[test]
fn embedding_rows_are_the_dequantized_table_rows() {
    let mut rng = rng(18);
    let (v, d) = (10, 128);
    let table: Vec<f32> = normal(&mut rng, v * d).iter().map(|&x| x as f32).collect();
    for bits in [4, 8] {
        let q = quantize_affine(&table, v, d, bits, 32).unwrap();
        for dtype in [DType::F32, DType::BF16] {
            let [packed, scales, biases] = operands(&q, dtype);
            let ids = HostTensor::from_i64(vec![2, 3], &[0, 9, 4, -1, 3, 3]);
            let out = run_block(QuantizedEmbedding::new(bits, 32), &[&ids, &packed, &scales, &biases]);
            assert_eq!((out[0].dtype(), out[0].dims()), (dtype, &[2, 3, d][..]));
            let (s, b) = (scales.to_f64_vec(), biases.to_f64_vec());
            let want: Vec<f64> = [0usize, 9, 4, 9, 3, 3]
                .iter()
                .flat_map(|&row| (0..d).map(move |c| (row, c)))
                .map(|(row, c)| s[row * (d / 32) + c / 32] * level(&q, row, c) + b[row * (d / 32) + c / 32])
                .collect();
            let tol = if dtype == DType::F32 { 1e-6 } else { 2e-2 };
            assert_close(&out[0], &want, tol, &format!("embedding q{bits} {dtype}"));
        }
    }
}
