mod common;
use blockfuse_ir::*;
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
