mod common;
use blockfuse_ir::blocks::{Rope, RopePosition};
use blockfuse_ir::*;
use common::*;

const D: usize = 8;

/// cos, sin {1|B, 1, T, D} from positions ⊗ inv_freq, HF style.
fn cos_sin(b: &mut Builder<'_>, positions: Option<Value>, base: f32) -> (Value, Value) {
    let seq = Dim::sym("seq");
    let pos = match positions {
        Some(p) => p,
        None => {
            let r =
                b.add(Op::Range { start: 0.0, step: 1.0, len: seq.clone(), dtype: DType::I64 }, &[]).unwrap();
            b.reshape(r, vec![Dim::Known(1), seq.clone()]).unwrap()
        }
    };
    let lead = b.ty(pos).shape[0].clone();
    let p = b.reshape(pos, vec![lead.clone(), seq.clone(), Dim::Known(1)]).unwrap();
    let p = b.cast(p, DType::F32).unwrap();
    let inv: Vec<f32> = (0..D / 2).map(|i| base.powf(-2.0 * i as f32 / D as f32)).collect();
    let inv = b.constant(HostTensor::from_f32(vec![D / 2], &inv));
    let f = b.mul(p, inv).unwrap();
    let emb = b.concat(&[f, f], -1).unwrap();
    let (c, s) = (b.unary(UnaryOp::Cos, emb).unwrap(), b.unary(UnaryOp::Sin, emb).unwrap());
    let view = vec![lead, Dim::Known(1), seq, Dim::Known(D)];
    (b.reshape(c, view.clone()).unwrap(), b.reshape(s, view).unwrap())
}

fn rotate_half(b: &mut Builder<'_>, x: Value, cos: Value, sin: Value) -> Value {
    let d = *b.ty(x).shape.last().unwrap().known().as_ref().unwrap() as i64;
    let lo = b.slice_axis(x, -1, 0, d / 2).unwrap();
    let hi = b.slice_axis(x, -1, d / 2, i64::MAX).unwrap();
    let nhi = b.unary(UnaryOp::Neg, hi).unwrap();
    let rot = b.concat(&[nhi, lo], -1).unwrap();
    let a = b.mul(x, cos).unwrap();
    let c = b.mul(rot, sin).unwrap();
    b.add2(a, c).unwrap()
}

fn heads(d: usize) -> TensorType {
    TensorType::new(DType::F32, [Dim::sym("batch"), Dim::Known(2), Dim::sym("seq"), Dim::Known(d)])
}

#[test]
fn fuses_q_and_k_with_arange_positions() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", heads(D));
    let k = b.input("k", heads(D));
    let (cos, sin) = cos_sin(&mut b, None, 10000.0);
    let q2 = rotate_half(&mut b, q, cos, sin);
    let k2 = rotate_half(&mut b, k, cos, sin);
    g.add_output("q_rot", q2);
    g.add_output("k_rot", k2);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["rope"], 2);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

#[test]
fn fuses_with_position_ids_tensor() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", heads(D));
    let pos = b.input("position_ids", TensorType::new(DType::I64, [Dim::sym("batch"), Dim::sym("seq")]));
    let (cos, sin) = cos_sin(&mut b, Some(pos), 1e6);
    let q2 = rotate_half(&mut b, q, cos, sin);
    g.add_output("q_rot", q2);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["rope"], 1);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-4);
}

/// Swapped cos and sin are still `x·a + rotate_half(x)·b`: they fuse, as the cos/sin form
/// (never as a base form, whose angles would be wrong).
#[test]
fn swapped_sin_cos_is_the_cos_sin_form() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", heads(D));
    let (cos, sin) = cos_sin(&mut b, None, 10000.0);
    let q2 = rotate_half(&mut b, q, sin, cos);
    g.add_output("q_rot", q2);
    let (_, _, report, opt) = fuse(&g);
    assert_eq!(ropes(&opt), vec![Rope::cos_sin(D, false)]);
    assert_eq!(report.blocks["rope"], 1);
    assert_same_values(&g, &opt, 1e-5);
}

