//! Differential special-value tests (issue 17): every accepted `sdpa`, norm, RoPE, SwiGLU and GELU variant is
//! built from primitive ops, optimized with the default rules, and run original-vs-fused on
//! the reference evaluator **and** on MLX (CPU, default lowerings) with inputs that random
//! values in [−2, 2) never reach: −∞ and finfo.min masks with fully masked rows and columns,
//! NaN and ±∞ activations, huge and tiny magnitudes, zero-length sequences. A fused graph
//! must give the original's values, NaN-ness and infinities included (docs/reliability.md).

mod common;

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::{
    BinaryOp, Builder, DType, Dim, Graph, HostTensor, Op, ReduceOp, TensorType, UnaryOp, Value,
};
use blockfuse_models::attention::{eager_attention, scaled_scores, where_masked};
use blockfuse_patterns::{default_rules, optimize};
use common::*;

/// Heads, query and key lengths, head dim of the attention cases.
const H: usize = 2;
const D: usize = 8;

/// NaN-aware agreement: NaN exactly where `want` has NaN, equal infinities, finite values
/// within `tol · max(1, |want|)`. Returns the first differing index and both values.
fn first_difference(got: &HostTensor, want: &HostTensor, tol: f64) -> Option<(usize, f64, f64)> {
    assert_eq!(got.dims(), want.dims());
    got.to_f64_vec().into_iter().zip(want.to_f64_vec()).enumerate().find_map(|(i, (g, w))| {
        let same = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tol * w.abs().max(1.0);
        (!same).then_some((i, g, w))
    })
}

/// Optimizes `g` (asserting that `block` fused), then checks on every input set that the
/// fused graph matches the original on the reference evaluator and on MLX.
#[track_caller]
fn differential(name: &str, g: &Graph, block: &str, cases: &[(&str, Vec<HostTensor>)], tol: f64) {
    let mut opt = g.clone();
    let report = optimize(&mut opt, &default_rules()).unwrap();
    assert_eq!(report.blocks.get(block).copied().unwrap_or(0), 1, "{name}: {:?}", report.near_misses);
    let (fb, mx) = (FallbackBackend::new(), mlx());
    for (case, inputs) in cases {
        let want = fb.run(g, inputs).unwrap_or_else(|e| panic!("{name}/{case}: original: {e}"));
        let fused = fb.run(&opt, inputs).unwrap_or_else(|e| panic!("{name}/{case}: fused: {e}"));
        let on_mlx = mx.run(&opt, inputs).unwrap_or_else(|e| panic!("{name}/{case}: fused on MLX: {e}"));
        for (what, got) in [("fallback", &fused), ("MLX", &on_mlx)] {
            if let Some((i, g, w)) = first_difference(&got[0], &want[0], tol) {
                panic!("{name}/{case}: fused on {what} differs from the original at {i}: {g} vs {w}");
            }
        }
    }
}

fn t(dims: &[usize]) -> TensorType {
    TensorType::known(DType::F32, dims)
}

