//! A matmul by a dequantized constant weight: `x · dequantize(q, s, zp)` (ONNX
//! `DequantizeLinear` with `block_size` before `MatMul`, or `Gemm` with `transB`; ONNX
//! Runtime's `MatMulNBits`) → [`QuantizedMatmul`](blockfuse_ir::blocks::QuantizedMatmul) over the
//! repacked integers.

use crate::analysis::quant::{affine_weight, groups_fit, int_constant, AffineWeight};
use crate::matcher::Match;
use crate::pattern::*;
use crate::rule::{require, Rule};
use blockfuse_ir::blocks::{Dequantize, QuantizedEmbedding};
use blockfuse_ir::{Builder, Graph, IrError, Op, Value};

/// `x · W` with `W = (q − zp) · s` blocked along the input dim (W `{K, N}`, or `{N, K}`
/// transposed): `quantized_matmul(x, q', s, −s·(zp + o))`, MLX's affine layout
/// ([`affine_weight`]).
pub fn quantized_matmul() -> Rule {
    let dq = || {
        let is_dq = |o: &Op| o.as_block().is_some_and(|b| b.is::<Dequantize>());
        node("block.dequantize", is_dq, vec![any("q"), any("scale"), any("zp")]).named("dq")
    };
    let t = node("transpose", |o| matches!(o, Op::Transpose { perm } if perm == &[1, 0]), vec![dq()]);
    let w = either(t.named("t"), dq());
    Rule::planned(
        "quantized_matmul",
        node("matmul", |o| matches!(o, Op::MatMul), vec![any("x"), w]),
        check,
        rewrite,
    )
}

/// The repacked weight and the name its constants take.
type Facts = (AffineWeight, Option<String>);

fn check(g: &Graph, m: &Match) -> Result<Facts, String> {
    let d = g.node(m.value("dq").node).op.as_block().and_then(|b| b.downcast_ref::<Dequantize>());
    let d = d.ok_or("not a dequantize block")?;
    let k_axis = usize::from(m.get("t").is_some());
    require(g.value_type(m.value("x")).rank() >= 2, "the activation has rank 1")?;
    require(
        d.axis == k_axis,
        format!("the blocks run along axis {} of the weight, not its input dim", d.axis),
    )?;
    let k = g.value_type(m.value("dq")).shape.get(k_axis).and_then(|d| d.known()).ok_or("K is not known")?;
    groups_fit(k, d.block_size)?;
    let q = int_constant(g, m.value("q")).map_err(|e| format!("the quantized weight: {e}"))?;
    let zp = int_constant(g, m.value("zp")).map_err(|e| format!("the zero points: {e}"))?;
    let s = g.node(m.value("scale").node).op.as_constant().ok_or("the scales are not a constant")?;
    let w = affine_weight(&q, s, &zp, k_axis, d.block_size)?;
    // The weight's name: the integers' node, or the packed bytes under an int4 block.
    let qn = g.node(m.value("q").node);
    Ok((w, qn.name.clone().or_else(|| qn.operands.first().and_then(|p| g.node(p.node).name.clone()))))
}

fn rewrite(b: &mut Builder<'_>, m: &Match, (w, name): Facts) -> Result<Value, IrError> {
    let mut args = vec![m.value("x")];
    for (t, suffix) in [(w.packed, "packed"), (w.scales, "scales"), (w.biases, "biases")] {
        let c = b.constant(t);
        b.graph_mut().set_name(c.node, name.as_ref().map(|n| format!("{n}.{suffix}")));
        args.push(c);
    }
    Ok(b.block(w.block, &args)?[0])
}

/// `gather(dequantize(q, s, zp), ids)` of rows, blocks along the row: the table of a
/// [`QuantizedEmbedding`] (`com.microsoft` `GatherBlockQuantized`, or `DequantizeLinear` with
/// `block_size` before `Gather`).
pub fn quantized_embedding() -> Rule {
    let is_dq = |o: &Op| o.as_block().is_some_and(|b| b.is::<Dequantize>());
    let dq = node("block.dequantize", is_dq, vec![any("q"), any("scale"), any("zp")]).named("dq");
    let gather = node("gather", |o| matches!(o, Op::Gather { axis: 0 }), vec![dq, any("ids")]);
    Rule::planned("quantized_embedding", gather, check_table, |b, m, (w, name): Facts| {
        let block = QuantizedEmbedding::new(w.block.bits, w.block.group_size);
        let mut args = vec![m.value("ids")];
        for (t, suffix) in [(w.packed, "packed"), (w.scales, "scales"), (w.biases, "biases")] {
            let c = b.constant(t);
            b.graph_mut().set_name(c.node, name.as_ref().map(|n| format!("{n}.{suffix}")));
            args.push(c);
        }
        Ok(b.block(block, &args)?[0])
    })
}

fn check_table(g: &Graph, m: &Match) -> Result<Facts, String> {
    let d = g.node(m.value("dq").node).op.as_block().and_then(|b| b.downcast_ref::<Dequantize>());
    let d = d.ok_or("not a dequantize block")?;
    require(d.axis == 1, format!("the blocks run along axis {} of the table, not its rows", d.axis))?;
    let k = g
        .value_type(m.value("dq"))
        .shape
        .get(1)
        .and_then(|d| d.known())
        .ok_or("the row length is not known")?;
    groups_fit(k, d.block_size)?;
    let q = int_constant(g, m.value("q")).map_err(|e| format!("the quantized table: {e}"))?;
    let zp = int_constant(g, m.value("zp")).map_err(|e| format!("the zero points: {e}"))?;
    let s = g.node(m.value("scale").node).op.as_constant().ok_or("the scales are not a constant")?;
    let w = affine_weight(&q, s, &zp, 1, d.block_size)?;
    let qn = g.node(m.value("q").node);
    Ok((w, qn.name.clone().or_else(|| qn.operands.first().and_then(|p| g.node(p.node).name.clone()))))
}
