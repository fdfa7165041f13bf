//! A quantized embedding table: rows gathered by token id, then dequantized, so that a
//! quantized model keeps its (often largest) table packed.

use super::common::{self, compute_dtype};
use super::quantized_matmul::{dequantize, unpack, QuantizedMatmul};
use crate::block::Block;
use crate::builder::Builder;
use crate::dtype::DType;
use crate::error::IrError;
use crate::graph::Value;
use crate::op::Op;
use crate::shape::{join_dims, Dim, TensorType};
use serde::{Deserialize, Serialize};

/// Quantized embedding lookup: `y[..., d] = scales[id, d / g] · q[id, d] + biases[id, d / g]`
/// for `id = ids[...]`, with the table stored as [`QuantizedMatmul`] stores its weight.
///
/// Operands, in order: `ids` (integer, any shape; negative ids count from the end, as ONNX
/// `Gather` does), `packed` `{V, D·bits/8}` (u8), `scales` and `biases` `{V, D / g}` (float,
/// one dtype). Dequantized in f32 (f64 for f64 scales), rounded once to the scales' dtype.
/// Output: `{ids..., D}` in the scales' dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QuantizedEmbedding {
    /// Bits per value: 4 or 8.
    pub bits: u32,
    /// Values sharing one scale and bias: 32, 64 or 128.
    pub group_size: u32,
}

impl QuantizedEmbedding {
    /// The block's kind.
    pub const KIND: &'static str = "quantized_embedding";

    /// A table of `bits` bits per value and `group_size` values per group.
    pub fn new(bits: u32, group_size: u32) -> Self {
        QuantizedEmbedding { bits, group_size }
    }
}

impl Block for QuantizedEmbedding {
    crate::block_identity!();

    fn infer(&self, inputs: &[TensorType]) -> Result<Vec<TensorType>, String> {
        let k = Self::KIND;
        QuantizedMatmul::new(self.bits, self.group_size)
            .validate()
            .map_err(|e| e.replacen("quantized_matmul", k, 1))?;
        common::arity(k, inputs, &[4], "ids, packed, scales, biases")?;
        let (ids, packed, scales, biases) = (&inputs[0], &inputs[1], &inputs[2], &inputs[3]);
        if !matches!(ids.dtype, DType::I64 | DType::I32 | DType::I8 | DType::U8) {
            return Err(format!("{k}: ids must be integers, got {ids}"));
        }
        common::float(k, "scales", scales)?;
        if packed.dtype != DType::U8 || biases.dtype != scales.dtype || biases.shape != scales.shape {
            return Err(format!(
                "{k}: packed must be u8 and biases of the type of scales, got {packed}, {biases}, {scales}"
            ));
        }
        let [Dim::Known(v), Dim::Known(bytes)] = packed.shape.as_slice() else {
            return Err(format!(
                "{k}: packed must be 2-D with known dims, got [{}]",
                join_dims(&packed.shape)
            ));
        };
        let d = bytes * 8 / self.bits as usize;
        let g = self.group_size as usize;
        if !d.is_multiple_of(g) || scales.shape.as_slice() != [Dim::Known(*v), Dim::Known(d / g)] {
            return Err(format!(
                "{k}: a table of {d} values a row needs scales [{v}, {}], got [{}]",
                d / g,
                join_dims(&scales.shape)
            ));
        }
        let shape = ids.shape.iter().cloned().chain([Dim::Known(d)]);
        Ok(vec![TensorType::new(scales.dtype, shape)])
    }

    fn fallback(&self, b: &mut Builder<'_>, inputs: &[Value]) -> Result<Vec<Value>, IrError> {
        let (ids, packed, scales, biases) = (inputs[0], inputs[1], inputs[2], inputs[3]);
        let prefix: Vec<Dim> = b.ty(ids).shape.to_vec();
        let out = b.ty(scales).dtype;
        let Dim::Known(bytes) = b.ty(packed).shape[1] else {
            return Err(IrError::Graph(format!("{}: packed dims are not known", Self::KIND)));
        };
        let d = bytes * 8 / self.bits as usize;
        let mut rows = |t: Value| b.add(Op::Gather { axis: 0 }, &[t, ids]);
        let (p, s, z) = (rows(packed)?, rows(scales)?, rows(biases)?);
        let q = unpack(b, p, self.bits, &prefix, bytes)?;
        let y = dequantize(b, q, s, z, &prefix, d, self.group_size as usize, compute_dtype(out))?;
        Ok(vec![b.cast(y, out)?])
    }
}