/// `softmax(logits(q, k, extra inputs)) · v`, q `{1, H, tq, D}`, k and v `{1, H, tk, D}`.
fn attention(tq: usize, tk: usize, logits: impl FnOnce(&mut Builder<'_>, Value) -> Value) -> Graph {
    eager_attention(H, (tq, tk), D, |b, q, k| {
        let s = scaled_scores(b, q, k, D).unwrap();
        logits(b, s)
    })
    .unwrap()
}

/// q, k, v for [`attention`]: seeded values with `edit` applied to (q, k, v).
fn qkv(
    tq: usize,
    tk: usize,
    seed: u64,
    edit: impl Fn(&mut [f64], &mut [f64], &mut [f64]),
) -> Vec<HostTensor> {
    let (mut q, mut k, mut v) =
        (noise(H * tq * D, seed), noise(H * tk * D, seed + 1), noise(H * tk * D, seed + 2));
    edit(&mut q, &mut k, &mut v);
    vec![
        tensor(DType::F32, &[1, H, tq, D], &q),
        tensor(DType::F32, &[1, H, tk, D], &k),
        tensor(DType::F32, &[1, H, tk, D], &v),
    ]
}

/// The activation cases: plain, NaN in q, ±∞ in k and v, huge and tiny magnitudes.
fn activation_cases(tq: usize, tk: usize) -> Vec<(&'static str, Vec<HostTensor>)> {
    vec![
        ("random", qkv(tq, tk, 1, |_, _, _| {})),
        ("nan in q", qkv(tq, tk, 2, |q, _, _| q[3] = f64::NAN)),
        ("+inf in k", qkv(tq, tk, 3, |_, k, _| k[D + 1] = f64::INFINITY)),
        ("-inf in v", qkv(tq, tk, 4, |_, _, v| v[2] = f64::NEG_INFINITY)),
        ("huge", qkv(tq, tk, 5, |q, k, _| q.iter_mut().chain(k.iter_mut()).for_each(|x| *x *= 3e3))),
        ("tiny", qkv(tq, tk, 6, |q, k, v| q.iter_mut().chain(k).chain(v).for_each(|x| *x *= 1e-30))),
    ]
}

/// A keep-mask `{1, 1, tq, tk}`: query 0 sees no key, key 1 is seen by no query, the rest
/// kept where `k ≤ q + 1`.
fn keep_mask(tq: usize, tk: usize) -> Vec<bool> {
    (0..tq * tk).map(|i| (i / tk != 0) && (i % tk != 1) && (i % tk <= i / tk + 1)).collect()
}

/// The masked cases: each activation case plus the mask built from [`keep_mask`] by `value`.
fn masked_cases(
    tq: usize,
    tk: usize,
    value: impl Fn(bool) -> f64,
    dtype: DType,
) -> Vec<(&'static str, Vec<HostTensor>)> {
    let m: Vec<f64> = keep_mask(tq, tk).into_iter().map(value).collect();
    let mut cases = activation_cases(tq, tk);
    for (_, inputs) in &mut cases {
        inputs.push(tensor(dtype, &[1, 1, tq, tk], &m));
    }
    cases
}

#[test]
fn sdpa_additive_mask_input_with_neg_inf_and_finfo_min_rows() {
    let (tq, tk) = (4, 5);
    let g = attention(tq, tk, |b, s| {
        let m = b.input("mask", t(&[1, 1, tq, tk]));
        b.add2(s, m).unwrap()
    });
    let ninf = masked_cases(tq, tk, |keep| if keep { 0.0 } else { f64::NEG_INFINITY }, DType::F32);
    differential("additive −inf", &g, "sdpa", &ninf, 1e-4);
    let min = masked_cases(tq, tk, |keep| if keep { 0.0 } else { f32::MIN as f64 }, DType::F32);
    differential("additive finfo.min", &g, "sdpa", &min, 1e-4);
    let nan = masked_cases(tq, tk, |keep| if keep { 0.0 } else { f64::NAN }, DType::F32);
    differential("additive NaN", &g, "sdpa", &nan, 1e-4);
}

#[test]
fn sdpa_issue17_off_by_one_trilu_neg_inf_mask() {
    let n = 4;
    let g = attention(n, n, |b, s| {
        let shape = vec![Dim::Known(n), Dim::Known(n)];
        let full = b.add(Op::Full { shape, value: f64::NEG_INFINITY, dtype: DType::F32 }, &[]).unwrap();
        let mask = b.add(Op::Trilu { upper: true, k: 0 }, &[full]).unwrap();
        b.add2(s, mask).unwrap()
    });
    differential("triu(full(−inf), 0)", &g, "sdpa", &activation_cases(n, n), 1e-4);
}

/// `where(m, s, fill)` or `where(m, fill, s)` with a bool mask input.
fn where_graph(tq: usize, tk: usize, fill: f64, keep: bool) -> Graph {
    attention(tq, tk, |b, s| {
        let m = b.input("mask", TensorType::known(DType::Bool, &[1, 1, tq, tk]));
        where_masked(b, m, s, fill, keep).unwrap()
    })
}

#[test]
fn sdpa_where_masks_with_fully_masked_rows_and_columns() {
    let (tq, tk) = (4, 5);
    let keep = masked_cases(tq, tk, |k| k as u8 as f64, DType::Bool);
    let drop = masked_cases(tq, tk, |k| !k as u8 as f64, DType::Bool);
    differential("where(m, s, −inf)", &where_graph(tq, tk, f64::NEG_INFINITY, true), "sdpa", &keep, 1e-4);
    differential("where(m, s, finfo.min)", &where_graph(tq, tk, f32::MIN as f64, true), "sdpa", &keep, 1e-4);
    differential("where(m, finfo.min, s)", &where_graph(tq, tk, f32::MIN as f64, false), "sdpa", &drop, 1e-4);
}

#[test]
fn sdpa_softcap_on_mlx_and_fallback() {
    let (tq, tk) = (4, 5);
    let g = attention(tq, tk, |b, s| {
        let c = b.scalar(DType::F32, 5.0);
        let x = b.div(s, c).unwrap();
        let x = b.unary(UnaryOp::Tanh, x).unwrap();
        let s = b.mul(x, c).unwrap();
        let m = b.input("mask", TensorType::known(DType::Bool, &[1, 1, tq, tk]));
        let f = b.scalar(DType::F32, f64::NEG_INFINITY);
        b.select(m, s, f).unwrap()
    });
    let cases = masked_cases(tq, tk, |k| k as u8 as f64, DType::Bool);
    differential("softcap", &g, "sdpa", &cases, 1e-4);
}

#[test]
fn sdpa_causal_tq_lt_tk_aligned_to_the_end() {
    // A query block of 3 against 7 keys, band k ≤ q + 4, masked with −∞.
    let (tq, tk) = (3, 7);
    let g = attention(tq, tk, |b, s| {
        let r = |b: &mut Builder<'_>, n: usize| {
            b.add(Op::Range { start: 0.0, step: 1.0, len: Dim::Known(n), dtype: DType::I64 }, &[]).unwrap()
        };
        let rows = r(b, tq);
        let rows = b.reshape(rows, vec![Dim::Known(tq), Dim::Known(1)]).unwrap();
        let off = b.scalar(DType::I64, (tk - tq) as f64);
        let rows = b.add2(rows, off).unwrap();
        let cols = r(b, tk);
        let keep = b.binary(BinaryOp::LessEqual, cols, rows).unwrap();
        let f = b.scalar(DType::F32, f64::NEG_INFINITY);
        b.select(keep, s, f).unwrap()
    });
    let mut opt = g.clone();
    optimize(&mut opt, &default_rules()).unwrap();
    assert!(blockfuse_ir::text::dump(&opt).unwrap().contains("mask=causal"));
    differential("causal Tq<Tk", &g, "sdpa", &activation_cases(tq, tk), 1e-4);
}

