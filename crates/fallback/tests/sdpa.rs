//! Scaled dot-product attention: blocks.md test-case groups 7–10, against an f64 reference
//! written here.

mod common;

use blockfuse_ir::blocks::{MaskKind, Sdpa};
use blockfuse_ir::{DType, HostTensor, TensorType};
use common::*;
use rand::rngs::SmallRng;
use rand::Rng;

/// Problem sizes.
#[derive(Clone, Copy, Debug)]
struct Dims {
    b: usize,
    nq: usize,
    nkv: usize,
    tq: usize,
    tk: usize,
    d: usize,
    dv: usize,
}

/// What the mask does to score (b, h, i, j): `Some(bias)` keeps it (adding `bias`), `None`
/// masks it out.
type MaskFn<'a> = &'a dyn Fn(usize, usize, usize, usize) -> Option<f64>;

/// The f64 reference. A row with every key masked attends uniformly (finfo.min semantics);
/// sinks join the denominator only.
fn sdpa_ref(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    s: Dims,
    scale: f64,
    mask: MaskFn,
    sinks: Option<&[f64]>,
) -> Vec<f64> {
    let g = s.nq / s.nkv;
    let mut out = vec![0.0; s.b * s.nq * s.tq * s.dv];
    let mut logits = vec![0.0; s.tk];
    let mut kept = vec![false; s.tk];
    for b in 0..s.b {
        for h in 0..s.nq {
            let kh = h / g;
            for i in 0..s.tq {
                let qrow = &q[((b * s.nq + h) * s.tq + i) * s.d..][..s.d];
                for j in 0..s.tk {
                    let krow = &k[((b * s.nkv + kh) * s.tk + j) * s.d..][..s.d];
                    let dot: f64 = qrow.iter().zip(krow).map(|(a, c)| a * c).sum();
                    match mask(b, h, i, j) {
                        Some(bias) => {
                            logits[j] = scale * dot + bias;
                            kept[j] = true;
                        }
                        None => kept[j] = false,
                    }
                }
                let any = kept.iter().any(|&x| x);
                let sink = sinks.map(|s| s[h]);
                let p: Vec<f64> = if !any {
                    vec![if sink.is_some() { 0.0 } else { 1.0 / s.tk as f64 }; s.tk]
                } else {
                    let mut m =
                        (0..s.tk).filter(|&j| kept[j]).map(|j| logits[j]).fold(f64::NEG_INFINITY, f64::max);
                    if let Some(sk) = sink {
                        m = m.max(sk);
                    }
                    let e: Vec<f64> =
                        (0..s.tk).map(|j| if kept[j] { (logits[j] - m).exp() } else { 0.0 }).collect();
                    let den = e.iter().sum::<f64>() + sink.map_or(0.0, |sk| (sk - m).exp());
                    e.iter().map(|x| x / den).collect()
                };
                let o = &mut out[((b * s.nq + h) * s.tq + i) * s.dv..][..s.dv];
                for (j, pj) in p.iter().enumerate() {
                    let vrow = &v[((b * s.nkv + kh) * s.tk + j) * s.dv..][..s.dv];
                    for (x, y) in o.iter_mut().zip(vrow) {
                        *x += pj * y;
                    }
                }
            }
        }
    }
    out
}

struct Qkv {
    q: HostTensor,
    k: HostTensor,
    v: HostTensor,
    qv: Vec<f64>,
    kv: Vec<f64>,
    vv: Vec<f64>,
}

/// q and k standard normal (so scores are about N(0, 1) with scale 1/√D), v uniform in
/// [−1, 1) (so outputs stay below 1).
fn qkv(rng: &mut SmallRng, dtype: DType, s: Dims) -> Qkv {
    let (q, qv) = tensor(dtype, &[s.b, s.nq, s.tq, s.d], &normal(rng, s.b * s.nq * s.tq * s.d));
    let (k, kv) = tensor(dtype, &[s.b, s.nkv, s.tk, s.d], &normal(rng, s.b * s.nkv * s.tk * s.d));
    let (v, vv) = random(rng, dtype, &[s.b, s.nkv, s.tk, s.dv]);
    Qkv { q, k, v, qv, kv, vv }
}

