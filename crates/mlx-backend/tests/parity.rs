//! Every built-in block's parity table (`Block::parity_cases`) on MLX: each case runs with
//! the default lowerings and with none (the fallback subgraph lowered op by op), and both are
//! compared with the reference evaluator on the same operands. A new block adds rows beside
//! its definition, not a test here.

mod common;

use blockfuse_ir::blocks::builtin_parity_cases;
use blockfuse_ir::DType;
use blockfuse_testkit::max_abs_diff;
use blockfuse_testkit::parity::operands;
use common::{mlx, mlx_plain, reference};

#[test]
fn every_block_matches_the_reference_lowered_and_unlowered() {
    let cases = builtin_parity_cases();
    let (lowered, plain) = (mlx(), mlx_plain());
    let mut failures = Vec::new();
    for case in &cases {
        // MLX's f64 erf/tanh/exp are only f32-accurate on the CPU.
        let f64_case = case.operands.iter().any(|t| t.dtype == DType::F64);
        let tol = if f64_case { case.tol.max(1e-6) } else { case.tol };
        let x = operands(case).unwrap();
        let g = case.graph(&case.operands).unwrap();
        let want = reference(&g, &x);
        for (how, backend) in [("lowered", &lowered), ("fallback subgraph", &plain)] {
            let got = backend.run(&g, &x).unwrap_or_else(|e| panic!("{} ({how}): {e}", case.what()));
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!((g.dtype(), g.dims()), (w.dtype(), w.dims()), "{} ({how})", case.what());
                let err = max_abs_diff(g, w, tol);
                if err != 0.0 {
                    failures.push(format!("{} ({how}) output {i}: error {err:e} > {tol:e}", case.what()));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures over {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