#[test]
fn sdpa_zero_length_key_sequence() {
    // No keys: softmax over nothing, P·v is all zeros in the original and the block.
    let g = attention(3, 0, |_, s| s);
    let inputs = qkv(3, 0, 9, |_, _, _| {});
    differential("Tk = 0", &g, "sdpa", &[("empty", inputs)], 1e-6);
}

/// `w · x · rsqrt(mean(x²) + eps)` (`layer`: LayerNorm `(x − μ) · rsqrt(var + eps) · w + b`).
fn norm_graph(layer: bool, eps: f64, n: usize) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", t(&[3, n]));
    let w = b.input("w", t(&[n]));
    let mean = |b: &mut Builder<'_>, v: Value| b.reduce(ReduceOp::Mean, v, &[-1], true).unwrap();
    let centered = if layer {
        let mu = mean(&mut b, x);
        b.sub(x, mu).unwrap()
    } else {
        x
    };
    let sq = b.mul(centered, centered).unwrap();
    let var = mean(&mut b, sq);
    let e = b.scalar(DType::F32, eps);
    let ve = b.add2(var, e).unwrap();
    let r = b.unary(UnaryOp::Rsqrt, ve).unwrap();
    let y = b.mul(centered, r).unwrap();
    let y = b.mul(y, w).unwrap();
    let y = if layer {
        let bias = b.input("b", t(&[n]));
        b.add2(y, bias).unwrap()
    } else {
        y
    };
    g.add_output("y", y);
    g
}