fn tol(dtype: DType, masked: bool) -> f64 {
    match dtype {
        DType::F32 if masked => 1e-4,
        DType::F32 => 2e-5,
        DType::F16 => 3e-4,
        _ => 5e-3,
    }
}

fn causal_keep(s: Dims) -> impl Fn(usize, usize, usize, usize) -> Option<f64> {
    move |_, _, i, j| (j + s.tq <= i + s.tk).then_some(0.0)
}

/// Compares only rows `rows..` of every (b, h).
fn assert_rows_close(got: &HostTensor, want: &[f64], s: Dims, rows: usize, tol: f64, case: &str) {
    let g = got.to_f64_vec();
    let mut err = 0.0f64;
    for bh in 0..s.b * s.nq {
        for i in rows..s.tq {
            let at = (bh * s.tq + i) * s.dv;
            err = err.max(max_abs(&g[at..at + s.dv], &want[at..at + s.dv]));
        }
    }
    assert!(err <= tol, "{case}: max abs error {err:e} exceeds the blocks.md tolerance {tol:e}");
}

/// Group 7: Tq ≠ Tk both ways, 32 query / 8 kv heads, masks none / additive / bool / causal.
#[test]
fn group7_sweep() {
    let mut rng = rng(7);
    for dtype in FLOATS {
        for (tq, tk) in [(12, 40), (40, 12)] {
            let s = Dims { b: 2, nq: 32, nkv: 8, tq, tk, d: 64, dv: 64 };
            let x = qkv(&mut rng, dtype, s);
            let scale = Sdpa::default_scale(64);
            let sc = scale as f64;
            // No mask.
            let out = run_block(Sdpa::new(scale, MaskKind::None), &[&x.q, &x.k, &x.v]);
            assert_eq!(out[0].dims(), &[2, 32, tq, 64]);
            let want = sdpa_ref(&x.qv, &x.kv, &x.vv, s, sc, &|_, _, _, _| Some(0.0), None);
            assert_close(&out[0], &want, tol(dtype, false), &format!("none {dtype} {tq}x{tk}"));
            // Additive {Tq, Tk}.
            let (m, mv) = random(&mut rng, dtype, &[tq, tk]);
            let out = run_block(Sdpa::new(scale, MaskKind::Additive), &[&x.q, &x.k, &x.v, &m]);
            let want = sdpa_ref(&x.qv, &x.kv, &x.vv, s, sc, &|_, _, i, j| Some(mv[i * tk + j]), None);
            assert_close(&out[0], &want, tol(dtype, true), &format!("additive {dtype} {tq}x{tk}"));
            // Boolean {B, 1, Tq, Tk}.
            let keep: Vec<f64> = (0..2 * tq * tk).map(|_| rng.gen_bool(0.7) as u8 as f64).collect();
            let (m, _) = tensor(DType::Bool, &[2, 1, tq, tk], &keep);
            let out = run_block(Sdpa::new(scale, MaskKind::Boolean), &[&x.q, &x.k, &x.v, &m]);
            let want = sdpa_ref(
                &x.qv,
                &x.kv,
                &x.vv,
                s,
                sc,
                &|b, _, i, j| (keep[(b * tq + i) * tk + j] != 0.0).then_some(0.0),
                None,
            );
            assert_close(&out[0], &want, tol(dtype, true), &format!("bool {dtype} {tq}x{tk}"));
            // Causal (lower-right aligned); with Tq > Tk only the last Tk rows are compared.
            let out = run_block(Sdpa::new(scale, MaskKind::Causal), &[&x.q, &x.k, &x.v]);
            let want = sdpa_ref(&x.qv, &x.kv, &x.vv, s, sc, &causal_keep(s), None);
            let rows = tq.saturating_sub(tk);
            assert_rows_close(
                &out[0],
                &want,
                s,
                rows,
                tol(dtype, true),
                &format!("causal {dtype} {tq}x{tk}"),
            );
            assert!(out[0].to_f64_vec().iter().all(|v| v.is_finite()), "causal rows with no key are NaN");
        }
    }
}

