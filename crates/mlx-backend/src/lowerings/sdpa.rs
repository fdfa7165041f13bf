//! Attention through `fast::scaled_dot_product_attention`.

use super::{current_device, dtypes};
use crate::array::{Array, BinaryOp, Device};
use crate::error::{MlxError, Result};
use crate::fast;
use blockfuse_ir::blocks::{result_type, MaskKind, Sdpa};
use blockfuse_ir::dispatch::{Call, Fallback, LowerResult};
use blockfuse_ir::DType;

/// Head dims for which MLX's GPU attention kernels exist (q and v alike); they accumulate
/// in f32 whatever the input dtype.
const FUSED_HEAD_DIMS: [usize; 5] = [64, 80, 96, 128, 256];

/// [`Sdpa`] on MLX: `fast::scaled_dot_product_attention` with native grouped-query heads.
///
/// Semantics kept (blocks.md § SDPA):
/// - compute dtype: f32. f16/bf16 q, k, v are upcast and the output cast once to the result
///   type — the block computes in f32 and MLX's composed path (CPU, other head dims) would
///   round every step to the input dtype. On the GPU, half-precision operands stay native
///   when MLX has a fused kernel for them (head dim 64/80/96/128/256, q, k, v of one dtype,
///   no mask, causal with `Tq ≤ Tk`, or an additive mask of that dtype);
/// - boolean masks: passed as they are on the CPU (MLX selects `finfo.min` there, as the
///   block does); on the GPU they become additive `where(m, 0, finfo(f32).min)` masks: masked
///   scores are then exactly `finfo.min` up to rounding (a +∞ score at a masked key is the
///   one difference, docs/reliability.md), so a fully masked row attends uniformly and never
///   gives NaN, whatever kernel runs;
/// - causal: MLX's `"causal"` mode (lower-right aligned) when `Tq ≤ Tk` (no row is then
///   fully masked); for `Tq > Tk` the same mask built explicitly as an additive mask;
/// - causal + key padding: one boolean `causal ∧ padding` mask `{B, 1, Tq, Tk}`, additive
///   as above;
/// - additive masks are cast to the compute dtype and clamped from below to its `finfo.min`
///   (`maximum`, which keeps NaN), as the block's fallback does: a row masked with −∞
///   everywhere attends uniformly instead of giving NaN (blocks.md, docs/reliability.md);
///   broadcast from any shape broadcastable to `{B, Nq, Tq, Tk}`; sinks are passed as MLX's
///   sinks;
/// - softcap: MLX's fused kernel has none, so the block takes the composed path (its
///   fallback on MLX ops);
/// - f64 operands: declines (the block computes in f64).
pub fn sdpa(b: &Sdpa, call: &Call<'_, Array>, fallback: &mut dyn Fallback<Array>) -> LowerResult<Array> {
    let (q, k, v) = (&call.args[0], &call.args[1], &call.args[2]);
    let ds = dtypes([q, k, v])?;
    if ds.contains(&DType::F64) || b.softcap.is_some() {
        return fallback.run(call.args);
    }
    let out = result_type(result_type(ds[0], ds[1]), ds[2]);
    let (tq, tk) = (q.shape()[2], k.shape()[2]);
    let (dq, dv) = (q.shape()[3], v.shape()[3]);
    let mask_arg = b.mask.has_operand().then(|| &call.args[3]);
    let sinks = b.has_sinks.then(|| &call.args[3 + b.mask.has_operand() as usize]);

    let native = current_device() == Device::Gpu
        && ds[0] == ds[1]
        && ds[1] == ds[2]
        && matches!(ds[0], DType::F16 | DType::BF16)
        && dq == dv
        && FUSED_HEAD_DIMS.contains(&dq)
        && match b.mask {
            MaskKind::None => true,
            MaskKind::Causal => tq <= tk,
            MaskKind::Additive => mask_arg.map(Array::dtype).transpose()? == Some(ds[0]),
            MaskKind::Boolean | MaskKind::CausalWithKeyPadding => false,
        };
    let c = if native { ds[0] } else { DType::F32 };
    let (q, k, v) = (q.astype(c)?, k.astype(c)?, v.astype(c)?);

    let operand = || mask_arg.ok_or_else(|| MlxError::Mismatch("sdpa: the mask operand is missing".into()));
    let (causal, mask) = match b.mask {
        MaskKind::None => (false, None),
        MaskKind::Additive => {
            let m = operand()?.astype(c)?;
            let floor = Array::scalar(finfo_min(c), c)?;
            (false, Some(to_rank4(&m.binary(BinaryOp::Maximum, &floor)?)?))
        }
        // On the CPU, MLX applies a bool mask as `where(m, S, finfo.min)`, exactly the block's
        // select (a +∞ score at a masked key stays masked); its GPU kernels get the additive
        // form, which never gives NaN for fully masked rows whatever kernel runs.
        MaskKind::Boolean if current_device() == Device::Cpu => (false, Some(to_rank4(operand()?)?)),
        MaskKind::Boolean => (false, Some(additive(&to_rank4(operand()?)?, c)?)),
        MaskKind::Causal if tq <= tk => (true, None),
        MaskKind::Causal => (false, Some(additive(&causal_keep(tq, tk)?, c)?)),
        MaskKind::CausalWithKeyPadding => {
            let kp = operand()?;
            let attend = if kp.dtype()? == DType::Bool {
                kp.clone()
            } else {
                kp.binary(BinaryOp::NotEqual, &Array::scalar(0.0, kp.dtype()?)?)?
            };
            // {B, Tk} → {B, 1, 1, Tk}, and with the causal {1, 1, Tq, Tk}: {B, 1, Tq, Tk}.
            let attend = attend.expand_dims(&[1, 2])?;
            let keep = causal_keep(tq, tk)?.binary(BinaryOp::LogicalAnd, &attend)?;
            (false, Some(additive(&keep, c)?))
        }
    };
    let sinks = sinks.map(|s| s.astype(c)).transpose()?;
    let o = fast::scaled_dot_product_attention(&q, &k, &v, b.scale, causal, mask.as_ref(), sinks.as_ref())?;
    Ok(vec![o.astype(out)?])
}

/// The mask with leading size-1 axes up to rank 4.
fn to_rank4(m: &Array) -> Result<Array> {
    let shape = m.shape();
    if shape.len() >= 4 {
        return Ok(m.clone());
    }
    let mut dims = vec![1i32; 4 - shape.len()];
    dims.extend(shape.iter().map(|&d| d as i32));
    m.reshape(&dims)
}

/// The causal keep-mask `{1, 1, Tq, Tk}`: key j is visible to query i iff `j − i ≤ Tk − Tq`.
fn causal_keep(tq: usize, tk: usize) -> Result<Array> {
    let ones = Array::full(&[1, 1, tq as i32, tk as i32], 1.0, DType::Bool)?;
    ones.tril(tk as i32 - tq as i32)
}

/// The finite minimum of a float dtype.
fn finfo_min(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => half::f16::MIN.to_f64(),
        DType::BF16 => half::bf16::MIN.to_f64(),
        DType::F64 => f64::MIN,
        _ => f32::MIN as f64,
    }
}

/// `where(keep, 0, finfo(dtype).min)`.
fn additive(keep: &Array, dtype: DType) -> Result<Array> {
    Array::where_(keep, &Array::scalar(0.0, dtype)?, &Array::scalar(finfo_min(dtype), dtype)?)
}