fn norm_cases(layer: bool, n: usize) -> Vec<(&'static str, Vec<HostTensor>)> {
    let make = |seed: u64, edit: &dyn Fn(&mut [f64])| {
        let mut x = noise(3 * n, seed);
        edit(&mut x);
        let mut v = vec![tensor(DType::F32, &[3, n], &x), rand(DType::F32, &[n], seed + 1, 1.0)];
        if layer {
            v.push(rand(DType::F32, &[n], seed + 2, 1.0));
        }
        v
    };
    vec![
        ("random", make(1, &|_| {})),
        ("nan", make(2, &|x| x[1] = f64::NAN)),
        ("+inf", make(3, &|x| x[n + 2] = f64::INFINITY)),
        ("-inf", make(4, &|x| x[2 * n] = f64::NEG_INFINITY)),
        ("tiny", make(5, &|x| x.iter_mut().for_each(|v| *v *= 1e-20))),
        ("large", make(6, &|x| x.iter_mut().for_each(|v| *v *= 1e15))),
        ("x² overflows", make(8, &|x| x.iter_mut().for_each(|v| *v *= 1e20))),
        ("zero row", make(7, &|x| x[..n].iter_mut().for_each(|v| *v = 0.0))),
    ]
}

#[test]
fn norms_with_special_values_and_any_positive_eps() {
    for eps in [1e-6, 0.1] {
        differential(
            &format!("rms_norm eps {eps}"),
            &norm_graph(false, eps, 16),
            "rms_norm",
            &norm_cases(false, 16),
            1e-5,
        );
        differential(
            &format!("layer_norm eps {eps}"),
            &norm_graph(true, eps, 16),
            "layer_norm",
            &norm_cases(true, 16),
            1e-4,
        );
    }
}

#[test]
fn sdpa_attention_sinks_with_fully_masked_rows() {
    // gpt-oss: concat a per-head logit, subtract the row max, softmax, slice the sink off.
    let (tq, tk) = (4, 5);
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", t(&[1, H, tq, D]));
    let k = b.input("k", t(&[1, H, tk, D]));
    let v = b.input("v", t(&[1, H, tk, D]));
    let kt = b.transpose(k, &[0, 1, 3, 2]).unwrap();
    let s = b.matmul(q, kt).unwrap();
    let c = b.scalar(DType::F32, (D as f64).sqrt());
    let s = b.div(s, c).unwrap();
    let m = b.input("mask", TensorType::known(DType::Bool, &[1, 1, tq, tk]));
    let f = b.scalar(DType::F32, f64::NEG_INFINITY);
    let s = b.select(m, s, f).unwrap();
    let sinks = b.constant(HostTensor::from_f64(DType::F32, vec![H], &[0.25, -2.0]));
    let one = Dim::Known(1);
    let sk = b.reshape(sinks, vec![one.clone(), Dim::Known(H), one.clone(), one.clone()]).unwrap();
    let sk = b.expand(sk, vec![one.clone(), Dim::Known(H), Dim::Known(tq), one]).unwrap();
    let joined = b.concat(&[s, sk], -1).unwrap();
    let mx = b.reduce(ReduceOp::Max, joined, &[-1], true).unwrap();
    let centered = b.sub(joined, mx).unwrap();
    let p = b.softmax(centered, -1).unwrap();
    let p = b.slice_axis(p, -1, 0, tk as i64).unwrap();
    let o = b.matmul(p, v).unwrap();
    g.add_output("out", o);
    let cases = masked_cases(tq, tk, |k| k as u8 as f64, DType::Bool);
    differential("sinks", &g, "sdpa", &cases, 1e-4);
}

/// Elementwise inputs `{2, 8}` that random values never reach, given in `(name, values)`.
fn elementwise_cases(n_inputs: usize) -> Vec<(&'static str, Vec<HostTensor>)> {
    let fill = |v: f64| {
        HostTensor::from_f64(
            DType::F32,
            vec![2, 8],
            &(0..16).map(|i| if i % 3 == 0 { v } else { 0.5 - i as f64 / 16.0 }).collect::<Vec<_>>(),
        )
    };
    [
        ("nan", f64::NAN),
        ("+inf", f64::INFINITY),
        ("-inf", f64::NEG_INFINITY),
        ("huge", 1e30),
        ("tiny", 1e-30),
        ("large exp", 120.0),
    ]
    .into_iter()
    .map(|(name, v)| (name, (0..n_inputs).map(|k| if k == 0 { fill(v) } else { fill(0.25) }).collect()))
    .collect()
}