#[test]
fn fuses_partial_rotation() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("q", heads(16));
    let (cos, sin) = cos_sin(&mut b, None, 10000.0);
    let rot = b.slice_axis(x, -1, 0, D as i64).unwrap();
    let pass = b.slice_axis(x, -1, D as i64, i64::MAX).unwrap();
    let r = rotate_half(&mut b, rot, cos, sin);
    let y = b.concat(&[r, pass], -1).unwrap();
    g.add_output("q_rot", y);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["rope"], 1);
    assert_eq!(report.rules["rope_partial"], 1);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

/// cos/sin gathered from precomputed caches by position_ids (older HF and GPT-J style).
#[test]
fn fuses_with_cos_sin_gathered_from_a_cache() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", heads(D));
    let pos = b.input("position_ids", TensorType::new(DType::I64, [Dim::sym("batch"), Dim::sym("seq")]));
    let max_pos = 16;
    let inv: Vec<f64> = (0..D / 2).map(|i| 10000f64.powf(-2.0 * i as f64 / D as f64)).collect();
    let table = |f: fn(f64) -> f64| -> Vec<f32> {
        (0..max_pos)
            .flat_map(|t| (0..D).map(move |j| (t, j)))
            .map(|(t, j)| f(t as f64 * inv[j % (D / 2)]) as f32)
            .collect()
    };
    let cos_cache = b.constant(HostTensor::from_f32(vec![max_pos, D], &table(f64::cos)));
    let sin_cache = b.constant(HostTensor::from_f32(vec![max_pos, D], &table(f64::sin)));
    let view = vec![Dim::sym("batch"), Dim::Known(1), Dim::sym("seq"), Dim::Known(D)];
    let cos = b.add(Op::Gather { axis: 0 }, &[cos_cache, pos]).unwrap();
    let sin = b.add(Op::Gather { axis: 0 }, &[sin_cache, pos]).unwrap();
    let cos = b.reshape(cos, view.clone()).unwrap();
    let sin = b.reshape(sin, view).unwrap();
    let q2 = rotate_half(&mut b, q, cos, sin);
    g.add_output("q_rot", q2);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["rope"], 1, "{:?}", report.near_misses);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

/// The rope blocks of a graph, in node order.
fn ropes(g: &Graph) -> Vec<Rope> {
    g.node_ids()
        .filter_map(|id| g.node(id).op.as_block().and_then(|b| b.downcast_ref::<Rope>()).cloned())
        .collect()
}

fn misses(report: &blockfuse_patterns::Report, rule: &str, reason: &str) -> bool {
    report.near_misses.iter().any(|m| m.rule == rule && m.reason.contains(reason))
}

/// cos, sin {1, 1, T, D} of `arange · table` (duplicated halves), optionally times `mscale`
/// each and cast to `dtype` (Hugging Face's `cos * attention_scaling`, then `.to(x.dtype)`).
fn cos_sin_of_table(b: &mut Builder<'_>, table: &[f32], mscale: Option<f64>, dtype: DType) -> (Value, Value) {
    let seq = Dim::sym("seq");
    let r = b.add(Op::Range { start: 0.0, step: 1.0, len: seq.clone(), dtype: DType::I64 }, &[]).unwrap();
    let p = b.reshape(r, vec![Dim::Known(1), seq.clone(), Dim::Known(1)]).unwrap();
    let p = b.cast(p, DType::F32).unwrap();
    let inv = b.constant(HostTensor::from_f32(vec![table.len()], table));
    let f = b.mul(p, inv).unwrap();
    let emb = b.concat(&[f, f], -1).unwrap();
    let (mut c, mut s) = (b.unary(UnaryOp::Cos, emb).unwrap(), b.unary(UnaryOp::Sin, emb).unwrap());
    if let Some(m) = mscale {
        let k = b.scalar(DType::F32, m);
        c = b.mul(c, k).unwrap();
        s = b.mul(s, k).unwrap();
    }
    let (c, s) = (b.cast(c, dtype).unwrap(), b.cast(s, dtype).unwrap());
    let view = vec![Dim::Known(1), Dim::Known(1), seq, Dim::Known(2 * table.len())];
    (b.reshape(c, view.clone()).unwrap(), b.reshape(s, view).unwrap())
}

