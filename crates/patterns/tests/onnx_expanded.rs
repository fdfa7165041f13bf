//! ONNX's `_expanded` function bodies of Attention, LayerNormalization and RotaryEmbedding,
//! written as the importer gives them (before canonicalization).
mod common;
use blockfuse_ir::*;
use common::*;

fn t4(n: usize, t: usize, d: usize) -> TensorType {
    TensorType::new(DType::F32, [Dim::sym("batch"), Dim::Known(n), Dim::Known(t), Dim::Known(d)])
}

/// ONNX Attention: q and k each scaled by √scale, a mask added, softmax, then rows whose
/// mask is −inf everywhere zeroed (`where(reduce_max(mask) == −inf, 0, p)`).
/// `mask`: `None` = ONNX's zero bias (a constant), `Some(bool)` = boolean mask input.
fn onnx_attention(bool_mask: bool) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("Q", t4(3, 4, 8));
    let k = b.input("K", t4(3, 6, 8));
    let v = b.input("V", t4(3, 6, 8));
    let zero = b.add(Op::Constant(HostTensor::from_f32(vec![1], &[0.0])), &[]).unwrap();
    let ninf = b.add(Op::Constant(HostTensor::from_f32(vec![1], &[f32::NEG_INFINITY])), &[]).unwrap();
    let bias = if bool_mask {
        let m = b.input("attn_mask", TensorType::known(DType::Bool, &[4, 6]));
        b.select(m, zero, ninf).unwrap()
    } else {
        b.add(Op::Constant(HostTensor::from_f32(vec![4, 6], &[0.0; 24])), &[]).unwrap()
    };
    let s = b.scalar(DType::F32, (1.0 / 8f64.sqrt()).sqrt());
    let kt = b.transpose(k, &[0, 1, 3, 2]).unwrap();
    let (qs, ks) = (b.mul(q, s).unwrap(), b.mul(kt, s).unwrap());
    let scores = b.matmul(qs, ks).unwrap();
    let scores = b.add2(scores, bias).unwrap();
    let p = b.softmax(scores, -1).unwrap();
    let row_max = b.reduce(ReduceOp::Max, bias, &[-1], true).unwrap();
    let all_masked = b.binary(BinaryOp::Equal, row_max, ninf).unwrap();
    let p = b.select(all_masked, zero, p).unwrap();
    let y = b.matmul(p, v).unwrap();
    g.add_output("Y", y);
    g
}

#[test]
fn fuses_onnx_attention_with_zero_bias() {
    let g = onnx_attention(false);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["sdpa"], 1);
    assert!(!after.contains("reduce_max"), "the guard of a zero bias folds away:\n{after}");
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

#[test]
fn fuses_onnx_attention_with_bool_mask_and_masked_row_guard() {
    let g = onnx_attention(true);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["sdpa"], 1);
    assert!(after.contains("reduce_max"), "the masked-row guard is kept:\n{after}");
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
    // Fully masked rows: the guard gives 0 there, and so must the fused graph.
    let fb = blockfuse_fallback::FallbackBackend::new();
    let mut inputs = random_inputs(&g, 5);
    let mask: Vec<f64> = (0..24).map(|i| if i < 6 || i % 6 == 0 { 0.0 } else { 1.0 }).collect();
    inputs[3] = HostTensor::from_f64(DType::Bool, vec![4, 6], &mask);
    let (x, y) = (fb.run(&g, &inputs).unwrap(), fb.run(&opt, &inputs).unwrap());
    let (x, y) = (x[0].to_f64_vec(), y[0].to_f64_vec());
    assert!(x.iter().zip(&y).all(|(a, b)| a == b || (a - b).abs() <= 1e-5), "{x:?}\n{y:?}");
}

#[test]
fn negative_masked_row_guard_fill_is_not_zero() {
    let mut g = onnx_attention(true);
    // Rewrite the guard's fill to 1: not ONNX's guard, so no fusion.
    let fill = g
        .node_ids()
        .find(|&id| matches!(g.node(id).op, Op::Where) && g.value_type(Value::first(id)).rank() == 4)
        .unwrap();
    let one = Builder::new(&mut g).add(Op::Constant(HostTensor::from_f32(vec![1], &[1.0])), &[]).unwrap();
    g.set_operand(fill, 1, one);
    let (_, _, report, opt) = fuse(&g);
    assert_eq!(report.blocks.get("sdpa").copied().unwrap_or(0), 0);
    let reasons: Vec<_> = report.near_misses.iter().map(|m| m.reason.clone()).collect();
    assert!(reasons.iter().any(|r| r.contains("does not fill with 0")), "{reasons:?}");
    assert_same_values(&g, &opt, 1e-5);
}

