//! RoPE: blocks.md test-case groups 1–5, against an f64 reference written here.

mod common;

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::blocks::{Rope, RopePosition};
use blockfuse_ir::{global_registry, DType, Dim, HostTensor, TensorType};
use common::*;

/// The f64 reference: rotation of the first `dims` features of every row of `x` (shape
/// `shape`, positions along axis −2, batch along axis 0) by angles `pos(b, t) · scale · inv_i`.
///
/// blocks.md specifies that cos and sin are cast to x's dtype before they multiply x (MLX's
/// fallback), so the reference rounds them to `dtype` too; everything else is exact f64. (Without
/// that rounding, the roundings the spec prescribes alone can reach 1.2e-3 in f16, above the
/// 1e-3 tolerance; with it, the remaining three f16 roundings are bounded by 9.8e-4 for |x| < 1.)
#[allow(clippy::too_many_arguments)]
fn rope_ref(
    x: &[f64],
    shape: &[usize],
    dims: usize,
    traditional: bool,
    inv: &[f64],
    scale: f64,
    pos: &dyn Fn(usize, usize) -> f64,
    dtype: DType,
) -> Vec<f64> {
    let round = |v: f64| match dtype {
        DType::F16 => half::f16::from_f64(v).to_f64(),
        DType::BF16 => half::bf16::from_f64(v).to_f64(),
        DType::F32 => v as f32 as f64,
        _ => v,
    };
    let r = shape.len();
    let (t_len, d) = (shape[r - 2], shape[r - 1]);
    let per_batch: usize = shape[1..r - 1].iter().product();
    let half = dims / 2;
    let mut out = x.to_vec();
    for (row, chunk) in x.chunks(d).enumerate() {
        let (b, t) = (row / per_batch, row % t_len);
        let p = pos(b, t) * scale;
        let o = &mut out[row * d..(row + 1) * d];
        for (i, f) in inv.iter().enumerate().take(half) {
            let (c, s) = (round((p * f).cos()), round((p * f).sin()));
            let (a, bb) = if traditional { (2 * i, 2 * i + 1) } else { (i, i + half) };
            o[a] = chunk[a] * c - chunk[bb] * s;
            o[bb] = chunk[a] * s + chunk[bb] * c;
        }
    }
    out
}

fn inv_freqs(base: f64, dims: usize) -> Vec<f64> {
    (0..dims / 2).map(|i| base.powf(-2.0 * i as f64 / dims as f64)).collect()
}

fn tol(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 1e-6,
        DType::F16 => 1e-3,
        _ => 1e-2,
    }
}

/// Group 1: the sweep on (2, 4, 8).
#[test]
fn group1_sweep() {
    let shape = [2, 4, 8];
    let mut rng = rng(1);
    let mut cases = 0;
    for dtype in FLOATS {
        let (x, xv) = random(&mut rng, dtype, &shape);
        for traditional in [false, true] {
            for base in [1e4f32, 1e6] {
                for scale in [1.0f32, 2.0] {
                    for offset in ["0", "3", "tensor 3"] {
                        let rope = Rope::new(8, base).with_traditional(traditional).with_scale(scale);
                        let (out, o) = match offset {
                            "tensor 3" => {
                                let off = HostTensor::from_i64(vec![], &[3]);
                                let rope = rope.with_position(RopePosition::Offsets);
                                (run_block(rope, &[&x, &off]), 3.0)
                            }
                            o => {
                                let o: i64 = o.parse().unwrap();
                                let rope = rope.with_position(RopePosition::Offset(o));
                                (run_block(rope, &[&x]), o as f64)
                            }
                        };
                        let want = rope_ref(
                            &xv,
                            &shape,
                            8,
                            traditional,
                            &inv_freqs(base as f64, 8),
                            scale as f64,
                            &|_, t| o + t as f64,
                            dtype,
                        );
                        assert_eq!(out[0].dtype(), dtype);
                        assert_close(
                            &out[0],
                            &want,
                            tol(dtype),
                            &format!(
                                "{dtype} traditional={traditional} base={base} scale={scale} offset={offset}"
                            ),
                        );
                        cases += 1;
                    }
                }
            }
        }
    }
    assert_eq!(cases, 3 * 2 * 2 * 2 * 3);
}