/// A llama3-scaled table rounded to bf16, as a bf16 torch dynamo export stores inv_freq.
fn llama3_bf16_table(h: usize) -> Vec<f32> {
    (0..h)
        .map(|i| {
            let f = 5e5f64.powf(-2.0 * i as f64 / (2 * h) as f64);
            let f = if i >= h / 2 { f / 8.0 } else { f };
            half::bf16::from_f64(f).to_f32()
        })
        .collect()
}

#[test]
fn fuses_a_rounded_llama3_table_as_the_freqs_form() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", heads(D));
    let table = llama3_bf16_table(D / 2);
    let (cos, sin) = cos_sin_of_table(&mut b, &table, None, DType::F32);
    let q2 = rotate_half(&mut b, q, cos, sin);
    g.add_output("q_rot", q2);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["rope"], 1);
    assert_eq!(ropes(&opt), vec![Rope::new(D, 1.0).with_freqs()]);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

/// cos and sin both times one constant, then cast: the block times it (an attention scaling);
/// `cos · 1.0` folds away.
#[test]
fn fuses_cos_sin_scaled_by_one_constant() {
    for (m, want) in [(0.5, 0.5f32), (1.0, 1.0)] {
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let q = b.input("q", TensorType::new(DType::BF16, heads(D).shape.to_vec()));
        let inv: Vec<f32> = (0..D / 2).map(|i| 1e4f32.powf(-2.0 * i as f32 / D as f32)).collect();
        let (cos, sin) = cos_sin_of_table(&mut b, &inv, Some(m), DType::BF16);
        let q2 = rotate_half(&mut b, q, cos, sin);
        g.add_output("q_rot", q2);
        let (before, after, _, opt) = fuse(&g);
        assert_eq!(ropes(&opt), vec![Rope::new(D, 1e4).with_mscale(want)], "mscale {m}");
        if m != 1.0 {
            insta::assert_snapshot!(snapshot_text(&before, &after));
        }
        assert_same_values(&g, &opt, 1e-2);
    }
}

#[test]
fn negative_cos_and_sin_scaled_differently_is_the_cos_sin_form() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", heads(D));
    let (cos, sin) = cos_sin(&mut b, None, 1e4);
    let (k1, k2) = (b.scalar(DType::F32, 0.5), b.scalar(DType::F32, 0.25));
    let (cos, sin) = (b.mul(cos, k1).unwrap(), b.mul(sin, k2).unwrap());
    let q2 = rotate_half(&mut b, q, cos, sin);
    g.add_output("q_rot", q2);
    let (_, _, _, opt) = fuse(&g);
    assert_eq!(ropes(&opt), vec![Rope::cos_sin(D, false)]);
    assert_same_values(&g, &opt, 1e-5);
}

fn cos_sin_inputs(b: &mut Builder<'_>, w: usize) -> (Value, Value) {
    let ty = TensorType::new(DType::F32, [Dim::sym("batch"), Dim::Known(1), Dim::sym("seq"), Dim::Known(w)]);
    (b.input("cos", ty.clone()), b.input("sin", ty))
}

#[test]
fn fuses_cos_sin_inputs_as_the_cos_sin_form() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", heads(D));
    let (cos, sin) = cos_sin_inputs(&mut b, D);
    let q2 = rotate_half(&mut b, q, cos, sin);
    g.add_output("q_rot", q2);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.rules["rope"], 1);
    assert_eq!(ropes(&opt), vec![Rope::cos_sin(D, false)]);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

#[test]
fn negative_cos_sin_broadcast_x_larger() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input(
        "q",
        TensorType::new(DType::F32, [Dim::Known(1), Dim::Known(2), Dim::sym("seq"), Dim::Known(D)]),
    );
    let ty = TensorType::new(DType::F32, [Dim::Known(3), Dim::Known(1), Dim::sym("seq"), Dim::Known(D)]);
    let (cos, sin) = (b.input("cos", ty.clone()), b.input("sin", ty));
    let q2 = rotate_half(&mut b, q, cos, sin);
    g.add_output("q_rot", q2);
    let (_, _, report, _) = fuse(&g);
    assert!(ropes(&g).is_empty());
    assert!(misses(&report, "rope", "to a larger result"), "{:?}", report.near_misses);
}

