//! SwiGLU, GeGLU and GELU as one fused kernel each ([`fast::fused_elementwise`], through
//! `mlx::core::compile`): MLX has no `fast::` kernel for them, and as separate elementwise
//! ops in f32 they cost more memory traffic than the exporters' composed ops. f64 operands
//! (CPU only) run as separate MLX ops in f64.

use super::dtypes;
use crate::array::{Array, BinaryOp, UnaryOp};
use crate::error::Result;
use crate::fast::{self, Fused};
use blockfuse_ir::blocks::{compute_dtype, result_type, GeGlu, Gelu, GeluKind, SwiGlu};
use blockfuse_ir::dispatch::{Call, Fallback, LowerResult};
use blockfuse_ir::DType;

fn mul(a: &Array, b: &Array) -> Result<Array> {
    a.binary(BinaryOp::Mul, b)
}

fn scalar_like(x: &Array, v: f64) -> Result<Array> {
    Array::scalar(v, x.dtype()?)
}

/// `gelu(x)` in x's dtype (f32 or f64), one formula of [`GeluKind`].
fn gelu_of(x: &Array, kind: GeluKind) -> Result<Array> {
    match kind {
        GeluKind::Exact => {
            let e = mul(x, &scalar_like(x, std::f64::consts::FRAC_1_SQRT_2)?)?.unary(UnaryOp::Erf)?;
            let e = e.binary(BinaryOp::Add, &scalar_like(x, 1.0)?)?;
            mul(&mul(x, &scalar_like(x, 0.5)?)?, &e)
        }
        GeluKind::Tanh => {
            let x3 = mul(&x.unary(UnaryOp::Square)?, x)?;
            let inner = x.binary(BinaryOp::Add, &mul(&x3, &scalar_like(x, 0.044715)?)?)?;
            let k = (2.0 / std::f64::consts::PI).sqrt();
            let t = mul(&inner, &scalar_like(x, k)?)?.unary(UnaryOp::Tanh)?;
            let t = t.binary(BinaryOp::Add, &scalar_like(x, 1.0)?)?;
            mul(&mul(x, &scalar_like(x, 0.5)?)?, &t)
        }
        GeluKind::Quick => {
            let s = mul(x, &scalar_like(x, 1.702)?)?.unary(UnaryOp::Sigmoid)?;
            mul(x, &s)
        }
    }
}

/// `(gate, up)` cast to the compute dtype, and the output dtype.
fn gated_operands(call: &Call<'_, Array>) -> Result<(Array, Array, DType)> {
    let ds = dtypes(call.args)?;
    let out = result_type(ds[0], ds[1]);
    let c = compute_dtype(out);
    Ok((call.args[0].astype(c)?, call.args[1].astype(c)?, out))
}

/// The output dtype of a gated block, and whether it computes in f32 (then fused).
fn gated_out(call: &Call<'_, Array>) -> Result<(DType, bool)> {
    let ds = dtypes(call.args)?;
    let out = result_type(ds[0], ds[1]);
    Ok((out, compute_dtype(out) == DType::F32))
}

/// [`SwiGlu`] on MLX: `gate · sigmoid(gate) · up` in f32 (f64 for f64), rounded once; one
/// fused kernel unless f64.
pub fn swiglu(_: &SwiGlu, call: &Call<'_, Array>, _: &mut dyn Fallback<Array>) -> LowerResult<Array> {
    let (out, fused) = gated_out(call)?;
    if fused {
        return Ok(vec![fast::fused_elementwise(Fused::SwiGlu, &call.args[0], Some(&call.args[1]), out)?]);
    }
    let (g, u, out) = gated_operands(call)?;
    let silu = mul(&g, &g.unary(UnaryOp::Sigmoid)?)?;
    Ok(vec![mul(&silu, &u)?.astype(out)?])
}

/// [`GeGlu`] on MLX: `gelu(gate) · up` (erf, or tanh when `approximate`) in f32 (f64 for
/// f64), rounded once; one fused kernel unless f64.
pub fn geglu(b: &GeGlu, call: &Call<'_, Array>, _: &mut dyn Fallback<Array>) -> LowerResult<Array> {
    let (out, fused) = gated_out(call)?;
    if fused {
        let kind = if b.approximate { Fused::GeGluTanh } else { Fused::GeGluErf };
        return Ok(vec![fast::fused_elementwise(kind, &call.args[0], Some(&call.args[1]), out)?]);
    }
    let (g, u, out) = gated_operands(call)?;
    let kind = if b.approximate { GeluKind::Tanh } else { GeluKind::Exact };
    Ok(vec![mul(&gelu_of(&g, kind)?, &u)?.astype(out)?])
}

/// [`Gelu`] on MLX: the exact (erf), tanh or quick formula in f32 (f64 for f64), rounded
/// once to x's dtype; one fused kernel unless f64.
pub fn gelu(b: &Gelu, call: &Call<'_, Array>, _: &mut dyn Fallback<Array>) -> LowerResult<Array> {
    let x = &call.args[0];
    let t = x.dtype()?;
    if compute_dtype(t) == DType::F32 {
        let kind = match b.approximation {
            GeluKind::Exact => Fused::GeluErf,
            GeluKind::Tanh => Fused::GeluTanh,
            GeluKind::Quick => Fused::GeluQuick,
        };
        return Ok(vec![fast::fused_elementwise(kind, x, None, t)?]);
    }
    let y = gelu_of(&x.astype(compute_dtype(t))?, b.approximation)?;
    Ok(vec![y.astype(t)?])
}
