//! RMSNorm and LayerNorm: blocks.md test-case group 6, against f64 references written here.

mod common;

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::blocks::{LayerNorm, RmsNorm};
use blockfuse_ir::{Bound, DType, Op, SliceSpec, TensorType};
use common::*;

/// `cast_T((x − mu) · rsqrt(var + eps)) ⊙ w + b` row by row (biased variance).
fn ln_ref(x: &[f64], d: usize, w: Option<&[f64]>, b: Option<&[f64]>, eps: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(d) {
        let mu = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / d as f64;
        let r = 1.0 / (var + eps).sqrt();
        for (i, v) in row.iter().enumerate() {
            let y = (v - mu) * r;
            out.push(y * w.map_or(1.0, |w| w[i]) + b.map_or(0.0, |b| b[i]));
        }
    }
    out
}

fn rms_tol(d: DType) -> f64 {
    match d {
        DType::F32 => 1e-6,
        DType::F16 => 1e-3,
        _ => 1e-2,
    }
}

fn ln_tol(d: DType) -> f64 {
    match d {
        DType::F32 => 1e-5,
        DType::F16 => 5e-3,
        _ => 5e-2,
    }
}

const DIMS: [usize; 4] = [31, 32, 33, 4099];

#[test]
fn group6_rms_norm() {
    let mut rng = rng(6);
    for d in DIMS {
        for dtype in FLOATS {
            let (x, xv) = random(&mut rng, dtype, &[3, d]);
            let (w, wv) = random(&mut rng, dtype, &[d]);
            let eps = 1e-5f32;
            let out = run_block(RmsNorm::new(eps), &[&x, &w]);
            assert_eq!(out[0].dtype(), dtype);
            let want = rms_ref(&xv, d, Some(&wv), eps as f64, 0.0, dtype);
            assert_close(&out[0], &want, rms_tol(dtype), &format!("rms_norm D={d} {dtype}"));
            // No weight.
            let out = run_block(RmsNorm::new(eps), &[&x]);
            let want = rms_ref(&xv, d, None, eps as f64, 0.0, dtype);
            assert_close(&out[0], &want, rms_tol(dtype), &format!("rms_norm D={d} {dtype} no weight"));
            // Gemma's (1 + w).
            let out = run_block(RmsNorm::gemma(1e-6), &[&x, &w]);
            let want = rms_ref(&xv, d, Some(&wv), 1e-6f32 as f64, 1.0, dtype);
            assert_close(&out[0], &want, rms_tol(dtype), &format!("gemma D={d} {dtype}"));
        }
    }
}

#[test]
fn rms_norm_mixed_dtypes() {
    // x f16 with an f32 weight gives f32 (the result type).
    let mut rng = rng(61);
    let (x, xv) = random(&mut rng, DType::F16, &[2, 64]);
    let (w, wv) = random(&mut rng, DType::F32, &[64]);
    let out = run_block(RmsNorm::new(1e-6), &[&x, &w]);
    assert_eq!(out[0].dtype(), DType::F32);
    let want = rms_ref(&xv, 64, Some(&wv), 1e-6f32 as f64, 0.0, DType::F16);
    assert_close(&out[0], &want, 1e-6, "f16 x, f32 weight");
    // f16 with bf16 gives f32.
    let (w, _) = random(&mut rng, DType::BF16, &[64]);
    assert_eq!(run_block(RmsNorm::new(1e-6), &[&x, &w])[0].dtype(), DType::F32);
}

#[test]
fn group6_layer_norm() {
    let mut rng = rng(7);
    for d in DIMS {
        for dtype in FLOATS {
            let (x, xv) = random(&mut rng, dtype, &[3, d]);
            let (w, wv) = random(&mut rng, dtype, &[d]);
            let (b, bv) = random(&mut rng, dtype, &[d]);
            let eps = 1e-5f32;
            for (hw, hb) in [(true, true), (true, false), (false, true), (false, false)] {
                let block = LayerNorm { eps, has_weight: hw, has_bias: hb };
                let mut args = vec![&x];
                if hw {
                    args.push(&w);
                }
                if hb {
                    args.push(&b);
                }
                let out = run_block(block, &args);
                assert_eq!(out[0].dtype(), dtype);
                let want = ln_ref(&xv, d, hw.then_some(&wv[..]), hb.then_some(&bv[..]), eps as f64);
                assert_close(
                    &out[0],
                    &want,
                    ln_tol(dtype),
                    &format!("layer_norm D={d} {dtype} weight={hw} bias={hb}"),
                );
            }
        }
    }
}

