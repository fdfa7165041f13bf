mod common;
use blockfuse_ir::*;
use blockfuse_models::attention::{eager_attention, scaled_scores, where_masked};
use common::*;

fn t4(n: usize, t: &str, d: usize) -> TensorType {
    TensorType::new(DType::F32, [Dim::sym("batch"), Dim::Known(n), Dim::sym(t), Dim::Known(d)])
}

/// HF eager attention: matmul(q, kᵀ)·scale + mask → softmax → ·v, with repeat_kv.
fn eager(gqa: bool, key_perm: [usize; 4]) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", t4(4, "seq", 8));
    let kv_heads = if gqa { 2 } else { 4 };
    let k = b.input("k", t4(kv_heads, "seq", 8));
    let v = b.input("v", t4(kv_heads, "seq", 8));
    let mask = b.input(
        "mask",
        TensorType::new(DType::F32, [Dim::sym("batch"), Dim::Known(1), Dim::sym("seq"), Dim::sym("seq")]),
    );
    let (mut k, mut v) = (k, v);
    if gqa {
        let (bd, s) = (Dim::sym("batch"), Dim::sym("seq"));
        for x in [&mut k, &mut v] {
            let u = b
                .reshape(*x, vec![bd.clone(), Dim::Known(2), Dim::Known(1), s.clone(), Dim::Known(8)])
                .unwrap();
            let e = b
                .expand(u, vec![bd.clone(), Dim::Known(2), Dim::Known(2), s.clone(), Dim::Known(8)])
                .unwrap();
            *x = b.reshape(e, vec![bd.clone(), Dim::Known(4), s.clone(), Dim::Known(8)]).unwrap();
        }
    }
    let kt = b.transpose(k, &key_perm).unwrap();
    let s = b.matmul(q, kt).unwrap();
    let c = b.scalar(DType::F32, 8f64.sqrt());
    let s = b.div(s, c).unwrap();
    let s = b.add2(s, mask).unwrap();
    let p = b.softmax(s, -1).unwrap();
    let o = b.matmul(p, v).unwrap();
    g.add_output("out", o);
    g
}

#[test]
fn fuses_eager_attention() {
    let g = eager(false, [0, 1, 3, 2]);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["sdpa"], 1);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

#[test]
fn folds_repeat_kv_into_native_gqa() {
    let g = eager(true, [0, 1, 3, 2]);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["sdpa"], 1);
    assert!(!after.contains("expand"), "repeat_kv should be gone:\n{after}");
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

#[test]
fn negative_key_permutation_not_last_two_axes() {
    // q{B,4,T,8} @ permute(k{B,4,8,T}, [0,2,1,3]) type-checks when T... use square dims.
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", TensorType::known(DType::F32, &[1, 4, 4, 4]));
    let k = b.input("k", TensorType::known(DType::F32, &[1, 4, 4, 4]));
    let v = b.input("v", TensorType::known(DType::F32, &[1, 4, 4, 4]));
    let kt = b.transpose(k, &[0, 2, 1, 3]).unwrap();
    let s = b.matmul(q, kt).unwrap();
    let p = b.softmax(s, -1).unwrap();
    let o = b.matmul(p, v).unwrap();
    g.add_output("out", o);
    let (_, _, report, opt) = fuse(&g);
    assert_eq!(report.blocks.get("sdpa").copied().unwrap_or(0), 0);
    assert!(
        report
            .near_misses
            .iter()
            .any(|m| m.rule == "sdpa" && m.reason.contains("not a transpose of the last two axes")),
        "{:?}",
        report.near_misses
    );
    assert_same_values(&g, &opt, 1e-6);
}

