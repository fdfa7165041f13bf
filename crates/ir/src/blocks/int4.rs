//! 4-bit integer tensors stored two per byte: ONNX's `INT4`/`UINT4` (and MLX's 4-bit packing)
//! in a graph whose value types have no 4-bit dtype. The packed bytes are an ordinary `u8`
//! constant (memory-mapped, written to the JSON side file like any weight); this block names
//! them as the tensor of 4-bit values they hold, unpacked to `i8` or `u8` when something
//! computes with them. [`QuantizedMatmul`](super::QuantizedMatmul) and the quantized-weight
//! rule read the packed bytes themselves, so a fused weight is never unpacked.

use super::common;
use super::quantized_matmul::dims;
use crate::block::Block;
use crate::builder::Builder;
use crate::dtype::DType;
use crate::error::IrError;
use crate::graph::Value;
use crate::op::BinaryOp;
use crate::shape::{join_dims, Dim, TensorType};
use serde::{Deserialize, Serialize};

/// A tensor of 4-bit integers, two per byte: element `i` (row-major over `shape`) is the low
/// nibble of byte `i / 2` when `i` is even, the high nibble when odd (ONNX's `INT4`/`UINT4`
/// packing; an odd count leaves the last high nibble unused).
///
/// Operand: `packed` `u8` with `⌈numel(shape) / 2⌉` elements (any shape; read in row-major
/// order). Signed values are two's complement nibbles (`0x8..0xF` are −8..−1).
/// Output: `i8[shape]` (signed, −8..7) or `u8[shape]` (unsigned, 0..15).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Int4 {
    /// Two's complement (`INT4`) or unsigned (`UINT4`) nibbles.
    pub signed: bool,
    /// The dims of the 4-bit tensor.
    pub shape: Vec<usize>,
}

impl Int4 {
    /// The block's kind.
    pub const KIND: &'static str = "int4";

    /// A 4-bit tensor of `shape`, signed or not.
    pub fn new(signed: bool, shape: Vec<usize>) -> Self {
        Int4 { signed, shape }
    }

    /// Elements of the 4-bit tensor, or an error naming the overflow.
    pub fn numel(&self) -> Result<usize, String> {
        self.shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| format!("{}: shape {:?} has too many elements", Self::KIND, self.shape))
    }

    /// Bytes of the packed operand: `⌈numel / 2⌉`.
    pub fn packed_len(&self) -> Result<usize, String> {
        Ok(self.numel()?.div_ceil(2))
    }

    /// The dtype of the unpacked values.
    pub fn dtype(&self) -> DType {
        if self.signed {
            DType::I8
        } else {
            DType::U8
        }
    }

    /// Value `i` of the tensor packed in `bytes` (as [`Int4`] packs it), widened to i32.
    pub fn get(&self, bytes: &[u8], i: usize) -> i32 {
        let nibble = (bytes[i / 2] >> (4 * (i % 2))) & 0xF;
        if self.signed && nibble >= 8 {
            nibble as i32 - 16
        } else {
            nibble as i32
        }
    }
}

impl Block for Int4 {
    crate::block_identity!();

    fn infer(&self, inputs: &[TensorType]) -> Result<Vec<TensorType>, String> {
        let k = Self::KIND;
        common::arity(k, inputs, &[1], "packed")?;
        let p = &inputs[0];
        let want = self.packed_len()?;
        if p.dtype != DType::U8 || p.numel() != Dim::Known(want) {
            return Err(format!(
                "{k}: a 4-bit tensor of shape {:?} needs {want} packed u8 values, got {}[{}]",
                self.shape,
                p.dtype,
                join_dims(&p.shape)
            ));
        }
        Ok(vec![TensorType::new(self.dtype(), dims(&self.shape))])
    }

    fn fallback(&self, b: &mut Builder<'_>, inputs: &[Value]) -> Result<Vec<Value>, IrError> {
        let (n, bytes) = (self.numel().map_err(IrError::Graph)?, self.packed_len().map_err(IrError::Graph)?);
        let p = b.reshape(inputs[0], dims(&[bytes, 1]))?;
        let p = b.cast(p, DType::I32)?;
        let sixteen = b.scalar(DType::I32, 16.0);
        let low = b.binary(BinaryOp::Mod, p, sixteen)?;
        let high = b.binary(BinaryOp::Div, p, sixteen)?;
        let pairs = b.concat(&[low, high], -1)?;
        let mut v = b.reshape(pairs, dims(&[bytes * 2]))?;
        if n != bytes * 2 {
            v = b.slice_axis(v, 0, 0, n as i64)?;
        }
        if self.signed {
            // Two's complement nibble: ((v + 8) mod 16) − 8.
            let eight = b.scalar(DType::I32, 8.0);
            let shifted = b.add2(v, eight)?;
            let wrapped = b.binary(BinaryOp::Mod, shifted, sixteen)?;
            v = b.sub(wrapped, eight)?;
        }
        let v = b.cast(v, self.dtype())?;
        Ok(vec![b.reshape(v, dims(&self.shape))?])
    }
}

/// Packs 4-bit values (each in `-8..=7` when signed, `0..=15` otherwise; the low nibble of
/// each is kept) two per byte, as [`Int4`] reads them.
pub fn pack_int4(values: &[i32]) -> Vec<u8> {
    values
        .chunks(2)
        .map(|p| (p[0] as u8 & 0xF) | ((p.get(1).copied().unwrap_or(0) as u8 & 0xF) << 4))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_reads_the_packing_and_infer_checks_the_byte_count() {
        let vals = [-8, 7, -1, 0, 3];
        let packed = pack_int4(&vals);
        assert_eq!(packed, vec![0x78, 0x0F, 0x03]);
        let b = Int4::new(true, vec![5]);
        assert_eq!((0..5).map(|i| b.get(&packed, i)).collect::<Vec<_>>(), vals);
        let u = Int4::new(false, vec![5]);
        assert_eq!((0..5).map(|i| u.get(&packed, i)).collect::<Vec<_>>(), [8, 7, 15, 0, 3]);
        let t = |n: usize| TensorType::new(DType::U8, dims(&[n]));
        assert_eq!(b.infer(&[t(3)]).unwrap(), vec![TensorType::new(DType::I8, dims(&[5]))]);
        assert!(b.infer(&[t(2)]).unwrap_err().contains("needs 3 packed u8 values"));
        let huge = Int4::new(true, vec![usize::MAX, 4]);
        assert!(huge.infer(&[t(2)]).unwrap_err().contains("too many elements"));
    }
}