/// Group 1: a transposed (non-contiguous) input: x is given as {T, B, D} and transposed to
/// {B, T, D} in the graph before the block.
#[test]
fn group1_transposed_input() {
    let mut rng = rng(11);
    for dtype in FLOATS {
        for traditional in [false, true] {
            let (x, xv) = random(&mut rng, dtype, &[4, 2, 8]);
            let rope = Rope::new(8, 1e4).with_traditional(traditional).with_position(RopePosition::Offset(3));
            let g = graph_with(&[&x], |b, xs| {
                let t = b.transpose(xs[0], &[1, 0, 2]).unwrap();
                b.block(rope.clone(), &[t]).unwrap()
            });
            let out = FallbackBackend::new().run(&g, &[x]).unwrap();
            // Transpose the reference input by hand.
            let mut xt = vec![0.0; xv.len()];
            for t in 0..4 {
                for bb in 0..2 {
                    for d in 0..8 {
                        xt[(bb * 4 + t) * 8 + d] = xv[(t * 2 + bb) * 8 + d];
                    }
                }
            }
            let want = rope_ref(
                &xt,
                &[2, 4, 8],
                8,
                traditional,
                &inv_freqs(1e4, 8),
                1.0,
                &|_, t| 3.0 + t as f64,
                dtype,
            );
            assert_close(
                &out[0],
                &want,
                tol(dtype),
                &format!("transposed {dtype} traditional={traditional}"),
            );
        }
    }
}

/// The freqs operand: inv_i = 1/freqs_i (freqs are periods, MLX's convention).
#[test]
fn freqs_operand() {
    let mut rng = rng(12);
    for dtype in [DType::F32, DType::F16] {
        let (x, xv) = random(&mut rng, dtype, &[2, 3, 5, 16]);
        let periods: Vec<f64> = (0..8).map(|i| 10000f64.powf(2.0 * i as f64 / 16.0)).collect();
        let (f, fv) = tensor(DType::F32, &[8], &periods);
        let rope = Rope::new(16, 1.0).with_freqs().with_position(RopePosition::Offset(2));
        let out = run_block(rope, &[&x, &f]);
        let inv: Vec<f64> = fv.iter().map(|p| 1.0 / p).collect();
        let want = rope_ref(&xv, &[2, 3, 5, 16], 16, false, &inv, 1.0, &|_, t| 2.0 + t as f64, dtype);
        let tol = if dtype == DType::F32 { 1e-5 } else { 1e-2 };
        assert_close(&out[0], &want, tol, &format!("freqs {dtype}"));
    }
}

fn x_type(dtype: DType, dims: &[usize]) -> TensorType {
    TensorType::known(dtype, dims)
}

/// Group 2: invalid parameters.
#[test]
fn group2_errors() {
    let x = x_type(DType::F32, &[2, 4, 8]);
    let e = block_error(Rope::new(0, 1e4), std::slice::from_ref(&x));
    assert!(e.contains("rope: dims must be positive, got 0"), "{e}");
    let e = block_error(Rope::new(7, 1e4), std::slice::from_ref(&x));
    assert!(e.contains("rope: dims must be even, got 7"), "{e}");
    let e = block_error(Rope::new(10, 1e4), std::slice::from_ref(&x));
    assert!(e.contains("rope: dims (10) exceed the last axis of x (8)"), "{e}");
    let e = block_error(Rope::new(8, 1e4), &[x_type(DType::I32, &[2, 4, 8])]);
    assert!(e.contains("rope: x must be a float tensor, got i32[2, 4, 8]"), "{e}");
    let e = block_error(Rope::new(8, 1e4), &[x_type(DType::F32, &[4, 8])]);
    assert!(e.contains("rope: x must have at least 3 axes"), "{e}");
    // freqs of the wrong length.
    let e = block_error(Rope::new(8, 1e4).with_freqs(), &[x.clone(), x_type(DType::F32, &[3])]);
    assert!(e.contains("rope: freqs has 3 elements, dims/2 has 4"), "{e}");
    // Both, or neither, of base and freqs.
    let e = block_error(Rope::new(8, 1e4), &[x.clone(), x_type(DType::F32, &[4])]);
    assert!(e.contains("rope: both base (10000) and a freqs operand are given"), "{e}");
    let e = block_error(Rope::new(8, 1e4).with_freqs(), std::slice::from_ref(&x));
    assert!(e.contains("rope: neither base nor freqs is given"), "{e}");
    // Offsets must be integers; base must be positive.
    let e = block_error(
        Rope::new(8, 1e4).with_position(RopePosition::Offsets),
        &[x.clone(), x_type(DType::F32, &[2])],
    );
    assert!(e.contains("rope: offsets must be integers"), "{e}");
    let e = block_error(Rope::new(8, -1.0), std::slice::from_ref(&x));
    assert!(e.contains("rope: base must be finite and > 0"), "{e}");
    // dims −2 cannot even be written: it is rejected when the attributes are decoded.
    let attrs = serde_json::json!({"dims": -2, "traditional": false, "base": 10000.0, "scale": 1.0});
    let e = global_registry().decode("rope", attrs).unwrap_err();
    assert!(format!("{e:?}").contains("-2"), "{e:?}");
}