#[test]
fn fuses_sdpa_export_with_split_scale_bool_mask_and_nan_guard() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", t4(4, "seq", 16));
    let k = b.input("k", t4(4, "seq", 16));
    let v = b.input("v", t4(4, "seq", 16));
    let m = b.input(
        "mask",
        TensorType::new(DType::Bool, [Dim::sym("batch"), Dim::Known(1), Dim::sym("seq"), Dim::sym("seq")]),
    );
    // kᵀ spelled as reshape → 3-D transpose → reshape, as the sdpa exporter does.
    let (bd, s) = (Dim::sym("batch"), Dim::sym("seq"));
    let flat = b.reshape(k, vec![bd.mul(&Dim::Known(4)), s.clone(), Dim::Known(16)]).unwrap();
    let tr = b.transpose(flat, &[0, 2, 1]).unwrap();
    let kt = b.reshape(tr, vec![bd.clone(), Dim::Known(4), Dim::Known(16), s.clone()]).unwrap();
    let half = b.scalar(DType::F32, 0.5);
    let qs = b.mul(q, half).unwrap();
    let ks = b.mul(kt, half).unwrap();
    let zero = b.scalar(DType::F32, 0.0);
    let low = b.scalar(DType::F32, f32::MIN as f64);
    let add_mask = b.select(m, zero, low).unwrap();
    let sc = b.matmul(qs, ks).unwrap();
    let sc = b.add2(sc, add_mask).unwrap();
    let p = b.softmax(sc, -1).unwrap();
    let nan = b.unary(UnaryOp::IsNan, p).unwrap();
    let p = b.select(nan, zero, p).unwrap();
    let o = b.matmul(p, v).unwrap();
    g.add_output("out", o);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["sdpa"], 1);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

// ---------------------------------------------------------------------------------------
// Every attention whose math is softmax(scale·QKᵀ + mask)·V (issue 10), and the values of
// fully masked rows (issue 17).

const TQ: usize = 4;
const TK: usize = 4;

