//! The residual add + RMSNorm block: MLX's add, then `fast::rms_norm` of the sum.

use super::dtypes;
use super::norm::rms_norm_array;
use crate::array::{Array, BinaryOp};
use blockfuse_ir::blocks::ResidualRmsNorm;
use blockfuse_ir::dispatch::{Call, Fallback, LowerResult};
use blockfuse_ir::DType;

/// [`ResidualRmsNorm`] on MLX: `h = x + a` (one MLX add in x's dtype, rounded once, as the
/// block's add), then `y` = [`rms_norm`](super::rms_norm) of `h` (`fast::rms_norm`); both
/// returned. Declines when an operand is f64, as RmsNorm does (MLX normalizes in f32).
///
/// `mlx::core::compile` would not fuse the add into the norm: MLX's RMSNorm is a primitive of
/// its own, and compile fuses only elementwise chains.
pub fn residual_rms_norm(
    b: &ResidualRmsNorm,
    call: &Call<'_, Array>,
    fallback: &mut dyn Fallback<Array>,
) -> LowerResult<Array> {
    if dtypes(call.args)?.contains(&DType::F64) {
        return fallback.run(call.args);
    }
    let h = call.args[0].binary(BinaryOp::Add, &call.args[1])?;
    let y = rms_norm_array(&b.norm(), &h, call.args.get(2))?;
    Ok(vec![h, y])
}
