//! The differential test of every rewrite on MLX (CPU): the programs of
//! `blockfuse_fuzzing::program` (pattern instances and near-instances), optimized and run on
//! MLX's CPU device, against the original on the fallback evaluator, NaN-aware.

use blockfuse_fuzzing::program::{run_differential, KINDS};
use blockfuse_mlx::{Device, MlxBackend};

/// 200 programs; every block kind fuses (and runs on MLX) somewhere among them.
#[test]
fn optimized_programs_on_mlx_cpu_compute_what_the_originals_compute() {
    let mlx = MlxBackend::with_default_lowerings(Device::Cpu).unwrap();
    let stats = run_differential(200, Some(14), &mlx);
    println!("{stats:?}");
    assert!(stats.compared >= 180, "only {} of 200 programs ran on MLX: {stats:?}", stats.compared);
    for k in KINDS {
        assert!(stats.blocks.get(*k).copied().unwrap_or(0) > 0, "no {k} fused: {stats:?}");
    }
}
