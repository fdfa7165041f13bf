//! GeGLU: the GELU-gated MLP activation (Gemma uses the tanh approximation).

use super::common;
use super::gelu::{emit_gelu, GeluKind};
use super::swiglu::{gated_fallback, infer_gated};
use crate::block::{Block, ParityCase};
use crate::builder::Builder;
use crate::dtype::DType;
use crate::error::IrError;
use crate::graph::Value;
use crate::shape::TensorType;
use serde::{Deserialize, Serialize};

/// GeGLU (blocks.md § SwiGLU / gated MLP / GELU): `gelu(gate) ⊙ up`, with exact GELU, or the
/// tanh approximation when `approximate` (Gemma).
///
/// Operands, in order: `gate`, `up` (float, the same shape). Computed in f32 (f64 when an
/// operand is f64) and rounded once to the result type of gate and up. Output: that type,
/// the operands' shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GeGlu {
    /// Use the tanh approximation of GELU instead of erf.
    #[serde(default)]
    pub approximate: bool,
}

impl GeGlu {
    /// The block's kind.
    pub const KIND: &'static str = "geglu";

    /// GeGLU with exact (`false`) or tanh-approximated (`true`) GELU.
    pub fn new(approximate: bool) -> Self {
        GeGlu { approximate }
    }
}

impl Block for GeGlu {
    crate::block_identity!();

    fn parity_cases() -> Vec<ParityCase> {
        let dims: &[&[usize]] = &[&[3, 5, 64], &[3, 5, 64]];
        let case = |(d, a)| ParityCase::new(GeGlu::new(a), d, dims, 4.0, common::parity_tol(d));
        let dtypes = [DType::F32, DType::F16, DType::BF16, DType::F64];
        dtypes.into_iter().flat_map(|d| [(d, false), (d, true)]).map(case).collect()
    }

    fn infer(&self, inputs: &[TensorType]) -> Result<Vec<TensorType>, String> {
        infer_gated(Self::KIND, inputs)
    }

    fn fallback(&self, b: &mut Builder<'_>, inputs: &[Value]) -> Result<Vec<Value>, IrError> {
        let kind = if self.approximate { GeluKind::Tanh } else { GeluKind::Exact };
        gated_fallback(b, inputs, |b, g| emit_gelu(b, g, kind))
    }
}