#[test]
fn negative_rotate_half_of_unequal_parts() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", heads(D));
    let (cos, sin) = cos_sin_inputs(&mut b, D);
    let lo = b.slice_axis(q, -1, 0, 3).unwrap();
    let hi = b.slice_axis(q, -1, 3, D as i64).unwrap();
    let nhi = b.unary(UnaryOp::Neg, hi).unwrap();
    let rot = b.concat(&[nhi, lo], -1).unwrap();
    let (a, c) = (b.mul(q, cos).unwrap(), b.mul(rot, sin).unwrap());
    let y = b.add2(a, c).unwrap();
    g.add_output("q_rot", y);
    let (_, _, report, opt) = fuse(&g);
    assert!(ropes(&opt).is_empty());
    assert!(misses(&report, "rope", "not x[..., :D/2] and x[..., D/2:]"), "{:?}", report.near_misses);
    assert!(misses(&report, "rotate_half", "not the halves"), "{:?}", report.near_misses);
}

/// A rotate_half used as `x·cos − rotate_half(x)·sin` (the inverse rotation) is not fused,
/// and the report says so.
#[test]
fn negative_rotate_half_not_added() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", heads(D));
    let (cos, sin) = cos_sin_inputs(&mut b, D);
    let lo = b.slice_axis(q, -1, 0, D as i64 / 2).unwrap();
    let hi = b.slice_axis(q, -1, D as i64 / 2, D as i64).unwrap();
    let nhi = b.unary(UnaryOp::Neg, hi).unwrap();
    let rot = b.concat(&[nhi, lo], -1).unwrap();
    let (a, c) = (b.mul(q, cos).unwrap(), b.mul(rot, sin).unwrap());
    let y = b.sub(a, c).unwrap();
    g.add_output("q_rot", y);
    let (_, _, report, opt) = fuse(&g);
    assert!(ropes(&opt).is_empty());
    assert!(
        misses(&report, "rotate_half", "is not used as x·cos + rotate_half(x)·sin"),
        "{:?}",
        report.near_misses
    );
}

fn strided(b: &mut Builder<'_>, x: Value, start: i64, end: i64) -> Value {
    let s = SliceSpec {
        axes: vec![-1],
        starts: vec![Bound::Const(start)],
        ends: vec![Bound::Const(end)],
        steps: vec![2],
    };
    b.add(Op::Slice(s), &[x]).unwrap()
}

/// `[..., h] → [..., h, 1]`.
fn unsqueeze_last(b: &mut Builder<'_>, v: Value) -> Value {
    let mut s = b.ty(v).shape.to_vec();
    s.push(Dim::Known(1));
    b.reshape(v, s).unwrap()
}

/// ONNX RotaryEmbedding's interleaved body: real/imag parts of the strided pairs, stacked
/// as pairs and flattened back.
fn interleaved_pairs(b: &mut Builder<'_>, x: Value, cos: Value, sin: Value, odd_start: i64) -> Value {
    let d = b.ty(x).shape.last().unwrap().known().unwrap() as i64;
    let (x1, x2) = (strided(b, x, 0, d), strided(b, x, odd_start, d + 1));
    let shape = b.ty(x).shape.to_vec();
    rotate_pairs(b, (x1, x2), (cos, sin), true, shape)
}

/// The pairs `(x1, x2)` rotated, `real = x1·cos − x2·sin` and `imag = x2·cos + x1·sin`,
/// each stacked with its pair as `[..., h, 2]` and flattened to `shape`. `onnx` writes the
/// products as ONNX's RotaryEmbedding function does (`cos·x1 − sin·x2`, `sin·x1 + cos·x2`),
/// otherwise as the reshape-to-pairs exporters do (`x1·cos − x2·sin`, `x2·cos + x1·sin`).
fn rotate_pairs(
    b: &mut Builder<'_>,
    (x1, x2): (Value, Value),
    (cos, sin): (Value, Value),
    onnx: bool,
    shape: Vec<Dim>,
) -> Value {
    let prod =
        |b: &mut Builder<'_>, x: Value, t: Value| if onnx { b.mul(t, x) } else { b.mul(x, t) }.unwrap();
    let (a, c) = (prod(b, x1, cos), prod(b, x2, sin));
    let real = b.sub(a, c).unwrap();
    let (a, c) =
        if onnx { (prod(b, x1, sin), prod(b, x2, cos)) } else { (prod(b, x2, cos), prod(b, x1, sin)) };
    let imag = b.add2(a, c).unwrap();
    let (real, imag) = (unsqueeze_last(b, real), unsqueeze_last(b, imag));
    let both = b.concat(&[real, imag], -1).unwrap();
    b.reshape(both, shape).unwrap()
}

