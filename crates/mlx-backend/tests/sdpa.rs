//! Attention on MLX (fused and fallback subgraph) against the reference evaluator (blocks.md
//! test cases 7–10; tolerances of blocks.md).

mod common;

use blockfuse_ir::blocks::{MaskKind, Sdpa};
use blockfuse_ir::{DType, HostTensor};
use blockfuse_mlx::lowerings;
use common::*;

const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

fn sdpa_tol(d: DType, masked: bool) -> f64 {
    tol(if masked { 1e-4 } else { 2e-5 }, 3e-4, 5e-3, d)
}

struct Qkv {
    q: HostTensor,
    k: HostTensor,
    v: HostTensor,
}

#[allow(clippy::too_many_arguments)]
fn qkv(d: DType, b: usize, nq: usize, nkv: usize, tq: usize, tk: usize, dh: usize, seed: u64) -> Qkv {
    Qkv {
        q: rand(d, &[b, nq, tq, dh], seed, 1.0),
        k: rand(d, &[b, nkv, tk, dh], seed + 1, 1.0),
        v: rand(d, &[b, nkv, tk, dh], seed + 2, 1.0),
    }
}

fn bool_mask(dims: &[usize], seed: u64) -> HostTensor {
    let v: Vec<f64> =
        noise(dims.iter().product(), seed).into_iter().map(|x| (x > -0.6) as u8 as f64).collect();
    tensor(DType::Bool, dims, &v)
}

#[track_caller]
fn check(blk: &Sdpa, x: &Qkv, extra: &[HostTensor], tol: f64, declines: bool, what: &str) -> HostTensor {
    let mut inputs = vec![x.q.clone(), x.k.clone(), x.v.clone()];
    inputs.extend_from_slice(extra);
    let out = check_block(lowerings::sdpa, blk, &inputs, tol, declines, what).remove(0);
    assert!(out.to_f64_vec().iter().all(|v| v.is_finite()), "{what}: non-finite output");
    out
}

#[test]
fn gqa_sweep_lengths_masks_dtypes() {
    let (nq, nkv, dh) = (32, 8, 64);
    let scale = Sdpa::default_scale(dh);
    let mut seed = 100;
    for d in DTYPES {
        for (tq, tk) in [(7, 13), (13, 7), (16, 16)] {
            seed += 10;
            let x = qkv(d, 2, nq, nkv, tq, tk, dh, seed);
            let what = format!("{d} Tq={tq} Tk={tk}");
            check(
                &Sdpa::new(scale, MaskKind::None),
                &x,
                &[],
                sdpa_tol(d, false),
                false,
                &format!("{what} no mask"),
            );
            let add = rand(d, &[2, 1, tq, tk], seed + 5, 2.0);
            check(
                &Sdpa::new(scale, MaskKind::Additive),
                &x,
                &[add],
                sdpa_tol(d, true),
                false,
                &format!("{what} additive"),
            );
            let m = bool_mask(&[2, nq, tq, tk], seed + 6);
            check(
                &Sdpa::new(scale, MaskKind::Boolean),
                &x,
                &[m],
                sdpa_tol(d, true),
                false,
                &format!("{what} bool"),
            );
            // causal, also with Tq > Tk (all rows compared: fully masked rows attend uniformly)
            check(
                &Sdpa::new(scale, MaskKind::Causal),
                &x,
                &[],
                sdpa_tol(d, true),
                false,
                &format!("{what} causal"),
            );
        }
    }
}

#[test]
fn single_query_long_keys() {
    let (nq, nkv, dh) = (32, 8, 64);
    let scale = Sdpa::default_scale(dh);
    for d in DTYPES {
        for tk in [1, 100, 2000] {
            let x = qkv(d, 1, nq, nkv, 1, tk, dh, 200 + tk as u64);
            let what = format!("{d} Tq=1 Tk={tk}");
            check(&Sdpa::new(scale, MaskKind::None), &x, &[], sdpa_tol(d, false), false, &what);
            check(
                &Sdpa::new(scale, MaskKind::Causal),
                &x,
                &[],
                sdpa_tol(d, true),
                false,
                &format!("{what} causal"),
            );
            let m = bool_mask(&[1, 1, 1, tk], 300 + tk as u64);
            check(
                &Sdpa::new(scale, MaskKind::Boolean),
                &x,
                &[m],
                sdpa_tol(d, true),
                false,
                &format!("{what} bool"),
            );
        }
    }
}

#[test]
fn broadcasting_and_mixed_dtype_masks() {
    let (nq, nkv, tq, tk, dh) = (8, 2, 5, 9, 32);
    let scale = 0.3;
    for d in DTYPES {
        let x = qkv(d, 2, nq, nkv, tq, tk, dh, 400);
        let add = Sdpa::new(scale, MaskKind::Additive);
        for (i, dims) in
            [vec![], vec![tk], vec![nq, 1, tk], vec![tq, tk], vec![1, nq, tq, 1]].into_iter().enumerate()
        {
            let m = rand(d, &dims, 410 + i as u64, 3.0);
            check(&add, &x, &[m], sdpa_tol(d, true), false, &format!("{d} additive mask {dims:?}"));
            let b = bool_mask(&dims, 420 + i as u64);
            check(
                &Sdpa::new(scale, MaskKind::Boolean),
                &x,
                &[b],
                sdpa_tol(d, true),
                false,
                &format!("{d} bool mask {dims:?}"),
            );
        }
        // an additive mask of another float dtype than q/k/v
        for md in DTYPES {
            let m = rand(md, &[tq, tk], 430, 3.0);
            check(&add, &x, &[m], sdpa_tol(d, true), false, &format!("{d} q/k/v, {md} additive mask"));
        }
    }
}