/// ONNX LayerNormalization (axis −1) on `{2, 3, 4, 5}`: flattened to `{24, 5}`, variance as
/// `E[x²] − E[x]²`, `Div` by `Sqrt`, reshaped back; `Mean` and `InvStdDev` are outputs too.
fn onnx_layer_norm(eps: f64) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("X", TensorType::known(DType::F32, &[2, 3, 4, 5]));
    let w = b.input("W", TensorType::known(DType::F32, &[5]));
    let bias = b.input("B", TensorType::known(DType::F32, &[5]));
    let x2 = b.reshape(x, vec![Dim::Known(24), Dim::Known(5)]).unwrap();
    let mu = b.reduce(ReduceOp::Mean, x2, &[1], true).unwrap();
    let sq = b.mul(x2, x2).unwrap();
    let ex2 = b.reduce(ReduceOp::Mean, sq, &[1], true).unwrap();
    let mu2 = b.mul(mu, mu).unwrap();
    let var = b.binary(BinaryOp::Sub, ex2, mu2).unwrap();
    let e = b.scalar(DType::F32, eps);
    let ve = b.add2(var, e).unwrap();
    let sd = b.unary(UnaryOp::Sqrt, ve).unwrap();
    let c = b.binary(BinaryOp::Sub, x2, mu).unwrap();
    let n = b.div(c, sd).unwrap();
    let w2 = b.reshape(w, vec![Dim::Known(1), Dim::Known(5)]).unwrap();
    let n = b.mul(n, w2).unwrap();
    let b2 = b.reshape(bias, vec![Dim::Known(1), Dim::Known(5)]).unwrap();
    let y = b.add2(n, b2).unwrap();
    let back = |b: &mut Builder<'_>, v: Value, last: usize| {
        b.reshape(v, [2, 3, 4, last].iter().map(|&d| Dim::Known(d)).collect()).unwrap()
    };
    let y = back(&mut b, y, 5);
    let inv = b.unary(UnaryOp::Reciprocal, sd).unwrap();
    let (mean_out, inv_out) = (back(&mut b, mu, 1), back(&mut b, inv, 1));
    g.add_output("Y", y);
    g.add_output("Mean", mean_out);
    g.add_output("InvStdDev", inv_out);
    g
}

#[test]
fn fuses_onnx_layer_norm_with_moment_variance_and_stat_outputs() {
    let g = onnx_layer_norm(1e-5);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["layer_norm"], 1);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

#[test]
fn fuses_onnx_layer_norm_with_large_eps() {
    // Any positive finite eps is a LayerNorm (ONNX's epsilon twins use 0.1).
    let g = onnx_layer_norm(0.1);
    let (_, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks.get("layer_norm").copied().unwrap_or(0), 1, "{:?}", report.near_misses);
    assert!(after.contains("layer_norm{eps=0.1"), "{after}");
    assert_same_values(&g, &opt, 1e-5);
}

#[test]
fn negative_onnx_layer_norm_negative_eps() {
    let g = onnx_layer_norm(-0.5);
    let (_, _, report, opt) = fuse(&g);
    assert_eq!(report.blocks.get("layer_norm").copied().unwrap_or(0), 0);
    let reasons: Vec<_> = report.near_misses.iter().map(|m| m.reason.clone()).collect();
    assert!(reasons.iter().any(|r| r.contains("eps -0.5 is not a positive finite number")), "{reasons:?}");
    assert_same_values(&g, &opt, 1e-5);
}

#[test]
fn negative_onnx_layer_norm_centered_value_read_elsewhere() {
    let mut g = onnx_layer_norm(1e-5);
    let sub = g
        .node_ids()
        .find(|&id| {
            matches!(g.node(id).op, Op::Binary(BinaryOp::Sub))
                && g.value_type(Value::first(id)).shape[1] == Dim::Known(5)
        })
        .unwrap();
    let leak = Builder::new(&mut g).unary(UnaryOp::Neg, Value::first(sub)).unwrap();
    g.add_output("leak", leak);
    let (_, _, report, opt) = fuse(&g);
    assert_eq!(report.blocks.get("layer_norm").copied().unwrap_or(0), 0);
    let reasons: Vec<_> = report.near_misses.iter().map(|m| m.reason.clone()).collect();
    assert!(reasons.iter().any(|r| r.contains("is also read by")), "{reasons:?}");
    assert_same_values(&g, &opt, 1e-5);
}

