//! Weight quantization (lossy, opt-in: `blockfuse optimize --quantize 4[:64]`), the graph-level
//! counterpart of `mlx_lm.convert -q`: every `MatMul(x, W)` whose weight `W {K, N}` is a float
//! constant becomes a [`QuantizedMatmul`] of `Wᵀ` quantized affinely along K
//! ([`quantize_affine`]). Unlike the fusion rules this changes values (within half a
//! quantization step per weight), so it never runs as part of [`crate::optimize`].

use crate::driver::NearMiss;
use blockfuse_ir::blocks::{quantize_affine, QuantizedMatmul};
use blockfuse_ir::{DType, Graph, HostTensor, IrError, NodeId, Op, Value};
use serde::Serialize;
use std::str::FromStr;
use std::sync::Arc;

/// How to quantize: bits per weight and the group size along the input dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantizeOptions {
    /// 4 or 8.
    pub bits: u32,
    /// 32, 64 or 128 input channels per scale and bias.
    pub group_size: u32,
}

impl FromStr for QuantizeOptions {
    type Err = String;

    /// `"4"`, `"8"`, or `"BITS:GROUP"` such as `"4:64"` (the group size defaults to 64, as in
    /// `mlx_lm`).
    fn from_str(s: &str) -> Result<Self, String> {
        let (bits, group) = s.split_once(':').unwrap_or((s, "64"));
        let parse = |v: &str, what: &str| {
            v.trim().parse::<u32>().map_err(|_| format!("--quantize: {what} {v:?} is not a number"))
        };
        let opts = QuantizeOptions { bits: parse(bits, "bits")?, group_size: parse(group, "group size")? };
        QuantizedMatmul::new(opts.bits, opts.group_size)
            .validate()
            .map_err(|e| format!("--quantize: {e}"))?;
        Ok(opts)
    }
}

/// What [`quantize_weights`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QuantizeReport {
    /// MatMuls that became quantized blocks.
    pub quantized: usize,
    /// Bytes of all constants before.
    pub constant_bytes_before: usize,
    /// Bytes of all constants after (a weight that other nodes still read stays as well).
    pub constant_bytes_after: usize,
    /// MatMuls with a constant weight that were left as they were, and why.
    pub skipped: Vec<NearMiss>,
}

/// Quantizes the constant weights of every eligible MatMul of `g` in place.
pub fn quantize_weights(g: &mut Graph, opts: QuantizeOptions) -> Result<QuantizeReport, IrError> {
    let mut report = QuantizeReport { constant_bytes_before: constant_bytes(g), ..Default::default() };
    let candidates: Vec<NodeId> = g.node_ids().filter(|&id| matches!(g.node(id).op, Op::MatMul)).collect();
    for id in candidates {
        match eligible_weight(g, id, opts) {
            Ok(None) => {}
            Ok(Some(w)) => {
                quantize_one(g, id, &w, opts)?;
                report.quantized += 1;
            }
            Err(reason) => report.skipped.push(NearMiss {
                rule: "quantize".to_string(),
                node: g.label(id).to_string(),
                reason,
            }),
        }
    }
    g.remove_dead();
    report.constant_bytes_after = constant_bytes(g);
    Ok(report)
}

/// The weight of MatMul `id` when it can be quantized; `None` when the weight is not a
/// constant (nothing to say); `Err` when it is one but does not fit the block.
fn eligible_weight(g: &Graph, id: NodeId, opts: QuantizeOptions) -> Result<Option<HostTensor>, String> {
    let [x, w] = [0, 1].map(|i| g.node(id).operands[i]);
    let Op::Constant(weight) = &g.node(w.node).op else { return Ok(None) };
    if !weight.dtype().is_float() || weight.dims().len() != 2 {
        return Err(format!(
            "the weight is {} [{:?}], not a 2-D float matrix",
            weight.dtype(),
            weight.dims()
        ));
    }
    if !weight.dims()[0].is_multiple_of(opts.group_size as usize) {
        return Err(format!(
            "K = {} is not a multiple of the group size {}",
            weight.dims()[0],
            opts.group_size
        ));
    }
    if g.value_type(x).dtype != weight.dtype() {
        return Err(format!("the activation is {} and the weight {}", g.value_type(x).dtype, weight.dtype()));
    }
    if g.value_type(x).rank() < 2 {
        return Err("the activation has rank 1".to_string());
    }
    Ok(Some(weight.clone()))
}

fn quantize_one(g: &mut Graph, id: NodeId, w: &HostTensor, opts: QuantizeOptions) -> Result<(), IrError> {
    let (k, n) = (w.dims()[0], w.dims()[1]);
    let values = w.to_f64_vec();
    let transposed: Vec<f32> = (0..n * k).map(|i| values[(i % k) * n + i / k] as f32).collect();
    let q = quantize_affine(&transposed, n, k, opts.bits, opts.group_size).map_err(IrError::Graph)?;
    let node = g.node(id);
    let (x, weight_name, name) =
        (node.operands[0], g.node(node.operands[1].node).name.clone(), node.name.clone());
    let named = |suffix: &str| weight_name.as_ref().map(|w| format!("{w}.{suffix}"));
    let groups = vec![n, k / opts.group_size as usize];
    let bytes = |t: Result<HostTensor, _>| t.map_err(|e| IrError::Graph(format!("quantize: {e}")));
    let packed = bytes(HostTensor::from_bytes(DType::U8, vec![n, q.packed.len() / n], q.packed))?;
    let as_scale = |v: &[f32]| {
        HostTensor::from_f64(w.dtype(), groups.clone(), &v.iter().map(|&s| s as f64).collect::<Vec<_>>())
    };
    let operands = [
        (packed, named("packed")),
        (as_scale(&q.scales), named("scales")),
        (as_scale(&q.biases), named("biases")),
    ]
    .into_iter()
    .map(|(t, nm)| g.add_node(Op::Constant(t), &[], nm).map(Value::first))
    .collect::<Result<Vec<_>, _>>()?;
    let block =
        g.add_node(Op::Block(Arc::new(q.block)), &[x, operands[0], operands[1], operands[2]], name)?;
    g.replace_all_uses(Value::first(id), Value::first(block));
    g.remove_node(id);
    Ok(())
}

fn constant_bytes(g: &Graph) -> usize {
    g.node_ids()
        .filter_map(|id| match &g.node(id).op {
            Op::Constant(t) => Some(t.bytes().len()),
            _ => None,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_bits_and_group() {
        assert_eq!("4".parse::<QuantizeOptions>().unwrap(), QuantizeOptions { bits: 4, group_size: 64 });
        assert_eq!("8:128".parse::<QuantizeOptions>().unwrap(), QuantizeOptions { bits: 8, group_size: 128 });
        assert!("3".parse::<QuantizeOptions>().unwrap_err().contains("bits"));
        assert!("4:48".parse::<QuantizeOptions>().unwrap_err().contains("group_size"));
        assert!("four".parse::<QuantizeOptions>().unwrap_err().contains("not a number"));
    }
}