#[test]
fn swiglu_and_gelu_with_special_values() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let (gate, up) = (b.input("gate", t(&[2, 8])), b.input("up", t(&[2, 8])));
    let y = blockfuse_models::Composer::new(&mut b, DType::F32, 1).swiglu(gate, up).unwrap();
    g.add_output("y", y);
    differential("swiglu", &g, "swiglu", &elementwise_cases(2), 1e-6);

    // 0.5 · x · (1 + erf(x / √2))
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", t(&[2, 8]));
    let k = b.scalar(DType::F32, std::f64::consts::FRAC_1_SQRT_2);
    let s = b.mul(x, k).unwrap();
    let e = b.unary(UnaryOp::Erf, s).unwrap();
    let one = b.scalar(DType::F32, 1.0);
    let e1 = b.add2(e, one).unwrap();
    let xe = b.mul(x, e1).unwrap();
    let half = b.scalar(DType::F32, 0.5);
    let y = b.mul(xe, half).unwrap();
    g.add_output("y", y);
    differential("gelu erf", &g, "gelu", &elementwise_cases(1), 1e-6);
}

#[test]
fn rope_with_special_values_and_an_empty_sequence() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input(
        "x",
        TensorType::new(DType::F32, [Dim::Known(1), Dim::Known(H), Dim::sym("seq"), Dim::Known(D)]),
    );
    let mut c = blockfuse_models::Composer::new(&mut b, DType::F32, 1);
    let (cos, sin) = c.cos_sin(D).unwrap();
    let y = c.rotate_half_rope(x, cos, sin, D).unwrap();
    g.add_output("y", y);
    let seq = |n: usize, v: f64| {
        let vals: Vec<f64> =
            (0..H * n * D).map(|i| if i % 5 == 0 { v } else { (i % 7) as f64 / 7.0 - 0.5 }).collect();
        vec![HostTensor::from_f64(DType::F32, vec![1, H, n, D], &vals)]
    };
    let cases: Vec<(&str, Vec<HostTensor>)> = vec![
        ("nan", seq(4, f64::NAN)),
        ("+inf", seq(4, f64::INFINITY)),
        ("-inf", seq(4, f64::NEG_INFINITY)),
        ("huge", seq(4, 1e30)),
        ("tiny", seq(4, 1e-30)),
        ("empty sequence", seq(0, 0.0)),
    ];
    differential("rope", &g, "rope", &cases, 1e-5);
}

/// `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x · x²)))` on `x`.
fn gelu_tanh_composed(b: &mut Builder<'_>, x: Value) -> Value {
    let sq = b.unary(UnaryOp::Square, x).unwrap();
    let cube = b.mul(x, sq).unwrap();
    let c = b.scalar(DType::F32, 0.044715);
    let cc = b.mul(cube, c).unwrap();
    let inner = b.add2(x, cc).unwrap();
    let k = b.scalar(DType::F32, (2.0 / std::f64::consts::PI).sqrt());
    let ik = b.mul(inner, k).unwrap();
    let t = b.unary(UnaryOp::Tanh, ik).unwrap();
    let one = b.scalar(DType::F32, 1.0);
    let t1 = b.add2(t, one).unwrap();
    let half = b.scalar(DType::F32, 0.5);
    let xh = b.mul(x, half).unwrap();
    b.mul(xh, t1).unwrap()
}

#[test]
fn gelu_tanh_quick_gelu_and_geglu_with_special_values() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", t(&[2, 8]));
    let y = gelu_tanh_composed(&mut b, x);
    g.add_output("y", y);
    differential("gelu tanh", &g, "gelu", &elementwise_cases(1), 1e-6);

    // x · sigmoid(1.702 · x)
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", t(&[2, 8]));
    let k = b.scalar(DType::F32, 1.702);
    let xk = b.mul(x, k).unwrap();
    let s = b.unary(UnaryOp::Sigmoid, xk).unwrap();
    let y = b.mul(x, s).unwrap();
    g.add_output("y", y);
    differential("quick gelu", &g, "gelu", &elementwise_cases(1), 1e-6);

    // gelu_tanh(gate) · up
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let (gate, up) = (b.input("gate", t(&[2, 8])), b.input("up", t(&[2, 8])));
    let act = gelu_tanh_composed(&mut b, gate);
    let y = b.mul(act, up).unwrap();
    g.add_output("y", y);
    differential("geglu", &g, "geglu", &elementwise_cases(2), 1e-6);
}
