//! GELU and its approximations.

use super::common::{self, compute_dtype};
use crate::block::{Block, ParityCase};
use crate::builder::Builder;
use crate::dtype::DType;
use crate::error::IrError;
use crate::graph::Value;
use crate::op::UnaryOp;
use crate::shape::TensorType;
use serde::{Deserialize, Serialize};

/// Which GELU formula a [`Gelu`] (or [`super::GeGlu`]) computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeluKind {
    /// `0.5·x·(1 + erf(x/√2))`.
    #[default]
    Exact,
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
    Tanh,
    /// QuickGELU: `x·sigmoid(1.702·x)`.
    Quick,
}

/// GELU, elementwise (blocks.md § SwiGLU / gated MLP / GELU):
///
/// - exact: `0.5·x·(1 + erf(x/√2))`;
/// - tanh: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`;
/// - quick: `x·sigmoid(1.702·x)`.
///
/// Operand: `x` (float). Computed in f32 (f64 for f64) and rounded once to x's dtype.
/// Output: x's type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gelu {
    /// The formula.
    #[serde(default)]
    pub approximation: GeluKind,
}

impl Gelu {
    /// The block's kind.
    pub const KIND: &'static str = "gelu";

    /// GELU with the given formula.
    pub fn new(approximation: GeluKind) -> Self {
        Gelu { approximation }
    }
}

/// Emits `gelu(x)` in x's dtype (which callers have made f32 or f64).
pub(crate) fn emit_gelu(b: &mut Builder<'_>, x: Value, kind: GeluKind) -> Result<Value, IrError> {
    match kind {
        GeluKind::Exact => {
            let s = b.scalar_like(x, std::f64::consts::FRAC_1_SQRT_2);
            let t = b.mul(x, s)?;
            let e = b.unary(UnaryOp::Erf, t)?;
            let one = b.scalar_like(x, 1.0);
            let e = b.add2(e, one)?;
            let half = b.scalar_like(x, 0.5);
            let h = b.mul(x, half)?;
            b.mul(h, e)
        }
        GeluKind::Tanh => {
            let x2 = b.unary(UnaryOp::Square, x)?;
            let x3 = b.mul(x2, x)?;
            let a = b.scalar_like(x, 0.044715);
            let x3 = b.mul(x3, a)?;
            let inner = b.add2(x, x3)?;
            let k = b.scalar_like(x, (2.0 / std::f64::consts::PI).sqrt());
            let inner = b.mul(inner, k)?;
            let t = b.unary(UnaryOp::Tanh, inner)?;
            let one = b.scalar_like(x, 1.0);
            let t = b.add2(t, one)?;
            let half = b.scalar_like(x, 0.5);
            let h = b.mul(x, half)?;
            b.mul(h, t)
        }
        GeluKind::Quick => {
            let a = b.scalar_like(x, 1.702);
            let ax = b.mul(x, a)?;
            let s = b.unary(UnaryOp::Sigmoid, ax)?;
            b.mul(x, s)
        }
    }
}

impl Block for Gelu {
    crate::block_identity!();

    fn parity_cases() -> Vec<ParityCase> {
        let kinds = [GeluKind::Exact, GeluKind::Tanh, GeluKind::Quick];
        let dtypes = [DType::F32, DType::F16, DType::BF16, DType::F64];
        let case = |(d, k)| ParityCase::new(Gelu::new(k), d, &[&[2, 7, 33]], 5.0, common::parity_tol(d));
        dtypes.into_iter().flat_map(|d| kinds.map(|k| (d, k))).map(case).collect()
    }

    fn infer(&self, inputs: &[TensorType]) -> Result<Vec<TensorType>, String> {
        common::arity(Self::KIND, inputs, &[1], "x")?;
        common::float(Self::KIND, "x", &inputs[0])?;
        Ok(vec![inputs[0].clone()])
    }

    fn fallback(&self, b: &mut Builder<'_>, inputs: &[Value]) -> Result<Vec<Value>, IrError> {
        let t = b.ty(inputs[0]).dtype;
        let x = b.cast(inputs[0], compute_dtype(t))?;
        let y = emit_gelu(b, x, self.approximation)?;
        Ok(vec![b.cast(y, t)?])
    }
}
