//! The softcap example: rewrite snapshots, parity through the shared harness, the doc's sizes.
use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::{backend::Backend, text::dump, Block, Builder, DType, Dim, Graph, TensorType, UnaryOp};
use blockfuse_mlx::{Device, MlxBackend};
use blockfuse_patterns::{default_rules, optimize};
use blockfuse_softcap_test::{register_mlx, softcap_rule, Softcap};
use blockfuse_testkit::{max_abs_diff, parity::*, random_inputs};

/// `c · tanh(x / d)` before and after the rules (values checked equal), and softcap's near-misses.
fn optimized(c: f64, d: f64) -> String {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::new(DType::F32, [Dim::sym("n"), Dim::Known(40)]));
    let (c, d) = (b.scalar(DType::F32, c), b.scalar(DType::F32, d));
    let y = b.div(x, d).and_then(|y| b.unary(UnaryOp::Tanh, y)).and_then(|t| b.mul(c, t)).unwrap();
    g.add_output("y", y);
    let mut opt = g.clone();
    let report = optimize(&mut opt, &default_rules().with(softcap_rule())).unwrap();
    let (x, fb) = (random_inputs(&g, 3, 7), FallbackBackend::new());
    assert_eq!(max_abs_diff(&fb.run(&g, &x).unwrap()[0], &fb.run(&opt, &x).unwrap()[0], 1e-6), 0.0);
    let misses: Vec<_> = report.near_misses.iter().filter(|n| n.rule == "softcap").collect();
    format!("{}--- after ---\n{}--- softcap near-misses: {misses:?}", dump(&g).unwrap(), dump(&opt).unwrap())
}

#[test]
fn fuses_softcap_but_not_with_two_different_constants() {
    insta::assert_snapshot!("fuses", optimized(4.0, 4.0));
    insta::assert_snapshot!("five_over_four_is_a_near_miss", optimized(5.0, 4.0));
}

#[test]
fn parity_on_the_fallback_and_on_mlx_cpu() {
    let (cases, fb) = (Softcap::parity_cases(), FallbackBackend::new());
    assert_eq!(f64_failures(&fb, &cases), Vec::<String>::new());
    let (mut lowered, plain) = (MlxBackend::new(Device::Cpu).unwrap(), MlxBackend::new(Device::Cpu).unwrap());
    register_mlx(&mut lowered);
    assert!(lowered.capabilities().native_blocks.iter().any(|b| b == "Softcap"));
    let mlx: [(&str, &dyn Backend); 2] = [("lowered", &lowered), ("fallback subgraph", &plain)];
    assert_eq!(reference_failures(&fb, &mlx, &cases, |c| c.tol.max(1e-6)), Vec::<String>::new());
}

#[test]
fn four_files_and_the_line_counts_the_doc_states() {
    let doc = include_str!("../../../docs/adding-a-block.md");
    let read = |f: &str| std::fs::read_to_string(format!("{}/{f}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let files = ["Cargo.toml", "build.rs", "src/lib.rs", "tests/softcap.rs"].map(|f| (f, read(f)));
    assert!(files.iter().all(|(_, text)| doc.contains(text.as_str())), "the doc does not quote every file");
    let files = files.map(|(f, text)| (f, text.lines().count()));
    let mut rows = files.map(|(f, n)| format!("| `tests/softcap-block/{f}` | {n} |")).to_vec();
    let total: usize = files.iter().map(|(_, n)| n).sum();
    rows.push(format!("| total | {total} |"));
    assert!(total <= 150 && rows.iter().all(|r| doc.contains(r.as_str())), "doc's table is not {rows:#?}");
    let dir = |d: &str| std::fs::read_dir(format!("{}/{d}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let n = ["", "src", "tests"].map(|d| dir(d).filter(|e| e.as_ref().unwrap().path().is_file()).count());
    assert_eq!(n.iter().sum::<usize>(), 4, "files besides tests/snapshots: {n:?}");
}
