//! The residual add + RMSNorm block against an f64 reference written here: `h = round_T(x + a)`
//! and `y = w ⊙ round_T(h · rsqrt(mean(h²) + eps))`, both outputs, every float dtype.

mod common;

use blockfuse_ir::blocks::ResidualRmsNorm;
use blockfuse_ir::{DType, HostTensor, TensorType};
use common::*;

/// `(h, y)` row by row; `w` is `offset + w` (taken in f32, rounded once) when `offset ≠ 0`.
fn reference(
    x: &[f64],
    a: &[f64],
    d: usize,
    w: Option<&[f64]>,
    eps: f64,
    offset: f64,
    t: DType,
) -> (Vec<f64>, Vec<f64>) {
    let h: Vec<f64> = x.iter().zip(a).map(|(x, a)| round_to(t, x + a)).collect();
    let y = rms_ref(&h, d, w, eps, offset, t);
    (h, y)
}

/// blocks.md § `residual_rms_norm`: `h` is one rounding of an exact sum (f16/bf16: within an
/// ulp of |h| < 2); `y` within one rounding of its dtype for |y| < 8 (Gemma's `1 + w` doubles
/// the normalized value): f32 1e-6, f16 2e-3, bf16 2e-2.
fn tols(d: DType) -> (f64, f64) {
    match d {
        DType::F32 | DType::F64 => (0.0, 1e-6),
        DType::F16 => (2e-3, 2e-3),
        _ => (1.6e-2, 2e-2),
    }
}

#[test]
fn residual_rms_norm_matches_the_f64_reference() {
    let mut rng = rng(15);
    for d in [31, 32, 33, 4099] {
        for dtype in FLOATS.into_iter().chain([DType::F64]) {
            // x, a in [-0.5, 0.5): h in [-1, 1), as in rms_norm's tests.
            let (x, xv) = tensor(dtype, &[3, d], &uniform(&mut rng, 3 * d, -0.5, 0.5));
            let (a, av) = tensor(dtype, &[3, d], &uniform(&mut rng, 3 * d, -0.5, 0.5));
            let (w, wv) = random(&mut rng, dtype, &[d]);
            let eps = 1e-5f32;
            let (th, ty) = tols(dtype);
            let cases: [(&str, ResidualRmsNorm, Option<&[f64]>, f64); 3] = [
                ("weight", ResidualRmsNorm { eps, weight_offset: 0.0 }, Some(&wv), 0.0),
                ("no weight", ResidualRmsNorm { eps, weight_offset: 0.0 }, None, 0.0),
                ("gemma 1 + w", ResidualRmsNorm { eps, weight_offset: 1.0 }, Some(&wv), 1.0),
            ];
            for (what, block, wref, offset) in cases {
                let args: Vec<&HostTensor> = if wref.is_some() { vec![&x, &a, &w] } else { vec![&x, &a] };
                let out = run_block(block, &args);
                assert_eq!((out.len(), out[0].dtype(), out[1].dtype()), (2, dtype, dtype));
                let (h, y) = reference(&xv, &av, d, wref, eps as f64, offset, dtype);
                let case = format!("residual_rms_norm D={d} {dtype} {what}");
                assert_close(&out[0], &h, th, &format!("{case}: h"));
                assert_close(&out[1], &y, ty, &format!("{case}: y"));
            }
        }
    }
}

#[test]
fn residual_rms_norm_mixed_weight_dtype() {
    // bf16 x and a with an f32 weight: h stays bf16, y is f32 (the result type).
    let mut rng = rng(151);
    let (x, xv) = random(&mut rng, DType::BF16, &[2, 64]);
    let (a, av) = random(&mut rng, DType::BF16, &[2, 64]);
    let (w, wv) = random(&mut rng, DType::F32, &[64]);
    let out = run_block(ResidualRmsNorm { eps: 1e-6, weight_offset: 0.0 }, &[&x, &a, &w]);
    assert_eq!((out[0].dtype(), out[1].dtype()), (DType::BF16, DType::F32));
    let (h, y) = reference(&xv, &av, 64, Some(&wv), 1e-6f32 as f64, 0.0, DType::BF16);
    assert_close(&out[0], &h, 1.6e-2, "bf16 h");
    assert_close(&out[1], &y, 1e-6, "bf16 x, f32 weight: y");
}

#[test]
fn residual_rms_norm_rejects_bad_operands() {
    let x = TensorType::known(DType::F32, &[2, 64]);
    let block = || ResidualRmsNorm { eps: 1e-6, weight_offset: 0.0 };
    let e = block_error(block(), &[x.clone(), TensorType::known(DType::F32, &[64])]);
    assert!(e.contains("residual_rms_norm: x and a must have the same type (no broadcasting)"), "{e}");
    let e = block_error(block(), &[x.clone(), TensorType::known(DType::F16, &[2, 64])]);
    assert!(e.contains("x and a must have the same type"), "{e}");
    let e = block_error(block(), &[x.clone(), x.clone(), TensorType::known(DType::F32, &[63])]);
    assert!(e.contains("residual_rms_norm: weight has 63 elements, the last axis has 64"), "{e}");
    let e = block_error(block(), std::slice::from_ref(&x));
    assert!(e.contains("residual_rms_norm: expects operands (x, a [, weight])"), "{e}");
    let i = TensorType::known(DType::I64, &[2, 64]);
    let e = block_error(block(), &[i.clone(), i]);
    assert!(e.contains("residual_rms_norm: x must be a float tensor"), "{e}");
    let e = block_error(ResidualRmsNorm { eps: f32::NAN, weight_offset: 0.0 }, &[x.clone(), x]);
    assert!(e.contains("residual_rms_norm: eps must be finite and ≥ 0"), "{e}");
}
