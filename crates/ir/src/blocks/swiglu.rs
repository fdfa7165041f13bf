//! SwiGLU: the gated MLP activation of Llama-style models.

use super::common::{self, compute_dtype, result_type};
use crate::block::{Block, ParityCase};
use crate::builder::Builder;
use crate::dtype::DType;
use crate::error::IrError;
use crate::graph::Value;
use crate::op::UnaryOp;
use crate::shape::{join_dims, TensorType};
use serde::{Deserialize, Serialize};

/// SwiGLU (blocks.md § SwiGLU): `silu(gate) ⊙ up` with `silu(x) = x · sigmoid(x)`.
///
/// Operands, in order: `gate`, `up` (float, the same shape). Computed in f32 (f64 when an
/// operand is f64) and rounded once to the result type of gate and up. Output: that type,
/// the operands' shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SwiGlu {}

impl SwiGlu {
    /// The block's kind.
    pub const KIND: &'static str = "swiglu";

    /// The block (it has no attributes).
    pub fn new() -> Self {
        SwiGlu {}
    }
}

/// Checks a `(gate, up)` pair and gives the output type (shared with [`super::GeGlu`]).
pub(crate) fn infer_gated(kind: &str, inputs: &[TensorType]) -> Result<Vec<TensorType>, String> {
    common::arity(kind, inputs, &[2], "gate, up")?;
    let (g, u) = (&inputs[0], &inputs[1]);
    common::float(kind, "gate", g)?;
    common::float(kind, "up", u)?;
    if g.shape != u.shape {
        return Err(format!(
            "{kind}: gate and up shapes differ: [{}] vs [{}]",
            join_dims(&g.shape),
            join_dims(&u.shape)
        ));
    }
    Ok(vec![g.with_dtype(result_type(g.dtype, u.dtype))])
}

/// The fallback of a gated activation (shared with [`super::GeGlu`]): `act(gate) ⊙ up` in
/// the compute dtype of the output, cast back to the output's dtype.
pub(crate) fn gated_fallback(
    b: &mut Builder<'_>,
    inputs: &[Value],
    act: impl FnOnce(&mut Builder<'_>, Value) -> Result<Value, IrError>,
) -> Result<Vec<Value>, IrError> {
    let out = result_type(b.ty(inputs[0]).dtype, b.ty(inputs[1]).dtype);
    let c = compute_dtype(out);
    let g = b.cast(inputs[0], c)?;
    let u = b.cast(inputs[1], c)?;
    let a = act(b, g)?;
    let y = b.mul(a, u)?;
    Ok(vec![b.cast(y, out)?])
}

impl Block for SwiGlu {
    crate::block_identity!();

    fn parity_cases() -> Vec<ParityCase> {
        let case =
            |d| ParityCase::new(SwiGlu::new(), d, &[&[3, 5, 64], &[3, 5, 64]], 4.0, common::parity_tol(d));
        [DType::F32, DType::F16, DType::BF16, DType::F64].map(case).to_vec()
    }

    fn infer(&self, inputs: &[TensorType]) -> Result<Vec<TensorType>, String> {
        infer_gated(Self::KIND, inputs)
    }

    fn fallback(&self, b: &mut Builder<'_>, inputs: &[Value]) -> Result<Vec<Value>, IrError> {
        gated_fallback(b, inputs, |b, g| {
            let s = b.unary(UnaryOp::Sigmoid, g)?;
            b.mul(g, s)
        })
    }
}
