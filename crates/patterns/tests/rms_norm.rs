mod common;
use blockfuse_ir::*;
use common::*;

fn llama(dtype_cast: bool) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input(
        "x",
        TensorType::new(
            if dtype_cast { DType::F16 } else { DType::F32 },
            [Dim::sym("batch"), Dim::sym("seq"), Dim::Known(8)],
        ),
    );
    let w = weight(&mut b, if dtype_cast { DType::F16 } else { DType::F32 }, &[8], 1);
    let xf = b.cast(x, DType::F32).unwrap();
    let eps = b.scalar(DType::F32, 1e-6);
    let y = rms_norm_composed(&mut b, xf, None, eps, 2.0, -1);
    let y = b.cast(y, b.ty(x).dtype).unwrap();
    let y = b.mul(w, y).unwrap();
    g.add_output("y", y);
    g
}

#[test]
fn fuses_llama_f32() {
    let g = llama(false);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["rms_norm"], 1);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

#[test]
fn fuses_f16_with_upcast_and_downcast() {
    let g = llama(true);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["rms_norm"], 1);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 2e-2);
}

#[test]
fn fuses_unweighted_and_per_head() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input(
        "q",
        TensorType::new(DType::F32, [Dim::sym("batch"), Dim::Known(4), Dim::sym("seq"), Dim::Known(16)]),
    );
    let eps = b.scalar(DType::F32, 1e-5);
    let y = rms_norm_composed(&mut b, x, None, eps, 2.0, -1);
    g.add_output("y", y);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["rms_norm"], 1);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

fn near_miss(g: &Graph) -> (usize, Vec<String>) {
    let (_, _, report, opt) = fuse(g);
    assert_same_values(g, &opt, 1e-5);
    (
        report.blocks.get("rms_norm").copied().unwrap_or(0),
        report.near_misses.iter().filter(|m| m.rule == "rms_norm").map(|m| m.reason.clone()).collect(),
    )
}

fn variant(exponent: f64, axis: i64, eps_input: bool, leak: bool, output_interior: bool) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", bsd(8));
    let eps =
        if eps_input { b.input("eps", TensorType::scalar(DType::F32)) } else { b.scalar(DType::F32, 1e-6) };
    let w = weight(&mut b, DType::F32, &[8], 2);
    let e = b.scalar(DType::F32, exponent);
    let sq = b.binary(BinaryOp::Pow, x, e).unwrap();
    let ms = b.reduce(ReduceOp::Mean, sq, &[axis], true).unwrap();
    let a = b.add2(ms, eps).unwrap();
    let r = b.unary(UnaryOp::Rsqrt, a).unwrap();
    let y = b.mul(x, r).unwrap();
    let y = b.mul(y, w).unwrap();
    let leaked = b.unary(UnaryOp::Neg, r).unwrap();
    g.add_output("y", y);
    if leak {
        g.add_output("r_copy", leaked);
    }
    if output_interior {
        g.add_output("ms", ms);
    }
    g
}

#[test]
fn negative_extra_consumer() {
    let (n, reasons) = near_miss(&variant(2.0, -1, false, true, false));
    assert_eq!(n, 0);
    assert!(reasons.iter().any(|r| r.contains("is also read by")), "{reasons:?}");
}

#[test]
fn negative_interior_graph_output() {
    let (n, reasons) = near_miss(&variant(2.0, -1, false, false, true));
    assert_eq!(n, 0);
    assert!(reasons.iter().any(|r| r.contains("is a graph output")), "{reasons:?}");
}

#[test]
fn negative_wrong_exponent() {
    let (n, reasons) = near_miss(&variant(3.0, -1, false, false, false));
    assert_eq!(n, 0);
    assert!(reasons.iter().any(|r| r.contains("not over x²")), "{reasons:?}");
}

#[test]
fn negative_wrong_axis() {
    let (n, reasons) = near_miss(&variant(2.0, 1, false, false, false));
    assert_eq!(n, 0);
    assert!(reasons.iter().any(|r| r.contains("last axis")), "{reasons:?}");
}

#[test]
fn negative_non_constant_eps() {
    let (n, reasons) = near_miss(&variant(2.0, -1, true, false, false));
    assert_eq!(n, 0);
    assert!(reasons.iter().any(|r| r.contains("eps is not a constant")), "{reasons:?}");
}

/// Gemma fp16 export: the norm runs in f32 after an upcast, weight in f32, no downcast.
#[test]
fn fuses_gemma_f16_without_downcast() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::new(DType::F16, [Dim::sym("batch"), Dim::sym("seq"), Dim::Known(8)]));
    let w = weight(&mut b, DType::F32, &[8], 5);
    let xf = b.cast(x, DType::F32).unwrap();
    let eps = b.scalar(DType::F32, 1e-6);
    let y = rms_norm_composed(&mut b, xf, Some(w), eps, 2.0, -1);
    g.add_output("y", y);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["rms_norm"], 1);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

/// ONNX RMSNormalization's expanded body over the axes `axes` of `x {2, 3, 4}`, with a weight of
/// the normalized shape.
fn rms_over(axes: &[i64], eps: f64) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::known(DType::F32, &[2, 3, 4]));
    let rank = 3;
    let normalized = |a: usize| axes.iter().any(|&x| (x + rank as i64) as usize % rank == a);
    let wdims: Vec<usize> = (0..rank).map(|a| if normalized(a) { [2, 3, 4][a] } else { 1 }).collect();
    let w = weight(&mut b, DType::F32, &wdims, 3);
    let sq = b.mul(x, x).unwrap();
    let ms = b.reduce(ReduceOp::Mean, sq, axes, true).unwrap();
    let e = b.scalar(DType::F32, eps);
    let a = b.add2(ms, e).unwrap();
    let s = b.unary(UnaryOp::Sqrt, a).unwrap();
    let y = b.div(x, s).unwrap();
    let y = b.mul(y, w).unwrap();
    g.add_output("y", y);
    g
}

#[test]
fn fuses_rms_norm_over_several_trailing_axes() {
    let g = rms_over(&[-2, -1], 0.1);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks.get("rms_norm").copied().unwrap_or(0), 1, "{:?}", report.near_misses);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

#[test]
fn negative_rms_norm_over_a_leading_axis() {
    let g = rms_over(&[0], 1e-5);
    let (_, _, report, opt) = fuse(&g);
    assert_eq!(report.blocks.get("rms_norm").copied().unwrap_or(0), 0);
    assert!(
        report
            .near_misses
            .iter()
            .any(|m| m.reason.contains("not over the last axis or a trailing range of axes")),
        "{:?}",
        report.near_misses
    );
    assert_same_values(&g, &opt, 1e-6);
}

#[test]
fn unfused_mean_of_squares_gets_a_near_miss() {
    // mean(x²) + eps feeding exp: no norm, and the report says where the chain stops.
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::known(DType::F32, &[2, 8]));
    let sq = b.mul(x, x).unwrap();
    let ms = b.reduce(ReduceOp::Mean, sq, &[-1], true).unwrap();
    let e = b.scalar(DType::F32, 1e-6);
    let a = b.add2(ms, e).unwrap();
    let y = b.unary(UnaryOp::Exp, a).unwrap();
    g.add_output("y", y);
    let (_, _, report, _) = fuse(&g);
    assert!(
        report
            .near_misses
            .iter()
            .any(|m| m.rule == "rms_norm" && m.reason.contains("is not followed by rsqrt")),
        "{:?}",
        report.near_misses
    );
}
