//! Differential testing of every rewrite (issue 14): random programs with instances of every
//! pattern the rules accept and perturbed near-instances (wrong constants, extra consumers,
//! interior graph outputs, swapped operands of `sub`/`div`, other axes, f16/bf16 casts,
//! key permutations that are not a last-two-axes transpose; `blockfuse_fuzzing::program`),
//! optimized and evaluated before and after on the fallback evaluator, NaN-aware.

use blockfuse_fallback::FallbackBackend;
use blockfuse_fuzzing::program::{run_differential, Stats, KINDS};

fn check(stats: &Stats, cases: usize) {
    assert!(stats.compared * 10 >= cases * 9, "only {} of {cases} programs compared", stats.compared);
    for k in KINDS {
        assert!(stats.blocks.get(*k).copied().unwrap_or(0) > 0, "no {k} fused: {stats:?}");
    }
}

/// 500 programs (CI); every block kind fuses somewhere among them.
#[test]
fn optimized_programs_compute_what_the_originals_compute() {
    check(&run_differential(500, Some(14), &FallbackBackend::new()), 500);
}

/// The long run recorded in docs/reliability.md:
/// `cargo test -p blockfuse-fuzzing --test differential -- --ignored --nocapture`.
#[test]
#[ignore]
fn optimized_programs_compute_what_the_originals_compute_10000() {
    let stats = run_differential(10_000, None, &FallbackBackend::new());
    println!("{stats:?}");
    check(&stats, 10_000);
}
