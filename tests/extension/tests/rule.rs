//! The extension crate's own fusion rule next to blockfuse's: `min(max(gelu(x), −c), c)`
//! fuses into one `clamped_gelu` block, with the same values, and can be disabled by name.

use blockfuse_extension_test::{extension_rule, ClampedGelu};
use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::{BinaryOp, Builder, DType, Dim, Graph, HostTensor, TensorType, UnaryOp};
use blockfuse_patterns::{default_rules, optimize, RuleSet};

/// `min(max(0.5·x·(1 + erf(x/√2)), lo), hi)` with a second reader of the input.
fn composed(lo: f64, hi: f64, max_first: bool) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::new(DType::F32, [Dim::sym("n"), Dim::Known(16)]));
    let s = b.scalar(DType::F32, std::f64::consts::SQRT_2);
    let d = b.div(x, s).unwrap();
    let e = b.unary(UnaryOp::Erf, d).unwrap();
    let one = b.scalar(DType::F32, 1.0);
    let e1 = b.add2(e, one).unwrap();
    let half = b.scalar(DType::F32, 0.5);
    let hx = b.mul(half, x).unwrap();
    let gelu = b.mul(hx, e1).unwrap();
    let (lo, hi) = (b.scalar(DType::F32, lo), b.scalar(DType::F32, hi));
    let y = if max_first {
        let y = b.binary(BinaryOp::Max, gelu, lo).unwrap();
        b.binary(BinaryOp::Min, hi, y).unwrap()
    } else {
        let y = b.binary(BinaryOp::Min, gelu, hi).unwrap();
        b.binary(BinaryOp::Max, y, lo).unwrap()
    };
    g.add_output("y", y);
    g
}

fn run(g: &Graph) -> Vec<f64> {
    let v: Vec<f64> = (0..5 * 16).map(|i| -6.0 + 12.0 * i as f64 / 80.0).collect();
    let x = HostTensor::from_f64(DType::F32, vec![5, 16], &v);
    FallbackBackend::new().run(g, &[x]).unwrap()[0].to_f64_vec()
}

fn optimized(g: &Graph, rules: &RuleSet) -> (Graph, blockfuse_patterns::Report) {
    let mut opt = g.clone();
    let report = optimize(&mut opt, rules).unwrap();
    opt.validate().unwrap();
    (opt, report)
}

fn assert_same(a: &[f64], b: &[f64]) {
    let d = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    assert!(d <= 1e-6, "values differ by {d:e}");
}

#[test]
fn extension_rule_fuses_clamped_gelu() {
    for max_first in [true, false] {
        let g = composed(-1.5, 1.5, max_first);
        let rules = default_rules().with(extension_rule());
        let (opt, report) = optimized(&g, &rules);
        assert_eq!(report.blocks.get("clamped_gelu"), Some(&1), "{:?}", report.near_misses);
        assert_eq!(report.blocks.get("gelu"), None, "the gelu block is inside the clamped one");
        let blocks: Vec<_> = opt.node_ids().filter_map(|id| opt.node(id).op.as_block().cloned()).collect();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].downcast_ref::<ClampedGelu>(), Some(&ClampedGelu { limit: 1.5 }));
        assert_same(&run(&g), &run(&opt));
    }
}

#[test]
fn extension_rule_fuses_the_composed_gelu_without_ours() {
    let g = composed(-2.0, 2.0, true);
    let mut rules = default_rules().with(extension_rule());
    assert!(rules.disable("gelu_erf"));
    let (opt, report) = optimized(&g, &rules);
    assert_eq!(report.blocks.get("clamped_gelu"), Some(&1), "{:?}", report.near_misses);
    assert_same(&run(&g), &run(&opt));
}

#[test]
fn disabling_the_extension_rule_turns_it_off() {
    let g = composed(-1.5, 1.5, true);
    let mut rules = default_rules().with(extension_rule());
    assert!(rules.names().contains(&"clamped_gelu"));
    assert!(rules.disable("clamped_gelu"));
    let (opt, report) = optimized(&g, &rules);
    assert_eq!(report.blocks.get("clamped_gelu"), None);
    assert_eq!(report.blocks.get("gelu"), Some(&1), "our gelu rule still runs");
    assert_same(&run(&g), &run(&opt));
}

#[test]
fn asymmetric_bounds_are_a_near_miss() {
    let g = composed(-1.0, 1.5, true);
    let (opt, report) = optimized(&g, &default_rules().with(extension_rule()));
    assert_eq!(report.blocks.get("clamped_gelu"), None);
    assert!(
        report.near_misses.iter().any(|m| m.rule == "clamped_gelu" && m.reason.contains("lower bound")),
        "{:?}",
        report.near_misses
    );
    assert_same(&run(&g), &run(&opt));
}
