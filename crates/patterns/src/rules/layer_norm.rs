//! LayerNorm: `(x − mean(x)) · rsqrt(mean((x − mean(x))²) + eps) ⊙ w + b` over the last axis.

use super::{is_channel_vector, last_dim, reduces_last_axis};
use crate::pattern::*;
use crate::rule::{require, Rule};
use blockfuse_ir::blocks::LayerNorm;
use blockfuse_ir::{BinaryOp, ReduceOp, UnaryOp};

/// Fuses a composed LayerNorm with or without affine weight and bias.
pub fn layer_norm() -> Rule {
    let centered = binary(BinaryOp::Sub, any("x"), reduce(ReduceOp::Mean, any("x")).named("mu"));
    let var = reduce(ReduceOp::Mean, unary(UnaryOp::Square, centered.clone())).named("var");
    let normed =
        mul(centered, unary(UnaryOp::Rsqrt, add(var, expect(constant("eps"), "eps is not a constant"))));
    let vector = |name| guard(any(name), |g, v| g.value_type(v).rank() >= 1);
    let scaled = either(mul(normed.clone(), vector("w")), normed);
    Rule::new("layer_norm", either(add(scaled.clone(), vector("b")), scaled))
        .check(|g, m| {
            require(
                reduces_last_axis(g, m.value("mu")) && reduces_last_axis(g, m.value("var")),
                "the means are not over the last axis only (keepdims)",
            )?;
            let eps = m.scalar(g, "eps").ok_or("eps is not a scalar")?;
            require(eps > 0.0 && eps <= 1e-2, format!("eps {eps} is not in (0, 1e-2]"))?;
            let d = last_dim(g, m.value("x")).ok_or("x has no axes")?;
            for name in ["w", "b"] {
                if let Some(v) = m.get(name) {
                    require(
                        is_channel_vector(g, v, &d),
                        format!("{name} {} is not a vector over the last axis ({d})", g.value_type(v)),
                    )?;
                }
            }
            Ok(())
        })
        .rewrite(|b, m| {
            let eps = m.scalar(b.graph(), "eps").expect("checked") as f32;
            let x = m.value("x");
            let d = last_dim(b.graph(), x).expect("checked");
            let mut args = vec![x];
            for name in ["w", "b"] {
                if let Some(v) = m.get(name) {
                    args.push(b.reshape(v, vec![d.clone()])?);
                }
            }
            let block = LayerNorm { eps, has_weight: m.get("w").is_some(), has_bias: m.get("b").is_some() };
            Ok(b.block(block, &args)?[0])
        })
}
