//! Horizontal fusion of projections (`fuse_projections`): snapshots, negative twins, and
//! values on the fallback evaluator — bit for bit in f32, since each output element is the
//! same dot product as before.

mod common;
use blockfuse_ir::*;
use blockfuse_models::{llama_decoder, DecoderConfig};
use blockfuse_patterns::{
    default_rules, optimize, optimize_with, OptimizeOptions, ProjectionOptions, Report,
};
use common::*;

fn on() -> OptimizeOptions {
    OptimizeOptions { fuse_projections: Some(ProjectionOptions::default()) }
}

/// Optimizes a copy with `opts`; returns (before dump, after dump, report, optimized graph).
fn fuse_with(g: &Graph, opts: OptimizeOptions) -> (String, String, Report, Graph) {
    let before = text::dump(g).unwrap();
    let mut opt = g.clone();
    let report = optimize_with(&mut opt, &default_rules(), opts).unwrap();
    opt.validate().unwrap();
    (before, text::dump(&opt).unwrap(), report, opt)
}

fn named(b: &mut Builder<'_>, v: Value, name: &str) -> Value {
    b.graph_mut().set_name(v.node, Some(name.to_string()));
    v
}

/// What a projection's weight is in a test graph.
#[derive(Clone, Copy)]
enum W {
    /// A constant `{8, n}`.
    Const(usize),
    /// A graph input `{8, n}` (not a constant).
    Input(usize),
    /// A batched constant `{1, 8, n}`.
    Batched(usize),
    /// A constant `{n, 8}` read through a transpose (an unfolded export's `x · Wᵀ`).
    Transposed(usize),
}

/// q/k/v-style projections of one `x {batch, seq, 8}` (Qwen2's biases when `bias`), each
/// output read by a `neg` so that the graph outputs are not the projections themselves.
fn projections(ws: &[(&str, W)], bias: bool) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", bsd(8));
    let mut outs = Vec::new();
    for (i, &(name, w)) in ws.iter().enumerate() {
        let seed = 100 + i as u64;
        let wv = match w {
            W::Const(n) => weight(&mut b, DType::F32, &[8, n], seed),
            W::Input(n) => b.input(name, TensorType::known(DType::F32, &[8, n])),
            W::Batched(n) => weight(&mut b, DType::F32, &[1, 8, n], seed),
            W::Transposed(n) => weight(&mut b, DType::F32, &[n, 8], seed),
        };
        let wv = named(&mut b, wv, name);
        let wv = if matches!(w, W::Transposed(_)) { b.transpose(wv, &[1, 0]).unwrap() } else { wv };
        let mut y = b.matmul(x, wv).unwrap();
        if bias {
            let n = b.ty(y).shape.last().and_then(|d| d.known()).unwrap();
            let bv = weight(&mut b, DType::F32, &[n], seed + 50);
            let bv = named(&mut b, bv, &format!("{name}.bias"));
            y = b.add2(y, bv).unwrap();
        }
        outs.push((name, b.unary(UnaryOp::Neg, y).unwrap()));
    }
    for (name, y) in outs {
        g.add_output(name, y);
    }
    g
}

fn qkv() -> Vec<(&'static str, W)> {
    vec![("q_proj", W::Const(8)), ("k_proj", W::Const(4)), ("v_proj", W::Const(4))]
}

fn misses(report: &Report) -> Vec<String> {
    report.near_misses.iter().filter(|m| m.rule == "fuse_projections").map(|m| m.reason.clone()).collect()
}

fn matmuls(g: &Graph) -> usize {
    g.op_histogram().get("matmul").copied().unwrap_or(0)
}

#[test]
fn fuses_q_k_v_into_one_matmul_and_a_split() {
    let g = projections(&qkv(), false);
    let (before, after, report, opt) = fuse_with(&g, on());
    assert_eq!(report.rules["fuse_projections"], 1);
    assert_eq!(matmuls(&opt), 1);
    assert!(after.contains("constant \"q_proj+k_proj+v_proj\""), "{after}");
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 0.0);
}

#[test]
fn fuses_biased_projections_with_one_bias_add() {
    let g = projections(&qkv(), true);
    let (before, after, report, opt) = fuse_with(&g, on());
    assert_eq!(report.rules["fuse_projections"], 1);
    assert_eq!(opt.op_histogram()["add"], 1);
    assert!(after.contains("constant \"q_proj.bias+k_proj.bias+v_proj.bias\""), "{after}");
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 0.0);
}

#[test]
fn fuses_transposed_weights_along_their_rows() {
    let ws = [("q_proj", W::Transposed(8)), ("k_proj", W::Transposed(4)), ("v_proj", W::Const(4))];
    let g = projections(&ws, false);
    let (before, after, report, opt) = fuse_with(&g, on());
    // q and k (both `x · Wᵀ`) fuse; v's plain weight is a group of one.
    assert_eq!((report.rules["fuse_projections"], matmuls(&opt)), (1, 2));
    assert!(after.contains("constant \"q_proj+k_proj\" : f32[12, 8]"), "{after}");
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 0.0);
}