/// Per-pair cos/sin {1, 1, T, D/2} of `arange · base^(−2i/D)`.
fn per_pair_angles(b: &mut Builder<'_>) -> (Value, Value) {
    let seq = Dim::sym("seq");
    let r = b.add(Op::Range { start: 0.0, step: 1.0, len: seq.clone(), dtype: DType::F32 }, &[]).unwrap();
    let p = b.reshape(r, vec![Dim::Known(1), Dim::Known(1), seq, Dim::Known(1)]).unwrap();
    let inv: Vec<f32> = (0..D / 2).map(|i| 1e4f32.powf(-2.0 * i as f32 / D as f32)).collect();
    let inv = b.constant(HostTensor::from_f32(vec![D / 2], &inv));
    let f = b.mul(p, inv).unwrap();
    (b.unary(UnaryOp::Cos, f).unwrap(), b.unary(UnaryOp::Sin, f).unwrap())
}

#[test]
fn fuses_interleaved_pairs_with_computed_angles_as_the_base_form() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", heads(D));
    let (cos, sin) = per_pair_angles(&mut b);
    let y = interleaved_pairs(&mut b, q, cos, sin, 1);
    g.add_output("q_rot", y);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.rules["rope_pairs"], 1);
    assert_eq!(ropes(&opt), vec![Rope::new(D, 1e4).with_traditional(true)]);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

#[test]
fn fuses_interleaved_pairs_with_cos_sin_inputs() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", heads(D));
    let (cos, sin) = cos_sin_inputs(&mut b, D / 2);
    let y = interleaved_pairs(&mut b, q, cos, sin, 1);
    g.add_output("q_rot", y);
    let (_, _, _, opt) = fuse(&g);
    assert_eq!(ropes(&opt), vec![Rope::cos_sin(D, true)]);
    assert_same_values(&g, &opt, 1e-5);
}

#[test]
fn negative_interleaved_pairs_off_by_one() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", heads(D + 2));
    let ty =
        TensorType::new(DType::F32, [Dim::sym("batch"), Dim::Known(1), Dim::sym("seq"), Dim::Known(D / 2)]);
    let (cos, sin) = (b.input("cos", ty.clone()), b.input("sin", ty));
    // x[..., 0::2] against x[..., 2::2]: not the pairs (x_2i, x_2i+1).
    let d = (D + 2) as i64;
    let (x1, x2) = (strided(&mut b, q, 0, d - 2), strided(&mut b, q, 2, d));
    let y = rotate_pairs(&mut b, (x1, x2), (cos, sin), true, heads(D).shape.to_vec());
    g.add_output("q_rot", y);
    let (_, _, report, opt) = fuse(&g);
    assert!(ropes(&opt).is_empty());
    assert!(misses(&report, "rope_pairs", "not the even and odd features"), "{:?}", report.near_misses);
}

/// GPT-J's `rotate_every_two(q)`: pairs `(x1, x2)` of even and odd features become
/// `(−x2, x1)`, stacked as pairs and reshaped back.
fn rotate_every_two(b: &mut Builder<'_>, q: Value) -> Value {
    let (x1, x2) = (strided(b, q, 0, D as i64), strided(b, q, 1, D as i64));
    let nx2 = b.unary(UnaryOp::Neg, x2).unwrap();
    let (nx2, x1) = (unsqueeze_last(b, nx2), unsqueeze_last(b, x1));
    let st = b.concat(&[nx2, x1], -1).unwrap();
    b.reshape(st, heads(D).shape.to_vec()).unwrap()
}

/// GPT-J's rotate_every_two with full-width (repeat-interleaved) cos/sin inputs.
#[test]
fn fuses_rotate_every_two() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", heads(D));
    let (cos, sin) = cos_sin_inputs(&mut b, D);
    let rot = rotate_every_two(&mut b, q);
    let (a, c) = (b.mul(q, cos).unwrap(), b.mul(rot, sin).unwrap());
    let y = b.add2(a, c).unwrap();
    g.add_output("q_rot", y);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.rules["rope_interleaved"], 1);
    assert_eq!(ropes(&opt), vec![Rope::cos_sin(D, true)]);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

