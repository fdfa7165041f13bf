//! RoPE through `fast::rope`.

use crate::array::Array;
use crate::error::{MlxError, Result};
use crate::fast;
use blockfuse_ir::blocks::{Rope, RopePosition};
use blockfuse_ir::dispatch::{Call, Fallback};
use blockfuse_ir::DType;

/// [`Rope`] on MLX: `fast::rope(x, dims, traditional, base, scale, offset, freqs)`.
///
/// - `Offset(o)`: MLX's int offset (declines when `o` does not fit an `i32`);
/// - `Offsets` (a scalar or `{B}` operand): MLX's array offset, as i32;
/// - `Positions` (arbitrary positions): declines — MLX's offset form holds only for
///   positions `offset + arange(T)`, which a tensor does not promise;
/// - a freqs operand is passed (as f32) as MLX's `freqs` (periods, `inv_i = 1/freqs_i`);
/// - f64 x: declines (MLX computes the angles in f32);
/// - `mscale` ≠ 1: `fast::rope` times mscale when every feature rotates, else declines;
/// - the cos/sin form: [`fast::rope_cos_sin`], one compiled function (any dtype).
pub fn rope(
    b: &Rope,
    call: &Call<'_, Array>,
    fallback: &mut dyn Fallback<Array, MlxError>,
) -> Result<Vec<Array>> {
    let x = &call.args[0];
    if b.cos_sin {
        let Ok(dims) = i32::try_from(b.dims) else {
            return fallback.run(call.args);
        };
        let (c, s) = (&call.args[1], &call.args[2]);
        return Ok(vec![fast::rope_cos_sin(x, c, s, dims, b.traditional, b.mscale)?]);
    }
    let whole = x.shape().last() == Some(&b.dims);
    if x.dtype()? == DType::F64 || (b.mscale != 1.0 && !whole) {
        return fallback.run(call.args);
    }
    let Ok(dims) = i32::try_from(b.dims) else {
        return fallback.run(call.args);
    };
    let freqs = match b.base {
        Some(_) => None,
        None => Some(call.args[call.args.len() - 1].astype(DType::F32)?),
    };
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
        return Ok(vec![y.binary(crate::array::BinaryOp::Mul, &m)?]);
    }
    Ok(vec![y])
}
