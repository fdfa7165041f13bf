//! Differential testing of every rewrite (issue 14): random programs with instances of every
//! pattern the rules accept and perturbed near-instances (wrong constants, extra consumers,
//! interior graph outputs, swapped operands of `sub`/`div`, other axes, f16/bf16 casts,
//! key permutations that are not a last-two-axes transpose; `blockfuse_fuzzing::program`),
//! optimized and evaluated before and after on the fallback evaluator, NaN-aware.

use blockfuse_fallback::FallbackBackend;
use blockfuse_fuzzing::program::{run_differential, KINDS};

/// 500 programs (CI); every block kind fuses somewhere among them.
#[test]
fn optimized_programs_compute_what_the_originals_compute() {
    let seen = run_differential(500, &FallbackBackend::new());
    for k in KINDS {
        assert!(seen.get(*k).copied().unwrap_or(0) > 0, "no {k} fused in 500 programs: {seen:?}");
    }
}

/// The long run recorded in docs/reliability.md:
/// `cargo test -p blockfuse-fuzzing --release --test differential -- --ignored`.
#[test]
#[ignore]
fn optimized_programs_compute_what_the_originals_compute_10000() {
    let seen = run_differential(10_000, &FallbackBackend::new());
    println!("blocks fused over 10000 programs: {seen:?}");
}