/// Partial rotary as Split + Concat, of a q scaled first (the rope of the scaled tensor).
#[test]
fn fuses_partial_rotation_split_of_a_scaled_q() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("q", heads(16));
    let k = b.scalar(DType::F32, 0.5);
    let x = b.mul(x, k).unwrap();
    let (cos, sin) = cos_sin(&mut b, None, 10000.0);
    let parts =
        b.add_multi(Op::Split { axis: -1, sizes: vec![Dim::Known(D), Dim::Known(16 - D)] }, &[x]).unwrap();
    let r = rotate_half(&mut b, parts[0], cos, sin);
    let y = b.concat(&[r, parts[1]], -1).unwrap();
    g.add_output("q_rot", y);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.rules["rope_partial"], 1);
    assert_eq!(ropes(&opt), vec![Rope::new(D, 1e4)]);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

#[test]
fn negative_partial_rotation_tail_overlaps() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("q", heads(16));
    let (cos, sin) = cos_sin(&mut b, None, 10000.0);
    let rot = b.slice_axis(x, -1, 0, D as i64).unwrap();
    let pass = b.slice_axis(x, -1, D as i64 - 2, 14).unwrap();
    let r = rotate_half(&mut b, rot, cos, sin);
    let y = b.concat(&[r, pass], -1).unwrap();
    g.add_output("q_rot", y);
    let (_, _, report, _) = fuse(&g);
    assert!(misses(&report, "rope_partial", "are not x[..., :r] and x[..., r:]"), "{:?}", report.near_misses);
}

/// KV-cache positions `past_length + arange(T)`: the offsets form.
#[test]
fn fuses_past_length_plus_arange_as_offsets() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", heads(D));
    let past = b.input("past_length", TensorType::known(DType::I64, &[]));
    let seq = Dim::sym("seq");
    let r = b.add(Op::Range { start: 0.0, step: 1.0, len: seq.clone(), dtype: DType::I64 }, &[]).unwrap();
    let p = b.add2(r, past).unwrap();
    let p = b.reshape(p, vec![Dim::Known(1), seq]).unwrap();
    let (cos, sin) = cos_sin(&mut b, Some(p), 1e4);
    let q2 = rotate_half(&mut b, q, cos, sin);
    g.add_output("q_rot", q2);
    let (before, after, _, opt) = fuse(&g);
    assert_eq!(ropes(&opt), vec![Rope::new(D, 1e4).with_position(RopePosition::Offsets)]);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-4);
}

/// Angles that run along another axis than x's −2 ({B, T, H, D} with cos {1, T, 1, D}):
/// the base form cannot say that; the cos/sin form can.
#[test]
fn fuses_angles_along_another_axis_as_the_cos_sin_form() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input(
        "q",
        TensorType::new(DType::F32, [Dim::sym("batch"), Dim::sym("seq"), Dim::Known(2), Dim::Known(D)]),
    );
    let (cos, sin) = cos_sin(&mut b, None, 1e4);
    let view = vec![Dim::Known(1), Dim::sym("seq"), Dim::Known(1), Dim::Known(D)];
    let (cos, sin) = (b.reshape(cos, view.clone()).unwrap(), b.reshape(sin, view).unwrap());
    let q2 = rotate_half(&mut b, q, cos, sin);
    g.add_output("q_rot", q2);
    let (_, _, _, opt) = fuse(&g);
    assert_eq!(ropes(&opt), vec![Rope::cos_sin(D, false)]);
    assert_same_values(&g, &opt, 1e-5);
}