/// `softmax(logits(b, q, k)) · v` with q `{1, 2, tq, 8}`, k and v `{1, 2, tk, 8}`; extra inputs
/// are added by `logits` itself.
fn attention(tq: usize, tk: usize, logits: impl FnOnce(&mut Builder<'_>, Value, Value) -> Value) -> Graph {
    eager_attention(2, (tq, tk), 8, logits).unwrap()
}

/// `q · kᵀ / √8`.
fn scores(b: &mut Builder<'_>, q: Value, k: Value) -> Value {
    scaled_scores(b, q, k, 8).unwrap()
}

fn bool_input(b: &mut Builder<'_>, dims: &[usize]) -> Value {
    b.input("mask", TensorType::known(DType::Bool, dims))
}

fn sdpa_count(r: &blockfuse_patterns::Report) -> usize {
    r.blocks.get("sdpa").copied().unwrap_or(0)
}

fn has_miss(r: &blockfuse_patterns::Report, text: &str) -> bool {
    r.near_misses.iter().any(|m| m.rule == "sdpa" && m.reason.contains(text))
}

/// Runs both graphs on the fallback evaluator with `inputs` and asserts equal values: NaN
/// exactly where the original has NaN, infinities equal, finite values within `tol`.
fn assert_same_special_values(a: &Graph, b: &Graph, inputs: &[HostTensor], tol: f64) {
    let fb = blockfuse_fallback::FallbackBackend::new();
    let (x, y) = (fb.run(a, inputs).unwrap(), fb.run(b, inputs).unwrap());
    for (p, q) in x.iter().zip(&y) {
        for (i, (u, v)) in p.to_f64_vec().into_iter().zip(q.to_f64_vec()).enumerate() {
            let same = (u.is_nan() && v.is_nan()) || u == v || (u - v).abs() <= tol;
            assert!(same, "element {i}: original {u}, fused {v}");
        }
    }
}

/// Inputs for [`attention`] graphs: seeded q, k, v, then a bool mask `{1, 1, TQ, TK}` whose
/// row 0 is fully masked (and key 0 masked for every query) when the graph has one.
fn inputs_with_masked_row(g: &Graph) -> Vec<HostTensor> {
    let mut inputs = random_inputs(g, 7);
    for (i, &id) in g.inputs().iter().enumerate() {
        let ty = &g.node(id).types[0];
        if ty.dtype == DType::Bool {
            let dims = ty.known_dims().unwrap();
            let n: usize = dims.iter().product();
            let tk = *dims.last().unwrap();
            let keep: Vec<f64> = (0..n).map(|j| (j >= tk && j % tk != 0) as u8 as f64).collect();
            inputs[i] = HostTensor::from_f64(DType::Bool, dims, &keep);
        }
    }
    inputs
}

fn nan_rows(g: &Graph, inputs: &[HostTensor]) -> usize {
    let out = blockfuse_fallback::FallbackBackend::new().run(g, inputs).unwrap();
    out[0].to_f64_vec().iter().filter(|x| x.is_nan()).count() / 8
}

#[test]
fn issue17_off_by_one_neg_inf_trilu_mask_keeps_the_nan_row() {
    // triu(full(−inf), k = 0): off by one, so query 0 masks every key and the graph gives NaN.
    let g = attention(TQ, TK, |b, q, k| {
        let s = scores(b, q, k);
        let shape = vec![Dim::Known(TQ), Dim::Known(TK)];
        let full = b.add(Op::Full { shape, value: f64::NEG_INFINITY, dtype: DType::F32 }, &[]).unwrap();
        let mask = b.add(Op::Trilu { upper: true, k: 0 }, &[full]).unwrap();
        b.add2(s, mask).unwrap()
    });
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(sdpa_count(&report), 1);
    assert!(after.contains("mask=additive") && after.contains("nan"), "{after}");
    insta::assert_snapshot!(snapshot_text(&before, &after));
    let inputs = random_inputs(&g, 3);
    assert_eq!(nan_rows(&g, &inputs), 2, "row 0 of both heads is NaN in the original");
    assert_same_special_values(&g, &opt, &inputs, 1e-5);
}

#[test]
fn neg_inf_triu_mask_k1_is_causal_with_no_row_fix() {
    let g = attention(TQ, TK, |b, q, k| {
        let s = scores(b, q, k);
        let shape = vec![Dim::Known(TQ), Dim::Known(TK)];
        let full = b.add(Op::Full { shape, value: f64::NEG_INFINITY, dtype: DType::F32 }, &[]).unwrap();
        let mask = b.add(Op::Trilu { upper: true, k: 1 }, &[full]).unwrap();
        b.add2(s, mask).unwrap()
    });
    let (_, after, report, opt) = fuse(&g);
    assert_eq!(sdpa_count(&report), 1);
    assert!(after.contains("mask=causal") && !after.contains("nan"), "{after}");
    assert_same_special_values(&g, &opt, &random_inputs(&g, 3), 1e-5);
}

/// `where(m, s, fill)` (`keep`) or `where(m, fill, s)`.
fn where_mask(fill: f64, keep: bool) -> Graph {
    attention(TQ, TK, |b, q, k| {
        let s = scores(b, q, k);
        let m = bool_input(b, &[1, 1, TQ, TK]);
        where_masked(b, m, s, fill, keep).unwrap()
    })
}

#[test]
fn fuses_where_mask_with_neg_inf_keeping_nan_rows() {
    let g = where_mask(f64::NEG_INFINITY, true);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(sdpa_count(&report), 1, "{:?}", report.near_misses);
    assert!(after.contains("mask=boolean"), "{after}");
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
    let inputs = inputs_with_masked_row(&g);
    assert_eq!(nan_rows(&g, &inputs), 2);
    assert_same_special_values(&g, &opt, &inputs, 1e-5);
}

#[test]
fn fuses_where_mask_with_finfo_min_as_uniform_rows() {
    let g = where_mask(f32::MIN as f64, true);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(sdpa_count(&report), 1);
    assert!(after.contains("mask=boolean") && !after.contains("nan"), "{after}");
    insta::assert_snapshot!(snapshot_text(&before, &after));
    let inputs = inputs_with_masked_row(&g);
    assert_eq!(nan_rows(&g, &inputs), 0, "finfo.min rows are uniform, not NaN");
    assert_same_special_values(&g, &opt, &inputs, 1e-5);
}

#[test]
fn fuses_where_drop_mask_with_finfo_min() {
    // where(m, finfo.min, s): m says where to drop.
    let g = where_mask(f32::MIN as f64, false);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(sdpa_count(&report), 1);
    assert!(after.contains("not(") || after.contains("not{") || after.contains("= not"), "{after}");
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_special_values(&g, &opt, &inputs_with_masked_row(&g), 1e-5);
}

#[test]
fn negative_where_mask_with_a_small_fill() {
    let g = where_mask(-1.0, true);
    let (_, _, report, opt) = fuse(&g);
    assert_eq!(sdpa_count(&report), 0);
    assert!(has_miss(&report, "boolean mask drops with -1"), "{:?}", report.near_misses);
    assert_same_values(&g, &opt, 1e-6);
}

/// Gemma 2: `c · tanh(s / c)` between the scaled scores and the mask.
fn softcapped(cap: Option<f64>) -> Graph {
    attention(TQ, TK, |b, q, k| {
        let s = scores(b, q, k);
        let s = match cap {
            Some(c) => {
                let cv = b.scalar(DType::F32, c);
                let t = b.div(s, cv).unwrap();
                let t = b.unary(UnaryOp::Tanh, t).unwrap();
                b.mul(t, cv).unwrap()
            }
            None => b.unary(UnaryOp::Tanh, s).unwrap(),
        };
        let m = bool_input(b, &[1, 1, TQ, TK]);
        let f = b.scalar(DType::F32, f32::MIN as f64);
        b.select(m, s, f).unwrap()
    })
}

#[test]
fn fuses_logit_softcapping() {
    let g = softcapped(Some(2.5));
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(sdpa_count(&report), 1, "{:?}", report.near_misses);
    assert!(after.contains("softcap=2.5"), "{after}");
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
    assert_same_special_values(&g, &opt, &inputs_with_masked_row(&g), 1e-5);
}

/// Found by `fuzz/optimize_eval`: scores · (−f32::MAX), softcapped. The block would scale q
/// before the product, where q·scale overflows and ∞ − ∞ gives NaN rows; the graph scales
/// the finite scores and tanh caps them. Not fused, with the reason.
#[test]
fn negative_huge_scale_that_would_overflow_on_q() {
    let g = attention(TQ, TK, |b, q, k| {
        let kt = b.transpose(k, &[0, 1, 3, 2]).unwrap();
        let s = b.matmul(q, kt).unwrap();
        let huge = b.scalar(DType::F32, f32::MIN as f64);
        let s = b.mul(s, huge).unwrap();
        let inv = b.scalar(DType::F32, 0.2);
        let t = b.mul(s, inv).unwrap();
        let t = b.unary(UnaryOp::Tanh, t).unwrap();
        let cap = b.scalar(DType::F32, 5.0);
        b.mul(t, cap).unwrap()
    });
    let (_, _, report, opt) = fuse(&g);
    assert_eq!(sdpa_count(&report), 0);
    assert!(has_miss(&report, "q·scale could overflow"), "{:?}", report.near_misses);
    assert_same_special_values(&g, &opt, &random_inputs(&g, 3), 1e-6);
}

/// Found by `fuzz/onnx_model`: q `{26634, 2, T, 8}` against k, v `{1, 2, T, 8}` (and v of batch
/// 0) is attention through matmul broadcasting, which the block does not do: `optimize` used to
/// fail with the block's "batch sizes differ"; now a near-miss.
#[test]
fn negative_batch_broadcast_by_the_products() {
    for (qb, vb) in [(3, 1), (1, 0)] {
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let q = b.input("q", TensorType::known(DType::F32, &[qb, 2, TQ, 8]));
        let k = b.input("k", TensorType::known(DType::F32, &[1, 2, TK, 8]));
        let v = b.input("v", TensorType::known(DType::F32, &[vb, 2, TK, 8]));
        let s = scores(&mut b, q, k);
        let p = b.softmax(s, -1).unwrap();
        let o = b.matmul(p, v).unwrap();
        g.add_output("out", o);
        let (_, _, report, opt) = fuse(&g);
        assert_eq!(sdpa_count(&report), 0);
        assert!(has_miss(&report, "differ in batch size"), "{:?}", report.near_misses);
        assert_same_values(&g, &opt, 1e-6);
    }
}

/// Found by fuzz/onnx_model (`fuzz/corpus/onnx_model/crash-sdpa-heads-broadcast`): q of 1
/// head against k and v of 2 (the products broadcast q's heads) was fused, and the block then
/// refused "1 query heads are not a multiple of 2 kv heads"; k and v of different heads too.
#[test]
fn negative_heads_broadcast_by_the_products() {
    for (qh, kh, vh) in [(1, 2, 2), (2, 2, 1), (2, 1, 2)] {
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let q = b.input("q", TensorType::known(DType::F32, &[1, qh, TQ, 8]));
        let k = b.input("k", TensorType::known(DType::F32, &[1, kh, TK, 8]));
        let v = b.input("v", TensorType::known(DType::F32, &[1, vh, TK, 8]));
        let s = scores(&mut b, q, k);
        let p = b.softmax(s, -1).unwrap();
        let o = b.matmul(p, v).unwrap();
        g.add_output("out", o);
        let (_, _, report, opt) = fuse(&g);
        assert_eq!(sdpa_count(&report), 0, "heads {qh}, {kh}, {vh}");
        assert!(has_miss(&report, "kv heads do not divide the query heads"), "{:?}", report.near_misses);
        assert_same_values(&g, &opt, 1e-6);
    }
}

#[test]
fn negative_tanh_without_a_softcap_factor() {
    let g = softcapped(None);
    let (_, _, report, opt) = fuse(&g);
    assert_eq!(sdpa_count(&report), 0);
    assert!(has_miss(&report, "tanh of the scores without a softcap factor"), "{:?}", report.near_misses);
    assert_same_values(&g, &opt, 1e-6);
}

#[test]
fn fuses_scale_on_k_before_its_transpose_and_a_division() {
    let g = attention(TQ, TK, |b, q, k| {
        let half = b.scalar(DType::F32, 0.5);
        let ks = b.mul(k, half).unwrap();
        let kt = b.transpose(ks, &[0, 1, 3, 2]).unwrap();
        let s = b.matmul(q, kt).unwrap();
        let c = b.scalar(DType::F32, 4.0);
        b.div(s, c).unwrap()
    });
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(sdpa_count(&report), 1);
    assert!(after.contains("scale=0.125"), "{after}");
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

#[test]
fn fuses_t5_unscaled_attention_with_relative_position_bias() {
    // Scale 1 and a constant {1, heads, Tq, Tk} bias (finite: no row fix).
    let g = attention(TQ, TK, |b, q, k| {
        let kt = b.transpose(k, &[0, 1, 3, 2]).unwrap();
        let s = b.matmul(q, kt).unwrap();
        let bias = weight(b, DType::F32, &[1, 2, TQ, TK], 5);
        b.add2(s, bias).unwrap()
    });
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(sdpa_count(&report), 1);
    assert!(
        after.contains("scale=1.0") && after.contains("mask=additive") && !after.contains("nan"),
        "{after}"
    );
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

#[test]
fn negative_scale_after_the_mask() {
    let g = attention(TQ, TK, |b, q, k| {
        let kt = b.transpose(k, &[0, 1, 3, 2]).unwrap();
        let s = b.matmul(q, kt).unwrap();
        let bias = weight(b, DType::F32, &[1, 2, TQ, TK], 5);
        let s = b.add2(s, bias).unwrap();
        let c = b.scalar(DType::F32, 0.25);
        b.mul(s, c).unwrap()
    });
    let (_, _, report, opt) = fuse(&g);
    assert_eq!(sdpa_count(&report), 0);
    assert!(has_miss(&report, "is not built on a q·kᵀ product"), "{:?}", report.near_misses);
    assert_same_values(&g, &opt, 1e-6);
}

/// The keep-mask `k ≤ q + offset` `{tq, tk}` from two ranges.
fn band(b: &mut Builder<'_>, tq: usize, tk: usize, offset: i64) -> Value {
    let r = |b: &mut Builder<'_>, n: usize| {
        b.add(Op::Range { start: 0.0, step: 1.0, len: Dim::Known(n), dtype: DType::I64 }, &[]).unwrap()
    };
    let rows = r(b, tq);
    let rows = b.reshape(rows, vec![Dim::Known(tq), Dim::Known(1)]).unwrap();
    let off = b.scalar(DType::I64, offset as f64);
    let rows = b.add2(rows, off).unwrap();
    let cols = r(b, tk);
    b.binary(BinaryOp::LessEqual, cols, rows).unwrap()
}

#[test]
fn fuses_causal_band_aligned_to_the_end_when_tq_lt_tk() {
    // A query block of 2 against 5 keys: query q sees k ≤ q + 3.
    let g = attention(2, 5, |b, q, k| {
        let s = scores(b, q, k);
        let keep = band(b, 2, 5, 3);
        let f = b.scalar(DType::F32, f64::NEG_INFINITY);
        b.select(keep, s, f).unwrap()
    });
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(sdpa_count(&report), 1);
    assert!(after.contains("mask=causal") && !after.contains("nan"), "{after}");
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_special_values(&g, &opt, &random_inputs(&g, 2), 1e-5);
}

#[test]
fn negative_band_aligned_to_the_start_is_not_causal() {
    // k ≤ q with Tq < Tk is PyTorch's upper-left `is_causal`: kept as a boolean mask.
    let g = attention(2, 5, |b, q, k| {
        let s = scores(b, q, k);
        let keep = band(b, 2, 5, 0);
        let f = b.scalar(DType::F32, f32::MIN as f64);
        b.select(keep, s, f).unwrap()
    });
    let (_, after, report, opt) = fuse(&g);
    assert_eq!(sdpa_count(&report), 1);
    assert!(after.contains("mask=boolean"), "{after}");
    assert_same_values(&g, &opt, 1e-5);
}

#[test]
fn fuses_causal_where_combined_with_an_additive_padding_bias() {
    let g = attention(TQ, TK, |b, q, k| {
        let s = scores(b, q, k);
        let keep = band(b, TQ, TK, 0);
        let f = b.scalar(DType::F32, f32::MIN as f64);
        let s = b.select(keep, s, f).unwrap();
        let pad = b.input("pad", TensorType::known(DType::F32, &[1, 1, 1, TK]));
        b.add2(s, pad).unwrap()
    });
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(sdpa_count(&report), 1, "{:?}", report.near_misses);
    assert!(after.contains("mask=additive"), "{after}");
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
    // A padding bias of −∞ on every key: NaN rows in both.
    let mut inputs = random_inputs(&g, 4);
    inputs[3] = HostTensor::from_f64(DType::F32, vec![1, 1, 1, TK], &[f64::NEG_INFINITY; TK]);
    assert_eq!(nan_rows(&g, &inputs), 2 * TQ);
    assert_same_special_values(&g, &opt, &inputs, 1e-5);
}

#[test]
fn unfused_softmax_not_multiplied_by_v_gets_a_near_miss() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::known(DType::F32, &[2, 8]));
    let p = b.softmax(x, -1).unwrap();
    let y = b.unary(UnaryOp::Exp, p).unwrap();
    g.add_output("y", y);
    let (_, _, report, _) = fuse(&g);
    assert!(has_miss(&report, "the softmax is not multiplied by v (read by"), "{:?}", report.near_misses);
}

