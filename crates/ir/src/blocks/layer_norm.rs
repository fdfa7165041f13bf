//! LayerNorm over the last axis.

use super::common::{self, compute_dtype, result_type};
use crate::block::{Block, ParityCase};
use crate::builder::Builder;
use crate::dtype::DType;
use crate::error::IrError;
use crate::graph::Value;
use crate::op::UnaryOp;
use crate::shape::TensorType;
use serde::{Deserialize, Serialize};

/// LayerNorm over the last axis (blocks.md § LayerNorm):
///
/// `mu = mean(x32)`, `var = mean((x32 − mu)²)` (biased),
/// `y = cast_T((x32 − mu) · rsqrt(var + eps)) ⊙ w + b`
///
/// with `x32` = x in f32 (f64 stays f64) and `T` = x's dtype.
///
/// Operands, in order: `x` (float, rank ≥ 1), then `weight` when `has_weight`, then `bias`
/// when `has_bias`; each is float and 1-D with as many elements as the last axis of `x`.
/// An absent weight is 1 and an absent bias 0.
///
/// Output: the shape of `x`, in the result type of x, w and b ([`result_type`]); the scaling
/// and the shift are done in that type after the cast to `T` (as MLX's fallback does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerNorm {
    /// Added to the variance inside the rsqrt (finite, ≥ 0).
    pub eps: f32,
    /// A weight operand follows `x`.
    pub has_weight: bool,
    /// A bias operand follows (after the weight, when there is one).
    pub has_bias: bool,
}

impl LayerNorm {
    /// The block's kind.
    pub const KIND: &'static str = "layer_norm";

    /// LayerNorm with weight and bias operands (`x, weight, bias`).
    pub fn new(eps: f32) -> Self {
        LayerNorm { eps, has_weight: true, has_bias: true }
    }

    /// The number of operands the block takes.
    pub fn operand_count(&self) -> usize {
        1 + self.has_weight as usize + self.has_bias as usize
    }

    fn names(&self) -> String {
        let mut s = String::from("x");
        if self.has_weight {
            s.push_str(", weight");
        }
        if self.has_bias {
            s.push_str(", bias");
        }
        s
    }
}

impl Block for LayerNorm {
    crate::block_identity!();

    fn parity_cases() -> Vec<ParityCase> {
        // Twice the usual tolerance: the weight and bias apply after the rounding to T, in T
        // (two more roundings, as MLX's fallback does).
        let dims: &[&[usize]] = &[&[2, 3, 64], &[64], &[64]];
        let case = |d| ParityCase::new(LayerNorm::new(1e-5), d, dims, 3.0, 2.0 * common::parity_tol(d));
        [DType::F32, DType::F16, DType::BF16, DType::F64].map(case).to_vec()
    }

    fn infer(&self, inputs: &[TensorType]) -> Result<Vec<TensorType>, String> {
        let k = Self::KIND;
        common::eps(k, self.eps)?;
        common::arity(k, inputs, &[self.operand_count()], &self.names())?;
        let x = &inputs[0];
        common::float(k, "x", x)?;
        let Some(last) = x.shape.last() else {
            return Err(format!("{k}: x must have at least 1 axis, got {x}"));
        };
        let mut dtype = x.dtype;
        let mut next = 1;
        for (present, what) in [(self.has_weight, "weight"), (self.has_bias, "bias")] {
            if present {
                let t = &inputs[next];
                common::float(k, what, t)?;
                common::vector_of(k, what, t, last, "the last axis")?;
                dtype = result_type(dtype, t.dtype);
                next += 1;
            }
        }
        Ok(vec![x.with_dtype(dtype)])
    }

    fn fallback(&self, b: &mut Builder<'_>, inputs: &[Value]) -> Result<Vec<Value>, IrError> {
        let x = inputs[0];
        let t = b.ty(x).dtype;
        let c = compute_dtype(t);
        let x32 = b.cast(x, c)?;
        let mu = b.mean_last(x32)?;
        let d = b.sub(x32, mu)?;
        let sq = b.unary(UnaryOp::Square, d)?;
        let var = b.mean_last(sq)?;
        let eps = b.scalar(c, self.eps as f64);
        let var = b.add2(var, eps)?;
        let r = b.unary(UnaryOp::Rsqrt, var)?;
        let y = b.mul(d, r)?;
        let y = b.cast(y, t)?;
        let out = inputs[1..].iter().fold(t, |acc, v| result_type(acc, b.ty(*v).dtype));
        let mut y = b.cast(y, out)?;
        let mut next = 1;
        if self.has_weight {
            let w = b.cast(inputs[next], out)?;
            y = b.mul(y, w)?;
            next += 1;
        }
        if self.has_bias {
            let bias = b.cast(inputs[next], out)?;
            y = b.add2(y, bias)?;
        }
        Ok(vec![y])
    }
}
