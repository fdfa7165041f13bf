//! LayerNorm: `(x − mean(x)) · rsqrt(var(x) + eps) ⊙ w + b` over the last axis, with the
//! variance as `mean((x − mean(x))²)` (exporters) or `mean(x²) − mean(x)²` (ONNX's function
//! body of LayerNormalization).

use super::{is_channel_vector, last_dim, reduces_last_axis};
use crate::matcher::{interior_escapes_except, Match};
use crate::pattern::*;
use crate::rule::{require, Rule};
use blockfuse_ir::blocks::LayerNorm;
use blockfuse_ir::{BinaryOp, Builder, Dim, Graph, IrError, ReduceOp, UnaryOp, Value};

fn mean(x: Pat) -> Pat {
    reduce(ReduceOp::Mean, x)
}

fn centered() -> Pat {
    binary(BinaryOp::Sub, any("x"), mean(any("x")).named("mu"))
}

/// `mean((x − μ)²)`, or `mean(x²) − μ²` (`mu2` must be the same mean as `mu`).
fn variance() -> Pat {
    let centered_var = mean(unary(UnaryOp::Square, centered())).named("var");
    let moments = binary(
        BinaryOp::Sub,
        mean(unary(UnaryOp::Square, any("x"))).named("var"),
        unary(UnaryOp::Square, mean(any("x")).named("mu2")),
    );
    either(centered_var, moments)
}

/// Fuses a composed LayerNorm with or without affine weight and bias.
pub fn layer_norm() -> Rule {
    let eps = expect(constant("eps"), "eps is not a constant");
    let rstd = unary(UnaryOp::Rsqrt, add(variance(), eps)).named("rstd");
    let normed = mul(centered(), rstd);
    let vector = |name| guard(any(name), |g, v| g.value_type(v).rank() >= 1);
    let scaled = either(mul(normed.clone(), vector("w")), normed);
    let mut rule =
        Rule::planned("layer_norm", either(add(scaled.clone(), vector("b")), scaled), check, rewrite);
    // The statistics (the mean and the inverse standard deviation) may have other readers,
    // as ONNX LayerNormalization's `Mean` and `InvStdDev` outputs: they stay computed beside
    // the block. Every other interior value must be private (checked in `check`).
    rule.exclusive = false;
    rule
}

/// What the check established: eps and the normalized axis' size.
struct Facts {
    eps: f32,
    d: Dim,
}

fn check(g: &Graph, m: &Match) -> Result<Facts, String> {
    if let Some(reason) = interior_escapes_except(g, m, &[m.value("mu"), m.value("rstd")]) {
        return Err(reason);
    }
    if let Some(mu2) = m.get("mu2") {
        require(mu2 == m.value("mu"), "the variance subtracts the square of a different mean")?;
    }
    require(
        reduces_last_axis(g, m.value("mu")) && reduces_last_axis(g, m.value("var")),
        "the means are not over the last axis only (keepdims)",
    )?;
    let eps = m.scalar(g, "eps").ok_or("eps is not a scalar")?;
    let eps = super::positive_eps(eps)?;
    let d = last_dim(g, m.value("x")).ok_or("x has no axes")?;
    for name in ["w", "b"] {
        if let Some(v) = m.get(name) {
            require(
                is_channel_vector(g, v, &d),
                format!("{name} {} is not a vector over the last axis ({d})", g.value_type(v)),
            )?;
        }
    }
    Ok(Facts { eps, d })
}

fn rewrite(b: &mut Builder<'_>, m: &Match, Facts { eps, d }: Facts) -> Result<Value, IrError> {
    let x = m.value("x");
    let mut args = vec![x];
    for name in ["w", "b"] {
        if let Some(v) = m.get(name) {
            args.push(b.reshape(v, vec![d.clone()])?);
        }
    }
    let block = LayerNorm { eps, has_weight: m.get("w").is_some(), has_bias: m.get("b").is_some() };
    Ok(b.block(block, &args)?[0])
}