#[test]
fn fully_masked_rows_and_sliding_window() {
    let (nq, nkv, tq, tk, dh) = (4, 4, 6, 6, 16);
    for d in DTYPES {
        let x = qkv(d, 1, nq, nkv, tq, tk, dh, 500);
        // rows 0 and 3 fully masked
        let mut v = vec![1.0; tq * tk];
        for r in [0, 3] {
            v[r * tk..(r + 1) * tk].iter_mut().for_each(|x| *x = 0.0);
        }
        let m = tensor(DType::Bool, &[tq, tk], &v);
        let out = check(
            &Sdpa::new(0.25, MaskKind::Boolean),
            &x,
            &[m],
            sdpa_tol(d, true),
            false,
            &format!("{d} fully masked rows"),
        );
        // a fully masked row attends uniformly: the mean of v over the keys
        let (o, vv) = (out.to_f64_vec(), x.v.to_f64_vec());
        for h in 0..nq {
            for k in 0..dh {
                let mean = (0..tk).map(|j| vv[(h * tk + j) * dh + k]).sum::<f64>() / tk as f64;
                let got = o[(h * tq) * dh + k];
                assert!((got - mean).abs() < sdpa_tol(d, true) * 10.0, "{d} uniform row: {got} vs {mean}");
            }
        }
        // sliding window of 3 keys, causal
        let v: Vec<f64> = (0..tq * tk)
            .map(|i| {
                let (r, c) = ((i / tk) as i64, (i % tk) as i64);
                (c <= r && r - c < 3) as u8 as f64
            })
            .collect();
        let m = tensor(DType::Bool, &[1, 1, tq, tk], &v);
        check(
            &Sdpa::new(0.25, MaskKind::Boolean),
            &x,
            &[m],
            sdpa_tol(d, true),
            false,
            &format!("{d} sliding window"),
        );
    }
}

#[test]
fn sinks() {
    let (nq, nkv, tq, tk, dh) = (8, 2, 4, 7, 32);
    for d in [DType::F32, DType::F16] {
        let sink_tol = tol(1e-5, 1e-2, 1e-2, d);
        let x = qkv(d, 2, nq, nkv, tq, tk, dh, 600);
        let s = rand(d, &[nq], 601, 2.0);
        for mask in [MaskKind::None, MaskKind::Causal] {
            let blk = Sdpa::new(0.2, mask).with_sinks(true);
            check(&blk, &x, std::slice::from_ref(&s), sink_tol, false, &format!("{d} sinks {mask:?}"));
        }
        let blk = Sdpa::new(0.2, MaskKind::Boolean).with_sinks(true);
        let m = bool_mask(&[tq, tk], 602);
        check(&blk, &x, &[m, s.clone()], sink_tol, false, &format!("{d} sinks, bool mask"));
        // sinks = −inf is the same as no sinks
        let ninf = tensor(d, &[nq], &vec![f64::NEG_INFINITY; nq]);
        let with = check(
            &Sdpa::new(0.2, MaskKind::None).with_sinks(true),
            &x,
            &[ninf],
            sink_tol,
            false,
            "−inf sinks",
        );
        let without = check(&Sdpa::new(0.2, MaskKind::None), &x, &[], sink_tol, false, "no sinks");
        assert_close(&with, &without, 0.0, &format!("{d}: −inf sinks equal no sinks"));
    }
}

#[test]
fn causal_with_key_padding() {
    // left-padded prefill: T = 80, 19 valid positions, 16 query / 8 kv heads
    let (nq, nkv, t, dh) = (16, 8, 80, 64);
    let scale = Sdpa::default_scale(dh);
    for d in DTYPES {
        let x = qkv(d, 2, nq, nkv, t, t, dh, 700);
        let pad: Vec<f64> = (0..2 * t).map(|i| ((i % t) >= t - 19 || i >= t) as u8 as f64).collect();
        for pd in [DType::Bool, DType::I64, d] {
            let kp = tensor(pd, &[2, t], &pad);
            let blk = Sdpa::new(scale, MaskKind::CausalWithKeyPadding);
            check(&blk, &x, &[kp], sdpa_tol(d, true), false, &format!("{d} prefill, {pd} key padding"));
        }
        // decode: one query at position T − 1
        let x1 = Qkv { q: rand(d, &[2, nq, 1, dh], 710, 1.0), k: x.k.clone(), v: x.v.clone() };
        let kp = tensor(DType::Bool, &[2, t], &pad);
        check(
            &Sdpa::new(scale, MaskKind::CausalWithKeyPadding),
            &x1,
            &[kp],
            sdpa_tol(d, true),
            false,
            &format!("{d} decode"),
        );
    }
}

#[test]
fn mixed_qkv_dtypes_other_head_dims_and_f64() {
    let x = Qkv {
        q: rand(DType::F16, &[1, 4, 3, 40], 800, 1.0),
        k: rand(DType::BF16, &[1, 2, 5, 40], 801, 1.0),
        v: rand(DType::F32, &[1, 2, 5, 24], 802, 1.0),
    };
    check(&Sdpa::new(0.5, MaskKind::Causal), &x, &[], 1e-4, false, "f16 q, bf16 k, f32 v, Dv ≠ D");
    let x = qkv(DType::F64, 1, 2, 1, 3, 4, 8, 810);
    check(&Sdpa::new(0.5, MaskKind::None), &x, &[], 1e-6, true, "f64 declines");
}
