//! The affine-quantized matmul through MLX's `quantized_matmul`.

use super::dtypes;
use crate::array::Array;
use crate::fast;
use blockfuse_ir::blocks::{result_type, QuantizedMatmul};
use blockfuse_ir::dispatch::{Call, Fallback, LowerResult};
use blockfuse_ir::DType;

/// [`QuantizedMatmul`] on MLX: `quantized_matmul(x, packed as uint32, scales, biases,
/// transpose = true)` in the result type of x and scales (MLX reads the u8 bytes of the
/// packed operand as its own uint32 packing, so nothing is repacked per call). Declines when
/// x or the scales are f64 (MLX's kernels have no f64).
pub fn quantized_matmul(
    b: &QuantizedMatmul,
    call: &Call<'_, Array>,
    fallback: &mut dyn Fallback<Array>,
) -> LowerResult<Array> {
    let ds = dtypes(call.args)?;
    if ds[0] == DType::F64 || ds[2] == DType::F64 {
        return fallback.run(call.args);
    }
    let [x, packed, scales, biases] = [0, 1, 2, 3].map(|i| &call.args[i]);
    let out = result_type(ds[0], ds[2]);
    Ok(vec![fast::quantized_matmul(x, packed, scales, biases, b.group_size as i32, b.bits as i32, out)?])
}
