//! Every built-in block's parity table (`Block::parity_cases`) on the fallback evaluator:
//! each case runs on random operands of its dtype and is compared with the same block run in
//! f64 on the same values (operands widened exactly). A new block adds rows beside its
//! definition, not a test here.

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::blocks::builtin_parity_cases;
use blockfuse_ir::TensorType;
use blockfuse_testkit::max_abs_diff;
use blockfuse_testkit::parity::{operands, type_of, widen};

#[test]
fn every_block_matches_its_f64_computation() {
    let cases = builtin_parity_cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let fb = FallbackBackend::new();
    let mut failures = Vec::new();
    for case in &cases {
        let x = operands(case).unwrap();
        let x64: Vec<_> = x.iter().map(widen).collect();
        let types64: Vec<TensorType> = x64.iter().map(type_of).collect();
        let got = fb
            .run(&case.graph(&case.operands).unwrap(), &x)
            .unwrap_or_else(|e| panic!("{}: {e}", case.what()));
        let want =
            fb.run(&case.graph(&types64).unwrap(), &x64).unwrap_or_else(|e| panic!("{}: {e}", case.what()));
        let declared = case.block.infer(&case.operands).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.dtype(), declared[i].dtype, "{}", case.what());
            let err = max_abs_diff(&widen(g), w, case.tol);
            if err != 0.0 {
                failures.push(format!("{} output {i}: error {err:e} > {:e}", case.what(), case.tol));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases fail:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
