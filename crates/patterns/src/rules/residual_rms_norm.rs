//! Residual add + RMSNorm: `h = x + a; y = rms_norm(h)` → one block with outputs `h`, `y`.

use crate::pattern::*;
use crate::rule::{require, Rule};
use blockfuse_ir::blocks::{ResidualRmsNorm, RmsNorm};
use blockfuse_ir::{BinaryOp, Op};

/// An `rms_norm` block (with or without weight) whose operand is a residual add `x + a` of
/// two values of one type. The add's other readers (the next residual) read the block's `h`.
/// Runs after `rms_norm`, whose blocks it consumes.
pub fn residual_rms_norm() -> Rule {
    let is_norm = |o: &Op| matches!(o, Op::Block(b) if b.is::<RmsNorm>());
    let h = binary(BinaryOp::Add, any("x"), any("a")).named("h");
    let weighted = node("block.rms_norm", is_norm, vec![h.clone(), any("w")]).named("norm");
    let bare = node("block.rms_norm", is_norm, vec![h]).named("norm");
    let mut rule = Rule::planned(
        "residual_rms_norm",
        either(weighted, bare),
        |g, m| {
            let (x, a) = (g.value_type(m.value("x")), g.value_type(m.value("a")));
            // A broadcast add (a bias vector, a [1, seq, d] term) would make h differ from
            // x's type and the normalized rows from x's rows; the block does not broadcast.
            require(x == a, format!("the residual add broadcasts: x is {x}, a is {a}"))?;
            let op = &g.node(m.value("norm").node).op;
            let norm = op.as_block().and_then(|b| b.downcast_ref::<RmsNorm>()).ok_or("not an RmsNorm")?;
            Ok(ResidualRmsNorm::new(norm))
        },
        |b, m, block| {
            let mut args = vec![m.value("x"), m.value("a")];
            args.extend(m.get("w"));
            let outs = b.block(block, &args)?;
            // Every reader of the sum (the next residual, a graph output) reads the block's h.
            b.graph_mut().replace_all_uses(m.value("h"), outs[0]);
            Ok(outs[1])
        },
    );
    // The sum stays live (read by the next residual): that is the point of the block.
    rule.exclusive = false;
    rule
}