/// `reshape(x, [..., D/2, 2])` and its two members on the last axis (Gather of index 0/1,
/// or Split into [1, 1] then squeezed): Meta's `view_as_complex` spelling.
fn reshaped_pairs(b: &mut Builder<'_>, x: Value, gather: bool) -> (Value, Value) {
    let mut shape = heads(D).shape.to_vec();
    shape.pop();
    let squeezed = shape.clone();
    let mut squeezed = squeezed;
    squeezed.push(Dim::Known(D / 2));
    shape.extend([Dim::Known(D / 2), Dim::Known(2)]);
    let r = b.reshape(x, shape).unwrap();
    if gather {
        let (i0, i1) =
            (b.constant(HostTensor::from_i64(vec![], &[0])), b.constant(HostTensor::from_i64(vec![], &[1])));
        (b.add(Op::Gather { axis: -1 }, &[r, i0]).unwrap(), b.add(Op::Gather { axis: -1 }, &[r, i1]).unwrap())
    } else {
        let parts =
            b.add_multi(Op::Split { axis: -1, sizes: vec![Dim::Known(1), Dim::Known(1)] }, &[r]).unwrap();
        (b.reshape(parts[0], squeezed.clone()).unwrap(), b.reshape(parts[1], squeezed).unwrap())
    }
}

/// Interleaved RoPE on the pairs of [`reshaped_pairs`] (`gather` as there), the members
/// taken as `(x1, x2)`, or as `(x2, x1)` when `swapped`.
fn reshaped_pairs_rope(gather: bool, swapped: bool) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", heads(D));
    let (cos, sin) = per_pair_angles(&mut b);
    let (x1, x2) = reshaped_pairs(&mut b, q, gather);
    let pair = if swapped { (x2, x1) } else { (x1, x2) };
    let y = rotate_pairs(&mut b, pair, (cos, sin), false, heads(D).shape.to_vec());
    g.add_output("q_rot", y);
    g
}

#[test]
fn fuses_interleaved_pairs_of_a_reshape_to_pairs() {
    for gather in [true, false] {
        let g = reshaped_pairs_rope(gather, false);
        let (before, after, report, opt) = fuse(&g);
        assert_eq!(report.rules["rope_pairs"], 1, "gather={gather} {:?}", report.near_misses);
        assert_eq!(ropes(&opt), vec![Rope::new(D, 1e4).with_traditional(true)]);
        if gather {
            insta::assert_snapshot!(snapshot_text(&before, &after));
        }
        assert_same_values(&g, &opt, 1e-5);
    }
}

/// The negative twin: members 1 and 0 (swapped) of the pairs are not the rotation's x1, x2.
#[test]
fn negative_reshape_to_pairs_members_swapped() {
    let g = reshaped_pairs_rope(true, true);
    let (_, _, report, opt) = fuse(&g);
    assert!(ropes(&opt).is_empty());
    assert!(misses(&report, "rope_pairs", "not the even and odd features"), "{:?}", report.near_misses);
    assert_same_values(&g, &opt, 1e-5);
}

/// A frequency table rounded to f16 on its way (f32 → f16 → f32) is the rounded table (constant
/// folding rounds it), not the f32 constant nor its base: the freqs form, with the graph's
/// exact angles.
#[test]
fn narrowed_table_is_the_freqs_form_of_the_rounded_table() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", heads(D));
    let seq = Dim::sym("seq");
    let r = b.add(Op::Range { start: 0.0, step: 1.0, len: seq.clone(), dtype: DType::F32 }, &[]).unwrap();
    let p = b.reshape(r, vec![Dim::Known(1), Dim::Known(1), seq, Dim::Known(1)]).unwrap();
    let inv: Vec<f32> = (0..D / 2).map(|i| 1e4f32.powf(-2.0 * i as f32 / D as f32)).collect();
    let inv = b.constant(HostTensor::from_f32(vec![D / 2], &inv));
    let inv = b.cast(inv, DType::F16).unwrap();
    let inv = b.cast(inv, DType::F32).unwrap();
    let f = b.mul(p, inv).unwrap();
    let emb = b.concat(&[f, f], -1).unwrap();
    let (c, s) = (b.unary(UnaryOp::Cos, emb).unwrap(), b.unary(UnaryOp::Sin, emb).unwrap());
    let y = rotate_half(&mut b, q, c, s);
    g.add_output("q_rot", y);
    let (_, _, _, opt) = fuse(&g);
    assert_eq!(ropes(&opt), vec![Rope::new(D, 1.0).with_freqs()]);
    assert_same_values(&g, &opt, 1e-5);
}