/// Group 7: a single query against up to 2000 keys.
#[test]
fn group7_single_query_long_keys() {
    let mut rng = rng(71);
    for dtype in FLOATS {
        for tk in [1, 7, 129, 2000] {
            let s = Dims { b: 1, nq: 32, nkv: 8, tq: 1, tk, d: 64, dv: 64 };
            let x = qkv(&mut rng, dtype, s);
            let scale = Sdpa::default_scale(64);
            for mask in [MaskKind::None, MaskKind::Causal] {
                let out = run_block(Sdpa::new(scale, mask), &[&x.q, &x.k, &x.v]);
                // With Tq = 1 the causal mask keeps every key.
                let want = sdpa_ref(&x.qv, &x.kv, &x.vv, s, scale as f64, &|_, _, _, _| Some(0.0), None);
                assert_close(&out[0], &want, tol(dtype, false), &format!("Tq=1 Tk={tk} {dtype} {mask:?}"));
            }
        }
    }
}

/// Group 8: masks that broadcast, a bf16 additive mask, a fully masked row, a sliding window,
/// and a mask that does not broadcast.
#[test]
fn group8_masks() {
    let mut rng = rng(8);
    let s = Dims { b: 2, nq: 4, nkv: 2, tq: 6, tk: 10, d: 16, dv: 8 };
    let scale = 0.3f32;
    let sc = scale as f64;
    let x = qkv(&mut rng, DType::F32, s);
    let args = |m: &HostTensor| vec![x.q.clone(), x.k.clone(), x.v.clone(), m.clone()];
    let run = |kind: MaskKind, m: &HostTensor| {
        let a = args(m);
        run_block(Sdpa::new(scale, kind), &a.iter().collect::<Vec<_>>())
    };
    // Scalar, (Tk,) and (Nq, 1, Tk) additive masks.
    let (m, mv) = tensor(DType::F32, &[], &[-0.75]);
    let want = sdpa_ref(&x.qv, &x.kv, &x.vv, s, sc, &|_, _, _, _| Some(mv[0]), None);
    assert_close(&run(MaskKind::Additive, &m)[0], &want, 1e-4, "scalar mask");
    let (m, mv) = random(&mut rng, DType::F32, &[s.tk]);
    let want = sdpa_ref(&x.qv, &x.kv, &x.vv, s, sc, &|_, _, _, j| Some(mv[j]), None);
    assert_close(&run(MaskKind::Additive, &m)[0], &want, 1e-4, "(Tk,) mask");
    let (m, mv) = random(&mut rng, DType::F32, &[s.nq, 1, s.tk]);
    let want = sdpa_ref(&x.qv, &x.kv, &x.vv, s, sc, &|_, h, _, j| Some(mv[h * s.tk + j]), None);
    assert_close(&run(MaskKind::Additive, &m)[0], &want, 1e-4, "(Nq, 1, Tk) mask");
    // A (Tk,) boolean mask.
    let keep: Vec<f64> = (0..s.tk).map(|j| (j % 3 != 1) as u8 as f64).collect();
    let (m, _) = tensor(DType::Bool, &[s.tk], &keep);
    let want = sdpa_ref(&x.qv, &x.kv, &x.vv, s, sc, &|_, _, _, j| (keep[j] != 0.0).then_some(0.0), None);
    assert_close(&run(MaskKind::Boolean, &m)[0], &want, 1e-4, "(Tk,) bool mask");

    // A bf16 additive mask, on f32 and on bf16 attention (finfo.min of bf16 included).
    let vals: Vec<f64> = (0..s.tq * s.tk)
        .map(|i| if i % 7 == 3 { half::bf16::MIN.to_f64() } else { rng.gen_range(-1.0..1.0) })
        .collect();
    let (m, mv) = tensor(DType::BF16, &[s.tq, s.tk], &vals);
    let bias = |_: usize, _: usize, i: usize, j: usize| {
        let b = mv[i * s.tk + j];
        (b > -1e30).then_some(b)
    };
    let want = sdpa_ref(&x.qv, &x.kv, &x.vv, s, sc, &bias, None);
    assert_close(&run(MaskKind::Additive, &m)[0], &want, 1e-4, "bf16 mask, f32 attention");
    let xb = qkv(&mut rng, DType::BF16, s);
    let out = run_block(Sdpa::new(scale, MaskKind::Additive), &[&xb.q, &xb.k, &xb.v, &m]);
    assert_eq!(out[0].dtype(), DType::BF16);
    let want = sdpa_ref(&xb.qv, &xb.kv, &xb.vv, s, sc, &bias, None);
    assert_close(&out[0], &want, 5e-3, "bf16 mask, bf16 attention");

    // A fully masked row (query 2 of every head) attends uniformly, with no NaN, for a boolean
    // mask and for an additive finfo.min mask.
    let keep: Vec<f64> = (0..s.tq * s.tk).map(|i| (i / s.tk != 2 && i % 4 != 0) as u8 as f64).collect();
    let (m, _) = tensor(DType::Bool, &[s.tq, s.tk], &keep);
    let out = run(MaskKind::Boolean, &m);
    let want =
        sdpa_ref(&x.qv, &x.kv, &x.vv, s, sc, &|_, _, i, j| (keep[i * s.tk + j] != 0.0).then_some(0.0), None);
    assert!(out[0].to_f64_vec().iter().all(|v| v.is_finite()), "NaN in a fully masked row");
    assert_close(&out[0], &want, 1e-4, "fully masked row (bool)");
    let add: Vec<f64> = keep.iter().map(|&k| if k != 0.0 { 0.0 } else { f32::MIN as f64 }).collect();
    let (m, _) = tensor(DType::F32, &[s.tq, s.tk], &add);
    let out = run(MaskKind::Additive, &m);
    assert!(out[0].to_f64_vec().iter().all(|v| v.is_finite()), "NaN in a fully masked row");
    assert_close(&out[0], &want, 1e-4, "fully masked row (finfo.min additive)");

    // The same with −∞: masked entries are clamped to finfo.min, so still no NaN.
    let add: Vec<f64> = keep.iter().map(|&k| if k != 0.0 { 0.0 } else { f64::NEG_INFINITY }).collect();
    for dtype in [DType::F32, DType::BF16] {
        let (m, _) = tensor(dtype, &[s.tq, s.tk], &add);
        let out = run(MaskKind::Additive, &m);
        assert!(out[0].to_f64_vec().iter().all(|v| v.is_finite()), "NaN with a −∞ {dtype} mask");
        assert_close(&out[0], &want, 1e-4, &format!("fully masked row (−∞ additive, {dtype})"));
    }

    // A sliding window of 3 keys on top of causal.
    let win = |i: usize, j: usize| j + s.tq <= i + s.tk && j + s.tq + 3 > i + s.tk;
    let keep: Vec<f64> = (0..s.tq * s.tk).map(|x| win(x / s.tk, x % s.tk) as u8 as f64).collect();
    let (m, _) = tensor(DType::Bool, &[1, 1, s.tq, s.tk], &keep);
    let want = sdpa_ref(&x.qv, &x.kv, &x.vv, s, sc, &|_, _, i, j| win(i, j).then_some(0.0), None);
    assert_close(&run(MaskKind::Boolean, &m)[0], &want, 1e-4, "sliding window");

    // A mask of shape (Nq, 2, L) does not broadcast to {B, Nq, Tq, Tk}.
    let f = |d: &[usize]| TensorType::known(DType::F32, d);
    let e = block_error(
        Sdpa::new(scale, MaskKind::Additive),
        &[f(&[2, 4, 6, 16]), f(&[2, 2, 10, 16]), f(&[2, 2, 10, 8]), f(&[4, 2, 10])],
    );
    assert!(
        e.contains("sdpa: mask of shape [4, 2, 10] does not broadcast to {B, Nq, Tq, Tk} = [2, 4, 6, 10]: axis 1 has 2, expected 6 or 1"),
        "{e}"
    );
}