/// Strided inputs: every other element of a wider tensor (a step-2 slice), and a transpose.
#[test]
fn group6_strided_input() {
    let mut rng = rng(8);
    for dtype in FLOATS {
        let d = 33;
        let (x, xv) = random(&mut rng, dtype, &[4, 2 * d]);
        let (w, wv) = random(&mut rng, dtype, &[d]);
        let g = graph_with(&[&x, &w], |b, xs| {
            let s = b
                .add(
                    Op::Slice(SliceSpec {
                        axes: vec![-1],
                        starts: vec![Bound::Const(1)],
                        ends: vec![Bound::Const(i64::MAX)],
                        steps: vec![2],
                    }),
                    &[xs[0]],
                )
                .unwrap();
            let r = b.block(RmsNorm::new(1e-6), &[s, xs[1]]).unwrap()[0];
            let l =
                b.block(LayerNorm { eps: 1e-6, has_weight: true, has_bias: false }, &[s, xs[1]]).unwrap()[0];
            vec![r, l]
        });
        let out = FallbackBackend::new().run(&g, &[x, w]).unwrap();
        let sel: Vec<f64> = xv.chunks(2 * d).flat_map(|r| r.iter().skip(1).step_by(2).copied()).collect();
        let want = rms_ref(&sel, d, Some(&wv), 1e-6f32 as f64, 0.0, dtype);
        assert_close(&out[0], &want, rms_tol(dtype), &format!("strided rms_norm {dtype}"));
        let want = ln_ref(&sel, d, Some(&wv), None, 1e-6f32 as f64);
        assert_close(&out[1], &want, ln_tol(dtype), &format!("strided layer_norm {dtype}"));

        // Transposed: x given as {D, rows}.
        let (xt, xtv) = random(&mut rng, dtype, &[d, 5]);
        let g = graph_with(&[&xt], |b, xs| {
            let t = b.transpose(xs[0], &[1, 0]).unwrap();
            b.block(RmsNorm::new(1e-6), &[t]).unwrap()
        });
        let out = FallbackBackend::new().run(&g, &[xt]).unwrap();
        let rows: Vec<f64> =
            (0..5).flat_map(|r| (0..d).map(move |c| (r, c))).map(|(r, c)| xtv[c * 5 + r]).collect();
        let want = rms_ref(&rows, d, None, 1e-6f32 as f64, 0.0, dtype);
        assert_close(&out[0], &want, rms_tol(dtype), &format!("transposed rms_norm {dtype}"));
    }
}

#[test]
fn group6_errors() {
    let x = TensorType::known(DType::F32, &[2, 64]);
    let e = block_error(RmsNorm::new(1e-6), &[x.clone(), TensorType::known(DType::F32, &[63])]);
    assert!(e.contains("rms_norm: weight has 63 elements, the last axis has 64"), "{e}");
    let e = block_error(RmsNorm::new(1e-6), &[x.clone(), TensorType::known(DType::F32, &[1, 64])]);
    assert!(e.contains("rms_norm: weight must be 1-D"), "{e}");
    let e = block_error(RmsNorm::new(1e-6), &[TensorType::known(DType::I64, &[2, 64])]);
    assert!(e.contains("rms_norm: x must be a float tensor"), "{e}");
    let e = block_error(RmsNorm::new(-1.0), std::slice::from_ref(&x));
    assert!(e.contains("rms_norm: eps must be finite and ≥ 0"), "{e}");
    let e = block_error(
        LayerNorm::new(1e-5),
        &[x.clone(), TensorType::known(DType::F32, &[64]), TensorType::known(DType::F32, &[65])],
    );
    assert!(e.contains("layer_norm: bias has 65 elements, the last axis has 64"), "{e}");
    let e = block_error(LayerNorm::new(1e-5), &[x.clone(), TensorType::known(DType::F32, &[32])]);
    assert!(e.contains("layer_norm: expects operands (x, weight, bias), got 2 operand(s)"), "{e}");
    let e = block_error(
        LayerNorm { eps: 1e-5, has_weight: true, has_bias: false },
        &[x, TensorType::known(DType::F32, &[63])],
    );
    assert!(e.contains("layer_norm: weight has 63 elements, the last axis has 64"), "{e}");
}
