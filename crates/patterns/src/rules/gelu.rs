//! GELU in its three spellings: exact (erf), tanh approximation, and QuickGELU.

use crate::pattern::*;
use crate::rule::{require, Rule};
use blockfuse_ir::blocks::{Gelu, GeluKind};
use blockfuse_ir::{BinaryOp, UnaryOp};

/// Relative tolerance on the approximations' constants: f32 spellings are within 1e-7, while
/// 1e-3 let `x·σ(1.703·x)` fuse as QuickGELU, 0.3 % off (found by the differential run).
const TOL: f64 = 1e-5;

fn near(v: Option<f64>, want: f64, rel: f64) -> bool {
    v.is_some_and(|v| (v - want).abs() <= rel * want.abs())
}

fn rewrite_to(
    kind: GeluKind,
) -> impl Fn(&mut blockfuse_ir::Builder<'_>, &crate::Match) -> Result<blockfuse_ir::Value, blockfuse_ir::IrError>
{
    move |b, m| Ok(b.block(Gelu { approximation: kind }, &[m.value("x")])?[0])
}

/// `0.5 · x · (1 + erf(x · 1/√2))`.
pub fn gelu_erf() -> Rule {
    let erf = unary(UnaryOp::Erf, mul(any("x"), constant("inv_sqrt2")));
    Rule::new("gelu_erf", product(vec![any("x"), constant("half"), add(erf, constant("one"))]))
        .check(|g, m| {
            require(
                near(m.scalar(g, "half"), 0.5, 1e-6) && near(m.scalar(g, "one"), 1.0, 0.0),
                "constants are not 0.5 and 1",
            )?;
            require(
                near(m.scalar(g, "inv_sqrt2"), std::f64::consts::FRAC_1_SQRT_2, 1e-4),
                "erf argument is not x/√2",
            )
        })
        .rewrite(rewrite_to(GeluKind::Exact))
}

/// `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`.
pub fn gelu_tanh() -> Rule {
    let cube = mul(any("x"), unary(UnaryOp::Square, any("x")));
    let inner = add(any("x"), mul(cube, constant("c")));
    let t = unary(UnaryOp::Tanh, mul(inner, constant("k")));
    Rule::new("gelu_tanh", product(vec![any("x"), constant("half"), add(t, constant("one"))]))
        .check(|g, m| {
            require(
                near(m.scalar(g, "half"), 0.5, 1e-6) && near(m.scalar(g, "one"), 1.0, 0.0),
                "constants are not 0.5 and 1",
            )?;
            require(
                near(m.scalar(g, "k"), (2.0 / std::f64::consts::PI).sqrt(), TOL),
                "tanh scale is not √(2/π)",
            )?;
            require(near(m.scalar(g, "c"), 0.044715, TOL), "cubic coefficient is not 0.044715")
        })
        .rewrite(rewrite_to(GeluKind::Tanh))
}

/// `x · sigmoid(1.702 · x)`.
pub fn gelu_quick() -> Rule {
    let sig = unary(UnaryOp::Sigmoid, mul(any("x"), constant("k")));
    Rule::new("gelu_quick", binary(BinaryOp::Mul, any("x"), sig.clone()))
        .check(|g, m| require(near(m.scalar(g, "k"), 1.702, TOL), "sigmoid scale is not 1.702"))
        .rewrite(rewrite_to(GeluKind::Quick))
}