/// Group 9: sinks.
#[test]
fn group9_sinks() {
    let mut rng = rng(9);
    let s = Dims { b: 2, nq: 8, nkv: 2, tq: 5, tk: 9, d: 32, dv: 32 };
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::F16, 1e-2)] {
        let x = qkv(&mut rng, dtype, s);
        let scale = Sdpa::default_scale(32);
        let (sk, skv) = tensor(dtype, &[s.nq], &normal(&mut rng, s.nq));
        for mask in [MaskKind::None, MaskKind::Causal] {
            let blk = Sdpa::new(scale, mask).with_sinks(true);
            let out = run_block(blk, &[&x.q, &x.k, &x.v, &sk]);
            let keep = causal_keep(s);
            let m: MaskFn = if mask == MaskKind::Causal { &keep } else { &|_, _, _, _| Some(0.0) };
            let want = sdpa_ref(&x.qv, &x.kv, &x.vv, s, scale as f64, m, Some(&skv));
            assert_close(&out[0], &want, tol, &format!("sinks {dtype} {mask:?}"));
        }
        // sinks = −inf equal no sinks.
        let (ninf, _) = tensor(dtype, &[s.nq], &vec![f64::NEG_INFINITY; s.nq]);
        let with = run_block(Sdpa::new(scale, MaskKind::Causal).with_sinks(true), &[&x.q, &x.k, &x.v, &ninf]);
        let without = run_block(Sdpa::new(scale, MaskKind::Causal), &[&x.q, &x.k, &x.v]);
        let d = max_abs(&with[0].to_f64_vec(), &without[0].to_f64_vec());
        assert!(d <= 1e-6, "sinks = -inf differ from no sinks by {d:e} ({dtype})");
    }
    // Wrong shape or dtype.
    let f = |t: DType, d: &[usize]| TensorType::known(t, d);
    let qkv_t = [f(DType::F32, &[1, 8, 4, 16]), f(DType::F32, &[1, 2, 4, 16]), f(DType::F32, &[1, 2, 4, 16])];
    let with = |sinks: TensorType| {
        let mut v = qkv_t.to_vec();
        v.push(sinks);
        block_error(Sdpa::new(0.25, MaskKind::None).with_sinks(true), &v)
    };
    let e = with(f(DType::F32, &[9]));
    assert!(e.contains("sdpa: sinks must be 1-D {Nq} = [8], got f32[9]"), "{e}");
    let e = with(f(DType::F32, &[1, 8]));
    assert!(e.contains("sdpa: sinks must be 1-D {Nq} = [8], got f32[1, 8]"), "{e}");
    let e = with(f(DType::I64, &[8]));
    assert!(e.contains("sdpa: sinks must be a float tensor, got i64[8]"), "{e}");
    // A sinks operand the block does not expect.
    let mut v = qkv_t.to_vec();
    v.push(f(DType::F32, &[8]));
    let e = block_error(Sdpa::new(0.25, MaskKind::None), &v);
    assert!(e.contains("sdpa: expects operands (q, k, v), got 4 operand(s)"), "{e}");
}