#[test]
fn off_by_default_and_for_the_fallback_evaluator() {
    let g = projections(&qkv(), false);
    let (_, _, report, opt) = fuse(&g);
    assert_eq!((report.rules.get("fuse_projections"), matmuls(&opt)), (None, 3));
    let caps = blockfuse_ir::backend::Backend::capabilities(&blockfuse_fallback::FallbackBackend::new());
    assert_eq!(OptimizeOptions::for_backend(&caps), OptimizeOptions::default());
    let caps = blockfuse_ir::backend::Capabilities { horizontal_fusion: true, ..caps };
    assert_eq!(OptimizeOptions::for_backend(&caps), on());
}

#[test]
fn negative_a_weight_that_is_not_a_constant_stays_apart() {
    let ws = [("q_proj", W::Const(8)), ("k_proj", W::Const(4)), ("v_proj", W::Input(4))];
    let g = projections(&ws, false);
    let (before, after, report, opt) = fuse_with(&g, on());
    // q and k still fuse; v keeps its own matmul.
    assert_eq!((report.rules["fuse_projections"], matmuls(&opt)), (1, 2));
    let reasons = misses(&report);
    assert!(
        reasons.iter().any(|r| r.contains("its weight %") && r.contains("\"v_proj\" is not a constant")),
        "{reasons:?}"
    );
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 0.0);
}

#[test]
fn negative_a_batched_weight_broadcasts_x() {
    let ws = [("q_proj", W::Const(8)), ("k_proj", W::Batched(4))];
    let g = projections(&ws, false);
    let (_, _, report, opt) = fuse_with(&g, on());
    assert_eq!((report.rules["fuse_projections"], matmuls(&opt)), (0, 2));
    let reasons = misses(&report);
    assert!(reasons.iter().any(|r| r.contains("a batched weight broadcasts x")), "{reasons:?}");
    assert_same_values(&g, &opt, 0.0);
}

#[test]
fn negative_weights_above_the_size_limit() {
    let g = projections(&qkv(), false);
    // 8·(8 + 4 + 4) f32 = 512 bytes.
    let small = OptimizeOptions { fuse_projections: Some(ProjectionOptions { max_weight_bytes: 511 }) };
    let (_, _, report, opt) = fuse_with(&g, small);
    assert_eq!((report.rules["fuse_projections"], matmuls(&opt)), (0, 3));
    let reasons = misses(&report);
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[0].contains("the 3 weights together are 512 bytes, above the limit of 511 bytes"),
        "{reasons:?}"
    );
    let exact = OptimizeOptions { fuse_projections: Some(ProjectionOptions { max_weight_bytes: 512 }) };
    assert_eq!(fuse_with(&g, exact).2.rules["fuse_projections"], 1);
}

#[test]
fn negative_a_bias_on_some_projections_only_stays_an_add() {
    // q_proj + bias, k_proj without: the matmuls fuse, the bias add reads q's part.
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", bsd(8));
    let wq = weight(&mut b, DType::F32, &[8, 8], 1);
    let wk = weight(&mut b, DType::F32, &[8, 4], 2);
    let bq = weight(&mut b, DType::F32, &[8], 3);
    let q = b.matmul(x, wq).unwrap();
    let q = b.add2(q, bq).unwrap();
    let k = b.matmul(x, wk).unwrap();
    g.add_output("q", q);
    g.add_output("k", k);
    let (_, after, report, opt) = fuse_with(&g, on());
    assert_eq!((report.rules["fuse_projections"], matmuls(&opt), opt.op_histogram()["add"]), (1, 1, 1));
    assert!(after.contains("split"), "{after}");
    assert_same_values(&g, &opt, 0.0);
}

/// The demo decoder (2 layers): q/k/v and gate/up fuse in each layer, after the block rules,
/// so the blocks are exactly those of the default optimization and the values bit for bit.
#[test]
fn decoder_blocks_unchanged_values_exact() {
    let g = llama_decoder(DecoderConfig::demo()).unwrap();
    let mut plain = g.clone();
    let base = optimize(&mut plain, &default_rules()).unwrap();
    let (_, _, report, opt) = fuse_with(&g, on());
    assert_eq!(report.blocks, base.blocks);
    assert_eq!(report.rules["fuse_projections"], 4);
    assert_eq!(matmuls(&plain) - matmuls(&opt), 2 * 3);
    assert!(misses(&report).is_empty(), "{:?}", misses(&report));
    assert_same_values(&plain, &opt, 0.0);
    assert_same_values(&g, &opt, 1e-4);
}
