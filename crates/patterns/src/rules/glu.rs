//! Gated MLP activations: SwiGLU `silu(gate) ⊙ up` and GeGLU `gelu(gate) ⊙ up`.

use crate::pattern::*;
use crate::rule::{require, Rule};
use blockfuse_ir::blocks::{GeGlu, Gelu, GeluKind, SwiGlu};
use blockfuse_ir::{Op, UnaryOp};

/// `silu(gate) · up` with `silu(g) = g · sigmoid(g)` (or `g / (1 + e^−g)`, which
/// canonicalization spells `g · reciprocal(1 + exp(−g))`).
pub fn swiglu() -> Rule {
    let sig = either(
        unary(UnaryOp::Sigmoid, any("gate")),
        unary(
            UnaryOp::Reciprocal,
            add(unary(UnaryOp::Exp, unary(UnaryOp::Neg, any("gate"))), constant("one")),
        ),
    );
    Rule::new("swiglu", product(vec![any("gate"), sig, any("up")]))
        .check(|g, m| {
            if m.get("one").is_some() {
                require(m.scalar(g, "one") == Some(1.0), "the sigmoid denominator is not 1 + e^−x")?;
            }
            require(
                g.value_type(m.value("gate")) == g.value_type(m.value("up")),
                "gate and up differ in type",
            )
        })
        .rewrite(|b, m| Ok(b.block(SwiGlu {}, &[m.value("gate"), m.value("up")])?[0]))
}

/// `gelu(gate) · up` where the GELU is already a block (exact or tanh).
pub fn geglu() -> Rule {
    let gelu =
        node("block.gelu", |o| matches!(o, Op::Block(b) if b.is::<Gelu>()), vec![any("gate")]).named("gelu");
    Rule::new("geglu", mul(gelu, any("up")))
        .check(|g, m| {
            let kind = g
                .node(m.value("gelu").node)
                .op
                .as_block()
                .and_then(|b| b.downcast_ref::<Gelu>().map(|b| b.approximation));
            require(kind != Some(GeluKind::Quick), "QuickGELU has no GeGLU form")?;
            require(
                g.value_type(m.value("gate")) == g.value_type(m.value("up")),
                "gate and up differ in type",
            )
        })
        .rewrite(|b, m| {
            let kind = b
                .graph()
                .node(m.value("gelu").node)
                .op
                .as_block()
                .and_then(|b| b.downcast_ref::<Gelu>().map(|b| b.approximation));
            Ok(b.block(
                GeGlu { approximate: kind == Some(GeluKind::Tanh) },
                &[m.value("gate"), m.value("up")],
            )?[0])
        })
}
