//! RMSNorm over the last axis.

use super::common::{self, compute_dtype, result_type};
use crate::block::{Block, ParityCase};
use crate::builder::Builder;
use crate::dtype::DType;
use crate::error::IrError;
use crate::graph::Value;
use crate::op::UnaryOp;
use crate::shape::TensorType;
use serde::{Deserialize, Serialize};

/// RMSNorm over the last axis (blocks.md § RMSNorm):
///
/// `y = w ⊙ cast_T( x32 · rsqrt(mean(x32², last axis) + eps) )`
///
/// with `x32` = x in f32 (f64 stays f64), `T` = x's dtype, eps inside the rsqrt.
///
/// Operands: `x` (float, rank ≥ 1) and an optional `weight` (float, 1-D with as many
/// elements as the last axis of `x`). Without a weight the scaling is skipped (w = 1).
///
/// Output: the shape of `x`, in the result type of x and w (`T` when they agree; f16 with
/// bf16 gives f32; see [`result_type`]). With `weight_offset = 0` the product is taken in that
/// result type after the cast to `T`, as Hugging Face's Llama does
/// (`weight * hidden.to(input_dtype)`); MLX casts straight to the result type instead, which
/// differs only when w is wider than x (one rounding).
///
/// With `weight_offset ≠ 0` (Gemma's `1 + w`: `weight_offset = 1`) the weight is
/// `weight_offset + w` and, as Gemma's reference does, the whole product is taken in f32 and
/// rounded once: `y = cast_R( x32 · rsqrt(…) · (weight_offset + w32) )`, R the result type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RmsNorm {
    /// Added to the mean square inside the rsqrt (finite, ≥ 0).
    pub eps: f32,
    /// Added to the weight before scaling: 0 for Llama-style models, 1 for Gemma's `(1 + w)`.
    #[serde(default)]
    pub weight_offset: f32,
}

impl RmsNorm {
    /// The block's kind.
    pub const KIND: &'static str = "rms_norm";

    /// RMSNorm with `eps` and a plain weight (`weight_offset = 0`).
    pub fn new(eps: f32) -> Self {
        RmsNorm { eps, weight_offset: 0.0 }
    }

    /// Gemma's RMSNorm: the weight is applied as `(1 + w)`.
    pub fn gemma(eps: f32) -> Self {
        RmsNorm { eps, weight_offset: 1.0 }
    }
}

impl Block for RmsNorm {
    crate::block_identity!();

    fn parity_cases() -> Vec<ParityCase> {
        let dtypes = [DType::F32, DType::F16, DType::BF16, DType::F64];
        let case = |(d, b)| ParityCase::new(b, d, &[&[2, 3, 64], &[64]], 3.0, common::parity_tol(d));
        dtypes
            .into_iter()
            .flat_map(|d| [(d, RmsNorm::new(1e-5)), (d, RmsNorm::gemma(1e-6))])
            .map(case)
            .collect()
    }

    fn infer(&self, inputs: &[TensorType]) -> Result<Vec<TensorType>, String> {
        let k = Self::KIND;
        common::eps(k, self.eps)?;
        common::finite(k, "weight_offset", self.weight_offset)?;
        common::arity(k, inputs, &[1, 2], "x [, weight]")?;
        let x = &inputs[0];
        common::float(k, "x", x)?;
        let Some(last) = x.shape.last() else {
            return Err(format!("{k}: x must have at least 1 axis, got {x}"));
        };
        let mut dtype = x.dtype;
        if let Some(w) = inputs.get(1) {
            common::float(k, "weight", w)?;
            common::vector_of(k, "weight", w, last, "the last axis")?;
            dtype = result_type(dtype, w.dtype);
        }
        Ok(vec![x.with_dtype(dtype)])
    }

    fn fallback(&self, b: &mut Builder<'_>, inputs: &[Value]) -> Result<Vec<Value>, IrError> {
        let x = inputs[0];
        let t = b.ty(x).dtype;
        let c = compute_dtype(t);
        let x32 = b.cast(x, c)?;
        let sq = b.unary(UnaryOp::Square, x32)?;
        let ms = b.mean_last(sq)?;
        let eps = b.scalar(c, self.eps as f64);
        let ms = b.add2(ms, eps)?;
        let r = b.unary(UnaryOp::Rsqrt, ms)?;
        let y = b.mul(x32, r)?;
        let Some(&w) = inputs.get(1) else {
            return Ok(vec![b.cast(y, t)?]);
        };
        let out = result_type(t, b.ty(w).dtype);
        let y = if self.weight_offset == 0.0 {
            let y = b.cast(y, t)?;
            let y = b.cast(y, out)?;
            let w = b.cast(w, out)?;
            b.mul(w, y)?
        } else {
            let w = b.cast(w, compute_dtype(out))?;
            let c = b.ty(w).dtype;
            let off = b.scalar(c, self.weight_offset as f64);
            let w = b.add2(w, off)?;
            let y = b.cast(y, c)?;
            let y = b.mul(y, w)?;
            b.cast(y, out)?
        };
        Ok(vec![y])
    }
}