/// Group 10: causal + key padding, bf16: a left-padded prefill (T = 80, 19 valid positions,
/// 16 query / 8 kv heads) has no NaN; decode with the kv offset T − 1.
#[test]
fn group10_causal_key_padding() {
    let mut rng = rng(10);
    let t = 80;
    let valid = 19;
    // Row 0 is left-padded, row 1 is all valid; i64 like Hugging Face's attention_mask.
    let pad: Vec<f64> = (0..2 * t).map(|i| (i >= t || i % t >= t - valid) as u8 as f64).collect();
    let keep = |b: usize, i: usize, j: usize, tq: usize| j + tq <= i + t && pad[b * t + j] != 0.0;
    for pad_dtype in [DType::I64, DType::Bool] {
        let (kp, _) = tensor(pad_dtype, &[2, t], &pad);
        // Prefill.
        let s = Dims { b: 2, nq: 16, nkv: 8, tq: t, tk: t, d: 64, dv: 64 };
        let x = qkv(&mut rng, DType::BF16, s);
        let scale = Sdpa::default_scale(64);
        let out = run_block(Sdpa::new(scale, MaskKind::CausalWithKeyPadding), &[&x.q, &x.k, &x.v, &kp]);
        assert!(out[0].to_f64_vec().iter().all(|v| v.is_finite()), "NaN in a left-padded prefill");
        let want = sdpa_ref(
            &x.qv,
            &x.kv,
            &x.vv,
            s,
            scale as f64,
            &|b, _, i, j| keep(b, i, j, t).then_some(0.0),
            None,
        );
        assert_close(&out[0], &want, 5e-3, &format!("prefill, {pad_dtype} padding"));
        // Decode: one query at position T − 1 over the T cached keys.
        let s = Dims { tq: 1, ..s };
        let x = qkv(&mut rng, DType::BF16, s);
        let out = run_block(Sdpa::new(scale, MaskKind::CausalWithKeyPadding), &[&x.q, &x.k, &x.v, &kp]);
        let want = sdpa_ref(
            &x.qv,
            &x.kv,
            &x.vv,
            s,
            scale as f64,
            &|b, _, i, j| keep(b, i, j, 1).then_some(0.0),
            None,
        );
        assert_close(&out[0], &want, 5e-3, &format!("decode, {pad_dtype} padding"));
    }
    // The key padding mask must be {B, Tk}.
    let f = |d: &[usize]| TensorType::known(DType::F32, d);
    let e = block_error(
        Sdpa::new(0.125, MaskKind::CausalWithKeyPadding),
        &[f(&[2, 16, 8, 64]), f(&[2, 8, 8, 64]), f(&[2, 8, 8, 64]), TensorType::known(DType::I64, &[2, 9])],
    );
    assert!(e.contains("sdpa: the key padding mask must be {B, Tk} = [2, 8], got i64[2, 9]"), "{e}");
}