/// A pair rotation used as `x·cos − rotate_pairs(x)·sin` is reported.
#[test]
fn negative_rotate_pairs_not_added() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", heads(D));
    let (cos, sin) = cos_sin_inputs(&mut b, D);
    let rot = rotate_every_two(&mut b, q);
    let (a, c) = (b.mul(q, cos).unwrap(), b.mul(rot, sin).unwrap());
    let y = b.sub(a, c).unwrap();
    g.add_output("q_rot", y);
    let (_, _, report, opt) = fuse(&g);
    assert!(ropes(&opt).is_empty());
    assert!(
        misses(&report, "rotate_pairs", "not used as x·cos + rotate_pairs(x)·sin"),
        "{:?}",
        report.near_misses
    );
}

/// The KV-cache dynamo spelling in bf16: `position_ids {B, T}` unsqueezed and cast, times a
/// bf16-rounded llama3 table, duplicated halves, cos/sin cast to bf16 and unsqueezed at the
/// heads axis: the freqs form with a positions operand.
#[test]
fn fuses_the_kv_cache_dynamo_bf16_spelling() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let bf = |d: usize| {
        TensorType::new(DType::BF16, [Dim::sym("batch"), Dim::Known(2), Dim::sym("seq"), Dim::Known(d)])
    };
    let q = b.input("q", bf(D));
    let ids = b.input("position_ids", TensorType::new(DType::I64, [Dim::sym("batch"), Dim::sym("seq")]));
    let p = b.reshape(ids, vec![Dim::sym("batch"), Dim::sym("seq"), Dim::Known(1)]).unwrap();
    let p = b.cast(p, DType::F32).unwrap();
    let table: Vec<f64> = llama3_bf16_table(D / 2).iter().map(|&x| x as f64).collect();
    let inv = b.constant(HostTensor::from_f64(DType::BF16, vec![D / 2], &table));
    let inv = b.cast(inv, DType::F32).unwrap();
    let f = b.mul(p, inv).unwrap();
    let emb = b.concat(&[f, f], -1).unwrap();
    let (c, s) = (b.unary(UnaryOp::Cos, emb).unwrap(), b.unary(UnaryOp::Sin, emb).unwrap());
    let (c, s) = (b.cast(c, DType::BF16).unwrap(), b.cast(s, DType::BF16).unwrap());
    let view = vec![Dim::sym("batch"), Dim::Known(1), Dim::sym("seq"), Dim::Known(D)];
    let (c, s) = (b.reshape(c, view.clone()).unwrap(), b.reshape(s, view).unwrap());
    let y = rotate_half(&mut b, q, c, s);
    g.add_output("q_rot", y);
    let (_, _, _, opt) = fuse(&g);
    assert_eq!(ropes(&opt), vec![Rope::new(D, 1.0).with_freqs().with_position(RopePosition::Positions)]);
    assert_same_values(&g, &opt, 1e-2);
}

/// rotate_half of `q` with its "negation" spelled `x2 · factor`.
fn rotate_half_times(factor: f64) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", heads(D));
    let (cos, sin) = cos_sin(&mut b, None, 1e4);
    let lo = b.slice_axis(q, -1, 0, D as i64 / 2).unwrap();
    let hi = b.slice_axis(q, -1, D as i64 / 2, D as i64).unwrap();
    let m = b.scalar(DType::F32, factor);
    let nhi = b.mul(hi, m).unwrap();
    let rot = b.concat(&[nhi, lo], -1).unwrap();
    let (a, c) = (b.mul(q, cos).unwrap(), b.mul(rot, sin).unwrap());
    let y = b.add2(a, c).unwrap();
    g.add_output("q_rot", y);
    g
}

/// rotate_half with the negation spelled `x2 · (−1)`.
#[test]
fn fuses_rotate_half_negated_by_a_product() {
    let g = rotate_half_times(-1.0);
    let (_, _, _, opt) = fuse(&g);
    assert_eq!(ropes(&opt), vec![Rope::new(D, 1e4)]);
    assert_same_values(&g, &opt, 1e-5);
}

/// The negative twin: `x2 · (−2)` is not a negation.
#[test]
fn negative_rotate_half_scaled_by_minus_two() {
    let g = rotate_half_times(-2.0);
    let (_, _, _, opt) = fuse(&g);
    assert!(ropes(&opt).is_empty());
    assert_same_values(&g, &opt, 1e-5);
}
