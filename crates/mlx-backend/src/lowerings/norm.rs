//! RMSNorm and LayerNorm through `fast::rms_norm` / `fast::layer_norm`.

use super::dtypes;
use crate::array::{Array, BinaryOp};
use crate::fast;
use blockfuse_ir::blocks::{result_type, LayerNorm, RmsNorm};
use blockfuse_ir::dispatch::{Call, Fallback, LowerResult};
use blockfuse_ir::DType;

/// [`RmsNorm`] on MLX.
///
/// - weight absent, or of x's dtype, `weight_offset = 0`: `fast::rms_norm(x, w)` (f32
///   inside, rounded to x's dtype, then `⊙ w` in that dtype — the block's math);
/// - a weight of another dtype: `fast::rms_norm(x)` (rounded to x's dtype), cast to the
///   result type, then `⊙ w` — MLX alone would cast straight to the result type;
/// - `weight_offset ≠ 0` (Gemma): `fast::rms_norm(x32, w32 + offset)` cast once to the
///   result type, the block's single-rounding f32 product;
/// - any f64 operand: declines (MLX normalizes in f32, the block in f64).
pub fn rms_norm(
    b: &RmsNorm,
    call: &Call<'_, Array>,
    fallback: &mut dyn Fallback<Array>,
) -> LowerResult<Array> {
    let x = &call.args[0];
    let w = call.args.get(1);
    let ds = dtypes(call.args)?;
    if ds.contains(&DType::F64) {
        return fallback.run(call.args);
    }
    let t = ds[0];
    let y = match w {
        None => fast::rms_norm(x, None, b.eps)?,
        Some(w) => {
            let out = result_type(t, ds[1]);
            if b.weight_offset != 0.0 {
                let w32 = w
                    .astype(DType::F32)?
                    .binary(BinaryOp::Add, &Array::scalar(b.weight_offset as f64, DType::F32)?)?;
                fast::rms_norm(&x.astype(DType::F32)?, Some(&w32), b.eps)?.astype(out)?
            } else if ds[1] == t {
                fast::rms_norm(x, Some(w), b.eps)?
            } else {
                let y = fast::rms_norm(x, None, b.eps)?.astype(out)?;
                w.astype(out)?.binary(BinaryOp::Mul, &y)?
            }
        }
    };
    Ok(vec![y])
}

/// [`LayerNorm`] on MLX.
///
/// - weight and bias absent or of x's dtype: `fast::layer_norm(x, w, b)`;
/// - otherwise `fast::layer_norm(x)` (rounded to x's dtype), cast to the result type, then
///   `⊙ w + b` in it (MLX alone would cast straight to the result type);
/// - any f64 operand: declines.
pub fn layer_norm(
    b: &LayerNorm,
    call: &Call<'_, Array>,
    fallback: &mut dyn Fallback<Array>,
) -> LowerResult<Array> {
    let ds = dtypes(call.args)?;
    if ds.contains(&DType::F64) {
        return fallback.run(call.args);
    }
    let x = &call.args[0];
    let mut next = 1;
    let mut take = |present: bool| {
        present.then(|| {
            next += 1;
            &call.args[next - 1]
        })
    };
    let w = take(b.has_weight);
    let bias = take(b.has_bias);
    let t = ds[0];
    if ds.iter().all(|&d| d == t) {
        return Ok(vec![fast::layer_norm(x, w, bias, b.eps)?]);
    }
    let out = ds.iter().fold(t, |acc, &d| result_type(acc, d));
    let mut y = fast::layer_norm(x, None, None, b.eps)?.astype(out)?;
    if let Some(w) = w {
        y = y.binary(BinaryOp::Mul, &w.astype(out)?)?;
    }
    if let Some(bias) = bias {
        y = y.binary(BinaryOp::Add, &bias.astype(out)?)?;
    }
    Ok(vec![y])
}
