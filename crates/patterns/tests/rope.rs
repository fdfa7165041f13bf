mod common;
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

#[test]
fn negative_swapped_sin_cos() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", heads(D));
    let (cos, sin) = cos_sin(&mut b, None, 10000.0);
    let q2 = rotate_half(&mut b, q, sin, cos);
    g.add_output("q_rot", q2);
    let (_, _, report, opt) = fuse(&g);
    assert_eq!(report.blocks.get("rope").copied().unwrap_or(0), 0);
    assert!(
        report.near_misses.iter().any(|m| m.rule == "rope" && m.reason.contains("swapped")),
        "{:?}",
        report.near_misses
    );
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
