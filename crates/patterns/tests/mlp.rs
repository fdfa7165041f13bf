mod common;
use blockfuse_ir::*;
use common::*;

fn x_in(b: &mut Builder<'_>, name: &str) -> Value {
    b.input(name, bsd(8))
}

#[test]
fn fuses_swiglu() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let (gate, up) = (x_in(&mut b, "gate"), x_in(&mut b, "up"));
    let s = b.unary(UnaryOp::Sigmoid, gate).unwrap();
    let silu = b.mul(gate, s).unwrap();
    let y = b.mul(silu, up).unwrap();
    g.add_output("y", y);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["swiglu"], 1);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

/// Gemma's tanh GELU written as x·x·x (the eager spelling), gating `up`.
#[test]
fn fuses_geglu_from_tanh_gelu() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let (x, up) = (x_in(&mut b, "gate"), x_in(&mut b, "up"));
    let xx = b.mul(x, x).unwrap();
    let cube = b.mul(x, xx).unwrap();
    let c = b.scalar(DType::F32, 0.044715);
    let t = b.mul(c, cube).unwrap();
    let inner = b.add2(x, t).unwrap();
    let k = b.scalar(DType::F32, (2.0 / std::f64::consts::PI).sqrt());
    let inner = b.mul(k, inner).unwrap();
    let th = b.unary(UnaryOp::Tanh, inner).unwrap();
    let one = b.scalar(DType::F32, 1.0);
    let a = b.add2(one, th).unwrap();
    let xa = b.mul(x, a).unwrap();
    let half = b.scalar(DType::F32, 0.5);
    let gelu = b.mul(half, xa).unwrap();
    let y = b.mul(gelu, up).unwrap();
    g.add_output("y", y);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["geglu"], 1);
    assert_eq!(report.blocks.get("gelu"), None);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

/// BERT's exact GELU: x · (1 + erf(x / 1.41421)) · 0.5.
#[test]
fn fuses_gelu_erf() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = x_in(&mut b, "x");
    let r2 = b.scalar(DType::F32, std::f64::consts::SQRT_2);
    let d = b.div(x, r2).unwrap();
    let e = b.unary(UnaryOp::Erf, d).unwrap();
    let one = b.scalar(DType::F32, 1.0);
    let a = b.add2(e, one).unwrap();
    let m = b.mul(x, a).unwrap();
    let half = b.scalar(DType::F32, 0.5);
    let y = b.mul(m, half).unwrap();
    g.add_output("y", y);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["gelu"], 1);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

/// `x · σ(k · x)`: QuickGELU when `k` is 1.702.
fn sigmoid_gelu(k: f64) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = x_in(&mut b, "x");
    let k = b.scalar(DType::F32, k);
    let kx = b.mul(x, k).unwrap();
    let s = b.unary(UnaryOp::Sigmoid, kx).unwrap();
    let y = b.mul(x, s).unwrap();
    g.add_output("y", y);
    g
}

#[test]
fn fuses_quick_gelu() {
    let g = sigmoid_gelu(1.702);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["gelu"], 1);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

/// Found by the differential run: `x·σ(1.703·x)` is not QuickGELU (0.3 % off); the old 1e-3
/// tolerance on the constant fused it.
#[test]
fn negative_quick_gelu_with_1_703() {
    let g = sigmoid_gelu(1.703);
    let (_, _, report, opt) = fuse(&g);
    assert_eq!(report.blocks.get("gelu").copied().unwrap_or(0), 0);
    assert!(
        report.near_misses.iter().any(|m| m.reason.contains("sigmoid scale is not 1.702")),
        "{:?}",
        report.near_misses
    );
    assert_same_values(&g, &opt, 1e-6);
}

/// In half precision a constant is the exact one rounded to its dtype: an f16 QuickGELU's
/// 1.702 is stored as 1.7021484 and still fuses, while 1.703 is another f16 number (one ulp
/// away) and does not.
#[test]
fn f16_quick_gelu_constants_are_compared_at_f16_precision() {
    for (k, fuses) in [(1.702, true), (1.703, false)] {
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let x = b.input("x", TensorType::new(DType::F16, [Dim::sym("seq"), Dim::Known(8)]));
        let k = b.scalar(DType::F16, k);
        let kx = b.mul(x, k).unwrap();
        let s = b.unary(UnaryOp::Sigmoid, kx).unwrap();
        let y = b.mul(x, s).unwrap();
        g.add_output("y", y);
        let (_, _, report, _) = fuse(&g);
        assert_eq!(report.blocks.get("gelu").copied().unwrap_or(0), usize::from(fuses), "k = {k:?}");
    }
}

#[test]
fn fuses_composed_layer_norm() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = x_in(&mut b, "x");
    let w = weight(&mut b, DType::F32, &[8], 3);
    let bias = weight(&mut b, DType::F32, &[8], 4);
    let mu = b.mean_last(x).unwrap();
    let xc = b.sub(x, mu).unwrap();
    let two = b.scalar(DType::F32, 2.0);
    let sq = b.binary(BinaryOp::Pow, xc, two).unwrap();
    let var = b.mean_last(sq).unwrap();
    let eps = b.scalar(DType::F32, 1e-5);
    let ve = b.add2(var, eps).unwrap();
    let sd = b.unary(UnaryOp::Sqrt, ve).unwrap();
    let n = b.div(xc, sd).unwrap();
    let n = b.mul(n, w).unwrap();
    let y = b.add2(n, bias).unwrap();
    g.add_output("y", y);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["layer_norm"], 1);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

/// A fused gate_up projection split in two, then `silu(gate) · up`.
#[test]
fn fuses_swiglu_after_fused_gate_up_split() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("gate_up", bsd(16));
    let parts = b.add_multi(Op::Split { axis: -1, sizes: vec![Dim::Known(8), Dim::Known(8)] }, &[x]).unwrap();
    let (gate, up) = (parts[0], parts[1]);
    let s = b.unary(UnaryOp::Sigmoid, gate).unwrap();
    let silu = b.mul(s, gate).unwrap();
    let y = b.mul(up, silu).unwrap();
    g.add_output("y", y);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["swiglu"], 1);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

/// LayerNorm without affine parameters, with the variance written as mean(x²) of the
/// centered value through `mul(xc, xc)`.
#[test]
fn fuses_layer_norm_without_affine() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = x_in(&mut b, "x");
    let mu = b.mean_last(x).unwrap();
    let xc = b.sub(x, mu).unwrap();
    let sq = b.mul(xc, xc).unwrap();
    let var = b.mean_last(sq).unwrap();
    let eps = b.scalar(DType::F32, 1e-5);
    let ve = b.add2(var, eps).unwrap();
    let r = b.unary(UnaryOp::Rsqrt, ve).unwrap();
    let y = b.mul(xc, r).unwrap();
    g.add_output("y", y);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["layer_norm"], 1);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}