/// Group 3: per-batch offsets on (B, H, 4, 32) with offsets = arange(B); a wrong-length
/// offsets tensor errors, when building the graph or, for symbolic batches, when running.
#[test]
fn group3_per_batch_offsets() {
    let mut rng = rng(3);
    for (bsz, ity) in [(3usize, DType::I64), (4, DType::I32)] {
        for dtype in FLOATS {
            let shape = [bsz, 2, 4, 32];
            let (x, xv) = random(&mut rng, dtype, &shape);
            let offs: Vec<f64> = (0..bsz).map(|b| b as f64).collect();
            let (off, _) = tensor(ity, &[bsz], &offs);
            for traditional in [false, true] {
                let rope =
                    Rope::new(32, 1e4).with_traditional(traditional).with_position(RopePosition::Offsets);
                let out = run_block(rope, &[&x, &off]);
                let want = rope_ref(
                    &xv,
                    &shape,
                    32,
                    traditional,
                    &inv_freqs(1e4, 32),
                    1.0,
                    &|b, t| (b + t) as f64,
                    dtype,
                );
                assert_close(&out[0], &want, tol(dtype), &format!("B={bsz} {dtype} {traditional}"));
            }
        }
    }
    // Known wrong length: rejected when the graph is built.
    let e = block_error(
        Rope::new(32, 1e4).with_position(RopePosition::Offsets),
        &[x_type(DType::F32, &[3, 2, 4, 32]), x_type(DType::I64, &[2])],
    );
    assert!(e.contains("rope: offsets has 2 entries, x has batch 3 (axis 0)"), "{e}");
    // Symbolic batch: accepted when built, rejected when run.
    let mut g = blockfuse_ir::Graph::new();
    let mut b = blockfuse_ir::Builder::new(&mut g);
    let x = b.input(
        "x",
        TensorType::new(DType::F32, [Dim::sym("batch"), Dim::Known(2), Dim::Known(4), Dim::Known(32)]),
    );
    let off = b.input("offsets", TensorType::new(DType::I64, [Dim::sym("n")]));
    let y = b.block(Rope::new(32, 1e4).with_position(RopePosition::Offsets), &[x, off]).unwrap()[0];
    g.add_output("y", y);
    let x = HostTensor::from_f32(vec![2, 2, 4, 32], &[0.5; 512]);
    let off = HostTensor::from_i64(vec![3], &[0, 1, 2]);
    let e = run_error(&g, &[x, off]).to_string();
    assert!(e.contains("rope: offsets has 3 entries, x has batch 2 (axis 0)"), "{e}");
}

