//! Every built-in block's parity table (`Block::parity_cases`) on the fallback evaluator:
//! each case runs on random operands of its dtype and is compared with the same block run in
//! f64 on the same values (operands widened exactly), by the shared runner
//! `blockfuse_testkit::parity::f64_failures`. A new block adds rows beside its definition,
//! not a test here.

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::blocks::builtin_parity_cases;
use blockfuse_testkit::parity::f64_failures;

#[test]
fn every_block_matches_its_f64_computation() {
    let cases = builtin_parity_cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let failures = f64_failures(&FallbackBackend::new(), &cases);
    assert!(
        failures.is_empty(),
        "{} of {} cases fail:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