#[test]
fn sdpa_errors() {
    let f = |d: &[usize]| TensorType::known(DType::F32, d);
    let e =
        block_error(Sdpa::new(0.1, MaskKind::None), &[f(&[1, 6, 4, 8]), f(&[1, 4, 4, 8]), f(&[1, 4, 4, 8])]);
    assert!(e.contains("sdpa: 6 query heads are not a multiple of 4 kv heads"), "{e}");
    let e = block_error(Sdpa::new(0.1, MaskKind::None), &[f(&[6, 4, 8]), f(&[1, 4, 4, 8]), f(&[1, 4, 4, 8])]);
    assert!(e.contains("sdpa: q must have 4 axes"), "{e}");
    let e =
        block_error(Sdpa::new(0.1, MaskKind::None), &[f(&[1, 4, 4, 8]), f(&[1, 4, 4, 16]), f(&[1, 4, 4, 8])]);
    assert!(e.contains("sdpa: q and k head dims differ"), "{e}");
    let e = block_error(
        Sdpa::new(0.1, MaskKind::Additive),
        &[f(&[1, 4, 4, 8]), f(&[1, 4, 4, 8]), f(&[1, 4, 4, 8]), TensorType::known(DType::Bool, &[4, 4])],
    );
    assert!(e.contains("sdpa: an additive mask must be float"), "{e}");
    let e = block_error(
        Sdpa::new(0.1, MaskKind::Boolean),
        &[f(&[1, 4, 4, 8]), f(&[1, 4, 4, 8]), f(&[1, 4, 4, 8]), f(&[4, 4])],
    );
    assert!(e.contains("sdpa: a boolean mask must be bool"), "{e}");
    let e = block_error(
        Sdpa::new(f32::NAN, MaskKind::None),
        &[f(&[1, 4, 4, 8]), f(&[1, 4, 4, 8]), f(&[1, 4, 4, 8])],
    );
    assert!(e.contains("sdpa: scale must be finite"), "{e}");
}

/// Mixed dtypes promote: f16 q with f32 k and v gives f32.
#[test]
fn sdpa_result_type() {
    let mut rng = rng(12);
    let s = Dims { b: 1, nq: 2, nkv: 1, tq: 3, tk: 4, d: 8, dv: 8 };
    let (q, qv) = random(&mut rng, DType::F16, &[1, 2, 3, 8]);
    let (k, kv) = random(&mut rng, DType::F32, &[1, 1, 4, 8]);
    let (v, vv) = random(&mut rng, DType::F32, &[1, 1, 4, 8]);
    let out = run_block(Sdpa::new(0.5, MaskKind::None), &[&q, &k, &v]);
    assert_eq!(out[0].dtype(), DType::F32);
    let want = sdpa_ref(&qv, &kv, &vv, s, 0.5, &|_, _, _, _| Some(0.0), None);
    assert_close(&out[0], &want, 1e-5, "mixed dtypes");
}