/// Group 4: a single token (T = 1) for several batch and head counts, offset 5: every batch
/// row must be rotated (mlx#3494/#3795/#3949).
#[test]
fn group4_single_token() {
    let mut rng = rng(4);
    for bsz in [2, 4, 8] {
        for heads in [1, 4, 7] {
            for dtype in FLOATS {
                let shape = [bsz, heads, 1, 64];
                let (x, xv) = random(&mut rng, dtype, &shape);
                let want = rope_ref(&xv, &shape, 64, false, &inv_freqs(1e4, 64), 1.0, &|_, _| 5.0, dtype);
                let out = run_block(Rope::new(64, 1e4).with_position(RopePosition::Offset(5)), &[&x]);
                assert_close(&out[0], &want, tol(dtype), &format!("B={bsz} H={heads} {dtype}"));
                // The same through a per-batch offsets tensor of fives.
                let off = HostTensor::from_i64(vec![bsz], &vec![5; bsz]);
                let out = run_block(Rope::new(64, 1e4).with_position(RopePosition::Offsets), &[&x, &off]);
                assert_close(&out[0], &want, tol(dtype), &format!("offsets B={bsz} H={heads} {dtype}"));
            }
        }
    }
}

/// Group 5: partial rotation leaves the tail unchanged.
#[test]
fn group5_partial_rotation() {
    let mut rng = rng(5);
    for dtype in FLOATS {
        for traditional in [false, true] {
            let shape = [2, 3, 6, 32];
            let (x, xv) = random(&mut rng, dtype, &shape);
            let out = run_block(Rope::new(16, 1e4).with_traditional(traditional), &[&x]);
            let want =
                rope_ref(&xv, &shape, 16, traditional, &inv_freqs(1e4, 16), 1.0, &|_, t| t as f64, dtype);
            assert_close(&out[0], &want, tol(dtype), &format!("partial {dtype} {traditional}"));
            let got = out[0].to_f64_vec();
            for row in 0..got.len() / 32 {
                assert_eq!(
                    got[row * 32 + 16..row * 32 + 32],
                    xv[row * 32 + 16..row * 32 + 32],
                    "tail changed"
                );
            }
        }
    }
}

/// Group 5: a {B, T, H, D} tensor transposed to {B, H, T, D} in the graph: every head equals
/// that head rotated alone (emlx#121).
#[test]
fn group5_heads_rotate_independently() {
    let mut rng = rng(55);
    let (bsz, t, h, d) = (2, 5, 3, 16);
    for dtype in FLOATS {
        let (x, xv) = random(&mut rng, dtype, &[bsz, t, h, d]);
        let rope = Rope::new(d, 1e4).with_position(RopePosition::Offset(1));
        let g = graph_with(&[&x], |b, xs| {
            let y = b.transpose(xs[0], &[0, 2, 1, 3]).unwrap();
            b.block(rope.clone(), &[y]).unwrap()
        });
        let all = FallbackBackend::new().run(&g, &[x]).unwrap()[0].to_f64_vec();
        for head in 0..h {
            let mut alone = Vec::new();
            for bb in 0..bsz {
                for tt in 0..t {
                    let start = ((bb * t + tt) * h + head) * d;
                    alone.extend_from_slice(&xv[start..start + d]);
                }
            }
            let (xh, _) = tensor(dtype, &[bsz, 1, t, d], &alone);
            let one = run_block(rope.clone(), &[&xh])[0].to_f64_vec();
            for bb in 0..bsz {
                let got = &all[((bb * h + head) * t) * d..((bb * h + head) * t + t) * d];
                assert_eq!(got, &one[bb * t * d..(bb + 1) * t * d], "head {head} batch {bb} ({dtype})");
            }
        }
    }
}

