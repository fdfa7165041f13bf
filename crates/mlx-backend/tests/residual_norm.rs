//! The residual add + RMSNorm block on MLX (lowered, and as its fallback subgraph) against
//! the reference evaluator: both outputs, every dtype (blocks.md § Residual RMSNorm).

mod common;

use blockfuse_ir::blocks::ResidualRmsNorm;
use blockfuse_ir::DType;
use blockfuse_mlx::lowerings;
use common::*;

/// `h` is one rounded add (the same on both sides); `y` has RMSNorm's tolerance.
fn tol_of(d: DType) -> f64 {
    tol(1e-6, 1e-3, 1e-2, d)
}

#[test]
fn residual_rms_norm_lowered_and_fallback_match_the_reference() {
    for d in [DType::F32, DType::F16, DType::BF16] {
        for dim in [31, 32, 4099] {
            let x = rand(d, &[3, dim], 1 + dim as u64, 2.0);
            let a = rand(d, &[3, dim], 2 + dim as u64, 2.0);
            let w = rand(d, &[dim], 3 + dim as u64, 1.0);
            let what = format!("residual_rms_norm {d} D={dim}");
            let plain = ResidualRmsNorm { eps: 1e-5, weight_offset: 0.0 };
            let args = [x.clone(), a.clone(), w.clone()];
            check_block(lowerings::residual_rms_norm, &plain, &args, tol_of(d), false, &what);
            let args = [x.clone(), a.clone()];
            check_block(
                lowerings::residual_rms_norm,
                &plain,
                &args,
                tol_of(d),
                false,
                &format!("{what}, no weight"),
            );
            let gemma = ResidualRmsNorm { eps: 1e-6, weight_offset: 1.0 };
            check_block(
                lowerings::residual_rms_norm,
                &gemma,
                &[x, a, w],
                tol_of(d),
                false,
                &format!("{what}, gemma"),
            );
        }
        // A weight of another dtype: y in the result type, h in x's.
        let x = rand(d, &[2, 3, 64], 11, 3.0);
        let a = rand(d, &[2, 3, 64], 12, 3.0);
        let w32 = rand(DType::F32, &[64], 13, 1.0);
        let out = check_block(
            lowerings::residual_rms_norm,
            &ResidualRmsNorm { eps: 1e-6, weight_offset: 0.0 },
            &[x, a, w32],
            tol_of(d),
            false,
            &format!("residual_rms_norm {d} x, f32 weight"),
        );
        assert_eq!((out[0].dtype(), out[1].dtype()), (d, DType::F32));
    }
}

#[test]
fn residual_rms_norm_f64_declines() {
    let x = rand(DType::F64, &[2, 16], 21, 1.0);
    let a = rand(DType::F64, &[2, 16], 22, 1.0);
    let w = rand(DType::F64, &[16], 23, 1.0);
    let block = ResidualRmsNorm { eps: 1e-6, weight_offset: 0.0 };
    check_block(lowerings::residual_rms_norm, &block, &[x, a, w], 1e-12, true, "f64");
}
