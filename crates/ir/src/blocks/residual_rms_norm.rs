//! A residual add followed by RMSNorm of its sum, with both results as outputs.

use super::common::{self, result_type};
use super::rms_norm::RmsNorm;
use crate::block::Block;
use crate::builder::Builder;
use crate::error::IrError;
use crate::graph::Value;
use crate::shape::TensorType;
use serde::{Deserialize, Serialize};

/// The residual add of a pre-norm transformer and the norm of its sum (blocks.md §
/// Residual RMSNorm):
///
/// `h = x + a` (in x's dtype `T`, one rounding), `y = rms_norm(h, w, eps)` — exactly
/// [`RmsNorm`] of the rounded `h`, so `y` is what the separate add and norm give.
///
/// Operands: `x` and `a` (float, the same dtype and shape: no broadcasting, so `h` has x's
/// type) and an optional `weight` (float, 1-D with as many elements as the last axis).
///
/// Outputs: `h` (x's type: the next residual reads it) and `y` (RmsNorm's output type for
/// `h` and the weight). The fallback is the add followed by an `rms_norm` block, so a
/// backend that lowers RmsNorm but not this block still runs its RmsNorm kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResidualRmsNorm {
    /// Added to the mean square inside the rsqrt (finite, ≥ 0).
    pub eps: f32,
    /// Added to the weight before scaling, as in [`RmsNorm`] (0: Llama, 1: Gemma's `1 + w`).
    #[serde(default)]
    pub weight_offset: f32,
}

impl ResidualRmsNorm {
    /// The block's kind.
    pub const KIND: &'static str = "residual_rms_norm";

    /// The residual add and the RMSNorm `norm` of its sum.
    pub fn new(norm: &RmsNorm) -> Self {
        ResidualRmsNorm { eps: norm.eps, weight_offset: norm.weight_offset }
    }

    /// The RMSNorm applied to the sum.
    pub fn norm(&self) -> RmsNorm {
        RmsNorm { eps: self.eps, weight_offset: self.weight_offset }
    }
}

impl Block for ResidualRmsNorm {
    crate::block_identity!();

    fn infer(&self, inputs: &[TensorType]) -> Result<Vec<TensorType>, String> {
        let k = Self::KIND;
        common::eps(k, self.eps)?;
        common::finite(k, "weight_offset", self.weight_offset)?;
        common::arity(k, inputs, &[2, 3], "x, a [, weight]")?;
        let (x, a) = (&inputs[0], &inputs[1]);
        common::float(k, "x", x)?;
        common::float(k, "a", a)?;
        if x != a {
            return Err(format!("{k}: x and a must have the same type (no broadcasting), got {x} and {a}"));
        }
        let Some(last) = x.shape.last() else {
            return Err(format!("{k}: x must have at least 1 axis, got {x}"));
        };
        let mut dtype = x.dtype;
        if let Some(w) = inputs.get(2) {
            common::float(k, "weight", w)?;
            common::vector_of(k, "weight", w, last, "the last axis")?;
            dtype = result_type(dtype, w.dtype);
        }
        Ok(vec![x.clone(), x.with_dtype(dtype)])
    }

    fn fallback(&self, b: &mut Builder<'_>, inputs: &[Value]) -> Result<Vec<Value>, IrError> {
        let h = b.add2(inputs[0], inputs[1])?;
        let mut args = vec![h];
        args.extend(inputs.get(2).copied());
        let y = b.block(self.norm(), &args)?[0];
        Ok(vec![h, y])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{json, text, DType, Dim, Graph, HostTensor};

    fn graph() -> Graph {
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let ty = TensorType::new(DType::BF16, [Dim::sym("seq"), Dim::Known(4)]);
        let (x, a) = (b.input("x", ty.clone()), b.input("a", ty));
        let w = b.constant(HostTensor::from_f64(DType::F32, vec![4], &[1.0, 2.0, 3.0, 4.0]));
        let outs = b.block(ResidualRmsNorm { eps: 1e-6, weight_offset: 1.0 }, &[x, a, w]).unwrap();
        g.add_output("h", outs[0]);
        g.add_output("y", outs[1]);
        g
    }

    #[test]
    fn two_outputs_in_the_text_dump_and_through_json() {
        let g = graph();
        let dump = text::dump(&g).unwrap();
        assert!(
            dump.contains(
                "%3, %3:1 = block.residual_rms_norm{eps=1e-6, weight_offset=1.0}(%0, %1, %2) : bf16[seq, 4], f32[seq, 4]"
            ),
            "{dump}"
        );
        let back = json::from_json(&json::to_json(&g).unwrap()).unwrap();
        assert_eq!(text::dump(&back).unwrap(), dump);
    }

    #[test]
    fn the_fallback_is_the_add_and_an_rms_norm_block() {
        let types = [TensorType::known(DType::F32, &[2, 4]), TensorType::known(DType::F32, &[2, 4])];
        let fb = crate::dispatch::fallback_graph(&ResidualRmsNorm { eps: 1e-5, weight_offset: 0.0 }, &types)
            .unwrap();
        let h = fb.op_histogram();
        assert_eq!((h["add"], h["block.rms_norm"], fb.outputs().len()), (1, 1, 2));
    }
}