/// Group 5: non-sequential positions [[0, 5]].
#[test]
fn group5_positions() {
    let mut rng = rng(56);
    for dtype in FLOATS {
        for ity in [DType::I64, DType::F32] {
            let shape = [1, 2, 2, 16];
            let (x, xv) = random(&mut rng, dtype, &shape);
            let (pos, _) = tensor(ity, &[1, 2], &[0.0, 5.0]);
            for traditional in [false, true] {
                let rope =
                    Rope::new(16, 1e4).with_traditional(traditional).with_position(RopePosition::Positions);
                let out = run_block(rope, &[&x, &pos]);
                let want = rope_ref(
                    &xv,
                    &shape,
                    16,
                    traditional,
                    &inv_freqs(1e4, 16),
                    1.0,
                    &|_, t| [0.0, 5.0][t],
                    dtype,
                );
                assert_close(&out[0], &want, tol(dtype), &format!("positions {dtype} {ity} {traditional}"));
            }
        }
    }
    // Per-batch positions {B, T} on a 3-D input, scaled.
    let (x, xv) = random(&mut common::rng(57), DType::F32, &[2, 3, 8]);
    let pv = [7.0, 2.0, 9.0, 0.0, 1.0, 4.0];
    let pos = HostTensor::from_i64(vec![2, 3], &[7, 2, 9, 0, 1, 4]);
    let rope = Rope::new(8, 1e4).with_scale(0.5).with_position(RopePosition::Positions);
    let out = run_block(rope, &[&x, &pos]);
    let want =
        rope_ref(&xv, &[2, 3, 8], 8, false, &inv_freqs(1e4, 8), 0.5, &|b, t| pv[b * 3 + t], DType::F32);
    assert_close(&out[0], &want, 1e-6, "per-batch positions");
}

/// The f64 reference of the cos/sin form: `cos`/`sin` of shape `cshape` (broadcast against x
/// of shape `shape` on the leading axes; last axis `dims` or `dims/2`), times `mscale`,
/// rounded to `dtype`; `out1 = x1·c1 − x2·s1`, `out2 = x2·c2 + x1·s2`.
#[allow(clippy::too_many_arguments)]
fn cos_sin_ref(
    x: &[f64],
    shape: &[usize],
    cos: &[f64],
    sin: &[f64],
    cshape: &[usize],
    dims: usize,
    traditional: bool,
    mscale: f64,
    dtype: DType,
) -> Vec<f64> {
    let round = |v: f64| match dtype {
        DType::F16 => half::f16::from_f64(v).to_f64(),
        DType::BF16 => half::bf16::from_f64(v).to_f64(),
        DType::F32 => v as f32 as f64,
        _ => v,
    };
    let (r, cr) = (shape.len(), cshape.len());
    let (d, w, half) = (shape[r - 1], cshape[cr - 1], dims / 2);
    let xs = strides(shape);
    let cs = strides(cshape);
    let mut out = x.to_vec();
    for row in 0..x.len() / d {
        // The cos/sin row this x row reads, by broadcasting the leading axes.
        let mut crow = 0;
        for a in 0..cr - 1 {
            let xa = r - cr + a;
            let i = (row * d / xs[xa]) % shape[xa];
            crow += if cshape[a] == 1 { 0 } else { i * cs[a] };
        }
        let entry = |t: &[f64], j: usize| round(t[crow + j] * mscale);
        for i in 0..half {
            let (a, b) = if traditional { (2 * i, 2 * i + 1) } else { (i, i + half) };
            let (ja, jb) = if w == dims { (a, b) } else { (i, i) };
            let (x1, x2) = (x[row * d + a], x[row * d + b]);
            out[row * d + a] = x1 * entry(cos, ja) - x2 * entry(sin, ja);
            out[row * d + b] = x2 * entry(cos, jb) + x1 * entry(sin, jb);
        }
    }
    out
}