#[test]
fn unfused_softmax_over_the_query_axis_gets_a_near_miss() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::known(DType::F32, &[2, 4, 8]));
    let p = b.softmax(x, 1).unwrap();
    g.add_output("p", p);
    let (_, _, report, _) = fuse(&g);
    assert!(has_miss(&report, "softmax over axis 1, not the last (key) axis"), "{:?}", report.near_misses);
}

/// gpt-oss attention sinks: a per-head logit concatenated after the scores, the row max
/// subtracted, softmax, the sink column sliced off. `start`: where the slice starts.
fn with_sinks(start: i64) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", TensorType::known(DType::F32, &[1, 2, TQ, 8]));
    let k = b.input("k", TensorType::known(DType::F32, &[1, 2, TK, 8]));
    let v = b.input("v", TensorType::known(DType::F32, &[1, 2, TK, 8]));
    let s = scores(&mut b, q, k);
    let m = bool_input(&mut b, &[1, 1, TQ, TK]);
    let f = b.scalar(DType::F32, f64::NEG_INFINITY);
    let s = b.select(m, s, f).unwrap();
    let sinks = b.constant(HostTensor::from_f64(DType::F32, vec![2], &[0.5, -1.0]));
    let one = Dim::Known(1);
    let sk = b.reshape(sinks, vec![one.clone(), Dim::Known(2), one.clone(), one.clone()]).unwrap();
    let sk = b.expand(sk, vec![one.clone(), Dim::Known(2), Dim::Known(TQ), one]).unwrap();
    let joined = b.concat(&[s, sk], -1).unwrap();
    let mx = b.reduce(ReduceOp::Max, joined, &[-1], true).unwrap();
    let centered = b.sub(joined, mx).unwrap();
    let p = b.softmax(centered, -1).unwrap();
    let p = b.slice_axis(p, -1, start, start + TK as i64).unwrap();
    let o = b.matmul(p, v).unwrap();
    g.add_output("out", o);
    g
}

#[test]
fn fuses_attention_sinks() {
    let g = with_sinks(0);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(sdpa_count(&report), 1, "{:?}", report.near_misses);
    assert!(after.contains("has_sinks=true") && !after.contains("concat"), "{after}");
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
    // A fully masked row attends to the sink alone: 0 in both, no NaN.
    let inputs = inputs_with_masked_row(&g);
    assert_eq!(nan_rows(&g, &inputs), 0);
    assert_same_special_values(&g, &opt, &inputs, 1e-5);
}

#[test]
fn negative_sinks_slice_keeps_the_sink_column() {
    let g = with_sinks(1);
    let (_, _, report, opt) = fuse(&g);
    assert_eq!(sdpa_count(&report), 0);
    assert!(has_miss(&report, "does not keep exactly the scores' keys"), "{:?}", report.near_misses);
    assert_same_values(&g, &opt, 1e-6);
}
