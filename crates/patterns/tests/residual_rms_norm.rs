//! Residual add + RMSNorm (`residual_rms_norm`): the pre-norm decoder's `h = x + a;
//! y = rms_norm(h)` with `h` read again by the next residual. Snapshot, negative twins,
//! values on the fallback evaluator.

mod common;
use blockfuse_ir::*;
use blockfuse_models::{llama_decoder, DecoderConfig};
use common::*;

/// `h = x + a`, `out = h + rms_norm(h, w)` (the next residual reads h). `a_ty` is a's type;
/// with `h_out`, h is also a graph output.
fn residual(a_ty: TensorType, weighted: bool, h_out: bool) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", bsd(8));
    let a = b.input("a", a_ty);
    let h = b.add2(x, a).unwrap();
    let w = weighted.then(|| weight(&mut b, DType::F32, &[8], 1));
    let eps = b.scalar(DType::F32, 1e-6);
    let y = rms_norm_composed(&mut b, h, w, eps, 2.0, -1);
    let out = b.add2(h, y).unwrap();
    g.add_output("out", out);
    if h_out {
        g.add_output("h", h);
    }
    g
}

fn reasons(report: &blockfuse_patterns::Report) -> Vec<String> {
    report.near_misses.iter().filter(|m| m.rule == "residual_rms_norm").map(|m| m.reason.clone()).collect()
}

#[test]
fn fuses_residual_add_and_rms_norm() {
    let g = residual(bsd(8), true, false);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["residual_rms_norm"], 1);
    assert_eq!(report.blocks.get("rms_norm"), None);
    // The next residual reads the block's h: one add is left, the final one.
    assert_eq!(opt.op_histogram()["add"], 1);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-6);
}

#[test]
fn fuses_without_weight_and_with_the_sum_as_a_graph_output() {
    let g = residual(bsd(8), false, true);
    let (_, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["residual_rms_norm"], 1);
    // Both outputs of the block are read: `h` as a graph output and by the last add.
    let line = after.lines().find(|l| l.contains(" = block.residual_rms_norm")).expect("the block");
    let h = line.trim_start().split(',').next().unwrap();
    assert!(
        line.contains(&format!("{h}, {h}:1 = ")) && after.contains(&format!("return {h} \"h\"")),
        "{after}"
    );
    assert_same_values(&g, &opt, 1e-6);
}

#[test]
fn negative_the_add_broadcasts_a_bias() {
    // x + b with b {8}: h has x's type, but a does not, and the block does not broadcast.
    let g = residual(TensorType::known(DType::F32, &[8]), true, false);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks.get("residual_rms_norm"), None);
    assert_eq!(report.blocks["rms_norm"], 1);
    let r = reasons(&report);
    assert!(
        r.iter().any(|r| r.contains("the residual add broadcasts: x is f32[batch, seq, 8], a is f32[8]")),
        "{r:?}"
    );
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-6);
}

#[test]
fn negative_the_add_broadcasts_the_normalized_rows() {
    // x {1, seq, 8} + a {batch, seq, 8}: the sum has more rows than x.
    let x_ty = TensorType::new(DType::F32, [Dim::Known(1), Dim::sym("seq"), Dim::Known(8)]);
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", x_ty);
    let a = b.input("a", bsd(8));
    let h = b.add2(x, a).unwrap();
    let eps = b.scalar(DType::F32, 1e-6);
    let y = rms_norm_composed(&mut b, h, None, eps, 2.0, -1);
    g.add_output("y", y);
    g.add_output("h", h);
    let (_, _, report, opt) = fuse(&g);
    assert_eq!(report.blocks.get("residual_rms_norm"), None);
    let r = reasons(&report);
    assert!(r.iter().any(|r| r.contains("the residual add broadcasts")), "{r:?}");
    assert_same_values(&g, &opt, 1e-6);
}

/// The demo decoder (2 layers, final norm): every norm but the first reads a residual sum.
#[test]
fn decoder_norms_after_a_residual_fuse() {
    let g = llama_decoder(DecoderConfig::demo()).unwrap();
    let (_, _, report, opt) = fuse(&g);
    assert_eq!(report.blocks["residual_rms_norm"], 4);
    assert_eq!(report.blocks["rms_norm"], 1);
    assert!(reasons(&report).is_empty(), "{:?}", reasons(&report));
    assert_same_values(&g, &opt, 1e-4);
}