/// The cos/sin form: full-width and per-pair cos/sin, split-half and interleaved, whole and
/// partial rotation, with and without an mscale, in a {B, H, T, D} and a {B, T, H, D} layout.
#[test]
fn cos_sin_form_sweep() {
    let mut rng = rng(21);
    let mut cases = 0;
    for dtype in FLOATS {
        for (shape, cshape_lead) in [([2, 3, 4, 8], [2, 1, 4]), ([2, 4, 3, 8], [2, 4, 1])] {
            let (x, xv) = random(&mut rng, dtype, &shape);
            for traditional in [false, true] {
                for dims in [8, 4] {
                    for w in [dims, dims / 2] {
                        for mscale in [1.0f32, 0.75] {
                            let cshape = [cshape_lead[0], cshape_lead[1], cshape_lead[2], w];
                            let n: usize = cshape.iter().product();
                            let (c, cv) = tensor(DType::F32, &cshape, &uniform(&mut rng, n, -1.0, 1.0));
                            let (s, sv) = tensor(DType::F32, &cshape, &uniform(&mut rng, n, -1.0, 1.0));
                            let rope = Rope::cos_sin(dims, traditional).with_mscale(mscale);
                            let out = run_block(rope, &[&x, &c, &s]);
                            let want = cos_sin_ref(
                                &xv,
                                &shape,
                                &cv,
                                &sv,
                                &cshape,
                                dims,
                                traditional,
                                mscale as f64,
                                dtype,
                            );
                            assert_eq!(out[0].dtype(), dtype);
                            let case =
                                format!("{dtype} {shape:?} trad={traditional} dims={dims} w={w} m={mscale}");
                            assert_close(&out[0], &want, tol(dtype), &case);
                            cases += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cases, 3 * 2 * 2 * 2 * 2 * 2);
}

/// The cos/sin form equals the base form when cos/sin are the base form's angles, and the
/// base form's mscale multiplies the rotated part only.
#[test]
fn cos_sin_form_agrees_with_base_form_and_mscale() {
    let mut rng = rng(22);
    let (x, xv) = random(&mut rng, DType::F32, &[1, 2, 5, 12]);
    let inv = inv_freqs(1e4, 8);
    let angles: Vec<f64> = (0..5).flat_map(|t| inv.iter().map(move |f| (t as f64) * f)).collect();
    let cos: Vec<f64> = angles.iter().map(|a| a.cos()).collect();
    let sin: Vec<f64> = angles.iter().map(|a| a.sin()).collect();
    let (c, _) = tensor(DType::F32, &[5, 4], &cos);
    let (s, _) = tensor(DType::F32, &[5, 4], &sin);
    for traditional in [false, true] {
        let given = run_block(Rope::cos_sin(8, traditional).with_mscale(0.5), &[&x, &c, &s]);
        let base = run_block(Rope::new(8, 1e4).with_traditional(traditional).with_mscale(0.5), &[&x]);
        let want: Vec<f64> =
            rope_ref(&xv, &[1, 2, 5, 12], 8, traditional, &inv, 1.0, &|_, t| t as f64, DType::F64)
                .iter()
                .enumerate()
                .map(|(i, v)| if i % 12 < 8 { v * 0.5 } else { *v })
                .collect();
        assert_close(&given[0], &want, 1e-6, &format!("cos/sin form, traditional={traditional}"));
        assert_close(&base[0], &want, 1e-6, &format!("base form with mscale, traditional={traditional}"));
    }
}

/// Errors of the cos/sin form name the operand and the reason.
#[test]
fn cos_sin_form_errors() {
    let x = x_type(DType::F32, &[2, 3, 4, 8]);
    let c = |dims: &[usize]| x_type(DType::F32, dims);
    let cases: Vec<(Rope, Vec<TensorType>, &str)> = vec![
        (Rope::cos_sin(8, false), vec![x.clone(), c(&[4, 8])], "expects operands (x, cos, sin)"),
        (Rope::cos_sin(8, false), vec![x.clone(), c(&[4, 8]), c(&[4, 4, 8])], "differ in shape"),
        (Rope::cos_sin(8, false), vec![x.clone(), c(&[4, 6]), c(&[4, 6])], "must be dims (8) or dims/2"),
        (Rope::cos_sin(8, false), vec![x.clone(), c(&[5, 8]), c(&[5, 8])], "axis 0 has 5, x has 4"),
        (Rope::cos_sin(10, false), vec![x.clone(), c(&[4, 10]), c(&[4, 10])], "exceed the last axis"),
        (
            Rope { base: Some(1e4), ..Rope::cos_sin(8, false) },
            vec![x.clone(), c(&[4, 8]), c(&[4, 8])],
            "takes no base",
        ),
        (Rope::cos_sin(8, false), vec![x.clone(), c(&[1, 2, 3, 4, 8]), c(&[1, 2, 3, 4, 8])], "more axes"),
    ];
    for (rope, types, want) in cases {
        let err = block_error(rope, &types);
        assert!(err.contains(want), "{err:?} should contain {want:?}");
    }
}