/// ONNX RotaryEmbedding's body on `{B, H, T, D}`: `x1, x2 = split(x)`,
/// `concat(x1·cos − x2·sin, x2·cos + x1·sin)`, half-size cos/sin. `computed`: cos/sin of
/// `position_ids ⊗ inv_freq`; otherwise caches given as graph inputs, gathered by position ids.
fn onnx_rope(computed: bool) -> Graph {
    let (t, d) = (5, 8);
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", t4(2, t, d));
    let (cos, sin) = if computed {
        let ids = b.input("position_ids", TensorType::known(DType::I64, &[t]));
        let p = b.cast(ids, DType::F32).unwrap();
        let p = b.reshape(p, vec![Dim::Known(t), Dim::Known(1)]).unwrap();
        let inv: Vec<f32> = (0..d / 2).map(|i| 10000f32.powf(-2.0 * i as f32 / d as f32)).collect();
        let inv = b.constant(HostTensor::from_f32(vec![d / 2], &inv));
        let f = b.mul(p, inv).unwrap();
        (b.unary(UnaryOp::Cos, f).unwrap(), b.unary(UnaryOp::Sin, f).unwrap())
    } else {
        let cache = TensorType::known(DType::F32, &[50, d / 2]);
        let (cc, sc) = (b.input("cos_cache", cache.clone()), b.input("sin_cache", cache));
        let ids =
            b.add(Op::Range { start: 0.0, step: 1.0, len: Dim::Known(t), dtype: DType::I64 }, &[]).unwrap();
        (
            b.add(Op::Gather { axis: 0 }, &[cc, ids]).unwrap(),
            b.add(Op::Gather { axis: 0 }, &[sc, ids]).unwrap(),
        )
    };
    let half = Dim::Known(d / 2);
    let parts = b.add(Op::Split { axis: -1, sizes: vec![half.clone(), half] }, &[x]).unwrap();
    let (x1, x2) = (parts, Value { node: parts.node, output: 1 });
    let (a, c) = (b.mul(x1, cos).unwrap(), b.mul(x2, sin).unwrap());
    let first = b.binary(BinaryOp::Sub, a, c).unwrap();
    let (a, c) = (b.mul(x2, cos).unwrap(), b.mul(x1, sin).unwrap());
    let second = b.add2(a, c).unwrap();
    let y = b.concat(&[first, second], -1).unwrap();
    g.add_output("y", y);
    g
}

#[test]
fn fuses_onnx_rope_halves_with_computed_angles() {
    let g = onnx_rope(true);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks.get("rope").copied().unwrap_or(0), 1, "{:?}\n{after}", report.near_misses);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

/// Caches given as graph inputs: cos/sin are arbitrary tensors, which the cos/sin form of
/// the rope block takes as operands.
#[test]
fn fuses_onnx_rope_caches_given_as_inputs() {
    let g = onnx_rope(false);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.rules["rope_halves"], 1, "{:?}", report.near_misses);
    assert!(after.contains("cos_sin=true"), "{after}");
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

/// The negative twin: the real and imaginary parts of interleaved pairs concatenated as halves
/// (not interleaved back) is not a rotation of x.
#[test]
fn negative_onnx_rope_pairs_not_reinterleaved() {
    let (t, d) = (5, 8i64);
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", t4(2, t, d as usize));
    let cache = TensorType::known(DType::F32, &[t, d as usize / 2]);
    let (cos, sin) = (b.input("cos", cache.clone()), b.input("sin", cache));
    let strided = |b: &mut Builder<'_>, start: i64| {
        let s = SliceSpec {
            axes: vec![-1],
            starts: vec![Bound::Const(start)],
            ends: vec![Bound::Const(d)],
            steps: vec![2],
        };
        b.add(Op::Slice(s), &[x]).unwrap()
    };
    let (x1, x2) = (strided(&mut b, 0), strided(&mut b, 1));
    let (a, c) = (b.mul(x1, cos).unwrap(), b.mul(x2, sin).unwrap());
    let first = b.binary(BinaryOp::Sub, a, c).unwrap();
    let (a, c) = (b.mul(x2, cos).unwrap(), b.mul(x1, sin).unwrap());
    let second = b.add2(a, c).unwrap();
    let y = b.concat(&[first, second], -1).unwrap();
    g.add_output("y", y);
    let (_, _, report, opt) = fuse(&g);
    assert_eq!(report.blocks.get("rope").copied().unwrap_or(0), 0);
    let reasons: Vec<_> = report.near_misses.iter().map(|m| m.reason.clone()).collect();
    assert!(reasons.iter().any(|r| r.contains("not re-interleaved")), "{reasons:?}");
    assert_same_values(&g, &opt, 1e-5);
}
