//! RoPE through `fast::rope`.

use crate::array::Array;
use crate::array::{BinaryOp, UnaryOp};
use crate::error::{MlxError, Result};
use crate::fast;
use blockfuse_ir::blocks::{Rope, RopePosition};
use blockfuse_ir::dispatch::{Call, Fallback, LowerResult};
use blockfuse_ir::{DType, HostTensor};

/// [`Rope`] on MLX: `fast::rope(x, dims, traditional, base, scale, offset, freqs)`.
///
/// - `Offset(o)`: MLX's int offset (declines when `o` does not fit an `i32`);
/// - `Offsets` (a scalar or `{B}` operand): MLX's array offset, as i32;
/// - `Positions` (arbitrary positions): MLX's offset form holds only for positions
///   `offset + arange(T)`, which a tensor does not promise; the angles `p · scale · inv` are
///   computed in f32 with MLX ops and the rotation runs as [`fast::rope_cos_sin`];
/// - a freqs operand is passed (as f32) as MLX's `freqs` (periods, `inv_i = 1/freqs_i`);
/// - f64 x: declines (MLX computes the angles in f32);
/// - `mscale` ≠ 1: `fast::rope` times mscale when every feature rotates, else declines;
/// - the cos/sin form: [`fast::rope_cos_sin`], one compiled function (any dtype).
pub fn rope(b: &Rope, call: &Call<'_, Array>, fallback: &mut dyn Fallback<Array>) -> LowerResult<Array> {
    let x = &call.args[0];
    if b.cos_sin {
        let Ok(dims) = i32::try_from(b.dims) else {
            return fallback.run(call.args);
        };
        let (c, s) = (&call.args[1], &call.args[2]);
        return Ok(vec![fast::rope_cos_sin(x, c, s, dims, b.traditional, b.mscale)?]);
    }
    let Ok(dims) = i32::try_from(b.dims) else {
        return fallback.run(call.args);
    };
    if x.dtype()? == DType::F64 {
        return fallback.run(call.args);
    }
    let freqs = match b.base {
        Some(_) => None,
        None => Some(call.args[call.args.len() - 1].astype(DType::F32)?),
    };
    if b.position == RopePosition::Positions {
        let (cos, sin) = angles_at_positions(b, x, &call.args[1], freqs.as_ref())?;
        return Ok(vec![fast::rope_cos_sin(x, &cos, &sin, dims, b.traditional, b.mscale)?]);
    }
    if b.mscale != 1.0 && x.shape().last() != Some(&b.dims) {
        return fallback.run(call.args);
    }
    let y = match b.position {
        RopePosition::Offset(o) => {
            let Ok(o) = i32::try_from(o) else {
                return fallback.run(call.args);
            };
            fast::rope(x, dims, b.traditional, b.base, b.scale, o, freqs.as_ref())?
        }
        RopePosition::Offsets => {
            let offsets = call.args[1].astype(DType::I32)?;
            fast::rope(x, dims, b.traditional, b.base, b.scale, &offsets, freqs.as_ref())?
        }
        RopePosition::Positions => return fallback.run(call.args),
    };
    if b.mscale != 1.0 {
        let m = Array::scalar(b.mscale as f64, y.dtype()?)?;
        return Ok(vec![y.binary(BinaryOp::Mul, &m)?]);
    }
    Ok(vec![y])
}

/// cos and sin (f32, `{..., T, dims/2}`, broadcasting against x) of `p · scale · inv_i` for a
/// `{T}` or `{B, T}` positions operand, as the block's fallback computes them.
fn angles_at_positions(
    b: &Rope,
    x: &Array,
    positions: &Array,
    freqs: Option<&Array>,
) -> Result<(Array, Array)> {
    let half = b.dims / 2;
    let p = positions.astype(DType::F32)?;
    let ps = p.shape();
    // {T} -> {T, 1}; {B, T} -> {B, 1, ..., 1, T, 1} of x's rank.
    let mut shape: Vec<i32> = vec![];
    if ps.len() == 2 {
        shape.push(ps[0] as i32);
        shape.extend(std::iter::repeat_n(1, x.ndim().saturating_sub(3)));
    }
    shape.extend([*ps.last().unwrap_or(&1) as i32, 1]);
    let mut p = p.reshape(&shape)?;
    if b.scale != 1.0 {
        p = p.binary(BinaryOp::Mul, &Array::scalar(b.scale as f64, DType::F32)?)?;
    }
    let inv = match (b.base, freqs) {
        (Some(base), _) => {
            let v: Vec<f64> =
                (0..half).map(|i| (base as f64).powf(-2.0 * i as f64 / b.dims as f64)).collect();
            Array::from_host(&HostTensor::from_f64(DType::F32, vec![half], &v))?
        }
        (None, Some(f)) => f.unary(UnaryOp::Reciprocal)?,
        (None, None) => return Err(MlxError::Binding("rope: neither base nor freqs".into())),
    };
    let theta = p.binary(BinaryOp::Mul, &inv)?;
    Ok((theta.unary(UnaryOp::Cos)?, theta.unary(UnaryOp::Sin)?))
}
