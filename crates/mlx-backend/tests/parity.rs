//! Every built-in block's parity table (`Block::parity_cases`) on MLX: each case runs with
//! the default lowerings and with none (the fallback subgraph lowered op by op), and both are
//! compared with the reference evaluator on the same operands, by the shared runner
//! `blockfuse_testkit::parity::reference_failures`. A new block adds rows beside its
//! definition, not a test here.

mod common;

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::backend::Backend;
use blockfuse_ir::blocks::builtin_parity_cases;
use blockfuse_ir::DType;
use blockfuse_testkit::parity::reference_failures;
use common::{mlx, mlx_plain};

#[test]
fn every_block_matches_the_reference_lowered_and_unlowered() {
    let cases = builtin_parity_cases();
    let (lowered, plain) = (mlx(), mlx_plain());
    let backends: [(&str, &dyn Backend); 2] = [("lowered", &lowered), ("fallback subgraph", &plain)];
    // MLX's f64 erf/tanh/exp are only f32-accurate on the CPU.
    let tol = |case: &blockfuse_ir::block::ParityCase| {
        let f64_case = case.operands.iter().any(|t| t.dtype == DType::F64);
        if f64_case {
            case.tol.max(1e-6)
        } else {
            case.tol
        }
    };
    let failures = reference_failures(&FallbackBackend::new(), &backends, &cases, tol);
    assert!(
        failures.is_empty(),
        "{} failures over {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
